/**
 * The native digests (issue 12, item 3) and the download service's digest cache (item 4), with
 * no network: known vectors, the algorithm a GET or a PUT gets (docs/PROTOCOL.md §5.2, §5.3),
 * and what the cache saves and still catches, through hand-made Exchanges on real files.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { createDigest, type DigestAlgorithm } from '../../../src/services/files/digest.js';
import { DigestCache, type FileVersion } from '../../../src/services/files/download/digest-cache.js';
import { chooseDigest, fileService } from '../../../src/services/files/download/service.js';
import { FileRoot } from '../../../src/services/files/jail.js';
import { uploadService } from '../../../src/services/files/upload/service.js';
import { decodeFileEnd, decodeFileHead, decodeGet, decodePutDone, encodeGet, encodePut, encodePutEnd, FileFrame, UploadFrame, type GetRequest, type PutRequest } from '../../../src/services/files/wire.js';
import { systemClock, type Clock } from '../../../src/util/clock.js';
import { countReads } from '../../helpers/count-reads.js';
import { request, TestExchange, type Served } from '../../helpers/exchange.js';
import { gate } from '../../helpers/net.js';

let base: string;
let served: string;
const content = randomBytes(64 * 1024 + 7);
let counter = 0;

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'tcpkit-digest-'));
  served = path.join(base, 'served');
  await mkdir(served);
});
after(() => rm(base, { recursive: true, force: true }));

function digestOf(data: Uint8Array, algorithm: DigestAlgorithm = 'xxh64'): string {
  const digest = createDigest(algorithm);
  digest.update(data);
  return digest.value();
}

/** A clock a minute ahead: every file written by the test counts as settled for the cache. */
const later: Clock = { ...systemClock, now: () => Date.now() + 60_000 };

/** A root over `served` whose opened files count the bytes read from them. */
async function countingRoot(t: TestContext): Promise<{ root: FileRoot; read: { bytes: number } }> {
  const root = await FileRoot.open(served);
  return { root, read: countReads(root, t) };
}

/** Times of the files written here: whole seconds, which utimes() puts back exactly. */
const FILE_TIME = 1_700_000_000;

/** A new file under `served` with `data`; its name. */
async function newFile(data: Uint8Array): Promise<string> {
  const name = `f${++counter}.bin`;
  await writeFile(path.join(served, name), data);
  await utimes(path.join(served, name), FILE_TIME, FILE_TIME);
  return name;
}

/** Rewrites a file in place, same size, its mtime put back: only its ctime says it changed. */
async function rewriteInPlace(name: string, data: Uint8Array): Promise<void> {
  const file = path.join(served, name);
  const before = await stat(file);
  // A rewrite within the kernel's clock tick keeps the ctime: write again until it moved (bounded).
  for (let attempt = 0; attempt < 1000; attempt++) {
    const handle = await open(file, 'r+');
    await handle.write(data, 0, data.length, 0);
    await handle.close();
    await utimes(file, FILE_TIME, FILE_TIME);
    const now = await stat(file);
    if (now.ctimeMs !== before.ctimeMs) {
      assert.equal(now.mtimeMs, before.mtimeMs);
      assert.equal(now.size, before.size);
      return;
    }
  }
  assert.fail('the ctime never moved');
}

function get(service: ReturnType<typeof fileService>, body: GetRequest, exchange?: TestExchange): Promise<Served> {
  return request(service, FileFrame.GET, encodeGet(body), { exchange });
}

/** The algorithm of FILE_HEAD, the FILE_END digest and the DATA bytes of a finished GET. */
function outcome(served: Served): { algorithm: string; digest: string; data: Buffer } {
  assert.equal(served.error, undefined, served.error?.message);
  const head = decodeFileHead(served.frames[0]!.payload);
  const end = decodeFileEnd(served.frames.at(-1)!.payload);
  const data = Buffer.concat(served.frames.filter((f) => f.type === FileFrame.DATA).map((f) => f.payload));
  return { algorithm: head.digest, digest: end.digest, data };
}

describe('digests: known values', () => {
  // XXH64 values cross-checked once against xxhash-wasm (the previous implementation), XXH3-64
  // against the reference vectors of xxHash; both seed 0.
  const vectors: Array<[DigestAlgorithm, string, string]> = [
    ['xxh64', '', 'xxh64:ef46db3751d8e999'],
    ['xxh64', 'abc', 'xxh64:44bc2cf5ad770999'],
    ['xxh3', '', 'xxh3:2d06800538d394c2'],
    ['xxh3', 'abc', 'xxh3:78af5f94892f3950'],
  ];
  for (const [algorithm, input, expected] of vectors) {
    it(`${algorithm}(${JSON.stringify(input)}) is ${expected}`, () => {
      assert.equal(digestOf(Buffer.from(input), algorithm), expected);
    });
  }

  it('is XXH64 by default, and the same whole or split at any offset', () => {
    assert.equal(createDigest().algorithm, 'xxh64');
    const data = randomBytes(3000);
    for (const algorithm of ['xxh64', 'xxh3'] as const) {
      const whole = digestOf(data, algorithm);
      for (const at of [0, 1, 15, 16, 240, 1024, 2999]) {
        const digest = createDigest(algorithm);
        digest.update(data.subarray(0, at));
        digest.update(data.subarray(at));
        assert.equal(digest.value(), whole, `${algorithm} split at ${at}`);
      }
    }
  });
});

describe('digests: what a GET gets', () => {
  it('takes the first algorithm of the list it knows, XXH64 without one or without a match', () => {
    assert.equal(chooseDigest(undefined), 'xxh64');
    assert.equal(chooseDigest([]), 'xxh64');
    assert.equal(chooseDigest(['xxh3', 'xxh64']), 'xxh3');
    assert.equal(chooseDigest(['xxh64', 'xxh3']), 'xxh64');
    assert.equal(chooseDigest(['nope']), 'xxh64');
    assert.equal(chooseDigest(['nope', 'xxh3']), 'xxh3');
  });

  it('answers XXH64 to a GET without digests (every earlier client), XXH3 to one that asks for it', async () => {
    const name = await newFile(content);
    const service = fileService(await FileRoot.open(served), { digestCacheEntries: 0 });
    assert.deepEqual(outcome(await get(service, { name, offset: 0 })), { algorithm: 'xxh64', digest: digestOf(content), data: content });
    assert.deepEqual(outcome(await get(service, { name, offset: 0, digests: ['xxh3', 'xxh64'] })), { algorithm: 'xxh3', digest: digestOf(content, 'xxh3'), data: content });
    assert.equal(outcome(await get(service, { name, offset: 0, digests: ['nope'] })).algorithm, 'xxh64');
  });

  it('refuses digests that are not a short list of short strings (BAD_REQUEST), and ignores unknown fields', async () => {
    const service = fileService(await FileRoot.open(served));
    for (const digests of ['xxh3', [1], Array(9).fill('xxh3'), ['x'.repeat(33)], null]) {
      const payload = Buffer.from(JSON.stringify({ name: 'x', offset: 0, digests }));
      const { error } = await request(service, FileFrame.GET, payload);
      assert.equal(error?.wireCode, 'BAD_REQUEST', JSON.stringify(digests));
    }
    // What lets a client send `digests` to an older server: it never refused a field it did not know.
    assert.deepEqual(decodeGet(Buffer.from('{"name":"a","offset":3,"later":{"x":1}}')), { name: 'a', offset: 3 });
  });
});

describe('digests: what a PUT gets', () => {
  async function putWith(body: PutRequest, end: { bytes: number; digest: string }, data: Buffer): Promise<Served> {
    const dir = path.join(base, `up-${++counter}`);
    await mkdir(dir);
    const exchange = new TestExchange();
    exchange.push(UploadFrame.PUT_DATA, data);
    exchange.push(UploadFrame.PUT_END, encodePutEnd(end));
    return request(uploadService(await FileRoot.open(dir)), UploadFrame.PUT, encodePut(body), { exchange });
  }
  const data = Buffer.from('uploaded bytes');

  it('checks XXH64 for a PUT without digest (every earlier client) and XXH3 for one that names it', async () => {
    const old = await putWith({ name: 'a', size: data.length, overwrite: false }, { bytes: data.length, digest: digestOf(data) }, data);
    assert.equal(old.error, undefined);
    assert.equal(decodePutDone(old.frames.at(-1)!.payload).digest, digestOf(data));
    const fast = await putWith({ name: 'a', size: data.length, overwrite: false, digest: 'xxh3' }, { bytes: data.length, digest: digestOf(data, 'xxh3') }, data);
    assert.equal(fast.error, undefined);
    assert.equal(decodePutDone(fast.frames.at(-1)!.payload).digest, digestOf(data, 'xxh3'));
  });

  it('refuses an algorithm it does not compute, a PUT_END in another algorithm than announced, and a wrong XXH3', async () => {
    const unknown = await putWith({ name: 'a', size: data.length, overwrite: false, digest: 'sha1' }, { bytes: data.length, digest: digestOf(data) }, data);
    assert.equal(unknown.error?.wireCode, 'BAD_REQUEST');
    const other = await putWith({ name: 'a', size: data.length, overwrite: false, digest: 'xxh3' }, { bytes: data.length, digest: digestOf(data) }, data);
    assert.equal(other.error?.wireCode, 'BAD_REQUEST');
    const wrong = await putWith({ name: 'a', size: data.length, overwrite: false, digest: 'xxh3' }, { bytes: data.length, digest: 'xxh3:0123456789abcdef' }, data);
    assert.equal(wrong.error?.wireCode, 'DIGEST_MISMATCH');
  });
});

describe('digest cache', () => {
  const version = (ino: number): FileVersion => ({ dev: 1, ino, size: 10, mtimeMs: 5, ctimeMs: 6 });

  it('keeps at most its bound, least recently used out first, per algorithm', () => {
    const cache = new DigestCache(2);
    cache.set('xxh3', version(1), 'one');
    cache.set('xxh3', version(2), 'two');
    assert.equal(cache.get('xxh3', version(1)), 'one'); // now the most recently used
    cache.set('xxh3', version(3), 'three');
    assert.equal(cache.get('xxh3', version(2)), undefined);
    assert.equal(cache.get('xxh3', version(1)), 'one');
    assert.equal(cache.get('xxh64', version(1)), undefined, 'another algorithm, another entry');
    assert.equal(cache.get('xxh3', { ...version(1), ctimeMs: 7 }), undefined, 'another ctime, another version');
    assert.equal(cache.size, 2);
  });

  it('serves a resumed GET of a known file without reading the prefix', async (t) => {
    const { root, read } = await countingRoot(t);
    const service = fileService(root, { clock: later });
    const name = await newFile(content);
    assert.equal(outcome(await get(service, { name, offset: 0 })).digest, digestOf(content));
    assert.equal(read.bytes, content.length);
    read.bytes = 0;
    const offset = 50_000;
    const resumed = outcome(await get(service, { name, offset }));
    assert.deepEqual(resumed, { algorithm: 'xxh64', digest: digestOf(content), data: content.subarray(offset) });
    assert.equal(read.bytes, content.length - offset, 'only the bytes sent were read');
    // Per algorithm: XXH3 is not known yet, so its resume reads (and hashes) the prefix.
    read.bytes = 0;
    assert.equal(outcome(await get(service, { name, offset, digests: ['xxh3'] })).digest, digestOf(content, 'xxh3'));
    assert.equal(read.bytes, content.length);
  });

  it('does not keep the digest of a file changed just before its transfer (within the clock tick, a later write could keep its ctime)', async (t) => {
    const { root, read } = await countingRoot(t);
    const service = fileService(root, { clock: systemClock });
    const name = await newFile(content);
    await get(service, { name, offset: 0 });
    read.bytes = 0;
    outcome(await get(service, { name, offset: 1000 }));
    assert.equal(read.bytes, content.length, 'the prefix was read and hashed again');
  });

  it('sees a file rewritten in place between two GETs, same size and mtime, through its ctime', async () => {
    const service = fileService(await FileRoot.open(served), { clock: later });
    const name = await newFile(content);
    assert.equal(outcome(await get(service, { name, offset: 0 })).digest, digestOf(content));
    const next = randomBytes(content.length);
    await rewriteInPlace(name, next);
    assert.deepEqual(outcome(await get(service, { name, offset: 0 })), { algorithm: 'xxh64', digest: digestOf(next), data: next });
  });

  /** A GET whose FILE_HEAD (the file open and its version taken) waits until the test has run `meanwhile`. */
  function getChangedDuring(service: ReturnType<typeof fileService>, name: string, meanwhile: () => Promise<void>): Promise<Served> {
    const started = gate();
    const exchange = new (class extends TestExchange {
      override write(type: number, payload: Uint8Array, onSent?: () => void): Promise<void> {
        const written = super.write(type, payload, onSent);
        started.open();
        return written;
      }
    })();
    exchange.block();
    return request(service, FileFrame.GET, encodeGet({ name, offset: 0 }), {
      exchange,
      during: async () => {
        await started.promise;
        await meanwhile();
        exchange.unblock();
      },
    });
  }

  it('on a cache miss too, a file written to during the transfer is answered FILE_CHANGED, never as a file', async () => {
    const service = fileService(await FileRoot.open(served), { clock: later, chunkBytes: 4096 });
    const name = await newFile(content);
    const next = randomBytes(content.length);
    const changed = await getChangedDuring(service, name, () => rewriteInPlace(name, next));
    assert.equal(changed.error?.wireCode, 'FILE_CHANGED');
    assert.equal(changed.exchange.final, undefined, 'no FILE_END');
    // Not kept: the next GET of the (unchanged since) new version is hashed, and matches it.
    assert.equal(outcome(await get(service, { name, offset: 0 })).digest, digestOf(next));
  });

  it('answers FILE_CHANGED when a file with a known digest changes during the transfer, and forgets the digest', async () => {
    const service = fileService(await FileRoot.open(served), { clock: later, chunkBytes: 4096 });
    const name = await newFile(content);
    await get(service, { name, offset: 0 });
    const next = randomBytes(content.length);
    const changed = await getChangedDuring(service, name, () => rewriteInPlace(name, next));
    assert.equal(changed.error?.wireCode, 'FILE_CHANGED');
    assert.equal(Buffer.concat(changed.frames.filter((f) => f.type === FileFrame.DATA).map((f) => f.payload)).length, content.length, 'sent in full, then refused');
    assert.equal(changed.exchange.final, undefined, 'no FILE_END');
    // Hashed afresh next time: the digest of the new content.
    assert.deepEqual(outcome(await get(service, { name, offset: 0 })).digest, digestOf(next));
    assert.deepEqual(await readFile(path.join(served, name)), next);
  });
});
