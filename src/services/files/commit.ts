/**
 * Partial files and the atomic commit, one helper for every writer of whole files: a download
 * (framed or raw) saving to a path, and the upload service storing what a client sent. Bytes go
 * to a temporary name beside the destination; only a complete, verified file is put under its
 * name, by link() when the name must not be taken (it fails with EEXIST if the name appeared
 * meanwhile: never replace a file silently) or rename() when replacing was allowed and asked.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc, linkSync, renameSync, unlinkSync } from 'node:fs';
import { link, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { TcpkitError } from '../../errors.js';

/** Where a download keeps its partial file and what it knows about it. */
export function partialPaths(destination: string): { part: string; meta: string } {
  const part = path.join(path.dirname(destination), `.${path.basename(destination)}.tcpkit-part`);
  return { part, meta: `${part}.json` };
}

/** FILE_EXISTS for a local destination that a download must not replace unless forced. */
export function destinationExists(destination: string): TcpkitError {
  return new TcpkitError('FILE_EXISTS', `${destination} exists (use --force to replace it)`);
}

/** The upload service's temporary files are named this, then 16 hex digits. */
export const UPLOAD_TEMP_PREFIX = '.tcpkit-upload-';
/** The name of an upload's temporary file (what {@link uploadTempPath} makes). */
export const UPLOAD_TEMP_NAME = /^\.tcpkit-upload-[0-9a-f]{16}$/;

/** A fresh temporary upload path in directory `dir`: hidden (never served or listed), and short whatever the name's length. */
export function uploadTempPath(dir: string): string {
  return `${dir}/${UPLOAD_TEMP_PREFIX}${randomBytes(8).toString('hex')}`;
}

/** How {@link commitFile} puts a file under its name. */
export interface CommitOptions {
  /** Replace a file already under the name (rename); otherwise link(), which refuses a taken name. */
  overwrite: boolean;
  /** The error when the name is taken and `overwrite` is false. */
  exists: () => TcpkitError;
  /**
   * After a link, removing the temporary name: `'required'` fails the commit when it cannot be
   * removed (a client's partial file, which the next run would take for a resumable one);
   * `'best-effort'` ignores that failure (the file is in place: nothing after this may report
   * that storing failed).
   */
  removeTemp: 'required' | 'best-effort';
  /** Flush this directory's entries once the file is in place (best effort), so a crash does not lose it. */
  syncDirectory?: string;
}

/** One call of a commit, and whether its failure fails the commit. */
interface CommitStep {
  call: 'rename' | 'link' | 'unlink';
  paths: [string] | [string, string];
  /** False for the best-effort removal of the temporary name: the file is in place by then. */
  required: boolean;
}

/**
 * The calls that put `temp` under `final`, in order: the one statement of the commit's rules,
 * run with promises by {@link commitFile} and with synchronous calls by {@link commitFileSync}.
 */
function commitSteps(temp: string, final: string, options: CommitOptions): CommitStep[] {
  if (options.overwrite) return [{ call: 'rename', paths: [temp, final], required: true }];
  // link() fails if the destination appeared meanwhile: never replace it silently. Once it
  // succeeded the file is in place: a best-effort removal may fail without failing the commit.
  return [
    { call: 'link', paths: [temp, final], required: true },
    { call: 'unlink', paths: [temp], required: options.removeTemp === 'required' },
  ];
}

/** A required step failed: EEXIST is the caller's `exists()`, anything else passes as it is. */
function commitFailure(error: unknown, options: CommitOptions): unknown {
  return (error as NodeJS.ErrnoException).code === 'EEXIST' ? options.exists() : error;
}

const ASYNC_CALLS = { rename, link, unlink } as const;
const SYNC_CALLS = { rename: renameSync, link: linkSync, unlink: unlinkSync } as const;

/**
 * Puts the complete file at `temp` under `final` (both in one directory; the file is already
 * closed, and flushed when the caller wants it so). EEXIST becomes `options.exists()`; any other
 * failure is thrown as it is, for the caller to map. The temporary name is not removed on
 * failure: whether to keep it (to resume) is the caller's decision.
 */
export async function commitFile(temp: string, final: string, options: CommitOptions): Promise<void> {
  for (const { call, paths, required } of commitSteps(temp, final, options)) {
    try {
      await (ASYNC_CALLS[call] as (...paths: string[]) => Promise<void>)(...paths);
    } catch (error) {
      if (required) throw commitFailure(error, options);
    }
  }
  if (options.syncDirectory !== undefined) {
    // The directory entry itself, so a crash after the commit does not lose the file (best effort).
    const dir = await open(options.syncDirectory, fsc.O_RDONLY | fsc.O_DIRECTORY).catch(() => undefined);
    await dir?.sync().catch(() => {});
    await dir?.close();
  }
}

/**
 * {@link commitFile} with synchronous calls (µs each on a local disk), for a small download
 * (`../small.ts`): the same steps and errors; no directory flush.
 */
export function commitFileSync(temp: string, final: string, options: Omit<CommitOptions, 'syncDirectory'>): void {
  for (const { call, paths, required } of commitSteps(temp, final, options)) {
    try {
      (SYNC_CALLS[call] as (...paths: string[]) => void)(...paths);
    } catch (error) {
      if (required) throw commitFailure(error, options);
    }
  }
}
