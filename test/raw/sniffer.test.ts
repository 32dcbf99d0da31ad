/**
 * The choice at accept (src/raw/sniffer.ts) over real loopback sockets and a fake clock: the
 * first byte builds a framed session or a raw one, which reads every byte; the handshake
 * deadline counts from accept whatever is chosen; a connection that sends nothing, or ends, or
 * is drained meanwhile is closed without a byte. And through a Server: counted once.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { describe, it } from 'node:test';
import { RawSession } from '../../src/raw/session.js';
import { Sniffer } from '../../src/raw/sniffer.js';
import { clientOpening, LOOPBACK, testServers, waitUntil, within } from '../helpers/net.js';
import { bench, TestClient, TestHost, TIMEOUTS } from './helpers.js';

const connect = await bench();
const { serve } = testServers();

describe('Sniffer: the first byte chooses', () => {
  it("the preamble's 0x89 builds a framed session, fed every byte, with the accept time", async () => {
    const host = new TestHost(() => {});
    const acceptedAt = host.clock.now();
    const { client, accepted } = await connect((socket) => new Sniffer(socket, host, '10.0.0.1'));
    host.clock.advance(500);
    const opening = clientOpening();
    client.socket.write(opening);
    await waitUntil(() => host.framedSession?.bytesIn === opening.length, 'the framed session to read the opening');
    const framed = host.framedSession!;
    assert.deepEqual(Buffer.concat(framed.received), opening, 'the first chunk was handed back, nothing lost');
    assert.equal(framed.startedAt, acceptedAt, 'the handshake deadline counts from accept');
    assert.equal(framed.admittedIp, '10.0.0.1');
    assert.equal(host.chosenSession, framed);
    assert.deepEqual(host.events, ['chosen']);
    assert.equal(accepted.bytesIn, 0);
    assert.equal(host.clock.pending, 0, "the sniffer's deadline is gone");
  });

  it('any other byte builds a raw session, which reads the request from its first byte', async () => {
    const host = new TestHost((request, exchange) => exchange.write(Buffer.from(`<${request.toString('utf8')}>`)));
    const { client } = await connect((socket) => new Sniffer(socket, host));
    client.socket.write('hello\n');
    await client.waitEnding();
    assert.equal(client.data, '<hello>');
    assert.ok(host.chosenSession instanceof RawSession);
    assert.deepEqual(host.requests, ['hello']);
    await host.waitClosed();
    assert.equal(host.closedSession, host.chosenSession, 'the raw session reports its own close');
    assert.deepEqual(host.events, ['chosen', 'pre-auth-ended', 'peer-end', 'closed:eof']);
  });

  it("a raw request's handshake deadline counts from accept, not from its first byte", async () => {
    const host = new TestHost(() => {});
    const { client } = await connect((socket) => new Sniffer(socket, host));
    host.clock.advance(TIMEOUTS.handshakeMs - 100);
    client.socket.write('slo');
    await waitUntil(() => host.chosenSession !== undefined && host.chosenSession.bytesIn === 3, 'the raw session to read');
    host.clock.advance(99);
    assert.deepEqual(host.events, ['chosen']);
    host.clock.advance(1);
    assert.deepEqual(host.events, ['chosen', 'timeout:handshake']);
    await client.waitClosed();
    assert.equal(client.data, '');
    assert.deepEqual(host.requests, []);
  });
});

describe('Sniffer: before the first byte', () => {
  it('no byte within the handshake deadline: closed without one', async () => {
    const host = new TestHost(() => {});
    const { client, accepted } = await connect((socket) => new Sniffer(socket, host));
    host.clock.advance(TIMEOUTS.handshakeMs - 1);
    assert.deepEqual(host.events, []);
    host.clock.advance(1);
    assert.deepEqual(host.events, ['timeout:handshake']);
    await client.waitClosed();
    assert.equal(client.data, '');
    await host.waitClosed();
    assert.deepEqual(host.events, ['timeout:handshake', 'pre-auth-ended', 'closed:local']);
    assert.equal(host.closedSession, accepted);
    assert.equal(host.clock.pending, 0);
  });

  it('drain() closes it at once, without a byte', async () => {
    const host = new TestHost(() => {});
    const { client, accepted } = await connect((socket) => new Sniffer(socket, host));
    accepted.drain();
    await client.waitClosed();
    assert.equal(client.data, '');
    await host.waitClosed();
    assert.deepEqual(host.events, ['pre-auth-ended', 'closed:local']);
  });

  it('EOF before a byte: reported, and closed without a byte', async () => {
    const host = new TestHost(() => {});
    const { client } = await connect((socket) => new Sniffer(socket, host));
    client.socket.end();
    await client.waitClosed();
    assert.equal(client.data, '');
    await host.waitClosed();
    assert.deepEqual(host.events, ['peer-end', 'pre-auth-ended', 'closed:local']);
  });
});

describe('a Server with raw mode: the choice keeps one registry entry', () => {
  it('counts the connection once, in its hello while the request is gathered, past it once served', async () => {
    const { server, port } = await serve({ raw: (request, exchange) => exchange.write(request) });
    const socket = net.connect({ host: LOOPBACK, port, allowHalfOpen: true });
    const client = new TestClient(socket);
    await within(new Promise((resolve) => socket.once('connect', resolve)), 5000, 'connect');
    await waitUntil(() => server.stats().connections === 1, 'the connection to be accepted');
    assert.equal(server.stats().preAuth, 1);
    socket.write('na');
    await waitUntil(() => server.stats().bytesIn === 2, 'the raw session to read');
    assert.equal(server.stats().connections, 1, 'the raw session took the place of the sniffer');
    assert.equal(server.stats().preAuth, 1, 'still in its hello');
    socket.write('me\n');
    await client.waitEnding();
    assert.equal(client.data, 'name');
    await waitUntil(() => server.stats().connections === 0, 'the connection to close');
    const stats = server.stats();
    assert.deepEqual([stats.preAuth, stats.requests, stats.bytesIn, stats.bytesOut, stats.accepted], [0, 1, 5, 4, 1]);
  });
});
