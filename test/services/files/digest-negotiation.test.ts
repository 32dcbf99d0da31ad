/**
 * The digest algorithm between real clients and servers (docs/PROTOCOL.md §3, §5.2, §5.3): the
 * hello capability `digest:xxh3`, this client against a server of the previous version
 * (scripted: it knows no `digests`, no capability, and answers XXH64), and resumes hashed with
 * the algorithm the server will use. Loopback, port 0.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../../src/client/client.js';
import { decodeServerHello } from '../../../src/protocol/control.js';
import { FrameType } from '../../../src/protocol/constants.js';
import { encodeFrame } from '../../../src/protocol/frame.js';
import { partialPaths } from '../../../src/services/files/commit.js';
import { createDigest, type DigestAlgorithm } from '../../../src/services/files/digest.js';
import { download } from '../../../src/services/files/download/save.js';
import { fileService } from '../../../src/services/files/download/service.js';
import { FileRoot } from '../../../src/services/files/jail.js';
import { uploadStream } from '../../../src/services/files/upload/client.js';
import { uploadService } from '../../../src/services/files/upload/service.js';
import {
  decodeGet,
  decodePut,
  decodePutEnd,
  encodeFileEnd,
  encodeFileHead,
  encodePutDone,
  FileFrame,
  UploadFrame,
  type GetRequest,
  type PutRequest,
} from '../../../src/services/files/wire.js';
import { messageService } from '../../../src/services/message.js';
import { clientOpening, RawPeer, scriptedServer, testServers } from '../../helpers/net.js';

const { cleanups, serve } = testServers();
let base: string;
let served: string;
const content = randomBytes(300_000);
const MTIME = 1_700_000_000_000;

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'tcpkit-digest-net-'));
  served = path.join(base, 'served');
  await mkdir(served);
  await writeFile(path.join(served, 'file.bin'), content);
});
after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await rm(base, { recursive: true, force: true });
});

function digestOf(data: Uint8Array, algorithm: DigestAlgorithm): string {
  const digest = createDigest(algorithm);
  digest.update(data);
  return digest.value();
}

let counter = 0;
/** A destination holding a partial file of the first `have` bytes and its resume record. */
async function partial(have: number, mtimeMs: number): Promise<string> {
  const target = path.join(base, `out-${++counter}`);
  const { part, meta } = partialPaths(target);
  await writeFile(part, content.subarray(0, have));
  await writeFile(meta, JSON.stringify({ name: 'file.bin', size: content.length, mtimeMs }));
  return target;
}

/** A server of the previous version: GETs answered in XXH64 from `content`, the requests kept. */
async function oldFileServer(): Promise<{ address: string; gets: GetRequest[] }> {
  const gets: GetRequest[] = [];
  const server = await scriptedServer(['file'], (frame, socket) => {
    if (frame.type !== FileFrame.GET) return;
    const get = decodeGet(frame.payload);
    gets.push(get);
    const send = (type: number, payload: Uint8Array): boolean => socket.write(encodeFrame(type, frame.id, payload));
    send(FileFrame.FILE_HEAD, encodeFileHead({ size: content.length, mtimeMs: MTIME, offset: get.offset, digest: 'xxh64' }));
    send(FileFrame.DATA, content.subarray(get.offset));
    send(FileFrame.FILE_END, encodeFileEnd({ digest: digestOf(content, 'xxh64'), bytes: content.length - get.offset }));
  });
  cleanups.push(() => server.close());
  return { address: server.address, gets };
}

describe('digest negotiation: the hello capability', () => {
  it('is granted to a client that asks, by a server whose file services compute XXH3', async () => {
    const { address } = await serve({ services: [fileService(await FileRoot.open(served))] });
    const client = await connect(address);
    assert.deepEqual(client.server.capabilities, ['digest:xxh3']);
    await client.close();
  });

  it('is not granted unasked (an earlier client), nor by a server without file services', async () => {
    const files = await serve({ services: [fileService(await FileRoot.open(served)), uploadService(await FileRoot.open(served))] });
    const peer = await RawPeer.connect(files.port);
    cleanups.push(async () => peer.socket.destroy());
    peer.socket.write(clientOpening());
    await peer.waitFrames(1);
    assert.equal(peer.frames[0]!.type, FrameType.HELLO);
    assert.deepEqual(decodeServerHello(peer.frames[0]!.payload).capabilities, []);
    const messages = await serve({ services: [messageService(() => 'ok')] });
    const client = await connect(messages.address);
    assert.deepEqual(client.server.capabilities, []);
    await client.close();
  });
});

describe('digest negotiation: downloads', () => {
  it('takes XXH64 from a server of the previous version, which ignores the list it is offered', async () => {
    const old = await oldFileServer();
    const client = await connect(old.address);
    const target = path.join(base, `out-${++counter}`);
    const result = await download(client, 'file.bin', target);
    await client.destroy(); // a scripted server never answers GOODBYE
    assert.equal(result.digest, digestOf(content, 'xxh64'));
    assert.deepEqual(await readFile(target), content);
    assert.deepEqual(old.gets[0]!.digests, ['xxh3', 'xxh64'], 'XXH3 first, XXH64 for servers that know only it');
  });

  it('resumes from a server of the previous version with a prefix hashed in XXH64', async () => {
    const old = await oldFileServer();
    const target = await partial(100_000, MTIME);
    const client = await connect(old.address);
    const result = await download(client, 'file.bin', target);
    await client.destroy();
    assert.equal(result.resumedFrom, 100_000);
    assert.equal(result.digest, digestOf(content, 'xxh64'));
    assert.deepEqual(old.gets[0]!.digests, ['xxh64'], 'the one algorithm the prefix was hashed with');
    assert.deepEqual(await readFile(target), content);
  });

  it('resumes from a server of this version with a prefix hashed in XXH3', async () => {
    const { address } = await serve({ services: [fileService(await FileRoot.open(served))] });
    const { mtimeMs } = await stat(path.join(served, 'file.bin'));
    const target = await partial(123_456, mtimeMs);
    const client = await connect(address);
    const result = await download(client, 'file.bin', target);
    await client.close();
    assert.equal(result.resumedFrom, 123_456);
    assert.equal(result.transferred, content.length - 123_456);
    assert.equal(result.digest, digestOf(content, 'xxh3'));
    assert.deepEqual(await readFile(target), content);
  });
});

describe('digest negotiation: uploads', () => {
  it('sends XXH64, and no digest in the PUT, to a server without the capability', async () => {
    const puts: Array<{ put: PutRequest; end: { bytes: number; digest: string } }> = [];
    let put: PutRequest | undefined;
    const server = await scriptedServer(['upload'], (frame, socket) => {
      const reply = (type: number, payload: Uint8Array): boolean => socket.write(encodeFrame(type, frame.id, payload));
      if (frame.type === UploadFrame.PUT) {
        put = decodePut(frame.payload);
        reply(UploadFrame.PUT_READY, Buffer.from('{}'));
      } else if (frame.type === UploadFrame.PUT_END) {
        const end = decodePutEnd(frame.payload);
        puts.push({ put: put!, end });
        reply(UploadFrame.PUT_DONE, encodePutDone({ name: put!.name, size: end.bytes, digest: end.digest }));
      }
    });
    cleanups.push(() => server.close());
    const client = await connect(server.address);
    const data = Buffer.from('to an older server');
    const stored = await uploadStream(client, 'x.bin', [data], data.length);
    await client.destroy();
    assert.equal(stored.digest, digestOf(data, 'xxh64'));
    assert.deepEqual(puts, [{ put: { name: 'x.bin', size: data.length, overwrite: false }, end: { bytes: data.length, digest: digestOf(data, 'xxh64') } }]);
  });

  it('sends XXH3 to a server of this version, which checks and reports it', async () => {
    const dir = path.join(base, 'uploads');
    await mkdir(dir);
    const { address } = await serve({ services: [uploadService(await FileRoot.open(dir))] });
    const client = await connect(address);
    const data = randomBytes(5000);
    const stored = await uploadStream(client, 'y.bin', [data], data.length);
    await client.close();
    assert.deepEqual(stored, { name: 'y.bin', size: data.length, digest: digestOf(data, 'xxh3') });
    assert.deepEqual(await readFile(path.join(dir, 'y.bin')), data);
  });
});
