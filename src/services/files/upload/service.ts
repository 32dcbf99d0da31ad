/**
 * The upload service, server side (docs/PROTOCOL.md §5.3), off unless a server adds it. A PUT
 * names the file and its size; the server checks the name (every rule of downloads), the size
 * cap and whether the name is free, creates a hidden temporary file beside the destination and
 * says PUT_READY; the client streams PUT_DATA and ends with PUT_END and its digest. The file is
 * moved under its name only once the byte count and the digest check out: an upload that is
 * refused, cut, over size, corrupt or out of disk space leaves nothing under the final name and
 * no temporary file behind.
 */
import { opendir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { OptionError, TcpkitError } from '../../../errors.js';
import type { Frame } from '../../../protocol/frame.js';
import type { Exchange, Service } from '../../../server/service.js';
import type { PeerInfo } from '../../../transport/peer.js';
import { systemClock, type Clock } from '../../../util/clock.js';
import { intOption, stripUndefined } from '../../../util/options.js';
import { UPLOAD_TEMP_NAME } from '../commit.js';
import { DEFAULT_DIGEST, digestAlgorithmOf, isDigestAlgorithm, XXH3_CAPABILITY } from '../digest.js';
import { storageError } from '../errors.js';
import type { FileRoot } from '../jail.js';
import { decodePut, encodePutDone, UploadFrame, type PutDone } from '../wire.js';
import { IncomingFile } from './incoming.js';
import { Receiver } from './receiver.js';

type Resolved = Required<Omit<UploadServiceOptions, 'onStored'>> & Pick<UploadServiceOptions, 'onStored'>;

/** Options of {@link uploadService}. */
export interface UploadServiceOptions {
  /** Largest file accepted, in bytes: checked on the announced size and again as bytes arrive. @default 1073741824 (1 GiB) */
  maxFileBytes?: number;
  /** Let a client that asks for it replace an existing file. @default false */
  allowOverwrite?: boolean;
  /** Longest wait for the next frame of an upload in progress, in milliseconds. @default 30000 */
  stallTimeoutMs?: number;
  /**
   * Uploads received at once, over all connections (each holds two file descriptors); more are
   * answered BUSY before any content is sent. @default 64
   */
  maxConcurrent?: number;
  /** Called once a file is stored under its name (for logs). */
  onStored?: (stored: PutDone, peer: PeerInfo) => void;
  /** Time and timers of the stall deadline (tests pass a fake one). @default systemClock */
  clock?: Clock;
}

/** The defaults of {@link UploadServiceOptions}, in one place. */
export const UPLOAD_DEFAULTS: Readonly<Required<Omit<UploadServiceOptions, 'onStored' | 'clock'>>> = Object.freeze({
  maxFileBytes: 1024 ** 3,
  allowOverwrite: false,
  stallTimeoutMs: 30_000,
  maxConcurrent: 64,
});

const READY = Buffer.from('{}');

async function servePut(root: FileRoot, options: Resolved, request: Frame, exchange: Exchange, release: () => void): Promise<void> {
  const put = decodePut(request.payload);
  // The algorithm of PUT_END, hashed as the content arrives: XXH64 unless the PUT names another.
  const algorithm = put.digest ?? DEFAULT_DIGEST;
  if (!isDigestAlgorithm(algorithm)) throw new TcpkitError('BAD_REQUEST', `PUT.digest: this server computes xxh64 and xxh3, not ${algorithm}`);
  const cap = options.maxFileBytes;
  if (put.size > cap) throw new TcpkitError('TOO_LARGE', `${put.name} is ${put.size} bytes; this server takes files of at most ${cap} bytes`);
  const overwrite = put.overwrite && options.allowOverwrite;
  const file = await IncomingFile.create(root, put, overwrite);
  const receiver = new Receiver(exchange, put, file.fd, algorithm, options);
  let stored: PutDone;
  try {
    // The content goes straight from the connection's reads into the receiver (src/server/service.ts consume).
    exchange.consume(receiver);
    await exchange.write(UploadFrame.PUT_READY, READY);
    receiver.start();
    const { received, digest, end } = await receiver.done;
    if (received !== put.size || end.bytes !== received) {
      throw new TcpkitError('BAD_REQUEST', `${put.name}: the upload ended after ${received} of ${put.size} bytes`);
    }
    if (digestAlgorithmOf(end.digest) !== algorithm) {
      throw new TcpkitError('BAD_REQUEST', `${put.name}: PUT_END.digest must be ${algorithm}, as the PUT announced (got ${JSON.stringify(end.digest.slice(0, 16))})`);
    }
    if (end.digest !== digest) throw new TcpkitError('DIGEST_MISMATCH', `${put.name}: the content received does not match the client's digest`);
    await file.commit(overwrite);
    stored = { name: put.name, size: received, digest };
  } catch (error) {
    if (error instanceof TcpkitError && error.wireCode === 'ABORTED') {
      throw new TcpkitError('CANCELLED', `the upload of ${put.name} was cancelled`);
    }
    throw storageError(error, put.name);
  } finally {
    // Never close a file a write still runs on.
    await receiver.stop();
    await file.close();
  }
  // Answered once everything is released: a client told "done" may start its next upload at once.
  release();
  exchange.reply(UploadFrame.PUT_DONE, encodePutDone(stored));
  options.onStored?.(stored, exchange.peer);
}

/** What {@link sweepUploads} did. */
export interface SweepResult {
  /** Temporary files removed. */
  removed: number;
  /** True when the walk stopped at `maxEntries` before seeing the whole tree. */
  truncated: boolean;
}

/**
 * Removes the temporary files of uploads a previous run left behind (it was killed, or the
 * machine lost power, mid-upload): call it before the server starts, on the directory uploads
 * go to. Only regular files named like tcpkit's temporary files are removed; symbolic links
 * are not followed. At most `maxEntries` entries are examined.
 */
export async function sweepUploads(root: FileRoot, maxEntries = 100_000): Promise<SweepResult> {
  let seen = 0;
  let removed = 0;
  const dir = await opendir(root.realPath, { recursive: true });
  try {
    for await (const entry of dir) {
      if (++seen > maxEntries) return { removed, truncated: true };
      if (!entry.isFile() || !UPLOAD_TEMP_NAME.test(entry.name)) continue;
      const found = await unlink(path.join(entry.parentPath ?? entry.path, entry.name)).then(
        () => true,
        () => false,
      );
      if (found) removed++;
    }
  } finally {
    await dir.close().catch(() => {});
  }
  return { removed, truncated: false };
}

function resolveUploadOptions(options: UploadServiceOptions): Resolved {
  const resolved: Resolved = { ...UPLOAD_DEFAULTS, clock: systemClock, ...stripUndefined(options) };
  intOption('maxFileBytes', resolved.maxFileBytes, 0, Number.MAX_SAFE_INTEGER);
  intOption('stallTimeoutMs', resolved.stallTimeoutMs, 1, 86_400_000);
  intOption('maxConcurrent', resolved.maxConcurrent, 1, 1_000_000);
  if (resolved.onStored !== undefined && typeof resolved.onStored !== 'function') throw new OptionError('INVALID_OPTION', 'onStored must be a function');
  if (typeof resolved.clock?.setTimeout !== 'function') throw new OptionError('INVALID_OPTION', 'clock must be a Clock');
  if (typeof resolved.allowOverwrite !== 'boolean') throw new OptionError('INVALID_OPTION', 'allowOverwrite must be true or false');
  return resolved;
}

/**
 * The upload service, writing into a {@link FileRoot} (the served directory, or one of its own).
 * @example
 * const incoming = await FileRoot.open('/srv/incoming');
 * const server = createServer({ services: [uploadService(incoming, { maxFileBytes: 100 * 2 ** 20 })] });
 */
export function uploadService(root: FileRoot, options: UploadServiceOptions = {}): Service {
  const resolved = resolveUploadOptions(options);
  let active = 0;
  return {
    name: 'upload',
    requestTypes: [UploadFrame.PUT],
    continuationTypes: [UploadFrame.PUT_DATA, UploadFrame.PUT_END],
    capabilities: [XXH3_CAPABILITY],
    async handle(request, exchange) {
      if (active >= resolved.maxConcurrent) {
        throw new TcpkitError('BUSY', `the server is receiving its maximum of ${resolved.maxConcurrent} uploads at once; try again shortly`);
      }
      active++;
      let held = true;
      const release = (): void => {
        if (held) active--;
        held = false;
      };
      try {
        await servePut(root, resolved, request, exchange, release);
      } finally {
        release();
      }
    },
  };
}
