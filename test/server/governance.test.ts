import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { connect } from '../../src/client/client.js';
import type { TcpkitError } from '../../src/errors.js';
import { Admission } from '../../src/server/admission.js';
import { FrameType } from '../../src/protocol/constants.js';
import { decodeErrorBody } from '../../src/protocol/control.js';
import { clientOpening, LOOPBACK, RawPeer, startServer, within } from '../helpers/net.js';
import { runCli, startCliServer } from '../helpers/cli.js';

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});
async function serve(...args: Parameters<typeof startServer>) {
  const started = await startServer(...args);
  cleanups.push(() => started.server.destroy());
  return started;
}

async function until(predicate: () => boolean, what: string): Promise<void> {
  await within(
    (async () => {
      while (!predicate()) await new Promise((resolve) => setTimeout(resolve, 5));
    })(),
    5000,
    what,
  );
}

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
    await until(() => server.stats().accepted === 12, 'accepted');
    peers.forEach((peer, i) => {
      if (i % 3 === 0) peer.socket.end();
      else if (i % 3 === 1) peer.socket.resetAndDestroy();
      // i % 3 === 2: never says hello, closed by the handshake deadline
    });
    await until(() => server.connections === 0, 'all connections gone');
    assert.deepEqual(server.stats().connectionsPerIp, {});
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
