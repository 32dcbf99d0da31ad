/**
 * The same loads as `driver.ts`, generated through tcpkit's own client library (`connect` and
 * `Client.send`, `sendOnce`) instead of raw framing: beside the raw driver on the same tcpkit
 * server, it shows what the client costs.
 */
import { setMaxListeners } from 'node:events';
import { connect, sendOnce, type Client } from '../src/index.js';
import { LoadState, type Load } from './measure.js';
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
  const loop = async (client: Client): Promise<void> => {
    while (!state.stopped) {
      try {
        await client.send(options.payload);
      } catch (error) {
        state.fail(error);
        return;
      }
      state.completed++;
    }
  };
  const loops = clients.flatMap((client) => Array.from({ length: options.inFlight }, () => loop(client)));
  return {
    get completed() {
      return state.completed;
    },
    failed: state.failed,
    async stop() {
      state.stopped = true;
      // Pending sends reject with CLIENT_CLOSED, which a stopped load ignores.
      for (const client of clients) client.destroy();
      await Promise.all(loops);
    },
  };
}

/** `concurrency` loops of `sendOnce` (connect, hello, one message, graceful close). */
export async function startClientShortLoad(options: ShortLoadOptions): Promise<Load> {
  const state = new LoadState();
  const abort = new AbortController();
  // Every loop listens on this one signal (while connecting and while waiting for its reply).
  setMaxListeners(options.concurrency * 4, abort.signal);
  const target = `${HOST}:${options.port}`;
  const loop = async (): Promise<void> => {
    while (!state.stopped) {
      try {
        await sendOnce(target, options.payload, { ...LIMITS, signal: abort.signal });
      } catch (error) {
        state.fail(error);
        return;
      }
      state.completed++;
    }
  };
  const loops = Array.from({ length: options.concurrency }, loop);
  return {
    get completed() {
      return state.completed;
    },
    failed: state.failed,
    async stop() {
      state.stopped = true;
      abort.abort();
      await Promise.all(loops);
    },
  };
}
