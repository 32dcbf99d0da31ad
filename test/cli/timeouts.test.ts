/**
 * A client that times out exits, with the documented code, whatever the server does after its
 * hello; connecting is bounded by --timeout too when that is the smaller (issue 10, item 1).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as net from 'node:net';
import { after, describe, it } from 'node:test';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame, encodeHeader } from '../../src/protocol/frame.js';
import { FileFrame } from '../../src/services/files/wire.js';
import { runCli } from '../helpers/cli.js';
import { faultyServer, LOOPBACK, scriptedServer } from '../helpers/net.js';

const cleanups: Array<() => Promise<unknown>> = [];
/** Timers of trickling servers, stopped after the tests. */
const timers: NodeJS.Timeout[] = [];
after(async () => {
  for (const timer of timers.splice(0)) clearInterval(timer);
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/**
 * Far below what the bug cost (the heartbeat's 20 s, or never), far above the 2 s timeout plus
 * a node start-up on a busy machine.
 */
const EXIT_BOUND_MS = 9_000;

/** A server that completes the hello, then answers each GET with `onGet`; PINGs get a PONG only if `answerPings`. */
async function server(onGet: (id: number, socket: net.Socket) => void, answerPings: boolean): Promise<string> {
  const started = await scriptedServer(['message', 'file'], (frame, socket) => {
    if (frame.type === FrameType.PING) {
      if (answerPings) socket.write(encodeFrame(FrameType.PONG, frame.id, frame.payload));
    } else if (frame.type === FileFrame.GET) {
      onGet(frame.id, socket);
    }
  });
  cleanups.push(() => started.close());
  return started.address;
}

/** Runs `tcpkit get ADDRESS a.txt ARGS` in an empty directory; returns the result and how long it took. */
async function get(address: string, args: string[]): Promise<{ code: number | null; stderr: string; ms: number; left: string[] }> {
  const cwd = await mkdtemp(path.join(tmpdir(), 'tcpkit-timeouts-'));
  cleanups.push(() => rm(cwd, { recursive: true, force: true }));
  const started = Date.now();
  const result = await runCli(['get', address, 'a.txt', ...args], { cwd, timeoutMs: 30_000 });
  return { code: result.code, stderr: result.stderr, ms: Date.now() - started, left: await readdir(cwd) };
}

describe('tcpkit get --timeout: the client exits once it has reported the timeout', () => {
  const cases: Array<[string, (id: number, socket: net.Socket) => void, boolean]> = [
    ['a frame header and nothing more', (id, socket) => socket.write(encodeHeader(FileFrame.FILE_HEAD, id, 100)), false],
    ['nothing at all', () => {}, false],
    ['nothing at all, though it answers every heartbeat', () => {}, true],
    [
      'one byte every 10 s',
      (id, socket) => {
        const header = encodeHeader(FileFrame.FILE_HEAD, id, 100);
        let next = 0;
        const send = (): void => {
          if (!socket.destroyed && next < header.length) socket.write(header.subarray(next, ++next));
        };
        send();
        timers.push(setInterval(send, 10_000));
      },
      false,
    ],
  ];
  for (const [behaviour, onGet, answerPings] of cases) {
    it(`exits 4, promptly, against a server that sends ${behaviour}`, async () => {
      const address = await server(onGet, answerPings);
      const result = await get(address, ['--timeout', '2000']);
      assert.equal(result.code, 4, result.stderr);
      assert.match(result.stderr, /^tcpkit: a\.txt: no reply from 127\.0\.0\.1:\d+ within 2000 ms\n$/);
      assert.ok(result.ms < EXIT_BOUND_MS, `exited after ${result.ms} ms`);
      assert.deepEqual(result.left, [], 'nothing saved, no partial file of a file never started');
    });
  }
});

describe('tcpkit get --timeout: more files than the server has request slots', () => {
  it('exits 4, promptly: the files waiting for a slot held by a timed-out request time out too', async () => {
    // The scripted hello allows 16 requests in flight; the server answers heartbeats, no GET.
    const address = await server(() => {}, true);
    const names = Array.from({ length: 20 }, (_, i) => `f${i}.txt`);
    const cwd = await mkdtemp(path.join(tmpdir(), 'tcpkit-timeouts-'));
    cleanups.push(() => rm(cwd, { recursive: true, force: true }));
    const started = Date.now();
    const result = await runCli(['get', address, ...names, '--timeout', '2000'], { cwd, timeoutMs: 30_000 });
    const ms = Date.now() - started;
    assert.equal(result.code, 4, result.stderr);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 20, result.stderr);
    for (const line of lines) assert.match(line, /^tcpkit: f\d+\.txt: no reply from 127\.0\.0\.1:\d+ within 2000 ms/);
    assert.ok(ms < EXIT_BOUND_MS, `exited after ${ms} ms`);
  });
});

describe('tcpkit get: which phase each timeout governs', () => {
  it('a server that accepts and never says hello is given --timeout, when smaller than --connect-timeout (exit 3)', async () => {
    const silent = await faultyServer(() => {});
    cleanups.push(() => silent.close());
    const result = await get(`${LOOPBACK}:${silent.port}`, ['--timeout', '2000']);
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.stderr, /accepted the connection but sent no hello within 2000 ms/);
    assert.ok(result.ms < EXIT_BOUND_MS, `exited after ${result.ms} ms, not after the 10 s --connect-timeout`);
  });

  it('--connect-timeout still bounds the hello when it is the smaller one', async () => {
    const silent = await faultyServer(() => {});
    cleanups.push(() => silent.close());
    const result = await get(`${LOOPBACK}:${silent.port}`, ['--timeout', '60000', '--connect-timeout', '1500']);
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.stderr, /sent no hello within 1500 ms/);
  });

  it('--help says which phase each flag governs', async () => {
    const result = await runCli(['get', '--help']);
    const help = result.stdout.replace(/\s+/g, ' ');
    assert.match(help, /--connect-timeout <ms> longest time connecting may take: TCP connect, TLS handshake and the server's hello/);
    assert.match(help, /--timeout <ms> give up when no data arrives for this long; also bounds connecting when smaller than --connect-timeout/);
  });
});
