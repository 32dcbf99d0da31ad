/**
 * Counts what a FileRoot's GETs read, and how: `fs.read`/`fs.readv` (the thread pool) and `fs.readSync`
 * (the event loop), on the descriptors `openFileSync` handed out. The two functions are patched
 * for one test (`syncBuiltinESMExports` carries the patch to the service's named imports) and
 * put back after it.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import type { TestContext } from 'node:test';
import type { FileRoot } from '../../src/services/files/jail.js';

/** Bytes read in all, and the calls of each kind (a test may reset them). */
export interface ReadCounts {
  bytes: number;
  /** `fs.read` and `fs.readv` calls: on the thread pool. */
  async: number;
  /** `fs.readSync` calls: on the event loop. */
  sync: number;
}

/** Counts the reads of files opened through `root` while test `t` runs. */
export function countReads(root: FileRoot, t: TestContext): ReadCounts {
  const counts: ReadCounts = { bytes: 0, async: 0, sync: 0 };
  const opened = new Set<number>();
  const openFileSync = root.openFileSync.bind(root);
  root.openFileSync = (...args) => {
    const file = openFileSync(...args);
    opened.add(file.fd);
    return file;
  };
  const { read: realRead, readv: realReadv, readSync: realReadSync } = fs;
  const count = (fd: number, bytes: number, kind: 'async' | 'sync'): void => {
    if (!opened.has(fd)) return;
    counts.bytes += bytes;
    counts[kind]++;
  };
  fs.read = ((fd: number, buffer: Buffer, offset: number, length: number, position: number, callback: (error: Error | null, bytes: number, buffer: Buffer) => void) =>
    realRead(fd, buffer, offset, length, position, (error, bytes, into) => {
      count(fd, bytes, 'async');
      callback(error, bytes, into);
    })) as typeof fs.read;
  fs.readv = ((fd: number, buffers: NodeJS.ArrayBufferView[], position: number, callback: (error: Error | null, bytes: number, buffers: NodeJS.ArrayBufferView[]) => void) =>
    realReadv(fd, buffers, position, (error, bytes, into) => {
      count(fd, bytes, 'async');
      callback(error, bytes, into);
    })) as typeof fs.readv;
  fs.readSync = ((fd: number, buffer: Buffer, offset: number, length: number, position: number) => {
    const bytes = realReadSync(fd, buffer, offset, length, position);
    count(fd, bytes, 'sync');
    return bytes;
  }) as typeof fs.readSync;
  syncBuiltinESMExports();
  t.after(() => {
    fs.read = realRead;
    fs.readv = realReadv;
    fs.readSync = realReadSync;
    syncBuiltinESMExports();
  });
  return counts;
}
