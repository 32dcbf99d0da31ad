/**
 * The download service's logic with no network: fileService called through a hand-made
 * Exchange (test/helpers/exchange.ts), on real files in a temporary directory. What reaches a
 * client (frames, their order, their payloads, the error codes) is checked frame by frame.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TcpkitError } from '../../../src/errors.js';
import type { Service } from '../../../src/server/service.js';
import type { PeerInfo } from '../../../src/transport/peer.js';
import { createDigest } from '../../../src/services/files/digest.js';
import { fileService } from '../../../src/services/files/download/service.js';
import { FileRoot } from '../../../src/services/files/jail.js';
import {
  DATA_CHUNK_BYTES,
  decodeFileEnd,
  decodeFileHead,
  decodeListing,
  decodeStatReply,
  encodeGet,
  encodeNameRequest,
  FileFrame,
  type GetRequest,
} from '../../../src/services/files/wire.js';
import { request, TestExchange, type SentFrame } from '../../helpers/exchange.js';
import { waitUntil } from '../../helpers/net.js';

let base: string;
let served: string;
let root: FileRoot;
const big = randomBytes(2 * DATA_CHUNK_BYTES + 3);
const refusals: Array<{ peer: PeerInfo; request: string; error: TcpkitError }> = [];
let service: Service;

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'tcpkit-download-service-'));
  served = path.join(base, 'served');
  await mkdir(path.join(served, 'sub'), { recursive: true });
  await writeFile(path.join(served, 'hello.txt'), 'hello, world\n');
  await writeFile(path.join(served, 'big.bin'), big);
  await writeFile(path.join(served, 'sub', 'b.txt'), 'b');
  await writeFile(path.join(served, 'sub', 'a.txt'), 'aa');
  await writeFile(path.join(served, '.hidden'), 'hidden');
  await writeFile(path.join(base, 'secret.txt'), 'OUTSIDE');
  await symlink(path.join(base, 'secret.txt'), path.join(served, 'escape.txt'));
  root = await FileRoot.open(served);
  service = fileService(root, { onRefused: (peer, req, error) => refusals.push({ peer, request: req, error }) });
});
after(() => rm(base, { recursive: true, force: true }));

function digestOf(data: Uint8Array): string {
  const digest = createDigest();
  digest.update(data);
  return digest.value();
}

/** GET through the hand-made exchange. */
function get(body: GetRequest, options?: Parameters<typeof request>[3], over: Service = service): ReturnType<typeof request> {
  return request(over, FileFrame.GET, encodeGet(body), options);
}

/** The frame types in order, and the DATA bytes joined. */
function transfer(frames: SentFrame[]): { types: number[]; data: Buffer } {
  return {
    types: frames.map((frame) => frame.type),
    data: Buffer.concat(frames.filter((frame) => frame.type === FileFrame.DATA).map((frame) => frame.payload)),
  };
}

describe('fileService through a hand-made Exchange: GET', () => {
  it('sends FILE_HEAD, the file in DATA frames, then FILE_END with the digest of the whole file', async () => {
    const { frames, error } = await get({ name: 'hello.txt', offset: 0 }, undefined, fileService(root, { chunkBytes: 5 }));
    assert.equal(error, undefined);
    const { types, data } = transfer(frames);
    assert.deepEqual(types, [FileFrame.FILE_HEAD, FileFrame.DATA, FileFrame.DATA, FileFrame.DATA, FileFrame.FILE_END]);
    assert.deepEqual(data, Buffer.from('hello, world\n'));
    assert.deepEqual(frames.map((frame) => frame.final), [false, false, false, false, true], 'only FILE_END completes the reply');
    const head = decodeFileHead(frames[0]!.payload);
    const { mtimeMs } = await stat(path.join(served, 'hello.txt'));
    assert.deepEqual(head, { size: 13, mtimeMs, offset: 0, digest: 'xxh64' });
    assert.deepEqual(decodeFileEnd(frames.at(-1)!.payload), { digest: digestOf(data), bytes: 13 });
  });

  it('sends a large file in whole 1 MiB chunks, the last one short', async () => {
    const { frames, error } = await get({ name: 'big.bin', offset: 0 });
    assert.equal(error, undefined);
    const sizes = frames.filter((frame) => frame.type === FileFrame.DATA).map((frame) => frame.payload.length);
    assert.deepEqual(sizes, [DATA_CHUNK_BYTES, DATA_CHUNK_BYTES, 3]);
    assert.ok(transfer(frames).data.equals(big));
    assert.equal(decodeFileEnd(frames.at(-1)!.payload).digest, digestOf(big));
  });

  it('resumes from an offset against the same version, with the digest of the whole file; starts over against another', async () => {
    const { size, mtimeMs } = await stat(path.join(served, 'big.bin'));
    const offset = DATA_CHUNK_BYTES + 10;
    const resumed = await get({ name: 'big.bin', offset, ifSize: size, ifMtimeMs: mtimeMs });
    assert.equal(decodeFileHead(resumed.frames[0]!.payload).offset, offset);
    assert.ok(transfer(resumed.frames).data.equals(big.subarray(offset)));
    assert.deepEqual(decodeFileEnd(resumed.frames.at(-1)!.payload), { digest: digestOf(big), bytes: size - offset });

    const changed = await get({ name: 'big.bin', offset, ifSize: size, ifMtimeMs: mtimeMs - 1000 });
    assert.equal(decodeFileHead(changed.frames[0]!.payload).offset, 0, 'another version: from the start');
    assert.ok(transfer(changed.frames).data.equals(big));
  });

  it('refuses, with their codes and no frame sent: outside the root, a link leading out, hidden, missing, a directory, an offset past the end', async () => {
    const cases: Array<[GetRequest, string]> = [
      [{ name: '../secret.txt', offset: 0 }, 'INVALID_NAME'],
      [{ name: '/etc/passwd', offset: 0 }, 'INVALID_NAME'],
      [{ name: 'escape.txt', offset: 0 }, 'FORBIDDEN'],
      [{ name: '.hidden', offset: 0 }, 'FORBIDDEN'],
      [{ name: 'missing.txt', offset: 0 }, 'NOT_FOUND'],
      [{ name: 'sub', offset: 0 }, 'FORBIDDEN'],
      [{ name: 'hello.txt', offset: 14 }, 'BAD_REQUEST'],
    ];
    for (const [body, code] of cases) {
      const { frames, error } = await get(body);
      assert.equal(error?.wireCode, code, `${body.name}: ${error?.message}`);
      assert.equal(frames.length, 0, `${body.name}: nothing sent before the refusal`);
      assert.ok(!error!.message.includes(base), `${body.name}: the message reveals a server path: ${error.message}`);
    }
  });

  it('reports a FORBIDDEN refusal to onRefused, with the peer and the request', async () => {
    refusals.length = 0;
    const exchange = new TestExchange();
    await get({ name: 'escape.txt', offset: 0 }, { exchange });
    await get({ name: 'missing.txt', offset: 0 });
    assert.equal(refusals.length, 1, 'NOT_FOUND is not a refusal');
    assert.equal(refusals[0]!.peer, exchange.peer);
    assert.equal(refusals[0]!.request, 'GET');
    assert.match(refusals[0]!.error.message, /^escape\.txt: leads outside the served root/);
  });

  it('stops with CANCELLED when the client cancels while its reply waits for room', async () => {
    const exchange = new TestExchange();
    exchange.block(); // the client reads nothing: the first write waits for room
    const { frames, error } = await get(
      { name: 'big.bin', offset: 0 },
      {
        exchange,
        during: async () => {
          await waitUntil(() => exchange.sent.length > 0, 'FILE_HEAD to be sent');
          exchange.cancel();
          exchange.unblock();
        },
      },
    );
    assert.equal(error?.wireCode, 'CANCELLED');
    assert.deepEqual(
      frames.map((frame) => frame.type),
      [FileFrame.FILE_HEAD],
      'no DATA after the cancel',
    );
  });

  it('refuses a chunkBytes over 1 MiB, or not an integer, when the service is made', () => {
    for (const chunkBytes of [0, 1.5, DATA_CHUNK_BYTES + 1]) {
      assert.throws(() => fileService(root, { chunkBytes }), { code: 'TCPKIT_ERR_INVALID_OPTION' });
    }
  });
});

describe('fileService through a hand-made Exchange: STAT and LIST', () => {
  it('STAT describes a file and a directory in one STAT_REPLY', async () => {
    const file = await request(service, FileFrame.STAT, encodeNameRequest('sub/a.txt'));
    assert.deepEqual(file.frames.map((frame) => [frame.type, frame.final]), [[FileFrame.STAT_REPLY, true]]);
    const entry = decodeStatReply(file.frames[0]!.payload);
    assert.deepEqual({ ...entry, mtimeMs: 0 }, { name: 'sub/a.txt', type: 'file', size: 2, mtimeMs: 0 });
    const dir = await request(service, FileFrame.STAT, encodeNameRequest('sub'));
    assert.equal(decodeStatReply(dir.frames[0]!.payload).type, 'directory');
  });

  it('STAT refuses like GET, and reports the refusal as STAT', async () => {
    refusals.length = 0;
    assert.equal((await request(service, FileFrame.STAT, encodeNameRequest('../x'))).error?.wireCode, 'INVALID_NAME');
    assert.equal((await request(service, FileFrame.STAT, encodeNameRequest('escape.txt'))).error?.wireCode, 'FORBIDDEN');
    assert.deepEqual(
      refusals.map((refusal) => refusal.request),
      ['STAT'],
    );
  });

  it('LIST answers the sorted entries of a directory, hidden names and links leading out left out', async () => {
    const top = await request(service, FileFrame.LIST, encodeNameRequest(''));
    assert.equal(top.frames.length, 1);
    assert.equal(top.frames[0]!.type, FileFrame.LIST_REPLY);
    const listing = decodeListing(top.frames[0]!.payload);
    assert.deepEqual(
      listing.entries.map((entry) => [entry.name, entry.type]),
      [
        ['big.bin', 'file'],
        ['hello.txt', 'file'],
        ['sub', 'directory'],
      ],
    );
    assert.equal(listing.truncated, false);
    const sub = decodeListing((await request(service, FileFrame.LIST, encodeNameRequest('sub'))).frames[0]!.payload);
    assert.deepEqual(
      sub.entries.map((entry) => [entry.name, entry.size]),
      [
        ['a.txt', 2],
        ['b.txt', 1],
      ],
    );
  });

  it('LIST refuses a file and a missing directory', async () => {
    assert.equal((await request(service, FileFrame.LIST, encodeNameRequest('hello.txt'))).error?.wireCode, 'FORBIDDEN');
    assert.equal((await request(service, FileFrame.LIST, encodeNameRequest('nowhere'))).error?.wireCode, 'NOT_FOUND');
  });
});
