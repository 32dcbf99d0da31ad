/**
 * The download service, server side: GET streams a file from the served root (from an offset,
 * with a digest of the whole file), STAT describes one entry, LIST a directory. Read-only.
 */
import type { FileHandle } from 'node:fs/promises';
import { TcpkitError } from '../../../errors.js';
import type { Frame } from '../../../protocol/frame.js';
import type { Exchange, Service } from '../../../server/service.js';
import type { PeerInfo } from '../../../transport/peer.js';
import { bulkBuffers } from '../../../util/buffer-pool.js';
import type { FileRoot } from '../jail.js';
import { createDigest, DIGEST_ALGORITHM, type Digest } from '../digest.js';
import {
  DATA_CHUNK_BYTES,
  decodeGet,
  decodeNameRequest,
  encodeEntry,
  encodeFileEnd,
  encodeFileHead,
  encodeListing,
  FileFrame,
} from '../wire.js';

/** Options of {@link fileService}. */
export interface FileServiceOptions {
  /** Bytes read from disk and sent per DATA frame. @default 1048576 */
  chunkBytes?: number;
  /**
   * Called when a request is refused with FORBIDDEN (a hidden name, a link leading outside the
   * root, a file with several hard links, a special file...), after the refusal is decided and
   * before it is sent: for the operator's log, since these are what probing for a way out of
   * the root looks like. Its message names the requested name only, never a server path.
   */
  onRefused?: (peer: PeerInfo, request: 'GET' | 'STAT' | 'LIST', error: TcpkitError) => void;
}

const REQUEST_NAMES = { [FileFrame.GET]: 'GET', [FileFrame.STAT]: 'STAT', [FileFrame.LIST]: 'LIST' } as const;

/** `service`, with every FORBIDDEN refusal reported to `onRefused` on its way to the client. */
function reportingRefusals(service: Service, onRefused: NonNullable<FileServiceOptions['onRefused']>): Service {
  return {
    ...service,
    async handle(request, exchange) {
      try {
        await service.handle(request, exchange);
      } catch (error) {
        if (error instanceof TcpkitError && error.wireCode === 'FORBIDDEN') {
          onRefused(exchange.peer, REQUEST_NAMES[request.type as keyof typeof REQUEST_NAMES], error);
        }
        throw error;
      }
    },
  };
}

/**
 * Reads `length` bytes at `position`; fewer only at end of file. A whole chunk is read into a
 * buffer of the process's bulk pool, given back once the socket is done with it.
 */
async function readChunk(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = length === DATA_CHUNK_BYTES ? bulkBuffers.take() : Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === length ? buffer : buffer.subarray(0, filled);
}

function changed(name: string): TcpkitError {
  return new TcpkitError('FILE_CHANGED', `${name} changed on the server during the transfer`);
}

/** Feeds bytes [from, to) of the file to the digest (the prefix a resuming client already has). */
async function hashRange(handle: FileHandle, from: number, to: number, digest: Digest, name: string, signal: AbortSignal): Promise<void> {
  for (let position = from; position < to; ) {
    signal.throwIfAborted();
    const chunk = await readChunk(handle, position, Math.min(DATA_CHUNK_BYTES, to - position));
    if (chunk.length === 0) throw changed(name);
    digest.update(chunk);
    position += chunk.length;
    bulkBuffers.give(chunk);
  }
}

async function serveGet(root: FileRoot, chunkBytes: number, request: Frame, exchange: Exchange): Promise<void> {
  const get = decodeGet(request.payload);
  const file = await root.openFile(get.name);
  try {
    const { handle, size, mtimeMs } = file;
    // A resume holds only against the same version of the file; otherwise start over, and say so.
    const sameVersion = (get.ifSize === undefined || get.ifSize === size) && (get.ifMtimeMs === undefined || get.ifMtimeMs === mtimeMs);
    const offset = sameVersion ? get.offset : 0;
    if (offset > size) throw new TcpkitError('BAD_REQUEST', `offset ${offset} is past the end of ${get.name} (${size} bytes)`);
    const digest = createDigest();
    const { signal } = exchange;
    await hashRange(handle, 0, offset, digest, get.name, signal);
    await exchange.write(FileFrame.FILE_HEAD, encodeFileHead({ size, mtimeMs, offset, digest: DIGEST_ALGORITHM }));
    // The next chunk is read once this one is queued, not while it waits for room: while the
    // socket has room, the kernel sends what it holds meanwhile; when it has none, a peer that
    // does not read holds one chunk of ours (the one queued), not two. After a wait for room the
    // queued chunk is back in the pool, and the next read reuses it.
    for (let position = offset; position < size; ) {
      const chunk = await readChunk(handle, position, Math.min(chunkBytes, size - position));
      if (chunk.length === 0) throw changed(get.name);
      if (signal.aborted) {
        bulkBuffers.give(chunk);
        throw new TcpkitError('CANCELLED', 'the client cancelled the transfer');
      }
      position += chunk.length;
      digest.update(chunk);
      await exchange.write(FileFrame.DATA, chunk, () => bulkBuffers.give(chunk));
    }
    // Exactly `size` bytes were sent, whatever the file does now; a file that grew is still
    // caught, because its first `size` bytes and their digest are what the client checks.
    exchange.reply(FileFrame.FILE_END, encodeFileEnd({ digest: digest.value(), bytes: size - offset }));
  } finally {
    await file.handle.close();
  }
}

/**
 * The download service over a {@link FileRoot}.
 * @example
 * const root = await FileRoot.open('/srv/files');
 * const server = createServer({ services: [fileService(root)] });
 */
export function fileService(root: FileRoot, options: FileServiceOptions = {}): Service {
  const chunkBytes = options.chunkBytes ?? DATA_CHUNK_BYTES;
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > DATA_CHUNK_BYTES) {
    throw new TcpkitError('INVALID_OPTION', `chunkBytes must be from 1 to ${DATA_CHUNK_BYTES}`);
  }
  if (options.onRefused !== undefined && typeof options.onRefused !== 'function') throw new TcpkitError('INVALID_OPTION', 'onRefused must be a function');
  const service: Service = {
    name: 'file',
    requestTypes: [FileFrame.GET, FileFrame.STAT, FileFrame.LIST],
    async handle(request, exchange) {
      switch (request.type) {
        case FileFrame.GET:
          return serveGet(root, chunkBytes, request, exchange);
        case FileFrame.STAT: {
          const entry = await root.stat(decodeNameRequest(request.payload, 'STAT'));
          exchange.reply(FileFrame.STAT_REPLY, encodeEntry(entry));
          return;
        }
        default: {
          const listing = await root.list(decodeNameRequest(request.payload, 'LIST'));
          let { entries, truncated } = listing;
          let payload = encodeListing({ entries, truncated });
          // Every client accepts 1 MiB frames: a huge directory is cut to fit, and says so.
          while (payload.length > DATA_CHUNK_BYTES) {
            entries = entries.slice(0, Math.floor(entries.length / 2));
            truncated = true;
            payload = encodeListing({ entries, truncated });
          }
          exchange.reply(FileFrame.LIST_REPLY, payload);
        }
      }
    },
  };
  return options.onRefused === undefined ? service : reportingRefusals(service, options.onRefused);
}
