/**
 * The download service, server side: GET streams a file from the served root (from an offset,
 * with a digest of the whole file), STAT describes one entry, LIST a directory. Read-only.
 *
 * A GET looks its name up with synchronous metadata calls (`FileRoot.openFileSync`, at most ~7,
 * answered from the kernel's dentry and inode caches in µs). A file of at most
 * {@link SMALL_FILE_BYTES} is then read with `readSync`, checked for change, and answered with
 * FILE_HEAD, DATA and FILE_END in one turn: no thread-pool round trip at all, where each one
 * cost more than the call it carried (`../small.ts`). A larger file is read chunk by chunk on
 * the thread pool, so bulk reads never occupy the event loop. The trade-off against isolation
 * (RELIABILITY G6) is in docs/ARCHITECTURE.md ("Synchronous calls on the event loop").
 */
import { closeSync, fstat, fstatSync, readv, type Stats } from 'node:fs';
import { TcpkitError } from '../../../errors.js';
import type { Frame } from '../../../protocol/frame.js';
import type { Exchange, Service } from '../../../server/service.js';
import type { PeerInfo } from '../../../transport/peer.js';
import { bulkBuffers } from '../../../util/buffer-pool.js';
import { afterBytes, totalBytes } from '../../../util/iovec.js';
import type { FileRoot, OpenedDescriptor } from '../jail.js';
import { readSmallSync, SMALL_FILE_BYTES } from '../small.js';
import { systemClock, type Clock } from '../../../util/clock.js';
import { createDigest, DEFAULT_DIGEST, isDigestAlgorithm, XXH3_CAPABILITY, type Digest, type DigestAlgorithm } from '../digest.js';
import { DIGEST_CACHE_ENTRIES, DigestCache, sameVersion, settled } from './digest-cache.js';
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
  /**
   * Digests of whole files remembered (in memory, per service, least recently used out first),
   * so a repeated or resumed GET of an unchanged file hashes nothing; 0 remembers none.
   * @default 4096
   */
  digestCacheEntries?: number;
  /** Time, for the digest cache's rule on recently changed files (tests pass their own). @default systemClock */
  clock?: Clock;
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

/** DATA chunks read from the file at once, by one `readv`: a GiB costs 256 thread-pool round trips, not 1024. */
const CHUNKS_PER_READ = 4;

/**
 * Reads the next chunks of `chunkBytes` (the last one shorter) from `position`, up to `end`, with
 * one `readv` into buffers of the process's bulk pool when they are whole chunks; each is given
 * back once the socket is done with it. Fewer bytes than asked only at end of file.
 */
async function readChunks(fd: number, position: number, end: number, chunkBytes: number): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for (let at = position; at < end && chunks.length < CHUNKS_PER_READ; at += chunkBytes) {
    const length = Math.min(chunkBytes, end - at);
    chunks.push(length === DATA_CHUNK_BYTES ? bulkBuffers.take() : Buffer.allocUnsafe(length));
  }
  const wanted = totalBytes(chunks);
  let filled = 0;
  while (filled < wanted) {
    const bytesRead = await readvAt(fd, afterBytes(chunks, filled), position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  if (filled === wanted) return chunks;
  // The file is shorter than it was: keep what was read, in whole chunks and one short one.
  const kept: Buffer[] = [];
  for (const chunk of chunks) {
    const take = Math.min(chunk.length, filled);
    if (take > 0) kept.push(take === chunk.length ? chunk : chunk.subarray(0, take));
    else bulkBuffers.give(chunk);
    filled -= take;
  }
  return kept;
}

/** One positional readv on the thread pool. */
function readvAt(fd: number, buffers: Buffer[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    readv(fd, buffers, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead)));
  });
}

/** fstat on the thread pool. */
function statAt(fd: number): Promise<Stats> {
  return new Promise((resolve, reject) => {
    fstat(fd, (error, stats) => (error ? reject(error) : resolve(stats)));
  });
}

function cancelled(): TcpkitError {
  return new TcpkitError('CANCELLED', 'the client cancelled the transfer');
}

function changed(name: string): TcpkitError {
  return new TcpkitError('FILE_CHANGED', `${name} changed on the server during the transfer`);
}

/** Feeds bytes [from, to) of the file to the digest (the prefix a resuming client already has). */
async function hashRange(fd: number, from: number, to: number, digest: Digest, name: string, signal: AbortSignal): Promise<void> {
  for (let position = from; position < to; ) {
    signal.throwIfAborted();
    const chunks = await readChunks(fd, position, to, DATA_CHUNK_BYTES);
    if (chunks.length === 0) throw changed(name);
    for (const chunk of chunks) {
      digest.update(chunk);
      position += chunk.length;
      bulkBuffers.give(chunk);
    }
  }
}

/** The first algorithm of the client's list this side computes; XXH64 without a list or a match (§5.2). */
export function chooseDigest(digests: readonly string[] | undefined): DigestAlgorithm {
  return digests?.find(isDigestAlgorithm) ?? DEFAULT_DIGEST;
}

/** What a GET needs of its service, besides the request. */
interface GetContext {
  root: FileRoot;
  chunkBytes: number;
  cache: DigestCache;
  clock: Clock;
}

/** What serving one GET needs once its file is open and the offset decided. */
interface Transfer {
  file: OpenedDescriptor;
  name: string;
  offset: number;
  algorithm: DigestAlgorithm;
  /** The digest of this version, when the cache knows it. */
  cached: string | undefined;
  startedAt: number;
}

/**
 * The checks after the last byte was read, then the digest and FILE_END's payload: written to
 * during the transfer (size, mtime or ctime moved), what was read may mix two versions, and a
 * cached digest is of the version the transfer started on; neither is presented as the file.
 */
function finish({ cache }: GetContext, t: Transfer, after: Stats, digest: Digest | undefined): Uint8Array {
  if (!sameVersion(t.file, after)) {
    if (t.cached !== undefined) cache.delete(t.algorithm, t.file);
    throw changed(t.name);
  }
  const value = t.cached ?? digest!.value();
  if (t.cached === undefined && settled(t.file, t.startedAt)) cache.set(t.algorithm, t.file, value);
  return encodeFileEnd({ digest: value, bytes: t.file.size - t.offset });
}

/** A file of at most SMALL_FILE_BYTES: read, checked and answered in one turn, with no thread-pool call. */
async function sendSmall(context: GetContext, t: Transfer, exchange: Exchange): Promise<void> {
  const { fd, size, mtimeMs } = t.file;
  const content = readSmallSync(fd, size);
  if (content.length < size) throw changed(t.name);
  if (exchange.signal.aborted) throw cancelled();
  let digest: Digest | undefined;
  if (t.cached === undefined) {
    digest = createDigest(t.algorithm);
    digest.update(content);
  }
  const end = finish(context, t, fstatSync(fd), digest);
  // Queued at once (64 KiB at most): a closed connection fails every write, the last one reports it.
  let sent = exchange.write(FileFrame.FILE_HEAD, encodeFileHead({ size, mtimeMs, offset: t.offset, digest: t.algorithm }));
  for (let position = t.offset; position < size; position += context.chunkBytes) {
    sent.catch(() => {});
    sent = exchange.write(FileFrame.DATA, content.subarray(position, Math.min(size, position + context.chunkBytes)));
  }
  await sent;
  exchange.reply(FileFrame.FILE_END, end);
}

/** A larger file: read CHUNKS_PER_READ chunks at a time on the thread pool, sent before the next are read. */
async function sendLarge(context: GetContext, t: Transfer, exchange: Exchange): Promise<void> {
  const { fd, size, mtimeMs } = t.file;
  const { signal } = exchange;
  // Known digest: nothing is hashed, and a resume reads none of the prefix.
  const digest = t.cached === undefined ? createDigest(t.algorithm) : undefined;
  if (digest !== undefined) await hashRange(fd, 0, t.offset, digest, t.name, signal);
  await exchange.write(FileFrame.FILE_HEAD, encodeFileHead({ size, mtimeMs, offset: t.offset, digest: t.algorithm }));
  // The next chunks are read once these are queued, not while they wait for room: while the
  // socket has room, the kernel sends what it holds meanwhile; when it has none, a peer that
  // does not read holds one read's chunks of ours (CHUNKS_PER_READ MiB), no more. After a wait
  // for room the queued chunks are back in the pool, and the next read reuses them.
  for (let position = t.offset; position < size; ) {
    const chunks = await readChunks(fd, position, size, context.chunkBytes);
    if (chunks.length === 0) throw changed(t.name);
    /** Chunks handed to the connection (each given back by its onSent). */
    let handed = 0;
    try {
      for (const chunk of chunks) {
        if (signal.aborted) throw cancelled();
        position += chunk.length;
        digest?.update(chunk);
        handed++;
        await exchange.write(FileFrame.DATA, chunk, () => bulkBuffers.give(chunk));
      }
    } catch (error) {
      for (const unsent of chunks.slice(handed)) bulkBuffers.give(unsent);
      throw error;
    }
  }
  exchange.reply(FileFrame.FILE_END, finish(context, t, await statAt(fd), digest));
}

async function serveGet(context: GetContext, request: Frame, exchange: Exchange): Promise<void> {
  const get = decodeGet(request.payload);
  const algorithm = chooseDigest(get.digests);
  // Before the fstat of openFileSync: a version that had settled by then cannot change unseen (digest-cache.ts).
  const startedAt = context.clock.now();
  const file = context.root.openFileSync(get.name);
  try {
    const { size, mtimeMs } = file;
    // A resume holds only against the same version of the file; otherwise start over, and say so.
    const sameFile = (get.ifSize === undefined || get.ifSize === size) && (get.ifMtimeMs === undefined || get.ifMtimeMs === mtimeMs);
    const offset = sameFile ? get.offset : 0;
    if (offset > size) throw new TcpkitError('BAD_REQUEST', `offset ${offset} is past the end of ${get.name} (${size} bytes)`);
    const transfer: Transfer = { file, name: get.name, offset, algorithm, cached: context.cache.get(algorithm, file), startedAt };
    await (size <= SMALL_FILE_BYTES ? sendSmall : sendLarge)(context, transfer, exchange);
  } finally {
    closeSync(file.fd);
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
  const entries = options.digestCacheEntries ?? DIGEST_CACHE_ENTRIES;
  if (!Number.isSafeInteger(entries) || entries < 0) throw new TcpkitError('INVALID_OPTION', 'digestCacheEntries must be a non-negative integer');
  const context: GetContext = { root, chunkBytes, cache: new DigestCache(entries), clock: options.clock ?? systemClock };
  const service: Service = {
    name: 'file',
    requestTypes: [FileFrame.GET, FileFrame.STAT, FileFrame.LIST],
    capabilities: [XXH3_CAPABILITY],
    async handle(request, exchange) {
      switch (request.type) {
        case FileFrame.GET:
          return serveGet(context, request, exchange);
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
