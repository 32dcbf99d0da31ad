/**
 * rawExchange / rawSend against scripted raw servers on real sockets (no framing at all, as the
 * tutorial's Python servers and netcat).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { rawExchange, rawSend } from '../../src/raw/client.js';
import type { TcpkitError } from '../../src/errors.js';
import { faultyServer, freePort, gate, LOOPBACK, waitUntil, within } from '../helpers/net.js';
import { FakeClock } from '../helpers/fake-clock.js';

const closers: Array<() => Promise<void>> = [];
after(async () => {
  for (const close of closers.splice(0)) await close();
});

/** A raw server whose sockets run `script`; closed after the file. */
async function rawServer(script: (socket: Socket) => void): Promise<string> {
  const server = await faultyServer(script);
  closers.push(server.close);
  return `${LOOPBACK}:${server.port}`;
}

/** Reads a socket until the client half-closes, then hands over what came. */
function readRequest(socket: Socket, then: (request: Buffer) => void): void {
  const parts: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => parts.push(chunk));
  socket.on('end', () => then(Buffer.concat(parts)));
}

describe('rawSend / rawExchange', () => {
  it('sends the message, half-closes, and returns everything the server sent before closing', async () => {
    const address = await rawServer((socket) => readRequest(socket, (request) => socket.end(`你哈啊 <${request.toString('utf8')}>`)));
    const reply = await within(rawSend(address, 'hello'), 5000, 'raw reply');
    assert.equal(reply.toString('utf8'), '你哈啊 <hello>', 'the server saw the whole message, then our EOF');
  });

  it('takes a reply the server sends before it reads anything (download_server.py style, one send then close)', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const address = await rawServer((socket) => {
      socket.once('data', () => socket.end(data));
    });
    const reply = await within(rawSend(address, 'big.bin'), 10_000, 'raw reply');
    assert.ok(reply.equals(data));
  });

  it('returns an empty reply (0 bytes) when the server closes without a byte', async () => {
    const address = await rawServer((socket) => readRequest(socket, () => socket.end()));
    assert.equal((await within(rawSend(address, 'missing.bin'), 5000, 'raw reply')).length, 0);
    const seen: Buffer[] = [];
    const bytes = await within(
      rawExchange(address, Buffer.from('missing.bin'), (chunk) => {
        seen.push(chunk);
      }),
      5000,
      'raw exchange',
    );
    assert.equal(bytes, 0);
    assert.deepEqual(seen, []);
  });

  it('feeds a slow async sink in order, pausing the socket (backpressure), and counts every byte', async () => {
    const data = randomBytes(4 * 1024 * 1024);
    const address = await rawServer((socket) => readRequest(socket, () => socket.end(data)));
    const hash = createHash('sha256');
    let slowOnes = 0;
    const bytes = await within(
      rawExchange(address, Buffer.from('x'), async (chunk) => {
        hash.update(chunk);
        if (slowOnes++ < 5) await new Promise((resolve) => setImmediate(resolve));
      }),
      10_000,
      'raw exchange',
    );
    assert.equal(bytes, data.length);
    assert.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
  });

  it('rejects with the sink’s error when the sink fails, and closes the connection', async () => {
    const closed = gate();
    const address = await rawServer((socket) => {
      socket.on('close', () => closed.open());
      // More than the socket buffers hold: the server is still writing when the client gives up.
      readRequest(socket, () => socket.end(Buffer.alloc(16 * 1024 * 1024)));
    });
    const failure = new Error('disk full');
    await assert.rejects(
      within(rawExchange(address, Buffer.from('x'), () => Promise.reject(failure)), 5000, 'raw exchange'),
      (error) => error === failure,
    );
    await within(closed.promise, 5000, 'server socket closed');
  });

  it('fails with REQUEST_TIMEOUT when the server never answers and never closes', async () => {
    const address = await rawServer(() => {
      /* reads nothing, sends nothing, never closes */
    });
    const started = Date.now();
    await assert.rejects(within(rawSend(address, 'anyone?', { requestTimeoutMs: 150 }), 5000, 'raw send'), (error: TcpkitError) => {
      assert.equal(error.code, 'TCPKIT_ERR_REQUEST_TIMEOUT');
      assert.match(error.message, /no data from 127\.0\.0\.1:\d+ within 150 ms/);
      return true;
    });
    assert.ok(Date.now() - started >= 140, 'not before the timeout');
  });

  it('times out on a stall after some data, not only on a silent server', async () => {
    const address = await rawServer((socket) => readRequest(socket, () => socket.write('partial')));
    await assert.rejects(within(rawSend(address, 'x', { requestTimeoutMs: 150 }), 5000, 'raw send'), { code: 'TCPKIT_ERR_REQUEST_TIMEOUT' });
  });

  it('waits for data on the injected clock, each chunk restarting the wait', async () => {
    let server: Socket | undefined;
    const address = await rawServer((socket) =>
      readRequest(socket, () => {
        server = socket;
        socket.write('one');
      }),
    );
    const clock = new FakeClock();
    const chunks: string[] = [];
    let outcome: string | undefined;
    rawExchange(address, Buffer.from('x'), (chunk) => void chunks.push(chunk.toString()), { requestTimeoutMs: 60_000, clock }).then(
      () => (outcome = 'resolved'),
      (error: TcpkitError) => (outcome = error.code),
    );
    await waitUntil(() => chunks.length === 1, 'the first chunk');
    clock.advance(59_999);
    server!.write('two');
    await waitUntil(() => chunks.length === 2, 'the second chunk');
    clock.advance(59_999);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(outcome, undefined, 'each chunk restarted the wait');
    clock.advance(1);
    await waitUntil(() => outcome !== undefined, 'the exchange to fail');
    assert.equal(outcome, 'TCPKIT_ERR_REQUEST_TIMEOUT');
    assert.equal(clock.pending, 0, 'no timer left once closed');
  });

  it('fails with CONNECTION_REFUSED when nothing listens', async () => {
    const port = await freePort();
    await assert.rejects(within(rawSend(`${LOOPBACK}:${port}`, 'x'), 5000, 'raw send'), (error: TcpkitError) => {
      assert.equal(error.code, 'TCPKIT_ERR_CONNECTION_REFUSED');
      assert.equal(error.message, `no server listening at ${LOOPBACK}:${port}`);
      return true;
    });
  });

  it('rejects a reply larger than maxReplyBytes with CONNECTION_FAILED (a sink that throws fails the exchange)', async () => {
    const address = await rawServer((socket) => readRequest(socket, () => socket.end(Buffer.alloc(100_000, 1))));
    await assert.rejects(within(rawSend(address, 'x', {}, 1000), 5000, 'raw send'), (error: TcpkitError) => {
      assert.equal(error.code, 'TCPKIT_ERR_CONNECTION_FAILED');
      assert.match(error.message, /raw reply over 1000 bytes/);
      return true;
    });
  });
});
