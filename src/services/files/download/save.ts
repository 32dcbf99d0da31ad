/**
 * The download service, client side: download to a path atomically (a partial file beside the
 * destination, put under its name only once verified: see `commit.ts`), resuming from a partial
 * file left by an interrupted run.
 */
import { close, constants as fsc, ftruncateSync, lstatSync, openSync } from 'node:fs';
import { lstat, open, readFile, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Client, RequestOptions } from '../../../client/client.js';
import { clientInternals } from '../../../client/internal.js';
import { TcpkitError } from '../../../errors.js';
import { bulkBuffers } from '../../../util/buffer-pool.js';
import { commitFile, destinationExists, partialPaths } from '../commit.js';
import { createDigest, type Digest, type DigestAlgorithm } from '../digest.js';
import { localError, writeFailure } from '../errors.js';
import { DATA_CHUNK_BYTES, type GetRequest } from '../wire.js';
import { saveSmallSync, SMALL_FILE_BYTES } from '../small.js';
import { getBody, resumeDigest } from './client.js';
import { FileWriter, type FileWriterOptions } from '../writer.js';

/** Progress of a download. */
export interface DownloadProgress {
  name: string;
  /** Bytes of the file on disk so far (resumed prefix included). */
  bytes: number;
  /** Size of the file, once known. */
  size: number | undefined;
}

/** Options of {@link download}. */
export interface DownloadOptions extends RequestOptions {
  /** Replace an existing destination. @default false */
  force?: boolean;
  /** Continue from a partial file left by an earlier run. @default true */
  resume?: boolean;
  /** Called as bytes arrive (at most once per DATA frame). */
  onProgress?: (progress: DownloadProgress) => void;
  /**
   * Files up to 64 KiB (`SMALL_FILE_BYTES`) are written with 4 synchronous system calls (µs
   * each on a local disk) once verified: a thread-pool round trip costs ~10× more than the
   * write itself. `false` keeps every size on the thread pool, for a slow network file system
   * where one synchronous call could hold the event loop for milliseconds.
   * @default true
   */
  blocking?: boolean;
}

/** What a finished download reports. */
export interface DownloadResult {
  name: string;
  /** Absolute path of the saved file. */
  path: string;
  /** Size of the file. */
  bytes: number;
  /** Bytes that crossed the network this time (less than `bytes` after a resume). */
  transferred: number;
  /** Where this run started (0 unless resumed). */
  resumedFrom: number;
  digest: string;
  seconds: number;
}


interface PartMeta {
  name: string;
  size: number;
  mtimeMs: number;
}

async function readMeta(file: string, name: string): Promise<PartMeta | undefined> {
  try {
    const meta = JSON.parse(await readFile(file, 'utf8')) as Partial<PartMeta>;
    if (meta.name === name && Number.isSafeInteger(meta.size) && typeof meta.mtimeMs === 'number') return meta as PartMeta;
  } catch {
    // no usable record: start over
  }
  return undefined;
}

async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** {@link exists} in one synchronous call. */
function existsNow(file: string): boolean {
  return lstatSync(file, { throwIfNoEntry: false }) !== undefined;
}

/** False only when `file` certainly does not exist: anything else takes the path that finds out. */
function mayExistNow(file: string): boolean {
  try {
    return existsNow(file);
  } catch {
    return true;
  }
}

/** The partial file, once open: its descriptor, and how to close it (idempotent). */
interface OpenPartial {
  fd: number;
  close(): Promise<void>;
}

/** A descriptor opened with `openSync`, closed on the thread pool as FileHandle.close does; only once (the number may be reused). */
function openedNow(fd: number): OpenPartial {
  let closing: Promise<void> | undefined;
  return {
    fd,
    close: () => (closing ??= new Promise((resolve, reject) => close(fd, (error) => (error ? reject(error) : resolve())))),
  };
}

/** `4.0 MB of 50.0 MB`: decimal units, one decimal, both in the unit that suits `size`. */
function amounts(got: number, size: number): string {
  if (size < 1000) return `${got} of ${size} bytes`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let unit = 0;
  while (size >= 1000 ** (unit + 2) && unit < units.length - 1) unit++;
  const scale = 1000 ** (unit + 1);
  return `${(got / scale).toFixed(1)} ${units[unit]} of ${(size / scale).toFixed(1)} ${units[unit]}`;
}

/**
 * The error of a download cut short by the connection, saying how far it got and what was
 * kept: `connection reset by HOST after 4.0 MB of 50.0 MB; the partial file is kept: run again
 * to resume`. The code stays (exit code, retries); other errors pass unchanged.
 */
function interrupted(error: unknown, remote: string, got: number, size: number, kept: boolean): unknown {
  if (!(error instanceof TcpkitError)) return error;
  const code = error.wireCode;
  if (code !== 'CONNECTION_CLOSED' && code !== 'CONNECTION_FAILED' && code !== 'REQUEST_TIMEOUT') return error;
  const errno = ((error.cause ?? {}) as NodeJS.ErrnoException).code;
  const progress = `after ${amounts(got, size)}`;
  const what =
    errno === 'ECONNRESET' || errno === 'EPIPE'
      ? `connection reset by ${remote} ${progress}`
      : code === 'CONNECTION_CLOSED' && error.message.endsWith('before replying')
        ? // Linux reports a reset that arrives while we are not reading (paused for the disk)
          // as an end of stream, its unread bytes dropped: an EOF mid-reply may be either.
          `${remote} closed or reset the connection ${progress}`
        : `${error.message} (${progress})`;
  return new TcpkitError(code, `${what}${kept ? '; the partial file is kept: run again to resume' : ''}`, { cause: error });
}

/** Digest of the first `length` bytes of a local file. */
async function digestPrefix(handle: FileHandle, length: number, algorithm: DigestAlgorithm): Promise<Digest> {
  const digest = createDigest(algorithm);
  const buffer = bulkBuffers.take();
  try {
    for (let position = 0; position < length; ) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - position), position);
      if (bytesRead === 0) throw new TcpkitError('LOCAL_FILE_ERROR', 'the partial file shrank while resuming');
      digest.update(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
  } finally {
    // Hashed synchronously: nothing holds the buffer once the loop is over.
    bulkBuffers.give(buffer);
  }
  return digest;
}

/**
 * How a download's pieces go to disk (services/files/writer.ts): up to 4 MiB per writev, 2 at
 * once; reading pauses while 8 MiB received wait for the disk (held in the socket's read slabs)
 * and goes on at half that. No fdatasync as it goes: a download's promise is atomicity (the
 * rename of a verified file), not durability.
 */
const DOWNLOAD_WRITES: FileWriterOptions = Object.freeze({
  maxWrites: 2,
  batchBytes: 4 * DATA_CHUNK_BYTES,
  maxIovecs: 256,
  highWaterBytes: 8 * DATA_CHUNK_BYTES,
  syncEveryBytes: 0,
});
/** Files up to this size are not worth a resume record (they fit in one DATA frame). */
const RESUME_RECORD_MIN_BYTES = DATA_CHUNK_BYTES;

/**
 * Downloads `name` to `destination`: bytes go to a partial file beside it, which is renamed into
 * place only after the whole file is verified; an existing destination is never replaced unless
 * `force`. After an interruption the partial file stays, and the next call resumes from it
 * (after checking the server's file is the same version, and verifying the whole result).
 * @example const result = await download(client, 'big.iso', './big.iso', { onProgress: console.log });
 */
export async function download(client: Client, name: string, destination: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  try {
    return await downloadOnce(client, name, destination, options);
  } catch (error) {
    // A resumed file that fails verification may have a bad prefix on our side: start over once.
    if (error instanceof ResumedMismatch) return downloadOnce(client, name, destination, { ...options, resume: false });
    throw error;
  }
}

/** A digest mismatch after resuming; the partial file has been removed. */
class ResumedMismatch extends TcpkitError {}

async function downloadOnce(client: Client, name: string, destination: string, options: DownloadOptions): Promise<DownloadResult> {
  const started = performance.now();
  const target = path.resolve(destination);
  const { part, meta } = partialPaths(target);
  const blocking = options.blocking !== false;
  if (!options.force && (blocking ? existsNow(target) : await exists(target))) {
    throw destinationExists(destination);
  }
  // O_NOFOLLOW: never write through a symbolic link planted at the partial file's name.
  const flags = fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW;
  /**
   * Open before the GET when a partial file was left (to resume from it) or with `blocking:
   * false`; otherwise at FILE_HEAD, once the size says which path the file takes, and for a
   * small file not at all until it is verified ({@link saveSmallSync}).
   */
  let file: OpenPartial | undefined;
  let handle: FileHandle | undefined;
  let previous: PartMeta | undefined;
  /** A partial file (and maybe a resume record) was left by an earlier run. */
  let leftover = false;
  if (!blocking || mayExistNow(part)) {
    try {
      try {
        // The common case, no partial file yet: one open, no look for a resume record.
        handle = await open(part, flags | fsc.O_EXCL, 0o644);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        leftover = true;
        previous = options.resume === false ? undefined : await readMeta(meta, name);
        handle = await open(part, flags | (previous ? 0 : fsc.O_TRUNC), 0o644);
      }
    } catch (error) {
      throw localError(`cannot create ${part}`, error);
    }
    const opened = handle;
    file = { fd: opened.fd, close: () => opened.close() };
  }
  let metaWritten = leftover;
  let keepPartial = true;
  let headSeen = false;
  /** A small file's content, gathered from its DATA pieces (views of socket memory, copied). */
  let small: Buffer | undefined;
  let writer: FileWriter | undefined;
  try {
    const have = previous ? (await handle!.stat()).size : 0;
    const request: GetRequest = previous && have > 0 ? { name, offset: have, ifSize: previous.size, ifMtimeMs: previous.mtimeMs } : { name, offset: 0 };
    let writeError: unknown;
    // A failed write ends the GET at once (CANCEL): the server is not made to wait for a disk
    // that cannot take more, and the error is ours, not the connection's.
    const stop = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
    const failWrite = (error: unknown): void => {
      writeError ??= error;
      stop.abort(writeFailure(part, writeError));
    };
    let paused = false;
    const internals = clientInternals(client);
    /** The disk is behind: no more reads until it catches up (the read being decoded is delivered). */
    const pause = (): void => {
      paused = true;
      internals.pauseReading();
    };
    /** Pieces of DATA are written where they belong as they arrive, held, never copied. */
    const writeTo = (fd: number, startAt: number): FileWriter =>
      new FileWriter(fd, {
        ...DOWNLOAD_WRITES,
        startAt,
        onRoom: () => {
          if (!paused) return;
          paused = false;
          internals.resumeReading();
        },
        onError: (error) => failWrite(error),
      });
    let position = 0;
    let writes: Promise<void> = Promise.resolve();
    let size: number | undefined;
    const prefix = request.offset > 0 ? await digestPrefix(handle!, request.offset, resumeDigest(client)) : undefined;
    const result = await getBody(
      client,
      request,
      prefix,
      {
        head(head) {
          // Not open yet: blocking, and no partial file was left.
          if (file === undefined && head.size <= SMALL_FILE_BYTES) {
            small = Buffer.allocUnsafe(head.size);
          } else if (file === undefined) {
            try {
              file = openedNow(openSync(part, flags | fsc.O_EXCL, 0o644));
            } catch (error) {
              throw localError(`cannot create ${part}`, error);
            }
          }
          headSeen = true;
          size = head.size;
          position = head.offset;
          if (file === undefined) {
            options.onProgress?.({ name, bytes: head.offset, size });
            return;
          }
          writer = writeTo(file.fd, head.offset);
          // Every disk step is caught: a failure becomes the download's error, never an unhandled rejection.
          const step = (work: () => Promise<unknown>): void => {
            writes = writes.then(async () => {
              if (writeError) return;
              try {
                await work();
              } catch (error) {
                failWrite(error);
              }
            });
          };
          if (head.offset === 0 && request.offset > 0) {
            // Resume refused: start over. Done before any DATA is written where it belongs.
            try {
              ftruncateSync(file.fd, 0);
            } catch (error) {
              failWrite(error);
            }
          }
          if (head.size > RESUME_RECORD_MIN_BYTES) {
            metaWritten = true;
            step(() => writeFile(meta, JSON.stringify({ name, size: head.size, mtimeMs: head.mtimeMs })));
          }
          options.onProgress?.({ name, bytes: head.offset, size });
        },
        data(chunk) {
          if (small !== undefined) {
            // The piece's memory is the socket's, reused after this call: copied now.
            chunk.copy(small, position);
          } else {
            if (writeError) throw writeFailure(part, writeError);
            if (!writer!.add(chunk, internals.holdInput(chunk)) && !paused) pause();
          }
          position += chunk.length;
          options.onProgress?.({ name, bytes: position, size });
        },
      },
      { ...options, signal },
    ).catch(async (error: unknown) => {
      await writer?.settled();
      await writes;
      if (paused) internals.resumeReading();
      if (error instanceof TcpkitError && error.wireCode === 'DIGEST_MISMATCH') {
        keepPartial = false;
        if (request.offset > 0 && headSeen) throw new ResumedMismatch('DIGEST_MISMATCH', error.message);
      }
      // Nothing worth resuming (NOT_FOUND before any byte, or a file too small for a resume
      // record): leave nothing behind.
      if ((!headSeen && request.offset === 0) || (size !== undefined && size <= RESUME_RECORD_MIN_BYTES)) keepPartial = false;
      // A local failure is the one to report, whatever it did to the request. What was written
      // stays, as after any interruption: the next run resumes from it.
      if (writeError) {
        const failure = writeFailure(part, writeError);
        const kept = keepPartial && metaWritten ? '; the partial file is kept: make room and run again to resume' : '';
        throw new TcpkitError(failure.wireCode, `${failure.message}${kept}`, { cause: failure.cause });
      }
      // Cut short by the connection: say how far it got (all of it is on disk by now).
      throw size === undefined ? error : interrupted(error, client.remote, position, size, keepPartial && metaWritten);
    });
    if (small !== undefined) {
      // Verified: now, and only now, the file is written and put in place (small.ts).
      saveSmallSync(small, part, target, { overwrite: Boolean(options.force), exists: () => destinationExists(destination), label: destination });
    } else {
      await writer?.settled();
      await writes;
      writeError ??= writer?.error;
      if (writeError) throw writeFailure(part, writeError);
      await file!.close().catch(() => {});
      try {
        await commitFile(part, target, { overwrite: Boolean(options.force), exists: () => destinationExists(destination), removeTemp: 'required' });
      } catch (error) {
        throw localError(`cannot save ${destination}`, error);
      }
      if (metaWritten) await unlink(meta).catch(() => {});
    }
    keepPartial = true;
    return {
      name,
      path: target,
      bytes: result.head.size,
      transferred: result.received,
      resumedFrom: result.head.offset,
      digest: result.digest,
      seconds: (performance.now() - started) / 1000,
    };
  } catch (error) {
    if (file !== undefined) {
      await file.close().catch(() => {});
      if (!keepPartial) {
        await unlink(part).catch(() => {});
        if (metaWritten) await unlink(meta).catch(() => {});
      }
    }
    throw error;
  }
}
