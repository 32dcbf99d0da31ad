/**
 * Time and timers, injectable: every deadline of tcpkit (idle, request, send-stall, linger,
 * heartbeat, sweep, auth delay, raw quiet period, upload stall) runs on one {@link Clock},
 * passed in the options, so tests drive them with fake time instead of sleeping.
 */

/** Time and timers, injectable for tests. */
export interface Clock {
  now(): number;
  /** Calls `callback(arg)` after `ms` (an argument, not a closure: no allocation per connection). */
  setTimeout<T>(callback: (arg: T) => void, ms: number, arg: T): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * Real time: `Date.now()` and Node's timers. Its timers are not unref'd: a pending one keeps the
 * process alive.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms, arg) => setTimeout(callback, ms, arg),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
