/**
 * Requests in flight over the client's current session: sending them (within the limiter's
 * slots), their continuation frames, and the one sweep that times them out and runs the
 * heartbeat. The connection's lifecycle is the role's (`role.ts`); this is what rides on it.
 */
import { abortError, TcpkitError, TimeoutError } from '../errors.js';
import { CONNECTION_ID, FrameType } from '../protocol/constants.js';
import type { ServerHello } from '../protocol/control.js';
import type { Frame } from '../protocol/frame.js';
import type { FramedSession } from '../session/session.js';
import type { Clock } from '../util/clock.js';
import { Heartbeat, SweepTimer } from './heartbeat.js';
import { Limiter } from './limiter.js';
import type { ResolvedClientOptions } from './options.js';
import { Requests, type Pending, type StreamConsumer } from './requests.js';
import { SendProgress } from './send-progress.js';

/** Per-request options. */
export interface RequestOptions {
  /** Overrides the client's `requestTimeoutMs` for this request; 0 waits forever. */
  timeoutMs?: number;
  /** Abandons the request (the server is sent a CANCEL). */
  signal?: AbortSignal;
}

/** What the requests need of the connection's owner (the client role). */
export interface FlightHost {
  /** The session requests go out on now. */
  session(): FramedSession;
  /** The server's hello, once the hello exchange is done. */
  server(): ServerHello | undefined;
  /** Reconnects first when the server closed the last connection as idle; throws when no request can go out. */
  usable(): Promise<void>;
  /** Throws when no request can go out now (closed, failed, the server said goodbye...). */
  checkUsable(): void;
  /** Breaks the connection: every caller hears of `error`. */
  fatal(error: Error): void;
  /** An id was freed: a closing session may now end. */
  workDone(): void;
}

/** The requests over the current session, their slots, their deadlines and the heartbeat. */
export class Flight {
  /** The requests awaiting a reply on the current session, by id. */
  readonly requests: Requests;
  /** The in-flight slots (the server's `limits.maxInFlight`, 1 before its hello) and the requests queued for one. */
  readonly limiter: Limiter;
  /** When to PING the server and when to declare it dead; fed through {@link Flight.received} on every frame. */
  readonly heartbeat: Heartbeat;
  readonly #host: FlightHost;
  readonly #options: ResolvedClientOptions;
  readonly #clock: Clock;
  readonly #sweeper: SweepTimer;
  readonly #output = new SendProgress();

  /**
   * `options`: the client's, resolved (clock, heartbeat, request timeout, label). `host`: the client role,
   * which owns the session. Sends nothing and arms no timer: the first request arms the sweep.
   */
  constructor(options: ResolvedClientOptions, host: FlightHost) {
    this.#host = host;
    this.#options = options;
    this.#clock = options.clock;
    this.requests = new Requests(this.#clock, options.label, {
      cancel: (id) => {
        if (!host.session().connection.writeEnded) host.session().send(FrameType.CANCEL, id);
      },
      freed: () => {
        this.limiter.wakeNext();
        host.workDone();
      },
    });
    this.limiter = new Limiter(
      () => this.requests.size,
      () => host.server()?.limits.maxInFlight ?? 1,
    );
    this.heartbeat = new Heartbeat(options.heartbeatMs, options.label, this.#clock.now());
    this.#sweeper = new SweepTimer(this.#clock, options.heartbeatMs, () => this.#sweep());
  }

  /** Sends one request and feeds its reply to `consumer`: see `Client.stream`. */
  async stream(type: number, payload: Uint8Array, consumer: StreamConsumer, options: RequestOptions = {}): Promise<void> {
    await this.#host.usable();
    const limit = this.#host.server()!.limits.maxFrameBytes;
    if (payload.length > limit) {
      throw new TcpkitError('FRAME_TOO_LARGE', `request of ${payload.length} bytes exceeds the server's limit of ${limit} bytes`);
    }
    if (options.signal?.aborted) throw abortError(options.signal);
    const timeoutMs = options.timeoutMs ?? this.#options.requestTimeoutMs;
    if (this.limiter.full()) {
      // Wait for a slot, in order; the slot is reserved for us when we are woken. The wait is
      // bounded by the timeout too, measured as no reply to any request for that long: slots
      // held by abandoned requests of a server that stopped answering never free up.
      const waiting = this.limiter.wait(timeoutMs, this.#clock.now());
      if (timeoutMs > 0) this.#sweeper.arm(timeoutMs);
      await waiting;
      this.limiter.claim();
      try {
        this.#host.checkUsable();
        if (options.signal?.aborted) throw abortError(options.signal);
      } catch (error) {
        this.limiter.wakeNext();
        throw error;
      }
    }
    return new Promise<void>((resolve, reject) => {
      const pending = this.requests.create({ type, payload, consumer, timeoutMs, signal: options.signal }, resolve, reject);
      if (timeoutMs > 0 || this.#options.heartbeatMs > 0) this.#sweeper.arm(timeoutMs > 0 ? timeoutMs : Infinity);
      this.send(pending);
      consumer.opened?.({ send: (frameType, framePayload, onSent) => this.#sendContinuation(pending, frameType, framePayload, onSent) });
    });
  }

  /** Puts `pending` in flight on the current session (also when it is sent again after a reconnect). */
  send(pending: Pending): void {
    this.requests.add(pending);
    this.#host.session().send(pending.type, pending.id, pending.payload);
  }

  async #sendContinuation(pending: Pending, type: number, payload: Uint8Array, onSent: (() => void) | undefined): Promise<void> {
    const over = (): Error => new TcpkitError('CANCELLED', 'the request is over: nothing more can be sent for it');
    if (pending.abandoned || !this.requests.has(pending)) throw over();
    const limit = this.#host.server()!.limits.maxFrameBytes;
    if (payload.length > limit) throw new TcpkitError('FRAME_TOO_LARGE', `frame of ${payload.length} bytes exceeds the server's limit of ${limit} bytes`);
    pending.sent = true;
    const session = this.#host.session();
    if (!session.send(type, pending.id, payload, onSent)) await roomToSend(session, pending);
    if (pending.abandoned) throw over();
    const now = this.#clock.now();
    this.#output.moved(now);
    if (pending.deadline !== 0) pending.deadline = now + pending.timeoutMs;
  }

  /** A frame arrived: the server is alive. */
  received(): void {
    this.heartbeat.heard(this.#clock.now());
  }

  /** Takes a reply frame; a frame that breaks the protocol breaks the connection. */
  settle(frame: Frame): void {
    const fatal = this.requests.settle(frame);
    if (fatal) this.#host.fatal(fatal);
  }

  /** Rejects every caller still waiting (in flight or for a slot) with `error`; true when there was one. */
  failAll(error: Error): boolean {
    const told = this.requests.failAll(error);
    this.limiter.wakeAll();
    return told;
  }

  /** No more sweeps: the client is closed. */
  stop(): void {
    this.#sweeper.cancel();
  }

  /** We stopped reading: see `ClientInternals.pauseReading`. */
  pause(): void {
    this.heartbeat.pause();
    this.#host.session().connection.pause();
  }

  /** We read again: the heartbeat and the request timeouts count afresh from now. */
  resume(): void {
    if (this.heartbeat.paused) {
      const now = this.#clock.now();
      this.heartbeat.resume(now);
      this.requests.lastReplyAt = Math.max(this.requests.lastReplyAt, now);
      this.requests.pushDeadlines(now, false);
    }
    this.#host.session().connection.resume();
  }

  /** The sweep: expired request deadlines, waiters out of time, the heartbeat; re-armed while needed. */
  #sweep(): void {
    const now = this.#clock.now();
    const paused = this.heartbeat.paused;
    const conn = this.#host.session().connection;
    // Bytes the server takes are progress for the requests that sent them, as a reply would be.
    // The kernel's count is wanted from half the shortest deadline it could save.
    const quietMs = this.requests.sendingQuietMs(this.#options.heartbeatMs);
    const output = quietMs === Infinity || paused ? undefined : this.#output.sample(conn, now, quietMs);
    if (output?.moved) {
      this.heartbeat.progress(now);
      this.requests.pushDeadlines(now, true);
    }
    const expired = this.requests.expire(now, paused, output?.outstanding === true);
    if (expired.fatal) {
      this.#host.fatal(expired.fatal);
      return;
    }
    // Requests waiting for a slot: failed once no reply to anything came for their timeout.
    const lastProgressAt = Math.max(this.requests.lastReplyAt, this.#output.progressAt);
    const waiting = this.limiter.expire(now, lastProgressAt, paused, (timeoutMs) => {
      const why = `the request waited for a free slot: all ${this.#host.server()?.limits.maxInFlight} were taken`;
      return new TimeoutError('REQUEST_TIMEOUT', `no reply from ${this.#options.label} within ${timeoutMs} ms (${why})`);
    });
    const shortest = expired.shortest === 0 ? waiting : waiting === 0 ? expired.shortest : Math.min(expired.shortest, waiting);
    const verdict = this.heartbeat.check(now, this.requests.size > 0 && this.#host.server() !== undefined && !conn.writeEnded);
    if (verdict === 'ping') this.#host.session().send(FrameType.PING, CONNECTION_ID);
    else if (verdict) {
      this.#host.fatal(verdict);
      return;
    }
    if (shortest > 0 || (this.requests.size > 0 && this.#options.heartbeatMs > 0)) this.#sweeper.arm(shortest > 0 ? shortest : Infinity);
  }
}

/**
 * Waits until the send buffer has room again, or the request is over (timed out, failed,
 * answered): a server that takes none of our bytes never drains it, and the caller must hear
 * of the timeout all the same. Meanwhile the sweep watches the server take our bytes (see
 * {@link SendProgress}): that, not only a drain, is progress.
 */
async function roomToSend(session: FramedSession, pending: Pending): Promise<void> {
  try {
    await new Promise<void>((resolve) => {
      pending.unblock = resolve;
      void session.connection.drained().then(resolve);
    });
  } finally {
    pending.unblock = undefined;
  }
}
