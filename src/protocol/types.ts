/**
 * The registry of frame types of protocol v1 (docs/PROTOCOL.md §5): every type tcpkit sends or
 * receives, and the ranges the 256 values are divided into. One place, so a collision between
 * two services is a failing test, not a surprise at run time. Nothing here does I/O.
 */

/** Connection control (0x01–0x0F) and the message service (0x10–0x1F). */
export const FrameType = Object.freeze({
  HELLO: 0x01,
  GOODBYE: 0x02,
  PING: 0x03,
  PONG: 0x04,
  ERROR: 0x05,
  CANCEL: 0x06,
  MESSAGE: 0x10,
  MESSAGE_REPLY: 0x11,
} as const);

/** Frame types of the file download service, 0x20–0x2F (§5.2). */
export const FileFrame = Object.freeze({
  GET: 0x20,
  FILE_HEAD: 0x21,
  DATA: 0x22,
  FILE_END: 0x23,
  STAT: 0x24,
  STAT_REPLY: 0x25,
  LIST: 0x26,
  LIST_REPLY: 0x27,
} as const);

/** Frame types of the upload service, 0x30–0x3F (§5.3). */
export const UploadFrame = Object.freeze({
  /** client → server, request: `{name, size, overwrite?}`. */
  PUT: 0x30,
  /** server → client: the temporary file is ready; send the content. */
  PUT_READY: 0x31,
  /** client → server, continuation of a PUT: bytes of the content, in order. */
  PUT_DATA: 0x32,
  /** client → server, continuation of a PUT: `{bytes, digest}`, the end of the content. */
  PUT_END: 0x33,
  /** server → client, final: `{name, size, digest}`, the file is in place under its name. */
  PUT_DONE: 0x34,
} as const);

/**
 * Frame types whose payload is a byte stream, not a message: the content of a file (DATA) or of
 * an upload (PUT_DATA), in order. How it is cut into frames means nothing, so a receiver may
 * take each frame in pieces as its bytes arrive, without assembling it.
 */
export const BYTE_STREAM_TYPES: ReadonlySet<number> = new Set([FileFrame.DATA, UploadFrame.PUT_DATA]);

/** Every frame type of v1 by name. */
export const FRAME_TYPES = Object.freeze({ ...FrameType, ...FileFrame, ...UploadFrame });
/** Name of a frame type of v1. */
export type FrameTypeName = keyof typeof FRAME_TYPES;

/**
 * What a range of frame types is for: `control` (the connection itself, never a service's),
 * `service` (a tcpkit service, named by the range's `service`), `unassigned` (free for future
 * tcpkit services; a server may also serve its own there), `private` (extensions, never used by
 * tcpkit itself).
 */
export type FrameRangeUse = 'control' | 'service' | 'unassigned' | 'private';

/** A range of frame types, both ends included. */
export interface FrameTypeRange {
  readonly first: number;
  readonly last: number;
  readonly use: FrameRangeUse;
  /** For `use: 'service'`: the name the service announces in the server's HELLO. */
  readonly service?: string;
}

/**
 * The ranges of v1, in order, covering 0x01–0xFF without overlap. 0x00 is in none: it is never
 * a frame type.
 */
export const FRAME_TYPE_RANGES: readonly FrameTypeRange[] = Object.freeze([
  Object.freeze({ first: 0x01, last: 0x0f, use: 'control' }),
  Object.freeze({ first: 0x10, last: 0x1f, use: 'service', service: 'message' }),
  Object.freeze({ first: 0x20, last: 0x2f, use: 'service', service: 'file' }),
  Object.freeze({ first: 0x30, last: 0x3f, use: 'service', service: 'upload' }),
  Object.freeze({ first: 0x40, last: 0x7f, use: 'unassigned' }),
  Object.freeze({ first: 0x80, last: 0xff, use: 'private' }),
] as const);

/** The range `type` lies in, or undefined (0x00, or not a u8). */
export function frameTypeRange(type: number): FrameTypeRange | undefined {
  if (!Number.isInteger(type)) return undefined;
  return FRAME_TYPE_RANGES.find((range) => type >= range.first && type <= range.last);
}

const NAMES = new Map<number, FrameTypeName>(Object.entries(FRAME_TYPES).map(([name, value]) => [value, name as FrameTypeName]));

/** `0x2a`: a frame type as hex, as docs/PROTOCOL.md writes it. */
export function frameTypeHex(type: number): string {
  return `0x${type.toString(16).padStart(2, '0')}`;
}

/** Name of any frame type of v1 (control, message, download, upload), or its hex value when unknown. */
export function frameTypeName(type: number): string {
  return NAMES.get(type) ?? frameTypeHex(type);
}
