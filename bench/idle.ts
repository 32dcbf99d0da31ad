/**
 * The idle suite: what a held, idle connection costs the server in memory. It opens as many kept
 * connections as the fd limit allows (about 19,900), each a full tcpkit session (preamble and
 * HELLO sent, the server's HELLO received), then reads the server child's RSS and V8 heap per
 * connection, beside a bare `node:net` server holding as many plain connections. Target (the
 * issue): at most 4 KiB of RSS per connection, and at most 1.2× the bare server.
 *
 * The connections are opened from this process, never from the server's: each side needs one fd
 * per connection, and one process can hold at most its fd limit.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as net from 'node:net';
import { protocol } from '../src/index.js';
import { within } from './measure.js';
import { ServerProcess } from './server-process.js';
import type { Suite, SuiteContext, SuiteResult, TextTable } from './suite.js';

const { CONNECTION_ID, FrameDecoder, FrameType, HELLO_MAX_FRAME_BYTES, PREAMBLE, decodeServerHello, encodeClientHello, encodeFrame, frameTypeName } =
  protocol;

const SERVER_HOST = '127.0.0.1';
/**
 * Source addresses of the clients. Linux routes all of 127/8 to the loopback, and each source
 * address has its own ephemeral port range (about 28,000 ports), so 8 of them hold 19,900
 * connections with room to spare.
 */
const SOURCES: readonly string[] = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`);
/** Default number of connections, when the fd limit allows it. */
const DEFAULT_CONNECTIONS = 19_900;
/** Files each process keeps beside its sockets (stdio, IPC, epoll, the listener, ...). */
const FD_HEADROOM = 100;
/** Connections being opened at once. */
const CONCURRENCY = 200;
/** Connections opened and closed before the baseline is read, so one-time costs are not counted. */
const WARMUP_CONNECTIONS = 200;
/** Bound on one connect (and hello exchange). */
const CONNECT_LIMIT_MS = 10_000;
/** Bound on opening all of them. */
const OPEN_LIMIT_MS = 90_000;
/** Bound on the server child seeing every connection, and on closing them all. */
const SETTLE_LIMIT_MS = 15_000;
/** Quiet time after the last connection, before the memory is read. */
const SETTLE_MS = 500;
/** RSS is read this many times, this far apart, after a GC; the median counts. */
const RSS_READS = 5;
const RSS_READ_INTERVAL_MS = 200;
/** The targets. */
const TARGET_BYTES_PER_CONNECTION = 4 * 1024;
const TARGET_RATIO = 1.2;

/** tcpkit's opening: preamble and a client HELLO, through the public codec. */
const OPENING = Buffer.concat([
  Buffer.from(PREAMBLE),
  encodeFrame(FrameType.HELLO, CONNECTION_ID, encodeClientHello({ versions: [1], capabilities: [] })),
]);

type Side = 'tcpkit' | 'bare';
const SIDES: readonly Side[] = ['tcpkit', 'bare'];

function sleep(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs));
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The soft limit on open files of this process (the server child inherits it). */
function fdLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((text) => text.startsWith('Max open files'));
  const soft = line?.split(/\s{2,}/)[1];
  const value = soft === undefined || soft === 'unlimited' ? Infinity : Number(soft);
  if (!(value > 0)) throw new Error(`cannot read the open-file limit from /proc/self/limits (${line ?? 'no such line'})`);
  return value;
}

/** `BENCH_IDLE_CONNS`, checked against the fd limit. */
function connectionCount(env: NodeJS.ProcessEnv, limit: number): number {
  const most = Math.min(limit - FD_HEADROOM, 1_000_000);
  const text = env.BENCH_IDLE_CONNS?.trim();
  if (text === undefined || text === '') return Math.min(DEFAULT_CONNECTIONS, most);
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > most) {
    throw new RangeError(
      `BENCH_IDLE_CONNS must be a whole number from 1 to ${most} (the fd limit ${limit} less ${FD_HEADROOM} for each process's own files), got "${text}"`,
    );
  }
  return value;
}

/** VmRSS (resident now) and VmHWM (peak resident) of a process, in bytes. */
async function residentBytes(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (match === null) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(match[1]) * 1024;
  };
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

/**
 * Client connections held from this process, spread over {@link SOURCES}. With `hello`, each
 * one is a tcpkit session: preamble and HELLO sent, the server's HELLO received and checked;
 * without, a bare connect. Then nothing more is sent either way.
 */
class Clients {
  readonly #sockets = new Set<net.Socket>();
  readonly #port: number;
  readonly #hello: boolean;
  #closing = false;
  #lost = 0;
  #lostWhy: string | undefined;

  constructor(port: number, hello: boolean) {
    this.#port = port;
    this.#hello = hello;
  }

  /** Connections open now. */
  get size(): number {
    return this.#sockets.size;
  }

  /** Why established connections closed before the end, if any did. */
  get lost(): string | undefined {
    return this.#lost === 0 ? undefined : `${this.#lost} established connection(s) closed early (${this.#lostWhy ?? 'closed by the server'})`;
  }

  /** Opens `count` more connections, {@link CONCURRENCY} at a time; rejects with the first failure. */
  async open(count: number): Promise<void> {
    let next = 0;
    let failure: unknown;
    const worker = async (): Promise<void> => {
      while (failure === undefined && !this.#closing && next < count) {
        const source = SOURCES[next++ % SOURCES.length]!;
        try {
          await this.#openOne(source);
        } catch (error) {
          failure ??= error;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, worker));
    if (failure !== undefined) throw failure;
    if (this.#closing) throw new Error('the connections were closed while opening');
  }

  #openOne(localAddress: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host: SERVER_HOST, port: this.#port, localAddress });
      this.#sockets.add(socket);
      let settled = false;
      const settle = (error?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error === undefined) {
          resolve();
          return;
        }
        socket.destroy();
        reject(error instanceof Error ? error : new Error(String(error)));
      };
      const timer = setTimeout(
        () => settle(new Error(`no ${this.#hello ? 'HELLO from the server' : 'connection'} within ${CONNECT_LIMIT_MS} ms (from ${localAddress})`)),
        CONNECT_LIMIT_MS,
      );
      socket.on('error', (error) => {
        if (settled) this.#lostWhy ??= error.message;
        settle(new Error(`connecting from ${localAddress}: ${error.message}`));
      });
      socket.once('close', () => {
        this.#sockets.delete(socket);
        if (!settled) settle(new Error(`the server closed a connection from ${localAddress} before it was established`));
        else if (!this.#closing) this.#lost++;
      });
      socket.once('connect', () => {
        if (!this.#hello) {
          settle();
          return;
        }
        const decoder = new FrameDecoder({ maxFrameBytes: HELLO_MAX_FRAME_BYTES });
        const onData = (chunk: Buffer): void => {
          try {
            const frame = decoder.push(chunk)[0];
            if (frame === undefined) return;
            socket.off('data', onData);
            if (frame.type !== FrameType.HELLO || frame.id !== CONNECTION_ID) {
              throw new Error(`expected the server's HELLO, got ${frameTypeName(frame.type)} with id ${frame.id}`);
            }
            decodeServerHello(frame.payload);
            settle();
          } catch (error) {
            settle(error);
          }
        };
        socket.on('data', onData);
        socket.write(OPENING);
      });
    });
  }

  /**
   * Resets every connection (RST: no TIME_WAIT left on the source ports) and waits for their fds
   * to be released, since the next run needs them. Idempotent; no more connections open after it.
   */
  async close(): Promise<void> {
    this.#closing = true;
    const closed = [...this.#sockets].map((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())));
    for (const socket of this.#sockets) {
      if (socket.destroyed) continue;
      if (socket.connecting) socket.destroy();
      else socket.resetAndDestroy();
    }
    await within(Promise.all(closed), SETTLE_LIMIT_MS, `${closed.length} client connections to close`);
  }
}

/** The server child's memory in a steady state: after a full GC, median of a few RSS reads. */
interface Steady {
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
  connections: number;
}

async function steadyMemory(server: ServerProcess): Promise<Steady> {
  const reply = await server.memory(true);
  if (!reply.gc) throw new Error('the server child could not run a GC (started without --expose-gc?)');
  const reads: number[] = [];
  for (let i = 0; i < RSS_READS; i++) {
    if (i > 0) await sleep(RSS_READ_INTERVAL_MS);
    reads.push((await residentBytes(server.pid)).rss);
  }
  return {
    rssBytes: median(reads),
    heapUsedBytes: reply.heapUsedBytes,
    externalBytes: reply.externalBytes,
    connections: reply.connections,
  };
}

/** Waits (bounded) until the server child holds exactly `count` connections. */
async function untilServerHolds(server: ServerProcess, count: number): Promise<void> {
  const deadline = Date.now() + SETTLE_LIMIT_MS;
  for (;;) {
    const { connections } = await server.memory(false);
    if (connections === count) return;
    if (Date.now() > deadline) throw new Error(`the server holds ${connections} connections, expected ${count}, after ${SETTLE_LIMIT_MS} ms`);
    await sleep(100);
  }
}

/** One run on one side: a fresh server child, warm-up, baseline, N held, memory read, all closed. */
interface IdleSample {
  connections: number;
  /** Seconds to open all N (connect, and for tcpkit the hello exchange). */
  openSeconds: number;
  baseline: Steady;
  held: Steady;
  /** VmHWM at the end: the child's peak RSS over its life, the connect storm included. */
  peakRssBytes: number;
}

function perConnection(sample: IdleSample, field: 'rssBytes' | 'heapUsedBytes' | 'externalBytes'): number {
  return (sample.held[field] - sample.baseline[field]) / sample.connections;
}

function peakPerConnection(sample: IdleSample): number {
  return (sample.peakRssBytes - sample.baseline.rssBytes) / sample.connections;
}

async function sampleOnce(context: SuiteContext, side: Side, connections: number): Promise<IdleSample> {
  const server = await ServerProcess.start(side === 'tcpkit' ? 'tcpkit-idle' : 'bare-idle', ['--expose-gc', ...context.settings.serverNodeArgs]);
  const hello = side === 'tcpkit';
  const warmup = new Clients(server.port, hello);
  const held = new Clients(server.port, hello);
  try {
    // Warm-up: the first connections compile the accept and session code and allocate one-time
    // structures; the figure wanted is what one more held connection costs.
    await within(warmup.open(Math.min(WARMUP_CONNECTIONS, connections)), OPEN_LIMIT_MS, 'the warm-up connections');
    await warmup.close();
    await untilServerHolds(server, 0);
    const baseline = await steadyMemory(server);

    const started = performance.now();
    await within(held.open(connections), OPEN_LIMIT_MS, `${connections} connections to open`);
    const openSeconds = (performance.now() - started) / 1000;
    await untilServerHolds(server, connections);
    await sleep(SETTLE_MS);
    const steady = await steadyMemory(server);
    const { peak } = await residentBytes(server.pid);
    const lost = held.lost;
    if (lost !== undefined) throw new Error(lost);
    if (steady.connections !== connections || held.size !== connections) {
      throw new Error(`${connections} connections wanted; the server holds ${steady.connections}, the clients ${held.size}`);
    }
    return { connections, openSeconds, baseline, held: steady, peakRssBytes: peak };
  } finally {
    await Promise.allSettled([warmup.close(), held.close()]);
    await server.stop();
  }
}

function bytes(value: number): string {
  return `${Math.round(value).toLocaleString('en-US')} B (${(value / 1024).toFixed(2)} KiB)`;
}

function mebibytes(value: number): string {
  return (value / 1024 / 1024).toFixed(1);
}

function verdict(met: boolean): string {
  return met ? 'yes' : 'NO';
}

/** The samples of one side and the first error, if any. */
interface Collected {
  samples: IdleSample[];
  error?: string;
}

/** Median of a figure over a side's samples; undefined when it has none. */
function medianOf(collected: Collected | undefined, figure: (sample: IdleSample) => number): number | undefined {
  return collected === undefined || collected.samples.length === 0 ? undefined : median(collected.samples.map(figure));
}

function buildTable(connections: number, runs: number, results: Map<Side, Collected>): TextTable {
  const tcpkit = results.get('tcpkit');
  const bare = results.get('bare');
  const cell = (collected: Collected | undefined, figure: (sample: IdleSample) => number, format: (value: number) => string): string => {
    const value = medianOf(collected, figure);
    if (value === undefined) return collected === undefined ? '—' : 'failed';
    return format(value) + (collected?.error !== undefined ? ' (partial)' : '');
  };
  const ratio = (figure: (sample: IdleSample) => number): number | undefined => {
    const subject = medianOf(tcpkit, figure);
    const baseline = medianOf(bare, figure);
    return subject === undefined || baseline === undefined || baseline <= 0 ? undefined : subject / baseline;
  };
  const ratioCell = (value: number | undefined): string => (value === undefined ? '—' : `${value.toFixed(2)}×`);

  const rss = (sample: IdleSample): number => perConnection(sample, 'rssBytes');
  const heap = (sample: IdleSample): number => perConnection(sample, 'heapUsedBytes');
  const peak = peakPerConnection;
  const tcpkitRss = medianOf(tcpkit, rss);
  const rssRatio = ratio(rss);
  const targets: string[] = [];
  const notes: string[] = [];
  if (tcpkitRss !== undefined) {
    const met = tcpkitRss <= TARGET_BYTES_PER_CONNECTION;
    targets.push(`≤ 4 KiB: ${verdict(met)}`);
    notes.push(`tcpkit: ${bytes(tcpkitRss)} of RSS per idle connection, target ≤ 4 KiB: ${met ? 'met' : 'NOT met'}`);
  }
  if (rssRatio !== undefined) {
    const met = rssRatio <= TARGET_RATIO;
    targets.push(`≤ ${TARGET_RATIO}× bare: ${verdict(met)}`);
    notes.push(`tcpkit / bare RSS per connection: ${rssRatio.toFixed(2)}×, target ≤ ${TARGET_RATIO}×: ${met ? 'met' : 'NOT met'}`);
  }
  for (const [side, collected] of results) {
    const perRun = collected.samples.map((sample) => Math.round(rss(sample)).toLocaleString('en-US')).join(', ');
    if (perRun !== '') notes.push(`${side}, RSS bytes per connection in each run: ${perRun}`);
    if (collected.error !== undefined) notes.push(`${side} FAILED: ${collected.error}`);
  }

  const rows: string[][] = [
    ['server RSS per connection', cell(tcpkit, rss, bytes), cell(bare, rss, bytes), ratioCell(rssRatio), targets.join(' · ') || '—'],
    ['V8 heap used per connection', cell(tcpkit, heap, bytes), cell(bare, heap, bytes), ratioCell(ratio(heap)), '—'],
    ['peak RSS (VmHWM) over baseline, per connection', cell(tcpkit, peak, bytes), cell(bare, peak, bytes), ratioCell(ratio(peak)), '—'],
  ];
  const range = (collected: Collected | undefined, field: 'rssBytes' | 'heapUsedBytes'): string => {
    const from = medianOf(collected, (sample) => sample.baseline[field]);
    const to = medianOf(collected, (sample) => sample.held[field]);
    return from === undefined || to === undefined ? cell(collected, () => 0, String) : `${mebibytes(from)} → ${mebibytes(to)} MiB`;
  };
  rows.push(
    ['server RSS, baseline → all held', range(tcpkit, 'rssBytes'), range(bare, 'rssBytes'), '—', '—'],
    ['server V8 heap used, baseline → all held', range(tcpkit, 'heapUsedBytes'), range(bare, 'heapUsedBytes'), '—', '—'],
    [
      'time to open them all',
      cell(tcpkit, (sample) => sample.openSeconds, (value) => `${value.toFixed(2)} s`),
      cell(bare, (sample) => sample.openSeconds, (value) => `${value.toFixed(2)} s`),
      '—',
      '—',
    ],
  );
  return {
    title: `${connections.toLocaleString('en-US')} idle connections held at once, median of ${runs} run(s)`,
    headers: ['figure', 'tcpkit (governance caps off)', 'bare node:net', 'ratio tcpkit/bare', 'target'],
    rows,
    notes,
    failed: [...results.values()].some((collected) => collected.error !== undefined),
    data: Object.fromEntries([...results].map(([side, collected]) => [side, collected])),
  };
}

async function run(context: SuiteContext): Promise<SuiteResult> {
  const { runs } = context.settings;
  const title = 'Idle kept connections: server memory per connection';
  if (process.platform !== 'linux') {
    // The memory is read from /proc, and 127.0.0.2 and up are routed to the loopback only on Linux.
    return { name: 'idle', title, method: [`Skipped: needs Linux (/proc and the 127/8 loopback), this is ${process.platform}`], tables: [] };
  }
  const limit = fdLimit();
  const connections = connectionCount(process.env, limit);
  const method = [
    `${connections.toLocaleString('en-US')} connections held at once (BENCH_IDLE_CONNS; default min(19,900, fd limit − ${FD_HEADROOM}); the fd limit here is ${limit}), ` +
      `opened ${CONCURRENCY} at a time from this process, from source addresses ${SOURCES[0]}–${SOURCES.at(-1)} to the server child on ${SERVER_HOST}`,
    'tcpkit: `createServer` from the public library with the governance caps off (maxConnections 0, maxConnectionsPerIp 0, maxPreAuth 0, maxPreAuthPerIp 0), handshake and idle timeouts of 1 h and a backlog of 1024; ' +
      "every connection is a session: preamble and HELLO sent (the public codec), the server's HELLO received and decoded, then idle",
    'bare: a `node:net` server that only accepts and keeps sockets (an error listener each, backlog 1024); its clients connect and send nothing, so it holds no buffered bytes: the strictest baseline',
    `Memory of the server child: ${WARMUP_CONNECTIONS} connections opened and closed first (warm-up: code compiled, one-time structures), then a full GC (--expose-gc, twice) and VmRSS from /proc/PID/status read ${RSS_READS} times over ${((RSS_READS - 1) * RSS_READ_INTERVAL_MS) / 1000} s (median): the baseline; ` +
      `the same once all N are held (the server's count checked) and ${SETTLE_MS} ms quiet. Per connection = (held − baseline) / N; V8 heap = process.memoryUsage().heapUsed after the same GC; peak = VmHWM (the child's whole life, connect storm included) − baseline RSS`,
    `A fresh server child per run, the order of the servers alternating; clients closed with RST at the end of each run. Targets: tcpkit ≤ 4 KiB of RSS per connection and ≤ ${TARGET_RATIO}× bare`,
  ];
  const results = new Map<Side, Collected>();
  for (const side of SIDES) if (context.selected(`idle/${side}`)) results.set(side, { samples: [] });
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? SIDES : [...SIDES].reverse();
    for (const side of order) {
      const collected = results.get(side);
      if (collected === undefined || collected.error !== undefined) continue;
      const what = `idle/${side} run ${i + 1}/${runs}`;
      try {
        const sample = await sampleOnce(context, side, connections);
        collected.samples.push(sample);
        context.progress(
          `${what}: ${bytes(perConnection(sample, 'rssBytes'))} RSS, ${bytes(perConnection(sample, 'heapUsedBytes'))} heap per connection; ` +
            `${connections} opened in ${sample.openSeconds.toFixed(2)} s`,
        );
      } catch (error) {
        collected.error = error instanceof Error ? error.message : String(error);
        context.progress(`${what}: FAILED: ${collected.error}`);
      }
    }
  }
  return { name: 'idle', title, method, tables: [], textTables: [buildTable(connections, runs, results)] };
}

/** The idle-connection memory suite (`BENCH_ONLY=idle`, rows `idle/tcpkit`, `idle/bare`). */
export const idleSuite: Suite = {
  name: 'idle',
  title: 'Idle kept connections: server memory per connection',
  run,
};
