/**
 * The same loads as `driver.ts`, generated through tcpkit's own client library (`connect` and
 * `Client.send`, `sendOnce`) instead of raw framing: beside the raw driver on the same tcpkit
 * server, it shows what the client costs.
 */
import { setMaxListeners } from 'node:events';
import { connect, sendOnce } from '../src/index.js';
import { LoadState, repeatLoad, type Load } from './measure.js';
import type { KeptLoadOptions, ShortLoadOptions } from './driver.js';

const HOST = '127.0.0.1';
/** Bounds on connecting and on each reply; far above loopback latencies even on a busy machine. */
const LIMITS = Object.freeze({ connectTimeoutMs: 10_000, timeoutMs: 10_000 });

/** `connections` clients, each running `inFlight` send loops. Resolves once every client is connected. */
export async function startClientKeptLoad(options: KeptLoadOptions): Promise<Load> {
  const state = new LoadState();
  const settled = await Promise.allSettled(
    Array.from({ length: options.connections }, () =>
      connect(`${HOST}:${options.port}`, { connectTimeoutMs: LIMITS.connectTimeoutMs, requestTimeoutMs: LIMITS.timeoutMs }),
    ),
  );
  const clients = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const refused = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (refused !== undefined) {
    for (const client of clients) client.destroy();
    throw refused.reason;
  }
  return repeatLoad(
    clients.length * options.inFlight,
    (loop) => clients[Math.floor(loop / options.inFlight)]!.send(options.payload),
    // Pending sends reject with CLIENT_CLOSED, which a stopped load ignores.
    () => {
      for (const client of clients) client.destroy();
    },
    state,
  );
}

/** `concurrency` loops of `sendOnce` (connect, hello, one message, graceful close). */
export async function startClientShortLoad(options: ShortLoadOptions): Promise<Load> {
  const abort = new AbortController();
  // Every loop listens on this one signal (while connecting and while waiting for its reply).
  setMaxListeners(options.concurrency * 4, abort.signal);
  const target = `${HOST}:${options.port}`;
  return repeatLoad(
    options.concurrency,
    () => sendOnce(target, options.payload, { ...LIMITS, signal: abort.signal }),
    () => abort.abort(),
  );
}
