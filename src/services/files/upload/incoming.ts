/**
 * A file being received by the upload service: a hidden temporary file beside the destination,
 * written (and flushed to disk as it grows) by upload/writer.ts, and put under its name (see `commit.ts`) only once complete.
 */
import { constants as fsc } from 'node:fs';
import { lstat, open, unlink, type FileHandle } from 'node:fs/promises';
import { TcpkitError } from '../../../errors.js';
import { commitFile, uploadTempPath } from '../commit.js';
import { storageError } from '../errors.js';
import type { FileRoot, ParentDirectory } from '../jail.js';
import type { PutRequest } from '../wire.js';

/**
 * A file being received: a hidden temporary file in the destination's directory, created
 * through that directory's checked descriptor.
 */
export class IncomingFile {
  readonly #dir: ParentDirectory;
  readonly #temp: string;
  #handle: FileHandle | undefined;

  private constructor(dir: ParentDirectory, temp: string, handle: FileHandle) {
    this.#dir = dir;
    this.#temp = temp;
    this.#handle = handle;
  }

  /** Checks that the name is free (or may be replaced), then creates the temporary file. */
  static async create(root: FileRoot, put: PutRequest, overwrite: boolean): Promise<IncomingFile> {
    const dir = await root.openParent(put.name).catch((error: unknown) => {
      if (!(error instanceof TcpkitError) || error.wireCode !== 'NOT_FOUND') throw error;
      throw new TcpkitError('NOT_FOUND', `no such directory on the server for ${put.name}`);
    });
    try {
      const existing = await lstat(`${dir.path}/${dir.base}`).catch(() => undefined);
      if (existing !== undefined) {
        if (existing.isDirectory()) throw new TcpkitError('FORBIDDEN', `${dir.name}: is a directory`);
        if (!overwrite) {
          const why = put.overwrite ? 'this server does not allow overwriting' : 'not replaced: overwriting was not asked for';
          throw new TcpkitError('FILE_EXISTS', `${dir.name} exists on the server (${why})`);
        }
      }
      const temp = uploadTempPath(dir.path);
      const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
      const handle = await open(temp, flags, 0o644);
      return new IncomingFile(dir, temp, handle);
    } catch (error) {
      dir.close();
      throw storageError(error, put.name);
    }
  }

  /** The temporary file's descriptor, for positional writes (upload/writer.ts); valid until {@link commit} or {@link close}. */
  get fd(): number {
    return this.#handle!.fd;
  }

  /**
   * Puts the complete file under its name: flushed to disk first, then renamed (when replacing
   * is allowed) or hard-linked, which fails if the name was taken meanwhile. On failure the
   * temporary file is removed and nothing is under the name.
   */
  async commit(overwrite: boolean): Promise<void> {
    const handle = this.#handle!;
    this.#handle = undefined;
    try {
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      await commitFile(this.#temp, `${this.#dir.path}/${this.#dir.base}`, {
        overwrite,
        exists: () => new TcpkitError('FILE_EXISTS', `${this.#dir.name} appeared on the server during the upload`),
        removeTemp: 'best-effort',
        syncDirectory: this.#dir.path,
      });
    } catch (error) {
      await unlink(this.#temp).catch(() => {});
      throw error;
    }
  }

  /** Closes everything; removes the temporary file unless it was committed. */
  async close(): Promise<void> {
    if (this.#handle !== undefined) {
      await this.#handle.close().catch(() => {});
      await unlink(this.#temp).catch(() => {});
      this.#handle = undefined;
    }
    this.#dir.close();
  }
}

