/**
 * Refusing a connection politely: a tcpkit client is told why (preamble + ERROR), a raw client
 * gets a close with no data (it would save any text as its file). A refused connection waits for
 * the client's first byte to tell which kind it is, so refusals are bounded too (RELIABILITY.md
 * G3): each lives at most `deadlineMs`, and at most `maxPending` wait at once; past that a
 * refused connection is closed at once, without a word (a flood of refused connections must not
 * cost a descriptor each for the whole handshake deadline).
 */
import type { Socket } from '../transport/dial.js';
import { systemClock, type Clock } from '../util/clock.js';
import { CONNECTION_ID, FrameType, PREAMBLE, preambleBytes } from '../protocol/constants.js';
import { encodeErrorBody } from '../protocol/control.js';
import { encodeFrame } from '../protocol/frame.js';
import type { ErrorCodeName } from '../errors.js';

/** Refused connections that may wait for their first byte at once, per server. */
export const MAX_PENDING_REFUSALS = 64;

/** Refused connections of one server, each waiting (bounded in time and number) to be told why. */
export class Refusals {
  readonly #maxPending: number;
  readonly #deadlineMs: number;
  readonly #clock: Clock;
  #pending = 0;

  /** Each refusal waits at most `deadlineMs` on `clock`; at most `maxPending` wait at once. */
  constructor(deadlineMs: number, maxPending = MAX_PENDING_REFUSALS, clock: Clock = systemClock) {
    this.#deadlineMs = deadlineMs;
    this.#maxPending = maxPending;
    this.#clock = clock;
  }

  /** Refused connections still waiting to be told (or to close). */
  get pending(): number {
    return this.#pending;
  }

  /** Refuses `socket` with `code` and `message`; closes it at once when too many refusals wait. */
  refuse(socket: Socket, code: ErrorCodeName, message: string): void {
    socket.on('error', () => {});
    if (this.#pending >= this.#maxPending) {
      socket.destroy();
      return;
    }
    this.#pending++;
    const timer = this.#clock.setTimeout(destroy, this.#deadlineMs, socket);
    socket.on('close', () => {
      this.#clock.clearTimeout(timer);
      this.#pending--;
    });
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
}

function destroy(socket: Socket): void {
  socket.destroy();
}
