/**
 * One accepted connection on the server side: the hello exchange, request dispatch with a cap on
 * requests in flight, backpressure, goodbye and half-close handling.
 */
import type { Socket } from 'node:net';
import { ProtocolError, TcpkitError, ERROR_CODES, type ErrorCodeName } from '../errors.js';
import {
  CONNECTION_ID,
  FrameType,
  HELLO_MAX_FRAME_BYTES,
  PREAMBLE,
  MAX_PING_BYTES,
  SUPPORTED_VERSIONS,
  frameTypeName,
  preambleBytes,
} from '../protocol/constants.js';
import { decodeClientHello, encodeErrorBody, negotiateVersion } from '../protocol/control.js';
import type { Frame } from '../protocol/frame.js';
import type { RawHandler } from '../raw/handler.js';
import type { Service } from './service.js';
import { ServerExchange } from './exchange.js';
import { RAW_QUIET_MS, RawRequestReader, type RawVerdict } from '../raw/request.js';
import { Connection, type CloseReason, type ConnectionHandlers, type PeerInfo } from '../transport/connection.js';
import type { Expiry, WatchdogTimeouts } from '../transport/watchdog.js';
import type { BufferPool } from '../util/buffer-pool.js';
import type { TokenCheck } from './auth.js';
import type { ResolvedServerOptions } from './options.js';

/** Lifecycle of a session: waiting for hello, serving, draining (no new requests), closed. */
export type SessionState = 'hello' | 'open' | 'draining' | 'closed';

/** What a session reports to its server. */
export interface SessionHost {
  readonly options: ResolvedServerOptions;
  /** The phase deadlines, one object shared by every connection. */
  readonly timeouts: WatchdogTimeouts;
  readonly services: ReadonlyMap<number, Service>;
  /** Continuation frame types of the services: routed to their request by id. */
  readonly continuations: ReadonlySet<number>;
  /** Frames handled even while requests are held back: PING, PONG, CANCEL and the continuations. */
  readonly controlTypes: ReadonlySet<number>;
  /** 1 MiB payload buffers (an upload's content) shared by every connection, reused once handed back. */
  readonly payloads: BufferPool;
  readonly serviceNames: readonly string[];
  /** Preamble plus HELLO frame for a negotiated version (the same for every connection). */
  hello(version: number): Buffer;
  protocolError(peer: PeerInfo, error: ProtocolError): void;
  handlerError(peer: PeerInfo, error: unknown): void;
  /** Serves raw (unframed) clients; undefined: they are closed without a byte. */
  readonly raw: RawHandler | undefined;
  /** A raw request was refused or failed; the client got no data (or a cut-short stream). */
  rawError(peer: PeerInfo, error: unknown, cut: boolean): void;
  /** Checks tokens, when the server requires one. */
  readonly auth: TokenCheck | undefined;
  /** A client failed authentication (the token itself is never reported). */
  authFailed(peer: PeerInfo): void;
  /** A phase deadline passed and the connection is being closed. */
  timedOut(peer: PeerInfo, why: Expiry): void;
  peerEnded(peer: PeerInfo): void;
  /** The connection completed its hello (or raw request) or closed: it no longer counts as pre-auth. Once per session at most. */
  preAuthEnded(session: ServerSession): void;
  closed(session: ServerSession, reason: CloseReason, error: Error | undefined): void;
}

/** A framed client starts with the preamble's 0x89, which no text can start with. */
function isFramed(first: number): boolean {
  return first === PREAMBLE[0];
}

/**
 * Continuation frames (an upload's content) held for handlers that have not taken them yet,
 * per connection, before the server stops reading it.
 */
const HOLD_BYTES = 2 * 1024 * 1024;

export class ServerSession implements ConnectionHandlers {
  readonly #host: SessionHost;
  readonly #conn: Connection;
  /**
   * Requests not yet answered, by id (created on the first that does not answer at once): what
   * CANCEL and continuation frames find, and what makes a reused id a duplicate. An id is free
   * again once its final reply is out, even while its handler still runs (closing its file).
   */
  #inFlight: Map<number, ServerExchange> | undefined;
  /** Handlers still running: what counts against maxInFlight and keeps the connection busy. */
  #running = 0;
  #state: SessionState = 'hello';
  #preambleSent = false;
  #peerSaidGoodbye = false;
  #lingerTimer: NodeJS.Timeout | undefined;
  #requests = 0;
  #rawReader: RawRequestReader | undefined;
  #authTimer: NodeJS.Timeout | undefined;
  #quietTimer: NodeJS.Timeout | undefined;
  /** The raw request being served, if any (raw connections carry exactly one). */
  #rawActive: AbortController | undefined;
  /** Bytes of continuation frames waiting for their handlers; reading stops at {@link HOLD_BYTES}. */
  #held = 0;
  /** Not yet past its hello (TLS handshake included): counted against the pre-auth cap. */
  #preAuth = true;

  /** The address this connection was admitted under (its slot in the caps), '' when not tracked. */
  readonly admittedIp: string;

  constructor(socket: Socket, host: SessionHost, admittedIp = '') {
    this.#host = host;
    this.admittedIp = admittedIp;
    // The session itself is the connection's handler object: no closures per connection.
    this.#conn = new Connection(socket, this, {
      maxFrameBytes: HELLO_MAX_FRAME_BYTES,
      controlTypes: host.controlTypes,
      payloadPool: host.payloads,
      timeouts: host.timeouts,
      ...(host.raw && { sniff: isFramed }),
    });
  }

  // ConnectionHandlers, on the prototype.
  /** @internal */
  frame(frame: Frame): void {
    this.#onFrame(frame);
  }
  /** @internal */
  peerEnd(): void {
    this.#onPeerEnd();
  }
  /** @internal */
  protocolError(error: ProtocolError): void {
    this.#onProtocolError(error);
  }
  /** @internal */
  close(reason: CloseReason, error: Error | undefined): void {
    this.#onClose(reason, error);
  }
  /** @internal */
  raw(chunk: Buffer): void {
    this.#onRaw(chunk);
  }
  /** @internal */
  timeout(why: Expiry): void {
    this.#onTimeout(why);
  }

  get peer(): PeerInfo {
    return this.#conn.peer;
  }
  get state(): SessionState {
    return this.#state;
  }
  /** Requests being served right now. */
  get inFlight(): number {
    return this.#running;
  }
  /** Requests received since the connection opened. */
  get requests(): number {
    return this.#requests;
  }
  get bytesIn(): number {
    return this.#conn.bytesIn;
  }
  get bytesOut(): number {
    return this.#conn.bytesOut;
  }

  /** Queues one frame, the server preamble first if it has not gone out yet. */
  send(type: number, id: number, payload?: Uint8Array, onSent?: () => void): boolean {
    if (!this.#preambleSent) {
      this.#preambleSent = true;
      this.#conn.write(preambleBytes());
    }
    return this.#conn.sendFrame(type, id, payload, onSent);
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

  /** @internal A handler took (or dropped) a held continuation frame of `bytes`. */
  release(bytes: number): void {
    const before = this.#held;
    this.#held -= bytes;
    if (before >= HOLD_BYTES && this.#held < HOLD_BYTES) this.#maybeResume();
  }

  /** Reading is stopped because {@link HOLD_BYTES} of continuation frames wait. */
  get #holding(): boolean {
    return this.#held >= HOLD_BYTES;
  }

  #sendError(id: number, code: ErrorCodeName, message: string, details?: Record<string, unknown>): void {
    this.send(FrameType.ERROR, id, encodeErrorBody(details ? { code, message, details } : { code, message }));
  }

  /**
   * Graceful stop (server shutdown): no new requests; idle now means goodbye now, busy means
   * goodbye once the requests in flight are answered.
   */
  drain(): void {
    if (this.#state === 'closed' || this.#state === 'draining') return;
    if (this.#state === 'hello') {
      this.#conn.destroy();
      return;
    }
    this.#state = 'draining';
    this.#maybeFinish();
  }

  /** Aborts at once. */
  destroy(error?: Error): void {
    this.#conn.destroy(error);
  }

  /** A phase deadline passed: each phase has its own way out (RELIABILITY.md G5). */
  #onTimeout(why: Expiry): void {
    this.#host.timedOut(this.peer, why);
    switch (why) {
      case 'handshake':
        // Never completed its hello: close without a byte, since it may not speak tcpkit at all.
        this.#conn.destroy();
        return;
      case 'send-stall':
        // The peer stopped reading: reset, so the kernel frees what it still holds for it.
        this.#conn.reset();
        return;
      case 'request':
        if (!this.#conn.raw) {
          const ms = this.#host.options.requestTimeoutMs;
          this.#sendError(CONNECTION_ID, 'TIMEOUT', `a frame was not completed within ${ms} ms`);
        }
        this.#conn.pause();
        this.#endAndLinger();
        return;
      case 'idle': {
        if (!this.#conn.raw && !this.#conn.writeEnded) {
          const ms = this.#host.options.idleTimeoutMs;
          this.send(FrameType.GOODBYE, CONNECTION_ID, encodeErrorBody({ code: 'IDLE_TIMEOUT', message: `idle for ${ms} ms` }));
        }
        this.#state = 'draining';
        this.#endAndLinger();
      }
    }
  }

  /** Bytes from a raw client: gather its request (one per connection), then serve it. */
  #onRaw(chunk: Buffer): void {
    if (this.#state !== 'hello') return; // bytes after the request are ignored
    this.#rawReader ??= new RawRequestReader();
    const verdict = this.#rawReader.push(chunk);
    if (verdict.done) {
      this.#serveRaw(verdict);
      return;
    }
    clearTimeout(this.#quietTimer);
    this.#quietTimer = setTimeout(() => this.#serveRaw(this.#rawReader!.end()), RAW_QUIET_MS);
  }

  #serveRaw(verdict: RawVerdict): void {
    if (!verdict.done || this.#state !== 'hello') return;
    clearTimeout(this.#quietTimer);
    this.#state = 'open';
    this.#handshakeDone();
    this.#conn.pause();
    if ('tooLong' in verdict) {
      this.#host.rawError(this.peer, new TcpkitError('BAD_REQUEST', 'raw request too long'), false);
      this.#endAndLinger();
      return;
    }
    const controller = new AbortController();
    this.#rawActive = controller;
    this.#conn.setBusy(true);
    this.#requests++;
    const conn = this.#conn;
    const exchange = {
      peer: this.peer,
      signal: controller.signal,
      async write(chunk: Uint8Array): Promise<void> {
        controller.signal.throwIfAborted();
        if (!conn.write(chunk)) await conn.drained();
      },
    };
    const finish = (error: unknown): void => {
      this.#rawActive = undefined;
      this.#conn.setBusy(false);
      if (this.#state === 'closed') return;
      if (error === undefined) {
        this.#endAndLinger();
        return;
      }
      // Nothing sent: close with no data. Something sent: reset, so the cut is visible.
      const cut = conn.bytesOut > 0;
      this.#host.rawError(this.peer, error, cut);
      if (cut) conn.reset();
      else this.#endAndLinger();
    };
    let result: void | Promise<void>;
    try {
      result = this.#host.raw!(verdict.request, exchange);
    } catch (error) {
      finish(error);
      return;
    }
    if (result instanceof Promise) result.then(() => finish(undefined), finish);
    else finish(undefined);
  }

  #onFrame(frame: Frame): void {
    if (this.#state === 'hello') {
      this.#onHello(frame);
      return;
    }
    switch (frame.type) {
      case FrameType.PING:
        if (frame.payload.length > MAX_PING_BYTES) {
          this.#abortProtocol(new ProtocolError('PROTOCOL_ERROR', `PING payload over ${MAX_PING_BYTES} bytes`));
        } else {
          this.send(FrameType.PONG, frame.id, frame.payload);
          // A PING flood from a client that does not read: stop reading it.
          if (this.#conn.needsDrain) this.#waitForDrain();
        }
        return;
      case FrameType.PONG:
        return;
      case FrameType.GOODBYE:
        this.#peerSaidGoodbye = true;
        this.#maybeFinish();
        return;
      case FrameType.CANCEL:
        this.#inFlight?.get(frame.id)?.abort(new TcpkitError('ABORTED', 'the client cancelled the request'));
        return;
      case FrameType.ERROR:
        // A client reports a connection-level problem with our frames: nothing to answer.
        this.#conn.destroy();
        return;
      case FrameType.HELLO:
        this.#abortProtocol(new ProtocolError('PROTOCOL_ERROR', 'HELLO sent twice'));
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

  #onHello(frame: Frame): void {
    if (frame.type !== FrameType.HELLO || frame.id !== CONNECTION_ID) {
      this.#abortProtocol(new ProtocolError('PROTOCOL_ERROR', `expected HELLO first, got ${frameTypeName(frame.type)}`));
      return;
    }
    let version: number | undefined;
    let hello: ReturnType<typeof decodeClientHello>;
    try {
      hello = decodeClientHello(frame.payload);
      version = negotiateVersion(hello.versions);
    } catch (error) {
      this.#abortProtocol(error as ProtocolError);
      return;
    }
    if (version === undefined) {
      this.#abortProtocol(new ProtocolError('UNSUPPORTED_VERSION', `this server speaks protocol versions ${SUPPORTED_VERSIONS.join(', ')}`), {
        versions: [...SUPPORTED_VERSIONS],
      });
      return;
    }
    const auth = this.#host.auth;
    if (auth !== undefined) {
      const ip = this.peer.address;
      if (!auth.matches(hello.auth?.token)) {
        // Slower with every failure from this address; the connection holds its slot meanwhile.
        const delay = auth.failed(ip);
        this.#host.authFailed(this.peer);
        this.#conn.pause();
        this.#state = 'draining';
        this.#authTimer = setTimeout(() => {
          this.#sendError(CONNECTION_ID, 'AUTH_FAILED', hello.auth?.token === undefined ? 'this server requires a token' : 'wrong token');
          this.#endAndLinger();
        }, delay);
        return;
      }
      auth.succeeded(ip);
    }
    this.#state = 'open';
    this.#handshakeDone();
    this.#conn.setMaxFrameBytes(this.#host.options.maxFrameBytes);
    this.#preambleSent = true;
    this.#conn.write(this.#host.hello(version));
  }

  /** Past the hello: the handshake deadline stops, and the pre-auth slot is given back. */
  #handshakeDone(): void {
    this.#conn.handshakeDone();
    this.#leavePreAuth();
  }

  #leavePreAuth(): void {
    if (!this.#preAuth) return;
    this.#preAuth = false;
    this.#host.preAuthEnded(this);
  }

  #onRequest(frame: Frame): void {
    const { id } = frame;
    if (id === CONNECTION_ID) {
      this.#abortProtocol(new ProtocolError('PROTOCOL_ERROR', `${frameTypeName(frame.type)} request with id 0`));
      return;
    }
    if (this.#inFlight?.has(id) === true) {
      this.#abortProtocol(new ProtocolError('PROTOCOL_ERROR', `request id ${id} is already in flight`));
      return;
    }
    if (this.#state !== 'open' || this.#peerSaidGoodbye) {
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
    this.#sendError(id, code, message);
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
    if (this.#state === 'closed') return;
    if (!exchange.done) {
      if (error instanceof TcpkitError && ERROR_CODES[error.wireCode].scope === 'wire') {
        this.#sendError(exchange.id, error.wireCode, error.message);
      } else {
        if (error === undefined) error = new Error('the handler returned without answering');
        this.#host.handlerError(this.peer, error);
        this.#sendError(exchange.id, 'HANDLER_ERROR', 'the server failed to serve this request');
      }
    } else if (error !== undefined) {
      // Failed after answering (e.g. mid-stream): the reply cannot be trusted, end the connection.
      this.#host.handlerError(this.peer, error);
      this.#conn.destroy();
      return;
    }
    if (this.#maybeFinish()) return;
    if (this.#conn.needsDrain) this.#waitForDrain();
    else this.#maybeResume();
  }

  #maybeResume(): void {
    if (this.#state === 'closed' || this.#conn.needsDrain || this.#holding) return;
    if (this.inFlight < this.#host.options.maxInFlight) {
      this.#conn.resume();
      // Requests held while paused may all have been answered now, after the peer's EOF.
      this.#maybeFinish();
    } else {
      this.#conn.pause('soft');
    }
  }

  /**
   * Ends our side once nothing is in flight and the peer is done (EOF or goodbye) or we drain.
   * Returns true when it ended the connection.
   */
  #maybeFinish(): boolean {
    if (this.inFlight > 0 || this.#rawActive || this.#conn.writeEnded || this.#conn.hasBacklog) return false;
    if (this.#conn.raw) {
      if (this.#state === 'draining' || this.#conn.peerEnded) {
        this.#endAndLinger();
        return true;
      }
      return false;
    }
    if (this.#state === 'draining' || this.#peerSaidGoodbye) {
      const code: ErrorCodeName = this.#state === 'draining' ? 'SHUTTING_DOWN' : 'NORMAL';
      const message = code === 'SHUTTING_DOWN' ? 'the server is shutting down' : 'goodbye';
      if (!this.#conn.peerEnded) this.send(FrameType.GOODBYE, CONNECTION_ID, encodeErrorBody({ code, message }));
      this.#endAndLinger();
      return true;
    }
    if (this.#conn.peerEnded) {
      // Half-close after the last request: every reply has been sent, now close our side too.
      this.#endAndLinger();
      return true;
    }
    return false;
  }

  #endAndLinger(): void {
    this.#conn.end();
    this.#lingerTimer ??= setTimeout(() => this.#conn.destroy(), this.#host.options.lingerTimeoutMs);
  }

  /**
   * The peer broke the protocol: tell it why (unless it never sent our preamble, in which case
   * it may be a raw client that would save our words as its file), then close.
   */
  #abortProtocol(error: ProtocolError, details?: Record<string, unknown>): void {
    this.#host.protocolError(this.peer, error);
    if (this.#state === 'closed') return;
    if (error.wireCode !== 'NOT_TCPKIT' && !this.#conn.writeEnded) {
      this.#sendError(CONNECTION_ID, error.wireCode, error.message, details);
    }
    this.#conn.pause();
    this.#endAndLinger();
  }

  #onProtocolError(error: ProtocolError): void {
    if (error.wireCode === 'NOT_TCPKIT') {
      this.#host.protocolError(this.peer, error);
      this.#conn.destroy();
      return;
    }
    this.#abortProtocol(error);
  }

  #onPeerEnd(): void {
    this.#host.peerEnded(this.peer);
    if (this.#rawReader !== undefined && this.#state === 'hello') {
      this.#serveRaw(this.#rawReader.end());
      return;
    }
    if (this.#state === 'hello') {
      this.#conn.destroy();
      return;
    }
    if (this.#inFlight !== undefined) for (const exchange of this.#inFlight.values()) exchange.peerEnded();
    this.#maybeFinish();
  }

  #onClose(reason: CloseReason, error: Error | undefined): void {
    this.#state = 'closed';
    this.#leavePreAuth();
    clearTimeout(this.#lingerTimer);
    clearTimeout(this.#quietTimer);
    clearTimeout(this.#authTimer);
    this.#rawActive?.abort(new TcpkitError('CONNECTION_CLOSED', 'the connection closed'));
    if (this.#inFlight !== undefined && this.#inFlight.size > 0) {
      // Those answered already only tidy up (close a file): nothing to stop.
      const gone = new TcpkitError('CONNECTION_CLOSED', 'the connection closed');
      for (const exchange of this.#inFlight.values()) exchange.abort(gone);
    }
    this.#host.closed(this, reason, error);
  }
}
