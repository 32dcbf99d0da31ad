/**
 * The options and results of a {@link FileRoot} (the jail of the file services): its policies,
 * their defaults in one place, and what opening a file or a parent directory hands back.
 */
import type { FileHandle } from 'node:fs/promises';
import { OptionError } from '../../errors.js';
import { intOption, stripUndefined } from '../../util/options.js';
/** How symlinks inside the root are treated. */
export type SymlinkPolicy = 'inside' | 'refuse';

/** Options of `FileRoot.open`. */
export interface FileRootOptions {
  /** Serve (and list) names with a component starting with `.`. @default false */
  allowHidden?: boolean;
  /**
   * `'inside'`: follow a symlink when what it leads to is inside the root, refuse it otherwise.
   * `'refuse'`: refuse any name with a symlink on the way.
   * @default 'inside'
   */
  symlinks?: SymlinkPolicy;
  /**
   * Serve (and list) regular files that have more than one hard link. Off by default: another
   * name of the same inode may lie outside the root, so such a file is refused like a symlink
   * leading outside. @default false
   */
  allowHardLinks?: boolean;
  /** Most entries one `FileRoot.list` returns; past it the listing says `truncated`. @default 10000 */
  maxListEntries?: number;
  /** Longest name accepted, in UTF-8 bytes. @default 1024 */
  maxNameBytes?: number;
  /** Longest name component accepted, in UTF-8 bytes. @default 255 */
  maxComponentBytes?: number;
  /**
   * Accept a root that every local user may write to (mode o+w, such as `/tmp`): anyone on the
   * machine could then plant files and links in it. @default false
   */
  allowWorldWritable?: boolean;
}

/** The defaults of {@link FileRootOptions}, in one place. */
export const FILE_ROOT_DEFAULTS: Readonly<Required<FileRootOptions>> = Object.freeze({
  allowHidden: false,
  symlinks: 'inside',
  allowHardLinks: false,
  maxListEntries: 10_000,
  maxNameBytes: 1024,
  maxComponentBytes: 255,
  allowWorldWritable: false,
});

/** Per-request overrides of the root's policy. */
export interface AccessOptions {
  /** Overrides {@link FileRootOptions.allowHidden} for this call. */
  allowHidden?: boolean;
}

/** The directory a new entry goes in, checked inside the root. The caller calls `close()`. */
export interface ParentDirectory {
  /** `/proc/self/fd/N` of an O_PATH descriptor on the directory; `path/<base>` names entries inside it. */
  path: string;
  /** The last component of the name. */
  base: string;
  /** The validated name. */
  name: string;
  /** Closes the descriptor behind `path` (synchronous: closing an O_PATH descriptor does no I/O). Idempotent. */
  close(): void;
}

/** What opening a regular file inside the root says of it: one version of the file. */
export interface OpenedFileInfo {
  /** Size in bytes when it was opened. */
  size: number;
  /** Modification time when it was opened, in ms since the epoch. */
  mtimeMs: number;
  /** Status change time when it was opened (any write, chmod, link, rename...), in ms since the epoch. */
  ctimeMs: number;
  /** Device and inode of the file opened: with size and times, what identifies one version of it. */
  dev: number;
  /** See {@link OpenedFileInfo.dev}. */
  ino: number;
  /** The validated name. */
  name: string;
}

/** A regular file opened for reading, confined to the root. The caller closes `handle`. */
export interface OpenedFile extends OpenedFileInfo {
  /** Read-only handle on the file that was checked. */
  handle: FileHandle;
}

/** A regular file opened for reading by `FileRoot.openFileSync`: a descriptor, which the caller closes (`closeSync`). */
export interface OpenedDescriptor extends OpenedFileInfo {
  /** Read-only, non-blocking descriptor on the file that was checked. */
  fd: number;
}

/** The options with their defaults filled in, each checked; throws OptionError naming a bad one. */
export function resolveRootOptions(options: FileRootOptions): Required<FileRootOptions> {
  const resolved: Required<FileRootOptions> = { ...FILE_ROOT_DEFAULTS, ...stripUndefined(options) };
  for (const key of ['allowHidden', 'allowHardLinks', 'allowWorldWritable'] as const) {
    if (typeof resolved[key] !== 'boolean') throw new OptionError('INVALID_OPTION', `${key} must be true or false`);
  }
  if (resolved.symlinks !== 'inside' && resolved.symlinks !== 'refuse') {
    throw new OptionError('INVALID_OPTION', `symlinks must be 'inside' or 'refuse', got ${String(resolved.symlinks)}`);
  }
  intOption('maxListEntries', resolved.maxListEntries, 1, 1_000_000);
  intOption('maxNameBytes', resolved.maxNameBytes, 1, 4096);
  intOption('maxComponentBytes', resolved.maxComponentBytes, 1, 255);
  return resolved;
}
