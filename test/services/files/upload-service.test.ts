/**
 * The upload service's logic with no network: uploadService called through a hand-made
 * Exchange (test/helpers/exchange.ts), the client's frames pushed by the test, into a real
 * temporary directory. Every way it can end leaves either the whole file under its name or
 * nothing at all, and no temporary file.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PeerInfo } from '../../../src/transport/peer.js';
import { createDigest } from '../../../src/services/files/digest.js';
import { FileRoot } from '../../../src/services/files/jail.js';
import { uploadService, type UploadServiceOptions } from '../../../src/services/files/upload/service.js';
import { decodePutDone, encodePut, encodePutEnd, UploadFrame, type PutDone, type PutRequest } from '../../../src/services/files/wire.js';
import { request, TestExchange, type Served } from '../../helpers/exchange.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { waitUntil } from '../../helpers/net.js';

let base: string;
before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'tcpkit-upload-service-'));
});
after(() => rm(base, { recursive: true, force: true }));

let counter = 0;
/** A fresh directory and its root. */
async function freshRoot(): Promise<{ dir: string; root: FileRoot }> {
  const dir = path.join(base, `in-${++counter}`);
  await mkdir(dir);
  return { dir, root: await FileRoot.open(dir) };
}

function digestOf(...parts: Uint8Array[]): string {
  const digest = createDigest();
  for (const part of parts) digest.update(part);
  return digest.value();
}

/** An exchange with the client's whole upload already sent: PUT_DATA per part, then PUT_END. */
function sending(parts: Buffer[], end = { bytes: parts.reduce((sum, part) => sum + part.length, 0), digest: digestOf(...parts) }): TestExchange {
  const exchange = new TestExchange();
  for (const part of parts) exchange.push(UploadFrame.PUT_DATA, part);
  exchange.push(UploadFrame.PUT_END, encodePutEnd(end));
  return exchange;
}

function put(options: UploadServiceOptions, root: FileRoot, body: PutRequest, exchange: TestExchange): Promise<Served> {
  return request(uploadService(root, options), UploadFrame.PUT, encodePut(body), { exchange });
}

describe('uploadService through a hand-made Exchange', () => {
  it('says PUT_READY, stores the content under its name, answers PUT_DONE, and hands back every payload', async () => {
    const { dir, root } = await freshRoot();
    const parts = [randomBytes(1000), randomBytes(1), randomBytes(5000)];
    const stored: Array<{ done: PutDone; peer: PeerInfo }> = [];
    const exchange = sending(parts);
    const { frames, error } = await put({ onStored: (done, peer) => stored.push({ done, peer }) }, root, { name: 'a.bin', size: 6001, overwrite: false }, exchange);
    assert.equal(error, undefined);
    assert.deepEqual(
      frames.map((frame) => [frame.type, frame.final]),
      [
        [UploadFrame.PUT_READY, false],
        [UploadFrame.PUT_DONE, true],
      ],
    );
    const done = decodePutDone(frames[1]!.payload);
    assert.deepEqual(done, { name: 'a.bin', size: 6001, digest: digestOf(...parts) });
    assert.deepEqual(await readFile(path.join(dir, 'a.bin')), Buffer.concat(parts));
    assert.deepEqual(await readdir(dir), ['a.bin'], 'no temporary file left');
    assert.equal(exchange.recycled.length, 3, 'every PUT_DATA payload handed back once written');
    assert.deepEqual(stored, [{ done, peer: exchange.peer }]);
  });

  it('stores an empty file', async () => {
    const { dir, root } = await freshRoot();
    const { error } = await put({}, root, { name: 'empty', size: 0, overwrite: false }, sending([]));
    assert.equal(error, undefined);
    assert.equal((await readFile(path.join(dir, 'empty'))).length, 0);
  });

  it('refuses an upload announced over maxFileBytes with TOO_LARGE before PUT_READY, creating nothing', async () => {
    const { dir, root } = await freshRoot();
    const { frames, error } = await put({ maxFileBytes: 10 }, root, { name: 'big.bin', size: 11, overwrite: false }, sending([randomBytes(11)]));
    assert.equal(error?.wireCode, 'TOO_LARGE');
    assert.match(error!.message, /at most 10 bytes/);
    assert.equal(frames.length, 0);
    assert.deepEqual(await readdir(dir), []);
  });

  it('counts the bytes as they arrive: more than the cap is TOO_LARGE, more than announced is BAD_REQUEST, nothing kept', async () => {
    const { dir, root } = await freshRoot();
    // Announced within the cap, then more is sent than the cap allows.
    const over = await put({ maxFileBytes: 10 }, root, { name: 'x', size: 10, overwrite: false }, sending([randomBytes(6), randomBytes(6)]));
    assert.equal(over.error?.wireCode, 'TOO_LARGE');
    const long = await put({}, root, { name: 'y', size: 4, overwrite: false }, sending([randomBytes(5)]));
    assert.equal(long.error?.wireCode, 'BAD_REQUEST');
    const short = await put({}, root, { name: 'z', size: 4, overwrite: false }, sending([randomBytes(3)]));
    assert.equal(short.error?.wireCode, 'BAD_REQUEST');
    assert.match(short.error!.message, /after 3 of 4 bytes/);
    assert.deepEqual(await readdir(dir), [], 'no file, no temporary file');
  });

  it('refuses content that does not match the digest the client sends, keeping nothing', async () => {
    const { dir, root } = await freshRoot();
    const content = randomBytes(100);
    const { error } = await put({}, root, { name: 'bad.bin', size: 100, overwrite: false }, sending([content], { bytes: 100, digest: digestOf(randomBytes(100)) }));
    assert.equal(error?.wireCode, 'DIGEST_MISMATCH');
    assert.deepEqual(await readdir(dir), []);
  });

  it('never replaces a file unless the client asks and the server allows it', async () => {
    const { dir, root } = await freshRoot();
    await writeFile(path.join(dir, 'kept.txt'), 'old');
    const notAsked = await put({ allowOverwrite: true }, root, { name: 'kept.txt', size: 3, overwrite: false }, sending([Buffer.from('new')]));
    assert.equal(notAsked.error?.wireCode, 'FILE_EXISTS');
    assert.match(notAsked.error!.message, /overwriting was not asked for/);
    const notAllowed = await put({}, root, { name: 'kept.txt', size: 3, overwrite: true }, sending([Buffer.from('new')]));
    assert.equal(notAllowed.error?.wireCode, 'FILE_EXISTS');
    assert.match(notAllowed.error!.message, /does not allow overwriting/);
    assert.equal(await readFile(path.join(dir, 'kept.txt'), 'utf8'), 'old');
    const replaced = await put({ allowOverwrite: true }, root, { name: 'kept.txt', size: 3, overwrite: true }, sending([Buffer.from('new')]));
    assert.equal(replaced.error, undefined);
    assert.equal(await readFile(path.join(dir, 'kept.txt'), 'utf8'), 'new');
    assert.deepEqual(await readdir(dir), ['kept.txt']);
  });

  it('refuses a file that appeared under the name during the upload (link, never replace)', async () => {
    const { dir, root } = await freshRoot();
    const exchange = new TestExchange();
    const served = request(uploadService(root), UploadFrame.PUT, encodePut({ name: 'race.txt', size: 3, overwrite: false }), {
      exchange,
      during: async () => {
        await waitUntil(() => exchange.sent.length > 0, 'PUT_READY');
        await writeFile(path.join(dir, 'race.txt'), 'theirs');
        exchange.push(UploadFrame.PUT_DATA, Buffer.from('new'));
        exchange.push(UploadFrame.PUT_END, encodePutEnd({ bytes: 3, digest: digestOf(Buffer.from('new')) }));
      },
    });
    const { error } = await served;
    assert.equal(error?.wireCode, 'FILE_EXISTS');
    assert.match(error!.message, /appeared on the server during the upload/);
    assert.equal(await readFile(path.join(dir, 'race.txt'), 'utf8'), 'theirs');
    assert.deepEqual(await readdir(dir), ['race.txt'], 'the temporary file is removed');
  });

  it('refuses names outside the root and missing directories with their codes', async () => {
    const { root } = await freshRoot();
    await writeFile(path.join(base, 'escape.bin'), 'outside, untouched');
    const cases: Array<[string, string]> = [
      ['../escape.bin', 'INVALID_NAME'],
      ['/abs.bin', 'INVALID_NAME'],
      ['.hidden', 'FORBIDDEN'],
      ['no/such/dir.bin', 'NOT_FOUND'],
    ];
    for (const [name, code] of cases) {
      const { error, frames } = await put({}, root, { name, size: 1, overwrite: false }, sending([Buffer.from('x')]));
      assert.equal(error?.wireCode, code, `${name}: ${error?.message}`);
      assert.equal(frames.length, 0);
    }
    assert.equal(await readFile(path.join(base, 'escape.bin'), 'utf8'), 'outside, untouched');
  });

  it('ends with CANCELLED on the client cancel and removes what it received', async () => {
    const { dir, root } = await freshRoot();
    const exchange = new TestExchange();
    exchange.push(UploadFrame.PUT_DATA, randomBytes(10));
    const { error } = await request(uploadService(root), UploadFrame.PUT, encodePut({ name: 'c.bin', size: 100, overwrite: false }), {
      exchange,
      during: async () => {
        await waitUntil(() => exchange.recycled.length === 1, 'the first bytes to be written');
        exchange.cancel();
      },
    });
    assert.equal(error?.wireCode, 'CANCELLED');
    assert.deepEqual(await readdir(dir), []);
  });

  it('ends with BAD_REQUEST when the client closes its side midway', async () => {
    const { dir, root } = await freshRoot();
    const exchange = new TestExchange();
    exchange.push(UploadFrame.PUT_DATA, randomBytes(10));
    exchange.endInput();
    const { error } = await put({}, root, { name: 'half.bin', size: 100, overwrite: false }, exchange);
    assert.equal(error?.wireCode, 'BAD_REQUEST');
    assert.match(error!.message, /closed its side/);
    assert.deepEqual(await readdir(dir), []);
  });

  it('ends with TIMEOUT when no frame comes for stallTimeoutMs (on the injected clock), and not before', async () => {
    const { dir, root } = await freshRoot();
    const clock = new FakeClock();
    const exchange = new TestExchange();
    let settled = false;
    const served = request(uploadService(root, { stallTimeoutMs: 1000, clock }), UploadFrame.PUT, encodePut({ name: 's.bin', size: 5, overwrite: false }), {
      exchange,
    }).finally(() => {
      settled = true;
    });
    await waitUntil(() => clock.pending === 1, 'the handler to wait for content');
    clock.advance(999);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false, 'still within the stall deadline');
    exchange.push(UploadFrame.PUT_DATA, Buffer.from('ab'));
    // The frame restarted the deadline: the next wait has its own full period.
    await waitUntil(() => exchange.recycled.length === 1 && clock.pending === 1, 'the next wait');
    clock.advance(999);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false);
    clock.advance(1);
    const { error } = await served;
    assert.equal(error?.wireCode, 'TIMEOUT');
    assert.match(error!.message, /made no progress for 1000 ms/);
    assert.deepEqual(await readdir(dir), []);
  });

  it('takes PUT_DATA in pieces as they are (kept, not handed back), holding the client back while the disk catches up', async () => {
    const { dir, root } = await freshRoot();
    const content = randomBytes(12 * 1024 * 1024);
    const exchange = new TestExchange();
    const served = request(uploadService(root), UploadFrame.PUT, encodePut({ name: 'pieces.bin', size: content.length, overwrite: false }), {
      exchange,
      during: async () => {
        await waitUntil(() => exchange.sent.length > 0, 'PUT_READY');
        // A client faster than any disk: 1 MiB frames, each in 64 KiB pieces, all at once.
        const piece = 64 * 1024;
        for (let at = 0; at < content.length; at += piece) {
          exchange.push(UploadFrame.PUT_DATA, content.subarray(at, at + piece), { asIs: true, last: (at + piece) % (1024 * 1024) === 0 });
        }
        exchange.push(UploadFrame.PUT_END, encodePutEnd({ bytes: content.length, digest: digestOf(content) }));
      },
    });
    const { error } = await served;
    assert.equal(error, undefined);
    assert.ok(exchange.pauses > 0, 'the sink said false: the server would have stopped reading');
    assert.equal(exchange.inputPaused, false, 'and it resumed');
    assert.equal(exchange.recycled.length, 0, 'pieces are views of reads, never handed to the payload pool');
    assert.ok((await readFile(path.join(dir, 'pieces.bin'))).equals(content));
    assert.deepEqual(await readdir(dir), ['pieces.bin']);
  });

  it('keeps one stall timer per upload, however many frames come', async () => {
    const { root } = await freshRoot();
    const clock = new FakeClock();
    const exchange = new TestExchange();
    const served = request(uploadService(root, { stallTimeoutMs: 1000, clock }), UploadFrame.PUT, encodePut({ name: 't.bin', size: 100, overwrite: false }), { exchange });
    let armed = 0;
    const setTimeout = clock.setTimeout.bind(clock);
    clock.setTimeout = (callback, ms, arg) => (armed++, setTimeout(callback, ms, arg));
    await waitUntil(() => clock.pending === 1, 'the stall deadline');
    for (let i = 0; i < 100; i++) {
      exchange.push(UploadFrame.PUT_DATA, Buffer.of(i));
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(armed, 1, 'armed once, not once per frame');
    exchange.push(UploadFrame.PUT_END, encodePutEnd({ bytes: 100, digest: digestOf(Buffer.from(Array.from({ length: 100 }, (_, i) => i))) }));
    assert.equal((await served).error, undefined);
    assert.equal(clock.pending, 0, 'and none left behind');
  });

  it('answers BUSY past maxConcurrent uploads at once, and takes the next one once a slot is free', async () => {
    const { root } = await freshRoot();
    const service = uploadService(root, { maxConcurrent: 1 });
    const first = new TestExchange();
    const running = request(service, UploadFrame.PUT, encodePut({ name: 'one', size: 1, overwrite: false }), { exchange: first });
    await waitUntil(() => first.sent.length > 0, 'the first upload to start');
    const busy = await request(service, UploadFrame.PUT, encodePut({ name: 'two', size: 1, overwrite: false }), { exchange: sending([Buffer.from('2')]) });
    assert.equal(busy.error?.wireCode, 'BUSY');
    first.push(UploadFrame.PUT_DATA, Buffer.from('1'));
    first.push(UploadFrame.PUT_END, encodePutEnd({ bytes: 1, digest: digestOf(Buffer.from('1')) }));
    assert.equal((await running).error, undefined);
    const next = await request(service, UploadFrame.PUT, encodePut({ name: 'two', size: 1, overwrite: false }), { exchange: sending([Buffer.from('2')]) });
    assert.equal(next.error, undefined);
  });
});
