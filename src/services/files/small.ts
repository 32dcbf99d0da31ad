/**
 * Small files take a synchronous path on both sides of a download (issue 12, item 5): a fixed
 * budget of a few system calls per file and no per-file promise chain.
 *
 * Why: a call on libuv's thread pool costs a dispatch, a wake-up and a completion on the event
 * loop; with 32 downloads in flight it costs ~40 µs of main-thread time per call, where the
 * system call itself (served from the kernel's dentry and inode caches, or the page cache) takes
 * a few µs. For a file of 4 KiB the round trips are the whole cost. So:
 * - the client writes a file of at most {@link SMALL_FILE_BYTES} with 4 synchronous calls once
 *   it is verified (open O_EXCL | O_NOFOLLOW, write, close, then rename or link + unlink:
 *   `download/save.ts`, `commit.ts` commitFileSync); `DownloadOptions.blocking: false` keeps
 *   every size on the thread pool, for a slow network file system;
 * - the server looks a GET's name up with synchronous metadata calls (`jail.ts`
 *   openFileSync: at most ~7 per GET, none of which can block on a FIFO or a device: O_PATH,
 *   then O_NONBLOCK) and reads a file of at most {@link SMALL_FILE_BYTES} with `readSync`,
 *   sending FILE_HEAD, DATA and FILE_END in one turn (`download/service.ts`). Larger files are
 *   read on the thread pool, chunk by chunk, as before: bulk reads never occupy the event loop.
 */
import { closeSync, constants as fsc, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { TcpkitError } from '../../errors.js';
import { commitFileSync, type CommitOptions } from './commit.js';
import { localError, writeFailure } from './errors.js';

/** Files up to this size are read (server) and written (client) with synchronous calls. */
export const SMALL_FILE_BYTES = 64 * 1024;

/**
 * Bytes [0, `size`) of the file open at `fd`, read with synchronous calls into a fresh buffer;
 * shorter only when the file shrank meanwhile. For `size` up to {@link SMALL_FILE_BYTES}.
 */
export function readSmallSync(fd: number, size: number): Buffer {
  const buffer = Buffer.allocUnsafe(size);
  let filled = 0;
  while (filled < size) {
    const bytesRead = readSync(fd, buffer, filled, size - filled, filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === size ? buffer : buffer.subarray(0, filled);
}

/** How {@link saveSmallSync} commits: {@link CommitOptions}, and the destination as the caller named it. */
export interface SmallCommit extends Pick<CommitOptions, 'overwrite' | 'exists'> {
  /** The destination in messages (`cannot save LABEL: …`). */
  label: string;
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // the failure that brought us here is what the caller must see
  }
}

/**
 * Writes a verified small file to `part` (beside `target`), then puts it under `target` as
 * `commitFile` does: 4 synchronous calls (open, write, close, rename; link + unlink when the
 * name must not be taken). `part` is created with O_EXCL | O_NOFOLLOW, so neither an earlier
 * partial file nor a symbolic link planted at its name is written through. On any failure
 * `part` is removed (a small file has nothing worth resuming) and nothing is under `target`
 * that was not there before; errors are LOCAL_FILE_ERROR naming the path, or `exists()`.
 */
export function saveSmallSync(content: Uint8Array, part: string, target: string, commit: SmallCommit): void {
  let fd: number;
  try {
    fd = openSync(part, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o644);
  } catch (error) {
    throw localError(`cannot create ${part}`, error);
  }
  let failure: unknown;
  try {
    for (let written = 0; written < content.length; ) {
      const bytes = writeSync(fd, content, written, content.length - written, written);
      if (bytes === 0) throw new TcpkitError('LOCAL_FILE_ERROR', 'the file system took no bytes of a write');
      written += bytes;
    }
  } catch (error) {
    failure = error;
  }
  try {
    // A network file system may report a failed write only here.
    closeSync(fd);
  } catch (error) {
    failure ??= error;
  }
  if (failure !== undefined) {
    unlinkQuietly(part);
    throw writeFailure(part, failure);
  }
  try {
    commitFileSync(part, target, { overwrite: commit.overwrite, exists: commit.exists, removeTemp: 'required' });
  } catch (error) {
    unlinkQuietly(part);
    throw localError(`cannot save ${commit.label}`, error);
  }
}
