/**
 * Received pieces of a file, written at their positions: the receive side of the data path. A
 * piece is a view of the socket's read slab (transport/read-slabs.ts), held until written, so no
 * byte is copied in user space. Pieces that follow each other in the file are gathered into one
 * `writev` of up to {@link MAX_WRITE_BYTES} (the 10-byte frame headers between DATA payloads
 * keep them apart in memory, not in the file), so a GiB costs a few hundred thread-pool round
 * trips, not thousands. Writes are positional and run on libuv's thread pool, several at once:
 * the caller's event loop never waits for the disk, and the copy into the page cache runs beside
 * the socket reads, on another core.
 */
import { writev } from 'node:fs';
import { TcpkitError } from '../../../errors.js';
import type { InputHold } from '../../../transport/read-slabs.js';
import { afterBytes } from '../../../util/iovec.js';

/** The largest single write: a run of pieces is cut there. */
const MAX_WRITE_BYTES = 4 * 1024 * 1024;
/** The most pieces in one write (well under IOV_MAX, 1024 on Linux). */
const MAX_WRITE_PIECES = 256;

/** Pieces that follow each other in the file, not yet handed to a write. */
interface Run {
  readonly pieces: Buffer[];
  readonly holds: InputHold[];
  readonly position: number;
  length: number;
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
    let run = this.#run;
    if (run !== undefined && (run.position + run.length !== position || run.length + piece.length > MAX_WRITE_BYTES || run.pieces.length >= MAX_WRITE_PIECES)) {
      this.#issue(run);
      run = undefined;
    }
    if (run === undefined) {
      run = this.#run = { pieces: [], holds: [], position, length: 0 };
    }
    run.pieces.push(piece);
    run.holds.push(hold);
    run.length += piece.length;
    if (run.length >= MAX_WRITE_BYTES) {
      this.#run = undefined;
      this.#issue(run);
    } else if (!this.#flushScheduled) {
      // What one turn of the event loop received leaves together at its end.
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
    if (this.#run === run) this.#run = undefined;
    this.#writing++;
    this.#writeFrom(run, run.pieces, 0);
  }

  /** Writes `pieces`, the part of `run` from `done` bytes on (a file may take fewer bytes than asked). */
  #writeFrom(run: Run, pieces: Buffer[], done: number): void {
    if (this.#error !== undefined) {
      this.#finished(run);
      return;
    }
    writev(this.#fd, pieces, run.position + done, (error, written) => {
      if (error) {
        this.#error ??= error;
        this.#finished(run);
        return;
      }
      const total = done + written;
      if (total >= run.length) {
        this.#finished(run);
      } else if (written === 0) {
        this.#error ??= new TcpkitError('LOCAL_FILE_ERROR', 'the file system took no bytes of a write');
        this.#finished(run);
      } else {
        this.#writeFrom(run, afterBytes(pieces, written), total);
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
