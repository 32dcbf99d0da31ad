/**
 * Every timer of the server session runs on `clock` from the options: the auth-failure delay,
 * the linger after ending, the phase deadlines (watchdog) and the shutdown's drain deadline,
 * driven here with fake time over real sockets on loopback.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as net from 'node:net';
import { describe, it } from 'node:test';
import { FrameType, PREAMBLE } from '../../src/protocol/constants.js';
import { decodeErrorBody, encodeClientHello } from '../../src/protocol/control.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { LOOPBACK, RawPeer, clientOpening, testServers, waitUntil, within } from '../helpers/net.js';

const TOKEN = 'correct horse battery staple';
const { serve } = testServers();

function helloWith(token: string): Buffer {
  return Buffer.concat([Buffer.from(PREAMBLE), encodeFrame(FrameType.HELLO, 0, encodeClientHello({ versions: [1], capabilities: [], auth: { token } }))]);
}

/** Lets pending I/O callbacks (a socket's close) run: two turns of the event loop. */
async function turns(): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('server timers on the injected clock (fake time, real sockets)', () => {
  it('answers a wrong token only once the auth-failure delay has passed, longer for the next failure', async () => {
    const clock = new FakeClock();
    const { server, port } = await serve({ token: TOKEN, authFailureDelayMs: 100, clock });
    for (const delay of [100, 200]) {
      const peer = await RawPeer.connect(port);
      const failed = once(server, 'auth-failed');
      const before = server.stats().bytesOut;
      peer.socket.write(helloWith('not the token'));
      await within(failed, 5000, 'auth-failed');
      clock.advance(delay - 1);
      assert.equal(server.stats().bytesOut, before, `nothing sent ${delay - 1} ms after the failure`);
      clock.advance(1);
      assert.ok(server.stats().bytesOut > before, `answered at ${delay} ms`);
      await peer.waitClosed();
      assert.deepEqual(
        peer.frames.map((f) => decodeErrorBody(f.payload).code),
        ['AUTH_FAILED'],
      );
    }
  });

  it('destroys a connection whose peer does not close its side within the linger', async () => {
    const clock = new FakeClock();
    const { server, port } = await serve({ lingerTimeoutMs: 60_000, clock });
    // A peer that reads our FIN but never sends its own.
    const socket = net.connect({ host: LOOPBACK, port, allowHalfOpen: true });
    socket.on('error', () => {});
    await within(once(socket, 'connect'), 5000, 'connect');
    socket.resume(); // read (and drop) what the server says
    const ended = once(socket, 'end');
    let disconnected = false;
    server.on('disconnect', () => {
      disconnected = true;
    });
    // HELLO twice: a protocol error, told with ERROR, then our side ends.
    socket.write(Buffer.concat([clientOpening(), encodeFrame(FrameType.HELLO, 0, Buffer.from('{}'))]));
    await within(ended, 5000, "the server's FIN");
    clock.advance(59_999);
    await turns();
    assert.equal(disconnected, false, 'still lingering');
    assert.equal(server.connections, 1);
    clock.advance(1);
    await waitUntil(() => disconnected && server.connections === 0, 'the session destroyed at the linger deadline');
    socket.destroy();
  });

  it('says goodbye IDLE_TIMEOUT when the fake clock passes the idle deadline', async () => {
    const clock = new FakeClock();
    const { port } = await serve({ idleTimeoutMs: 30_000, clock });
    const peer = await RawPeer.open(port);
    clock.advance(29_999);
    clock.advance(1);
    await peer.waitFrames(1);
    assert.equal(peer.frames[0]!.type, FrameType.GOODBYE);
    assert.equal(decodeErrorBody(peer.frames[0]!.payload).code, 'IDLE_TIMEOUT');
    await peer.waitClosed();
  });

  it('destroys the connections still busy at the drain deadline of close()', async () => {
    const clock = new FakeClock();
    let started = false;
    const { server, port } = await serve({
      drainTimeoutMs: 10_000,
      clock,
      onMessage: () => {
        started = true;
        return new Promise<string>(() => {}); // never answers
      },
    });
    const peer = await RawPeer.open(port);
    peer.send(FrameType.MESSAGE, 1, Buffer.from('hang'));
    await waitUntil(() => started, 'the request to start');
    let done = false;
    const closing = server.close().then(() => {
      done = true;
    });
    await turns();
    clock.advance(9_999);
    await turns();
    assert.equal(done, false, 'still draining');
    clock.advance(1);
    await within(closing, 5000, 'close() at the drain deadline');
    await peer.waitClosed();
  });
});
