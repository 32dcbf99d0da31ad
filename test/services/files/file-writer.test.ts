/**
 * The upload writer (upload/writer.ts): pieces kept as they are and gathered into positional
 * writev() calls, a bounded number in flight, flow control by bytes held, fdatasync as it goes,
 * and a failure that drops and hands back everything. fs.writev and fs.fdatasync are watched
 * (node:test mocks, synced into the ESM bindings) and still do the real work on a real file.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it, mock } from 'node:test';
import { FileWriter } from '../../../src/services/files/writer.js';
import { waitUntil } from '../../helpers/net.js';

let base: string;
before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'tcpkit-upload-writer-'));
});
after(() => rm(base, { recursive: true, force: true }));
afterEach(() => {
  mock.restoreAll();
  syncBuiltinESMExports();
});

interface Call {
  fd: number;
  buffers: readonly NodeJS.ArrayBufferView[];
  position: number;
  bytes: number;
}

const realWritev = fs.writev;
/** Records every writev(); `instead` may answer a call itself (fail it, take fewer bytes). */
function watchWrites(instead?: (call: Call, index: number, real: () => void, callback: (error: NodeJS.ErrnoException | null, written: number) => void) => boolean): Call[] {
  const calls: Call[] = [];
  mock.method(fs, 'writev', (fd: number, buffers: NodeJS.ArrayBufferView[], position: number, callback: (error: NodeJS.ErrnoException | null, written: number) => void) => {
    const call = { fd, buffers: [...buffers], position, bytes: buffers.reduce((sum, b) => sum + b.byteLength, 0) };
    calls.push(call);
    const real = (): void => void realWritev(fd, buffers, position, callback);
    if (instead?.(call, calls.length - 1, real, callback) !== true) real();
  });
  syncBuiltinESMExports();
  return calls;
}

let counter = 0;
async function freshFile(): Promise<{ file: string; handle: fs.promises.FileHandle }> {
  const file = path.join(base, `f-${++counter}`);
  return { file, handle: await open(file, 'w') };
}

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(code), { code });
}

describe('FileWriter', () => {
  it('joins pieces into writev() batches of batchBytes, at their positions, with the pieces themselves (no copy)', async () => {
    const calls = watchWrites();
    const { file, handle } = await freshFile();
    const writer = new FileWriter(handle.fd, { batchBytes: 1024 * 1024 });
    const pieces = Array.from({ length: 40 }, () => randomBytes(64 * 1024));
    for (const piece of pieces) writer.add(piece);
    await writer.finish();
    await handle.close();
    assert.deepEqual(await readFile(file), Buffer.concat(pieces));
    assert.deepEqual(
      calls.map((call) => [call.position, call.buffers.length, call.bytes]),
      [
        [0, 16, 1024 * 1024],
        [1024 * 1024, 16, 1024 * 1024],
        [2 * 1024 * 1024, 8, 512 * 1024],
      ],
    );
    assert.ok(calls.every((call, i) => call.buffers.every((buffer, j) => buffer === pieces[i * 16 + j])), 'the very pieces, not copies');
  });

  it('cuts a batch at maxIovecs, and writes a partial batch at the end of the turn, not before', async () => {
    const calls = watchWrites();
    const { file, handle } = await freshFile();
    const writer = new FileWriter(handle.fd, { maxIovecs: 64 });
    const small = Array.from({ length: 70 }, () => randomBytes(100));
    for (const piece of small) writer.add(piece);
    assert.deepEqual(calls.map((call) => call.buffers.length), [64], 'a full batch leaves at once; the rest waits');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(calls.map((call) => [call.position, call.buffers.length]), [[0, 64], [6400, 6]]);
    await writer.finish();
    await handle.close();
    assert.deepEqual(await readFile(file), Buffer.concat(small));
  });

  it('keeps at most maxWrites in flight, and says false at the high-water mark until onRoom', async () => {
    const held: Array<() => void> = [];
    const calls = watchWrites((_call, _index, real) => {
      held.push(real);
      return true;
    });
    const { file, handle } = await freshFile();
    let rooms = 0;
    const writer = new FileWriter(handle.fd, { maxWrites: 2, batchBytes: 1024, highWaterBytes: 4096, onRoom: () => rooms++ });
    const pieces = Array.from({ length: 4 }, () => randomBytes(1024));
    assert.deepEqual(pieces.map((piece) => writer.add(piece)), [true, true, true, false]);
    assert.equal(calls.length, 2, 'two writes in flight, two batches wait');
    assert.equal(writer.held, 4096);
    // Each write let through; the next batch takes its slot once it is done.
    for (let left = 4; left > 0; left--) {
      await waitUntil(() => held.length > 0, 'a write in flight');
      held.shift()!();
    }
    await writer.finish();
    assert.equal(rooms, 1, 'told once, when the held bytes fell to half the mark');
    assert.equal(writer.held, 0);
    await handle.close();
    assert.deepEqual(await readFile(file), Buffer.concat(pieces));
  });

  it('writes the rest of a batch the file system took only part of, where it belongs', async () => {
    const calls = watchWrites((call, index, _real, callback) => {
      if (index !== 0) return false;
      // The first write takes 1000 bytes only.
      const first = call.buffers[0] as Buffer;
      realWritev(call.fd, [first.subarray(0, 1000)], call.position, (error) => callback(error, 1000));
      return true;
    });
    const { file, handle } = await freshFile();
    const writer = new FileWriter(handle.fd);
    const pieces = [randomBytes(3000), randomBytes(5000)];
    for (const piece of pieces) writer.add(piece);
    await writer.finish();
    await handle.close();
    assert.deepEqual(await readFile(file), Buffer.concat(pieces));
    assert.deepEqual(calls.map((call) => [call.position, call.bytes]), [[0, 8000], [1000, 7000]]);
  });

  it('on a write error: reports it once, drops and hands back everything not written, takes nothing more, and settles', async () => {
    const calls = watchWrites((_call, index, _real, callback) => {
      if (index !== 1) return false;
      setImmediate(() => callback(errno('ENOSPC'), 0));
      return true;
    });
    const { handle } = await freshFile();
    const errors: unknown[] = [];
    const released: Buffer[] = [];
    const writer = new FileWriter(handle.fd, { batchBytes: 1024, maxWrites: 1, onError: (error) => errors.push(error) });
    const holdOf = (piece: Buffer) => ({ release: () => void released.push(piece) });
    const pieces = Array.from({ length: 5 }, () => randomBytes(1024));
    for (const piece of pieces) writer.add(piece, holdOf(piece));
    await writer.settled();
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as NodeJS.ErrnoException).code, 'ENOSPC');
    assert.equal(calls.length, 2, 'no write after the failure');
    assert.equal(writer.held, 0);
    assert.deepEqual(new Set(released), new Set(pieces), 'every hold released: written, failed or dropped');
    assert.equal(released.length, pieces.length, 'each once');
    const late = randomBytes(10);
    assert.equal(writer.add(late, holdOf(late)), true);
    assert.ok(released.includes(late), 'a piece after the failure is released at once');
    await assert.rejects(writer.finish(), (e: NodeJS.ErrnoException) => e.code === 'ENOSPC');
    await handle.close();
  });

  it('stop() drops what waits, lets the write in flight finish, and settles', async () => {
    const held: Array<() => void> = [];
    watchWrites((_call, _index, real) => {
      held.push(real);
      return true;
    });
    const { handle } = await freshFile();
    const writer = new FileWriter(handle.fd, { batchBytes: 1024, maxWrites: 1 });
    for (let i = 0; i < 3; i++) writer.add(randomBytes(1024));
    writer.stop();
    let settled = false;
    const done = writer.settled().then(() => (settled = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false, 'a write still runs on the file');
    held.shift()!();
    await done;
    assert.equal(held.length, 0, 'nothing else was written');
    assert.equal(writer.held, 0);
    await handle.close();
  });

  it('fdatasyncs every syncEveryBytes, beside the writes', async () => {
    watchWrites();
    let syncs = 0;
    const realSync = fs.fdatasync;
    mock.method(fs, 'fdatasync', (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
      syncs++;
      realSync(fd, callback);
    });
    syncBuiltinESMExports();
    const { handle } = await freshFile();
    const writer = new FileWriter(handle.fd, { batchBytes: 64 * 1024, syncEveryBytes: 256 * 1024, maxWrites: 1 });
    for (let i = 0; i < 16; i++) writer.add(randomBytes(64 * 1024));
    await writer.finish();
    await handle.close();
    assert.ok(syncs >= 2 && syncs <= 4, `${syncs} fdatasync calls for 1 MiB at one per 256 KiB`);
  });
});
