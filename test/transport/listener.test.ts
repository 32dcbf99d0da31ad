/**
 * The transport Listener on real loopback sockets, port 0: bind, the bound address, accept,
 * half-open sockets, close.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as net from 'node:net';
import { it } from 'node:test';
import { Listener } from '../../src/transport/listener.js';
import type { Socket } from '../../src/transport/dial.js';

const LOOPBACK = '127.0.0.1';

it('binds port 0, reports the real address, accepts half-open sockets, and closes', async () => {
  const accepted: Socket[] = [];
  const listener = new Listener((socket) => {
    accepted.push(socket);
    // A client that half-closes must still get its reply: our side stays writable after its FIN.
    socket.on('end', () => socket.end('reply after your FIN'));
  });
  assert.equal(listener.address(), undefined);
  const address = await listener.listen({ host: LOOPBACK, port: 0, backlog: 8 });
  assert.equal(address.host, LOOPBACK);
  assert.ok(address.port > 0);
  assert.deepEqual(listener.address(), address);
  const plain = new net.Socket();
  assert.equal(listener.secure(plain), plain, 'no TLS: the socket itself');

  const client = net.connect({ host: LOOPBACK, port: address.port, allowHalfOpen: true });
  await once(client, 'connect');
  client.end();
  const chunks: Buffer[] = [];
  client.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(client, 'end');
  assert.equal(Buffer.concat(chunks).toString(), 'reply after your FIN');
  assert.equal(accepted.length, 1);
  client.destroy();

  await listener.close();
  assert.equal(listener.address(), undefined);
  await assert.rejects(
    new Promise((resolve, reject) => net.connect({ host: LOOPBACK, port: address.port }).on('connect', resolve).on('error', reject)),
    { code: 'ECONNREFUSED' },
  );
});

it('rejects listen() when the port is taken, and close() resolves for a listener never bound', async () => {
  const first = new Listener(() => {});
  const { port } = await first.listen({ host: LOOPBACK, port: 0, backlog: 8 });
  const second = new Listener(() => {});
  await assert.rejects(second.listen({ host: LOOPBACK, port, backlog: 8 }), { code: 'EADDRINUSE' });
  await second.close();
  await first.close();
  await new Listener(() => {}).close();
});
