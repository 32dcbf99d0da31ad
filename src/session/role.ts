/**
 * The types of the framed-session core (./session.ts): its one state, its options, and the role
 * (client or server) that plugs into it.
 */
import type { ProtocolError } from '../errors.js';
import type { ErrorBody } from '../protocol/control.js';
import type { Frame } from '../protocol/frame.js';
import type { ConnectionOptions } from '../transport/connection.js';
import type { CloseReason } from '../transport/peer.js';
import type { Expiry } from '../transport/watchdog.js';
import type { Clock } from '../util/clock.js';

/** Which end of the connection a session is: the one that dialed, or the one that accepted. */
export type Side = 'client' | 'server';

/**
 * Why a session stopped taking new work (`closing`) or ended its side (`ended`):
 * - `shutdown`: the server is shutting down (GOODBYE SHUTTING_DOWN once its requests are answered);
 * - `local`: our user closed it (the client's `close()`: GOODBYE NORMAL once its replies are in);
 * - `peer-goodbye`: the peer said GOODBYE; `peer-ended`: the peer half-closed (EOF);
 * - `idle`: nothing happened for the idle deadline (GOODBYE IDLE_TIMEOUT);
 * - `auth-failed`: a wrong or missing token, answered AUTH_FAILED after a delay;
 * - `protocol-error`: the peer broke the protocol (told with ERROR unless it is no tcpkit peer);
 * - `request-timeout`: a frame was not completed in time (ERROR TIMEOUT).
 */
export type ClosingWhy = 'shutdown' | 'local' | 'peer-goodbye' | 'peer-ended' | 'idle' | 'auth-failed' | 'protocol-error' | 'request-timeout';

/**
 * The one state of a session (see the diagram in ./session.ts). Each state carries what it
 * needs: why it is closing and what to say when done, why it ended, how it closed.
 */
export type SessionState =
  /** Waiting for the peer's HELLO (a client has sent its own). */
  | { readonly name: 'hello' }
  /** Hello done: frames flow both ways. */
  | { readonly name: 'open' }
  /** No new work; once the role is idle, `goodbye` (if any) goes out and our side ends. */
  | { readonly name: 'closing'; readonly why: ClosingWhy; readonly goodbye: ErrorBody | undefined }
  /** Our side is ended (FIN sent): lingering until the peer closes, destroyed at the linger deadline. */
  | { readonly name: 'ended'; readonly why: ClosingWhy }
  /** The stream is closed: final. */
  | { readonly name: 'closed'; readonly reason: CloseReason; readonly error: Error | undefined };

/** Name of a {@link SessionState}. */
export type SessionStateName = SessionState['name'];

/**
 * What a role (the server's request dispatch, the client's reply correlation) supplies. The core
 * handles everything connection-level and hands the role only what is its business.
 */
export interface SessionRole {
  /** The peer's HELLO (checked: first, id 0). Call {@link FramedSession.open} to accept it, or fail. */
  hello(frame: Frame): void;
  /**
   * Every frame past the hello the core does not handle itself: requests, replies, CANCEL,
   * continuations, ERROR with a request id, PONG with a request id.
   */
  frame(frame: Frame): void;
  /** The peer said GOODBYE (a GOODBYE without a body reads as NORMAL). */
  goodbye(body: ErrorBody): void;
  /**
   * The peer sent ERROR with id 0 (a connection-level failure; on a client also the refusal of
   * its hello). Returns the error the connection is then destroyed with.
   */
  remoteError(body: ErrorBody): Error | undefined;
  /**
   * The peer broke the protocol (told, on a server, by the core). Returns the error a client's
   * connection is destroyed with (undefined: `error` itself); a server's ignores it.
   */
  protocolError(error: ProtocolError): Error | undefined;
  /** The peer half-closed (EOF). Writes are still possible. */
  peerEnded(): void;
  /** True while work is in flight: a `closing` session ends only once this is false. */
  busy(): boolean;
  /** The stream closed; called exactly once. */
  closed(reason: CloseReason, error: Error | undefined): void;
  /** Any frame arrived (called first, before it is handled): the peer is alive. */
  received?(frame: Frame): void;
  /** A PONG with id 0 arrived: the answer to a heartbeat PING. */
  pong?(frame: Frame): void;
  /** A PONG we sent filled the send buffer: a PING flood from a peer that does not read. */
  outputFull?(): void;
  /** A phase deadline of the watchdog passed (only with `connection.timeouts`). */
  timeout?(why: Expiry): void;
}

/** Options of a {@link FramedSession}. */
export interface SessionOptions {
  side: Side;
  /** Frame payload limit until {@link FramedSession.open} changes it (a server: HELLO_MAX_FRAME_BYTES). */
  maxFrameBytes: number;
  /** After we end our side, the peer has this long to close its own before we destroy. @default 5000 */
  lingerMs?: number;
  /** Drives the linger and the connection's watchdog. @default systemClock */
  clock?: Clock;
  /** Bytes written at once (a client's preamble and HELLO). A server sends its preamble before its first frame. */
  opening?: Uint8Array;
  /** Passed to the {@link Connection}: control types, payload pool, watchdog timeouts, large reads, peer. */
  connection?: Omit<ConnectionOptions, 'maxFrameBytes' | 'clock'>;
}

/** Default of {@link SessionOptions.lingerMs}. */
export const DEFAULT_LINGER_MS = 5_000;
