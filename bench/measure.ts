/**
 * One measurement: apply a load to a server child, warm up, count completed operations over a
 * fixed window, and note how busy each side was. Every wait is bounded.
 */
import type { ServerProcess } from './server-process.js';
import type { Sample } from './suite.js';

/** A running load generator. */
export interface Load {
  /** Operations (round trips, connections) completed so far. */
  readonly completed: number;
  /** Rejects with the first failure; never resolves. */
  readonly failed: Promise<never>;
  /** Stops generating load and closes every socket it opened. */
  stop(): Promise<void>;
}

/**
 * Bookkeeping shared by the loads: the completion counter, the stop flag and the first failure.
 */
export class LoadState {
  /** Operations completed so far. */
  completed = 0;
  /** Set by `stop()`: loops finish their current operation and start no new one. */
  stopped = false;
  /** Rejects with the first failure recorded by {@link fail}. */
  readonly failed: Promise<never>;
  #reject!: (error: Error) => void;

  constructor() {
    this.failed = new Promise<never>((_, reject) => {
      this.#reject = reject;
    });
    // Observed by whoever races it; unobserved after a clean stop.
    this.failed.catch(() => {});
  }

  /** Records a failure, unless the load is already stopping (sockets closing then is expected). */
  fail(error: unknown): void {
    if (this.stopped) return;
    this.#reject(error instanceof Error ? error : new Error(String(error)));
  }
}

/**
 * A load of `count` loops, each repeating `step(loop)` until stopped; the first failure fails
 * the load. `onStop` closes what the steps opened, so loops blocked in a step return.
 */
export function repeatLoad(count: number, step: (loop: number) => Promise<unknown>, onStop: () => void, state = new LoadState()): Load {
  const run = async (loop: number): Promise<void> => {
    while (!state.stopped) {
      try {
        await step(loop);
      } catch (error) {
        state.fail(error);
        return;
      }
      state.completed++;
    }
  };
  const loops = Array.from({ length: count }, (_, loop) => run(loop));
  return {
    get completed() {
      return state.completed;
    },
    failed: state.failed,
    async stop() {
      state.stopped = true;
      onStop();
      await Promise.all(loops);
    },
  };
}

/** How long a load may take to open its connections (50 hellos on loopback take milliseconds). */
const SETUP_LIMIT_MS = 15_000;
/** How long a load may take to stop. */
const STOP_LIMIT_MS = 15_000;

/** Rejects if `promise` has not settled within `limitMs`. */
export function within<T>(promise: Promise<T>, limitMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${limitMs} ms waiting for ${what}`)), limitMs);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

function sleep(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs));
}

/** Timing of one measurement. */
export interface Timing {
  warmupMs: number;
  durationMs: number;
}

/**
 * Starts the load against `server`, lets it warm up, then measures one window. The load is
 * stopped whatever happens; the server is left to the caller.
 */
export async function measure(server: ServerProcess, start: () => Promise<Load>, timing: Timing): Promise<Sample> {
  const load = await within(start(), SETUP_LIMIT_MS, `the ${server.kind} load to start`);
  try {
    await Promise.race([sleep(timing.warmupMs), load.failed]);
    const serverBefore = await Promise.race([server.cpuMicros(), load.failed]);
    const driverBefore = process.cpuUsage();
    const countBefore = load.completed;
    const startedAt = process.hrtime.bigint();
    await Promise.race([sleep(timing.durationMs), load.failed]);
    const countAfter = load.completed;
    const elapsedMicros = Number(process.hrtime.bigint() - startedAt) / 1_000;
    const driver = process.cpuUsage(driverBefore);
    const serverAfter = await Promise.race([server.cpuMicros(), load.failed]);
    return {
      rate: ((countAfter - countBefore) * 1e6) / elapsedMicros,
      serverCpu: (serverAfter - serverBefore) / elapsedMicros,
      driverCpu: (driver.user + driver.system) / elapsedMicros,
    };
  } finally {
    await within(load.stop(), STOP_LIMIT_MS, `the ${server.kind} load to stop`);
  }
}
