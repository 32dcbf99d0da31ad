/**
 * Fixtures shared by the fault-injection group (test/faults/): owner-only scratch directories,
 * a file big enough to be cut in the middle, and what a `tcpkit serve` process still holds
 * (descriptors, connections it logged but never saw end).
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { RunningCli } from './cli.js';

/** A file of this size is cut after ~5 MB by the nft rules: well inside it, far from its end. */
export const BIG_BYTES = 24_000_000;

/** The client's partial file for a download saved as `destination` (src/services/files/commit.ts). */
export function partialOf(destination: string): string {
  return path.join(path.dirname(destination), `.${path.basename(destination)}.tcpkit-part`);
}

/** The prefix of the server's temporary upload files (src/services/files/commit.ts). */
export const UPLOAD_TEMP_PREFIX = '.tcpkit-upload-';

/** Size of `file`, or -1 when it does not exist. */
export function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return -1;
  }
}

/** The server's temporary upload files in `dir`. */
export function uploadTemps(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.startsWith(UPLOAD_TEMP_PREFIX));
}

/** Descriptors a process holds open (Linux /proc): a fault must not leave one behind. */
export function openDescriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Connections `tcpkit serve` logged as opened and as ended so far (its stderr log lines). */
export function connectionLog(server: RunningCli): { opened: number; ended: number } {
  const log = server.stderr();
  return { opened: (log.match(/ connected$/gm) ?? []).length, ended: (log.match(/ disconnected \(/gm) ?? []).length };
}

/**
 * A scratch area for one group: `served` (the server's DIR, holding `big.bin` of
 * {@link BIG_BYTES} random bytes and `small.txt`), `incoming` (an upload directory with a
 * `sub` directory) and `local` (the client's working directory, holding `up.bin`, as big).
 * Every directory is owner-only, as `serve` requires. `remove()` deletes it all.
 */
export async function faultScratch(label: string): Promise<{
  served: string;
  incoming: string;
  local: string;
  big: Buffer;
  small: Buffer;
  remove(): Promise<void>;
}> {
  const top = await realpath(await mkdtemp(path.join(tmpdir(), `tcpkit-faults-${label}-`)));
  const served = path.join(top, 'served');
  const incoming = path.join(top, 'incoming');
  const local = path.join(top, 'local');
  for (const dir of [served, incoming, path.join(incoming, 'sub'), local]) await mkdir(dir, { mode: 0o700 });
  const big = randomBytes(BIG_BYTES);
  const small = Buffer.from('a canary file: the server still serves others\n');
  await writeFile(path.join(served, 'big.bin'), big);
  await writeFile(path.join(served, 'small.txt'), small);
  await writeFile(path.join(local, 'up.bin'), big);
  return { served, incoming, local, big, small, remove: () => rm(top, { recursive: true, force: true }) };
}
