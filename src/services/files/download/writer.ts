/**
 * Received pieces of a file, written at their positions: the receive side of the data path. A
 * piece is a view of the socket's read slab (transport/read-slabs.ts), held until written, so no
 * byte is copied in user space; pieces adjacent in memory and in the file (consecutive reads
 * into one slab) leave as one write of up to {@link MAX_WRITE_BYTES}. Writes are positional and
 * run on libuv's thread pool, several at once, so the caller's event loop never waits for the
 * disk and the copy into the page cache runs beside the socket reads, on another core.
 */
import { write } from 'node:fs';
import { TcpkitError } from '../../../errors.js';
import type { InputHold } from '../../../transport/read-slabs.js';

/** The largest single write (a run of adjacent pieces is cut there). */
const MAX_WRITE_BYTES = 4 * 1024 * 1024;
/** A run this long is written at once; a shorter one waits for the end of the turn to grow. */
const EAGER_WRITE_BYTES = 1024 * 1024;

/** A run of adjacent pieces not yet handed to a write. */
interface Run {
  readonly memory: ArrayBufferLike;
  readonly byteOffset: number;
  length: number;
  readonly position: number;
  readonly holds: InputHold[];
}

/** Writes pieces of one file; see the file comment. */
export class PieceWriter {
  readonly #fd: number;
  readonly #hold: (piece: Uint8Array) => InputHold;
  /** Told of bytes once they are written (or dropped after a failure): flow control. */
  readonly #done: (bytes: number) => void;
  #run: Run | undefined;
  #flushScheduled = false;
  #writing = 0;
  #queued = 0;
  #error: unknown;
  #idle: (() => void) | undefined;

  /** Writes to `fd`; `hold` keeps a piece's memory until it is written; `done` hears of each write's bytes. */
  constructor(fd: number, hold: (piece: Uint8Array) => InputHold, done: (bytes: number) => void) {
    this.#fd = fd;
    this.#hold = hold;
    this.#done = done;
  }

  /** Bytes accepted and not yet written. */
  get queued(): number {
    return this.#queued;
  }

  /** The first write error, if a write failed (later pieces are then dropped). */
  get error(): unknown {
    return this.#error;
  }

  /** Queues `piece` to be written at `position`. Synchronous: the piece is held, not copied. */
  add(piece: Buffer, position: number): void {
    if (this.#error !== undefined || piece.length === 0) return;
    const hold = this.#hold(piece);
    this.#queued += piece.length;
    const run = this.#run;
    if (
      run !== undefined &&
      run.memory === piece.buffer &&
      run.byteOffset + run.length === piece.byteOffset &&
      run.position + run.length === position &&
      run.length + piece.length <= MAX_WRITE_BYTES
    ) {
      run.length += piece.length;
      run.holds.push(hold);
    } else {
      if (run !== undefined) this.#issue(run);
      this.#run = { memory: piece.buffer, byteOffset: piece.byteOffset, length: piece.length, position, holds: [hold] };
    }
    if (this.#run!.length >= EAGER_WRITE_BYTES) {
      this.#issue(this.#run!);
      this.#run = undefined;
    } else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(PieceWriter.#flush, this);
    }
  }

  /** Resolves once every accepted piece is written (or dropped after a failure). */
  idle(): Promise<void> {
    this.#flushNow();
    if (this.#writing === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idle = resolve;
    });
  }

  static #flush(writer: PieceWriter): void {
    writer.#flushScheduled = false;
    writer.#flushNow();
  }

  #flushNow(): void {
    const run = this.#run;
    if (run === undefined) return;
    this.#run = undefined;
    this.#issue(run);
  }

  #issue(run: Run): void {
    this.#writing++;
    this.#writeFrom(run, 0);
  }

  /** Writes `run` from `done` bytes on (a regular file may take fewer bytes than asked). */
  #writeFrom(run: Run, done: number): void {
    if (this.#error !== undefined) {
      this.#finished(run);
      return;
    }
    const view = Buffer.from(run.memory, run.byteOffset + done, run.length - done);
    write(this.#fd, view, 0, view.length, run.position + done, (error, written) => {
      if (error) {
        this.#error ??= error;
        this.#finished(run);
      } else if (done + written < run.length && written > 0) {
        this.#writeFrom(run, done + written);
      } else {
        if (written === 0 && done < run.length) this.#error ??= new TcpkitError('LOCAL_FILE_ERROR', 'the file system took no bytes of a write');
        this.#finished(run);
      }
    });
  }

  #finished(run: Run): void {
    for (const hold of run.holds) hold.release();
    this.#queued -= run.length;
    this.#writing--;
    this.#done(run.length);
    if (this.#writing === 0 && this.#run === undefined && this.#idle !== undefined) {
      const idle = this.#idle;
      this.#idle = undefined;
      idle();
    }
  }
}
