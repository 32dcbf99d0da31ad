/**
 * The server under test, run as a child process (forked by `server-process.ts`) so that it and
 * the load generator each get a core of their own. `node servers.js tcpkit|bare` listens on
 * 127.0.0.1 and an ephemeral port, reports `{ type: 'listening', port }` over IPC, answers
 * `{ type: 'cpu' }` with its CPU time so far, and exits on `{ type: 'stop' }` (or when the parent
 * goes away).
 */
import * as net from 'node:net';
import { createServer } from '../src/index.js';

/** Which server a child runs. */
export type ServerKind = 'tcpkit' | 'bare';

/** Messages a child sends its parent. */
export type ChildMessage =
  | { type: 'listening'; port: number }
  | { type: 'cpu'; userMicros: number; systemMicros: number }
  | { type: 'failed'; message: string };

/** Messages a parent sends its child. */
export type ParentMessage = { type: 'cpu' } | { type: 'stop' };

const HOST = '127.0.0.1';

function tell(message: ChildMessage): void {
  process.send?.(message);
}

/** tcpkit through its public library, with the echo handler and nothing logged. */
async function startTcpkit(): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer({ host: HOST, port: 0, onMessage: (message) => message });
  // Quiet handlers: the driver destroys its sockets at the end of a run, which is no news.
  server.on('protocol-error', () => {});
  server.on('handler-error', () => {});
  const { port } = await server.listen();
  return { port, close: () => server.destroy() };
}

/** The baseline: the smallest echo server `node:net` allows. */
async function startBare(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('data', (data) => socket.write(data));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // Same backlog as tcpkit's default, so neither side gets a longer accept queue.
    server.listen({ host: HOST, port: 0, backlog: 128 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function main(kind: string | undefined): Promise<void> {
  if (kind !== 'tcpkit' && kind !== 'bare') throw new Error(`usage: servers.js tcpkit|bare (got ${String(kind)})`);
  const server = kind === 'tcpkit' ? await startTcpkit() : await startBare();
  // Never outlive the benchmark: a lost parent closes the IPC channel.
  process.on('disconnect', () => process.exit(0));
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'cpu') {
      const { user, system } = process.cpuUsage();
      tell({ type: 'cpu', userMicros: user, systemMicros: system });
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
