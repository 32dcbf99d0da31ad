/**
 * Frame codec of protocol v1: bytes in, frames out; frames in, bytes out. No I/O, no timers.
 */
import { ProtocolError } from '../errors.js';
import { HARD_MAX_FRAME_BYTES, HEADER_BYTES, MAX_REQUEST_ID, PREAMBLE } from './constants.js';

/**
 * One decoded frame. `payload` may be a view into a received chunk: copy it to keep it long.
 * A frame of a type the decoder delivers in pieces ({@link FrameDecoderOptions.pieceTypes})
 * arrives as several `Frame`s of the same type and id, each carrying the next piece of the
 * payload; `last` marks the piece that completes it (a whole frame always has `last` unset).
 */
export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly id: number;
  readonly payload: Buffer;
  /** Set on pieces only: false while more of this frame's payload is to come, true on its final piece. */
  readonly last?: boolean;
}

function checkHeaderFields(type: number, id: number, length: number, flags: number): void {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw new RangeError(`frame type out of range: ${type}`);
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xff) throw new RangeError(`frame flags out of range: ${flags}`);
  if (!Number.isInteger(id) || id < 0 || id > MAX_REQUEST_ID) throw new RangeError(`request id out of range: ${id}`);
  // Buffer#writeUInt32BE would write 1.5 as 1 and NaN as 0: a header that lies about its body.
  if (!Number.isInteger(length) || length < 0 || length > HARD_MAX_FRAME_BYTES) {
    throw new RangeError(`frame payload length must be an integer from 0 to ${HARD_MAX_FRAME_BYTES}, got ${length}`);
  }
}

/** Writes a frame header into `target` at `offset`. */
function writeHeader(target: Buffer, offset: number, type: number, id: number, length: number, flags: number): void {
  target.writeUInt32BE(length, offset);
  target[offset + 4] = type;
  target[offset + 5] = flags;
  target.writeUInt32BE(id, offset + 6);
}

/**
 * The 10-byte header of a frame whose payload is sent separately (large payloads: avoids
 * copying them into one buffer).
 */
export function encodeHeader(type: number, id: number, length: number, flags = 0): Buffer {
  checkHeaderFields(type, id, length, flags);
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  writeHeader(header, 0, type, id, length, flags);
  return header;
}

/** One whole frame as a single buffer (header and a copy of the payload). */
export function encodeFrame(type: number, id: number, payload: Uint8Array = EMPTY, flags = 0): Buffer {
  checkHeaderFields(type, id, payload.length, flags);
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  writeHeader(out, 0, type, id, payload.length, flags);
  out.set(payload, HEADER_BYTES);
  return out;
}

const EMPTY = new Uint8Array(0);
/** Payloads at least this large are assembled in their own buffer as they arrive. */
const ASSEMBLE_MIN_BYTES = 64 * 1024;

/** The payload of every empty frame: zero bytes, so sharing it is safe. */
const EMPTY_BUFFER = Buffer.alloc(0);

/** Options of a {@link FrameDecoder}. */
export interface FrameDecoderOptions {
  /**
   * Largest payload accepted; a header announcing more fails at once, before any of the body
   * is buffered.
   */
  maxFrameBytes: number;
  /** Expect the 8-byte preamble before the first frame. @default true */
  expectPreamble?: boolean;
  /**
   * Provides the buffer a payload spanning several chunks is assembled in (e.g. from a pool).
   * @default Buffer.allocUnsafe
   */
  allocate?: (bytes: number) => Buffer;
  /**
   * The caller reuses each pushed chunk's memory once `push` returns: payloads are then always
   * copies, and bytes kept for the next push are copied too. @default false
   */
  reusedInput?: boolean;
  /**
   * Frame types whose payload is a byte stream (DATA): handed on in pieces as the bytes arrive,
   * each a view of the pushed chunk, never assembled or copied. With `reusedInput`, a piece is
   * valid only until `push` returns: the receiver consumes it at once or keeps the memory from
   * being reused (transport/read-slabs.ts).
   */
  pieceTypes?: ReadonlySet<number>;
}

/**
 * Incremental frame decoder: `push(chunk)` returns the frames completed by that chunk. Chunk
 * boundaries never matter. Once it has thrown, the decoder stays failed: every later push
 * throws the same error. It never holds more than one header plus one frame's payload (the
 * largest allowed) plus the bytes it has not yet been asked to decode.
 */
export class FrameDecoder {
  #maxFrameBytes: number;
  #preambleSeen: number;
  #chunks: Buffer[] = [];
  /** Bytes of `#chunks[0]` already consumed: the front chunk is never re-sliced per frame. */
  #offset = 0;
  #buffered = 0;
  /** Header of the frame whose payload is awaited; `#length < 0` while awaiting a header. */
  #length = -1;
  #type = 0;
  #flags = 0;
  #id = 0;
  #failure: ProtocolError | undefined;
  readonly #allocate: (bytes: number) => Buffer;
  readonly #reusedInput: boolean;
  /**
   * A large payload being filled as its bytes arrive (one copy each, straight into the buffer
   * the frame will carry), instead of keeping every chunk until the frame is whole.
   */
  #assembly: Buffer | undefined;
  #assembled = 0;
  readonly #pieceTypes: ReadonlySet<number> | undefined;
  /** Payload bytes still to come of the frame being delivered in pieces (0: none is). */
  #pieceLeft = 0;

  /** @throws {RangeError} when `options.maxFrameBytes` is not an integer from 0 to `HARD_MAX_FRAME_BYTES`. */
  constructor(options: FrameDecoderOptions) {
    this.#maxFrameBytes = FrameDecoder.#checkLimit(options.maxFrameBytes);
    this.#preambleSeen = options.expectPreamble === false ? PREAMBLE.length : 0;
    this.#allocate = options.allocate ?? Buffer.allocUnsafe;
    this.#reusedInput = options.reusedInput === true;
    this.#pieceTypes = options.pieceTypes !== undefined && options.pieceTypes.size > 0 ? options.pieceTypes : undefined;
  }

  static #checkLimit(limit: number): number {
    if (!Number.isInteger(limit) || limit < 0 || limit > HARD_MAX_FRAME_BYTES) {
      throw new RangeError(`maxFrameBytes must be an integer from 0 to ${HARD_MAX_FRAME_BYTES}, got ${limit}`);
    }
    return limit;
  }

  /** Current payload limit. */
  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  /** Changes the payload limit for frames whose header has not yet been read (after the hello). */
  set maxFrameBytes(limit: number) {
    this.#maxFrameBytes = FrameDecoder.#checkLimit(limit);
  }

  /** Bytes held while waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.#buffered + this.#assembled;
  }

  /**
   * True from the first byte of a frame's header until its last payload byte: a frame has
   * begun. Unlike {@link bufferedBytes}, it holds while a complete header waits for a payload
   * of which no byte has come yet (the header's bytes were consumed, nothing is buffered).
   */
  get midFrame(): boolean {
    return this.#length >= 0 || this.#buffered > 0;
  }

  /** True when the preamble has been fully received (or was not expected). */
  get preambleDone(): boolean {
    return this.#preambleSeen === PREAMBLE.length;
  }

  /** The error this decoder failed with, if it has. */
  get failure(): ProtocolError | undefined {
    return this.#failure;
  }

  /** Feeds bytes; returns the frames they complete, in order. Throws {@link ProtocolError}. */
  push(chunk: Uint8Array): Frame[] {
    if (this.#failure) throw this.#failure;
    const frames: Frame[] = [];
    let data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (!this.preambleDone) {
      data = this.#consumePreamble(data);
      if (!this.preambleDone) return frames;
    }
    if (this.#pieceLeft > 0 && data.length > 0) {
      data = this.#piece(data, frames);
      if (this.#pieceLeft > 0) return frames;
    }
    if (this.#assembly !== undefined) {
      const n = Math.min(this.#length - this.#assembled, data.length);
      data.copy(this.#assembly, this.#assembled, 0, n);
      this.#assembled += n;
      data = data.subarray(n);
      if (this.#assembled < this.#length) return frames;
      frames.push({ type: this.#type, flags: this.#flags, id: this.#id, payload: this.#assembly });
      this.#assembly = undefined;
      this.#assembled = 0;
      this.#length = -1;
    }
    if (data.length === 0) return frames;
    this.#chunks.push(data);
    this.#buffered += data.length;
    for (;;) {
      if (this.#length < 0) {
        if (this.#buffered < HEADER_BYTES) break;
        const first = this.#chunks[0]!;
        if (first.length - this.#offset >= HEADER_BYTES) {
          // Common case: the header is within one chunk; read it in place.
          this.#readHeader(first, this.#offset);
          this.#skip(HEADER_BYTES);
        } else {
          this.#readHeader(this.#take(HEADER_BYTES), 0);
        }
        if (this.#length > 0 && this.#pieceTypes?.has(this.#type) === true) {
          // A byte stream: what is buffered now goes on as pieces, the rest as it comes.
          this.#pieceLeft = this.#length;
          while (this.#pieceLeft > 0 && this.#buffered > 0) {
            const first = this.#chunks[0]!;
            const n = Math.min(first.length - this.#offset, this.#pieceLeft);
            this.#pieceLeft -= n;
            frames.push({ type: this.#type, flags: this.#flags, id: this.#id, payload: first.subarray(this.#offset, this.#offset + n), last: this.#pieceLeft === 0 });
            this.#skip(n);
          }
          if (this.#pieceLeft > 0) break;
          this.#length = -1;
          continue;
        }
      }
      if (this.#buffered < this.#length) {
        if (this.#length >= ASSEMBLE_MIN_BYTES) {
          // Everything buffered belongs to this payload: move it into the payload's own buffer.
          const out = this.#allocate(this.#length);
          let have = 0;
          for (const [i, chunk] of this.#chunks.entries()) {
            const part = i === 0 ? chunk.subarray(this.#offset) : chunk;
            out.set(part, have);
            have += part.length;
          }
          this.#chunks = [];
          this.#offset = 0;
          this.#buffered = 0;
          this.#assembly = out;
          this.#assembled = have;
        }
        break;
      }
      let payload = this.#length === 0 ? EMPTY_BUFFER : this.#take(this.#length);
      if (this.#reusedInput && payload.buffer === data.buffer) payload = Buffer.from(payload);
      frames.push({ type: this.#type, flags: this.#flags, id: this.#id, payload });
      this.#length = -1;
    }
    if (this.#reusedInput) {
      // What stays for the next push must not live in memory the caller is about to reuse.
      for (let i = 0; i < this.#chunks.length; i++) {
        const chunk = this.#chunks[i]!;
        if (chunk.buffer === data.buffer) {
          const start = i === 0 ? this.#offset : 0;
          this.#chunks[i] = Buffer.from(chunk.subarray(start));
          if (i === 0) this.#offset = 0;
        }
      }
    }
    return frames;
  }

  /** The next piece of the frame being delivered in pieces, from the front of `data`; returns the rest. */
  #piece(data: Buffer, frames: Frame[]): Buffer {
    const n = Math.min(this.#pieceLeft, data.length);
    this.#pieceLeft -= n;
    frames.push({ type: this.#type, flags: this.#flags, id: this.#id, payload: data.subarray(0, n), last: this.#pieceLeft === 0 });
    if (this.#pieceLeft === 0) this.#length = -1;
    return data.subarray(n);
  }

  #readHeader(source: Buffer, at: number): void {
    const length = source.readUInt32BE(at);
    if (length > this.#maxFrameBytes) {
      this.#fail(new ProtocolError('FRAME_TOO_LARGE', `frame of ${length} bytes announced, the limit is ${this.#maxFrameBytes}`));
    }
    this.#length = length;
    this.#type = source[at + 4]!;
    this.#flags = source[at + 5]!;
    this.#id = source.readUInt32BE(at + 6);
  }

  /** Drops `n` bytes that lie within the front chunk. */
  #skip(n: number): void {
    this.#buffered -= n;
    this.#offset += n;
    if (this.#offset === this.#chunks[0]!.length) {
      this.#chunks.shift();
      this.#offset = 0;
    }
  }

  #consumePreamble(data: Buffer): Buffer {
    let i = 0;
    while (i < data.length && this.#preambleSeen < PREAMBLE.length) {
      if (data[i] !== PREAMBLE[this.#preambleSeen]) {
        this.#fail(new ProtocolError('NOT_TCPKIT', 'the peer did not open with the tcpkit preamble'));
      }
      i++;
      this.#preambleSeen++;
    }
    return data.subarray(i);
  }

  #fail(error: ProtocolError): never {
    this.#failure = error;
    this.#assembly = undefined;
    this.#assembled = 0;
    this.#pieceLeft = 0;
    this.#chunks = [];
    this.#offset = 0;
    this.#buffered = 0;
    throw error;
  }

  /** Removes exactly `n` (≤ buffered) bytes from the front; copies only when they span chunks. */
  #take(n: number): Buffer {
    const first = this.#chunks[0]!;
    const available = first.length - this.#offset;
    if (available >= n) {
      const out = first.subarray(this.#offset, this.#offset + n);
      this.#skip(n);
      return out;
    }
    this.#buffered -= n;
    const out = this.#allocate(n);
    let filled = 0;
    while (filled < n) {
      const head = this.#chunks[0]!;
      const want = n - filled;
      const have = head.length - this.#offset;
      if (have <= want) {
        out.set(this.#offset === 0 ? head : head.subarray(this.#offset), filled);
        filled += have;
        this.#chunks.shift();
        this.#offset = 0;
      } else {
        out.set(head.subarray(this.#offset, this.#offset + want), filled);
        this.#offset += want;
        filled += want;
      }
    }
    return out;
  }
}
