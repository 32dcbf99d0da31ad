/**
 * Uploads, library and wire level: whole files stored byte-equal, and every way an upload can
 * go wrong (over size, lying lengths and digests, cancel, cut connection, stall, disk full,
 * names outside the root) leaves nothing under the final name and no temporary file behind.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../../src/client/client.js';
import type { Server } from '../../../src/server/server.js';
import { isRetryable } from '../../../src/client/retry.js';
import type { TcpkitError } from '../../../src/errors.js';
import { FrameType } from '../../../src/protocol/constants.js';
import { encodeErrorBody } from '../../../src/protocol/control.js';
import { encodeFrame, type Frame } from '../../../src/protocol/frame.js';
import type { Service } from '../../../src/server/service.js';
import { FileRoot } from '../../../src/services/files/jail.js';
import { createDigest, type DigestAlgorithm } from '../../../src/services/files/digest.js';
import { upload, uploadStream } from '../../../src/services/files/upload/client.js';
import { fileService } from '../../../src/services/files/download/service.js';
import { uploadService, type UploadServiceOptions } from '../../../src/services/files/upload/service.js';
import { decodePut, decodePutDone, decodePutEnd, encodePut, encodePutDone, encodePutEnd, UploadFrame, type PutRequest } from '../../../src/services/files/wire.js';
import { RawPeer, scriptedServer, testServers, waitUntil, within } from '../../helpers/net.js';

const run = promisify(execFile);
const { serve } = testServers();
/** Undone after the servers are gone, last first: the temporary tree, mounts inside it. */
const undo: Array<() => Promise<unknown>> = [];
let base: string;

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'tcpkit-upload-'));
  undo.push(() => rm(base, { recursive: true, force: true }));
});
after(async () => {
  for (const step of undo.splice(0).reverse()) await step();
});

let counter = 0;
/** A fresh upload directory with a server accepting uploads into it. */
async function uploadServer(options: UploadServiceOptions = {}, dir?: string): Promise<{ dir: string; port: number; address: string; server: Server }> {
  dir ??= path.join(base, `incoming-${++counter}`);
  await mkdir(dir, { recursive: true });
  const root = await FileRoot.open(dir);
  const { port, address, server } = await serve({ services: [fileService(root), uploadService(root, options)] });
  return { dir, port, address, server };
}

function digestOf(data: Uint8Array, algorithm: DigestAlgorithm = 'xxh64'): string {
  const digest = createDigest(algorithm);
  digest.update(data);
  return digest.value();
}

/** What the directory holds, hidden entries (temporary files) included. */
async function entries(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

/** The upload's temporary file is gone (removed asynchronously after a failure). */
function noTempFiles(dir: string): Promise<void> {
  return waitUntil(() => !readdirSync(dir).some((name) => name.startsWith('.tcpkit-upload-')), 'temporary files to be removed');
}

/** Bytes in the directory's upload temporary files. */
function tempBytes(dir: string): number {
  return readdirSync(dir)
    .filter((name) => name.startsWith('.tcpkit-upload-'))
    .reduce((sum, name) => sum + statSync(path.join(dir, name)).size, 0);
}

async function errorFrame(peer: RawPeer, id: number): Promise<{ code: string; message: string }> {
  await peer.until(() => peer.frames.some((f) => f.id === id && f.type === FrameType.ERROR) || peer.closed, `ERROR for ${id}`);
  const frame = peer.frames.find((f) => f.id === id && f.type === FrameType.ERROR);
  assert.ok(frame, `an ERROR frame for request ${id}`);
  return JSON.parse(frame.payload.toString()) as { code: string; message: string };
}

/** Starts upload `id` on a raw peer: sends the PUT and waits for PUT_READY. */
async function put(peer: RawPeer, id: number, request: PutRequest): Promise<void> {
  peer.send(UploadFrame.PUT, id, encodePut(request));
  await ready(peer, id);
}

/** The upload directory holds nothing: no file under any name, and no temporary file (removed asynchronously). */
async function leftNothing(dir: string): Promise<void> {
  await noTempFiles(dir);
  assert.deepEqual(await entries(dir), []);
}

async function ready(peer: RawPeer, id: number): Promise<void> {
  await peer.until(() => peer.frames.some((f) => f.id === id) || peer.closed, `reply to PUT ${id}`);
  const frame = peer.frames.find((f) => f.id === id)!;
  assert.equal(frame.type, UploadFrame.PUT_READY, `PUT_READY, got ${frame.type}: ${frame.payload.toString()}`);
}

describe('upload: files stored byte-equal', () => {
  for (const [label, size] of [
    ['empty', 0],
    ['small', 13],
    ['exactly one chunk', 1024 * 1024],
    ['multi-MB', 7 * 1024 * 1024 + 123],
  ] as const) {
    it(`stores a ${label} file (${size} bytes) and reports its digest`, async () => {
      const { dir, address } = await uploadServer();
      const content = randomBytes(size);
      const local = path.join(base, `local-${++counter}`);
      await writeFile(local, content);
      const client = await connect(address);
      const progress: number[] = [];
      const result = await upload(client, local, 'stored.bin', { onProgress: (sent) => progress.push(sent) });
      await client.close();
      // This client and server agree on XXH3: the server's hello granted digest:xxh3.
      assert.deepEqual(result, { name: 'stored.bin', size, digest: digestOf(content, 'xxh3') });
      assert.ok((await readFile(path.join(dir, 'stored.bin'))).equals(content));
      assert.deepEqual(await entries(dir), ['stored.bin']);
      if (size > 0) assert.equal(progress.at(-1), size);
    });
  }

  it('stores into an existing subdirectory, and several uploads share one connection', async () => {
    const { dir, address } = await uploadServer();
    await mkdir(path.join(dir, 'sub'));
    const client = await connect(address);
    const a = randomBytes(3000);
    const b = randomBytes(2 * 1024 * 1024 + 1);
    const results = await Promise.all([
      uploadStream(client, 'sub/a.bin', [a], a.length),
      // Chunks larger than a frame are split by the client.
      uploadStream(client, 'b.bin', [b], b.length),
    ]);
    assert.deepEqual(
      results.map((r) => r.name),
      ['sub/a.bin', 'b.bin'],
    );
    assert.equal(await client.send('still usable').then(String), 'still usable');
    await client.close();
    assert.ok((await readFile(path.join(dir, 'sub', 'a.bin'))).equals(a));
    assert.ok((await readFile(path.join(dir, 'b.bin'))).equals(b));
  });

  it('is refused with UNSUPPORTED_REQUEST by a server without the upload service', async () => {
    const dir = path.join(base, `readonly-${++counter}`);
    await mkdir(dir);
    const { address } = await serve({ services: [fileService(await FileRoot.open(dir))] });
    const client = await connect(address);
    await assert.rejects(uploadStream(client, 'x.bin', [Buffer.from('x')], 1), (e: TcpkitError) => {
      assert.equal(e.code, 'TCPKIT_ERR_UNSUPPORTED_REQUEST');
      assert.match(e.message, /--writable|--upload-dir/);
      return true;
    });
    await client.close();
    assert.deepEqual(await entries(dir), []);
  });
});

describe('upload: graceful shutdown', () => {
  it('lets an upload in flight finish while the server stops taking new requests', async () => {
    const { dir, port, server } = await uploadServer();
    const peer = await RawPeer.open(port);
    await put(peer, 1, { name: 'finishing.bin', size: 6, overwrite: false });
    const closing = server.close();
    peer.send(UploadFrame.PUT, 2, encodePut({ name: 'late.bin', size: 1, overwrite: false }));
    assert.equal((await errorFrame(peer, 2)).code, 'SHUTTING_DOWN');
    peer.send(UploadFrame.PUT_DATA, 1, Buffer.from('abc'));
    peer.send(UploadFrame.PUT_DATA, 1, Buffer.from('def'));
    peer.send(UploadFrame.PUT_END, 1, encodePutEnd({ bytes: 6, digest: digestOf(Buffer.from('abcdef')) }));
    await peer.until(() => peer.frames.some((f) => f.type === UploadFrame.PUT_DONE && f.id === 1), 'PUT_DONE');
    await within(closing, 5000, 'the server to close once the upload is done');
    assert.equal(await readFile(path.join(dir, 'finishing.bin'), 'utf8'), 'abcdef');
    assert.deepEqual(await entries(dir), ['finishing.bin']);
  });
});

describe('upload: a cap on uploads at once', () => {
  it('answers BUSY over maxConcurrent, before any content, and takes uploads again once one ends', async () => {
    const { dir, port, address } = await uploadServer({ maxConcurrent: 1 });
    const peer = await RawPeer.open(port);
    await put(peer, 1, { name: 'first.bin', size: 3, overwrite: false });
    const client = await connect(address);
    await assert.rejects(uploadStream(client, 'second.bin', [Buffer.from('abc')], 3), (e: TcpkitError) => {
      assert.equal(e.code, 'TCPKIT_ERR_BUSY');
      assert.ok(isRetryable(e), 'BUSY is worth another try');
      return true;
    });
    peer.send(UploadFrame.PUT_DATA, 1, Buffer.from('abc'));
    peer.send(UploadFrame.PUT_END, 1, encodePutEnd({ bytes: 3, digest: digestOf(Buffer.from('abc')) }));
    await peer.until(() => peer.frames.some((f) => f.type === UploadFrame.PUT_DONE), 'PUT_DONE');
    await uploadStream(client, 'second.bin', [Buffer.from('def')], 3);
    await client.close();
    peer.socket.destroy();
    assert.deepEqual(await entries(dir), ['first.bin', 'second.bin']);
  });
});

describe('upload: overwriting only when both sides agree', () => {
  it('refuses an existing name unless the client asks and the server allows', async () => {
    const strict = await uploadServer();
    await writeFile(path.join(strict.dir, 'keep.txt'), 'original');
    const client = await connect(strict.address);
    for (const overwrite of [false, true]) {
      await assert.rejects(uploadStream(client, 'keep.txt', [Buffer.from('new')], 3, { overwrite }), (e: TcpkitError) => {
        assert.equal(e.code, 'TCPKIT_ERR_FILE_EXISTS');
        return true;
      });
    }
    await client.close();
    assert.equal(await readFile(path.join(strict.dir, 'keep.txt'), 'utf8'), 'original');

    const lenient = await uploadServer({ allowOverwrite: true });
    await writeFile(path.join(lenient.dir, 'keep.txt'), 'original');
    const second = await connect(lenient.address);
    await assert.rejects(uploadStream(second, 'keep.txt', [Buffer.from('new')], 3), /exists/);
    assert.equal(await readFile(path.join(lenient.dir, 'keep.txt'), 'utf8'), 'original');
    await uploadStream(second, 'keep.txt', [Buffer.from('new')], 3, { overwrite: true });
    assert.equal(await readFile(path.join(lenient.dir, 'keep.txt'), 'utf8'), 'new');
    // A directory is never replaced.
    await mkdir(path.join(lenient.dir, 'adir'));
    await assert.rejects(uploadStream(second, 'adir', [Buffer.from('x')], 1, { overwrite: true }), (e: TcpkitError) => e.code === 'TCPKIT_ERR_FORBIDDEN');
    await second.close();
    await noTempFiles(lenient.dir);
  });

  it('never replaces a file that appeared under the name during the upload', async () => {
    const { dir, port } = await uploadServer();
    const peer = await RawPeer.open(port);
    const content = Buffer.from('uploaded content');
    await put(peer, 1, { name: 'race.txt', size: content.length, overwrite: false });
    await writeFile(path.join(dir, 'race.txt'), 'written meanwhile');
    peer.send(UploadFrame.PUT_DATA, 1, content);
    peer.send(UploadFrame.PUT_END, 1, encodePutEnd({ bytes: content.length, digest: digestOf(content) }));
    assert.equal((await errorFrame(peer, 1)).code, 'FILE_EXISTS');
    peer.socket.destroy();
    assert.equal(await readFile(path.join(dir, 'race.txt'), 'utf8'), 'written meanwhile');
    await noTempFiles(dir);
  });

  it('replaces a symlink at the name with the file itself, never writing through it', async () => {
    const { dir, address } = await uploadServer({ allowOverwrite: true });
    const outside = path.join(base, `outside-${++counter}.txt`);
    await writeFile(outside, 'OUTSIDE');
    await symlink(outside, path.join(dir, 'link.txt'));
    const client = await connect(address);
    await uploadStream(client, 'link.txt', [Buffer.from('uploaded')], 8, { overwrite: true });
    await client.close();
    assert.equal(await readFile(outside, 'utf8'), 'OUTSIDE');
    assert.ok((await stat(path.join(dir, 'link.txt'))).isFile());
    assert.equal(await readFile(path.join(dir, 'link.txt'), 'utf8'), 'uploaded');
  });
});

describe('upload: names confined like downloads', () => {
  it('refuses names that lead outside, hidden names and links to outside directories', async () => {
    const { dir, port } = await uploadServer();
    const outsideDir = path.join(base, `outside-dir-${++counter}`);
    await mkdir(outsideDir);
    await symlink(outsideDir, path.join(dir, 'escape'));
    const peer = await RawPeer.open(port);
    const cases: Array<[string, string]> = [
      ['../evil.txt', 'INVALID_NAME'],
      ['/etc/evil.txt', 'INVALID_NAME'],
      ['a/../../evil.txt', 'INVALID_NAME'],
      ['.bashrc', 'FORBIDDEN'],
      ['.ssh/authorized_keys', 'FORBIDDEN'],
      ['escape/evil.txt', 'FORBIDDEN'],
      ['missing-dir/evil.txt', 'NOT_FOUND'],
    ];
    let id = 0;
    for (const [name, code] of cases) {
      peer.send(UploadFrame.PUT, ++id, encodePut({ name, size: 4, overwrite: true }));
      assert.equal((await errorFrame(peer, id)).code, code, name);
    }
    peer.socket.destroy();
    assert.deepEqual(await readdir(outsideDir), []);
    assert.deepEqual(await entries(dir), ['escape']);
  });

  it('refuses to open a root that every user may write to', async () => {
    const open = path.join(base, `world-${++counter}`);
    await mkdir(open);
    await chmod(open, 0o777);
    await assert.rejects(FileRoot.open(open), /writable by every user/);
    assert.ok(await FileRoot.open(open, { allowWorldWritable: true }));
  });
});

describe('upload: a hostile or broken client leaves nothing behind', () => {
  it('refuses an announced size over the cap before any byte is sent', async () => {
    const { dir, port } = await uploadServer({ maxFileBytes: 1000 });
    const peer = await RawPeer.open(port);
    peer.send(UploadFrame.PUT, 1, encodePut({ name: 'big.bin', size: 1001, overwrite: false }));
    const error = await errorFrame(peer, 1);
    assert.equal(error.code, 'TOO_LARGE');
    peer.socket.destroy();
    assert.deepEqual(await entries(dir), []);
  });

  it('counts bytes as they arrive: more than the cap is stopped at once, whatever was announced', async () => {
    const cap = 256 * 1024;
    const { dir, port } = await uploadServer({ maxFileBytes: cap });
    const peer = await RawPeer.open(port);
    await put(peer, 1, { name: 'big.bin', size: cap, overwrite: false });
    peer.send(UploadFrame.PUT_DATA, 1, randomBytes(cap));
    peer.send(UploadFrame.PUT_DATA, 1, randomBytes(1));
    assert.equal((await errorFrame(peer, 1)).code, 'TOO_LARGE');
    // Frames of the failed upload still on the wire are dropped; the connection goes on.
    peer.send(UploadFrame.PUT_DATA, 1, randomBytes(100));
    peer.send(UploadFrame.PUT_END, 1, encodePutEnd({ bytes: cap + 101, digest: 'xxh64:0' }));
    peer.send(FrameType.PING, 2, Buffer.from('alive'));
    await peer.until(() => peer.frames.some((f) => f.type === FrameType.PONG && f.id === 2), 'PONG');
    peer.socket.destroy();
    await leftNothing(dir);
  });

  it('stops a client that sends more than it announced, below the cap', async () => {
    const { dir, port } = await uploadServer();
    const peer = await RawPeer.open(port);
    await put(peer, 1, { name: 'liar.bin', size: 10, overwrite: false });
    peer.send(UploadFrame.PUT_DATA, 1, randomBytes(11));
    assert.equal((await errorFrame(peer, 1)).code, 'BAD_REQUEST');
    peer.socket.destroy();
    await leftNothing(dir);
  });

  it('refuses an upload that ends short, and one whose digest does not match', async () => {
    const { dir, port } = await uploadServer();
    const peer = await RawPeer.open(port);
    const content = randomBytes(5000);
    await put(peer, 1, { name: 'short.bin', size: 5000, overwrite: false });
    peer.send(UploadFrame.PUT_DATA, 1, content.subarray(0, 4000));
    peer.send(UploadFrame.PUT_END, 1, encodePutEnd({ bytes: 4000, digest: digestOf(content.subarray(0, 4000)) }));
    assert.equal((await errorFrame(peer, 1)).code, 'BAD_REQUEST');

    await put(peer, 2, { name: 'corrupt.bin', size: 5000, overwrite: false });
    const flipped = Buffer.from(content);
    flipped[1234]! ^= 0x01;
    peer.send(UploadFrame.PUT_DATA, 2, flipped);
    peer.send(UploadFrame.PUT_END, 2, encodePutEnd({ bytes: 5000, digest: digestOf(content) }));
    assert.equal((await errorFrame(peer, 2)).code, 'DIGEST_MISMATCH');
    peer.socket.destroy();
    await leftNothing(dir);
  });

  it('removes the partial upload when the client cancels, or its connection drops', async () => {
    const { dir, port, address } = await uploadServer();
    const client = await connect(address);
    const controller = new AbortController();
    async function* endless(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 1000; i++) {
        if (i === 3) controller.abort();
        yield randomBytes(64 * 1024);
      }
    }
    await assert.rejects(uploadStream(client, 'cancelled.bin', endless(), 1000 * 64 * 1024, { signal: controller.signal }), (e: TcpkitError) => {
      assert.equal(e.code, 'TCPKIT_ERR_ABORTED');
      return true;
    });
    await noTempFiles(dir);
    assert.equal(await client.send('next').then(String), 'next');
    await client.close();

    const peer = await RawPeer.open(port);
    await put(peer, 1, { name: 'dropped.bin', size: 1_000_000, overwrite: false });
    peer.send(UploadFrame.PUT_DATA, 1, randomBytes(300_000));
    // Dropped only once the server has written some of it.
    await waitUntil(() => tempBytes(dir) > 0, 'the server to write part of the upload');
    peer.socket.destroy();
    await leftNothing(dir);
  });

  it('a source that yields fewer or more bytes than announced stores nothing', async () => {
    const { dir, address } = await uploadServer();
    const client = await connect(address);
    await assert.rejects(uploadStream(client, 'short.bin', [randomBytes(10)], 20), (e: TcpkitError) => e.code === 'TCPKIT_ERR_LOCAL_FILE_ERROR');
    await assert.rejects(uploadStream(client, 'long.bin', [randomBytes(30)], 20), (e: TcpkitError) => e.code === 'TCPKIT_ERR_LOCAL_FILE_ERROR');
    await client.close();
    await leftNothing(dir);
  });

  it('times out an upload that stops sending, and removes it', async () => {
    const { dir, port } = await uploadServer({ stallTimeoutMs: 200 });
    const peer = await RawPeer.open(port);
    await put(peer, 1, { name: 'stalled.bin', size: 100, overwrite: false });
    peer.send(UploadFrame.PUT_DATA, 1, randomBytes(50));
    assert.equal((await errorFrame(peer, 1)).code, 'TIMEOUT');
    peer.socket.destroy();
    await leftNothing(dir);
  });

  it('fails an upload whose client half-closes before PUT_END at once', async () => {
    const { dir, port } = await uploadServer();
    const peer = await RawPeer.open(port);
    await put(peer, 1, { name: 'half.bin', size: 100, overwrite: false });
    peer.send(UploadFrame.PUT_DATA, 1, randomBytes(50));
    peer.socket.end();
    // The stall timeout is 30 s: an answer within 5 s shows the EOF was noticed.
    const error = await errorFrame(peer, 1);
    assert.equal(error.code, 'BAD_REQUEST');
    assert.match(error.message, /closed its side/);
    await leftNothing(dir);
  });
});

describe('upload: disk full', () => {
  it('answers NO_SPACE, leaves nothing behind, and the next upload that fits succeeds', async (t) => {
    const mount = path.join(base, `tmpfs-${++counter}`);
    await mkdir(mount, { mode: 0o755 });
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', mount]);
    } catch (error) {
      t.skip(`cannot mount a 1 MiB tmpfs to fill (needs root with CAP_SYS_ADMIN): ${(error as Error).message.split('\n')[0]}`);
      return;
    }
    undo.push(() => run('umount', ['-l', mount]).catch(() => {}));
    const { address } = await uploadServer({}, mount);
    const client = await connect(address);
    const big = randomBytes(2 * 1024 * 1024);
    await assert.rejects(uploadStream(client, 'big.bin', [big], big.length), (e: TcpkitError) => {
      assert.equal(e.code, 'TCPKIT_ERR_NO_SPACE');
      return true;
    });
    await noTempFiles(mount);
    assert.deepEqual(await entries(mount), []);
    const small = randomBytes(100 * 1024);
    await uploadStream(client, 'small.bin', [small], small.length);
    assert.ok((await readFile(path.join(mount, 'small.bin'))).equals(small));
    await client.close();
  });
});

describe('upload: bounded memory on the server', () => {
  it('stops reading a connection while its handler leaves continuation frames untaken', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let received = 0;
    const slow: Service = {
      name: 'slow',
      requestTypes: [0x80],
      continuationTypes: [0x81, 0x82],
      async handle(_request, exchange) {
        await gate;
        for (;;) {
          const frame: Frame = await exchange.receive();
          if (frame.type === 0x82) break;
          received += frame.payload.length;
        }
        exchange.reply(0x83, Buffer.from(String(received)));
      },
    };
    const { server, port } = await serve({ services: [slow] });
    const peer = await RawPeer.open(port);
    peer.send(0x80, 1);
    const chunk = randomBytes(1024 * 1024);
    const total = 48;
    for (let i = 0; i < total; i++) peer.send(0x81, 1, chunk);
    peer.send(0x82, 1);
    // The kernel buffers some megabytes; the rest waits in our socket because the server stopped reading.
    await waitUntil(() => server.stats().bytesIn >= 2 * 1024 * 1024, 'the server to read the first frames');
    await waitUntil(() => peer.socket.writableLength > 16 * 1024 * 1024, 'the server to stop reading', 10_000);
    // An absence, checked over a bounded window: a server that kept reading would take the
    // remaining tens of MiB within it (it only ever makes this check fail, never flake).
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(server.stats().bytesIn < 4 * 1024 * 1024, `server read ${server.stats().bytesIn} bytes while holding`);
    release();
    await peer.until(() => peer.frames.some((f) => f.type === 0x83), 'the reply', 20_000);
    assert.equal(peer.frames.find((f) => f.type === 0x83)!.payload.toString(), String(total * chunk.length));
    peer.socket.destroy();
  });
});

/** A scripted server announcing uploads; `onFrame` answers with `reply`. */
async function uploadPeer(onFrame: (frame: Frame, reply: (type: number, id: number, payload?: Uint8Array) => void) => void): Promise<string> {
  const server = await scriptedServer(['message', 'upload'], (frame, socket) =>
    onFrame(frame, (type, id, payload) => socket.write(encodeFrame(type, id, payload))),
  );
  undo.push(() => server.close());
  return server.address;
}

describe('upload: the client against a hostile or failing server', () => {
  it('refuses PUT_DONE before PUT_READY, and a PUT_DONE that reports other content', async () => {
    const early = await uploadPeer((frame, reply) => {
      if (frame.type === UploadFrame.PUT) reply(UploadFrame.PUT_DONE, frame.id, encodePutDone({ name: 'x', size: 3, digest: digestOf(Buffer.from('abc')) }));
    });
    const first = await connect(early);
    await assert.rejects(uploadStream(first, 'x', [Buffer.from('abc')], 3), (e: TcpkitError) => e.code === 'TCPKIT_ERR_PROTOCOL_ERROR');
    first.destroy();

    const liar = await uploadPeer((frame, reply) => {
      if (frame.type === UploadFrame.PUT) reply(UploadFrame.PUT_READY, frame.id, Buffer.from('{}'));
      if (frame.type === UploadFrame.PUT_END) reply(UploadFrame.PUT_DONE, frame.id, encodePutDone({ name: 'x', size: 3, digest: digestOf(Buffer.from('abd')) }));
    });
    const second = await connect(liar);
    await assert.rejects(uploadStream(second, 'x', [Buffer.from('abc')], 3), /storing something else/);
    second.destroy();
  });

  it("reports the server's error and stops sending once the server fails the upload", async () => {
    let afterError = 0;
    let failed = false;
    const address = await uploadPeer((frame, reply) => {
      if (frame.type === UploadFrame.PUT) reply(UploadFrame.PUT_READY, frame.id, Buffer.from('{}'));
      if (frame.type !== UploadFrame.PUT_DATA) return;
      if (failed) {
        afterError++;
        return;
      }
      failed = true;
      reply(FrameType.ERROR, frame.id, encodeErrorBody({ code: 'NO_SPACE', message: 'disk full' }));
    });
    const client = await connect(address);
    let pulled = 0;
    async function* content(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 64; i++) {
        pulled++;
        yield randomBytes(64 * 1024);
        // The error has been received: whatever comes next must not be sent.
        await waitUntil(() => client.inFlight === 0, 'the ERROR to arrive');
      }
    }
    await assert.rejects(uploadStream(client, 'x.bin', content(), 64 * 64 * 1024), (e: TcpkitError) => {
      assert.equal(e.code, 'TCPKIT_ERR_NO_SPACE');
      assert.match(e.message, /disk full/);
      return true;
    });
    assert.ok(pulled <= 2, `the source is not drained after the failure (${pulled} chunks pulled)`);
    assert.equal(afterError, 0);
    client.destroy();
  });

  it('times out, sending no content, when the server never says PUT_READY', async () => {
    let data = 0;
    const address = await uploadPeer((frame) => {
      if (frame.type === UploadFrame.PUT_DATA) data++;
    });
    const client = await connect(address);
    await assert.rejects(uploadStream(client, 'x.bin', [randomBytes(10)], 10, { timeoutMs: 300 }), (e: TcpkitError) => e.code === 'TCPKIT_ERR_REQUEST_TIMEOUT');
    assert.equal(data, 0);
    client.destroy();
  });
});

/** A scripted server announcing uploads that says PUT_READY and then never reads its socket again: our ACKs stop. */
async function neverReadingPeer(): Promise<string> {
  const server = await scriptedServer(['message', 'upload'], (frame, socket) => {
    if (frame.type !== UploadFrame.PUT) return;
    socket.write(encodeFrame(UploadFrame.PUT_READY, frame.id, Buffer.from('{}')));
    socket.pause();
  });
  undo.push(() => server.close());
  return server.address;
}

/** `count` chunks of 1 MiB, counted in `pulled` (one buffer, never changed: sent without copying, that is allowed). */
function* megabytes(count: number, pulled: { chunks: number }): Generator<Buffer> {
  const chunk = Buffer.alloc(1024 * 1024, 7);
  while (pulled.chunks < count) {
    pulled.chunks++;
    yield chunk;
  }
}

describe('upload: a server that stops taking our bytes (issue 10, item 1)', () => {
  // Far below the heartbeat's verdict (10 s to PING, 10 more for the pong) and below never, far
  // above the 1 s timeout on a busy machine.
  const BOUND_MS = 8_000;

  it('rejects with a timeout once it took nothing for the timeout, and the connection is destroyed', async () => {
    const client = await connect(await neverReadingPeer(), { requestTimeoutMs: 1000 });
    const pulled = { chunks: 0 };
    const source = megabytes(256, pulled);
    const upload = uploadStream(client, 'big.bin', source, 256 * 1024 * 1024);
    await within(
      assert.rejects(upload, (e: TcpkitError) => {
        assert.equal(e.code, 'TCPKIT_ERR_REQUEST_TIMEOUT');
        assert.match(e.message, /^no progress from 127\.0\.0\.1:\d+ within 1000 ms: it took none of the bytes sent and sent no reply$/);
        return true;
      }),
      BOUND_MS,
      'the stalled upload to fail',
    );
    assert.ok(pulled.chunks < 256, `the whole source was pulled (${pulled.chunks} chunks): the server never stopped taking bytes`);
    await within(client.closed(), BOUND_MS, 'the connection to close');
    assert.equal(client.state, 'closed');
  });

  it('rejects a request queued behind the stalled upload on the same connection too', async () => {
    const client = await connect(await neverReadingPeer(), { requestTimeoutMs: 1000, heartbeatMs: 0 });
    const pulled = { chunks: 0 };
    const source = megabytes(256, pulled);
    const upload = uploadStream(client, 'big.bin', source, 256 * 1024 * 1024);
    upload.catch(() => {});
    await waitUntil(() => pulled.chunks > 1, 'the upload to start sending');
    const message = client.send('behind the upload', { timeoutMs: 60_000 });
    await within(assert.rejects(message, (e: TcpkitError) => e.code === 'TCPKIT_ERR_REQUEST_TIMEOUT'), BOUND_MS, 'the queued request to fail');
    await assert.rejects(upload, /no progress from/);
  });

  for (const [what, options] of [
    ['timed out', { requestTimeoutMs: 1000, heartbeatMs: 0 }],
    ['declared dead by the heartbeat (its pong waits behind our bytes)', { requestTimeoutMs: 0, heartbeatMs: 400 }],
  ] as const) it(`a slow server that keeps taking bytes is not ${what}, though no drain comes for longer than that`, async () => {
    // It takes one socket read (at most 64 KiB) every 20 ms: a few MB/s at most. The kernel takes
    // more of our queue only once a third of its send buffer (MiBs) is free, seconds apart.
    let reader: NodeJS.Timeout | undefined;
    const server = await scriptedServer(['message', 'upload'], (frame, socket) => {
      if (frame.type === UploadFrame.PUT) {
        socket.write(encodeFrame(UploadFrame.PUT_READY, frame.id, Buffer.from('{}')));
        // After the helper's own listener has decoded a chunk: wait for the next tick.
        socket.on('data', () => socket.pause());
        socket.pause();
        reader = setInterval(() => socket.resume(), 20);
      } else if (frame.type === UploadFrame.PUT_END) {
        clearInterval(reader);
        socket.resume();
        const end = decodePutEnd(frame.payload);
        socket.write(encodeFrame(UploadFrame.PUT_DONE, frame.id, encodePutDone({ name: 'slow.bin', size: end.bytes, digest: end.digest })));
      }
    });
    undo.push(async () => {
      clearInterval(reader);
      await server.close();
    });
    const client = await connect(server.address, options);
    const size = 6 * 1024 * 1024;
    // The longest wait of a chunk for room, or of the reply after the last one: longer than the
    // timeout, or the test proves nothing.
    let last = Date.now();
    let longest = 0;
    const onProgress = (): void => {
      longest = Math.max(longest, Date.now() - last);
      last = Date.now();
    };
    const stored = await within(uploadStream(client, 'slow.bin', megabytes(6, { chunks: 0 }), size, { onProgress }), 60_000, 'the slow upload');
    onProgress();
    assert.equal(stored.size, size);
    const bound = Math.max(options.requestTimeoutMs, 2 * options.heartbeatMs);
    assert.ok(longest > bound, `the longest wait was ${longest} ms: the server was not slow enough to show anything`);
    await client.close();
  });
});

describe('upload wire payloads (pure)', () => {
  it('round-trips PUT, PUT_END and PUT_DONE', () => {
    assert.deepEqual(decodePut(encodePut({ name: 'a/b.txt', size: 7, overwrite: true })), { name: 'a/b.txt', size: 7, overwrite: true });
    assert.deepEqual(decodePut(Buffer.from('{"name":"x","size":0}')), { name: 'x', size: 0, overwrite: false });
    assert.deepEqual(decodePutEnd(encodePutEnd({ bytes: 5, digest: 'xxh64:0123456789abcdef' })), { bytes: 5, digest: 'xxh64:0123456789abcdef' });
    const done = { name: 'x', size: 1, digest: 'xxh64:0000000000000000' };
    assert.deepEqual(decodePutDone(encodePutDone(done)), done);
  });

  it('refuses malformed requests with BAD_REQUEST and malformed replies with PROTOCOL_ERROR', () => {
    for (const bad of ['', 'null', '[]', '{"name":"x"}', '{"name":"x","size":-1}', '{"name":"x","size":1.5}', '{"name":"x","size":9007199254740992}', '{"name":1,"size":1}', '{"name":"x","size":1,"overwrite":"yes"}', '{"__proto__":{"size":1},"name":"x"}']) {
      assert.throws(() => decodePut(Buffer.from(bad)), (e: TcpkitError) => e.code === 'TCPKIT_ERR_BAD_REQUEST', bad);
    }
    assert.throws(() => decodePutEnd(Buffer.from('{"bytes":1}')), (e: TcpkitError) => e.code === 'TCPKIT_ERR_BAD_REQUEST');
    assert.throws(() => decodePutDone(Buffer.from('{"name":"x","size":"1","digest":"d"}')), (e: TcpkitError) => e.code === 'TCPKIT_ERR_PROTOCOL_ERROR');
  });
});
