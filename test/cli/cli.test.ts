import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { connect } from '../../src/client/client.js';
import { runCli, startCliServer, type RunningCli } from '../helpers/cli.js';
import { freePort, LOOPBACK } from '../helpers/net.js';

const servers: RunningCli[] = [];
after(() => {
  for (const server of servers) server.child.kill('SIGKILL');
});
async function cliServer(extra: string[] = []) {
  const server = await startCliServer(extra);
  servers.push(server);
  return server;
}

describe('tcpkit serve', () => {
  it('prints "listening on HOST:PORT" first, answers, logs each message with the address, and stops cleanly on Ctrl-C', async () => {
    const server = await cliServer();
    assert.match(server.stdout().split('\n')[0]!, /^listening on 127\.0\.0\.1:\d+$/);
    const client = await connect(`${LOOPBACK}:${server.port}`);
    assert.equal((await client.send('hello tcpkit')).toString(), 'hello tcpkit');
    await server.waitStdout(/^127\.0\.0\.1:\d+: hello tcpkit$/m);
    await server.waitStderr(/127\.0\.0\.1:\d+ connected/);
    await client.close();
    await server.waitStderr(/127\.0\.0\.1:\d+ disconnected \(closed by the client\)/);
    server.child.kill('SIGINT');
    const result = await server.exit();
    assert.equal(result.code, 0, result.stderr);
  });

  it('answers every message with --reply TEXT, as the tutorial server does', async () => {
    const server = await cliServer(['--reply', '你哈啊']);
    const result = await runCli(['send', `${LOOPBACK}:${server.port}`, 'anything']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '你哈啊\n');
  });

  it('prints nothing but the listening line with --quiet', async () => {
    const server = await cliServer(['--quiet']);
    const result = await runCli(['send', `${LOOPBACK}:${server.port}`, 'psst']);
    assert.equal(result.code, 0);
    server.child.kill('SIGTERM');
    const exit = await server.exit();
    assert.equal(exit.code, 0);
    assert.match(exit.stdout, /^listening on 127\.0\.0\.1:\d+\n$/);
    assert.equal(exit.stderr, '');
  });

  it('lets a request in flight finish on SIGTERM, then exits 0', async () => {
    const server = await cliServer();
    const client = await connect(`${LOOPBACK}:${server.port}`);
    await client.send('warm');
    server.child.kill('SIGTERM');
    await server.waitStderr(/shutting down/);
    const exit = await server.exit();
    assert.equal(exit.code, 0);
    assert.ok((await client.closed()) instanceof Error, 'the client was told the server is going');
  });

  it('refuses a port already in use with a one-line reason', async () => {
    const server = await cliServer();
    const result = await runCli(['serve', '--host', LOOPBACK, '--port', String(server.port)]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /^tcpkit: .*EADDRINUSE.*\n$/);
  });
});

describe('tcpkit send', () => {
  it('sends each argument as one message over one kept connection and prints each reply on its own line', async () => {
    const server = await cliServer();
    const result = await runCli(['send', `${LOOPBACK}:${server.port}`, 'one', 'two words', 'three']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'one\ntwo words\nthree\n');
    await server.waitStdout(/: three$/m);
    assert.equal((server.stderr().match(/ connected/g) ?? []).length, 1, 'one connection for all messages');
  });

  it('opens one connection per message with --short', async () => {
    const server = await cliServer();
    const result = await runCli(['send', '--short', `${LOOPBACK}:${server.port}`, 'a', 'b', 'c']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'a\nb\nc\n');
    await server.waitStderr(/(connected[\s\S]*){3}/);
    assert.equal((server.stderr().match(/ connected/g) ?? []).length, 3);
  });

  it('escapes control characters in replies so they cannot drive the terminal', async () => {
    const server = await cliServer();
    const result = await runCli(['send', `${LOOPBACK}:${server.port}`, 'red\u001b[31m\nline']);
    assert.equal(result.stdout, 'red\\x1b[31m\\nline\n');
  });

  it('exits 3 with "no server listening at HOST:PORT" when nothing listens', async () => {
    const port = await freePort();
    const result = await runCli(['send', `${LOOPBACK}:${port}`, 'x']);
    assert.equal(result.code, 3);
    assert.equal(result.stderr, `tcpkit: no server listening at ${LOOPBACK}:${port}\n`);
    assert.equal(result.stdout, '');
  });

  it('exits 2 on a bad command line', async () => {
    const missing = await runCli(['send']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing required argument/);
    const badPort = await runCli(['send', '127.0.0.1:70000', 'x']);
    assert.equal(badPort.code, 2);
    assert.match(badPort.stderr, /^tcpkit: .*port/);
    const unknown = await runCli(['frobnicate']);
    assert.equal(unknown.code, 2);
  });
});

describe('tcpkit connect', () => {
  it('sends each line of piped input and prints each reply', async () => {
    const server = await cliServer(['--reply', 'ack']);
    const result = await runCli(['connect', `${LOOPBACK}:${server.port}`], { input: 'first\nsecond\n' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'ack\nack\n');
    await server.waitStdout(/: second$/m);
    assert.match(server.stdout(), /: first\n.*: second\n/);
  });

  it("asks for the server's ip and port when no address is given, as the tutorial client does", async () => {
    const server = await cliServer();
    const result = await runCli(['connect'], { input: `${LOOPBACK}\n${server.port}\nhello there\n` });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'hello there\n');
  });

  it('exits 2 when the input ends before an address was given', async () => {
    const result = await runCli(['connect'], { input: '' });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /no server ip/);
  });
});

describe('tcpkit --help', () => {
  for (const command of ['serve', 'send', 'connect']) {
    it(`explains ${command}`, async () => {
      const result = await runCli([command, '--help']);
      assert.equal(result.code, 0);
      assert.match(result.stdout, new RegExp(`Usage: tcpkit ${command}`));
      assert.match(result.stdout, /--help/);
    });
  }

  it('lists every command and the exit codes', async () => {
    const result = await runCli(['--help']);
    assert.equal(result.code, 0);
    for (const command of ['serve', 'send', 'connect']) assert.match(result.stdout, new RegExp(`\\n  ${command} `));
    assert.match(result.stdout, /Exit codes: 0 ok/);
  });

  it('prints its version', async () => {
    const result = await runCli(['--version']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^\d+\.\d+\.\d+\n$/);
  });
});
