import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type * as net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { connect } from '../../src/client/client.js';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { FileRoot } from '../../src/services/files/jail.js';
import { fileService } from '../../src/services/files/download/service.js';
import { encodeGet, FileFrame } from '../../src/services/files/wire.js';
import { RawPeer, testServers, waitUntil, within } from '../helpers/net.js';

const { cleanups, serve } = testServers();

const MB = 1024 * 1024;
/** What a flooder offers at most: far more than the kernel buffers of both ends hold. */
const OFFER_BYTES = 64 * MB;
/** The flooder counts as blocked once its socket takes nothing for this long. */
const BLOCKED_AFTER_MS = 1500;
/** Bound on one flood. */
const FLOOD_LIMIT_MS = 60_000;
/**
 * What the server may read from a peer that reads nothing: its own output bound plus the
 * kernel buffers the replies fill (about 4 MB each way on loopback), with room to spare.
 */
const READ_BOUND_BYTES = 24 * MB;

/**
 * Pipelines frames from `make` into `socket` (which never reads) until the socket takes nothing
 * for {@link BLOCKED_AFTER_MS}, it closes, or {@link OFFER_BYTES} were offered. Returns the bytes
 * offered and whether it ended blocked.
 */
async function flood(socket: net.Socket, make: (id: number) => Buffer): Promise<{ offered: number; blocked: boolean }> {
  const deadline = Date.now() + FLOOD_LIMIT_MS;
  let offered = 0;
  let id = 1;
  while (offered < OFFER_BYTES && !socket.destroyed && Date.now() < deadline) {
    const batch: Buffer[] = [];
    for (let n = 0; n < 2000; n++) batch.push(make(id++));
    const data = Buffer.concat(batch);
    offered += data.length;
    if (socket.write(data)) continue;
    const drained = await within(
      Promise.race([once(socket, 'drain').then(() => true), once(socket, 'close').then(() => false)]),
      BLOCKED_AFTER_MS,
      'drain',
    ).catch(() => false);
    if (!drained) return { offered, blocked: !socket.destroyed };
  }
  return { offered, blocked: false };
}

/** A canary client's requests while `during` runs: every one answered, each within a generous bound. */
async function canary(port: number, during: Promise<unknown>): Promise<number[]> {
  const client = await connect(`127.0.0.1:${port}`);
  const latencies: number[] = [];
  let running = true;
  void during.finally(() => (running = false));
  try {
    while (running) {
      const started = performance.now();
      const reply = await client.send('canary', { timeoutMs: 5000 });
      latencies.push(performance.now() - started);
      assert.equal(reply.toString(), 'canary');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } finally {
    await client.close();
  }
  return latencies;
}

describe('a pipelining peer that never reads costs bounded memory (real sockets)', () => {
  const cases: Array<[string, (id: number) => Buffer]> = [
    ['MESSAGE', (id) => encodeFrame(FrameType.MESSAGE, id, Buffer.alloc(64, 0x61))],
    ['GET of a small file', (id) => encodeFrame(FileFrame.GET, id, encodeGet({ name: 'small.txt', offset: 0 }))],
    // Each 10-byte frame is answered by a far larger ERROR (UNSUPPORTED_REQUEST): an amplifier.
    ['a request type the server does not serve', (id) => encodeFrame(0x7e, id)],
  ];
  for (const [what, make] of cases) {
    it(`stops reading a ${what} flood once its replies back up, resets it for the stall, and serves others meanwhile`, async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'tcpkit-flood-'));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      await writeFile(path.join(dir, 'small.txt'), 'a small file\n');
      const { server, port } = await serve({ services: [fileService(await FileRoot.open(dir))], sendTimeoutMs: 2000, idleTimeoutMs: 60_000 });
      const flooder = await RawPeer.open(port);
      flooder.socket.pause(); // never reads a byte
      const flooding = flood(flooder.socket, make);
      const latencies = canary(port, flooding);
      const { offered, blocked } = await flooding;
      const read = server.stats().bytesIn;
      assert.ok(blocked, `the flooder was never blocked: ${offered} bytes offered`);
      assert.ok(read < READ_BOUND_BYTES, `the server read ${read} bytes of a peer that reads nothing`);
      assert.ok(offered > read, `offered ${offered}, read ${read}`);
      // The send-stall rule then applies: no reply is taken, so the peer is reset.
      const [, why] = await within(once(server, 'timeout'), 20_000, 'send-stall');
      assert.equal(why, 'send-stall');
      const answered = await latencies;
      assert.ok(answered.length > 0, 'the canary was answered during the flood');
      // Gone on the server's side (a paused peer with nothing to send may not notice the reset).
      await waitUntil(() => server.connections === 0, 'the flooder dropped', 10_000);
      flooder.socket.destroy();
    });
  }
});

describe('backpressure is never the client\'s timeout (real sockets)', () => {
  it('does not run the request deadline of a half-received frame while the server is not reading', async () => {
    const { server, port } = await serve({ requestTimeoutMs: 300, sendTimeoutMs: 60_000, idleTimeoutMs: 60_000 });
    const timeouts: string[] = [];
    server.on('timeout', (_peer, why) => timeouts.push(why));
    const peer = await RawPeer.open(port);
    peer.socket.pause();
    const frame = (id: number): Buffer => encodeFrame(FrameType.MESSAGE, id, Buffer.alloc(1000, 0x61));
    // Pipelined until the server stops reading: its replies fill the buffers of a peer that
    // reads nothing; a frame is then (almost surely) cut in two by the chunk last read, and stays
    // so for longer than the request deadline, while the server holds it back itself.
    const { offered, blocked } = await flood(peer.socket, frame);
    assert.ok(blocked, `never blocked: ${offered} bytes offered`);
    const sent = offered / frame(1).length;
    peer.socket.resume();
    await peer.waitFrames(sent, 60_000);
    assert.deepEqual(timeouts, []);
    assert.equal(peer.frames.length, sent);
    assert.ok(peer.frames.every((f) => f.type === FrameType.MESSAGE_REPLY));
    peer.socket.destroy();
  });
});
