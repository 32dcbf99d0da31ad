import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { connect } from '../../src/client/client.js';
import type { TcpkitError } from '../../src/errors.js';
import { Admission } from '../../src/server/admission.js';
import { FrameType } from '../../src/protocol/constants.js';
import { decodeErrorBody } from '../../src/protocol/control.js';
import { LOOPBACK, RawPeer, clientOpening, testServers, waitUntil, within } from '../helpers/net.js';
import { runCli, startCliServer } from '../helpers/cli.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { encodeFrame } from '../../src/protocol/frame.js';

const { cleanups, serve } = testServers();

describe('admission policy', () => {
  it('counts per address and in total, and returns exactly to zero', () => {
    const admission = new Admission({ maxConnections: 3, maxConnectionsPerIp: 2 });
    assert.deepEqual(admission.admit('10.0.0.1'), { admitted: true });
    assert.deepEqual(admission.admit('10.0.0.1'), { admitted: true });
    assert.deepEqual(admission.admit('10.0.0.1'), { admitted: false, reason: 'per-ip' });
    assert.deepEqual(admission.admit('10.0.0.2'), { admitted: true });
    assert.deepEqual(admission.admit('10.0.0.3'), { admitted: false, reason: 'total' });
    admission.release('10.0.0.1');
    admission.release('10.0.0.1');
    admission.release('10.0.0.2');
    assert.equal(admission.total, 0);
    assert.deepEqual(admission.perIp(), {});
    assert.throws(() => admission.release('10.0.0.9'));
  });

  it('0 means no cap', () => {
    const admission = new Admission({ maxConnections: 0, maxConnectionsPerIp: 0 });
    for (let i = 0; i < 1000; i++) assert.equal(admission.admit('10.0.0.1').admitted, true);
  });
});

describe('connection caps (real sockets, many client addresses)', () => {
  it('refuses the connection over the per-address cap with TOO_MANY_CONNECTIONS; the others are unaffected', async () => {
    const { server, port } = await serve({ maxConnectionsPerIp: 2 });
    const a = await RawPeer.connect(port, { localAddress: '127.0.0.2' });
    a.socket.write(clientOpening());
    await a.waitFrames(1);
    const b = await RawPeer.connect(port, { localAddress: '127.0.0.2' });
    b.socket.write(clientOpening());
    await b.waitFrames(1);
    const refusedEvent = once(server, 'refused');
    const over = await RawPeer.connect(port, { localAddress: '127.0.0.2' });
    over.socket.write(clientOpening());
    await over.waitClosed();
    assert.equal(over.frames.length, 1);
    assert.equal(over.frames[0]!.type, FrameType.ERROR);
    const body = decodeErrorBody(over.frames[0]!.payload);
    assert.equal(body.code, 'TOO_MANY_CONNECTIONS');
    assert.match(body.message, /2 connections per client address/);
    const [peer, reason] = await within(refusedEvent, 5000, 'refused event');
    assert.equal(peer.address, '127.0.0.2');
    assert.equal(reason, 'per-ip');
    // Another address is still welcome, and the two held connections still work.
    const other = await RawPeer.connect(port, { localAddress: '127.0.0.3' });
    other.socket.write(clientOpening());
    await other.waitFrames(1);
    assert.equal(other.frames[0]!.type, FrameType.HELLO);
    a.send(FrameType.MESSAGE, 1, Buffer.from('still served'));
    await a.waitFrames(2);
    assert.equal(a.frames[1]!.payload.toString(), 'still served');
    assert.deepEqual(server.stats().connectionsPerIp, { '127.0.0.2': 2, '127.0.0.3': 1 });
    assert.ok(server.stats().refused['per-ip'] >= 1);
    for (const peer of [a, b, other]) peer.socket.destroy();
  });

  it('refuses over the total cap, and a raw client over a cap gets no data at all', async () => {
    const { server, port } = await serve({ maxConnections: 1, raw: async (request, exchange) => exchange.write(request) });
    const held = await RawPeer.connect(port, { localAddress: '127.0.0.4' });
    held.socket.write(clientOpening());
    await held.waitFrames(1);
    const framed = await RawPeer.connect(port, { localAddress: '127.0.0.5' });
    framed.socket.write(clientOpening());
    await framed.waitClosed();
    assert.equal(decodeErrorBody(framed.frames[0]!.payload).code, 'TOO_MANY_CONNECTIONS');
    assert.match(decodeErrorBody(framed.frames[0]!.payload).message, /maximum of 1 connections/);
    const raw = await RawPeer.connect(port, { localAddress: '127.0.0.6' });
    raw.socket.write('some-file.txt');
    await raw.waitClosed();
    assert.equal(raw.bytes, 0);
    assert.equal(server.stats().refused.total, 2);
    held.socket.destroy();
  });

  it('bounds refused connections that never speak: past 64 waiting, more are closed at once', async () => {
    // A refused connection waits for its first byte (tcpkit client or raw?), here for up to a
    // minute: without a bound, a flood of silent refused connections holds a descriptor each.
    const { server, port } = await serve({ maxConnections: 1, handshakeTimeoutMs: 60_000 });
    const held = await RawPeer.connect(port, { localAddress: '127.0.0.7' });
    const flood = await Promise.all(Array.from({ length: 100 }, (_, i) => RawPeer.connect(port, { localAddress: `127.0.1.${i + 1}` })));
    await waitUntil(() => server.stats().accepted === 101, 'every connection accepted');
    const closed = (): number => flood.filter((peer) => peer.closed).length;
    await waitUntil(() => closed() >= 36, 'the refusals past the bound to close', 20_000);
    assert.equal(closed(), 36);
    assert.ok(flood.every((peer) => peer.bytes === 0), 'closed without a byte');
    assert.equal(server.stats().refusing, 64);
    assert.equal(server.stats().refused.total, 100);
    for (const peer of [held, ...flood]) peer.socket.destroy();
    await waitUntil(() => server.stats().refusing === 0, 'refusals released');
  });

  it('the client library reports the refusal clearly', async () => {
    const { port } = await serve({ maxConnections: 1 });
    const first = await connect(`${LOOPBACK}:${port}`);
    await assert.rejects(connect(`${LOOPBACK}:${port}`), (error: TcpkitError) => {
      assert.equal(error.code, 'TCPKIT_ERR_TOO_MANY_CONNECTIONS');
      assert.match(error.message, /server refused the connection: the server holds its maximum of 1 connections/);
      return true;
    });
    await first.close();
  });

  it('refuses new connections while too many are still in their hello; those past it do not count', async () => {
    const { server, port } = await serve({ maxPreAuth: 2, preAuthDropStart: 2 });
    // Two connections that never say hello hold both pre-auth slots.
    const silent = [await RawPeer.connect(port), await RawPeer.connect(port)];
    await waitUntil(() => server.stats().preAuth === 2, 'two connections in their hello');
    await assert.rejects(connect(`${LOOPBACK}:${port}`), (error: TcpkitError) => {
      assert.equal(error.code, 'TCPKIT_ERR_TOO_MANY_CONNECTIONS');
      assert.match(error.message, /maximum of 2 connections still in their hello/);
      return true;
    });
    assert.equal(server.stats().refused['pre-auth'], 1);
    // One finishes its hello: its pre-auth slot is free, and it stays connected.
    silent[0]!.socket.write(clientOpening());
    await silent[0]!.waitFrames(1);
    await waitUntil(() => server.stats().preAuth === 1, 'one connection past its hello');
    const clients = [await connect(`${LOOPBACK}:${port}`), await connect(`${LOOPBACK}:${port}`)];
    assert.equal((await clients[1]!.send('in')).toString(), 'in', 'clients past their hello never count against the cap');
    silent[1]!.socket.destroy();
    await waitUntil(() => server.stats().preAuth === 0, 'the silent connection gone');
    for (const client of clients) await client.close();
    silent[0]!.socket.destroy();
  });

  it('counts return exactly to zero after clean closes, resets and hello timeouts', async () => {
    const { server, port } = await serve({ maxConnectionsPerIp: 100, handshakeTimeoutMs: 200 });
    const peers: RawPeer[] = [];
    for (let i = 0; i < 12; i++) {
      const peer = await RawPeer.connect(port, { localAddress: `127.0.0.${10 + (i % 4)}` });
      if (i % 3 !== 2) {
        peer.socket.write(clientOpening());
        await peer.waitFrames(1);
      }
      peers.push(peer);
    }
    await waitUntil(() => server.stats().accepted === 12, 'accepted');
    peers.forEach((peer, i) => {
      if (i % 3 === 0) peer.socket.end();
      else if (i % 3 === 1) peer.socket.resetAndDestroy();
      // i % 3 === 2: never says hello, closed by the handshake deadline
    });
    await waitUntil(() => server.connections === 0, 'all connections gone');
    assert.deepEqual(server.stats().connectionsPerIp, {});
    assert.equal(server.stats().preAuth, 0);
    // And the freed slots are usable again.
    const again = await connect(`${LOOPBACK}:${port}`);
    await again.close();
  });

  it('tcpkit serve --max-conns-per-ip refuses politely and logs the refusal', async () => {
    const server = await startCliServer(['--max-conns-per-ip', '1']);
    cleanups.push(async () => server.child.kill('SIGKILL'));
    const held = await connect(`${LOOPBACK}:${server.port}`);
    const refused = await runCli(['send', `${LOOPBACK}:${server.port}`, 'x']);
    assert.equal(refused.code, 3);
    assert.match(refused.stderr, /^tcpkit: server refused the connection: the server allows 1 connections per client address\n$/);
    await server.waitStderr(/refused: too many connections \(--max-conns-per-ip 1\)/);
    await held.close();
  });
});

describe('phase deadlines (real sockets)', () => {
  it('says goodbye with IDLE_TIMEOUT to a connection idle too long, and closes it', async () => {
    const { server, port } = await serve({ idleTimeoutMs: 150 });
    const timedOut = once(server, 'timeout');
    const peer = await RawPeer.open(port);
    peer.send(FrameType.MESSAGE, 1, Buffer.from('hi'));
    await peer.waitClosed();
    assert.deepEqual(
      peer.frames.map((f) => f.type),
      [FrameType.MESSAGE_REPLY, FrameType.GOODBYE],
    );
    assert.equal(decodeErrorBody(peer.frames[1]!.payload).code, 'IDLE_TIMEOUT');
    const [, why] = await within(timedOut, 5000, 'timeout event');
    assert.equal(why, 'idle');
  });

  it('never treats a request in progress as idle (fake clock), and counts idle time again once it is answered', async () => {
    const clock = new FakeClock();
    let release: (() => void) | undefined;
    const { server, port } = await serve({
      idleTimeoutMs: 100,
      clock,
      onMessage: () =>
        new Promise((resolve) => {
          release = () => resolve('done after a long time');
        }),
    });
    const timeouts: string[] = [];
    server.on('timeout', (_peer: unknown, why: string) => timeouts.push(why));
    const peer = await RawPeer.open(port);
    peer.send(FrameType.MESSAGE, 1, Buffer.from('slow'));
    await waitUntil(() => release !== undefined, 'the handler to start');
    for (let i = 0; i < 8; i++) clock.advance(50); // 4 idle periods pass while busy
    assert.deepEqual(timeouts, [], 'no deadline fired while the request ran');
    release!();
    await peer.waitFrames(1);
    assert.equal(peer.frames[0]!.type, FrameType.MESSAGE_REPLY);
    assert.equal(peer.frames[0]!.payload.toString(), 'done after a long time');
    // Answered: the connection is idle now, and one idle period on the same clock ends it.
    clock.advance(150);
    assert.deepEqual(timeouts, ['idle']);
    peer.socket.destroy();
  });

  it('cuts a frame trickled slower than the request deadline (slowloris), telling the client why', async () => {
    const { server, port } = await serve({ requestTimeoutMs: 300, idleTimeoutMs: 60_000 });
    const timedOut = once(server, 'timeout');
    const peer = await RawPeer.open(port);
    const frame = encodeFrame(FrameType.MESSAGE, 1, Buffer.alloc(100, 0x61));
    // One byte every 20 ms: 110 bytes would take 2.2 s; each byte is "activity".
    const trickling = (async () => {
      for (const byte of frame) {
        if (peer.closed || peer.ended) return;
        peer.socket.write(Buffer.of(byte));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await peer.waitClosed(5000);
    await trickling;
    assert.equal(peer.frames.length, 1);
    assert.equal(decodeErrorBody(peer.frames[0]!.payload).code, 'TIMEOUT');
    const [, why] = await within(timedOut, 5000, 'timeout event');
    assert.equal(why, 'request');
  });

  it('resets a client that stops reading while the server sends', async () => {
    const big = Buffer.alloc(1024 * 1024, 0x62);
    const { server, port } = await serve({ sendTimeoutMs: 200, idleTimeoutMs: 60_000, maxFrameBytes: 2 * 1024 * 1024 });
    const timedOut = once(server, 'timeout');
    const peer = await RawPeer.open(port);
    peer.socket.pause(); // never reads
    for (let id = 1; id <= 16; id++) peer.send(FrameType.MESSAGE, id, big);
    const [, why] = await within(timedOut, 10_000, 'send-stall');
    assert.equal(why, 'send-stall');
    await waitUntil(() => server.connections === 0, 'connection dropped');
    peer.socket.destroy();
  });

  it('never cuts a slow reader that keeps making progress', async () => {
    const big = Buffer.alloc(1024 * 1024, 0x63);
    const { server, port } = await serve({ sendTimeoutMs: 250, idleTimeoutMs: 60_000, maxFrameBytes: 2 * 1024 * 1024 });
    let timeouts = 0;
    server.on('timeout', () => timeouts++);
    const peer = await RawPeer.open(port);
    for (let id = 1; id <= 8; id++) peer.send(FrameType.MESSAGE, id, big);
    // Read in small bites with pauses: slower than the server sends, but always progressing.
    peer.socket.pause();
    const deadline = Date.now() + 20_000;
    while (peer.frames.length < 8 && !peer.closed && Date.now() < deadline) {
      peer.socket.resume();
      await new Promise((resolve) => setTimeout(resolve, 2));
      peer.socket.pause();
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
    peer.socket.resume();
    assert.equal(peer.frames.length, 8, `got ${peer.frames.length} replies`);
    assert.equal(timeouts, 0);
    peer.socket.destroy();
  });
});

describe('tcpkit serve: governance flags', () => {
  it('--idle-timeout closes an idle connection and logs it with the client address', async () => {
    const server = await startCliServer(['--idle-timeout', '150']);
    cleanups.push(async () => server.child.kill('SIGKILL'));
    const client = await connect(`${LOOPBACK}:${server.port}`);
    await client.send('hello');
    await server.waitStderr(/127\.0\.0\.1:\d+ timed out: idle, said goodbye/);
    // The library reconnects by itself for the next message.
    assert.equal((await client.send('again')).toString(), 'again');
    await client.close();
  });
});

describe('allow and deny lists', () => {
  it('parse CIDRs of both families and decide by address', async () => {
    const { AccessList } = await import('../../src/server/access.js');
    const list = new AccessList(['127.0.0.0/24', '::1', 'fd00::/8'], ['127.0.0.66']);
    assert.equal(list.permits('127.0.0.5'), true);
    assert.equal(list.permits('127.0.0.66'), false, 'deny wins over allow');
    assert.equal(list.permits('127.0.1.5'), false, 'not in the allow list');
    assert.equal(list.permits('::1'), true);
    assert.equal(list.permits('fd12::34'), true);
    assert.equal(list.permits('2001:db8::1'), false);
    assert.equal(new AccessList([], ['10.0.0.0/8']).permits('192.168.1.1'), true, 'deny only: everyone else is welcome');
    assert.equal(new AccessList().active, false);
    for (const bad of ['10.0.0.0/33', 'not-an-ip', '10.0.0.1/8/9', '::1/129', '10.0.0.0/x']) {
      assert.throws(() => new AccessList([bad]), { code: 'TCPKIT_ERR_INVALID_OPTION' }, bad);
    }
  });

  it('refuse a denied client at accept, before reading a byte, and count it', async () => {
    const { server, port } = await serve({ deny: ['127.0.0.7/32'] });
    const refused = once(server, 'refused');
    const denied = await RawPeer.connect(port, { localAddress: '127.0.0.7' });
    denied.socket.write(clientOpening());
    await denied.waitClosed();
    assert.equal(denied.bytes, 0);
    const [peer, reason] = await within(refused, 5000, 'refused event');
    assert.equal(peer.address, '127.0.0.7');
    assert.equal(reason, 'denied');
    assert.equal(server.stats().refused.denied, 1);
    assert.equal(server.stats().bytesIn, 0, 'not a byte was read from the denied client');
    const welcome = await RawPeer.connect(port, { localAddress: '127.0.0.8' });
    welcome.socket.write(clientOpening());
    await welcome.waitFrames(1);
    assert.equal(welcome.frames[0]!.type, FrameType.HELLO);
    welcome.socket.destroy();
  });

  it('serve only the allowed network', async () => {
    const { port } = await serve({ allow: ['127.0.0.9'] });
    const outsider = await RawPeer.connect(port, { localAddress: '127.0.0.10' });
    outsider.socket.write(clientOpening());
    await outsider.waitClosed();
    assert.equal(outsider.bytes, 0);
    const insider = await RawPeer.connect(port, { localAddress: '127.0.0.9' });
    insider.socket.write(clientOpening());
    await insider.waitFrames(1);
    insider.socket.destroy();
  });
});
