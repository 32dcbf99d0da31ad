/**
 * Wire constants of tcpkit protocol v1 (docs/PROTOCOL.md). Nothing here does I/O.
 */

/**
 * Every framed connection opens with these 8 bytes, from each side. The first byte, 0x89, can
 * never start a UTF-8 text, so a server tells a framed client from a raw one (a bare file name
 * or message) by the first byte alone; CR LF and SUB catch line-ending and text-mode mangling,
 * as PNG's signature does.
 */
export const PREAMBLE = Object.freeze([0x89, 0x54, 0x4b, 0x50, 0x0d, 0x0a, 0x1a, 0x0a] as const);
/** The preamble as a fresh buffer (callers may not mutate a shared one). */
export function preambleBytes(): Buffer {
  return Buffer.from(PREAMBLE);
}

/** Bytes in a frame header: u32 payload length, u8 type, u8 flags, u32 request id. */
export const HEADER_BYTES = 10;

/** No receiver ever accepts a frame payload larger than this, whatever was negotiated. */
export const HARD_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Default payload limit of a frame, announced in the server's hello. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;
/** Limit on frames before the hello exchange is done: a hello is small, and pre-auth input is bounded tighter. */
export const HELLO_MAX_FRAME_BYTES = 64 * 1024;
/** PING/PONG payloads are at most this long. */
export const MAX_PING_BYTES = 64;

/** Protocol versions this implementation speaks, best first. */
export const SUPPORTED_VERSIONS: readonly number[] = Object.freeze([1]);

// Frame types and their ranges are registered in one place: types.ts.
export { FrameType, frameTypeName, type FrameTypeName } from './types.js';

/** Request ids are u32; 0 means "the connection itself" (hello, goodbye, connection errors). */
export const CONNECTION_ID = 0;
/** The largest request id. */
export const MAX_REQUEST_ID = 0xffff_ffff;
