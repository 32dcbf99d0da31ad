/**
 * What a session needs of a byte stream beyond `Duplex`, for framed connections
 * (connection.ts) and raw sessions (src/raw/) alike: the peer's address, a reset, the kernel's
 * queues, why it closed, one set of event listeners shared by every stream, and a shared wait
 * for 'drain'. A TCP socket has every feature; an in-memory pair (tests) gets plain fallbacks.
 * Socket features are found by shape, not by class.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { MEMORY_PEER, peerOf, type CloseReason, type PeerInfo } from './peer.js';
import { unacknowledgedBytes } from './tcp-queue.js';

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

/** Why a stream closed: we destroyed it, it failed (a reset is told apart), or the peer ended it. */
export function closeReason(destroyedLocally: boolean, error: Error | undefined, peerEnded: boolean): CloseReason {
  if (destroyedLocally) return 'local';
  if (error !== undefined) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ECONNRESET' || code === 'EPIPE' ? 'reset' : 'error';
  }
  return peerEnded ? 'eof' : 'local';
}

/**
 * What the owner of a stream hears, as functions of the owner: one table per class, so no
 * stream costs a closure per event (idle connections are many). `data` and `drain` are
 * listened to only when given.
 */
export interface StreamEvents<T> {
  data?(owner: T, chunk: Buffer): void;
  end(owner: T): void;
  error(owner: T, error: Error): void;
  close(owner: T): void;
  drain?(owner: T): void;
}

interface Attached {
  readonly owner: unknown;
  readonly events: StreamEvents<unknown>;
}

const attached = new WeakMap<Duplex, Attached>();

function onData(this: Duplex, chunk: Buffer): void {
  const entry = attached.get(this);
  entry?.events.data?.(entry.owner, chunk);
}
function onEnd(this: Duplex): void {
  const entry = attached.get(this);
  entry?.events.end(entry.owner);
}
function onError(this: Duplex, error: Error): void {
  const entry = attached.get(this);
  entry?.events.error(entry.owner, error);
}
function onClose(this: Duplex): void {
  const entry = attached.get(this);
  entry?.events.close(entry.owner);
}
function onDrain(this: Duplex): void {
  const entry = attached.get(this);
  entry?.events.drain?.(entry.owner);
}

/** `owner` hears `stream`'s events through `events` until {@link detachStream}. */
export function attachStream<T>(stream: Duplex, owner: T, events: StreamEvents<T>): void {
  attached.set(stream, { owner, events: events as StreamEvents<unknown> });
  if (events.data) stream.on('data', onData);
  stream.on('end', onEnd);
  stream.on('error', onError);
  stream.on('close', onClose);
  if (events.drain) stream.on('drain', onDrain);
}

/** Stops the owner hearing `stream` (the stream is handed to another owner). */
export function detachStream(stream: Duplex): void {
  stream.off('data', onData);
  stream.off('end', onEnd);
  stream.off('error', onError);
  stream.off('close', onClose);
  stream.off('drain', onDrain);
  attached.delete(stream);
}

const drainWaits = new WeakMap<Duplex, Promise<void>>();

/**
 * Resolves when `stream`'s send buffer has room again, or it closed. Every waiter shares one
 * promise and one pair of listeners, however many wait.
 */
export function drained(stream: Duplex): Promise<void> {
  if (!stream.writableNeedDrain || stream.destroyed) return Promise.resolve();
  let wait = drainWaits.get(stream);
  if (wait === undefined) {
    wait = new Promise((resolve) => {
      const done = (): void => {
        stream.off('drain', done);
        stream.off('close', done);
        drainWaits.delete(stream);
        resolve();
      };
      stream.on('drain', done);
      stream.on('close', done);
    });
    drainWaits.set(stream, wait);
  }
  return wait;
}
