/**
 * The client core: one kept (long) connection carrying many requests, pipelined, replies matched
 * by request id. The short form (one request per connection) is built on it in `short.ts`.
 */
import type * as net from 'node:net';
import { abortError, ConnectionError, ProtocolError, RemoteError, TcpkitError, TimeoutError } from '../errors.js';
import { CONNECTION_ID, FrameType, MAX_PING_BYTES, MAX_REQUEST_ID, SUPPORTED_VERSIONS, frameTypeName } from '../protocol/constants.js';
import { decodeErrorBody, decodeServerHello, encodeErrorBody, type ServerHello } from '../protocol/control.js';
import type { Frame } from '../protocol/frame.js';
import { Connection, type CloseReason } from '../transport/connection.js';
import { withRetries } from './retry.js';
import { BufferPool, BULK_BUFFER_BYTES } from '../util/buffer-pool.js';
import { CLIENT_OPENING, clientOpening } from './opening.js';
import { openSocket, type LargeReads } from '../transport/dial.js';
import { resolveClientOptions, type ClientOptions, type ResolvedClientOptions, type Target } from './options.js';

/** Per-request options. */
export interface RequestOptions {
  /** Overrides the client's `requestTimeoutMs` for this request; 0 waits forever. */
  timeoutMs?: number;
  /** Abandons the request (the server is sent a CANCEL). */
  signal?: AbortSignal;
}

interface Pending {
  /** Its id on the current connection (a new one after it is sent again). */
  id: number;
  /** The request, kept to send it again on a new connection after an idle goodbye. */
  readonly type: number;
  readonly payload: Uint8Array;
  /** True when `frame` ends the reply (ERROR frames always do). */
  isFinal(frame: Frame): boolean;
  /** Takes one reply frame; throws to abandon the request (a ProtocolError breaks the connection). */
  deliver(frame: Frame): void;
  /** The final frame was delivered. */
  complete(): void;
  reject(error: Error): void;
  /** Milliseconds without a reply frame after which the request times out; 0 = never. */
  timeoutMs: number;
  /** `Date.now()` at which it times out (0 = never); pushed back by every frame received. */
  deadline: number;
  /** The caller was already answered (timeout, abort, failed consumer): later frames only free the id. */
  abandoned: boolean;
  onAbort: (() => void) | undefined;
  signal: AbortSignal | undefined;
  /** It sent continuation frames (an upload's content): the server taking our output is its progress. */
  sent: boolean;
  /** Set while a continuation frame waits for room in the send buffer: wakes it once the request is over. */
  unblock: (() => void) | undefined;
}

/** Receives the frames of a streamed reply; see {@link Client.stream}. */
export interface StreamConsumer {
  /** True when `frame` is the last frame of the reply. */
  isFinal(frame: Frame): boolean;
  /** Called for every reply frame but ERROR, in order; throwing abandons the request. */
  frame(frame: Frame): void;
  /** Called once the request is sent, with the way to send continuation frames (an upload's content). */
  opened?(channel: RequestChannel): void;
}

/** Sends the continuation frames of a request in flight; see {@link StreamConsumer.opened}. */
export interface RequestChannel {
  /**
   * Sends one continuation frame of the request; resolves when the connection can take more
   * (backpressure). Sending counts as progress for the request timeout. Rejects once the request
   * is over (answered, failed, timed out or aborted): the request's own promise says why.
   * `onSent` runs once the connection no longer needs `payload` (it may then be reused); it does
   * not run when the send is refused.
   */
  send(type: number, payload: Uint8Array, onSent?: () => void): Promise<void>;
}

/** A request waiting for a slot: woken when one frees, failed when the connection has been silent for its timeout. */
interface Waiter {
  wake(): void;
  fail(error: Error): void;
  timeoutMs: number;
  since: number;
}

/** State of a client: open, closing (no new requests), closed. */
export type ClientState = 'open' | 'closing' | 'closed';

/** Reconnection tries after an idle goodbye, beyond the first. */
const RECONNECT_RETRIES = 3;

/**
 * A kept connection to a tcpkit server. Get one with {@link connect}.
 */
export class Client {
  readonly #options: ResolvedClientOptions;
  #conn!: Connection;
  readonly #pending = new Map<number, Pending>();
  /** Requests waiting for a free in-flight slot (the server's maxInFlight). */
  readonly #waiting: Waiter[] = [];
  /** `Date.now()` of the last reply frame to any request: what a request waiting for a slot measures. */
  #lastReply = Date.now();
  #nextId = 1;
  #state: ClientState = 'open';
  #server: ServerHello | undefined;
  #hello!: { resolve(): void; reject(error: Error): void };
  #ready!: Promise<void>;
  /** The server closed this connection as idle: the next request opens a new one. */
  #reaped = false;
  #reviving: Promise<void> | undefined;
  /** Requests that crossed the server's idle goodbye: never served, sent again after reconnecting. */
  #resend: Array<[Pending, number]> = [];
  #failure: Error | undefined;
  #goodbye: TcpkitError | undefined;
  #closedPromise: Promise<Error | undefined>;
  #resolveClosed!: (error: Error | undefined) => void;
  #lingerTimer: NodeJS.Timeout | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #sweepEvery = Infinity;
  /** DATA payloads of downloads are assembled in these and given back once written. */
  readonly #payloads = new BufferPool(BULK_BUFFER_BYTES, 4);
  #lastReceived = Date.now();
  /** When the heartbeat PING went out, 0 when none is outstanding. */
  #pingSentAt = 0;
  /** Slots promised to woken requests that have not yet taken them. */
  #reserved = 0;
  /** We stopped reading (see {@link pauseReading}): the server's silence is then ours, not its. */
  #paused = false;
  /** A protocol error that broke the connection when no caller awaited anything: close() reports it. */
  #unreported: Error | undefined;
  /** `Date.now()` when the server last took some of our output: a drain, or a sample that moved. */
  #sendProgressAt = 0;
  /** Our queued output at the last sample, to tell when the kernel took more of it. */
  #queuedSample = 0;
  /** The kernel's count of bytes the server has not acknowledged, at the last sample (undefined: none yet). */
  #unackedSample: number | undefined;

  /** @internal Use {@link connect}. */
  constructor(socket: net.Socket, options: ResolvedClientOptions, reads?: LargeReads) {
    this.#options = options;
    this.#closedPromise = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#attach(socket, reads);
  }

  /** Puts a fresh socket under this client and starts its hello. */
  #attach(socket: net.Socket, reads: LargeReads | undefined): void {
    let hello!: { resolve(): void; reject(error: Error): void };
    this.#ready = new Promise<void>((resolve, reject) => {
      hello = { resolve, reject };
    });
    this.#ready.catch(() => {});
    this.#hello = hello;
    this.#server = undefined;
    this.#goodbye = undefined;
    this.#reaped = false;
    // Events of a connection this client has moved on from are ignored (it only winds down).
    const conn: Connection = new Connection(
      socket,
      {
        frame: (frame) => {
          if (conn === this.#conn) this.#onFrame(frame);
        },
        peerEnd: () => {
          if (conn === this.#conn) this.#onPeerEnd();
          else conn.end();
        },
        protocolError: (error) => {
          if (conn === this.#conn) this.#onProtocolError(error);
          else conn.destroy();
        },
        close: (reason, error) => {
          if (conn === this.#conn) this.#onClose(reason, error);
        },
      },
      { maxFrameBytes: this.#options.maxFrameBytes, payloadPool: this.#payloads, externalReads: reads !== undefined },
    );
    if (reads) reads.target = conn;
    this.#conn = conn;
    conn.write(this.#options.token === undefined ? CLIENT_OPENING : clientOpening(this.#options.token));
  }

  /**
   * Reconnects after the server closed the connection as idle, and sends again the requests
   * that crossed its goodbye (the server had nothing in flight when it said goodbye, so none of
   * them was served: sending them again cannot run anything twice).
   */
  #revive(): Promise<void> {
    this.#reviving ??= (async () => {
      try {
        // A few tries with exponential backoff and jitter: a server restarting is back soon.
        const reads: LargeReads | undefined = this.#options.tls ? undefined : { target: undefined };
        const socket = await withRetries(RECONNECT_RETRIES, () => openSocket(this.#options, Date.now() + this.#options.connectTimeoutMs, reads));
        const deadline = Date.now() + this.#options.connectTimeoutMs;
        this.#attach(socket, reads);
        await helloBy(this.#ready, deadline, `${this.remote} sent no hello within ${this.#options.connectTimeoutMs} ms`);
        for (const [pending] of this.#resend.splice(0)) {
          pending.id = this.#allocateId();
          this.#pending.set(pending.id, pending);
          this.#sendRequest(pending.type, pending.id, pending.payload);
        }
      } catch (error) {
        for (const [pending] of this.#resend.splice(0)) pending.reject(error as Error);
        this.#failure ??= error as Error;
        this.#state = 'closed';
        this.#conn.destroy();
        this.#resolveClosed(error as Error);
        throw error;
      } finally {
        this.#reviving = undefined;
      }
    })();
    return this.#reviving;
  }

  #sendRequest(type: number, id: number, payload: Uint8Array): void {
    this.#conn.sendFrame(type, id, payload);
  }

  /** @internal Resolves once the server's hello arrived. */
  get ready(): Promise<void> {
    return this.#ready;
  }

  /** What the server said in its hello: version, services, limits. */
  get server(): ServerHello {
    if (this.#server === undefined) throw new Error('the hello exchange is not finished');
    return this.#server;
  }

  /** `host:port` of the server. */
  get remote(): string {
    return this.#options.label;
  }

  get state(): ClientState {
    return this.#state;
  }

  /** Requests sent and not yet answered (including abandoned ones the server still works on). */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Sends one message and resolves with the server's reply.
   * @example const reply = await client.send('hello'); console.log(reply.toString());
   */
  async send(message: string | Uint8Array, options?: RequestOptions): Promise<Buffer> {
    const payload = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
    const frame = await this.request(FrameType.MESSAGE, payload, FrameType.MESSAGE_REPLY, options);
    return frame.payload;
  }

  /** Round-trip time of a PING, in milliseconds. */
  async ping(options?: RequestOptions): Promise<number> {
    const started = process.hrtime.bigint();
    const probe = Buffer.alloc(8);
    probe.writeBigUInt64BE(started);
    const frame = await this.request(FrameType.PING, probe, FrameType.PONG, options);
    if (frame.payload.length > MAX_PING_BYTES || !frame.payload.equals(probe)) {
      throw this.#fatal(new ProtocolError('PROTOCOL_ERROR', 'PONG does not echo the PING'));
    }
    return Number(process.hrtime.bigint() - started) / 1e6;
  }

  /**
   * Sends one request frame and resolves with its one reply frame of type `replyType`. An ERROR
   * reply rejects with a {@link RemoteError}. For service clients built on this core.
   */
  async request(type: number, payload: Uint8Array, replyType: number, options: RequestOptions = {}): Promise<Frame> {
    let reply: Frame | undefined;
    await this.stream(
      type,
      payload,
      {
        isFinal: () => true,
        frame: (frame) => {
          if (frame.type !== replyType) {
            throw new ProtocolError('PROTOCOL_ERROR', `expected ${frameTypeName(replyType)}, got ${frameTypeName(frame.type)}`);
          }
          reply = frame;
        },
      },
      options,
    );
    return reply!;
  }

  /**
   * Sends one request and feeds every frame of its reply to `consumer` until the final one; an
   * ERROR reply rejects with a {@link RemoteError}. The timeout counts from the last frame
   * received, so a long transfer that keeps making progress never times out. For service
   * clients (downloads) built on this core.
   */
  async stream(type: number, payload: Uint8Array, consumer: StreamConsumer, options: RequestOptions = {}): Promise<void> {
    if (this.#reaped || this.#reviving) await this.#revive();
    this.#checkUsable();
    const limit = this.#server!.limits.maxFrameBytes;
    if (payload.length > limit) {
      throw new TcpkitError('FRAME_TOO_LARGE', `request of ${payload.length} bytes exceeds the server's limit of ${limit} bytes`);
    }
    if (options.signal?.aborted) throw abortError(options.signal);
    const timeoutMs = options.timeoutMs ?? this.#options.requestTimeoutMs;
    if (this.#waiting.length > 0 || this.#pending.size + this.#reserved >= this.#server!.limits.maxInFlight) {
      // Wait for a slot, in order; the slot is reserved for us when we are woken. The wait is
      // bounded by the timeout too, measured as no reply to any request for that long: slots
      // held by abandoned requests of a server that stopped answering never free up.
      const waiting = new Promise<void>((resolve, reject) => this.#waiting.push({ wake: resolve, fail: reject, timeoutMs, since: Date.now() }));
      if (timeoutMs > 0) this.#armSweep(timeoutMs);
      await waiting;
      this.#reserved--;
      try {
        this.#checkUsable();
        if (options.signal?.aborted) throw abortError(options.signal);
      } catch (error) {
        this.#wakeWaiting();
        throw error;
      }
    }
    return new Promise<void>((resolve, reject) => {
      const id = this.#allocateId();
      const pending: Pending = {
        id,
        type,
        payload,
        isFinal: (frame) => consumer.isFinal(frame),
        deliver: (frame) => consumer.frame(frame),
        complete: resolve,
        reject,
        timeoutMs,
        deadline: timeoutMs > 0 ? Date.now() + timeoutMs : 0,
        abandoned: false,
        onAbort: undefined,
        signal: options.signal,
        sent: false,
        unblock: undefined,
      };
      if (timeoutMs > 0 || this.#options.heartbeatMs > 0) this.#armSweep(timeoutMs > 0 ? timeoutMs : Infinity);
      if (options.signal) {
        const signal = options.signal;
        pending.onAbort = () => this.#abandon(id, pending, abortError(signal));
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.#pending.set(id, pending);
      this.#sendRequest(type, id, payload);
      consumer.opened?.({ send: (frameType, framePayload, onSent) => this.#sendContinuation(pending, frameType, framePayload, onSent) });
    });
  }

  async #sendContinuation(pending: Pending, type: number, payload: Uint8Array, onSent: (() => void) | undefined): Promise<void> {
    const over = (): Error => new TcpkitError('CANCELLED', 'the request is over: nothing more can be sent for it');
    if (pending.abandoned || this.#pending.get(pending.id) !== pending) throw over();
    const limit = this.#server!.limits.maxFrameBytes;
    if (payload.length > limit) throw new TcpkitError('FRAME_TOO_LARGE', `frame of ${payload.length} bytes exceeds the server's limit of ${limit} bytes`);
    pending.sent = true;
    if (!this.#conn.sendFrame(type, pending.id, payload, onSent)) await this.#roomToSend(pending);
    if (pending.abandoned) throw over();
    const now = Date.now();
    this.#sendProgressAt = now;
    if (pending.deadline !== 0) pending.deadline = now + pending.timeoutMs;
  }

  /**
   * Waits until the send buffer has room again, or the request is over (timed out, failed,
   * answered): a server that takes none of our bytes never drains it, and the caller must hear
   * of the timeout all the same. Meanwhile the sweep watches the server take our bytes (see
   * {@link #sampleOutput}): that, not only a drain, is progress.
   */
  async #roomToSend(pending: Pending): Promise<void> {
    const conn = this.#conn;
    try {
      await new Promise<void>((resolve) => {
        pending.unblock = resolve;
        void conn.drained().then(resolve);
      });
    } finally {
      pending.unblock = undefined;
    }
  }

  /**
   * Samples our output for requests that sent content: whether the server took some of it since
   * the last sample, and whether some is still not taken. Taken means our queue shrank (the
   * kernel took more), or the kernel's count of bytes the server has not acknowledged fell. The
   * kernel takes more only once a third of its send buffer is free, so a slow but steady server
   * can show no drain for many seconds, and bytes it holds after the last drain are still on
   * their way; its count (a read of /proc, so read only once the queue has not moved for
   * `quietMs`) shows both. The same measures as the server's send-stall rule (transport/watchdog.ts).
   */
  #sampleOutput(now: number, quietMs: number): { moved: boolean; outstanding: boolean } {
    const queued = this.#conn.queuedBytes();
    const previous = this.#queuedSample;
    this.#queuedSample = queued;
    if (queued < previous) {
      this.#unackedSample = undefined; // the kernel's count rises as it takes more: a new baseline
      return { moved: true, outstanding: true };
    }
    if (now - this.#sendProgressAt < quietMs) return { moved: false, outstanding: queued > 0 };
    const unacked = this.#conn.unacknowledgedBytes();
    const before = this.#unackedSample;
    this.#unackedSample = unacked;
    const moved = unacked !== undefined && before !== undefined && unacked < before;
    return { moved, outstanding: queued > 0 || (unacked !== undefined && unacked > 0) };
  }

  /**
   * One timer per connection, not one per request: it sweeps the requests in flight for expired
   * deadlines, at an eighth of the shortest timeout (so a timeout fires at most 12.5% late).
   */
  #armSweep(timeoutMs: number): void {
    const heartbeat = this.#options.heartbeatMs > 0 ? Math.floor(this.#options.heartbeatMs / 4) : Infinity;
    const every = Math.min(1000, heartbeat, Math.max(5, Math.floor(timeoutMs / 8)));
    if (this.#sweepTimer !== undefined && every >= this.#sweepEvery) return;
    clearTimeout(this.#sweepTimer);
    this.#sweepEvery = every;
    this.#sweepTimer = setTimeout(this.#sweep, every);
  }

  #sweep = (): void => {
    this.#sweepTimer = undefined;
    const now = Date.now();
    let shortest = 0;
    // Bytes the server takes are progress for the requests that sent them, as a reply would be.
    // The kernel's count is wanted from half the shortest deadline it could save.
    let quietMs = Infinity;
    const heartbeatMs = this.#options.heartbeatMs;
    for (const pending of this.#pending.values()) {
      if (pending.sent && pending.deadline !== 0) quietMs = Math.min(quietMs, pending.timeoutMs / 2);
      if (pending.sent && heartbeatMs > 0) quietMs = Math.min(quietMs, heartbeatMs / 2);
    }
    const output = quietMs === Infinity || this.#paused ? undefined : this.#sampleOutput(now, quietMs);
    if (output?.moved) {
      this.#sendProgressAt = now;
      // A server taking our bytes is alive, though it has nothing to say until the upload ends
      // (and our PING waits behind those bytes): the heartbeat counts this as hearing from it.
      this.#lastReceived = now;
      if (this.#pingSentAt !== 0) this.#pingSentAt = now;
      this.#pushDeadlines(now, true);
    }
    for (const [id, pending] of this.#pending) {
      if (pending.abandoned || pending.deadline === 0) continue;
      // While we do not read, no reply can arrive: the time does not count (see resumeReading).
      if (pending.deadline <= now && !this.#paused) {
        if (pending.sent && output?.outstanding === true) {
          // Nothing can get through a connection whose server takes none of our bytes: every
          // request on it, and whatever would follow, is failed with this one.
          this.#fatal(new TimeoutError('REQUEST_TIMEOUT', `no progress from ${this.remote} within ${pending.timeoutMs} ms: it took none of the bytes sent and sent no reply`));
          return;
        }
        this.#abandon(id, pending, new TimeoutError('REQUEST_TIMEOUT', `no reply from ${this.remote} within ${pending.timeoutMs} ms`));
      } else if (shortest === 0 || pending.timeoutMs < shortest) {
        shortest = pending.timeoutMs;
      }
    }
    // Requests waiting for a slot: failed once no reply to anything came for their timeout.
    for (let i = 0; i < this.#waiting.length; ) {
      const waiter = this.#waiting[i]!;
      if (waiter.timeoutMs > 0 && !this.#paused && now - Math.max(waiter.since, this.#lastReply, this.#sendProgressAt) >= waiter.timeoutMs) {
        this.#waiting.splice(i, 1);
        waiter.fail(
          new TimeoutError('REQUEST_TIMEOUT', `no reply from ${this.remote} within ${waiter.timeoutMs} ms (the request waited for a free slot: all ${this.#server?.limits.maxInFlight} were taken)`),
        );
        continue;
      }
      if (waiter.timeoutMs > 0 && (shortest === 0 || waiter.timeoutMs < shortest)) shortest = waiter.timeoutMs;
      i++;
    }
    if (this.#heartbeat(now)) return;
    if (shortest > 0 || (this.#pending.size > 0 && this.#options.heartbeatMs > 0)) {
      this.#sweepEvery = Infinity;
      this.#armSweep(shortest > 0 ? shortest : Infinity);
    }
  };

  /**
   * Heartbeat: while replies are awaited and nothing has arrived for `heartbeatMs`, PING; no
   * frame at all for another `heartbeatMs` means the server (or the path to it) is dead.
   * Returns true when it declared the connection dead.
   */
  #heartbeat(now: number): boolean {
    const every = this.#options.heartbeatMs;
    if (every <= 0 || this.#pending.size === 0 || this.#server === undefined || this.#conn.writeEnded) return false;
    // Paused, we could not read a pong: silence measured while we do not read proves nothing.
    if (this.#paused) return false;
    if (this.#pingSentAt === 0) {
      if (now - this.#lastReceived >= every) {
        this.#pingSentAt = now;
        this.#conn.sendFrame(FrameType.PING, CONNECTION_ID);
      }
      return false;
    }
    if (now - this.#pingSentAt < every) return false;
    this.#fatal(new ConnectionError('CONNECTION_FAILED', `${this.remote} stopped answering: no pong within ${every} ms`));
    return true;
  }

  /**
   * @internal A service client hands back a payload buffer it has finished with (written to
   * disk), so the next one reuses it. Only buffers nothing else references may be given back.
   */
  releasePayload(buffer: Buffer): void {
    this.#payloads.give(buffer);
  }

  /**
   * @internal Stops reading the socket (backpressure from a slow consumer, e.g. a disk). While
   * paused, neither the heartbeat nor the request timeouts run: the server cannot be heard.
   */
  pauseReading(): void {
    this.#paused = true;
    this.#conn.pause();
  }

  /**
   * @internal Reads the socket again. The heartbeat and the request timeouts count afresh from
   * now, as if a frame had just arrived: only time spent reading counts against the server.
   */
  resumeReading(): void {
    if (this.#paused) {
      this.#paused = false;
      const now = Date.now();
      this.#lastReceived = now;
      this.#lastReply = Math.max(this.#lastReply, now);
      if (this.#pingSentAt !== 0) this.#pingSentAt = now;
      this.#pushDeadlines(now, false);
    }
    this.#conn.resume();
  }

  /**
   * Progress seen now (the server took our bytes, or we read again): the requests' deadlines
   * count from now, those that sent content only, or all. An abandoned request has none (0).
   */
  #pushDeadlines(now: number, sendingOnly: boolean): void {
    for (const pending of this.#pending.values()) {
      if (pending.deadline !== 0 && (pending.sent || !sendingOnly)) pending.deadline = Math.max(pending.deadline, now + pending.timeoutMs);
    }
  }

  /**
   * Graceful close: waits for the replies callers still await, says goodbye, and resolves once
   * the connection is closed. Requests already abandoned (timed out, aborted) are not waited
   * for: their CANCEL went out and nobody wants their answer, so once only they remain the
   * connection is closed at once (a server that stopped answering must not hold the process).
   * Rejects with the protocol error that broke the connection when no request was there to
   * report it (a hostile server's second reply after the last one awaited). Idempotent.
   */
  async close(): Promise<void> {
    if (this.#state === 'open') {
      this.#state = 'closing';
      this.#wakeAll();
      if (this.#reviving) await this.#reviving.catch(() => {});
      if (this.#conn.closed) this.#finishDormant(undefined);
      else this.#maybeEnd();
    }
    await this.#closedPromise;
    if (this.#unreported) throw this.#unreported;
  }

  /** Closing a client whose connection the server already closed as idle: nothing to wind down. */
  #finishDormant(error: Error | undefined): void {
    clearTimeout(this.#sweepTimer);
    this.#state = 'closed';
    this.#failure ??= error ?? new ConnectionError('CLIENT_CLOSED', 'the client is closed');
    this.#failAll(this.#failure);
    this.#resolveClosed(error);
  }

  /** Closes at once; requests in flight reject with `error` (or CLIENT_CLOSED). Idempotent. */
  destroy(error?: Error): void {
    this.#failure ??= error ?? new ConnectionError('CLIENT_CLOSED', 'the client was destroyed');
    if (this.#conn.closed && this.#state !== 'closed') this.#finishDormant(this.#failure);
    else this.#conn.destroy(error);
  }

  /** Resolves when the connection is closed: with the error that closed it, or undefined after a clean close. */
  closed(): Promise<Error | undefined> {
    return this.#closedPromise;
  }

  #checkUsable(): void {
    if (this.#failure) throw this.#failure;
    if (this.#goodbye) throw this.#goodbye;
    if (this.#state !== 'open') throw new ConnectionError('CLIENT_CLOSED', 'the client is closed');
    if (this.#conn.writeEnded || this.#conn.peerEnded) {
      throw new ConnectionError('CONNECTION_CLOSED', `${this.remote} closed the connection`);
    }
  }

  #allocateId(): number {
    for (;;) {
      const id = this.#nextId;
      this.#nextId = id >= MAX_REQUEST_ID ? 1 : id + 1;
      if (!this.#pending.has(id)) return id;
    }
  }

  /** Answers the caller now (timeout, abort) but keeps the id reserved until the server replies. */
  #abandon(id: number, pending: Pending, error: Error, cancel = true): void {
    if (pending.abandoned) return;
    pending.abandoned = true;
    this.#clearPending(pending);
    pending.reject(error);
    if (cancel && !this.#conn.writeEnded) this.#conn.sendFrame(FrameType.CANCEL, id);
  }

  #clearPending(pending: Pending): void {
    pending.deadline = 0;
    pending.unblock?.();
    if (pending.onAbort) pending.signal?.removeEventListener('abort', pending.onAbort);
  }

  #wakeWaiting(): void {
    const limit = this.#server?.limits.maxInFlight ?? 1;
    while (this.#waiting.length > 0 && this.#pending.size + this.#reserved < limit) {
      this.#reserved++;
      this.#waiting.shift()!.wake();
    }
  }

  /** Wakes every request waiting for a slot; each re-checks usability and throws. */
  #wakeAll(): void {
    for (const waiter of this.#waiting.splice(0)) {
      this.#reserved++;
      waiter.wake();
    }
  }

  #onFrame(frame: Frame): void {
    // Any frame shows the server alive.
    this.#lastReceived = Date.now();
    this.#pingSentAt = 0;
    if (this.#server === undefined) {
      this.#onHelloFrame(frame);
      return;
    }
    switch (frame.type) {
      case FrameType.PONG:
        if (frame.id === CONNECTION_ID) return; // our heartbeat's answer
        this.#settle(frame);
        return;
      case FrameType.PING:
        if (frame.payload.length <= MAX_PING_BYTES) this.#conn.sendFrame(FrameType.PONG, frame.id, frame.payload);
        return;
      case FrameType.GOODBYE:
        this.#onGoodbye(frame);
        return;
      case FrameType.ERROR:
        if (frame.id === CONNECTION_ID) {
          const body = this.#decodeErrorOrFail(frame, 'error');
          if (body) this.#fatal(new RemoteError(body.code, `server error: ${body.message || body.code}`));
          return;
        }
        this.#settle(frame);
        return;
      default:
        this.#settle(frame);
    }
  }

  #settle(frame: Frame): void {
    const id = frame.id;
    const pending = this.#pending.get(id);
    this.#lastReply = Date.now();
    // An id stays in #pending until its final frame arrives, abandoned (timed out, aborted,
    // cancelled) or not: frames that crossed our CANCEL on the wire land here and are dropped.
    // That record is bounded (abandoned requests keep their in-flight slot, so there are at most
    // maxInFlight of them). Any other id is not in flight: never sent, or already answered (a
    // second reply): the server is broken or hostile and the connection is failed.
    if (pending === undefined) {
      this.#fatal(
        new ProtocolError('PROTOCOL_ERROR', `${this.remote} sent ${frameTypeName(frame.type)} for request id ${id}, which is not in flight (already answered, or never sent)`),
      );
      return;
    }
    const isError = frame.type === FrameType.ERROR;
    let final: boolean;
    try {
      final = isError || pending.isFinal(frame);
    } catch (error) {
      this.#fatal(error as Error);
      return;
    }
    if (!pending.abandoned) {
      if (isError) {
        const body = this.#decodeErrorOrFail(frame, 'error');
        if (!body) return;
        this.#abandon(id, pending, new RemoteError(body.code, body.message || body.code), false);
      } else {
        try {
          pending.deliver(frame);
        } catch (error) {
          if (error instanceof ProtocolError) {
            this.#fatal(error);
            return;
          }
          this.#abandon(id, pending, error as Error, !final);
        }
        if (pending.deadline !== 0) pending.deadline = Date.now() + pending.timeoutMs;
      }
    }
    if (!final) return;
    this.#pending.delete(id);
    if (!pending.abandoned) {
      this.#clearPending(pending);
      pending.abandoned = true;
      pending.complete();
    }
    this.#wakeWaiting();
    this.#maybeEnd();
  }

  #decodeErrorOrFail(frame: Frame, what: string): ReturnType<typeof decodeErrorBody> | undefined {
    try {
      return decodeErrorBody(frame.payload, what);
    } catch (error) {
      this.#fatal(error as Error);
      return undefined;
    }
  }

  #onHelloFrame(frame: Frame): void {
    if (frame.type === FrameType.ERROR && frame.id === CONNECTION_ID) {
      const body = this.#decodeErrorOrFail(frame, 'error');
      if (body) this.#fatal(new RemoteError(body.code, `server refused the connection: ${body.message || body.code}`));
      return;
    }
    if (frame.type !== FrameType.HELLO || frame.id !== CONNECTION_ID) {
      this.#fatal(new ProtocolError('PROTOCOL_ERROR', `expected the server's HELLO, got ${frameTypeName(frame.type)}`));
      return;
    }
    let hello: ServerHello;
    try {
      hello = decodeServerHello(frame.payload);
    } catch (error) {
      this.#fatal(error as Error);
      return;
    }
    if (!SUPPORTED_VERSIONS.includes(hello.version)) {
      this.#fatal(new ProtocolError('UNSUPPORTED_VERSION', `the server chose protocol version ${hello.version}, which this client does not speak`));
      return;
    }
    this.#server = hello;
    this.#hello.resolve();
  }

  #onGoodbye(frame: Frame): void {
    const body = this.#decodeErrorOrFail(frame, 'goodbye');
    if (!body) return;
    const why = body.message || body.code;
    if (body.code === 'IDLE_TIMEOUT' && this.#state === 'open') {
      // Reaped as idle: invisible to the caller. What is pending crossed the goodbye unserved.
      this.#reaped = true;
      for (const [id, pending] of this.#pending) if (!pending.abandoned) this.#resend.push([pending, id]);
      this.#pending.clear();
      this.#conn.end();
      if (this.#resend.length > 0) this.#revive().catch(() => {});
      return;
    }
    this.#goodbye = new RemoteError(body.code === 'NORMAL' ? 'CONNECTION_CLOSED' : body.code, `the server closed the connection: ${why}`);
    this.#wakeAll();
    this.#maybeEnd();
  }

  /** True while some request in flight still has a caller waiting for its reply. */
  #awaited(): boolean {
    for (const pending of this.#pending.values()) if (!pending.abandoned) return true;
    return false;
  }

  /**
   * Ends our side when no caller awaits a reply and we close, or the server said goodbye. With
   * abandoned requests still in flight the connection is destroyed right after the goodbye:
   * their answers are owed to nobody, and waiting for them is waiting on a server that may
   * never answer (the reason they were abandoned).
   */
  #maybeEnd(): void {
    // Cheap checks first: this runs after every final reply frame.
    if (this.#conn.writeEnded || (this.#state !== 'closing' && !this.#goodbye) || this.#awaited()) return;
    if (this.#state === 'closing') {
      this.#conn.sendFrame(FrameType.GOODBYE, CONNECTION_ID, encodeErrorBody({ code: 'NORMAL', message: 'client done' }));
    }
    this.#conn.end();
    if (this.#pending.size > 0) this.#conn.destroy();
    else this.#lingerTimer = setTimeout(() => this.#conn.destroy(), 5_000);
  }

  #onPeerEnd(): void {
    if (this.#reaped) {
      this.#conn.end();
      return;
    }
    const why =
      this.#goodbye ??
      new ConnectionError(
        'CONNECTION_CLOSED',
        this.#server === undefined
          ? `${this.remote} closed the connection during the hello (does it require TLS? is it a tcpkit server?)`
          : `${this.remote} closed the connection before replying`,
      );
    if (this.#pending.size > 0) this.#failure ??= why;
    this.#failAll(why);
    this.#conn.end();
  }

  #onProtocolError(error: ProtocolError): void {
    if (error.wireCode === 'NOT_TCPKIT') {
      this.#fatal(new ProtocolError('NOT_TCPKIT', `the server at ${this.remote} does not speak the tcpkit protocol (a raw server?)`));
    } else {
      this.#fatal(error);
    }
  }

  /** A broken connection: every caller is told `error`, and the socket is destroyed. */
  #fatal(error: Error): Error {
    const first = this.#failure === undefined;
    this.#failure ??= error;
    const told = this.#failAll(this.#failure);
    // A protocol error nobody heard of (no request awaited) must not vanish: close() reports it.
    if (first && !told && error instanceof ProtocolError) this.#unreported = error;
    this.#conn.destroy(error);
    return this.#failure;
  }

  /** Rejects every caller still waiting with `error`; true when there was one. */
  #failAll(error: Error): boolean {
    let told = false;
    if (this.#server === undefined) {
      this.#hello.reject(error);
      told = true;
    }
    for (const pending of this.#pending.values()) {
      if (!pending.abandoned) {
        pending.abandoned = true;
        this.#clearPending(pending);
        pending.reject(error);
        told = true;
      }
    }
    this.#pending.clear();
    this.#wakeAll();
    return told;
  }

  #onClose(reason: CloseReason, error: Error | undefined): void {
    clearTimeout(this.#lingerTimer);
    if (this.#reaped && this.#state === 'open' && this.#failure === undefined) return; // dormant until the next request
    clearTimeout(this.#sweepTimer);
    this.#state = 'closed';
    let failure = this.#failure ?? (this.#goodbye?.wireCode === 'CONNECTION_CLOSED' ? undefined : this.#goodbye);
    // Abandoned requests are owed to nobody: a close with only those in flight is clean.
    if (failure === undefined && (this.#awaited() || this.#server === undefined || reason === 'reset' || reason === 'error')) {
      const what = error ? `: ${(error as NodeJS.ErrnoException).code ?? error.message}` : '';
      failure =
        reason === 'reset' || reason === 'error'
          ? new ConnectionError('CONNECTION_FAILED', `connection to ${this.remote} lost${what}`, { cause: error })
          : new ConnectionError(
              'CONNECTION_CLOSED',
              `${this.remote} closed the connection${this.#server ? ' before replying' : ' during the hello (not a tcpkit server?)'}`,
            );
    }
    this.#failure ??= failure ?? new ConnectionError('CLIENT_CLOSED', 'the client is closed');
    this.#failAll(this.#failure);
    this.#resolveClosed(failure);
  }
}

/** Waits for the server's hello until `deadline` (ms since the epoch); then CONNECT_TIMEOUT with `message`. */
async function helloBy(ready: Promise<void>, deadline: number, message: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError('CONNECT_TIMEOUT', message)), Math.max(0, deadline - Date.now()));
  });
  try {
    await Promise.race([ready, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Connects to a tcpkit server and completes the hello exchange.
 * @example
 * const client = await connect('127.0.0.1:7890');
 * console.log((await client.send('hello')).toString());
 * await client.close();
 */
export async function connect(target: Target, options?: ClientOptions): Promise<Client> {
  const resolved = resolveClientOptions(target, options);
  if (resolved.signal?.aborted) throw abortError(resolved.signal);
  const deadline = Date.now() + resolved.connectTimeoutMs;
  // Large reads into a reused buffer need a plain socket (TLS sockets read through OpenSSL).
  const reads: LargeReads | undefined = resolved.tls ? undefined : { target: undefined };
  const socket = await openSocket(resolved, deadline, reads);
  const client = new Client(socket, resolved, reads);
  try {
    await helloBy(client.ready, deadline, `${resolved.label} accepted the connection but sent no hello within ${resolved.connectTimeoutMs} ms`);
  } catch (error) {
    client.destroy(error as Error);
    throw error;
  }
  return client;
}
