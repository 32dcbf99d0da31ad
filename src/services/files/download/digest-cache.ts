/**
 * The download service's digest cache: the digest of a whole file, remembered per version of the
 * file, so that a repeated GET (or a resume) sends the bytes without hashing them, and a resume
 * does not read the prefix the client already holds (issue 12, item 4).
 *
 * A version is (device, inode, size, mtime, ctime) from `fstat` on the descriptor read. Any write
 * to a file moves its ctime, which no one can set back (`utimes` moves it too), so content that
 * changed without touching size or mtime is still a new version. The one gap is the clock's
 * tick: a file written twice within one tick of the kernel's coarse clock keeps one ctime. As in
 * git's "racy" index entries, a digest is therefore only kept for a file whose last change is at
 * least {@link SETTLE_MS} older than the moment its transfer started: a later write cannot have
 * the same ctime. A stale entry could not make a client accept wrong bytes anyway (it checks the
 * bytes it got against the digest), only refuse right ones.
 *
 * In memory only, bounded, least recently used first out. Node has no API for extended
 * attributes, so the digest is not kept beside the file on disk.
 */

/** What identifies one version of a file (from `fstat` of its descriptor). */
export interface FileVersion {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

/** Entries kept by default. @default 4096 */
export const DIGEST_CACHE_ENTRIES = 4096;

/** A file changed less than this long before its transfer started is not cached (see above). */
export const SETTLE_MS = 2000;

/** True when `after` (an fstat later on the same descriptor) is still the version `before`. */
export function sameVersion(before: FileVersion, after: FileVersion): boolean {
  return after.size === before.size && after.mtimeMs === before.mtimeMs && after.ctimeMs === before.ctimeMs;
}

/** True when `version` changed long enough before `startedAt` (ms since the epoch) to be cached. */
export function settled(version: FileVersion, startedAt: number): boolean {
  return Math.max(version.mtimeMs, version.ctimeMs) <= startedAt - SETTLE_MS;
}

/** Digests of whole files, by algorithm and version; at most `maxEntries`, least recently used out first. */
export class DigestCache {
  readonly #entries = new Map<string, string>();
  readonly #max: number;

  /** `maxEntries` of 0 keeps nothing. */
  constructor(maxEntries = DIGEST_CACHE_ENTRIES) {
    this.#max = maxEntries;
  }

  /** Entries held. */
  get size(): number {
    return this.#entries.size;
  }

  static #key(algorithm: string, v: FileVersion): string {
    return `${algorithm} ${v.dev} ${v.ino} ${v.size} ${v.mtimeMs} ${v.ctimeMs}`;
  }

  /** The digest of that version with that algorithm, if known (it becomes the most recently used). */
  get(algorithm: string, version: FileVersion): string | undefined {
    const key = DigestCache.#key(algorithm, version);
    const digest = this.#entries.get(key);
    if (digest !== undefined) {
      // Map order is insertion order: moved to the end, it is the last to go.
      this.#entries.delete(key);
      this.#entries.set(key, digest);
    }
    return digest;
  }

  /** Remembers a digest, dropping the least recently used entry when full. */
  set(algorithm: string, version: FileVersion, digest: string): void {
    if (this.#max === 0) return;
    const key = DigestCache.#key(algorithm, version);
    this.#entries.delete(key);
    this.#entries.set(key, digest);
    if (this.#entries.size > this.#max) this.#entries.delete(this.#entries.keys().next().value!);
  }

  /** Forgets a version (it turned out to have changed). */
  delete(algorithm: string, version: FileVersion): void {
    this.#entries.delete(DigestCache.#key(algorithm, version));
  }
}
