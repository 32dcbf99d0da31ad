/**
 * The disk side of both transfer directions: the content of an upload (server side) or of a
 * download (client side) arrives in pieces, views of the socket's read memory, and each is kept
 * as it is, never copied, until written; the caller's hold on that memory is released then.
 * Pieces are gathered into positional `writev()` calls of up to {@link UploadWriterOptions.batchBytes}
 * or {@link UploadWriterOptions.maxIovecs}, a few in flight at once on libuv's thread pool, so the
 * event loop never waits for the disk and the copy into the page cache runs beside the socket
 * reads, on another core. A full batch leaves as soon as a write slot is free; a partial one at
 * the end of the event loop's turn (the reads of one turn join it), when no full one waits.
 *
 * Durability as before: `fdatasync` every {@link UploadWriterOptions.syncEveryBytes} written,
 * beside the writes (one at a time, never in their way), so the final fsync before the commit
 * stays short even for a huge file on a slow disk. Node offers no `sync_file_range`, which
 * would start write-back without waiting for it; a periodic fdatasync on the thread pool is the
 * nearest we have.
 *
 * Flow control: {@link UploadWriter.add} says false once the bytes held (accepted, not yet
 * written) reach the high-water mark; `onRoom` runs when they are down to half of it.
 */
import { fdatasync, writev } from 'node:fs';
import { TcpkitError } from '../../errors.js';
import type { InputHold } from '../../transport/read-slabs.js';
import { afterBytes } from '../../util/iovec.js';

/** Options of a {@link FileWriter}. */
export interface FileWriterOptions {
  /** Where in the file the first piece goes (a resumed download). @default 0 */
  startAt?: number;
  /** Writes in flight at once. @default 2 */
  maxWrites?: number;
  /** A batch this large is written at once. @default 1048576 (1 MiB) */
  batchBytes?: number;
  /** Pieces in one writev() at most. @default 64 */
  maxIovecs?: number;
  /** {@link FileWriter.add} says false once this many bytes are held. @default 4194304 (4 MiB) */
  highWaterBytes?: number;
  /** fdatasync after every this many bytes written; 0: never (the caller syncs, or need not). @default 134217728 (128 MiB) */
  syncEveryBytes?: number;
  /** Held bytes fell to half the high-water mark after `add` said false: the caller may add again. */
  onRoom?: () => void;
  /** The first write or sync failure; later pieces are dropped. Called once. */
  onError?: (error: unknown) => void;
}

/** The defaults of {@link FileWriterOptions}, in one place (tuned for uploads; a download passes its own). */
export const FILE_WRITER_DEFAULTS = Object.freeze({
  maxWrites: 2,
  batchBytes: 1024 * 1024,
  maxIovecs: 64,
  highWaterBytes: 4 * 1024 * 1024,
  syncEveryBytes: 128 * 1024 * 1024,
});

/** Pieces adjacent in the file, written by one writev(). */
interface Batch {
  pieces: Buffer[];
  bytes: number;
  readonly position: number;
  /** Bytes of it already written (a write may take fewer than asked). */
  done: number;
  /** Holds on the pieces' memory, released once written (or dropped). */
  holds: InputHold[] | undefined;
}

/** Writes the pieces of one file to its descriptor; see the file comment. */
export class FileWriter {
  readonly #fd: number;
  readonly #options: Required<Omit<FileWriterOptions, 'startAt' | 'onRoom' | 'onError'>>;
  readonly #onRoom: (() => void) | undefined;
  readonly #onError: ((error: unknown) => void) | undefined;
  /** The batch pieces are added to. */
  #batch: Batch | undefined;
  /** Full batches waiting for a write slot, in file order. */
  readonly #ready: Batch[] = [];
  #writing = 0;
  #syncing = false;
  /** Bytes accepted and not yet written (or dropped). */
  #held = 0;
  /** Where the next piece goes in the file. */
  #position = 0;
  /** Bytes written since the last fdatasync began. */
  #unsynced = 0;
  #wantRoom = false;
  #flushScheduled = false;
  #error: unknown;
  #settled: (() => void) | undefined;

  /** Writes at positions from `startAt` (0) of `fd`, which stays open until {@link settled} resolves. */
  constructor(fd: number, options: FileWriterOptions = {}) {
    this.#fd = fd;
    this.#position = options.startAt ?? 0;
    this.#options = {
      maxWrites: options.maxWrites ?? FILE_WRITER_DEFAULTS.maxWrites,
      batchBytes: options.batchBytes ?? FILE_WRITER_DEFAULTS.batchBytes,
      maxIovecs: options.maxIovecs ?? FILE_WRITER_DEFAULTS.maxIovecs,
      highWaterBytes: options.highWaterBytes ?? FILE_WRITER_DEFAULTS.highWaterBytes,
      syncEveryBytes: options.syncEveryBytes ?? FILE_WRITER_DEFAULTS.syncEveryBytes,
    };
    this.#onRoom = options.onRoom;
    this.#onError = options.onError;
  }

  /** Bytes accepted and not yet written. */
  get held(): number {
    return this.#held;
  }

  /** The first failure, if a write or sync failed. */
  get error(): unknown {
    return this.#error;
  }

  /**
   * Appends `piece` (kept, not copied: its memory must not change until it is written). `hold`,
   * the caller's hold on that memory, is released once the piece is written or dropped. Returns
   * false when the caller should add no more until `onRoom`. After a failure pieces are dropped.
   */
  add(piece: Buffer, hold?: InputHold): boolean {
    if (this.#error !== undefined || piece.length === 0) {
      hold?.release();
      return true;
    }
    const batch = (this.#batch ??= { pieces: [], bytes: 0, position: this.#position, done: 0, holds: undefined });
    batch.pieces.push(piece);
    batch.bytes += piece.length;
    if (hold !== undefined) (batch.holds ??= []).push(hold);
    this.#position += piece.length;
    this.#held += piece.length;
    if (batch.bytes >= this.#options.batchBytes || batch.pieces.length >= this.#options.maxIovecs) {
      this.#batch = undefined;
      this.#ready.push(batch);
      this.#pump();
    } else {
      this.#scheduleFlush();
    }
    if (this.#held < this.#options.highWaterBytes) return true;
    this.#wantRoom = true;
    return false;
  }

  /** Writes what is held and waits for it and for a sync in flight; rejects with the first failure. */
  async finish(): Promise<void> {
    this.#flush();
    await this.settled();
    if (this.#error !== undefined) throw this.#error;
  }

  /**
   * Resolves once no write or sync runs (the file may then be closed). After {@link stop}, what
   * was not yet written is dropped; otherwise everything added is written first.
   */
  settled(): Promise<void> {
    if (this.#idle) return Promise.resolve();
    return new Promise((resolve) => {
      this.#settled = resolve;
    });
  }

  /** Drops what is not yet written (the upload failed); writes in flight still finish ({@link settled}). */
  stop(reason: unknown = new TcpkitError('ABORTED', 'the transfer stopped')): void {
    this.#fail(reason, false);
  }

  get #idle(): boolean {
    return this.#writing === 0 && !this.#syncing && (this.#error !== undefined || (this.#batch === undefined && this.#ready.length === 0));
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#writing >= this.#options.maxWrites) return;
    this.#flushScheduled = true;
    setImmediate(FileWriter.#endOfTurn, this);
  }

  static #endOfTurn(writer: FileWriter): void {
    writer.#flushScheduled = false;
    if (writer.#ready.length === 0 && writer.#writing < writer.#options.maxWrites) writer.#flush();
  }

  /** The partial batch joins the queue and goes when a slot is free. */
  #flush(): void {
    const batch = this.#batch;
    if (batch === undefined) return;
    this.#batch = undefined;
    this.#ready.push(batch);
    this.#pump();
  }

  /** Issues waiting batches while write slots are free. */
  #pump(): void {
    while (this.#error === undefined && this.#writing < this.#options.maxWrites && this.#ready.length > 0) {
      const batch = this.#ready.shift()!;
      this.#writing++;
      this.#write(batch);
    }
    if (this.#batch !== undefined) this.#scheduleFlush();
  }

  /** Writes `batch` from its `done` bytes on. */
  #write(batch: Batch): void {
    const pieces = batch.done === 0 ? batch.pieces : afterBytes(batch.pieces, batch.done);
    writev(this.#fd, pieces, batch.position + batch.done, (error, written) => this.#written(batch, error, written));
  }

  #written(batch: Batch, error: NodeJS.ErrnoException | null, written: number): void {
    if (error === null && written > 0) batch.done += written;
    if (error === null && written > 0 && batch.done < batch.bytes) {
      // A regular file may take fewer bytes than asked (a disk filling up): write the rest.
      this.#write(batch);
      return;
    }
    this.#writing--;
    this.#held -= batch.bytes;
    this.#unsynced += batch.done;
    if (batch.holds !== undefined) for (const hold of batch.holds) hold.release();
    if (error !== null) this.#fail(error, true);
    else if (batch.done < batch.bytes) this.#fail(new TcpkitError('NO_SPACE', 'the file system took no bytes of a write'), true);
    else {
      if (this.#options.syncEveryBytes > 0 && this.#unsynced >= this.#options.syncEveryBytes) this.#sync();
      this.#pump();
    }
    this.#afterProgress();
  }

  /** One fdatasync beside the writes; the bytes written meanwhile count towards the next. */
  #sync(): void {
    if (this.#syncing) return;
    this.#syncing = true;
    this.#unsynced = 0;
    fdatasync(this.#fd, (error) => {
      this.#syncing = false;
      if (error !== null) this.#fail(error, true);
      // What was written meanwhile may be due already (a fast network, a slow disk).
      else if (this.#error === undefined && this.#options.syncEveryBytes > 0 && this.#unsynced >= this.#options.syncEveryBytes) this.#sync();
      this.#afterProgress();
    });
  }

  /** Room for the caller again, and the end of the work for whoever waits on it. */
  #afterProgress(): void {
    if (this.#wantRoom && this.#held <= this.#options.highWaterBytes / 2) {
      this.#wantRoom = false;
      this.#onRoom?.();
    }
    if (this.#settled !== undefined && this.#idle) {
      const settled = this.#settled;
      this.#settled = undefined;
      settled();
    }
  }

  /** Everything not yet written is dropped (and handed back); `report`: tell `onError`. */
  #fail(error: unknown, report: boolean): void {
    if (this.#error !== undefined) return;
    this.#error = error;
    const dropped = this.#batch === undefined ? this.#ready.splice(0) : [...this.#ready.splice(0), this.#batch];
    this.#batch = undefined;
    for (const batch of dropped) {
      this.#held -= batch.bytes;
      if (batch.holds !== undefined) for (const hold of batch.holds) hold.release();
    }
    if (report) this.#onError?.(error);
    this.#afterProgress();
  }
}
