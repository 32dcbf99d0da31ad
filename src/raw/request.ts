/**
 * Where a raw request ends. A raw client sends bytes with no length in front: the request is
 * complete at the first newline, when the client half-closes (EOF), or after a short quiet
 * period with no more bytes (the tutorial's client sends its file name in one send() and then
 * waits, neither ending the line nor closing). Pure: bytes and events in, a verdict out.
 */

/** What the reader says after each event. */
export type RawVerdict = { done: false } | { done: true; request: Buffer } | { done: true; tooLong: true };

/** Longest raw request accepted: a name is at most 1024 bytes, a raw message at most this. */
export const MAX_RAW_REQUEST_BYTES = 4096;
/** Quiet time after which the bytes received so far are the whole request. */
export const RAW_QUIET_MS = 200;

/**
 * Gathers one raw request: bytes up to the first newline (a trailing CR dropped), or all of them at
 * {@link RawRequestReader.end}. It decides once; after its verdict every event answers `{ done: false }`.
 */
export class RawRequestReader {
  readonly #limit: number;
  #chunks: Buffer[] = [];
  #length = 0;
  #done = false;

  /** `limit`: most bytes a request may have (the newline not counted); one more and the verdict is `tooLong`. */
  constructor(limit = MAX_RAW_REQUEST_BYTES) {
    this.#limit = limit;
  }

  /** Bytes arrived. */
  push(chunk: Buffer): RawVerdict {
    if (this.#done) return { done: false };
    const newline = chunk.indexOf(0x0a);
    const part = newline >= 0 ? chunk.subarray(0, newline) : chunk;
    this.#chunks.push(part);
    this.#length += part.length;
    if (this.#length > this.#limit) return this.#finish(true);
    return newline >= 0 ? this.#finish(false) : { done: false };
  }

  /** The client half-closed, or went quiet: what arrived is the request. */
  end(): RawVerdict {
    if (this.#done) return { done: false };
    return this.#finish(false);
  }

  #finish(tooLong: boolean): RawVerdict {
    this.#done = true;
    if (tooLong) return { done: true, tooLong: true };
    let request = Buffer.concat(this.#chunks, this.#length);
    if (request.length > 0 && request[request.length - 1] === 0x0d) request = request.subarray(0, request.length - 1);
    this.#chunks = [];
    return { done: true, request };
  }
}
