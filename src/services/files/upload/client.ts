/**
 * The upload service, client side: sends a file (or any byte stream of known size) under a name
 * on the server. The server keeps it only once the size and digest this side sends check out;
 * a failure on either side (refusal, disk full, cut connection, a local read error) leaves
 * nothing under the name on the server.
 */
import { constants as fsc } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Client, RequestChannel, RequestOptions } from '../../../client/client.js';
import { ProtocolError, TcpkitError } from '../../../errors.js';
import { frameTypeName } from '../../../protocol/constants.js';
import { bulkBuffers } from '../../../util/buffer-pool.js';
import { createDigest, DEFAULT_DIGEST, XXH3_CAPABILITY, type DigestAlgorithm } from '../digest.js';
import { localError } from '../errors.js';
import { validateName } from '../names.js';
import { DATA_CHUNK_BYTES, decodePutDone, encodePut, encodePutEnd, UploadFrame, type PutDone } from '../wire.js';

/** Options of {@link upload} and {@link uploadStream}. */
export interface UploadOptions extends RequestOptions {
  /** Replace a file of that name on the server, if the server allows it. @default false */
  overwrite?: boolean;
  /** Called after each chunk is handed to the connection, with the bytes sent so far and the total. */
  onProgress?: (sent: number, size: number) => void;
}

/** What the server stored. */
export type UploadResult = PutDone;

/**
 * Reads `length` bytes at `position` into a buffer the connection may send without copying: a
 * whole chunk comes from the process's bulk pool, and goes back to it once the socket is done
 * with it.
 */
async function readAt(handle: FileHandle, position: number, length: number, label: string): Promise<Buffer> {
  const buffer = length === bulkBuffers.size ? bulkBuffers.take() : Buffer.allocUnsafe(length);
  for (let filled = 0; filled < length; ) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) throw localError(`${label} shrank while it was being sent`);
    filled += bytesRead;
  }
  return buffer;
}

/** Reads `size` bytes of a file chunk by chunk, the next chunk coming off the disk while this one is sent. */
async function* readChunks(handle: FileHandle, size: number, chunkBytes: number, label: string): AsyncGenerator<Buffer> {
  const readFrom = (position: number): Promise<Buffer> | undefined =>
    position < size ? readAt(handle, position, Math.min(chunkBytes, size - position), label) : undefined;
  let position = 0;
  let next = readFrom(0);
  try {
    while (next !== undefined) {
      const chunk = await next;
      position += chunk.length;
      next = readFrom(position);
      yield chunk;
    }
  } finally {
    // Stopped early (the upload failed): let the read ahead finish before the file is closed.
    await next?.catch(() => {});
  }
}

/**
 * The chunks of `source`, until `request` settles first: a source that is slow to produce (a
 * pipe, a network stream) must not keep the caller waiting once the upload has failed. The
 * source is then told to stop, without waiting for it.
 */
async function* until(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  request: Promise<void>,
  failure: () => Error | undefined,
): AsyncGenerator<Uint8Array> {
  const iterator: AsyncIterator<Uint8Array> | Iterator<Uint8Array> =
    Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  const ended = request.then(() => undefined);
  let done = false;
  try {
    for (;;) {
      const pending = Promise.resolve(iterator.next());
      pending.catch(() => {}); // a source failing after we stopped listening is nobody's concern
      const next = await Promise.race([pending, ended]);
      if (next === undefined) throw failure() ?? new ProtocolError('PROTOCOL_ERROR', 'the server answered the upload before it was complete');
      if (next.done === true) {
        done = true;
        return;
      }
      yield next.value;
    }
  } finally {
    if (!done) void Promise.resolve(iterator.return?.()).catch(() => {});
  }
}

/**
 * Sends the local file at `localPath` as `name` on the server (a `/`-separated path inside the
 * server's upload directory, whose directories must exist there).
 * @example const stored = await upload(client, './report.pdf', 'reports/2026.pdf');
 */
export async function upload(client: Client, localPath: string, name = path.basename(localPath), options: UploadOptions = {}): Promise<UploadResult> {
  let handle: FileHandle;
  try {
    // Non-blocking: opening a FIFO must not wait for a writer before it is refused.
    handle = await open(localPath, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch (error) {
    throw localError(`cannot read ${localPath}`, error);
  }
  try {
    const before = await handle.stat();
    if (!before.isFile()) throw localError(`${localPath} is not a regular file`);
    const chunkBytes = Math.min(DATA_CHUNK_BYTES, client.server.limits.maxFrameBytes);
    const content = async function* (): AsyncGenerator<Buffer> {
      yield* readChunks(handle, before.size, chunkBytes, localPath);
      // What was sent must be one version of the file, not a mix of two.
      const after = await handle.stat();
      if (after.size !== before.size || after.mtimeMs !== before.mtimeMs) throw localError(`${localPath} changed while it was being sent`);
    };
    return await sendContent(client, name, content(), before.size, options, (chunk) => bulkBuffers.give(chunk));
  } finally {
    await handle.close();
  }
}

/**
 * Sends `size` bytes from `source` as `name` on the server. The source must yield exactly
 * `size` bytes; more or fewer cancels the upload (nothing is stored) with LOCAL_FILE_ERROR.
 * Chunks larger than the server's frame limit are split; chunks are sent without copying, so
 * the source must not reuse a buffer it yielded.
 */
export function uploadStream(
  client: Client,
  name: string,
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  size: number,
  options: UploadOptions = {},
): Promise<UploadResult> {
  return sendContent(client, name, source, size, options, undefined);
}

/** {@link uploadStream}, handing each whole chunk to `recycle` once the connection is done with it. */
async function sendContent(
  client: Client,
  name: string,
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  size: number,
  options: UploadOptions,
  recycle: ((chunk: Buffer) => void) | undefined,
): Promise<UploadResult> {
  validateName(name);
  if (!Number.isSafeInteger(size) || size < 0) throw new TcpkitError('INVALID_OPTION', 'size must be a non-negative integer');
  if (!client.server.services.includes('upload')) {
    throw new TcpkitError('UNSUPPORTED_REQUEST', `${client.remote} does not accept uploads (its operator can allow them with --writable or --upload-dir)`);
  }
  const limit = Math.min(DATA_CHUNK_BYTES, client.server.limits.maxFrameBytes);
  // XXH3 only with a server that said it takes it: an older one knows XXH64 alone.
  const algorithm: DigestAlgorithm = client.server.capabilities.includes(XXH3_CAPABILITY) ? 'xxh3' : DEFAULT_DIGEST;
  // Our own way to cancel the request when the source fails, beside the caller's.
  const cancel = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, cancel.signal]) : cancel.signal;
  let channel: RequestChannel | undefined;
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  let isReady = false;
  let ended = false;
  let stored: PutDone | undefined;
  let failure: Error | undefined;
  const request = client
    .stream(
      UploadFrame.PUT,
      encodePut({ name, size, overwrite: options.overwrite === true, ...(algorithm !== DEFAULT_DIGEST && { digest: algorithm }) }),
      {
        isFinal: (frame) => frame.type === UploadFrame.PUT_DONE,
        opened: (opened) => {
          channel = opened;
        },
        frame: (frame) => {
          if (frame.type === UploadFrame.PUT_READY && !isReady) {
            isReady = true;
            markReady();
          } else if (frame.type === UploadFrame.PUT_DONE && ended) {
            stored = decodePutDone(frame.payload);
          } else {
            throw new ProtocolError('PROTOCOL_ERROR', `unexpected ${frameTypeName(frame.type)} in reply to PUT`);
          }
        },
      },
      { ...options, signal },
    )
    .then(
      () => undefined,
      (error: Error) => {
        failure = error;
      },
    );
  await Promise.race([ready, request]);
  if (failure !== undefined) throw failure;
  const digest = createDigest(algorithm);
  let value = '';
  try {
    let sent = 0;
    for await (const chunk of until(source, request, () => failure)) {
      for (let offset = 0; offset < chunk.length; offset += limit) {
        const piece = chunk.length <= limit ? chunk : chunk.subarray(offset, offset + limit);
        sent += piece.length;
        if (sent > size) throw localError(`the content of ${name} is longer than the ${size} bytes announced`);
        digest.update(piece);
        const whole = recycle !== undefined && piece === chunk && Buffer.isBuffer(chunk);
        await channel!.send(UploadFrame.PUT_DATA, piece, whole ? () => recycle(chunk) : undefined);
        options.onProgress?.(sent, size);
      }
    }
    if (sent !== size) throw localError(`the content of ${name} ended after ${sent} of the ${size} bytes announced`);
    ended = true;
    value = digest.value();
    await channel!.send(UploadFrame.PUT_END, encodePutEnd({ bytes: sent, digest: value }));
  } catch (error) {
    // A send refused because the request is over: the request's own failure says why.
    // Anything else failed on this side: cancel, so the server drops what it received.
    const over = error instanceof TcpkitError && error.wireCode === 'CANCELLED';
    if (!over) cancel.abort(error);
    await request;
    throw over ? (failure ?? error) : error;
  }
  await request;
  if (failure !== undefined) throw failure;
  if (stored === undefined || stored.size !== size || stored.digest !== value) {
    throw new ProtocolError('PROTOCOL_ERROR', `the server reports storing something else than the ${size} bytes sent (${value})`);
  }
  return stored;
}
