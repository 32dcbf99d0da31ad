/**
 * The client's role on the framed-session core (`src/session/`): the core drives the connection
 * (opening, hello checks, PING/PONG, GOODBYE and ERROR(0) in and out, linger, how it closed);
 * this role checks the server's hello, hands replies to the requests in flight (`flight.ts`),
 * turns an idle goodbye into a reconnect (`reconnect.ts`), and decides with what error each
 * caller is told when it ends. Not exported from the package: `Client` is its public face.
 */
import { ConnectionError, ProtocolError, RemoteError, TcpkitError } from '../errors.js';
import { SUPPORTED_VERSIONS } from '../protocol/constants.js';
import { decodeServerHello, type ErrorBody, type ServerHello } from '../protocol/control.js';
import type { Frame } from '../protocol/frame.js';
import { BYTE_STREAM_TYPES } from '../protocol/types.js';
import { FramedSession, type SessionRole } from '../session/session.js';
import type { LargeReads } from '../transport/dial.js';
import type { CloseReason } from '../transport/peer.js';
import { NO_HOLD, type InputHold } from '../transport/read-slabs.js';
import { bulkBuffers } from '../util/buffer-pool.js';
import type { Clock } from '../util/clock.js';
import { Flight, type RequestOptions } from './flight.js';
import { CLIENT_OPENING, clientOpening, helloBy, openConnection, type Opened } from './opening.js';
import type { ResolvedClientOptions } from './options.js';
import { Reconnect } from './reconnect.js';
import type { StreamConsumer } from './requests.js';

export type { RequestOptions } from './flight.js';

/** State of a client: open, closing (no new requests), closed. */
export type ClientState = 'open' | 'closing' | 'closed';

/** What the role tells the public `Client` (its lifecycle events). */
export interface RoleEvents {
  /** The server said goodbye. */
  goodbye(code: string, message: string): void;
  /** A new connection replaced the one the server closed as idle; `resent` requests were sent again. */
  reconnect(resent: number): void;
  /** The client is closed, with the error that closed it (undefined: a clean close). */
  close(error: Error | undefined): void;
}

/** The client's side of its sessions: see the file's comment. */
export class ClientRole {
  readonly #options: ResolvedClientOptions;
  readonly #clock: Clock;
  readonly #events: RoleEvents;
  readonly #flight: Flight;
  readonly #reconnect: Reconnect<Opened>;
  #session!: FramedSession;
  #state: ClientState = 'open';
  #server: ServerHello | undefined;
  #hello!: { resolve(): void; reject(error: Error): void };
  #ready!: Promise<void>;
  /** The server closed this session as idle (its GOODBYE said IDLE_TIMEOUT): the next request opens a new one. */
  #reaped = false;
  #failure: Error | undefined;
  /** The server's goodbye (other than an idle one): what a new request is told. */
  #goodbye: TcpkitError | undefined;
  readonly #closedPromise: Promise<Error | undefined>;
  #resolveClosed!: (error: Error | undefined) => void;
  #closeReported = false;
  /** DATA payloads of downloads are assembled in these and given back once written. */
  readonly #payloads = bulkBuffers;
  /** The large reads of the current session's socket, when it has them (plain TCP). */
  #reads: LargeReads | undefined;
  /** A protocol error that broke the connection when no caller awaited anything: close() reports it. */
  #unreported: Error | undefined;

  /** Starts the hello on `opened` (a socket just connected); `events` hears of the lifecycle. */
  constructor(opened: Opened, options: ResolvedClientOptions, events: RoleEvents) {
    this.#events = events;
    this.#options = options;
    this.#clock = options.clock;
    this.#flight = new Flight(options, {
      session: () => this.#session,
      server: () => this.#server,
      usable: async () => {
        if (this.#reaped || this.#reconnect.reviving) await this.#reconnect.revive();
        this.#checkUsable();
      },
      checkUsable: () => this.#checkUsable(),
      fatal: (error) => this.#fatal(error),
      workDone: () => this.#maybeEnd(),
    });
    this.#reconnect = new Reconnect<Opened>(this.#clock, {
      dial: () => openConnection(this.#options),
      start: async (next) => {
        if (this.#state === 'closed') {
          // Destroyed while dialing: the new connection is not wanted.
          next.socket.destroy();
          throw this.#failure ?? new ConnectionError('CLIENT_CLOSED', 'the client was destroyed');
        }
        const deadline = this.#clock.now() + this.#options.connectTimeoutMs;
        this.#attach(next);
        await helloBy(this.#clock, this.#ready, deadline, `${this.label} sent no hello within ${this.#options.connectTimeoutMs} ms`);
      },
      resend: (pending) => this.#flight.send(pending),
      reconnected: (resent) => this.#events.reconnect(resent),
      failed: (error) => {
        this.#failure ??= error;
        this.#state = 'closed';
        this.#session.destroy();
        this.#flight.stop();
        this.#failAll(this.#failure);
        this.#finish(error);
      },
    });
    this.#closedPromise = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#attach(opened);
  }

  /** Puts a fresh socket under this client: a new session, its opening (preamble and HELLO) sent. */
  #attach({ socket, reads }: Opened): void {
    let hello!: { resolve(): void; reject(error: Error): void };
    this.#ready = new Promise<void>((resolve, reject) => {
      hello = { resolve, reject };
    });
    this.#ready.catch(() => {});
    this.#hello = hello;
    this.#server = undefined;
    this.#goodbye = undefined;
    this.#reaped = false;
    const session: FramedSession = new FramedSession(socket, this.#roleFor(() => session), {
      side: 'client',
      maxFrameBytes: this.#options.maxFrameBytes,
      clock: this.#clock,
      opening: this.#options.token === undefined ? CLIENT_OPENING : clientOpening(this.#options.token),
      // DATA in pieces, as views of the read slabs: no received byte of content is copied.
      connection: { payloadPool: this.#payloads, externalReads: reads !== undefined, pieceTypes: BYTE_STREAM_TYPES },
    });
    this.#reads = reads;
    if (reads) reads.target = session.connection;
    this.#session = session;
  }

  /**
   * The role one session plugs into. A session this client has moved on from (after an idle
   * goodbye) only winds down: its events are not the current session's.
   */
  #roleFor(own: () => FramedSession): SessionRole {
    const current = (): boolean => own() === this.#session;
    return {
      received: () => {
        if (current()) this.#flight.received();
      },
      hello: (frame) => {
        if (current()) this.#onHello(frame);
      },
      frame: (frame) => {
        if (current()) this.#flight.settle(frame);
      },
      goodbye: (body) => {
        if (current()) this.#onGoodbye(body);
      },
      remoteError: (body) => {
        if (!current()) return undefined;
        const why = body.message || body.code;
        const refused = this.#server === undefined;
        return this.#broken(new RemoteError(body.code, refused ? `server refused the connection: ${why}` : `server error: ${why}`));
      },
      protocolError: (error) => (current() ? this.#broken(this.#explained(error)) : undefined),
      peerEnded: () => {
        if (current()) this.#onPeerEnd();
        else own().endNow('peer-ended');
      },
      busy: () => current() && this.#flight.requests.awaited(),
      closed: (reason, error) => {
        if (current()) this.#onClose(reason, error);
      },
    };
  }

  /** The client is closed: resolves `closed()` and tells the lifecycle, once. */
  #finish(error: Error | undefined): void {
    if (this.#closeReported) return;
    this.#closeReported = true;
    this.#resolveClosed(error);
    this.#events.close(error);
  }

  /** Resolves once the server's hello arrived. */
  get ready(): Promise<void> {
    return this.#ready;
  }

  /** What the server said in its hello: version, services, limits. */
  get server(): ServerHello {
    if (this.#server === undefined) throw new TcpkitError('INVALID_STATE', 'the hello exchange is not finished');
    return this.#server;
  }

  /** `host:port` of the server. */
  get label(): string {
    return this.#options.label;
  }

  /** Open, closing (no new requests) or closed. */
  get state(): ClientState {
    return this.#state;
  }

  /** Requests sent and not yet answered (including abandoned ones the server still works on). */
  get inFlight(): number {
    return this.#flight.requests.size;
  }

  /** Sends one request and feeds its reply to `consumer`: see `Client.stream`. */
  stream(type: number, payload: Uint8Array, consumer: StreamConsumer, options: RequestOptions = {}): Promise<void> {
    return this.#flight.stream(type, payload, consumer, options);
  }

  /**
   * A service client hands back a payload buffer it has finished with (written to disk), so the
   * next one reuses it. Only buffers nothing else references may be given back.
   */
  releasePayload(buffer: Buffer): void {
    this.#payloads.give(buffer);
  }

  /** Keeps a received piece's memory (see `ClientInternals.holdInput`); a copy needs no hold. */
  holdInput(piece: Uint8Array): InputHold {
    return this.#reads?.slabs.hold(piece) ?? NO_HOLD;
  }

  /** Stops reading (see `ClientInternals.pauseReading`): neither the heartbeat nor the request timeouts run. */
  pauseReading(): void {
    this.#flight.pause();
  }

  /** Reads again (see `ClientInternals.resumeReading`): the heartbeat and timeouts count afresh from now. */
  resumeReading(): void {
    this.#flight.resume();
  }

  /** Graceful close: see `Client.close`. Idempotent. */
  async close(): Promise<void> {
    if (this.#state === 'open') {
      this.#state = 'closing';
      this.#flight.limiter.wakeAll();
      await this.#reconnect.settled();
      if (this.#session.connection.closed) this.#finishDormant(undefined);
      else this.#maybeEnd();
    }
    await this.#closedPromise;
    if (this.#unreported) throw this.#unreported;
  }

  /** Closing a client whose connection the server already closed as idle: nothing to wind down. */
  #finishDormant(error: Error | undefined): void {
    this.#flight.stop();
    this.#state = 'closed';
    this.#failure ??= error ?? new ConnectionError('CLIENT_CLOSED', 'the client is closed');
    this.#failAll(this.#failure);
    this.#finish(error);
  }

  /** Closes at once; requests in flight reject with `error` (or CLIENT_CLOSED). Idempotent. */
  destroy(error?: Error): void {
    this.#failure ??= error ?? new ConnectionError('CLIENT_CLOSED', 'the client was destroyed');
    if (this.#session.connection.closed && this.#state !== 'closed') this.#finishDormant(this.#failure);
    else this.#session.destroy(error);
  }

  /** Resolves when the connection is closed: with the error that closed it, or undefined after a clean close. */
  closed(): Promise<Error | undefined> {
    return this.#closedPromise;
  }

  /** Breaks the connection with `error` (e.g. a PONG that does not echo the PING); returns what callers are told. */
  fail(error: Error): Error {
    return this.#fatal(error);
  }

  #checkUsable(): void {
    if (this.#failure) throw this.#failure;
    if (this.#goodbye) throw this.#goodbye;
    if (this.#state !== 'open') throw new ConnectionError('CLIENT_CLOSED', 'the client is closed');
    // The session leaves `open` when either side ends (the peer's EOF ends ours at once).
    if (this.#session.state.name !== 'open') throw new ConnectionError('CONNECTION_CLOSED', `${this.label} closed the connection`);
  }

  #onHello(frame: Frame): void {
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
    this.#session.open();
    this.#hello.resolve();
  }

  #onGoodbye(body: ErrorBody): void {
    const why = body.message || body.code;
    this.#events.goodbye(body.code, body.message);
    if (body.code === 'IDLE_TIMEOUT' && this.#state === 'open') {
      // Reaped as idle: no error to the caller. What is pending crossed the goodbye unserved.
      this.#reaped = true;
      this.#reconnect.hold(this.#flight.requests.takeUnserved());
      this.#session.endNow('idle');
      if (this.#reconnect.held > 0) this.#reconnect.revive().catch(() => {});
      return;
    }
    this.#goodbye = new RemoteError(body.code === 'NORMAL' ? 'CONNECTION_CLOSED' : body.code, `the server closed the connection: ${why}`);
    this.#flight.limiter.wakeAll();
    this.#session.closeWhenDone('peer-goodbye');
    this.#afterEnd();
  }

  /**
   * Ends our side when no caller awaits a reply and we close (GOODBYE NORMAL first), or the
   * server said goodbye: the core does it once the role is not busy.
   */
  #maybeEnd(): void {
    if (this.#state === 'closing') this.#session.closeWhenDone('local', { code: 'NORMAL', message: 'client done' });
    this.#session.workDone();
    this.#afterEnd();
  }

  /**
   * With abandoned requests still in flight the connection is destroyed right after the
   * goodbye: their answers are owed to nobody, and waiting for them is waiting on a server that
   * may never answer (the reason they were abandoned).
   */
  #afterEnd(): void {
    if (this.#session.state.name === 'ended' && this.#flight.requests.size > 0) this.#session.destroy();
  }

  #onPeerEnd(): void {
    if (this.#reaped) {
      this.#session.endNow('peer-ended');
      return;
    }
    const why =
      this.#goodbye ??
      new ConnectionError(
        'CONNECTION_CLOSED',
        this.#server === undefined
          ? `${this.label} closed the connection during the hello (does it require TLS? is it a tcpkit server?)`
          : `${this.label} closed the connection before replying`,
      );
    if (this.#flight.requests.size > 0) this.#failure ??= why;
    this.#failAll(why);
    this.#session.endNow('peer-ended');
  }

  /** A decoder's NOT_TCPKIT, said so a person knows what is at the other end. */
  #explained(error: ProtocolError): ProtocolError {
    if (error.wireCode !== 'NOT_TCPKIT') return error;
    return new ProtocolError('NOT_TCPKIT', `the server at ${this.label} does not speak the tcpkit protocol (a raw server?)`);
  }

  /** A broken connection: every caller is told `error`, and the socket is destroyed. */
  #fatal(error: Error): Error {
    const failure = this.#broken(error);
    this.#session.destroy(error);
    return failure;
  }

  /**
   * Every caller is told the connection broke (the core destroys it, or {@link #fatal} does);
   * returns the error they are told: the first one.
   */
  #broken(error: Error): Error {
    const first = this.#failure === undefined;
    this.#failure ??= error;
    const told = this.#failAll(this.#failure);
    // A protocol error nobody heard of (no request awaited) must not vanish: close() reports it.
    if (first && !told && error instanceof ProtocolError) this.#unreported = error;
    return this.#failure;
  }

  /** Rejects every caller still waiting with `error`; true when there was one. */
  #failAll(error: Error): boolean {
    let told = false;
    if (this.#server === undefined) {
      this.#hello.reject(error);
      told = true;
    }
    if (this.#flight.failAll(error)) told = true;
    return told;
  }

  #onClose(reason: CloseReason, error: Error | undefined): void {
    if (this.#reaped && this.#state === 'open' && this.#failure === undefined) return; // dormant until the next request
    this.#flight.stop();
    this.#state = 'closed';
    let failure = this.#failure ?? (this.#goodbye?.wireCode === 'CONNECTION_CLOSED' ? undefined : this.#goodbye);
    // Abandoned requests are owed to nobody: a close with only those in flight is clean.
    if (failure === undefined && (this.#flight.requests.awaited() || this.#server === undefined || reason === 'reset' || reason === 'error')) {
      const what = error ? `: ${(error as NodeJS.ErrnoException).code ?? error.message}` : '';
      failure =
        reason === 'reset' || reason === 'error'
          ? new ConnectionError('CONNECTION_FAILED', `connection to ${this.label} lost${what}`, { cause: error })
          : new ConnectionError(
              'CONNECTION_CLOSED',
              `${this.label} closed the connection${this.#server ? ' before replying' : ' during the hello (not a tcpkit server?)'}`,
            );
    }
    this.#failure ??= failure ?? new ConnectionError('CLIENT_CLOSED', 'the client is closed');
    this.#failAll(this.#failure);
    this.#finish(failure);
  }
}
