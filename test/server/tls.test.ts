import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tls from 'node:tls';
import { before, describe, it } from 'node:test';
import { connect } from '../../src/client/client.js';
import type { TcpkitError } from '../../src/errors.js';
import { download } from '../../src/services/files/download/save.js';
import { FileRoot } from '../../src/services/files/jail.js';
import { fileService } from '../../src/services/files/download/service.js';
import { runCli, startCliServer } from '../helpers/cli.js';
import { LOOPBACK, testServers, within } from '../helpers/net.js';

const { serve, cleanups } = testServers();
let dir = '';
let cert: Buffer;
let key: Buffer;
let pin = '';
let openssl = true;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tcpkit-tls-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    openssl = false;
    return;
  }
  const result = await runCli(['cert', '--out', dir]);
  assert.equal(result.code, 0, result.stderr);
  cert = await readFile(path.join(dir, 'tcpkit-cert.pem'));
  key = await readFile(path.join(dir, 'tcpkit-key.pem'));
  pin = new X509Certificate(cert).fingerprint256;
  assert.ok(result.stdout.includes(`sha256:      ${pin}`), result.stdout);
});

describe('TLS', () => {
  it('carries messages and files, trusting the certificate by CA or by pin', async (t) => {
    if (!openssl) return t.skip('the openssl command is not installed: no certificate to test with');
    await writeFile(path.join(dir, 'data.bin'), Buffer.alloc(3 * 1024 * 1024, 5));
    const { address } = await serve({ tls: { cert, key }, services: [fileService(await FileRoot.open(dir))] });
    const byCa = await connect(address, { tls: { ca: cert } });
    assert.equal((await byCa.send('secret')).toString(), 'secret');
    const saved = path.join(dir, 'copy.bin');
    await download(byCa, 'data.bin', saved);
    assert.deepEqual(await readFile(saved), Buffer.alloc(3 * 1024 * 1024, 5));
    await byCa.close();
    const byPin = await connect(address, { tls: { pin: pin.replace(/:/g, '').toLowerCase() } });
    assert.equal((await byPin.send('pinned')).toString(), 'pinned');
    await byPin.close();
  });

  it('refuses an untrusted certificate, a wrong pin, and TLS older than 1.2', async (t) => {
    if (!openssl) return t.skip('the openssl command is not installed: no certificate to test with');
    const { address, port } = await serve({ tls: { cert, key } });
    await assert.rejects(connect(address, { tls: {} }), (error: TcpkitError) => {
      assert.equal(error.code, 'TCPKIT_ERR_TLS_FAILED');
      assert.match(error.message, /self-signed certificate/);
      return true;
    });
    await assert.rejects(connect(address, { tls: { pin: 'ab'.repeat(32) } }), { code: 'TCPKIT_ERR_TLS_FAILED', message: /does not match the pin/ });
    const old = tls.connect({ host: LOOPBACK, port, maxVersion: 'TLSv1.1', minVersion: 'TLSv1', rejectUnauthorized: false });
    const [error] = (await within(once(old, 'error'), 5000, 'TLS 1.1 refused')) as [Error];
    assert.match(String(error), /version|protocol|alert/i);
  });

  it('gives up a TLS connect aborted at once, while node:tls is still being imported', async (t) => {
    if (!openssl) return t.skip('the openssl command is not installed: no certificate to test with');
    const { address } = await serve({ tls: { cert, key } });
    const controller = new AbortController();
    const pending = connect(address, { tls: { ca: cert }, signal: controller.signal });
    controller.abort();
    await assert.rejects(pending, { code: 'TCPKIT_ERR_ABORTED' });
  });

  it('refuses a plaintext client (it learns the server speaks something else) and keeps serving', async (t) => {
    if (!openssl) return t.skip('the openssl command is not installed: no certificate to test with');
    const { address } = await serve({ tls: { cert, key } });
    await assert.rejects(connect(address, { connectTimeoutMs: 5000 }), (error: TcpkitError) => {
      assert.ok(['TCPKIT_ERR_CONNECTION_CLOSED', 'TCPKIT_ERR_NOT_TCPKIT', 'TCPKIT_ERR_CONNECTION_FAILED'].includes(error.code), error.code);
      return true;
    });
    const good = await connect(address, { tls: { ca: cert } });
    await good.close();
  });

  it('applies the handshake deadline and the caps to connections still handshaking', async (t) => {
    if (!openssl) return t.skip('the openssl command is not installed: no certificate to test with');
    const { server, port, address } = await serve({ tls: { cert, key }, handshakeTimeoutMs: 200, maxConnections: 1 });
    const silent = net.connect({ host: LOOPBACK, port });
    silent.on('error', () => {});
    await once(silent, 'connect');
    // The silent connection holds the only slot: a TLS client is refused meanwhile.
    await assert.rejects(connect(address, { tls: { ca: cert }, connectTimeoutMs: 5000 }));
    assert.equal(server.stats().refused.total, 1);
    await within(once(silent, 'close'), 5000, 'handshake deadline');
    const after = await connect(address, { tls: { ca: cert } });
    await after.close();
  });

  it('tcpkit serve --tls-cert/--tls-key and tcpkit send --pin / --ca', async (t) => {
    if (!openssl) return t.skip('the openssl command is not installed: no certificate to test with');
    const server = await startCliServer(['--tls-cert', path.join(dir, 'tcpkit-cert.pem'), '--tls-key', path.join(dir, 'tcpkit-key.pem')]);
    cleanups.push(async () => server.child.kill('SIGKILL'));
    const pinned = await runCli(['send', `${LOOPBACK}:${server.port}`, 'hi', '--pin', pin]);
    assert.equal(pinned.code, 0, pinned.stderr);
    assert.equal(pinned.stdout, 'hi\n');
    const byCa = await runCli(['send', `${LOOPBACK}:${server.port}`, 'ca', '--ca', path.join(dir, 'tcpkit-cert.pem')]);
    assert.equal(byCa.stdout, 'ca\n');
    const plain = await runCli(['send', `${LOOPBACK}:${server.port}`, 'x']);
    assert.equal(plain.code, 4);
    assert.match(plain.stderr, /^tcpkit: .* closed the connection during the hello \(does it require TLS\?/);
    const untrusted = await runCli(['send', `${LOOPBACK}:${server.port}`, 'x', '--tls']);
    assert.equal(untrusted.code, 3);
    assert.match(untrusted.stderr, /TLS with .* failed: self-signed certificate/);
  });
});

