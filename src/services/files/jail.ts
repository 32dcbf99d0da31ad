/**
 * The served root: every file the download service touches is found through a {@link FileRoot},
 * which confines names to one directory by checking the descriptor it opened, never a path it
 * re-resolves (RELIABILITY §1.2, goal G1). Linux only: it relies on `/proc/self/fd` and O_PATH.
 *
 * How a name is opened:
 * 1. {@link validateName} checks it lexically: `..`, absolute names, `\`, NUL, invalid UTF-8 never
 *    reach a syscall.
 * 2. It is joined onto the root's real path, computed once by {@link FileRoot.open}.
 * 3. The result is opened with **O_PATH**: a reference to the object that performs no open of it
 *    (no device driver `open()`, no FIFO rendezvous, no atime update, and it cannot be read).
 * 4. `readlink('/proc/self/fd/N')` says what was really opened, after every symlink and `..` the
 *    kernel followed; it must be the root or below it ({@link isInside}). A symlinked
 *    intermediate directory and a symlink swapped in mid-request are caught here, because the
 *    check is on the object held, not on a path looked up again.
 * 5. `fstat` on that descriptor: a file must be regular.
 * 6. Only then is it opened for reading, through `/proc/self/fd/N`, which reopens that same
 *    inode (checked by dev/ino) with O_RDONLY | O_NONBLOCK (libuv adds O_CLOEXEC).
 *
 * Steps 3 and 6 refine §1.2 step 3 (`open(O_RDONLY | O_NOFOLLOW | O_NONBLOCK)` then check): that
 * order really opens whatever a symlink leads to, an outside device included, before the check
 * can refuse it. With O_PATH the first open has no side effect, and no FIFO can hold a
 * threadpool thread, because nothing but a checked regular file is ever opened for reading.
 *
 * Steps 3–6 are synchronous calls on the event loop (at most ~7 per GET, {@link
 * FileRoot.openFileSync}), the one lookup of every request: metadata the kernel's dentry and inode
 * caches answer in µs, where a thread-pool round trip costs ~10× more, and none of them can block
 * on a FIFO or a device (O_PATH, then O_NONBLOCK on a checked regular file). The trade-off
 * against isolation (RELIABILITY G6) is in docs/ARCHITECTURE.md and `small.ts`.
 *
 * Policies:
 * - **Hidden names** (a component starting with `.`) are refused with FORBIDDEN and left out of
 *   listings unless `allowHidden`, as nginx-style static servers do: `.git`, `.env`, `.ssh` are
 *   the usual leaks.
 * - **Symlinks** (`symlinks: 'inside'`, the default) are followed when what they lead to is
 *   inside the root, and refused (FORBIDDEN) when it is outside; listings show an in-root link as
 *   what it leads to and leave out links that lead outside or nowhere. `symlinks: 'refuse'`
 *   refuses any symlink on the way, like nginx `disable_symlinks on`.
 * - **Hard links**: a name inside the root says nothing about where the inode's other names
 *   live, so a hard link is a way out of the root that no path check can see. A regular file
 *   with more than one link (`nlink > 1`, read by `fstat` on the descriptor that is read, not on
 *   a path) is treated as a symlink leading outside: GET and STAT refuse it (FORBIDDEN), LIST
 *   leaves it out. `allowHardLinks: true` serves such files (`fs.protected_hardlinks`, on by
 *   default in Debian, already limits local users to linking files they own or can read and
 *   write). Directories always have several links and are not concerned.
 * - **Special files** (FIFOs, sockets, devices) and directories are refused (FORBIDDEN) by GET;
 *   STAT describes them.
 *
 * Residual risk: the kernel follows symlinks before step 4 can look, so a symlink planted in the
 * root makes the server take an O_PATH reference to an outside object, and `stat` it, but never
 * open or read it. Node has no `openat2(RESOLVE_BENEATH)`. The operational rule stands: the
 * served root must not be writable by untrusted users. No containment decision is cached across
 * requests.
 *
 * Error messages name the requested name only, never a server path (CVE-2015-8859, G11).
 */
import { closeSync, constants as fsConstants, fstatSync, openSync, readlinkSync, type Dirent, type Stats } from 'node:fs';
import { open, opendir, lstat, readlink, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { OptionError, TcpkitError } from '../../errors.js';
import { errnoOf, forbidden, refusal } from './errors.js';
import { resolveRootOptions, type AccessOptions, type FileRootOptions, type OpenedDescriptor, type OpenedFile, type ParentDirectory } from './jail-options.js';
import { isInside, validateDirName, validateName, type NameRules } from './names.js';
import type { EntryInfo, Listing } from './wire.js';

/** The root's options and results, with {@link FileRoot}. */
export {
  FILE_ROOT_DEFAULTS,
  type AccessOptions,
  type FileRootOptions,
  type OpenedDescriptor,
  type OpenedFile,
  type OpenedFileInfo,
  type ParentDirectory,
  type SymlinkPolicy,
} from './jail-options.js';

// O_PATH from <asm-generic/fcntl.h>, the value on every architecture Node supports on Linux;
// Node's fs.constants does not export it. FileRoot.open proves the kernel took it as O_PATH.
const O_PATH = 0o10000000;
const { O_RDONLY, O_NONBLOCK, O_DIRECTORY } = fsConstants;

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function typeOf(stats: Stats): EntryInfo['type'] {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'directory';
  return 'other';
}

function entryOf(name: string, stats: Stats): EntryInfo {
  const type = typeOf(stats);
  return { name, type, size: type === 'file' ? stats.size : 0, mtimeMs: stats.mtimeMs };
}

/** `/proc/self/fd/N`: the path the kernel reports for a descriptor, and a way to reopen it. */
function fdPath(fd: number): string {
  return `/proc/self/fd/${fd}`;
}

function closeSyncQuietly(fd: number): void {
  // Refusal paths only, as closeQuietly.
  try {
    closeSync(fd);
  } catch {
    // the refusal is what the caller must see
  }
}

async function closeQuietly(handle: { close(): Promise<void> }): Promise<void> {
  // Used on refusal paths only: the refusal, not a failed close, is what the caller must see.
  await handle.close().catch(() => {});
}

/**
 * A directory served read-only, with every name confined to it. Create with
 * {@link FileRoot.open}.
 * @example
 * const root = await FileRoot.open('/srv/files');
 * const file = await root.openFile('docs/report.pdf');
 * try { await pipeline(file.handle.createReadStream({ end: file.size - 1 }), socket); }
 * finally { await file.handle.close(); }
 */
export class FileRoot {
  readonly #real: string;
  readonly #options: Readonly<Required<FileRootOptions>>;

  private constructor(real: string, options: Required<FileRootOptions>) {
    this.#real = real;
    this.#options = Object.freeze(options);
  }

  /**
   * Resolves `dir` once (its real path is fixed for the life of the root) and checks that it is
   * a directory and that descriptor checks work here (Linux, `/proc` mounted, O_PATH honoured).
   * Throws `INVALID_OPTION` otherwise; these messages name `dir`, for the operator.
   */
  static async open(dir: string, options: FileRootOptions = {}): Promise<FileRoot> {
    const resolved = resolveRootOptions(options);
    let real: string;
    try {
      real = strictUtf8.decode(await realpath(dir, { encoding: 'buffer' }));
    } catch (error) {
      const why = error instanceof TypeError ? 'its real path is not valid UTF-8' : errnoOf(error) === 'ENOENT' ? 'no such directory' : (errnoOf(error) ?? 'unknown error');
      throw new OptionError('INVALID_OPTION', `root ${dir}: ${why}`);
    }
    let handle: FileHandle;
    try {
      handle = await open(real, O_PATH | O_DIRECTORY);
    } catch (error) {
      const why = errnoOf(error) === 'ENOTDIR' ? 'not a directory' : (errnoOf(error) ?? 'unknown error');
      throw new OptionError('INVALID_OPTION', `root ${dir}: ${why}`);
    }
    try {
      await FileRoot.#probe(handle, real, dir);
      const { mode } = await handle.stat();
      if ((mode & 0o002) !== 0 && !resolved.allowWorldWritable) {
        throw new OptionError(
          'INVALID_OPTION',
          `root ${dir} is writable by every user (mode ${(mode & 0o7777).toString(8)}): anyone on this machine could plant files and links in it; use a directory only its owner can write (chmod o-w)`,
        );
      }
    } finally {
      await handle.close();
    }
    return new FileRoot(real, resolved);
  }

  /** Fails closed where `/proc/self/fd` or O_PATH do not behave as the checks assume. */
  static async #probe(handle: FileHandle, real: string, dir: string): Promise<void> {
    const unsupported = (): OptionError =>
      new OptionError('INVALID_OPTION', `root ${dir}: serving files needs Linux with /proc mounted (descriptor checks)`);
    const where = await readlink(fdPath(handle.fd)).catch(() => undefined);
    if (where !== real) throw unsupported();
    // Reading an O_PATH descriptor fails with EBADF; a plain directory descriptor gives EISDIR.
    const readError = await handle.read(Buffer.alloc(1), 0, 1, 0).then(
      () => undefined,
      (error: unknown) => errnoOf(error),
    );
    if (readError !== 'EBADF') throw unsupported();
  }

  /**
   * The real path of the served root. For the operator (logs at startup); never send it to a
   * peer.
   */
  get realPath(): string {
    return this.#real;
  }

  #rules(access: AccessOptions): NameRules {
    return {
      maxNameBytes: this.#options.maxNameBytes,
      maxComponentBytes: this.#options.maxComponentBytes,
      allowHidden: access.allowHidden ?? this.#options.allowHidden,
    };
  }

  /**
   * True when the descriptor's real path is inside the root (and, with symlinks refused, is
   * `expected`). Synchronous: readlink of `/proc/self/fd/N` reads the kernel's own record of
   * the descriptor (d_path), no disk.
   */
  #confined(fd: number, expected: string): boolean {
    let where: string;
    try {
      // Decoded strictly: a lossy decode could make two different byte paths compare equal.
      where = strictUtf8.decode(readlinkSync(fdPath(fd), { encoding: 'buffer' }));
    } catch {
      return false;
    }
    if (!isInside(this.#real, where)) return false;
    return this.#options.symlinks === 'inside' || where === expected;
  }

  /** Refuses a regular file with several hard links, unless they are allowed. */
  #checkLinks(name: string, stats: Stats): void {
    if (!this.#options.allowHardLinks && stats.isFile() && stats.nlink > 1) {
      throw forbidden(name, 'has more than one hard link (another name of it may lie outside the served root)');
    }
  }

  /**
   * Steps 2–5: an O_PATH descriptor on what `rel` names, checked to be inside the root, and its
   * stats; the one lookup of every request, in synchronous calls (see the file comment). The
   * caller closes `fd`.
   */
  #locate(rel: string, label: string): { fd: number; stats: Stats } {
    const target = rel === '' ? this.#real : path.join(this.#real, rel);
    let fd: number;
    try {
      fd = openSync(target, O_PATH);
    } catch (error) {
      throw refusal(error, label);
    }
    try {
      if (!this.#confined(fd, target)) {
        throw forbidden(label, this.#options.symlinks === 'inside' ? 'leads outside the served root' : 'symbolic links are not served');
      }
      return { fd, stats: fstatSync(fd) };
    } catch (error) {
      closeSyncQuietly(fd);
      throw error instanceof TcpkitError ? error : refusal(error, label);
    }
  }

  /**
   * Opens a regular file inside the root for reading, in synchronous calls (GET does, see
   * `small.ts`): at most 7 metadata calls (open O_PATH, readlink, fstat, open O_RDONLY |
   * O_NONBLOCK through `/proc/self/fd`, fstat, close; one more close on a refusal), none of
   * which can block on a FIFO or a device. Throws like {@link openFile}. The caller closes `fd`
   * (`closeSync`).
   */
  openFileSync(input: string | Uint8Array, access: AccessOptions = {}): OpenedDescriptor {
    const name = validateName(input, this.#rules(access));
    const { fd: located, stats } = this.#locate(name, name);
    try {
      if (stats.isDirectory()) throw forbidden(name, 'is a directory');
      if (!stats.isFile()) throw forbidden(name, 'not a regular file');
      let fd: number;
      try {
        fd = openSync(fdPath(located), O_RDONLY | O_NONBLOCK);
      } catch (error) {
        throw refusal(error, name);
      }
      try {
        const opened = fstatSync(fd);
        if (opened.dev !== stats.dev || opened.ino !== stats.ino || !opened.isFile()) throw forbidden(name, 'changed while it was opened');
        // On the descriptor that will be read: a link made after the O_PATH lookup is seen too.
        this.#checkLinks(name, opened);
        return { fd, size: opened.size, mtimeMs: opened.mtimeMs, ctimeMs: opened.ctimeMs, dev: opened.dev, ino: opened.ino, name };
      } catch (error) {
        closeSyncQuietly(fd);
        throw error instanceof TcpkitError ? error : refusal(error, name);
      }
    } finally {
      closeSync(located);
    }
  }

  /**
   * Opens a regular file inside the root for reading. Throws `INVALID_NAME` (the name breaks
   * the rules of {@link validateName}), `NOT_FOUND`, or `FORBIDDEN` (hidden, a directory, not a
   * regular file, a link leading outside, several hard links when refused, permission denied).
   * Nothing is read before every check has passed. The caller closes `handle`. The lookup and
   * its checks are {@link openFileSync}'s; the file is then reopened as a FileHandle, through
   * `/proc/self/fd`, which reopens that same inode.
   */
  async openFile(input: string | Uint8Array, access: AccessOptions = {}): Promise<OpenedFile> {
    const { fd, ...file } = this.openFileSync(input, access);
    try {
      return { ...file, handle: await open(fdPath(fd), O_RDONLY | O_NONBLOCK) };
    } catch (error) {
      throw refusal(error, file.name);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * The directory a new entry named `input` would go in: the name is validated like
   * {@link openFile}'s, and its parent must be an existing directory inside the root (checked on
   * the descriptor). Nothing is created. For uploads: entries are made through `path`, so a
   * directory swapped for a link afterwards is never written through.
   */
  async openParent(input: string | Uint8Array, access: AccessOptions = {}): Promise<ParentDirectory> {
    const name = validateName(input, this.#rules(access));
    const slash = name.lastIndexOf('/');
    const rel = slash < 0 ? '' : name.slice(0, slash);
    const { fd, stats } = this.#locate(rel, rel === '' ? '.' : rel);
    if (!stats.isDirectory()) {
      closeSyncQuietly(fd);
      throw forbidden(rel, 'is not a directory');
    }
    let open = true;
    const close = (): void => {
      if (open) closeSync(fd);
      open = false;
    };
    return { path: fdPath(fd), base: name.slice(slash + 1), name, close };
  }

  /**
   * Describes one entry inside the root: a file, a directory, or `other` (FIFO, socket,
   * device; described, never opened). An in-root symlink is described as what it leads to.
   * The entry's `name` is the whole name asked for. Throws like {@link openFile}, without the
   * file-type refusals: a regular file with several hard links is refused as GET refuses it.
   */
  async stat(input: string | Uint8Array, access: AccessOptions = {}): Promise<EntryInfo> {
    const name = validateName(input, this.#rules(access));
    const { fd, stats } = this.#locate(name, name);
    closeSync(fd);
    this.#checkLinks(name, stats);
    return entryOf(name, stats);
  }

  /**
   * Lists a directory inside the root (`''` or `.` is the root itself). Entry names are base
   * names; entries are sorted by name. Left out: names that could not be requested (invalid
   * UTF-8, control characters, reserved names, too long), hidden names unless allowed, symlinks
   * that lead outside the root or nowhere (all symlinks under `symlinks: 'refuse'`), regular
   * files with several hard links unless allowed, and entries that vanish while being read. At most `maxListEntries` are returned, in directory order
   * before sorting; `truncated` says whether more were there. Entries are examined one at a
   * time, so a large directory does not occupy the threadpool that other requests share.
   */
  async list(input: string | Uint8Array = '', access: AccessOptions = {}): Promise<Listing> {
    const rules = this.#rules(access);
    const rel = validateDirName(input, rules);
    const label = rel === '' ? '.' : rel;
    const { fd, stats } = this.#locate(rel, label);
    try {
      if (!stats.isDirectory()) throw forbidden(label, 'is not a directory');
      // Read through the checked descriptor, so a directory swapped in later is never listed.
      const base = fdPath(fd);
      // Raw names, so invalid UTF-8 is seen and skipped rather than decoded lossily into U+FFFD
      // (Node accepts 'buffer' here; its typings only list text encodings).
      const rawNames = { encoding: 'buffer' as unknown as BufferEncoding, bufferSize: 128 };
      const dir = await opendir(base, rawNames).catch((error: unknown) => {
        throw refusal(error, label);
      });
      const entries: EntryInfo[] = [];
      let truncated = false;
      // Only names a client could request back: the whole `rel/name` must fit the name limit.
      const room = this.#options.maxNameBytes - (rel === '' ? 0 : Buffer.byteLength(rel) + 1);
      const entryRules: NameRules = { ...rules, maxNameBytes: Math.max(1, room) };
      try {
        for (let dirent = await dir.read(); dirent !== null && room > 0; dirent = await dir.read()) {
          const entryName = FileRoot.#direntName(dirent, entryRules);
          if (entryName === undefined) continue;
          const entry = await this.#describe(base, entryName);
          if (entry === undefined) continue;
          if (entries.length === this.#options.maxListEntries) {
            truncated = true;
            break;
          }
          entries.push(entry);
        }
      } catch (error) {
        throw error instanceof TcpkitError ? error : refusal(error, label);
      } finally {
        await dir.close();
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return { entries, truncated };
    } finally {
      closeSync(fd);
    }
  }

  /** The entry's name if it passes the name rules as a single component, else undefined. */
  static #direntName(dirent: Dirent, rules: NameRules): string | undefined {
    // With encoding 'buffer' the name is the raw bytes (the typings say string).
    const raw: unknown = dirent.name;
    const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw));
    try {
      return validateName(bytes, rules);
    } catch {
      return undefined;
    }
  }

  /** The entry for a listing, or undefined when GET and STAT would refuse it as a way out. */
  #listable(entryName: string, stats: Stats): EntryInfo | undefined {
    if (!this.#options.allowHardLinks && stats.isFile() && stats.nlink > 1) return undefined;
    return entryOf(entryName, stats);
  }

  /** One listing entry, looked up through the directory's descriptor; undefined to leave it out. */
  async #describe(base: string, entryName: string): Promise<EntryInfo | undefined> {
    const entryPath = `${base}/${entryName}`;
    const stats = await lstat(entryPath).catch(() => undefined);
    if (stats === undefined) return undefined;
    if (!stats.isSymbolicLink()) return this.#listable(entryName, stats);
    if (this.#options.symlinks === 'refuse') return undefined;
    const handle = await open(entryPath, O_PATH).catch(() => undefined);
    if (handle === undefined) return undefined;
    try {
      if (!this.#confined(handle.fd, entryPath)) return undefined;
      return this.#listable(entryName, await handle.stat());
    } catch {
      return undefined;
    } finally {
      await closeQuietly(handle);
    }
  }
}