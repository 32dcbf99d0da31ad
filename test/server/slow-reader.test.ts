import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { FileRoot } from '../../src/services/files/jail.js';
import { rawFileHandler } from '../../src/raw/files.js';
import { fileService } from '../../src/services/files/download/service.js';
import { decodeFileEnd, encodeGet, FileFrame } from '../../src/services/files/wire.js';
import { LOOPBACK, RawPeer, testServers, waitUntil, within } from '../helpers/net.js';

const { cleanups, serve } = testServers();

/**
 * More than the kernel buffers of both ends hold on loopback (about 4 MB here), so the server's
 * writes block for most of the transfer and the send-stall rule is in force throughout.
 */
const SIZE = 12 * 1024 * 1024;
/** The reader takes this much every {@link STEP_MS}: about 1.3 MB/s, far slower than the server sends. */
const STEP_BYTES = 64 * 1024;
const STEP_MS = 50;
/**
 * Ten reading steps. The kernel wakes a blocked writer only once a third of its send buffer is
 * free (over a second at this pace), so a rule that counted only what the kernel accepted from
 * us would cut this reader.
 */
const SEND_TIMEOUT_MS = 500;
/** Bound on a whole slow transfer (about 10 s at the pace above). */
const TRANSFER_LIMIT_MS = 90_000;

let content: Buffer;
let root: FileRoot;

before(async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'tcpkit-slow-reader-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  content = randomBytes(SIZE);
  await writeFile(path.join(dir, 'big.bin'), content);
  root = await FileRoot.open(dir);
});

/** Reads `socket` (paused) `STEP_BYTES` every `STEP_MS` until it closes, bounded. */
async function readSlowly(socket: net.Socket): Promise<void> {
  socket.pause();
  let closed = false;
  socket.once('close', () => (closed = true));
  const deadline = Date.now() + TRANSFER_LIMIT_MS;
  while (!closed && Date.now() < deadline) {
    let taken = 0;
    // read() in paused mode still emits 'data' for what it returns: the peer's decoder sees it.
    for (let chunk: Buffer | null; taken < STEP_BYTES && (chunk = socket.read(Math.min(STEP_BYTES - taken, socket.readableLength || STEP_BYTES))) !== null; ) {
      taken += chunk.length;
    }
    if (socket.readableEnded) break;
    await new Promise((resolve) => setTimeout(resolve, STEP_MS));
  }
  socket.resume();
}

describe('a slow reader is not a stalled reader (real sockets)', () => {
  it('serves a framed download to the end to a reader far slower than the server, under a short send timeout', async () => {
    const { server, port } = await serve({ services: [fileService(root)], sendTimeoutMs: SEND_TIMEOUT_MS, idleTimeoutMs: 60_000 });
    const timeouts: string[] = [];
    server.on('timeout', (_peer, why) => timeouts.push(why));
    const peer = await RawPeer.open(port);
    peer.send(FileFrame.GET, 1, encodeGet({ name: 'big.bin', offset: 0 }));
    const reading = readSlowly(peer.socket);
    await peer.until(() => peer.frames.some((f) => f.type !== FileFrame.DATA && f.type !== FileFrame.FILE_HEAD) || peer.closed, 'FILE_END', TRANSFER_LIMIT_MS);
    peer.socket.destroy();
    await reading;
    assert.deepEqual(timeouts, []);
    const last = peer.frames.at(-1)!;
    assert.equal(last.type, FileFrame.FILE_END, `ended with frame type ${last.type}, after ${peer.bytes} bytes`);
    assert.equal(decodeFileEnd(last.payload).bytes, SIZE);
    const data = Buffer.concat(peer.frames.filter((f) => f.type === FileFrame.DATA).map((f) => f.payload));
    assert.ok(data.equals(content));
  });

  it('serves a raw download to the end to a reader far slower than the server, under a short send timeout', async () => {
    const { server, port } = await serve({ raw: rawFileHandler(root), sendTimeoutMs: SEND_TIMEOUT_MS, idleTimeoutMs: 60_000 });
    const timeouts: string[] = [];
    server.on('timeout', (_peer, why) => timeouts.push(why));
    const socket = net.connect({ host: LOOPBACK, port, allowHalfOpen: true });
    await within(once(socket, 'connect'), 5000, 'connect');
    let error: Error | undefined;
    socket.on('error', (e) => (error = e));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => socket.end());
    socket.end('big.bin');
    await readSlowly(socket);
    if (!socket.closed) await within(once(socket, 'close'), 10_000, 'close');
    assert.equal(error, undefined);
    assert.deepEqual(timeouts, []);
    const got = Buffer.concat(chunks);
    assert.equal(got.length, SIZE);
    assert.ok(got.equals(content));
  });

  it('still resets a downloader that takes nothing, within a bounded time', async () => {
    const { server, port } = await serve({ services: [fileService(root)], sendTimeoutMs: SEND_TIMEOUT_MS, idleTimeoutMs: 60_000 });
    const timedOut = once(server, 'timeout');
    const peer = await RawPeer.open(port);
    peer.socket.pause(); // never reads
    const started = Date.now();
    peer.send(FileFrame.GET, 1, encodeGet({ name: 'big.bin', offset: 0 }));
    const [, why] = await within(timedOut, 10_000, 'send-stall');
    assert.equal(why, 'send-stall');
    await waitUntil(() => server.connections === 0, 'connection dropped');
    // Blocked at once, cut one send timeout later; generous for a busy machine.
    assert.ok(Date.now() - started < 10 * SEND_TIMEOUT_MS, `reset after ${Date.now() - started} ms`);
    peer.socket.destroy();
  });
});
