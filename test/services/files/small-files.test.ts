/**
 * Small files take a synchronous path (issue 12, item 5; src/services/files/small.ts). Client:
 * a file of at most SMALL_FILE_BYTES is written only once verified, with O_EXCL | O_NOFOLLOW,
 * and put in place atomically, never replacing a name taken meanwhile; `blocking: false` keeps
 * the thread-pool path, with the partial file open from the first byte. Server: such a file is
 * read with readSync and answered in one turn; a larger one is read on the thread pool.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, type Client } from '../../../src/client/client.js';
import { partialPaths } from '../../../src/services/files/commit.js';
import { download } from '../../../src/services/files/download/save.js';
import { fileService } from '../../../src/services/files/download/service.js';
import { FileRoot } from '../../../src/services/files/jail.js';
import { SMALL_FILE_BYTES } from '../../../src/services/files/small.js';
import { decodeFileEnd, decodeFileHead, encodeGet, FileFrame } from '../../../src/services/files/wire.js';
import { countReads } from '../../helpers/count-reads.js';
import { request } from '../../helpers/exchange.js';
import { startServer } from '../../helpers/net.js';

let base: string;
let served: string;
let work: string;
let address: string;
let client: Client;
const cleanups: Array<() => Promise<unknown>> = [];
const files = new Map<string, Buffer>([
  ['small.bin', randomBytes(4096)],
  ['edge.bin', randomBytes(SMALL_FILE_BYTES)],
  ['over.bin', randomBytes(SMALL_FILE_BYTES + 1)],
  ['empty.bin', Buffer.alloc(0)],
]);

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'tcpkit-small-'));
  served = path.join(base, 'served');
  work = path.join(base, 'work');
  await mkdir(served);
  await mkdir(work);
  for (const [name, data] of files) await writeFile(path.join(served, name), data);
  await writeFile(path.join(base, 'outside.txt'), 'OUTSIDE');
  const started = await startServer({ services: [fileService(await FileRoot.open(served))] });
  address = started.address;
  client = await connect(address);
  cleanups.push(() => started.server.destroy(), () => rm(base, { recursive: true, force: true }));
});
after(async () => {
  await client.close();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let counter = 0;
function dest(label: string): string {
  return path.join(work, `${++counter}-${label}`);
}

/** Downloads `name`, noting at every progress call whether the partial file exists. */
async function watched(name: string, target: string, options: { blocking?: boolean } = {}): Promise<boolean[]> {
  const { part } = partialPaths(target);
  const seen: boolean[] = [];
  await download(client, name, target, { ...options, onProgress: () => seen.push(existsSync(part)) });
  return seen;
}

async function assertSavedAlone(name: string, target: string): Promise<void> {
  assert.deepEqual(await readFile(target), files.get(name));
  const { part, meta } = partialPaths(target);
  assert.ok(!existsSync(part) && !existsSync(meta), 'no partial file or resume record left');
}

describe('small files, client side', () => {
  it(`writes a file of at most ${SMALL_FILE_BYTES} bytes only once verified: no partial file while its bytes arrive`, async () => {
    for (const name of ['small.bin', 'edge.bin', 'empty.bin']) {
      const target = dest(name);
      const seen = await watched(name, target);
      assert.ok(seen.length >= 1);
      assert.deepEqual(seen, seen.map(() => false), `${name}: the partial file is made after the last byte`);
      await assertSavedAlone(name, target);
    }
  });

  it('writes a larger file as it arrives (the partial file is open from FILE_HEAD)', async () => {
    const target = dest('over.bin');
    const seen = await watched('over.bin', target);
    assert.equal(seen[0], true);
    await assertSavedAlone('over.bin', target);
  });

  it('blocking: false keeps every size on the thread pool: the partial file exists from the first progress call', async () => {
    for (const name of ['small.bin', 'over.bin']) {
      const target = dest(`async-${name}`);
      const seen = await watched(name, target, { blocking: false });
      assert.deepEqual(seen, seen.map(() => true), name);
      await assertSavedAlone(name, target);
    }
  });

  it('never replaces a destination that appears during the transfer: FILE_EXISTS, theirs intact, nothing of ours left', async () => {
    const target = dest('appears');
    const appear = (): void => {
      if (!existsSync(target)) writeFileSync(target, 'theirs');
    };
    await assert.rejects(download(client, 'small.bin', target, { onProgress: appear }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'TCPKIT_ERR_FILE_EXISTS');
      assert.match(error.message, /exists \(use --force to replace it\)/);
      return true;
    });
    assert.equal(await readFile(target, 'utf8'), 'theirs');
    assert.ok(!existsSync(partialPaths(target).part), 'the partial file is removed');
    // With force, the same race ends with our file in place (rename).
    await download(client, 'small.bin', target, { force: true, onProgress: appear });
    await assertSavedAlone('small.bin', target);
  });

  it('never writes through a symbolic link planted at the partial name during the transfer: LOCAL_FILE_ERROR naming it', async () => {
    const target = dest('planted');
    const { part } = partialPaths(target);
    const outside = path.join(base, 'outside.txt');
    const plant = (): void => {
      if (lstatSync(part, { throwIfNoEntry: false }) !== undefined) return;
      symlinkSync(outside, part);
    };
    await assert.rejects(download(client, 'small.bin', target, { onProgress: plant }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'TCPKIT_ERR_LOCAL_FILE_ERROR');
      assert.ok(error.message.includes(part), error.message);
      return true;
    });
    assert.equal(await readFile(outside, 'utf8'), 'OUTSIDE', 'the link was not written through');
    assert.ok(!existsSync(target), 'nothing under the final name');
    assert.equal(readlinkSync(part), outside, 'the planted link is not ours to remove');
    rmSync(part);
  });

  it('refuses an existing destination without force before asking for anything', async () => {
    const target = dest('taken');
    await writeFile(target, 'precious');
    await assert.rejects(download(client, 'small.bin', target), { code: 'TCPKIT_ERR_FILE_EXISTS' });
    assert.equal(await readFile(target, 'utf8'), 'precious');
    await download(client, 'small.bin', target, { force: true });
    await assertSavedAlone('small.bin', target);
  });
});

describe('small files, server side', () => {
  it(`answers a file of at most ${SMALL_FILE_BYTES} bytes read with readSync: FILE_HEAD, DATA, FILE_END`, async (t) => {
    const root = await FileRoot.open(served);
    const reads = countReads(root, t);
    const service = fileService(root);
    for (const name of ['small.bin', 'edge.bin']) {
      const { frames, error } = await request(service, FileFrame.GET, encodeGet({ name, offset: 0 }));
      assert.equal(error, undefined);
      assert.deepEqual(frames.map((frame) => frame.type), [FileFrame.FILE_HEAD, FileFrame.DATA, FileFrame.FILE_END], name);
      assert.deepEqual(frames[1]!.payload, files.get(name));
      assert.equal(decodeFileHead(frames[0]!.payload).size, files.get(name)!.length);
      assert.equal(decodeFileEnd(frames[2]!.payload).bytes, files.get(name)!.length);
    }
    assert.equal(reads.async, 0, 'no read on the thread pool');
    assert.ok(reads.sync >= 2);
    // Resumed: the DATA is the rest, the digest still that of the whole file.
    const { size, mtimeMs } = await stat(path.join(served, 'edge.bin'));
    const whole = await request(service, FileFrame.GET, encodeGet({ name: 'edge.bin', offset: 0 }));
    const resumed = await request(service, FileFrame.GET, encodeGet({ name: 'edge.bin', offset: 1000, ifSize: size, ifMtimeMs: mtimeMs }));
    assert.deepEqual(resumed.frames[1]!.payload, files.get('edge.bin')!.subarray(1000));
    assert.equal(decodeFileEnd(resumed.frames[2]!.payload).digest, decodeFileEnd(whole.frames[2]!.payload).digest);
    // Empty: no DATA at all.
    const empty = await request(service, FileFrame.GET, encodeGet({ name: 'empty.bin', offset: 0 }));
    assert.deepEqual(empty.frames.map((frame) => frame.type), [FileFrame.FILE_HEAD, FileFrame.FILE_END]);
  });

  it('reads a larger file on the thread pool', async (t) => {
    const root = await FileRoot.open(served);
    const reads = countReads(root, t);
    const { frames, error } = await request(fileService(root), FileFrame.GET, encodeGet({ name: 'over.bin', offset: 0 }));
    assert.equal(error, undefined);
    assert.deepEqual(frames[1]!.payload, files.get('over.bin'));
    assert.equal(reads.sync, 0);
    assert.ok(reads.async >= 1);
  });
});
