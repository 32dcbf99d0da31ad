/**
 * What hostile and unlucky peers cost the server (issue 10, items 3, 4 and 7): a one-off
 * measuring script, not a timed test. The server runs in a child process (this file with
 * `child`), the peers in this one; the child reports its memory on request.
 *
 *   node dist/bench/hostile.js flood        100,000 MESSAGEs and 100,000 GETs from two peers that never read; a canary's latency
 *   node dist/bench/hostile.js never-read   10 downloaders that never read a byte
 *   node dist/bench/hostile.js churn        half-hellos, resets mid-download and at once; then 40 concurrent downloads
 *   node dist/bench/hostile.js slow-read    a raw client reading 16 KB every 200 ms (80 KB/s), send timeout 3 s
 *
 * Figures: the child's RSS, V8 heap and external memory (process.memoryUsage()), without a
 * forced GC: what `ps` would show.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, createServer, FileRoot, fileService, protocol } from '../src/index.js';
import { encodeGet, FileFrame } from '../src/services/files/wire.js';
import { rawFileHandler } from '../src/raw/files.js';

const { CONNECTION_ID, FrameType, PREAMBLE, encodeClientHello, encodeFrame } = protocol;
const HOST = '127.0.0.1';
const GET = FileFrame.GET;

interface Memory {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  bytesIn: number;
  connections: number;
}

const OPENING = Buffer.concat([
  Buffer.from(PREAMBLE),
  encodeFrame(FrameType.HELLO, CONNECTION_ID, encodeClientHello({ versions: [1], capabilities: [] })),
]);

function getPayload(name: string): Buffer {
  return encodeGet({ name, offset: 0 });
}

async function child(): Promise<void> {
  const dir = process.env.HOSTILE_ROOT!;
  const root = await FileRoot.open(dir);
  const sendTimeoutMs = Number(process.env.HOSTILE_SEND_TIMEOUT_MS ?? 30_000);
  const server = createServer({
    host: HOST,
    port: 0,
    services: [fileService(root)],
    ...(process.env.HOSTILE_RAW === '1' && { raw: rawFileHandler(root) }),
    sendTimeoutMs,
    maxConnectionsPerIp: 0,
    maxConnections: 0,
  });
  const { port } = await server.listen();
  process.on('message', (message: { type: string }) => {
    if (message.type === 'memory') {
      (globalThis as { gc?: () => void }).gc?.();
      const m = process.memoryUsage();
      const stats = server.stats();
      process.send!({ type: 'memory', rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, bytesIn: stats.bytesIn, connections: stats.connections });
    } else if (message.type === 'stop') {
      void server.destroy().then(() => process.exit(0));
    }
  });
  process.send!({ type: 'listening', port });
}

class Child {
  readonly #child: ChildProcess;
  port = 0;
  constructor(root: string, env: Record<string, string>) {
    this.#child = fork(new URL(import.meta.url), ['child'], {
      env: { ...process.env, HOSTILE_ROOT: root, ...env },
      // HOSTILE_GC=1: a full collection before each reading, to tell garbage from what is held.
      // HOSTILE_NODE_FLAGS: flags of the server process (e.g. --max-semi-space-size=2).
      execArgv: [...(process.env.HOSTILE_GC === '1' ? ['--expose-gc'] : []), ...(process.env.HOSTILE_NODE_FLAGS ?? '').split(' ').filter(Boolean)],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  }
  async started(): Promise<void> {
    const [message] = (await once(this.#child, 'message')) as [{ port: number }];
    this.port = message.port;
  }
  async memory(): Promise<Memory> {
    this.#child.send({ type: 'memory' });
    for (;;) {
      const [message] = (await once(this.#child, 'message')) as [Memory & { type: string }];
      if (message.type === 'memory') return message;
    }
  }
  async stop(): Promise<void> {
    const exited = once(this.#child, 'exit');
    this.#child.send({ type: 'stop' });
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
}

const MB = 1024 * 1024;
const fmt = (m: Memory): string =>
  `rss ${(m.rss / MB).toFixed(1)} MB, heap ${(m.heapUsed / MB).toFixed(1)} of ${(m.heapTotal / MB).toFixed(1)} MB, external ${(m.external / MB).toFixed(1)} MB (arrayBuffers ${(m.arrayBuffers / MB).toFixed(1)} MB), connections ${m.connections}`;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function rawOpen(port: number): Promise<net.Socket> {
  const socket = net.connect({ host: HOST, port });
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(OPENING);
  return socket;
}

/** Writes `frames` frames built by `make` without ever reading; stops after `ms`. Returns bytes sent into the socket. */
async function flood(socket: net.Socket, count: number, make: (id: number) => Buffer, ms: number): Promise<number> {
  socket.pause();
  const deadline = Date.now() + ms;
  let sent = 0;
  for (let id = 1; id <= count && !socket.destroyed && Date.now() < deadline; ) {
    const batch: Buffer[] = [];
    for (let n = 0; n < 1000 && id <= count; n++, id++) batch.push(make(id));
    const data = Buffer.concat(batch);
    sent += data.length;
    if (!socket.write(data)) {
      const drained = once(socket, 'drain').then(() => true);
      const closed = once(socket, 'close').then(() => false);
      const left = deadline - Date.now();
      if (left <= 0 || !(await Promise.race([drained, closed, sleep(left).then(() => false)]))) break;
    }
  }
  return sent;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

async function scenarioFlood(root: string): Promise<void> {
  const server = new Child(root, { HOSTILE_SEND_TIMEOUT_MS: process.env.HOSTILE_SEND_TIMEOUT_MS ?? '30000' });
  await server.started();
  const canary = await connect(`${HOST}:${server.port}`);
  for (let i = 0; i < 200; i++) await canary.send('warm');
  const before = await server.memory();
  console.log(`before:       ${fmt(before)}`);
  const a = await rawOpen(server.port);
  const b = await rawOpen(server.port);
  const message = Buffer.alloc(64, 0x61);
  const get = getPayload('small.txt');
  const latencies: number[] = [];
  let flooding = true;
  const probe = (async () => {
    while (flooding) {
      const t = performance.now();
      await canary.send('canary');
      latencies.push(performance.now() - t);
      await sleep(5);
    }
  })();
  let peak = before;
  const watch = (async () => {
    while (flooding) {
      const m = await server.memory();
      if (m.rss > peak.rss) peak = m;
      await sleep(250);
    }
  })();
  const [sentA, sentB] = await Promise.all([
    flood(a, 100_000, (id) => encodeFrame(FrameType.MESSAGE, id, message), 15_000),
    flood(b, 100_000, (id) => encodeFrame(GET, id, get), 15_000),
  ]);
  await sleep(2000);
  flooding = false;
  await Promise.all([probe, watch]);
  const during = await server.memory();
  console.log(`flooders sent ${(sentA / MB).toFixed(1)} MB and ${(sentB / MB).toFixed(1)} MB into their sockets; the server read ${((during.bytesIn - before.bytesIn) / MB).toFixed(1)} MB in all`);
  console.log(`at the end:   ${fmt(during)}  (+${((during.rss - before.rss) / MB).toFixed(1)} MB rss)`);
  console.log(`peak:         ${fmt(peak)}  (+${((peak.rss - before.rss) / MB).toFixed(1)} MB rss)`);
  const sorted = latencies.sort((x, y) => x - y);
  console.log(`canary: ${sorted.length} requests during the flood, p50 ${percentile(sorted, 50).toFixed(2)} ms, p99 ${percentile(sorted, 99).toFixed(2)} ms, max ${sorted.at(-1)!.toFixed(2)} ms`);
  a.destroy();
  b.destroy();
  await canary.close();
  await server.stop();
}

async function scenarioNeverRead(root: string): Promise<void> {
  const server = new Child(root, { HOSTILE_SEND_TIMEOUT_MS: '600000' });
  await server.started();
  await sleep(300);
  const before = await server.memory();
  console.log(`before:       ${fmt(before)}`);
  const sockets: net.Socket[] = [];
  for (let i = 0; i < 10; i++) {
    const socket = await rawOpen(server.port);
    socket.pause();
    socket.write(encodeFrame(GET, 1, getPayload('big.bin')));
    sockets.push(socket);
  }
  await sleep(3000);
  const after = await server.memory();
  console.log(`10 never-readers: ${fmt(after)}  (+${((after.rss - before.rss) / MB).toFixed(1)} MB rss, +${((after.rss - before.rss) / MB / 10).toFixed(2)} MB each)`);
  for (const socket of sockets) socket.destroy();
  await server.stop();
}

async function download(port: number, name: string, resetAfter?: number): Promise<void> {
  const socket = await rawOpen(port);
  socket.write(encodeFrame(GET, 1, getPayload(name)));
  let got = 0;
  await new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      got += chunk.length;
      if (resetAfter !== undefined && got >= resetAfter) socket.resetAndDestroy();
    });
    socket.on('close', () => resolve());
    socket.on('end', () => socket.end());
    // The reply of a whole file ends with FILE_END; the server keeps the connection: close after a pause in data.
    let last = got;
    const timer = setInterval(() => {
      if (got === last && got > 0) {
        clearInterval(timer);
        socket.destroy();
      }
      last = got;
    }, 300);
    socket.on('close', () => clearInterval(timer));
  });
}

async function scenarioChurn(root: string): Promise<void> {
  const server = new Child(root, {});
  await server.started();
  await sleep(300);
  const baseline = await server.memory();
  console.log(`baseline:     ${fmt(baseline)}`);
  for (let i = 0; i < 2000; i += 50) {
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        const socket = net.connect({ host: HOST, port: server.port });
        socket.on('error', () => {});
        await once(socket, 'connect');
        socket.write(OPENING.subarray(0, 12));
        await sleep(5);
        socket.resetAndDestroy();
      }),
    );
  }
  for (let i = 0; i < 500; i += 25) await Promise.all(Array.from({ length: 25 }, () => download(server.port, 'big.bin', 4 * MB)));
  for (let i = 0; i < 500; i += 50) {
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        const socket = net.connect({ host: HOST, port: server.port });
        socket.on('error', () => {});
        await once(socket, 'connect');
        socket.resetAndDestroy();
      }),
    );
  }
  await sleep(1000);
  const churned = await server.memory();
  console.log(`after churn:  ${fmt(churned)}  (+${((churned.rss - baseline.rss) / MB).toFixed(1)} MB rss)`);
  await Promise.all(Array.from({ length: 40 }, () => download(server.port, 'big.bin')));
  const ended = await server.memory();
  console.log(`after 40 downloads: ${fmt(ended)}  (+${((ended.rss - baseline.rss) / MB).toFixed(1)} MB rss)`);
  for (const wait of [5000, 10_000]) {
    await sleep(wait === 5000 ? 5000 : 5000);
    const later = await server.memory();
    console.log(`${wait / 1000} s later:  ${fmt(later)}  (+${((later.rss - baseline.rss) / MB).toFixed(1)} MB rss)`);
  }
  await server.stop();
}

async function scenarioSlowRead(root: string): Promise<void> {
  const server = new Child(root, { HOSTILE_SEND_TIMEOUT_MS: '3000', HOSTILE_RAW: '1' });
  await server.started();
  const socket = net.connect({ host: HOST, port: server.port, allowHalfOpen: true });
  await once(socket, 'connect');
  let error: Error | undefined;
  socket.on('error', (e) => (error = e));
  socket.on('end', () => socket.end());
  socket.end('medium.bin');
  socket.pause();
  const started = Date.now();
  let got = 0;
  while (!socket.readableEnded && !socket.destroyed) {
    for (let chunk: Buffer | null, n = 0; n < 16_384 && (chunk = socket.read(Math.min(16_384 - n, socket.readableLength || 16_384))) !== null; ) {
      n += chunk.length;
      got += chunk.length;
    }
    await sleep(200);
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(`slow raw reader: ${got} of ${6 * MB} bytes in ${seconds.toFixed(1)} s (${(got / seconds / 1000).toFixed(0)} KB/s), ${error ? `error ${(error as NodeJS.ErrnoException).code}` : 'no error'}`);
  await server.stop();
}

async function main(): Promise<void> {
  const scenario = process.argv[2];
  if (scenario === 'child') return child();
  const root = await mkdtemp(path.join(tmpdir(), 'tcpkit-hostile-'));
  try {
    await writeFile(path.join(root, 'small.txt'), 'a small file\n');
    await writeFile(path.join(root, 'big.bin'), Buffer.alloc(50 * MB, 0x5a));
    await writeFile(path.join(root, 'medium.bin'), Buffer.alloc(6 * MB, 0x5a));
    if (scenario === 'flood') await scenarioFlood(root);
    else if (scenario === 'never-read') await scenarioNeverRead(root);
    else if (scenario === 'churn') await scenarioChurn(root);
    else if (scenario === 'slow-read') await scenarioSlowRead(root);
    else throw new Error('usage: hostile.js flood|never-read|churn|slow-read');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
