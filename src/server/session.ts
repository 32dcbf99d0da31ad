/**
 * The server role of one accepted connection, over the framed-session core (src/session/):
 * hello negotiation and authentication, request dispatch with a cap on requests in flight,
 * continuation frames held for their handlers, CANCEL, drain for shutdown, the phase deadlines.
 * Preamble, PING/PONG, GOODBYE, ERROR(0), protocol errors and linger are the core's.
 */
import type { Duplex } from 'node:stream';
import { ProtocolError, TcpkitError, ERROR_CODES, type ErrorCodeName } from '../errors.js';
import { CONNECTION_ID, FrameType, HELLO_MAX_FRAME_BYTES, SUPPORTED_VERSIONS, frameTypeName } from '../protocol/constants.js';
import { decodeClientHello, negotiateVersion, type ErrorBody } from '../protocol/control.js';
import type { Frame } from '../protocol/frame.js';
import type { SessionHost } from './host.js';
import { ServerExchange, type ExchangeHost } from './exchange.js';
import type { Connection } from '../transport/connection.js';
import type { CloseReason, PeerInfo } from '../transport/peer.js';
import type { Expiry } from '../transport/watchdog.js';
import { FramedSession, type SessionRole, type SessionStateName } from '../session/session.js';

/**
 * Continuation frames (an upload's content) held for handlers that have not taken them yet,
 * per connection, before the server stops reading it.
 */
const HOLD_BYTES = 2 * 1024 * 1024;

const SHUTTING_DOWN: ErrorBody = Object.freeze({ code: 'SHUTTING_DOWN', message: 'the server is shutting down' });
const GOODBYE_REPLY: ErrorBody = Object.freeze({ code: 'NORMAL', message: 'goodbye' });

/** One accepted connection, served: the server role over a {@link FramedSession}. */
export class ServerSession implements SessionRole, ExchangeHost {
  readonly #host: SessionHost;
  readonly #session: FramedSession;
  /**
   * Requests not yet answered, by id (created on the first that does not answer at once): what
   * CANCEL and continuation frames find, and what makes a reused id a duplicate. An id is free
   * again once its final reply is out, even while its handler still runs (closing its file).
   */
  #inFlight: Map<number, ServerExchange> | undefined;
  /** Handlers still running: what counts against maxInFlight and keeps the connection busy. */
  #running = 0;
  #requests = 0;
  /** The delayed AUTH_FAILED answer to a wrong token, while it waits. */
  #authTimer: unknown;
  /** Bytes of continuation frames waiting for their handlers; reading stops at {@link HOLD_BYTES}. */
  #held = 0;
  /** Exchanges whose sink can take no more ({@link ServerExchange.consume}): reading stops while any does. */
  #sinksPaused = 0;
  /** Not yet past its hello (TLS handshake included): counted against the pre-auth cap. */
  #preAuth = true;

  /** The address this connection was admitted under (its slot in the caps), '' when not tracked. */
  readonly admittedIp: string;

  /** `startedAt`: when the connection was accepted, on the host's clock (the handshake deadline counts from it), when that was before now. */
  constructor(stream: Duplex, host: SessionHost, admittedIp = '', startedAt?: number) {
    this.#host = host;
    this.admittedIp = admittedIp;
    // The session itself is the core's role object: no closures per connection.
    this.#session = new FramedSession(stream, this, {
      side: 'server',
      maxFrameBytes: HELLO_MAX_FRAME_BYTES,
      lingerMs: host.options.lingerTimeoutMs,
      clock: host.options.clock,
      // Raw clients are told apart at accept (src/raw/sniffer.ts): this connection is framed.
      // PUT_DATA goes on in pieces, views of the 'data' chunks (fresh buffers, never reused): kept without a copy.
      connection: { controlTypes: host.controlTypes, payloadPool: host.payloads, timeouts: host.timeouts, pieceTypes: host.pieceTypes, ...(startedAt !== undefined && { startedAt }) },
    });
  }

  get #conn(): Connection {
    return this.#session.connection;
  }

  /** The client's address and port. */
  get peer(): PeerInfo {
    return this.#session.peer;
  }
  /** Where the connection is: hello, open, closing (no new requests), ended (lingering), closed. */
  get state(): SessionStateName {
    return this.#session.state.name;
  }
  /** Requests being served right now. */
  get inFlight(): number {
    return this.#running;
  }
  /** Requests received since the connection opened. */
  get requests(): number {
    return this.#requests;
  }
  /** Bytes received from the client so far. */
  get bytesIn(): number {
    return this.#conn.bytesIn;
  }
  /** Bytes sent to the client so far. */
  get bytesOut(): number {
    return this.#conn.bytesOut;
  }

  /** Queues one frame, the server preamble first if it has not gone out yet. */
  send(type: number, id: number, payload?: Uint8Array, onSent?: () => void): boolean {
    return this.#session.send(type, id, payload, onSent);
  }

  /** Sends a frame of a streamed reply and waits for room in the send buffer. */
  async sendStreamed(type: number, id: number, payload: Uint8Array, onSent?: () => void): Promise<void> {
    if (this.#conn.closed) {
      onSent?.();
      throw new TcpkitError('CONNECTION_CLOSED', 'the client went away');
    }
    if (!this.send(type, id, payload, onSent)) await this.#conn.drained();
  }

  /** @internal A continuation frame of `bytes` waits for its handler. */
  hold(bytes: number): void {
    const before = this.#held;
    this.#held += bytes;
    if (before < HOLD_BYTES && this.#held >= HOLD_BYTES) this.#conn.pause();
  }

  /** @internal A request got its final reply: its id may be used again. */
  answered(exchange: ServerExchange): void {
    if (this.#inFlight?.get(exchange.id) === exchange) this.#inFlight.delete(exchange.id);
  }

  /** @internal A handler is done with a payload buffer: it may be reused. */
  recycle(payload: Uint8Array): void {
    if (Buffer.isBuffer(payload)) this.#host.payloads.give(payload);
  }

  /** @internal A request's sink is full: stop reading (hard: continuations pass a soft pause). */
  pauseInput(): void {
    if (this.#sinksPaused++ === 0) this.#conn.pause();
  }
  /** @internal A sink that paused takes frames again. */
  resumeInput(): void {
    if (--this.#sinksPaused === 0) this.#maybeResume();
  }

  /** @internal A handler took (or dropped) a held continuation frame of `bytes`. */
  release(bytes: number): void {
    const before = this.#held;
    this.#held -= bytes;
    if (before >= HOLD_BYTES && this.#held < HOLD_BYTES) this.#maybeResume();
  }

  /** Reading is stopped because {@link HOLD_BYTES} of continuation frames wait, or a sink is full. */
  get #holding(): boolean {
    return this.#held >= HOLD_BYTES || this.#sinksPaused > 0;
  }

  /**
   * Graceful stop (server shutdown): no new requests; idle now means goodbye now, busy means
   * goodbye once the requests in flight are answered. A connection still in its hello is closed.
   */
  drain(): void {
    const name = this.#session.state.name;
    if (name === 'hello') this.#conn.destroy();
    else if (name === 'open') this.#session.closeWhenDone('shutdown', SHUTTING_DOWN);
  }

  /** Aborts at once. */
  destroy(error?: Error): void {
    this.#conn.destroy(error);
  }

  // SessionRole, on the prototype.

  /** @internal A phase deadline passed: each phase has its own way out (RELIABILITY.md G5). */
  timeout(why: Expiry): void {
    this.#host.timedOut(this.peer, why);
    switch (why) {
      case 'handshake':
        // Never completed its hello: close without a byte, since it may not speak tcpkit at all.
        this.#conn.destroy();
        return;
      case 'send-stall':
        // The peer stopped reading: reset, so the kernel frees what it still holds for it.
        this.#session.reset();
        return;
      case 'request': {
        const ms = this.#host.options.requestTimeoutMs;
        this.#conn.pause();
        this.#session.endNow('request-timeout', { type: FrameType.ERROR, body: { code: 'TIMEOUT', message: `a frame was not completed within ${ms} ms` } });
        return;
      }
      case 'idle': {
        const ms = this.#host.options.idleTimeoutMs;
        this.#session.endNow('idle', { type: FrameType.GOODBYE, body: { code: 'IDLE_TIMEOUT', message: `idle for ${ms} ms` } });
      }
    }
  }

  /** @internal The client's HELLO: negotiate a version, check the token, answer with ours. */
  hello(frame: Frame): void {
    let version: number | undefined;
    let hello: ReturnType<typeof decodeClientHello>;
    try {
      hello = decodeClientHello(frame.payload);
      version = negotiateVersion(hello.versions);
    } catch (error) {
      this.#session.failProtocol(error as ProtocolError);
      return;
    }
    if (version === undefined) {
      this.#session.failProtocol(new ProtocolError('UNSUPPORTED_VERSION', `this server speaks protocol versions ${SUPPORTED_VERSIONS.join(', ')}`), {
        versions: [...SUPPORTED_VERSIONS],
      });
      return;
    }
    const auth = this.#host.auth;
    if (auth !== undefined) {
      const ip = this.peer.address;
      if (!auth.matches(hello.auth?.token)) {
        // Slower with every failure from this address; the connection holds its slot meanwhile.
        const clock = this.#host.options.clock;
        const delay = auth.failed(ip, clock.now());
        const message = hello.auth?.token === undefined ? 'this server requires a token' : 'wrong token';
        this.#host.authFailed(this.peer);
        this.#conn.pause();
        this.#authTimer = clock.setTimeout(ServerSession.#refuseAuth, delay, { session: this, message });
        this.#session.closeWhenDone('auth-failed'); // busy until the answer went out
        return;
      }
      auth.succeeded(ip);
    }
    this.#session.open(this.#host.hello(version, hello.capabilities), this.#host.options.maxFrameBytes);
    this.#leavePreAuth();
  }

  static #refuseAuth({ session, message }: { session: ServerSession; message: string }): void {
    session.#authTimer = undefined;
    session.#session.sendError(CONNECTION_ID, 'AUTH_FAILED', message);
    session.#session.endNow('auth-failed');
  }

  /** @internal A frame past the hello that the core leaves to us: requests, CANCEL, continuations. */
  frame(frame: Frame): void {
    switch (frame.type) {
      case FrameType.PONG:
        return;
      case FrameType.CANCEL:
        this.#inFlight?.get(frame.id)?.abort(new TcpkitError('ABORTED', 'the client cancelled the request'));
        return;
      case FrameType.ERROR:
        // A client reports a problem with our frames: nothing to answer.
        this.#conn.destroy();
        return;
      default:
        if (this.#host.continuations.has(frame.type)) {
          // One that crossed its request's final reply on the wire finds no taker: dropped.
          this.#inFlight?.get(frame.id)?.push(frame);
          return;
        }
        this.#onRequest(frame);
    }
  }

  /** @internal The client said goodbye: no new requests; ours goes out once those in flight are answered. */
  goodbye(): void {
    this.#session.closeWhenDone('peer-goodbye', GOODBYE_REPLY);
  }

  /** @internal ERROR(0): a client reports a connection-level problem with our frames; it is closed. */
  remoteError(): Error | undefined {
    return undefined;
  }

  /** @internal The client broke the protocol (the core tells it why). */
  protocolError(error: ProtocolError): Error | undefined {
    this.#host.protocolError(this.peer, error);
    return undefined;
  }

  /** @internal Requests run, or a refused token waits for its answer. */
  busy(): boolean {
    return this.#running > 0 || this.#authTimer !== undefined;
  }

  /** @internal A PING flood from a client that does not read: stop reading it. */
  outputFull(): void {
    this.#waitForDrain();
  }

  /** Past the hello: the pre-auth slot is given back. */
  #leavePreAuth(): void {
    if (!this.#preAuth) return;
    this.#preAuth = false;
    this.#host.preAuthEnded(this);
  }

  #onRequest(frame: Frame): void {
    const { id } = frame;
    if (id === CONNECTION_ID) {
      this.#session.failProtocol(new ProtocolError('PROTOCOL_ERROR', `${frameTypeName(frame.type)} request with id 0`));
      return;
    }
    if (this.#inFlight?.has(id) === true) {
      this.#session.failProtocol(new ProtocolError('PROTOCOL_ERROR', `request id ${id} is already in flight`));
      return;
    }
    if (this.#session.state.name !== 'open') {
      this.#refuseRequest(id, 'SHUTTING_DOWN', 'the connection is closing: no new requests');
      return;
    }
    const service = this.#host.services.get(frame.type);
    if (service === undefined) {
      this.#refuseRequest(id, 'UNSUPPORTED_REQUEST', `this server does not serve ${frameTypeName(frame.type)} requests`);
      return;
    }
    this.#requests++;
    const exchange = new ServerExchange(this, id, service.continuationTypes);
    let result: void | Promise<void>;
    try {
      result = service.handle(frame, exchange);
    } catch (error) {
      this.#settle(exchange, error, false);
      return;
    }
    if (result instanceof Promise) {
      // Only a request still running needs a slot; a synchronous answer never takes one.
      if (!exchange.done) (this.#inFlight ??= new Map()).set(id, exchange);
      if (++this.#running === 1) this.#conn.setBusy(true);
      // At the cap: hold back further requests, but keep answering PINGs and CANCELs.
      if (this.#running >= this.#host.options.maxInFlight && !this.#holding) this.#conn.pause('soft');
      result.then(
        () => this.#settle(exchange, undefined, true),
        (error: unknown) => this.#settle(exchange, error, true),
      );
    } else if (!exchange.done) {
      this.#settle(exchange, undefined, false);
    } else if (this.#conn.needsDrain) {
      this.#waitForDrain();
    }
  }

  /** Answers a request with an error at once; a client that does not read those either is read no more. */
  #refuseRequest(id: number, code: ErrorCodeName, message: string): void {
    this.#session.sendError(id, code, message);
    if (this.#conn.needsDrain) this.#waitForDrain();
  }

  /** Output backpressure: read no new requests until the client takes its replies. */
  #waitForDrain(): void {
    this.#conn.pause();
    void this.#conn.drained().then(() => this.#maybeResume());
  }

  /**
   * A handler finished: make sure the client got an answer, free the slot (`running`: it held
   * one), maybe read on.
   */
  #settle(exchange: ServerExchange, error: unknown, running: boolean): void {
    this.answered(exchange);
    if (running && --this.#running === 0) this.#conn.setBusy(false);
    exchange.discard();
    if (this.#session.state.name === 'closed') return;
    if (!exchange.done) {
      if (error instanceof TcpkitError && ERROR_CODES[error.wireCode].scope === 'wire') {
        this.#session.sendError(exchange.id, error.wireCode, error.message);
      } else {
        if (error === undefined) error = new TcpkitError('HANDLER_ERROR', 'the handler returned without answering');
        this.#host.handlerError(this.peer, error);
        this.#session.sendError(exchange.id, 'HANDLER_ERROR', 'the server failed to serve this request');
      }
    } else if (error !== undefined) {
      // Failed after answering (e.g. mid-stream): the reply cannot be trusted, end the connection.
      this.#host.handlerError(this.peer, error);
      this.#conn.destroy();
      return;
    }
    if (this.#session.workDone()) return;
    if (this.#conn.needsDrain) this.#waitForDrain();
    else this.#maybeResume();
  }

  #maybeResume(): void {
    if (this.#session.state.name === 'closed' || this.#conn.needsDrain || this.#holding) return;
    if (this.#running < this.#host.options.maxInFlight) {
      this.#conn.resume();
      // Requests held while paused may all have been answered now, after the peer's EOF.
      this.#session.workDone();
    } else {
      this.#conn.pause('soft');
    }
  }

  /** @internal The client half-closed: requests it sent are still answered, then our side ends. */
  peerEnded(): void {
    this.#host.peerEnded(this.peer);
    if (this.#session.state.name === 'hello') {
      this.#conn.destroy();
      return;
    }
    if (this.#inFlight !== undefined) for (const exchange of this.#inFlight.values()) exchange.peerEnded();
    this.#session.workDone();
  }

  /** @internal The stream closed: stop what still runs, report to the server. */
  closed(reason: CloseReason, error: Error | undefined): void {
    this.#leavePreAuth();
    this.#host.options.clock.clearTimeout(this.#authTimer);
    this.#authTimer = undefined;
    if (this.#inFlight !== undefined && this.#inFlight.size > 0) {
      // Those answered already only tidy up (close a file): nothing to stop.
      const gone = new TcpkitError('CONNECTION_CLOSED', 'the connection closed');
      for (const exchange of this.#inFlight.values()) exchange.abort(gone);
    }
    this.#host.closed(this, reason, error);
  }
}
