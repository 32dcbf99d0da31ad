/**
 * What raw mode needs of an accepted byte stream beyond `Duplex`: the peer's address, a reset,
 * the kernel's queues, and why it closed. A TCP socket has them all; an in-memory pair (tests)
 * gets plain fallbacks. Socket features are found by shape, not by class: no file outside
 * transport/ imports node:net.
 */
import type { Duplex } from 'node:stream';
import type { Socket } from '../transport/dial.js';
import { MEMORY_PEER, peerOf, type CloseReason, type PeerInfo } from '../transport/peer.js';
import { unacknowledgedBytes } from '../transport/tcp-queue.js';

/** The stream is a TCP (or TLS) socket. */
function socketOf(stream: Duplex): Socket | undefined {
  return typeof (stream as Partial<Socket>).setNoDelay === 'function' ? (stream as Socket) : undefined;
}

/** Who is at the other end: ask while the socket is open (a closed one has no address). */
export function streamPeer(stream: Duplex): PeerInfo {
  const socket = socketOf(stream);
  return socket === undefined ? MEMORY_PEER : peerOf(socket);
}

/** Small writes leave at once (a raw reply is often one short message). */
export function noDelay(stream: Duplex): void {
  socketOf(stream)?.setNoDelay(true);
}

/** Closes at once with a reset (SO_LINGER 0) where the stream is a socket; destroys it otherwise. */
export function resetStream(stream: Duplex): void {
  const socket = socketOf(stream);
  if (socket !== undefined) socket.resetAndDestroy();
  else stream.destroy();
}

/** Output bytes not yet taken by the kernel (the stream's buffer and the handle's queue). */
export function queuedBytes(stream: Duplex): number {
  const handle = (stream as unknown as { _handle?: { writeQueueSize?: number } })._handle;
  return stream.writableLength + (handle?.writeQueueSize ?? 0);
}

/** Bytes the peer has not acknowledged, as the kernel counts them; undefined when unknown. */
export function unacknowledged(stream: Duplex, now: number): number | undefined {
  const socket = socketOf(stream);
  return socket === undefined ? undefined : unacknowledgedBytes(socket, now);
}

/** Why a stream closed, told as the framed side tells it (transport/connection.ts). */
export function closeReason(destroyedLocally: boolean, error: Error | undefined, peerEnded: boolean): CloseReason {
  if (destroyedLocally) return 'local';
  if (error !== undefined) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ECONNRESET' || code === 'EPIPE' ? 'reset' : 'error';
  }
  return peerEnded ? 'eof' : 'local';
}
