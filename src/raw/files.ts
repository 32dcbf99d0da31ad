/**
 * Raw mode for files: the tutorial's download protocol. Server side, a raw request is a file
 * name: the whole file is sent and the connection closed; a refused or missing file closes it
 * with no data. Client side, the whole stream is saved, atomically, whatever its size.
 */
import { constants as fsc } from 'node:fs';
import { open, unlink, lstat } from 'node:fs/promises';
import path from 'node:path';
import { rawExchange } from './client.js';
import type { ClientOptions, Target } from '../client/options.js';
import { TcpkitError } from '../errors.js';
import type { RawHandler } from './handler.js';
import { commitFile, destinationExists, partialPaths } from '../services/files/commit.js';
import type { FileRoot } from '../services/files/jail.js';
import { bulkBuffers } from '../util/buffer-pool.js';

/** Serves raw file requests from `root`, under every rule of the framed download service. */
export function rawFileHandler(root: FileRoot): RawHandler {
  return async (request, exchange) => {
    const file = await root.openFile(request);
    // The read buffer, one per transfer: a whole one from the bulk pool for a file of 1 MiB or more.
    const size = Math.min(bulkBuffers.size, Math.max(1, file.size));
    const buffer = size === bulkBuffers.size ? bulkBuffers.take() : Buffer.allocUnsafe(size);
    try {
      for (let position = 0; position < file.size; ) {
        const { bytesRead } = await file.handle.read(buffer, 0, Math.min(buffer.length, file.size - position), position);
        if (bytesRead === 0) throw new TcpkitError('FILE_CHANGED', `${file.name} shrank during the transfer`);
        // A copy per chunk: the socket may still hold the previous one when we read the next (a
        // raw exchange says when it can take more, not when it is done with a chunk), so only
        // the read buffer, which never leaves this function, is the pool's.
        await exchange.write(Buffer.from(buffer.subarray(0, bytesRead)));
        position += bytesRead;
      }
    } finally {
      bulkBuffers.give(buffer);
      await file.handle.close();
    }
  };
}

/** What a raw download reports. */
export interface RawDownloadResult {
  path: string;
  bytes: number;
  seconds: number;
}

/**
 * Asks a raw server (the tutorial's download_server.py, netcat) for `name` and saves everything
 * it sends until it closes: to a partial file beside `destination`, renamed into place at the
 * end. A server that closes without sending anything is reported as a missing file, and no
 * empty file is left behind. Raw mode has no size and no digest: a server that dies midway
 * cannot be told from one that finished.
 */
export async function rawDownload(
  target: Target,
  name: string,
  destination: string,
  options: ClientOptions & { force?: boolean } = {},
): Promise<RawDownloadResult> {
  const started = performance.now();
  const finalPath = path.resolve(destination);
  if (!options.force) {
    const exists = await lstat(finalPath).then(
      () => true,
      () => false,
    );
    if (exists) throw destinationExists(destination);
  }
  const { part } = partialPaths(finalPath);
  const handle = await open(part, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, 0o644);
  let bytes = 0;
  try {
    bytes = await rawExchange(
      target,
      Buffer.from(name, 'utf8'),
      async (chunk) => {
        let done = 0;
        while (done < chunk.length) done += (await handle.write(chunk, done)).bytesWritten;
      },
      options,
    );
    await handle.close();
    if (bytes === 0) throw new TcpkitError('NOT_FOUND', 'server sent nothing (file missing?)');
    await commitFile(part, finalPath, { overwrite: Boolean(options.force), exists: () => destinationExists(destination), removeTemp: 'required' });
    return { path: finalPath, bytes, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    await handle.close().catch(() => {});
    await unlink(part).catch(() => {});
    throw error;
  }
}
