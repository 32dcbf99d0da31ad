/**
 * The files the file suite serves and checks: a large file of random bytes (read once so it sits
 * in the page cache), many small files, and byte-for-byte comparison of what a tool saved with
 * the source (and the large file's XXH3 digest, which `tcpkit put` reports). All of it lives in
 * one temporary folder that the suite removes at the end.
 */
import { randomFill } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, statfs, writeFile, type FileHandle } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { createDigest } from '../src/services/files/digest.js';

/** Fills `buffer[offset, offset + length)` with random bytes (off the main thread). */
function fill(buffer: Buffer, offset = 0, length = buffer.length - offset): Promise<void> {
  return new Promise((resolve, reject) => {
    randomFill(buffer, offset, length, (error) => (error ? reject(error) : resolve()));
  });
}

/** Bytes written or read per call while making and checking files. */
const CHUNK_BYTES = 16 * 1024 * 1024;

/** The suite's folders. */
export interface Workspace {
  /** The temporary folder holding everything; removed at the end. */
  root: string;
  /** What the servers serve. */
  served: string;
  /** Where clients save. */
  out: string;
  /** Reports, configurations and lists. */
  scratch: string;
}

/** Makes a fresh temporary workspace under the system's temporary folder. */
export async function makeWorkspace(): Promise<Workspace> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'tcpkit-fbench-'));
  const workspace = { root, served: path.join(root, 'served'), out: path.join(root, 'out'), scratch: path.join(root, 'scratch') };
  for (const dir of [workspace.served, workspace.out, workspace.scratch]) await mkdir(dir);
  return workspace;
}

/** Bytes free for an unprivileged user on the file system holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return stats.bavail * stats.bsize;
}

/** Writes `bytes` random bytes to `file`. */
export async function writeRandomFile(file: string, bytes: number): Promise<void> {
  const handle = await open(file, 'w');
  try {
    const buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, bytes));
    for (let written = 0; written < bytes; ) {
      const length = Math.min(buffer.length, bytes - written);
      await fill(buffer, 0, length);
      let done = 0;
      while (done < length) done += (await handle.write(buffer, done, length - done)).bytesWritten;
      written += length;
    }
  } finally {
    await handle.close();
  }
}

/**
 * Reads a file through once, so that its pages are in the page cache (like `cat FILE > /dev/null`),
 * handing each chunk read to `onChunk` (valid only during the call).
 */
export async function warmPageCache(file: string, onChunk?: (chunk: Buffer) => void): Promise<void> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      onChunk?.(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
}

/** A file's digest as tcpkit client and server of this version agree on and report it (`xxh3:` and 16 hex digits). */
export async function fileDigest(file: string): Promise<string> {
  const digest = createDigest('xxh3');
  await warmPageCache(file, (chunk) => digest.update(chunk));
  return digest.value();
}

/** Writes `count` files of `bytes` random bytes under `served/dir`; returns their names relative to `served`. */
export async function writeSmallFiles(served: string, dir: string, count: number, bytes: number): Promise<string[]> {
  await mkdir(path.join(served, dir), { recursive: true });
  const names = Array.from({ length: count }, (_, i) => `${dir}/f${String(i).padStart(5, '0')}.bin`);
  const content = Buffer.allocUnsafe(count * bytes);
  await fill(content);
  // A few writes at a time: sequential awaits on 10,000 files take needlessly long.
  const parallel = 32;
  for (let i = 0; i < names.length; i += parallel) {
    await Promise.all(
      names.slice(i, i + parallel).map((name, j) => writeFile(path.join(served, name), content.subarray((i + j) * bytes, (i + j + 1) * bytes))),
    );
  }
  return names;
}

/** Why `copy` differs from `source` (size, or the first differing MiB), or undefined if they are equal. */
export async function compareFiles(source: string, copy: string): Promise<string | undefined> {
  let a: FileHandle | undefined;
  let b: FileHandle | undefined;
  try {
    a = await open(source, 'r');
    b = await open(copy, 'r');
    const [sizeA, sizeB] = [(await a.stat()).size, (await b.stat()).size];
    if (sizeA !== sizeB) return `${path.basename(copy)} has ${sizeB} bytes, expected ${sizeA}`;
    const bufferA = Buffer.allocUnsafe(CHUNK_BYTES);
    const bufferB = Buffer.allocUnsafe(CHUNK_BYTES);
    for (let position = 0; position < sizeA; ) {
      const length = Math.min(CHUNK_BYTES, sizeA - position);
      await readFully(a, bufferA, length, position);
      await readFully(b, bufferB, length, position);
      if (!bufferA.subarray(0, length).equals(bufferB.subarray(0, length))) {
        return `${path.basename(copy)} differs from the source within bytes ${position}..${position + length}`;
      }
      position += length;
    }
    return undefined;
  } catch (error) {
    return `cannot compare ${path.basename(copy)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
  } finally {
    await a?.close();
    await b?.close();
  }
}

async function readFully(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  for (let done = 0; done < length; ) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new Error('file shrank while being compared');
    done += bytesRead;
  }
}

/** Checks that every small file was saved under its base name in `outDir` with the source's bytes. */
export async function compareSmallFiles(served: string, names: readonly string[], outDir: string): Promise<string | undefined> {
  const parallel = 64;
  for (let i = 0; i < names.length; i += parallel) {
    const reasons = await Promise.all(
      names.slice(i, i + parallel).map(async (name) => {
        try {
          const [source, copy] = await Promise.all([readFile(path.join(served, name)), readFile(path.join(outDir, path.posix.basename(name)))]);
          return source.equals(copy) ? undefined : `${name} differs from the source`;
        } catch (error) {
          return `${name}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
        }
      }),
    );
    const reason = reasons.find((r) => r !== undefined);
    if (reason !== undefined) return reason;
  }
  return undefined;
}

/** Empties a folder (removes and re-creates it). */
export async function emptyDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir);
}

/** The soft limit on open files of this process (children inherit it), from /proc/self/limits. */
export function openFileLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    const value = Number(line?.[1]);
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
