/**
 * The download service, client side: stat, list, get as a verified stream, and download to a
 * path atomically (temporary file beside the destination, renamed only once verified), resuming
 * from a partial file left by an interrupted run.
 */
import { constants as fsc } from 'node:fs';
import { lstat, open, readFile, rename, link, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Client, RequestOptions } from '../../client/client.js';
import { ProtocolError, TcpkitError } from '../../errors.js';
import type { Frame } from '../../protocol/frame.js';
import { createDigest, DIGEST_ALGORITHM, type Digest } from './digest.js';
import {
  decodeFileEnd,
  decodeFileHead,
  decodeListing,
  decodeStatReply,
  encodeGet,
  encodeNameRequest,
  FileFrame,
  type EntryInfo,
  type FileHead,
  type GetRequest,
  type Listing,
} from './wire.js';

/** Describes one entry on the server. */
export async function stat(client: Client, name: string, options?: RequestOptions): Promise<EntryInfo> {
  const frame = await client.request(FileFrame.STAT, encodeNameRequest(name), FileFrame.STAT_REPLY, options);
  return decodeStatReply(frame.payload);
}

/** Lists a directory on the server (`''` is the served root). */
export async function list(client: Client, dir = '', options?: RequestOptions): Promise<Listing> {
  const frame = await client.request(FileFrame.LIST, encodeNameRequest(dir), FileFrame.LIST_REPLY, options);
  return decodeListing(frame.payload);
}

/** What a GET is told as its bytes arrive. */
interface BodySink {
  /** FILE_HEAD arrived. May return a promise; DATA is held back until it settles. */
  head(head: FileHead): void;
  /** One DATA chunk, already counted and hashed. */
  data(chunk: Buffer): void;
}

/** Outcome of a verified GET. */
interface BodyResult {
  head: FileHead;
  digest: string;
  /** Bytes received in this GET (from head.offset). */
  received: number;
}

/**
 * Runs one GET and checks everything a hostile or broken server could get wrong: the reply
 * order, the announced size (never more, never less), and the digest of the whole file
 * (`prefix` must already hold the digest of the bytes before `request.offset`).
 */
async function getBody(
  client: Client,
  request: GetRequest,
  prefix: Digest | undefined,
  sink: BodySink,
  options: RequestOptions,
): Promise<BodyResult> {
  let head: FileHead | undefined;
  let digest: Digest | undefined;
  let received = 0;
  let expected = 0;
  let end: { digest: string; bytes: number } | undefined;
  await client.stream(
    FileFrame.GET,
    encodeGet(request),
    {
      isFinal: (frame) => frame.type === FileFrame.FILE_END,
      frame: (frame: Frame) => {
        switch (frame.type) {
          case FileFrame.FILE_HEAD: {
            if (head) throw new ProtocolError('PROTOCOL_ERROR', 'FILE_HEAD sent twice');
            head = decodeFileHead(frame.payload);
            if (!head.digest.startsWith(DIGEST_ALGORITHM)) {
              throw new TcpkitError('UNSUPPORTED_REQUEST', `the server uses digest ${head.digest}, this client knows ${DIGEST_ALGORITHM}`);
            }
            if (head.offset !== 0 && head.offset !== request.offset) {
              throw new ProtocolError('PROTOCOL_ERROR', `the server resumed at ${head.offset}, not at ${request.offset} or 0`);
            }
            expected = head.size - head.offset;
            // Resumed: continue the digest of the prefix we hold; refused: start a fresh one.
            digest = head.offset > 0 && prefix ? prefix : createDigest();
            sink.head(head);
            return;
          }
          case FileFrame.DATA: {
            if (!head || !digest) throw new ProtocolError('PROTOCOL_ERROR', 'DATA before FILE_HEAD');
            received += frame.payload.length;
            if (received > expected) {
              throw new ProtocolError('PROTOCOL_ERROR', `the server sent more than the ${head.size} bytes it announced`);
            }
            digest.update(frame.payload);
            sink.data(frame.payload);
            return;
          }
          case FileFrame.FILE_END: {
            if (!head) throw new ProtocolError('PROTOCOL_ERROR', 'FILE_END before FILE_HEAD');
            end = decodeFileEnd(frame.payload);
            if (received !== expected || end.bytes !== expected) {
              throw new ProtocolError('PROTOCOL_ERROR', `the server announced ${head.size} bytes but sent ${head.offset + received}`);
            }
            return;
          }
          default:
            throw new ProtocolError('PROTOCOL_ERROR', `unexpected frame 0x${frame.type.toString(16)} in a file transfer`);
        }
      },
    },
    options,
  );
  const actual = digest!.value();
  if (actual !== end!.digest) {
    throw new TcpkitError('DIGEST_MISMATCH', `${request.name}: content does not match the server's digest (got ${actual}, expected ${end!.digest})`);
  }
  return { head: head!, digest: actual, received };
}

/** A file being received as a stream. */
export interface FileStream {
  /** Size, modification time and starting offset, as announced by the server. */
  head: FileHead;
  /** The bytes. It errors (never ends cleanly) if the content is short, long or corrupt. */
  body: Readable;
  /** Resolves with the digest once the whole body arrived and was verified. */
  verified: Promise<string>;
}

/**
 * Gets a file as a readable stream with backpressure: a slow reader pauses the connection.
 * @example const { head, body } = await getStream(client, 'big.iso'); body.pipe(process.stdout);
 */
export function getStream(client: Client, name: string, options: RequestOptions = {}): Promise<FileStream> {
  return new Promise((resolve, reject) => {
    let paused = false;
    const body = new Readable({
      highWaterMark: 4 * 1024 * 1024,
      read() {
        if (paused) {
          paused = false;
          client.resumeReading();
        }
      },
    });
    let started = false;
    const verified = getBody(
      client,
      { name, offset: 0 },
      undefined,
      {
        head(head) {
          started = true;
          resolve({ head, body, verified });
        },
        data(chunk) {
          if (!body.push(chunk) && !paused) {
            paused = true;
            client.pauseReading();
          }
        },
      },
      options,
    ).then(
      (result) => {
        body.push(null);
        return result.digest;
      },
      (error: unknown) => {
        if (paused) client.resumeReading();
        if (started) body.destroy(error as Error);
        else reject(error as Error);
        throw error;
      },
    );
    verified.catch(() => {});
  });
}

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

/** Where a download keeps its partial file and what it knows about it. */
export function partialPaths(destination: string): { part: string; meta: string } {
  const part = path.join(path.dirname(destination), `.${path.basename(destination)}.tcpkit-part`);
  return { part, meta: `${part}.json` };
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

function localError(what: string, error: unknown): TcpkitError {
  if (error instanceof TcpkitError) return error;
  const code = (error as NodeJS.ErrnoException).code ?? String(error);
  return new TcpkitError('LOCAL_FILE_ERROR', `${what}: ${code}`, { cause: error });
}

/** What a failed write to the partial file says: the cause a person acts on first. */
function writeFailure(part: string, error: unknown): TcpkitError {
  if (error instanceof TcpkitError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  const why =
    code === 'ENOSPC' ? 'no space left on the device' : code === 'EDQUOT' ? 'disk quota exceeded' : code === 'EFBIG' ? 'file too large for the file system' : undefined;
  if (why === undefined) return localError(`cannot write ${part}`, error);
  return new TcpkitError('LOCAL_FILE_ERROR', `${why} writing ${part}`, { cause: error });
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
async function digestPrefix(handle: FileHandle, length: number): Promise<Digest> {
  const digest = createDigest();
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  for (let position = 0; position < length; ) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - position), position);
    if (bytesRead === 0) throw new TcpkitError('LOCAL_FILE_ERROR', 'the partial file shrank while resuming');
    digest.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
  return digest;
}

/** Bounds the bytes queued for the disk: reading pauses above the high mark. */
const WRITE_HIGH_BYTES = 3 * 1024 * 1024;
const WRITE_LOW_BYTES = 1024 * 1024;
/** Files up to this size are not worth a resume record (they fit in one DATA frame). */
const RESUME_RECORD_MIN_BYTES = 1024 * 1024;

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
  if (!options.force && (await exists(target))) {
    throw new TcpkitError('FILE_EXISTS', `${destination} exists (use --force to replace it)`);
  }
  // O_NOFOLLOW: never write through a symbolic link planted at the partial file's name.
  const flags = fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW;
  let handle: FileHandle;
  let previous: PartMeta | undefined;
  /** A partial file (and maybe a resume record) was left by an earlier run. */
  let leftover = false;
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
  let metaWritten = leftover;
  let keepPartial = true;
  let headSeen = false;
  try {
    const have = previous ? (await handle.stat()).size : 0;
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
    let queued = 0;
    let paused = false;
    let position = 0;
    let writes: Promise<void> = Promise.resolve();
    let size: number | undefined;
    const prefix = request.offset > 0 ? await digestPrefix(handle, request.offset) : undefined;
    const result = await getBody(
      client,
      request,
      prefix,
      {
        head(head) {
          headSeen = true;
          size = head.size;
          position = head.offset;
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
          if (head.offset === 0 && request.offset > 0) step(() => handle.truncate(0));
          if (head.size > RESUME_RECORD_MIN_BYTES) {
            metaWritten = true;
            step(() => writeFile(meta, JSON.stringify({ name, size: head.size, mtimeMs: head.mtimeMs })));
          }
          options.onProgress?.({ name, bytes: head.offset, size });
        },
        data(chunk) {
          if (writeError) throw writeFailure(part, writeError);
          const at = position;
          position += chunk.length;
          queued += chunk.length;
          // Positional writes, queued in order; reading pauses while the disk is behind. After
          // a failure the writes queued behind it are skipped, but still release their buffer
          // and their count (or reading would stay paused for ever).
          writes = writes.then(async () => {
            try {
              let done = 0;
              while (!writeError && done < chunk.length) done += (await handle.write(chunk, done, chunk.length - done, at + done)).bytesWritten;
            } catch (error) {
              failWrite(error);
            }
            // Written: the buffer can carry the next chunk (the digest was computed on arrival).
            client.releasePayload(chunk);
            queued -= chunk.length;
            if (paused && queued <= WRITE_LOW_BYTES) {
              paused = false;
              client.resumeReading();
            }
          });
          if (!paused && queued >= WRITE_HIGH_BYTES) {
            paused = true;
            client.pauseReading();
          }
          options.onProgress?.({ name, bytes: position, size });
        },
      },
      { ...options, signal },
    ).catch(async (error: unknown) => {
      await writes;
      if (paused) client.resumeReading();
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
    await writes;
    if (writeError) throw writeFailure(part, writeError);
    await handle.close().catch(() => {});
    try {
      if (options.force) {
        await rename(part, target);
      } else {
        // link() fails if the destination appeared meanwhile: never replace it silently.
        await link(part, target);
        await unlink(part);
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new TcpkitError('FILE_EXISTS', `${destination} exists (use --force to replace it)`);
      }
      throw localError(`cannot save ${destination}`, error);
    }
    if (metaWritten) await unlink(meta).catch(() => {});
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
    await handle.close().catch(() => {});
    if (!keepPartial) {
      await unlink(part).catch(() => {});
      if (metaWritten) await unlink(meta).catch(() => {});
    }
    throw error;
  }
}
