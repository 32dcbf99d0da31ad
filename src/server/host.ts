/**
 * What a {@link ServerSession} needs from its server, and what it reports back: the one seam
 * between a connection and the server's registry, caps and log (tests give a hand-made one).
 */
import type { ProtocolError } from '../errors.js';
import type { CloseReason, PeerInfo } from '../transport/peer.js';
import type { Expiry, WatchdogTimeouts } from '../transport/watchdog.js';
import type { BufferPool } from '../util/buffer-pool.js';
import type { TokenCheck } from './auth.js';
import type { ResolvedServerOptions } from './options.js';
import type { Service } from './service.js';
import type { ServerSession } from './session.js';

/** What a session reports to its server. */
export interface SessionHost {
  readonly options: ResolvedServerOptions;
  /** The phase deadlines, one object shared by every connection. */
  readonly timeouts: WatchdogTimeouts;
  readonly services: ReadonlyMap<number, Service>;
  /** Continuation frame types of the services: routed to their request by id. */
  readonly continuations: ReadonlySet<number>;
  /**
   * The byte-stream continuation types (PUT_DATA): delivered in pieces as they arrive. Only the
   * ones a service takes: a DATA or PUT_DATA no service takes is refused or dropped once, whole,
   * not once per piece.
   */
  readonly pieceTypes: ReadonlySet<number>;
  /** Frames handled even while requests are held back: PING, PONG, CANCEL and the continuations. */
  readonly controlTypes: ReadonlySet<number>;
  /** 1 MiB payload buffers (an upload's content) shared by every connection, reused once handed back. */
  readonly payloads: BufferPool;
  readonly serviceNames: readonly string[];
  /**
   * Preamble plus HELLO frame for a negotiated version, granting those of the client's
   * `capabilities` a service supports (the same for every connection asking the same).
   */
  hello(version: number, capabilities: readonly string[]): Buffer;
  protocolError(peer: PeerInfo, error: ProtocolError): void;
  handlerError(peer: PeerInfo, error: unknown): void;
  /** Checks tokens, when the server requires one. */
  readonly auth: TokenCheck | undefined;
  /** A client failed authentication (the token itself is never reported). */
  authFailed(peer: PeerInfo): void;
  /** A phase deadline passed and the connection is being closed. */
  timedOut(peer: PeerInfo, why: Expiry): void;
  peerEnded(peer: PeerInfo): void;
  /** The connection completed its hello or closed: it no longer counts as pre-auth. Once per session at most. */
  preAuthEnded(session: ServerSession): void;
  closed(session: ServerSession, reason: CloseReason, error: Error | undefined): void;
}
