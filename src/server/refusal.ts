/**
 * Refusing a connection politely: a tcpkit client is told why (preamble + ERROR), a raw client
 * gets a close with no data (it would save any text as its file). Either way the connection
 * lives at most `deadlineMs`.
 */
import type { Socket } from 'node:net';
import { CONNECTION_ID, FrameType, PREAMBLE, preambleBytes } from '../protocol/constants.js';
import { encodeErrorBody } from '../protocol/control.js';
import { encodeFrame } from '../protocol/frame.js';
import type { ErrorCodeName } from '../errors.js';

export function refuse(socket: Socket, code: ErrorCodeName, message: string, deadlineMs: number): void {
  const timer = setTimeout(() => socket.destroy(), deadlineMs);
  socket.on('error', () => {});
  socket.on('close', () => clearTimeout(timer));
  let answered = false;
  socket.on('data', (chunk: Buffer) => {
    if (answered) return; // keep reading, so closing never resets the connection over unread bytes
    answered = true;
    if (chunk[0] !== PREAMBLE[0]) {
      socket.destroy();
      return;
    }
    socket.end(Buffer.concat([preambleBytes(), encodeFrame(FrameType.ERROR, CONNECTION_ID, encodeErrorBody({ code, message }))]));
  });
  // The client read our answer and closed its side: we are done.
  socket.on('end', () => socket.destroy());
}
