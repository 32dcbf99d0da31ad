/**
 * The one mapping from a failed filesystem call to a coded {@link TcpkitError}, for both sides
 * of the file services:
 * - server side, {@link refusal} (a download: NOT_FOUND, FORBIDDEN, INVALID_NAME...) and
 *   {@link storageError} (an upload: NO_SPACE first, then what a download would be told). What
 *   the client is told names the requested name only, never a server path, and keeps no Node
 *   error as `cause` (its message holds the absolute path, and a logger printing causes would
 *   leak it: CVE-2015-8859, G11);
 * - client side, {@link localError} and {@link writeFailure}: LOCAL_FILE_ERROR naming the local
 *   path, with the Node error as `cause`, the cause a person acts on first (no space, quota).
 */
import { TcpkitError } from '../../errors.js';

/** The errno code of a failed call (`ENOENT`), or undefined when it has none. */
export function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** FORBIDDEN, naming the requested name and why. */
export function forbidden(name: string, reason: string): TcpkitError {
  return new TcpkitError('FORBIDDEN', `${name}: ${reason}`);
}

/**
 * The client-facing meaning of a failed filesystem call on the server. The Node error is not
 * kept as `cause`: its message holds the absolute path, and a logger printing causes would leak it.
 */
export function refusal(error: unknown, name: string, verb = 'open'): TcpkitError {
  const code = errnoOf(error) ?? 'unknown error';
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new TcpkitError('NOT_FOUND', `no such file: ${name}`);
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return forbidden(name, 'permission denied');
    case 'ELOOP':
      return forbidden(name, 'too many levels of symbolic links');
    case 'ENXIO':
    case 'ENODEV':
      return forbidden(name, 'not a regular file');
    case 'ENAMETOOLONG':
      return new TcpkitError('INVALID_NAME', `invalid name: ${name} is too long for this server`);
    default:
      // A local-scope code: the server logs it (handler-error) and the client gets HANDLER_ERROR.
      return new TcpkitError('LOCAL_FILE_ERROR', `cannot ${verb} ${name}: ${code}`);
  }
}

/** Errno codes that mean "no room": disk full, quota, inodes. */
const NO_ROOM = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/** What an uploading client is told when storing failed: no room, a directory in the way, or what a download would be told. */
export function storageError(error: unknown, name: string): TcpkitError {
  if (error instanceof TcpkitError) return error;
  const code = errnoOf(error);
  if (code !== undefined && NO_ROOM.has(code)) return new TcpkitError('NO_SPACE', `no room on the server for ${name} (${code})`);
  if (code === 'EISDIR' || code === 'ENOTEMPTY') return forbidden(name, 'is a directory');
  return refusal(error, name, 'store');
}

/**
 * LOCAL_FILE_ERROR on this side: `what`, then the errno code of `error` (or the error itself
 * when it has none), with `error` as the cause. A {@link TcpkitError} passes unchanged.
 */
export function localError(what: string, error?: unknown): TcpkitError {
  if (error instanceof TcpkitError) return error;
  if (error === undefined) return new TcpkitError('LOCAL_FILE_ERROR', what);
  return new TcpkitError('LOCAL_FILE_ERROR', `${what}: ${errnoOf(error) ?? String(error)}`, { cause: error });
}

/** What a failed write to a local file (`file`) says: the cause a person acts on first. */
export function writeFailure(file: string, error: unknown): TcpkitError {
  if (error instanceof TcpkitError) return error;
  const code = errnoOf(error);
  const why =
    code === 'ENOSPC' ? 'no space left on the device' : code === 'EDQUOT' ? 'disk quota exceeded' : code === 'EFBIG' ? 'file too large for the file system' : undefined;
  if (why === undefined) return localError(`cannot write ${file}`, error);
  return new TcpkitError('LOCAL_FILE_ERROR', `${why} writing ${file}`, { cause: error });
}
