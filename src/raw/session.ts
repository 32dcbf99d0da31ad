/**
 * Raw mode, server side: one accepted connection of a client that speaks no framing (the
 * tutorial's programs, netcat). It carries exactly one request: gathered until a newline, the
 * client's EOF or a quiet period (src/raw/request.ts), served by the server's {@link RawHandler}
 * as bare bytes with backpressure, then our side ends and the client has `lingerTimeoutMs` to
 * close its own. There is no error code in raw mode: a refusal before any byte is a close with
 * no data (what the tutorial's client takes for a missing file), a failure midway a reset (so
 * the cut is visible, not a short file that looks whole).
 *
 * It works over the accepted stream directly (no frame decoder), with the same phase deadlines
 * as a framed connection (transport/watchdog.ts): the request must be complete within the
 * handshake deadline of accept, the send-stall deadline resets a client that stopped reading,
 * and the idle deadline ends a connection that lingers with nothing to do.
 */
import type { Duplex } from 'node:stream';
import { TcpkitError } from '../errors.js';
import type { Accepted } from '../server/accepted.js';
import type { CloseReason, PeerInfo } from '../transport/peer.js';
import { Watchdog, type Expiry, type WatchdogOwner, type WatchdogTimeouts } from '../transport/watchdog.js';
import { systemClock, type Clock } from '../util/clock.js';
import type { RawExchange, RawHandler } from './handler.js';
import { RAW_QUIET_MS, RawRequestReader, type RawVerdict } from './request.js';
import { BatchedWriter } from '../transport/writer.js';
import { attachStream, closeReason, drained, noDelay, queuedBytes, resetStream, streamPeer, unacknowledged, type StreamEvents } from '../transport/stream.js';

/** What a raw session reports to its server (the server's session host satisfies it). */
export interface RawSessionHost {
  /** The options it reads: how long the client has to close after we end, and the clock. */
  readonly options: { readonly lingerTimeoutMs: number; readonly clock?: Clock };
  /** The phase deadlines, one object shared by every connection. */
  readonly timeouts: WatchdogTimeouts;
  /** Serves the request; undefined: raw mode is off, and the client is closed without a byte. */
  readonly raw: RawHandler | undefined;
  /** A raw request was refused (`cut` false: the client got no data) or failed midway (`cut`: reset). */
  rawError(peer: PeerInfo, error: unknown, cut: boolean): void;
  /** A phase deadline passed and the connection is being closed. */
  timedOut(peer: PeerInfo, why: Expiry): void;
  /** The client half-closed (EOF). */
  peerEnded(peer: PeerInfo): void;
  /** The request is complete, or the connection closed: it no longer counts as pre-auth. Once per connection at most. */
  preAuthEnded(session: Accepted): void;
  /** The connection closed; called exactly once. */
  closed(session: Accepted, reason: CloseReason, error: Error | undefined): void;
}

/** How a raw session starts, when it was told apart from a framed one first (src/raw/sniffer.ts). */
export interface RawOpening {
  /** When the connection was accepted, on the host's clock: the handshake deadline counts from it. @default now */
  readonly startedAt?: number;
  /** The peer, when it was already looked up. */
  readonly peer?: PeerInfo;
}

/**
 * Lifecycle: gathering the request, serving it (and ending, lingering), draining (shutdown or
 * idle: no more to do than end), closed.
 */
export type RawSessionState = 'request' | 'open' | 'draining' | 'closed';

/** One raw connection, served; see the file comment. */
export class RawSession implements Accepted, WatchdogOwner {
  readonly #stream: Duplex;
  readonly #host: RawSessionHost;
  readonly #clock: Clock;
  readonly #watchdog: Watchdog;
  readonly #reader = new RawRequestReader();
  #state: RawSessionState = 'request';
  #peer: PeerInfo | undefined;
  #quietTimer: unknown;
  #lingerTimer: unknown;
  /** The request being served, if any (a raw connection carries exactly one). */
  #active: AbortController | undefined;
  #requests = 0;
  #bytesIn = 0;
  #peerEnded = false;
  #ended = false;
  #closed = false;
  #destroyedLocally = false;
  #error: Error | undefined;
  /** Writes of one turn leave together at its end (as the framed side batches them). */
  readonly #writer: BatchedWriter;
  /** Not yet past its request: counted against the pre-auth cap. */
  #preAuth = true;

  /** The address this connection was admitted under (its slot in the caps), '' when not tracked. */
  readonly admittedIp: string;

  /**
   * Takes over `stream` at once: listens to it and starts the phase deadlines (from `opening.startedAt`
   * when the connection was accepted earlier). `admittedIp` is the address it counts against in the caps.
   */
  constructor(stream: Duplex, host: RawSessionHost, admittedIp = '', opening: RawOpening = {}) {
    this.#stream = stream;
    this.#host = host;
    this.admittedIp = admittedIp;
    this.#clock = host.options.clock ?? systemClock;
    if (opening.peer !== undefined) this.#peer = opening.peer;
    noDelay(stream);
    attachStream(stream, this, RawSession.#events);
    this.#watchdog = new Watchdog(host.timeouts, this, this.#clock, opening.startedAt);
    this.#writer = new BatchedWriter(stream, this.#watchdog);
  }

  // One table of listeners for every stream: per-connection closures cost memory on idle connections.
  static readonly #events: StreamEvents<RawSession> = {
    data: (session, chunk) => session.#onData(chunk),
    end: (session) => session.#onPeerEnd(),
    error: (session, error) => (session.#error ??= error),
    close: (session) => session.#onClose(),
    drain: (session) => session.#watchdog.sendBlocked(false),
  };
  static #quiet(session: RawSession): void {
    session.#quietTimer = undefined;
    session.#serve(session.#reader.end());
  }
  static #linger(session: RawSession): void {
    session.destroy();
  }

  /** Who is at the other end (looked up once, on first use). */
  get peer(): PeerInfo {
    this.#peer ??= streamPeer(this.#stream);
    return this.#peer;
  }
  /** Where the session is in its lifecycle; see {@link RawSessionState}. */
  get state(): RawSessionState {
    return this.#state;
  }
  /** Requests received since the connection opened: 0 or 1. */
  get requests(): number {
    return this.#requests;
  }
  /** Bytes received so far, the request and anything the client sent after it. */
  get bytesIn(): number {
    return this.#bytesIn;
  }
  /** Bytes handed to the stream so far, those still queued included. */
  get bytesOut(): number {
    return this.#writer.bytesOut;
  }

  /** @internal For the watchdog: output bytes not yet taken by the kernel. */
  queuedBytes(): number {
    return queuedBytes(this.#stream);
  }
  /** @internal For the watchdog: bytes handed to the stream so far. */
  sentBytes(): number {
    return this.#writer.bytesOut;
  }
  /** @internal For the watchdog: bytes the peer has not acknowledged, as the kernel counts them. */
  unacknowledgedBytes(): number | undefined {
    return unacknowledged(this.#stream, this.#clock.now());
  }
  /** @internal For the watchdog: a phase deadline passed. */
  expired(why: Expiry): void {
    this.#onTimeout(why);
  }

  /**
   * Graceful stop (server shutdown): a request still being gathered is closed without a byte;
   * one being served finishes first.
   */
  drain(): void {
    if (this.#state === 'closed' || this.#state === 'draining') return;
    if (this.#state === 'request') {
      this.destroy();
      return;
    }
    this.#state = 'draining';
    this.#maybeFinish();
  }

  /** Aborts at once, dropping what is queued. Idempotent. */
  destroy(error?: Error): void {
    if (this.#closed) return;
    this.#destroyedLocally = true;
    this.#error ??= error;
    this.#stream.destroy();
  }

  /** Closes at once with a reset: the client sees the cut. */
  #reset(): void {
    if (this.#closed) return;
    this.#destroyedLocally = true;
    resetStream(this.#stream);
  }

  /**
   * Sends bytes; false when the caller should wait for {@link drained}. Writes of one turn
   * leave together at its end: a failure in the same turn then resets before they leave, so
   * the client sees the reset, not a short reply followed by what looks like a clean end.
   */
  #write(chunk: Uint8Array): boolean {
    if (this.#ended || this.#closed) return false;
    return this.#writer.write(chunk, undefined);
  }

  /** A phase deadline passed: each phase has its own way out (RELIABILITY.md G5). */
  #onTimeout(why: Expiry): void {
    this.#host.timedOut(this.peer, why);
    switch (why) {
      case 'handshake':
        // Never completed its request: close without a byte, it may not even be a client of ours.
        this.destroy();
        return;
      case 'send-stall':
        // The client stopped reading: reset, so the kernel frees what it still holds for it.
        this.#reset();
        return;
      case 'request':
        this.#stream.pause();
        this.#endAndLinger();
        return;
      case 'idle':
        this.#state = 'draining';
        this.#endAndLinger();
    }
  }

  #onData(chunk: Buffer): void {
    this.#bytesIn += chunk.length;
    this.#watchdog.activity();
    if (this.#state !== 'request') return; // bytes after the request are ignored
    const verdict = this.#reader.push(chunk);
    if (verdict.done) {
      this.#serve(verdict);
      return;
    }
    // The tutorial's client sends its name and waits, neither ending the line nor closing.
    this.#clearQuiet();
    this.#quietTimer = this.#clock.setTimeout(RawSession.#quiet, RAW_QUIET_MS, this);
  }

  /** The request is complete: serve it (one per connection). */
  #serve(verdict: RawVerdict): void {
    if (!verdict.done || this.#state !== 'request') return;
    this.#clearQuiet();
    this.#state = 'open';
    // Past its request: the handshake deadline stops, and the pre-auth slot is given back.
    this.#watchdog.handshakeDone();
    this.#leavePreAuth();
    this.#stream.pause(); // bytes after the request are never looked at
    const handler = this.#host.raw;
    if ('tooLong' in verdict || handler === undefined) {
      if (handler !== undefined) this.#host.rawError(this.peer, new TcpkitError('BAD_REQUEST', 'raw request too long'), false);
      this.#endAndLinger();
      return;
    }
    const controller = new AbortController();
    this.#active = controller;
    this.#watchdog.setBusy(true);
    this.#requests++;
    let result: void | Promise<void>;
    try {
      result = handler(verdict.request, new Exchange(this, controller.signal));
    } catch (error) {
      this.#finish(error);
      return;
    }
    if (result instanceof Promise) result.then(() => this.#finish(undefined), (error: unknown) => this.#finish(error));
    else this.#finish(undefined);
  }

  /** @internal A write of the exchange. */
  async exchangeWrite(signal: AbortSignal, chunk: Uint8Array): Promise<void> {
    signal.throwIfAborted();
    if (!this.#write(chunk)) await drained(this.#stream);
  }

  #finish(error: unknown): void {
    this.#active = undefined;
    this.#watchdog.setBusy(false);
    if (this.#state === 'closed') return;
    if (error === undefined) {
      this.#endAndLinger();
      return;
    }
    // Nothing sent: close with no data. Something sent: reset, so the cut is visible.
    const cut = this.#writer.bytesOut > 0;
    this.#host.rawError(this.peer, error, cut);
    if (cut) this.#reset();
    else this.#endAndLinger();
  }

  /** Ends our side once the request is done and the client is done (EOF) or we drain. */
  #maybeFinish(): void {
    if (this.#active !== undefined || this.#ended || this.#closed) return;
    if (this.#state === 'draining' || this.#peerEnded) this.#endAndLinger();
  }

  /** Sends what is queued, half-closes our side, and gives the client `lingerTimeoutMs` to close its own. */
  #endAndLinger(): void {
    if (!this.#ended && !this.#closed) {
      this.#ended = true;
      this.#stream.end();
    }
    this.#lingerTimer ??= this.#clock.setTimeout(RawSession.#linger, this.#host.options.lingerTimeoutMs, this);
  }

  #onPeerEnd(): void {
    this.#peerEnded = true;
    this.#host.peerEnded(this.peer);
    if (this.#state === 'request') {
      // EOF ends the request; a client that closed without a byte asked for nothing.
      if (this.#bytesIn > 0) this.#serve(this.#reader.end());
      else this.destroy();
      return;
    }
    this.#maybeFinish();
  }

  #clearQuiet(): void {
    if (this.#quietTimer !== undefined) this.#clock.clearTimeout(this.#quietTimer);
    this.#quietTimer = undefined;
  }

  #leavePreAuth(): void {
    if (!this.#preAuth) return;
    this.#preAuth = false;
    this.#host.preAuthEnded(this);
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watchdog.stop();
    this.#state = 'closed';
    this.#leavePreAuth();
    this.#clearQuiet();
    if (this.#lingerTimer !== undefined) this.#clock.clearTimeout(this.#lingerTimer);
    this.#active?.abort(new TcpkitError('CONNECTION_CLOSED', 'the connection closed'));
    this.#host.closed(this, closeReason(this.#destroyedLocally, this.#error, this.#peerEnded), this.#error);
  }
}

/** The one request of a raw connection, as its handler sees it. */
class Exchange implements RawExchange {
  readonly #session: RawSession;
  readonly signal: AbortSignal;

  constructor(session: RawSession, signal: AbortSignal) {
    this.#session = session;
    this.signal = signal;
  }

  get peer(): PeerInfo {
    return this.#session.peer;
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.#session.exchangeWrite(this.signal, chunk);
  }
}
