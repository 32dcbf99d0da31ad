/**
 * The server under test, run as a child process (forked by `server-process.ts`) so that it and
 * the load generator each get a core of their own. `node servers.js KIND` listens on 127.0.0.1
 * and an ephemeral port, reports `{ type: 'listening', port }` over IPC, answers `{ type: 'cpu' }`
 * with its CPU time so far and `{ type: 'memory' }` with its V8 heap and connection count (after
 * a full GC when asked and the child runs with `--expose-gc`), and exits on `{ type: 'stop' }`
 * (or when the parent goes away).
 *
 * Kinds: `tcpkit` and `bare` are the echo servers of the message suite; `tcpkit-idle` and
 * `bare-idle` are the idle suite's servers, which only hold the connections they accept.
 */
import * as net from 'node:net';
import { createServer } from '../src/index.js';

/** Which server a child runs. */
export type ServerKind = 'tcpkit' | 'bare' | 'tcpkit-idle' | 'bare-idle';

const KINDS: readonly ServerKind[] = ['tcpkit', 'bare', 'tcpkit-idle', 'bare-idle'];

/** Messages a child sends its parent. */
export type ChildMessage =
  | { type: 'listening'; port: number }
  | { type: 'cpu'; userMicros: number; systemMicros: number }
  | { type: 'memory'; heapUsedBytes: number; externalBytes: number; arrayBuffersBytes: number; connections: number; gc: boolean }
  | { type: 'failed'; message: string };

/** Messages a parent sends its child. `gc`: run a full collection first (needs `--expose-gc`). */
export type ParentMessage = { type: 'cpu' } | { type: 'memory'; gc: boolean } | { type: 'stop' };

/** A listening server of any kind. */
interface Running {
  port: number;
  /** Connections held now. */
  connections(): Promise<number>;
  close(): Promise<void>;
}

const HOST = '127.0.0.1';

function tell(message: ChildMessage): void {
  process.send?.(message);
}

/**
 * Listen backlog of the idle servers: the idle suite opens hundreds of connections at once, and
 * a full accept queue would cost a SYN retransmit (a second) per dropped connect, on either side.
 */
const IDLE_BACKLOG = 1024;

/** tcpkit through its public library, with the echo handler and nothing logged. */
async function startTcpkit(): Promise<Running> {
  const server = createServer({ host: HOST, port: 0, onMessage: (message) => message });
  // Quiet handlers: the driver destroys its sockets at the end of a run, which is no news.
  server.on('protocol-error', () => {});
  server.on('handler-error', () => {});
  const { port } = await server.listen();
  return { port, connections: async () => server.connections, close: () => server.destroy() };
}

/**
 * tcpkit holding idle connections: the governance caps are off (maxConnections,
 * maxConnectionsPerIp, maxPreAuth and maxPreAuthPerIp 0) and the handshake and idle deadlines are an hour, so every connection
 * the idle suite opens is admitted and kept for the whole measurement.
 */
async function startTcpkitIdle(): Promise<Running> {
  const server = createServer({
    host: HOST,
    port: 0,
    backlog: IDLE_BACKLOG,
    maxConnections: 0,
    maxConnectionsPerIp: 0,
    maxPreAuth: 0,
    maxPreAuthPerIp: 0,
    idleTimeoutMs: 3_600_000,
    handshakeTimeoutMs: 3_600_000,
  });
  server.on('protocol-error', () => {});
  const { port } = await server.listen();
  return { port, connections: async () => server.connections, close: () => server.destroy() };
}

/** Listens `server` on 127.0.0.1 and an ephemeral port. */
async function listenNet(server: net.Server, backlog: number): Promise<Running> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: HOST, port: 0, backlog }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    connections: () =>
      new Promise<number>((resolve, reject) => server.getConnections((error, count) => (error ? reject(error) : resolve(count)))),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The baseline: the smallest echo server `node:net` allows. */
function startBare(): Promise<Running> {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('data', (data) => socket.write(data));
    socket.on('error', () => {});
  });
  // Same backlog as tcpkit's default, so neither side gets a longer accept queue.
  return listenNet(server, 128);
}

/**
 * The idle baseline: accepts and keeps sockets, nothing more (an open handle keeps its socket
 * alive without a registry). Clients of this server send nothing.
 */
function startBareIdle(): Promise<Running> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
  });
  return listenNet(server, IDLE_BACKLOG);
}

const STARTERS: Record<ServerKind, () => Promise<Running>> = {
  tcpkit: startTcpkit,
  bare: startBare,
  'tcpkit-idle': startTcpkitIdle,
  'bare-idle': startBareIdle,
};

/** Runs a full collection when the child was started with `--expose-gc`; says whether it could. */
async function collect(): Promise<boolean> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return false;
  gc();
  // A second pass after a turn of the loop frees what the first one's finalizers released.
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  return true;
}

async function reportMemory(server: Running, gc: boolean): Promise<void> {
  const collected = gc && (await collect());
  const connections = await server.connections();
  const { heapUsed, external, arrayBuffers } = process.memoryUsage();
  tell({ type: 'memory', heapUsedBytes: heapUsed, externalBytes: external, arrayBuffersBytes: arrayBuffers, connections, gc: collected });
}

async function main(kind: string | undefined): Promise<void> {
  if (!KINDS.includes(kind as ServerKind)) throw new Error(`usage: servers.js ${KINDS.join('|')} (got ${String(kind)})`);
  const server = await STARTERS[kind as ServerKind]();
  // Never outlive the benchmark: a lost parent closes the IPC channel.
  process.on('disconnect', () => process.exit(0));
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'cpu') {
      const { user, system } = process.cpuUsage();
      tell({ type: 'cpu', userMicros: user, systemMicros: system });
    } else if (message.type === 'memory') {
      reportMemory(server, message.gc).catch((error: unknown) => {
        tell({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
      });
    } else if (message.type === 'stop') {
      // Exit normally (not by signal) so that `--cpu-prof` in BENCH_SERVER_NODE_ARGS gets written;
      // the bound keeps a stuck close from holding the run.
      setTimeout(() => process.exit(0), 1_000).unref();
      void server.close().finally(() => process.exit(0));
    }
  });
  tell({ type: 'listening', port: server.port });
}

main(process.argv[2]).catch((error: unknown) => {
  tell({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
