/**
 * The choice at accept, on a server that serves raw clients: an accepted connection waits for
 * its first byte, which says what it speaks. A framed client starts with the preamble's 0x89,
 * which no text can start with: it gets a framed session; anything else is a raw client
 * (src/raw/session.ts). The first bytes are handed back to the stream, so the session chosen
 * reads them as if it had been there from the start; the handshake deadline still counts from
 * accept. Without a raw handler there is nothing to choose: the server builds framed sessions
 * directly, and this file is not involved.
 */
import type { Duplex } from 'node:stream';
import { PREAMBLE } from '../protocol/constants.js';
import type { Accepted } from '../server/accepted.js';
import type { PeerInfo } from '../transport/peer.js';
import { systemClock, type Clock } from '../util/clock.js';
import { RawSession, type RawSessionHost } from './session.js';
import { attachStream, closeReason, detachStream, streamPeer, type StreamEvents } from '../transport/stream.js';

/** What a {@link Sniffer} needs of its server, beyond what a raw session does. */
export interface SnifferHost extends RawSessionHost {
  /**
   * Builds the framed session of a client whose first byte was the preamble's, over `stream`
   * (which still holds that byte); `startedAt` (on the host's clock) is when it was accepted.
   */
  framed(stream: Duplex, admittedIp: string, startedAt: number): Accepted;
  /** The connection became `session`, which takes the place of `waiting` in the registry (and its admission). */
  chosen(waiting: Accepted, session: Accepted): void;
}

/** A framed client starts with the preamble's 0x89, which no text can start with. */
export function isFramed(first: number): boolean {
  return first === PREAMBLE[0];
}

/** One accepted connection waiting for its first byte; see the file comment. */
export class Sniffer implements Accepted {
  readonly #stream: Duplex;
  readonly #host: SnifferHost;
  readonly #clock: Clock;
  /** When the connection was accepted, on the host's clock. */
  readonly #startedAt: number;
  #timer: unknown;
  #peer: PeerInfo | undefined;
  #error: Error | undefined;
  #destroyedLocally = false;
  #peerEnded = false;
  /** Closed, or handed to the session chosen: nothing more to do here. */
  #done = false;

  /** The address this connection was admitted under (its slot in the caps), '' when not tracked. */
  readonly admittedIp: string;

  /** Starts waiting at once: call it at accept (the handshake deadline counts from now). */
  constructor(stream: Duplex, host: SnifferHost, admittedIp = '') {
    this.#stream = stream;
    this.#host = host;
    this.admittedIp = admittedIp;
    this.#clock = host.options.clock ?? systemClock;
    this.#startedAt = this.#clock.now();
    attachStream(stream, this, Sniffer.#events);
    const { handshakeMs } = host.timeouts;
    if (handshakeMs > 0) this.#timer = this.#clock.setTimeout(Sniffer.#expire, handshakeMs, this);
  }

  // One table of listeners for every stream: per-connection closures cost memory on idle connections.
  static readonly #events: StreamEvents<Sniffer> = {
    data: (sniffer, chunk) => sniffer.#onData(chunk),
    end: (sniffer) => sniffer.#onPeerEnd(),
    error: (sniffer, error) => (sniffer.#error ??= error),
    close: (sniffer) => sniffer.#onClose(),
  };
  static #expire(sniffer: Sniffer): void {
    sniffer.#timer = undefined;
    if (sniffer.#done) return;
    // No byte within the handshake deadline: close without one, it may not speak tcpkit at all.
    sniffer.#host.timedOut(sniffer.peer, 'handshake');
    sniffer.destroy();
  }

  /** Who is at the other end (looked up once, on first use). */
  get peer(): PeerInfo {
    this.#peer ??= streamPeer(this.#stream);
    return this.#peer;
  }
  /** Nothing received yet: no request, no byte. */
  get requests(): number {
    return 0;
  }
  /** Always 0: the first byte is handed back to the stream and counted by the session chosen. */
  get bytesIn(): number {
    return 0;
  }
  /** Always 0: a sniffer never writes. */
  get bytesOut(): number {
    return 0;
  }

  /** Graceful stop: a connection still in its hello has nothing to finish, it is closed at once. */
  drain(): void {
    this.destroy();
  }

  /** Closes at once, without a byte. Idempotent. */
  destroy(error?: Error): void {
    if (this.#done) return;
    this.#destroyedLocally = true;
    this.#error ??= error;
    this.#stream.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#done || chunk.length === 0) return;
    this.#done = true;
    this.#stopListening();
    // The chunk goes back to the stream, read again by the session chosen once it flows.
    const stream = this.#stream;
    stream.pause();
    stream.unshift(chunk);
    const opening = this.#peer === undefined ? { startedAt: this.#startedAt } : { startedAt: this.#startedAt, peer: this.#peer };
    const session = isFramed(chunk[0]!)
      ? this.#host.framed(stream, this.admittedIp, this.#startedAt)
      : new RawSession(stream, this.#host, this.admittedIp, opening);
    this.#host.chosen(this, session);
    stream.resume();
  }

  #onPeerEnd(): void {
    this.#peerEnded = true;
    this.#host.peerEnded(this.peer);
    // EOF before a byte: it asked for nothing.
    this.destroy();
  }

  #onClose(): void {
    if (this.#done) return;
    this.#done = true;
    this.#stopListening();
    this.#host.preAuthEnded(this);
    this.#host.closed(this, closeReason(this.#destroyedLocally, this.#error, this.#peerEnded), this.#error);
  }

  #stopListening(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    detachStream(this.#stream);
  }
}
