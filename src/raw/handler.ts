/**
 * The contract of raw mode, server side: a handler answers one unframed request (the bytes a
 * client such as the tutorial's programs sent), writing bare bytes back.
 */
import type { PeerInfo } from '../transport/peer.js';

/** One raw (unframed) request: a client that sent bare bytes, such as the tutorial's programs. */
export interface RawExchange {
  /** The client's address. */
  readonly peer: PeerInfo;
  /** Aborted when the connection closes. */
  readonly signal: AbortSignal;
  /** Sends bytes as they are; resolves when the connection can take more (backpressure). */
  write(chunk: Uint8Array): Promise<void>;
}

/**
 * Answers a raw request (the bytes the client sent, without the line ending). The connection is
 * closed when it returns. To refuse, throw: the client then gets a close with no data at all
 * (what the tutorial's client expects for a missing file), and the server reports the reason.
 */
export type RawHandler = (request: Buffer, exchange: RawExchange) => void | Promise<void>;
