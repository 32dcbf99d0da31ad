import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connect } from '../../src/client/client.js';
import type { TcpkitError } from '../../src/errors.js';
import { FrameType, PREAMBLE } from '../../src/protocol/constants.js';
import { decodeErrorBody, encodeClientHello } from '../../src/protocol/control.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { TokenCheck } from '../../src/server/auth.js';
import { runCli, startCli } from '../helpers/cli.js';
import { LOOPBACK, RawPeer, testServers } from '../helpers/net.js';

const TOKEN = 'correct horse battery staple';
const { cleanups, serve } = testServers();

function helloWith(auth?: Record<string, unknown>): Buffer {
  return Buffer.concat([Buffer.from(PREAMBLE), encodeFrame(FrameType.HELLO, 0, encodeClientHello({ versions: [1], capabilities: [], ...(auth && { auth }) }))]);
}

describe('token check', () => {
  it('matches only the token, whatever the length or type of the attempt', () => {
    const check = new TokenCheck(TOKEN, 100);
    assert.equal(check.matches(TOKEN), true);
    for (const wrong of ['', 'correct horse battery stapl', `${TOKEN} `, TOKEN.toUpperCase(), 42, null, undefined, { token: TOKEN }]) {
      assert.equal(check.matches(wrong), false, String(wrong));
    }
  });

  it('slows repeated failures from one address down, exponentially up to 5 s, and forgets', () => {
    const check = new TokenCheck(TOKEN, 100);
    const t0 = 1_000_000;
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7, 8].map((i) => check.failed('10.0.0.1', t0 + i)),
      [100, 200, 400, 800, 1600, 3200, 5000, 5000],
    );
    assert.equal(check.failed('10.0.0.2', t0), 100, 'another address has its own count');
    check.succeeded('10.0.0.1');
    assert.equal(check.failed('10.0.0.1', t0 + 10), 100, 'a success clears the record');
    assert.equal(check.failed('10.0.0.2', t0 + 11 * 60 * 1000), 100, 'an old record is forgotten');
  });
});

describe('token authentication (real sockets)', () => {
  it('serves a client with the right token', async () => {
    const { address } = await serve({ token: TOKEN });
    const client = await connect(address, { token: TOKEN });
    assert.equal((await client.send('in')).toString(), 'in');
    await client.close();
  });

  it('refuses a wrong or missing token with AUTH_FAILED, before serving any request', async () => {
    const { address, port } = await serve({ token: TOKEN, authFailureDelayMs: 1 });
    await assert.rejects(connect(address, { token: 'not the token' }), (error: TcpkitError) => {
      assert.equal(error.code, 'TCPKIT_ERR_AUTH_FAILED');
      assert.match(error.message, /wrong token/);
      return true;
    });
    await assert.rejects(connect(address), { code: 'TCPKIT_ERR_AUTH_FAILED', message: /requires a token/ });
    // A request pipelined right behind a bad hello is never served.
    const peer = await RawPeer.connect(port);
    peer.socket.write(Buffer.concat([helloWith({ token: 'guess' }), encodeFrame(FrameType.MESSAGE, 1, Buffer.from('sneak'))]));
    await peer.waitClosed();
    assert.deepEqual(
      peer.frames.map((f) => f.type),
      [FrameType.ERROR],
    );
    assert.equal(decodeErrorBody(peer.frames[0]!.payload).code, 'AUTH_FAILED');
  });

  it('answers repeated failures from one address more and more slowly', async () => {
    const { address } = await serve({ token: TOKEN, authFailureDelayMs: 60 });
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      await assert.rejects(connect(address, { token: `wrong-${i}-token` }), { code: 'TCPKIT_ERR_AUTH_FAILED' });
      times.push(performance.now() - started);
    }
    assert.ok(times[0]! >= 55, `first failure answered after ${times[0]} ms`);
    assert.ok(times[2]! >= 235, `third failure answered after ${times[2]} ms (60, 120, 240 ms)`);
  });

  it('refuses raw clients entirely when a token is required', async () => {
    const { port } = await serve({ token: TOKEN, raw: async (request, exchange) => exchange.write(request) });
    const raw = await RawPeer.connect(port);
    raw.socket.write('some-file.txt');
    await raw.waitClosed();
    assert.equal(raw.bytes, 0);
  });

  it('tcpkit serve/send take the token from TCPKIT_TOKEN, and never log it', async () => {
    const withToken = startCli(['serve', '--host', LOOPBACK, '--port', '0'], undefined, { TCPKIT_TOKEN: TOKEN });
    cleanups.push(async () => withToken.child.kill('SIGKILL'));
    const port = Number((await withToken.waitStdout(/^listening on 127\.0\.0\.1:(\d+)$/m))[1]);
    const good = await runCli(['send', `${LOOPBACK}:${port}`, 'hi'], { env: { TCPKIT_TOKEN: TOKEN } });
    assert.equal(good.code, 0, good.stderr);
    assert.equal(good.stdout, 'hi\n');
    const bad = await runCli(['send', `${LOOPBACK}:${port}`, 'hi'], { env: { TCPKIT_TOKEN: 'a wrong token here' } });
    assert.equal(bad.code, 3);
    assert.match(bad.stderr, /^tcpkit: server refused the connection: wrong token\n$/);
    await withToken.waitStderr(/authentication failed/);
    withToken.child.kill('SIGTERM');
    const exit = await withToken.exit();
    for (const output of [exit.stdout, exit.stderr]) {
      assert.ok(!output.includes(TOKEN) && !output.includes('a wrong token here'), 'no token in the logs');
    }
  });
});
