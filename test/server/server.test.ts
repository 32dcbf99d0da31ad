import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as net from 'node:net';
import { describe, it } from 'node:test';
import { connect } from '../../src/client/client.js';
import { TcpkitError } from '../../src/errors.js';
import { FrameType, HEADER_BYTES } from '../../src/protocol/constants.js';
import { decodeErrorBody, decodeServerHello } from '../../src/protocol/control.js';
import { createServer } from '../../src/create-server.js';
import { SERVER_DEFAULTS } from '../../src/server/options.js';
import { LOOPBACK, RawPeer, clientOpening, gate, testServers, waitUntil, within } from '../helpers/net.js';

const { cleanups, serve } = testServers();

describe('server: binding', () => {
  it('defaults to port 7890, backlog 128 and all interfaces', () => {
    assert.equal(SERVER_DEFAULTS.port, 7890);
    assert.equal(SERVER_DEFAULTS.backlog, 128);
    assert.equal(SERVER_DEFAULTS.host, undefined);
  });

  it('binds all interfaces when no host is given, and reports the real port for port 0', async () => {
    const server = createServer({ port: 0 });
    cleanups.push(() => server.destroy());
    const address = await server.listen();
    assert.ok(address.host === '::' || address.host === '0.0.0.0', `bound to ${address.host}`);
    assert.ok(address.port > 0);
    const client = await connect(`${LOOPBACK}:${address.port}`);
    assert.equal((await client.send('all interfaces')).toString(), 'all interfaces');
    await client.close();
  });

  it('rejects bad options naming the option', () => {
    assert.throws(() => createServer({ port: 70000 }), /port/);
    assert.throws(() => createServer({ maxInFlight: 0 }), /maxInFlight/);
    assert.throws(() => createServer({ backlog: -1 }), /backlog/);
  });

  it('fails listen() with the OS error when the port is taken', async () => {
    const { port } = await serve();
    const second = createServer({ host: LOOPBACK, port });
    await assert.rejects(second.listen(), { code: 'EADDRINUSE' });
  });
});

describe('server: connections', () => {
  it('serves clients concurrently: a blocked request does not hold up another client', async () => {
    const blocker = gate();
    const { address } = await serve({
      onMessage: async (message) => {
        if (message.toString() === 'block') await blocker.promise;
        return message;
      },
    });
    const a = await connect(address);
    const b = await connect(address);
    const blocked = a.send('block');
    assert.equal((await within(b.send('free'), 5000, 'second client')).toString(), 'free');
    blocker.open();
    assert.equal((await blocked).toString(), 'block');
    await Promise.all([a.close(), b.close()]);
  });

  it('notices at once a client that closes (EOF) and frees its connection', async () => {
    const { server, port } = await serve();
    const peer = await RawPeer.open(port);
    assert.equal(server.connections, 1);
    const disconnected = once(server, 'disconnect');
    peer.socket.end();
    const [peerInfo, reason] = await within(disconnected, 5000, 'disconnect');
    assert.equal(reason, 'eof');
    assert.equal(peerInfo.address, LOOPBACK);
    assert.equal(peerInfo.port, peer.socket.localPort);
    assert.equal(server.connections, 0);
  });

  it('notices a client that resets its connection', async () => {
    const { server, port } = await serve();
    const peer = await RawPeer.open(port);
    const disconnected = once(server, 'disconnect');
    peer.socket.resetAndDestroy();
    const [, reason] = await within(disconnected, 5000, 'disconnect');
    assert.equal(reason, 'reset');
    assert.equal(server.connections, 0);
  });

  it('still answers a client that half-closes right after its request (allowHalfOpen)', async () => {
    const release = gate();
    const { server, port } = await serve({
      onMessage: async (message) => {
        await release.promise;
        return Buffer.concat([message, Buffer.alloc(200_000, 0x61)]);
      },
    });
    server.once('peer-end', () => release.open());
    const peer = await RawPeer.open(port);
    peer.send(FrameType.MESSAGE, 7, Buffer.from('last words'));
    peer.socket.end();
    await peer.waitClosed();
    assert.equal(peer.frames.length, 1, 'one reply before the close');
    const reply = peer.frames[0]!;
    assert.equal(reply.type, FrameType.MESSAGE_REPLY);
    assert.equal(reply.id, 7);
    assert.equal(reply.payload.length, 'last words'.length + 200_000);
  });

  it('keeps serving others when one client sends an oversized frame, and tells that client why', async () => {
    const { server, port, address } = await serve({ maxFrameBytes: 64 * 1024 });
    const good = await connect(address);
    const bad = await RawPeer.open(port);
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32BE(64 * 1024 + 1, 0);
    header[4] = FrameType.MESSAGE;
    header.writeUInt32BE(1, 6);
    const protocolError = once(server, 'protocol-error');
    bad.socket.write(header);
    await bad.waitClosed();
    const [, error] = await within(protocolError, 5000, 'protocol-error event');
    assert.equal((error as TcpkitError).code, 'TCPKIT_ERR_FRAME_TOO_LARGE');
    assert.equal(bad.frames.length, 1);
    assert.equal(bad.frames[0]!.type, FrameType.ERROR);
    assert.equal(decodeErrorBody(bad.frames[0]!.payload).code, 'FRAME_TOO_LARGE');
    assert.equal((await good.send('still here')).toString(), 'still here');
    await good.close();
  });

  it('closes a connection that is not tcpkit without sending a byte', async () => {
    const { port } = await serve();
    const peer = await RawPeer.connect(port);
    peer.socket.write('GET / HTTP/1.0\r\n\r\n');
    await peer.waitClosed();
    assert.equal(peer.bytes, 0);
  });

  it('closes a connection that never completes its hello at the handshake deadline, without a byte', async () => {
    const { server, port } = await serve({ handshakeTimeoutMs: 150 });
    const peer = await RawPeer.connect(port);
    const disconnected = once(server, 'disconnect');
    peer.socket.write(clientOpening().subarray(0, 12));
    await peer.waitClosed(5000);
    assert.equal(peer.bytes, 0);
    await within(disconnected, 5000, 'disconnect');
    assert.equal(server.connections, 0);
  });

  it('answers a client that offers no common version with UNSUPPORTED_VERSION and the versions it speaks', async () => {
    const { port } = await serve();
    const peer = await RawPeer.connect(port);
    peer.socket.write(clientOpening([7, 9]));
    await peer.waitClosed();
    assert.equal(peer.frames.length, 1);
    const body = decodeErrorBody(peer.frames[0]!.payload);
    assert.equal(body.code, 'UNSUPPORTED_VERSION');
    assert.deepEqual(body.details, { versions: [1] });
  });

  it('states its limits in its hello', async () => {
    const { port } = await serve({ maxFrameBytes: 128 * 1024, maxInFlight: 3 });
    const peer = await RawPeer.connect(port);
    peer.socket.write(clientOpening());
    await peer.waitFrames(1);
    const hello = decodeServerHello(peer.frames[0]!.payload);
    assert.equal(hello.version, 1);
    assert.deepEqual(hello.services, ['message']);
    assert.equal(hello.limits.maxFrameBytes, 128 * 1024);
    assert.equal(hello.limits.maxInFlight, 3);
    peer.socket.destroy();
  });

  it('refuses a request id already in flight as a protocol error', async () => {
    const release = gate();
    const { port } = await serve({ onMessage: async (m) => (await release.promise, m) });
    const peer = await RawPeer.open(port);
    peer.send(FrameType.MESSAGE, 5, Buffer.from('a'));
    peer.send(FrameType.MESSAGE, 5, Buffer.from('b'));
    await peer.waitFrames(1);
    assert.equal(peer.frames[0]!.type, FrameType.ERROR);
    assert.equal(peer.frames[0]!.id, 0);
    assert.equal(decodeErrorBody(peer.frames[0]!.payload).code, 'PROTOCOL_ERROR');
    release.open();
    await peer.waitClosed();
  });

  it('frees an id once its final reply is out, while the handler still runs; the handler still holds its slot', async () => {
    // A GET handler answers FILE_END and then closes its file: a client may reuse the id as
    // soon as the reply arrived (PROTOCOL.md §4.2), however long the tidying up takes.
    const tidy = gate();
    const service = {
      name: 'tidy',
      requestTypes: [0x70],
      async handle(request: { payload: Uint8Array }, exchange: { reply(type: number, payload?: Uint8Array): void }) {
        exchange.reply(0x71, request.payload);
        await tidy.promise;
      },
    };
    const { server, port } = await serve({ services: [service], maxInFlight: 2 });
    const peer = await RawPeer.open(port);
    peer.send(0x70, 7, Buffer.from('first'));
    await peer.waitFrames(1);
    peer.send(0x70, 7, Buffer.from('again'));
    await peer.waitFrames(2);
    assert.deepEqual(peer.frames.map((f) => [f.type, f.id, f.payload.toString()]), [[0x71, 7, 'first'], [0x71, 7, 'again']]);
    // Both handlers still run: the cap (2) holds a third request back until one finishes.
    peer.send(FrameType.MESSAGE, 8, Buffer.from('third'));
    await assert.rejects(peer.waitFrames(3, 300), /timed out/);
    tidy.open();
    await peer.waitFrames(3);
    assert.equal(peer.frames[2]!.payload.toString(), 'third');
    assert.equal(server.stats().requests, 3);
    peer.socket.destroy();
  });

  it('answers an unknown request type with UNSUPPORTED_REQUEST and keeps the connection', async () => {
    const { port } = await serve();
    const peer = await RawPeer.open(port);
    peer.send(0x7e, 3, Buffer.from('?'));
    peer.send(FrameType.MESSAGE, 4, Buffer.from('ok'));
    await peer.waitFrames(2);
    assert.equal(peer.frames[0]!.id, 3);
    assert.equal(decodeErrorBody(peer.frames[0]!.payload).code, 'UNSUPPORTED_REQUEST');
    assert.equal(peer.frames[1]!.id, 4);
    assert.equal(peer.frames[1]!.payload.toString(), 'ok');
    peer.socket.destroy();
  });

  it('answers PING with a PONG echoing its payload and id', async () => {
    const { port } = await serve();
    const peer = await RawPeer.open(port);
    peer.send(FrameType.PING, 99, Buffer.from('probe'));
    await peer.waitFrames(1);
    assert.equal(peer.frames[0]!.type, FrameType.PONG);
    assert.equal(peer.frames[0]!.id, 99);
    assert.equal(peer.frames[0]!.payload.toString(), 'probe');
    peer.socket.destroy();
  });

  it('answers a client GOODBYE with GOODBYE once its requests are answered, then closes', async () => {
    const { port } = await serve();
    const peer = await RawPeer.open(port);
    peer.send(FrameType.MESSAGE, 1, Buffer.from('x'));
    peer.send(FrameType.GOODBYE, 0);
    await peer.waitClosed();
    assert.deepEqual(
      peer.frames.map((f) => f.type),
      [FrameType.MESSAGE_REPLY, FrameType.GOODBYE],
    );
    assert.equal(decodeErrorBody(peer.frames[1]!.payload).code, 'NORMAL');
  });

  it('serves at most maxInFlight requests of one connection at once; the rest wait unread', async () => {
    let running = 0;
    let peak = 0;
    const release = gate();
    const { port } = await serve({
      maxInFlight: 2,
      onMessage: async (message) => {
        running++;
        peak = Math.max(peak, running);
        await release.promise;
        running--;
        return message;
      },
    });
    const peer = await RawPeer.open(port);
    for (let id = 1; id <= 6; id++) peer.send(FrameType.MESSAGE, id, Buffer.from(String(id)));
    // Wait until the server has started what it will start, then check it held to the cap.
    await waitUntil(() => running >= 2, 'two handlers running', 5000);
    assert.equal(running, 2);
    release.open();
    await peer.waitFrames(6);
    assert.equal(peak, 2);
    assert.deepEqual(
      peer.frames.map((f) => f.id).sort((x, y) => x - y),
      [1, 2, 3, 4, 5, 6],
    );
    peer.socket.destroy();
  });

  it('stops reading requests from a client that does not read its replies (bounded memory)', async () => {
    const { server, port } = await serve();
    const peer = await RawPeer.open(port);
    peer.socket.pause();
    const payload = Buffer.alloc(32 * 1024, 0x62);
    const total = 2000; // 64 MiB of replies if the server kept answering
    for (let id = 1; id <= total; id++) peer.send(FrameType.MESSAGE, id, payload);
    // Poll (bounded) until the server stops making progress, then check it stopped early.
    let last = -1;
    let stable = 0;
    for (let i = 0; i < 200 && stable < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const now = server.stats().requests;
      stable = now === last ? stable + 1 : 0;
      last = now;
    }
    assert.ok(last < total / 2, `server answered ${last} of ${total} requests to a client that reads nothing`);
    peer.socket.destroy();
  });

  it('answers HANDLER_ERROR when the handler throws, reports it, and keeps the connection', async () => {
    const { server, address } = await serve({
      onMessage: (message) => {
        if (message.toString() === 'boom') throw new Error('secret internal detail');
        return message;
      },
    });
    const handlerError = once(server, 'handler-error');
    const client = await connect(address);
    await assert.rejects(client.send('boom'), (error: TcpkitError) => {
      assert.equal(error.code, 'TCPKIT_ERR_HANDLER_ERROR');
      assert.doesNotMatch(error.message, /secret/);
      return true;
    });
    const [, error] = await within(handlerError, 5000, 'handler-error');
    assert.match(String(error), /secret internal detail/);
    assert.equal((await client.send('fine')).toString(), 'fine');
    await client.close();
  });

  it('passes a TcpkitError code thrown by a handler to the client', async () => {
    const { address } = await serve({
      onMessage: () => {
        throw new TcpkitError('NOT_FOUND', 'no such thing');
      },
    });
    const client = await connect(address);
    await assert.rejects(client.send('x'), { code: 'TCPKIT_ERR_NOT_FOUND', message: 'no such thing' });
    await client.close();
  });

  it('gives the handler the client address and an abort signal that fires when the connection breaks', async () => {
    const seen = gate<{ address: string; port: number; aborted: Promise<void> }>();
    const { address } = await serve({
      onMessage: (_message, context) =>
        new Promise(() => {
          seen.open({
            address: context.peer.address,
            port: context.peer.port,
            aborted: new Promise<void>((resolve) => context.signal.addEventListener('abort', () => resolve())),
          });
        }),
    });
    const peer = await RawPeer.open(Number(address.split(':')[1]));
    peer.send(FrameType.MESSAGE, 1, Buffer.from('hang'));
    const info = await within(seen.promise, 5000, 'handler call');
    assert.equal(info.address, LOOPBACK);
    assert.equal(info.port, peer.socket.localPort);
    peer.socket.resetAndDestroy();
    await within(info.aborted, 5000, 'abort signal');
  });
});

describe('server: graceful close', () => {
  it('stops accepting at once, says goodbye to idle clients and lets requests in flight finish', async () => {
    const release = gate();
    const { server, address, port } = await serve({
      onMessage: async (message) => {
        if (message.toString() === 'slow') await release.promise;
        return message;
      },
    });
    const busy = await connect(address);
    const idle = await RawPeer.open(port);
    const slow = busy.send('slow');
    await waitUntil(() => server.stats().requests >= 1, 'request started', 5000);
    const closing = server.close();
    await idle.waitClosed();
    assert.equal(idle.frames[0]?.type, FrameType.GOODBYE);
    assert.equal(decodeErrorBody(idle.frames[0]!.payload).code, 'SHUTTING_DOWN');
    const refused = net.connect({ host: LOOPBACK, port });
    const [error] = (await within(once(refused, 'error'), 5000, 'refusal')) as [NodeJS.ErrnoException];
    assert.equal(error.code, 'ECONNREFUSED');
    release.open();
    assert.equal((await slow).toString(), 'slow');
    await within(closing, 5000, 'close()');
    assert.equal(server.connections, 0);
    assert.ok((await busy.closed()) instanceof Error, 'the busy client learns the server went away');
  });

  it('destroys connections still busy at the drain deadline', async () => {
    const { server, address } = await serve({ drainTimeoutMs: 100, onMessage: () => new Promise(() => {}) });
    const client = await connect(address);
    const pending = client.send('forever');
    await waitUntil(() => server.stats().requests >= 1, 'request started', 5000);
    await within(server.close(), 5000, 'close() at the deadline');
    await assert.rejects(pending, (error: TcpkitError) => error.code === 'TCPKIT_ERR_CONNECTION_FAILED' || error.code === 'TCPKIT_ERR_CONNECTION_CLOSED');
  });

  it('can listen again on the same port right after close', async () => {
    const { server, port } = await serve();
    const client = await connect(`${LOOPBACK}:${port}`);
    await client.send('x');
    await client.close();
    await server.close();
    const again = createServer({ host: LOOPBACK, port });
    cleanups.push(() => again.destroy());
    assert.equal((await again.listen()).port, port);
  });
});
