import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { FrameType } from '../../src/protocol/constants.js';
import { decodeErrorBody } from '../../src/protocol/control.js';
import { encodeFrame, encodeHeader } from '../../src/protocol/frame.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FileRoot } from '../../src/services/files/jail.js';
import { uploadService } from '../../src/services/files/upload/service.js';
import { encodePut, UploadFrame } from '../../src/services/files/wire.js';
import { RawPeer, testServers, trickle, within } from '../helpers/net.js';

const { serve } = testServers();

describe('the request deadline starts at the first byte of a frame (real sockets)', () => {
  // The idle deadline is far away: a cut within a few seconds can only be the request deadline.
  const header = encodeHeader(FrameType.MESSAGE, 1, 100);
  const cases: Array<[string, Buffer]> = [
    ['one byte of a header', header.subarray(0, 1)],
    ['a bare header announcing a payload', header],
    ['a header and one payload byte', Buffer.concat([header, Buffer.of(0x61)])],
  ];
  for (const [what, bytes] of cases) {
    it(`cuts ${what}, then silence, at the request deadline, telling the client why`, async () => {
      const { server, port } = await serve({ requestTimeoutMs: 300, idleTimeoutMs: 60_000 });
      const timedOut = once(server, 'timeout');
      const peer = await RawPeer.open(port);
      peer.socket.write(bytes);
      await peer.waitClosed(10_000);
      assert.equal(peer.frames.length, 1);
      assert.equal(decodeErrorBody(peer.frames[0]!.payload).code, 'TIMEOUT');
      const [, why] = await within(timedOut, 5000, 'timeout event');
      assert.equal(why, 'request');
    });
  }

  it('gives each frame its own deadline: a steady stream of frames, each quick, is never cut', async () => {
    const { server, port } = await serve({ requestTimeoutMs: 400, idleTimeoutMs: 60_000 });
    let timeouts = 0;
    server.on('timeout', () => timeouts++);
    const peer = await RawPeer.open(port);
    // Every write ends inside the next frame, so some frame is always half-received, for
    // well over the request deadline; but each single frame completes within a few ms.
    const frame = encodeFrame(FrameType.MESSAGE, 0, Buffer.alloc(20, 0x62));
    const count = 60;
    const stream = Buffer.concat(Array.from({ length: count }, (_, i) => {
      const copy = Buffer.from(frame);
      copy.writeUInt32BE(i + 1, 6);
      return copy;
    }));
    const step = frame.length;
    let at = 0;
    const half = Math.floor(step / 2);
    peer.socket.write(stream.subarray(0, half));
    at = half;
    while (at < stream.length && !peer.closed) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      peer.socket.write(stream.subarray(at, Math.min(at + step, stream.length)));
      at += step;
    }
    await peer.waitFrames(count, 10_000);
    assert.equal(peer.frames.length, count);
    assert.ok(peer.frames.every((f) => f.type === FrameType.MESSAGE_REPLY));
    assert.equal(timeouts, 0);
    peer.socket.destroy();
  });
});

describe('the request deadline of a frame delivered in pieces (PUT_DATA, issue 12)', () => {
  it('cuts a PUT_DATA trickled byte by byte at the request deadline, although each byte goes on as a piece at once', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tcpkit-deadline-'));
    try {
      // The upload's own stall deadline is far away: only the frame's deadline can cut it.
      const { server, port } = await serve({ requestTimeoutMs: 300, idleTimeoutMs: 60_000, services: [uploadService(await FileRoot.open(dir))] });
      const timedOut = once(server, 'timeout');
      const peer = await RawPeer.open(port);
      peer.send(UploadFrame.PUT, 1, encodePut({ name: 'slow.bin', size: 1000, overwrite: false }));
      await peer.until(() => peer.frames.some((f) => f.type === UploadFrame.PUT_READY), 'PUT_READY');
      peer.socket.write(encodeHeader(UploadFrame.PUT_DATA, 1, 1000));
      void trickle(peer.socket, Buffer.alloc(1000, 0x61), 10);
      const [, why] = await within(timedOut, 5000, 'timeout event');
      assert.equal(why, 'request');
      await peer.waitClosed(5000);
      const error = peer.frames.find((f) => f.type === FrameType.ERROR);
      assert.equal(error === undefined ? undefined : decodeErrorBody(error.payload).code, 'TIMEOUT');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
