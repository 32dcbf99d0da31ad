/**
 * RawSession over real loopback sockets, its deadlines on a fake clock: where a request ends
 * (quiet period, newline, EOF, too long), how a refusal and a failure midway look to the client,
 * the handshake deadline from accept, send-stall, linger, drain.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { TcpkitError } from '../../src/errors.js';
import type { RawHandler } from '../../src/raw/handler.js';
import { RAW_QUIET_MS } from '../../src/raw/request.js';
import { RawSession, type RawOpening } from '../../src/raw/session.js';
import { duplexPair } from '../helpers/duplex-pair.js';
import { gate, waitUntil } from '../helpers/net.js';
import { bench, LINGER_MS, TestHost, TIMEOUTS } from './helpers.js';

const connect = await bench();

/** A raw session over a fresh connection; `server` is its socket. */
async function open(host: TestHost, opening?: RawOpening, autoEnd = true): Promise<{ client: Awaited<ReturnType<typeof connect>>['client']; session: RawSession; server: Socket }> {
  let server: Socket | undefined;
  const { client, accepted } = await connect((socket) => {
    server = socket;
    return new RawSession(socket, host, '', opening);
  }, autoEnd);
  return { client, session: accepted as RawSession, server: server! };
}

/** Settles what the event loop has pending (socket events already delivered). */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

const echo: RawHandler = (request, exchange) => exchange.write(Buffer.from(`<${request.toString('utf8')}>`));

describe('RawSession: where a request ends', () => {
  it('at the quiet period on the injected clock, restarted by every chunk', async () => {
    const host = new TestHost(echo);
    const { client, session } = await open(host);
    client.socket.write('name');
    await waitUntil(() => session.bytesIn === 4, 'the first bytes');
    host.clock.advance(RAW_QUIET_MS - 1);
    client.socket.write('.txt');
    await waitUntil(() => session.bytesIn === 8, 'more bytes');
    host.clock.advance(RAW_QUIET_MS - 1);
    await turn();
    assert.deepEqual(host.requests, [], 'still gathering: every chunk restarts the quiet period');
    host.clock.advance(1);
    assert.deepEqual(host.requests, ['name.txt']);
    await client.waitEnding();
    assert.equal(client.data, '<name.txt>');
    assert.equal(client.ending, 'end');
    client.socket.end();
    await host.waitClosed();
    assert.deepEqual(host.events, ['pre-auth-ended', 'peer-end', 'closed:eof']);
    assert.equal(session.requests, 1);
    assert.equal(session.bytesOut, '<name.txt>'.length);
    assert.equal(host.clock.pending, 0, 'no timer left');
  });

  it('at a newline, at once (the line ending is not part of it)', async () => {
    const host = new TestHost(echo);
    const { client } = await open(host);
    client.socket.write('a.txt\r\nignored');
    await client.waitEnding();
    assert.deepEqual(host.requests, ['a.txt']);
    assert.equal(client.data, '<a.txt>');
  });

  it('at EOF, at once', async () => {
    const host = new TestHost(echo);
    const { client } = await open(host);
    client.socket.end('b.txt');
    await client.waitEnding();
    await host.waitClosed();
    assert.deepEqual(host.requests, ['b.txt']);
    assert.deepEqual(host.events, ['peer-end', 'pre-auth-ended', 'closed:eof']);
    assert.equal(client.data, '<b.txt>');
  });

  it('a request over the limit is refused: closed with no data', async () => {
    const host = new TestHost(echo);
    const { client } = await open(host);
    client.socket.write(Buffer.alloc(5000, 0x61));
    await client.waitEnding();
    assert.equal(client.ending, 'end');
    assert.equal(client.data, '');
    assert.deepEqual(host.requests, []);
    assert.equal((host.rawErrors[0] as TcpkitError).code, 'TCPKIT_ERR_BAD_REQUEST');
    assert.deepEqual(host.events.slice(0, 2), ['pre-auth-ended', 'raw-error']);
  });
});

describe('RawSession over any Duplex (an in-memory pair, no socket)', () => {
  it('gathers, serves and ends the same way; the peer is "memory"', async () => {
    const host = new TestHost((request, exchange) => exchange.write(Buffer.from(`${exchange.peer.label}:${request.toString('utf8')}`)));
    const [server, client] = duplexPair();
    const session = new RawSession(server, host);
    const parts: Buffer[] = [];
    let ended = false;
    client.on('data', (chunk: Buffer) => parts.push(chunk));
    client.on('end', () => (ended = true));
    client.write('name');
    await waitUntil(() => session.bytesIn === 4, 'the bytes');
    host.clock.advance(RAW_QUIET_MS);
    await waitUntil(() => ended, 'the end of the reply');
    assert.equal(Buffer.concat(parts).toString('utf8'), 'memory:name');
    // Reading stopped at the request: unlike a socket, a paused in-memory stream never reports
    // the client's EOF, so the linger ends it.
    client.end();
    host.clock.advance(LINGER_MS);
    await host.waitClosed();
    assert.deepEqual(host.events, ['pre-auth-ended', 'closed:local']);
  });
});

describe('RawSession: refusals and failures', () => {
  it('a refusal before any byte closes with no data (FIN, not a reset)', async () => {
    const refusal = new TcpkitError('NOT_FOUND', 'no such file');
    const host = new TestHost(() => Promise.reject(refusal));
    const { client } = await open(host);
    client.socket.write('missing.bin\n');
    await client.waitEnding();
    assert.equal(client.ending, 'end');
    assert.equal(client.data, '');
    assert.deepEqual(host.rawErrors, [refusal]);
    await host.waitClosed();
    assert.deepEqual(host.events, ['pre-auth-ended', 'raw-error', 'peer-end', 'closed:eof']);
  });

  it('a failure mid-stream resets the connection: the cut is visible', async () => {
    const failure = new Error('disk gone');
    const read = gate();
    const host = new TestHost(async (_request, exchange) => {
      await exchange.write(Buffer.from('partial'));
      await read.promise;
      throw failure;
    });
    const { client } = await open(host);
    client.socket.write('big.bin\n');
    // Fails once the client has read what came (a reset that finds unread bytes at the client
    // may read there as a clean end after them: the kernel's way, not ours).
    await waitUntil(() => client.data === 'partial', 'the first bytes');
    read.open(undefined);
    await client.waitEnding();
    assert.equal(client.ending, 'ECONNRESET');
    assert.equal(client.data, 'partial');
    assert.deepEqual(host.rawErrors, [failure]);
    await host.waitClosed();
    assert.deepEqual(host.events, ['pre-auth-ended', 'raw-error:cut', 'closed:local']);
  });

  it('a failure in the turn of a write: the reset goes out before the bytes, which never leave', async () => {
    const host = new TestHost(async (_request, exchange) => {
      await exchange.write(Buffer.from('partial'));
      throw new Error('disk gone');
    });
    const { client } = await open(host);
    client.socket.write('big.bin\n');
    await client.waitEnding();
    assert.equal(client.ending, 'ECONNRESET');
    assert.equal(client.data, '');
    assert.deepEqual(host.events.slice(0, 2), ['pre-auth-ended', 'raw-error:cut']);
  });

  it('the connection closing aborts the handler', async () => {
    let reason: unknown;
    const host = new TestHost(
      (_request, exchange) =>
        new Promise<void>((_resolve, reject) => {
          exchange.signal.addEventListener('abort', () => reject((reason = exchange.signal.reason)));
        }),
    );
    const { client } = await open(host);
    client.socket.write('slow\n');
    await waitUntil(() => host.requests.length === 1, 'the handler to start');
    client.socket.resetAndDestroy();
    await host.waitClosed();
    assert.equal((reason as TcpkitError).code, 'TCPKIT_ERR_CONNECTION_CLOSED');
  });
});

describe('RawSession: deadlines', () => {
  it('the request must be complete within the handshake deadline of accept, not of the first byte', async () => {
    const host = new TestHost(echo);
    // Accepted 100 ms before the handshake deadline (a sniffer waited for the first byte meanwhile).
    const { client, session } = await open(host, { startedAt: host.clock.now() - (TIMEOUTS.handshakeMs - 100) });
    client.socket.write('slow');
    await waitUntil(() => session.bytesIn === 4, 'the first bytes');
    host.clock.advance(99);
    assert.deepEqual(host.events, []);
    host.clock.advance(1);
    assert.deepEqual(host.events, ['timeout:handshake']);
    await client.waitClosed();
    assert.equal(client.data, '', 'closed without a byte');
    assert.deepEqual(host.requests, [], 'never served');
    await host.waitClosed();
    assert.deepEqual(host.events, ['timeout:handshake', 'pre-auth-ended', 'closed:local']);
  });

  it('a client that stops reading is reset at the send-stall deadline', async () => {
    let aborted = false;
    const host = new TestHost(async (_request, exchange) => {
      const chunk = Buffer.alloc(1024 * 1024, 0x78);
      try {
        for (;;) await exchange.write(chunk);
      } finally {
        aborted = exchange.signal.aborted;
      }
    });
    const { client, session, server } = await open(host);
    client.socket.pause(); // reads nothing from now on
    client.socket.write('huge.bin\n');
    await waitUntil(() => session.bytesOut > 0 && server.writableNeedDrain, 'the send buffer to fill');
    // Wait until the kernel takes no more (its buffers are full), in real time, bounded.
    let last = -1;
    await waitUntil(
      () => {
        const queued = session.queuedBytes();
        const still = queued === last;
        last = queued;
        return still;
      },
      'the kernel to stop taking bytes',
      10_000,
    );
    host.clock.advance(TIMEOUTS.sendStallMs / 2);
    assert.deepEqual(host.events, ['pre-auth-ended'], 'half the deadline: not yet');
    host.clock.advance(TIMEOUTS.sendStallMs / 2);
    assert.deepEqual(host.events, ['pre-auth-ended', 'timeout:send-stall']);
    await host.waitClosed();
    assert.equal(host.events.at(-1), 'closed:local');
    assert.ok(aborted, 'the handler was stopped');
    // (What the client reads of the reset depends on the kernel: with its receive queue full,
    // Linux shows the bytes queued, then an end.)
    client.socket.resume();
    await client.waitClosed();
    assert.ok(Buffer.concat(client.parts).length < session.bytesOut, 'cut short');
  });

  it('after the reply, a client that never closes is destroyed lingerTimeoutMs after our end', async () => {
    const host = new TestHost(echo);
    const { client } = await open(host, {}, false);
    client.socket.write('x\n');
    await client.waitEnding();
    assert.equal(client.data, '<x>');
    host.clock.advance(LINGER_MS - 1);
    await turn();
    assert.ok(!host.events.some((event) => event.startsWith('closed:')), 'still lingering');
    host.clock.advance(1);
    await host.waitClosed();
    assert.deepEqual(host.events, ['pre-auth-ended', 'closed:local']);
    client.socket.destroy();
  });
});

describe('RawSession: drain', () => {
  it('while the request is being gathered: closed at once, without a byte', async () => {
    const host = new TestHost(echo);
    const { client, session } = await open(host);
    client.socket.write('par');
    await waitUntil(() => session.bytesIn === 3, 'the first bytes');
    session.drain();
    await client.waitClosed();
    assert.equal(client.data, '');
    assert.deepEqual(host.requests, []);
    assert.deepEqual(host.events, ['pre-auth-ended', 'closed:local']);
  });

  it('while it is served: the request finishes first', async () => {
    const release = gate();
    const host = new TestHost(async (_request, exchange) => {
      await release.promise;
      await exchange.write(Buffer.from('done'));
    });
    const { client, session } = await open(host);
    client.socket.write('x\n');
    await waitUntil(() => host.requests.length === 1, 'the handler to start');
    session.drain();
    await turn();
    assert.equal(client.ending, undefined, 'not ended while the request runs');
    release.open(undefined);
    await client.waitEnding();
    assert.equal(client.data, 'done');
    assert.equal(client.ending, 'end');
  });
});
