/**
 * What the server's registry holds for each accepted connection, whatever it became: a framed
 * session, a raw one, or one still waiting for its first byte to tell which. Admitted (and
 * counted in the caps) once, at accept; released once, when it closes.
 */
import type { PeerInfo } from '../transport/peer.js';

/** One accepted connection, as the server's registry, stats and shutdown see it. */
export interface Accepted {
  /** Who is at the other end (looked up once, on first use: ask while the socket is open). */
  readonly peer: PeerInfo;
  /** The address this connection was admitted under (its slot in the caps), '' when not tracked. */
  readonly admittedIp: string;
  /** Requests received since the connection opened. */
  readonly requests: number;
  /** Bytes received so far. */
  readonly bytesIn: number;
  /** Bytes sent so far. */
  readonly bytesOut: number;
  /** Graceful stop (server shutdown): no new requests, close once those in flight are done. */
  drain(): void;
  /** Aborts at once. */
  destroy(error?: Error): void;
}
