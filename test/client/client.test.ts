import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connect } from '../../src/client/client.js';
import { sendOnce, withClient } from '../../src/client/short.js';
import type { TcpkitError } from '../../src/errors.js';
import { FrameType, PREAMBLE } from '../../src/protocol/constants.js';
import { encodeServerHello } from '../../src/protocol/control.js';
import { encodeFrame, FrameDecoder } from '../../src/protocol/frame.js';
import { createConnection, type Socket } from 'node:net';
import { FakeClock } from '../helpers/fake-clock.js';
import { LOOPBACK, faultyServer, freePort, gate, testServers, trickle, waitUntil, within } from '../helpers/net.js';

const { cleanups, serve } = testServers();
async function faulty(...args: Parameters<typeof faultyServer>) {
  const started = await faultyServer(...args);
  cleanups.push(() => started.close());
  return started;
}

/** What a real server says first: preamble + HELLO. */
function serverOpening(maxInFlight = 16): Buffer {
  return Buffer.concat([
    Buffer.from(PREAMBLE),
    encodeFrame(
      FrameType.HELLO,
      0,
      encodeServerHello({ version: 1, services: ['message'], capabilities: [], limits: { maxFrameBytes: 1 << 20, maxInFlight, idleTimeoutMs: 0 } }),
    ),
  ]);
}

/** A faulty server that completes the hello, then runs `onRequest` for each request frame. */
function scriptedServer(onRequest: (socket: import('node:net').Socket, id: number, payload: Buffer) => void) {
  return faulty((socket) => {
    const decoder = new FrameDecoder({ maxFrameBytes: 1 << 20 });
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.type === FrameType.HELLO) socket.write(serverOpening());
        else if (frame.type === FrameType.MESSAGE) onRequest(socket, frame.id, frame.payload);
      }
    });
  });
}

describe('client: kept (long) connections', () => {
  it('carries many pipelined requests over one connection, matching replies by id', async () => {
    const { server, address } = await serve({
      maxInFlight: 64,
      // Answer in scrambled order: later requests often finish first.
      onMessage: async (message) => {
        const n = Number(message.toString());
        await new Promise((resolve) => setTimeout(resolve, (n * 7) % 13));
        return `reply ${n}`;
      },
    });
    let connections = 0;
    server.on('connection', () => connections++);
    const client = await connect(address);
    const replies = await Promise.all(Array.from({ length: 50 }, (_, n) => client.send(String(n))));
    assert.deepEqual(
      replies.map((r) => r.toString()),
      Array.from({ length: 50 }, (_, n) => `reply ${n}`),
    );
    assert.equal(connections, 1);
    await client.close();
  });

  it('keeps several requests in flight at once, never more than the server allows', async () => {
    let running = 0;
    let peak = 0;
    let clientPeak = 0;
    const release = gate();
    // eslint-disable-next-line prefer-const
    let client: Awaited<ReturnType<typeof connect>>;
    const { address } = await serve({
      maxInFlight: 3,
      onMessage: async (message) => {
        running++;
        peak = Math.max(peak, running);
        clientPeak = Math.max(clientPeak, client.inFlight);
        await release.promise;
        running--;
        return message;
      },
    });
    client = await connect(address);
    assert.equal(client.server.limits.maxInFlight, 3);
    const all = Promise.all(Array.from({ length: 40 }, (_, n) => client.send(String(n))));
    await waitUntil(() => running >= 3, 'three in flight', 5000);
    release.open();
    assert.equal((await all).length, 40);
    assert.equal(peak, 3, 'pipelined up to the limit, not beyond');
    assert.equal(clientPeak, 3, 'the client itself never had more in flight than the server allows');
    await client.close();
  });

  it('sends text and bytes, including an empty message and every byte value', async () => {
    const { address } = await serve();
    const client = await connect(address);
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    assert.deepEqual(await client.send(bytes), bytes);
    assert.equal((await client.send('')).length, 0);
    assert.equal((await client.send('你哈啊')).toString('utf8'), '你哈啊');
    const big = Buffer.alloc(client.server.limits.maxFrameBytes, 7);
    assert.deepEqual(await client.send(big), big);
    await client.close();
  });

  it("refuses a message larger than the server's frame limit without breaking the connection", async () => {
    const { address } = await serve({ maxFrameBytes: 64 * 1024 });
    const client = await connect(address);
    await assert.rejects(client.send(Buffer.alloc(64 * 1024 + 1)), { code: 'TCPKIT_ERR_FRAME_TOO_LARGE' });
    assert.equal((await client.send('ok')).toString(), 'ok');
    await client.close();
  });

  it('measures a ping round trip', async () => {
    const { address } = await serve();
    const client = await connect(address);
    const ms = await client.ping();
    assert.ok(ms >= 0 && ms < 5000);
    await client.close();
  });

  it('close() waits for replies in flight, then says goodbye', async () => {
    const release = gate();
    const { server, address } = await serve({ onMessage: async (m) => (await release.promise, m) });
    const disconnected = new Promise((resolve) => server.once('disconnect', (_peer, reason) => resolve(reason)));
    const client = await connect(address);
    const pending = client.send('in flight');
    const closing = client.close();
    await assert.rejects(client.send('after close'), { code: 'TCPKIT_ERR_CLIENT_CLOSED' });
    release.open();
    assert.equal((await pending).toString(), 'in flight');
    await within(closing, 5000, 'close');
    assert.equal(await client.closed(), undefined);
    assert.equal(await within(disconnected, 5000, 'server disconnect'), 'eof');
  });

  it('times out a request whose reply never comes, and the connection stays usable', async () => {
    const { address } = await serve({
      onMessage: (message) => (message.toString() === 'never' ? new Promise(() => {}) : message),
    });
    const client = await connect(address, { requestTimeoutMs: 100 });
    await assert.rejects(client.send('never'), { code: 'TCPKIT_ERR_REQUEST_TIMEOUT' });
    assert.equal((await client.send('now', { timeoutMs: 5000 })).toString(), 'now');
    client.destroy();
  });

  it('abandons a request when its AbortSignal fires', async () => {
    const { address } = await serve({ onMessage: () => new Promise(() => {}) });
    const client = await connect(address);
    const controller = new AbortController();
    const pending = client.send('x', { signal: controller.signal });
    controller.abort();
    await assert.rejects(pending, { code: 'TCPKIT_ERR_ABORTED' });
    client.destroy();
  });
});

describe('client: short connections', () => {
  it('sendOnce opens one connection per message and closes it', async () => {
    const { server, address } = await serve({ onMessage: (m) => `short ${m}` });
    let connections = 0;
    server.on('connection', () => connections++);
    assert.equal((await sendOnce(address, 'a')).toString(), 'short a');
    assert.equal((await sendOnce({ host: LOOPBACK, port: Number(address.split(':')[1]) }, 'b')).toString(), 'short b');
    assert.equal(connections, 2);
    await waitUntil(() => server.connections <= 0, 'connections closed', 5000);
  });

  it('withClient closes the connection even when the work fails', async () => {
    const { server, address } = await serve();
    await assert.rejects(
      withClient(address, async () => {
        throw new Error('work failed');
      }),
      /work failed/,
    );
    await waitUntil(() => server.connections <= 0, 'connection closed', 5000);
  });
});

describe('client: failures a person understands', () => {
  it('says "no server listening at host:port" when the connection is refused', async () => {
    const port = await freePort();
    await assert.rejects(connect(`${LOOPBACK}:${port}`), {
      code: 'TCPKIT_ERR_CONNECTION_REFUSED',
      message: `no server listening at ${LOOPBACK}:${port}`,
    });
  });

  it('rejects a bad address before connecting', async () => {
    await assert.rejects(connect('127.0.0.1:99999'), { code: 'TCPKIT_ERR_INVALID_ADDRESS' });
    await assert.rejects(connect(''), { code: 'TCPKIT_ERR_INVALID_ADDRESS' });
  });

  it('times out connecting to a server that accepts but never says hello', async () => {
    const { port } = await faulty(() => {});
    await assert.rejects(connect(`${LOOPBACK}:${port}`, { connectTimeoutMs: 150 }), { code: 'TCPKIT_ERR_CONNECT_TIMEOUT' });
  });

  it('recognises a server that does not speak tcpkit', async () => {
    const { port } = await faulty((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    await assert.rejects(connect(`${LOOPBACK}:${port}`), (error: TcpkitError) => {
      assert.equal(error.code, 'TCPKIT_ERR_NOT_TCPKIT');
      assert.match(error.message, /does not speak the tcpkit protocol/);
      return true;
    });
  });

  it('reports a server that closes during the hello', async () => {
    const { port } = await faulty((socket) => socket.end());
    await assert.rejects(connect(`${LOOPBACK}:${port}`), { code: 'TCPKIT_ERR_CONNECTION_CLOSED' });
  });

  it('copes with a server that trickles its hello one byte at a time', async () => {
    const { port } = await faulty((socket) => {
      socket.once('data', () => void trickle(socket, serverOpening()));
    });
    const client = await connect(`${LOOPBACK}:${port}`, { connectTimeoutMs: 10_000 });
    assert.equal(client.server.version, 1);
    client.destroy();
  });

  it('fails pending requests when the server hangs up mid-frame', async () => {
    const { port } = await scriptedServer((socket, id) => {
      const reply = encodeFrame(FrameType.MESSAGE_REPLY, id, Buffer.alloc(1000, 1));
      socket.end(reply.subarray(0, 500));
    });
    const client = await connect(`${LOOPBACK}:${port}`);
    await assert.rejects(client.send('x'), (error: TcpkitError) => {
      assert.ok(['TCPKIT_ERR_CONNECTION_CLOSED', 'TCPKIT_ERR_CONNECTION_FAILED'].includes(error.code), error.code);
      return true;
    });
    assert.ok((await client.closed()) instanceof Error);
  });

  it('fails pending requests when the server resets the connection', async () => {
    const { port } = await scriptedServer((socket) => socket.resetAndDestroy());
    const client = await connect(`${LOOPBACK}:${port}`);
    await assert.rejects(client.send('x'), { code: 'TCPKIT_ERR_CONNECTION_FAILED' });
  });

  it('treats a reply to a request it never sent as a protocol error', async () => {
    const { port } = await scriptedServer((socket, id) => socket.write(encodeFrame(FrameType.MESSAGE_REPLY, id + 1000, Buffer.from('?'))));
    const client = await connect(`${LOOPBACK}:${port}`);
    await assert.rejects(client.send('x'), { code: 'TCPKIT_ERR_PROTOCOL_ERROR' });
  });

  it('refuses a reply frame larger than its own limit (a hostile server cannot make it buffer more)', async () => {
    const { port } = await scriptedServer((socket, id) => {
      const header = encodeFrame(FrameType.MESSAGE_REPLY, id).subarray(0, 10);
      header.writeUInt32BE(200_000, 0);
      socket.write(header);
    });
    const client = await connect(`${LOOPBACK}:${port}`, { maxFrameBytes: 100_000 });
    await assert.rejects(client.send('x'), { code: 'TCPKIT_ERR_FRAME_TOO_LARGE' });
  });
});

describe('client: a kept connection reaped by the server as idle', () => {
  it('reconnects transparently for the next request', async () => {
    const { server, address } = await serve({ idleTimeoutMs: 100 });
    let connections = 0;
    server.on('connection', () => connections++);
    const reaped = new Promise((resolve) => server.once('timeout', (_peer, why) => resolve(why)));
    const client = await connect(address);
    assert.equal((await client.send('before')).toString(), 'before');
    assert.equal(await within(reaped, 5000, 'idle timeout'), 'idle');
    await waitUntil(() => server.connections <= 0, 'reaped connection closed', 5000);
    assert.equal(client.state, 'open', 'reaping is invisible to the library user');
    assert.equal((await client.send('after')).toString(), 'after');
    assert.equal(connections, 2);
    await client.close();
    assert.equal(await client.closed(), undefined);
  });

  it('sends again, on a new connection, a request that crossed the idle goodbye (it was never served)', async () => {
    const seen: string[] = [];
    let connectionNo = 0;
    const { port } = await faulty((socket) => {
      const mine = ++connectionNo;
      const decoder = new FrameDecoder({ maxFrameBytes: 1 << 20 });
      socket.on('data', (chunk: Buffer) => {
        for (const frame of decoder.push(chunk)) {
          if (frame.type === FrameType.HELLO) socket.write(serverOpening());
          else if (frame.type === FrameType.MESSAGE) {
            seen.push(`${mine}:${frame.payload.toString()}`);
            if (mine === 1) {
              // The server had decided the connection was idle before this request arrived.
              socket.end(encodeFrame(FrameType.GOODBYE, 0, Buffer.from(JSON.stringify({ code: 'IDLE_TIMEOUT', message: 'idle' }))));
            } else {
              socket.write(encodeFrame(FrameType.MESSAGE_REPLY, frame.id, frame.payload));
            }
          }
        }
      });
    });
    const client = await connect(`${LOOPBACK}:${port}`);
    assert.equal((await within(client.send('crossed'), 5000, 'resent request')).toString(), 'crossed');
    assert.deepEqual(seen, ['1:crossed', '2:crossed']);
    client.destroy();
  });

  it('does not reconnect after a shutdown goodbye: the caller is told', async () => {
    const { server, address } = await serve();
    const client = await connect(address);
    await client.send('x');
    await server.close();
    await assert.rejects(client.send('y'), (error: TcpkitError) => /SHUTTING_DOWN|CONNECTION_CLOSED|CLIENT_CLOSED/.test(error.code));
    assert.ok((await client.closed()) instanceof Error);
  });
});

describe('client: heartbeats', () => {
  it('pings a quiet server while waiting for a reply, and declares it dead when pongs stop', async () => {
    let alive = true;
    let pings = 0;
    const { port } = await faulty((socket) => {
      const decoder = new FrameDecoder({ maxFrameBytes: 1 << 20 });
      socket.on('data', (chunk: Buffer) => {
        for (const frame of decoder.push(chunk)) {
          if (frame.type === FrameType.HELLO) socket.write(serverOpening());
          else if (frame.type === FrameType.PING) {
            pings++;
            if (alive) socket.write(encodeFrame(FrameType.PONG, frame.id, frame.payload));
          }
          // MESSAGE: a slow server, never answers
        }
      });
    });
    const client = await connect(`${LOOPBACK}:${port}`, { heartbeatMs: 100, requestTimeoutMs: 0 });
    let settled = false;
    const pending = client.send('slow');
    pending.then(
      () => (settled = true),
      () => (settled = true),
    );
    await waitUntil(() => pings >= 3, 'three heartbeats', 5000);
    assert.equal(settled, false, 'a slow server that answers pings is alive');
    alive = false;
    await assert.rejects(within(pending, 5000, 'dead server detected'), (error: TcpkitError) => {
      assert.equal(error.code, 'TCPKIT_ERR_CONNECTION_FAILED');
      assert.match(error.message, /stopped answering: no pong within 100 ms/);
      return true;
    });
  });

  it('a tcpkit server busy with its maximum of requests still answers heartbeats (fake clock)', async () => {
    const release = gate();
    const { port } = await serve({ maxInFlight: 2, onMessage: async (m) => (await release.promise, m) });
    const proxy = await heartbeatCounter(port);
    const clock = new FakeClock();
    const client = await connect(`${LOOPBACK}:${proxy.port}`, { heartbeatMs: 50, requestTimeoutMs: 0, clock });
    const replies = Promise.all(['a', 'b', 'c'].map((m) => client.send(m)));
    let failed: unknown;
    replies.catch((error: unknown) => (failed = error));
    // Eight heartbeat periods of fake time pass with the server at its cap (requests held back):
    // every PING the client sends gets its PONG, and the client never declares the server dead.
    for (let elapsed = 0; elapsed < 400; elapsed += 5) {
      clock.advance(5);
      await waitUntil(() => proxy.pongs >= proxy.pings, `the PONG of PING ${proxy.pings}`);
      for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
    }
    assert.ok(proxy.pings >= 6, `only ${proxy.pings} heartbeats in 400 ms of fake time`);
    assert.equal(failed, undefined);
    release.open();
    assert.deepEqual((await replies).map(String), ['a', 'b', 'c']);
    await client.close();
  });
});

/** A TCP proxy to `port` that counts the heartbeat PINGs (id 0) going up and the PONGs coming back. */
async function heartbeatCounter(port: number): Promise<{ port: number; pings: number; pongs: number }> {
  const counts = { port: 0, pings: 0, pongs: 0 };
  const count = (from: Socket, to: Socket, type: number, key: 'pings' | 'pongs') => {
    const decoder = new FrameDecoder({ maxFrameBytes: 1 << 24 });
    from.on('data', (chunk: Buffer) => {
      to.write(chunk);
      for (const frame of decoder.push(chunk)) if (frame.type === type && frame.id === 0) counts[key]++;
    });
    from.on('end', () => to.end());
    from.on('error', () => to.destroy());
  };
  const { port: listening } = await faulty((client) => {
    const upstream = createConnection({ host: LOOPBACK, port, allowHalfOpen: true });
    count(client, upstream, FrameType.PING, 'pings');
    count(upstream, client, FrameType.PONG, 'pongs');
    client.on('close', () => upstream.destroy());
  });
  counts.port = listening;
  return counts;
}
