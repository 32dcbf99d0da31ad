/**
 * The framed-session core, one for both sides (as ws drives both ends from one `WebSocket` over
 * any duplex): it owns the {@link Connection} and everything connection-level, so the client and
 * the server roles only correlate replies and dispatch requests.
 *
 * In one place here: our opening (a client's preamble and HELLO at once; a server's preamble
 * before its first frame, with its HELLO reply or its refusal), the hello-phase checks (HELLO
 * first, with id 0; on a client, ERROR(0) instead is the server refusing it), the frame limit
 * raised after the hello, PING answered with PONG, PONG(0) routed to the heartbeat, GOODBYE in
 * and out, ERROR(0) in and out, protocol errors (the peer is told, unless it is no tcpkit peer
 * at all, then our side ends), end-then-linger, and how the connection closed.
 *
 * One field, {@link FramedSession.state}, says where a session is:
 *
 * ```text
 *  hello ──open()──► open ──closeWhenDone()──► closing ──workDone(), role idle──► ended ──► closed
 *    │                 │                          │      (GOODBYE if any, FIN)     ▲          ▲
 *    │                 ├── peer EOF, then workDone(), role idle (FIN) ────────────┤          │
 *    ├── closeWhenDone('auth-failed') ──► closing │                                │          │
 *    └─────────────────┴───── endNow() / failProtocol() on a server ──────────────┘          │
 *  any state ── destroy() / reset() / the peer resets / failProtocol() on a client / linger ──┘
 * ```
 *
 * `closing` takes no new work and waits for the role's (`busy()` false, and no frames held in a
 * pause); the role calls {@link FramedSession.workDone} when work finishes. A peer's EOF is no
 * state of its own: an `open` session whose peer half-closed ends the same way once idle (every
 * request it sent before its FIN is answered first). `ended` means our FIN is out: a peer that
 * does not close its side within `lingerMs` is destroyed.
 */
import type { Duplex } from 'node:stream';
import { ProtocolError, type ErrorCodeName } from '../errors.js';
import { CONNECTION_ID, FrameType, MAX_PING_BYTES, frameTypeName, preambleBytes } from '../protocol/constants.js';
import { decodeErrorBody, encodeErrorBody, type ErrorBody } from '../protocol/control.js';
import type { Frame } from '../protocol/frame.js';
import { Connection, type ConnectionHandlers } from '../transport/connection.js';
import { type CloseReason, type PeerInfo } from '../transport/peer.js';
import type { Expiry } from '../transport/watchdog.js';
import { systemClock, type Clock } from '../util/clock.js';
import { DEFAULT_LINGER_MS, type ClosingWhy, type SessionOptions, type SessionRole, type SessionState, type Side } from './role.js';

export type { ClosingWhy, SessionOptions, SessionRole, SessionState, SessionStateName, Side } from './role.js';
export { DEFAULT_LINGER_MS } from './role.js';

const HELLO: SessionState = Object.freeze({ name: 'hello' });
const OPEN: SessionState = Object.freeze({ name: 'open' });

/** One framed connection driven for a role; see the file comment for its states. */
export class FramedSession {
  /** Which end we are: decides our opening and how strict we are with the peer's control frames. */
  readonly side: Side;
  readonly #role: SessionRole;
  readonly #conn: Connection;
  readonly #clock: Clock;
  readonly #lingerMs: number;
  #state: SessionState = HELLO;
  /** A server's preamble has not gone out yet: it precedes our first frame. */
  #preambleDue: boolean;
  #lingerTimer: unknown;

  /**
   * Takes over `stream` in the `hello` state and writes `options.opening` (a client's preamble and
   * HELLO) at once; a server's preamble waits for its first frame.
   */
  constructor(stream: Duplex, role: SessionRole, options: SessionOptions) {
    this.side = options.side;
    this.#role = role;
    this.#clock = options.clock ?? systemClock;
    this.#lingerMs = options.lingerMs ?? DEFAULT_LINGER_MS;
    this.#preambleDue = options.side === 'server';
    this.#conn = new Connection(stream, new Handlers(this), { ...options.connection, maxFrameBytes: options.maxFrameBytes, clock: this.#clock });
    if (options.opening !== undefined) this.#conn.write(options.opening);
  }

  /** Where the session is; see {@link SessionState}. */
  get state(): SessionState {
    return this.#state;
  }

  /** The connection underneath: flow control (pause, resume, drained), counters, queue samples. */
  get connection(): Connection {
    return this.#conn;
  }

  /** Who is at the other end (`memory` over an in-memory stream). */
  get peer(): PeerInfo {
    return this.#conn.peer;
  }

  /**
   * Accepts the peer's hello: `open`, the handshake deadline stops, the frame limit becomes
   * `maxFrameBytes` (if given), and `reply` (a server's preamble and HELLO) goes out.
   */
  open(reply?: Uint8Array, maxFrameBytes?: number): void {
    if (this.#state.name !== 'hello') return;
    this.#state = OPEN;
    this.#conn.handshakeDone();
    if (maxFrameBytes !== undefined) this.#conn.setMaxFrameBytes(maxFrameBytes);
    if (reply !== undefined) {
      this.#preambleDue = false;
      this.#conn.write(reply);
    }
  }

  /** Queues one frame (a server's preamble first, if it has not gone out). False: wait for `connection.drained()`. */
  send(type: number, id: number, payload?: Uint8Array, onSent?: () => void): boolean {
    if (this.#preambleDue) {
      this.#preambleDue = false;
      this.#conn.write(preambleBytes());
    }
    return this.#conn.sendFrame(type, id, payload, onSent);
  }

  /** Sends ERROR for request `id` (or for the connection, id 0). */
  sendError(id: number, code: ErrorCodeName, message: string, details?: Record<string, unknown>): boolean {
    return this.send(FrameType.ERROR, id, encodeErrorBody(details ? { code, message, details } : { code, message }));
  }

  /**
   * Takes no new work (from `hello` or `open`): once the role is idle, `goodbye` goes out (unless
   * the peer has ended its side) and our side ends. A session already closing keeps its reason.
   */
  closeWhenDone(why: ClosingWhy, goodbye?: ErrorBody): void {
    const name = this.#state.name;
    if (name !== 'hello' && name !== 'open') return;
    this.#state = { name: 'closing', why, goodbye };
    this.workDone();
  }

  /**
   * The role finished some work (or the peer sent EOF): a `closing` session, or an `open` one
   * whose peer has ended its side, with nothing left in flight says its goodbye (if any) and
   * ends. Returns true when it ended the session now.
   */
  workDone(): boolean {
    const state = this.#state;
    if (state.name === 'open') {
      // Half-close after the last request: every reply has been sent, now close our side too.
      if (!this.#conn.peerEnded || !this.#idle()) return false;
      this.#end('peer-ended');
      return true;
    }
    if (state.name !== 'closing' || !this.#idle()) return false;
    if (state.goodbye !== undefined && !this.#conn.peerEnded) this.send(FrameType.GOODBYE, CONNECTION_ID, encodeErrorBody(state.goodbye));
    this.#end(state.why);
    return true;
  }

  /** Nothing in flight, no frames held back in a pause, and our side still open. */
  #idle(): boolean {
    return !this.#role.busy() && !this.#conn.hasBacklog && !this.#conn.writeEnded;
  }

  /**
   * Ends our side now, whatever is in flight: `last` (a GOODBYE or an ERROR for the connection)
   * goes out first, then the FIN, then we linger. Reading goes on: pause the connection first
   * to read nothing more.
   */
  endNow(why: ClosingWhy, last?: { type: number; body: ErrorBody }): void {
    const name = this.#state.name;
    if (name === 'ended' || name === 'closed') return;
    if (last !== undefined && !this.#conn.writeEnded) this.send(last.type, CONNECTION_ID, encodeErrorBody(last.body));
    this.#end(why);
  }

  #end(why: ClosingWhy): void {
    this.#state = { name: 'ended', why };
    this.#conn.end();
    this.#lingerTimer ??= this.#clock.setTimeout(FramedSession.#lingerExpired, this.#lingerMs, this);
  }

  static #lingerExpired(session: FramedSession): void {
    session.#conn.destroy();
  }

  /**
   * The peer broke the protocol. The role hears of it first. A peer that is no tcpkit peer at
   * all (NOT_TCPKIT: it never sent our preamble) is closed without a word: it may be a raw
   * client that would save our words as its file. Otherwise a server tells it why with
   * ERROR(0), stops reading and ends; a client destroys the connection with the error (its
   * callers hear of it; a broken server is owed nothing).
   */
  failProtocol(error: ProtocolError, details?: Record<string, unknown>): void {
    const replacement = this.#role.protocolError(error);
    const name = this.#state.name;
    if (name === 'closed') return;
    if (error.wireCode === 'NOT_TCPKIT' || this.side === 'client') {
      this.#conn.destroy(this.side === 'client' ? (replacement ?? error) : undefined);
      return;
    }
    if (!this.#conn.writeEnded) this.sendError(CONNECTION_ID, error.wireCode, error.message, details);
    this.#conn.pause();
    if (name === 'ended') return;
    this.#end('protocol-error');
  }

  /** Closes at once, dropping what is queued. Idempotent. */
  destroy(error?: Error): void {
    this.#conn.destroy(error);
  }

  /** Closes at once with a reset (a socket's SO_LINGER 0), for a peer that stopped reading. */
  reset(): void {
    this.#conn.reset();
  }

  /** @internal From the connection. */
  onFrame(frame: Frame): void {
    this.#role.received?.(frame);
    if (this.#state.name === 'hello') {
      this.#onHelloPhase(frame);
      return;
    }
    switch (frame.type) {
      case FrameType.PING:
        if (frame.payload.length <= MAX_PING_BYTES) {
          this.send(FrameType.PONG, frame.id, frame.payload);
          if (this.#conn.needsDrain) this.#role.outputFull?.();
        } else if (this.side === 'server') {
          // A client sends what we echo: an oversized PING is abuse. A client ignores a server's.
          this.failProtocol(new ProtocolError('PROTOCOL_ERROR', `PING payload over ${MAX_PING_BYTES} bytes`));
        }
        return;
      case FrameType.PONG:
        if (frame.id === CONNECTION_ID) this.#role.pong?.(frame);
        else this.#role.frame(frame);
        return;
      case FrameType.GOODBYE: {
        const body = this.#readBody(frame, 'goodbye');
        if (body !== undefined) this.#role.goodbye(body);
        return;
      }
      case FrameType.ERROR:
        if (frame.id === CONNECTION_ID) this.#onRemoteError(frame);
        else this.#role.frame(frame);
        return;
      case FrameType.HELLO:
        this.failProtocol(new ProtocolError('PROTOCOL_ERROR', 'HELLO sent twice'));
        return;
      default:
        this.#role.frame(frame);
    }
  }

  #onHelloPhase(frame: Frame): void {
    if (frame.type === FrameType.HELLO && frame.id === CONNECTION_ID) {
      this.#role.hello(frame);
      return;
    }
    if (this.side === 'client' && frame.type === FrameType.ERROR && frame.id === CONNECTION_ID) {
      this.#onRemoteError(frame); // the server refused us (AUTH_FAILED, UNSUPPORTED_VERSION...)
      return;
    }
    const expected = this.side === 'server' ? 'expected HELLO first' : "expected the server's HELLO";
    this.failProtocol(new ProtocolError('PROTOCOL_ERROR', `${expected}, got ${frameTypeName(frame.type)}`));
  }

  #onRemoteError(frame: Frame): void {
    const body = this.#readBody(frame, 'error');
    if (body !== undefined) this.#conn.destroy(this.#role.remoteError(body));
  }

  /**
   * The body of an ERROR or GOODBYE. A client fails on a malformed one (the server is broken);
   * a server reads it as NORMAL: it only ever acts on the frame's type.
   */
  #readBody(frame: Frame, what: string): ErrorBody | undefined {
    try {
      return decodeErrorBody(frame.payload, what);
    } catch (error) {
      if (this.side === 'server') return { code: 'NORMAL', message: '' };
      this.failProtocol(error as ProtocolError);
      return undefined;
    }
  }

  /** @internal From the connection. */
  onPeerEnd(): void {
    this.#role.peerEnded();
  }

  /** @internal From the connection: the decoder found bytes that are not our protocol. */
  onProtocolError(error: ProtocolError): void {
    this.failProtocol(error);
  }

  /** @internal From the connection. */
  onTimeout(why: Expiry): void {
    this.#role.timeout?.(why);
  }

  /** @internal From the connection. */
  onClose(reason: CloseReason, error: Error | undefined): void {
    this.#clock.clearTimeout(this.#lingerTimer);
    this.#state = { name: 'closed', reason, error };
    this.#role.closed(reason, error);
  }
}

/** The connection's handlers: one small object per session, methods on the prototype (no closures per connection). */
class Handlers implements ConnectionHandlers {
  readonly #session: FramedSession;
  constructor(session: FramedSession) {
    this.#session = session;
  }
  frame(frame: Frame): void {
    this.#session.onFrame(frame);
  }
  peerEnd(): void {
    this.#session.onPeerEnd();
  }
  protocolError(error: ProtocolError): void {
    this.#session.onProtocolError(error);
  }
  close(reason: CloseReason, error: Error | undefined): void {
    this.#session.onClose(reason, error);
  }
  timeout(why: Expiry): void {
    this.#session.onTimeout(why);
  }
}
