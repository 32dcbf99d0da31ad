/**
 * Reconnecting with backoff: which failures are worth another try, and how long to wait.
 */
import { TcpkitError } from '../errors.js';
import { systemClock, type Clock } from '../util/clock.js';

/** Failures of the network or of a busy server, not of the request: trying again may succeed. */
export function isRetryable(error: unknown): boolean {
  if (!(error instanceof TcpkitError)) return false;
  switch (error.wireCode) {
    case 'CONNECTION_FAILED':
    case 'CONNECTION_CLOSED':
    case 'CONNECTION_REFUSED':
    case 'CONNECT_TIMEOUT':
    case 'REQUEST_TIMEOUT':
    case 'SHUTTING_DOWN':
    case 'TOO_MANY_CONNECTIONS':
    case 'IDLE_TIMEOUT':
    case 'BUSY':
      return true;
    default:
      return false;
  }
}

/** Options of {@link backoffMs}. */
export interface BackoffOptions {
  /** First delay. @default 200 */
  baseMs?: number;
  /** Longest delay. @default 5000 */
  maxMs?: number;
  /** A number in [0, 1) for the jitter. @default Math.random */
  random?: () => number;
}

/**
 * Delay before try number `attempt` (1 = the first retry): exponential, capped, with full
 * jitter over its upper half so many clients do not retry in step.
 */
export function backoffMs(attempt: number, options: BackoffOptions = {}): number {
  const { baseMs = 200, maxMs = 5000, random = Math.random } = options;
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * Runs `work` up to `1 + retries` times, waiting {@link backoffMs} between tries, as long as it
 * fails with a retryable error. `onRetry` hears of each retry. The waits run on `options.clock`.
 */
export async function withRetries<T>(
  retries: number,
  work: (attempt: number) => Promise<T>,
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void,
  options: BackoffOptions & { signal?: AbortSignal; clock?: Clock } = {},
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await work(attempt);
    } catch (error) {
      if (attempt >= retries || !isRetryable(error) || options.signal?.aborted) throw error;
      const delay = backoffMs(attempt + 1, options);
      onRetry?.(error, attempt + 1, delay);
      const clock = options.clock ?? systemClock;
      await new Promise<void>((resolve) => clock.setTimeout(resolve, delay, undefined));
    }
  }
}
