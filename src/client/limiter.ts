/**
 * The in-flight limiter: at most the server's `maxInFlight` requests on the wire; the others
 * wait for a slot, in order. (ws `lib/limiter.js` is the model: one idea, a few lines.)
 */

/** A request waiting for a slot: woken when one frees, failed when the connection has been silent for its timeout. */
interface Waiter {
  wake(): void;
  fail(error: Error): void;
  readonly timeoutMs: number;
  readonly since: number;
}

/** Counts in-flight slots and queues the requests waiting for one. */
export class Limiter {
  readonly #waiting: Waiter[] = [];
  /** Slots promised to woken requests that have not yet taken them. */
  #reserved = 0;
  readonly #inUse: () => number;
  readonly #limit: () => number;

  /** `inUse`: requests in flight now; `limit`: how many the server allows. */
  constructor(inUse: () => number, limit: () => number) {
    this.#inUse = inUse;
    this.#limit = limit;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** True when a new request must wait: others wait already (order is kept), or every slot is taken. */
  full(): boolean {
    return this.#waiting.length > 0 || this.#inUse() + this.#reserved >= this.#limit();
  }

  /**
   * Waits for a slot, in order; it is reserved for the caller when the promise resolves, and the
   * caller must {@link claim} it (or give it back with {@link wakeNext}) in that same turn.
   * `timeoutMs` (0: none) is checked by {@link expire}; `now` is when the wait starts.
   */
  wait(timeoutMs: number, now: number): Promise<void> {
    return new Promise<void>((resolve, reject) => this.#waiting.push({ wake: resolve, fail: reject, timeoutMs, since: now }));
  }

  /** The reserved slot is now taken by a request in flight (counted by `inUse`). */
  claim(): void {
    this.#reserved--;
  }

  /** Wakes waiters, in order, while slots are free (a request finished, or a woken one gave up). */
  wakeNext(): void {
    const limit = this.#limit();
    while (this.#waiting.length > 0 && this.#inUse() + this.#reserved < limit) {
      this.#reserved++;
      this.#waiting.shift()!.wake();
    }
  }

  /** Wakes every waiter (the client is closing or broken): each re-checks and throws. */
  wakeAll(): void {
    for (const waiter of this.#waiting.splice(0)) {
      this.#reserved++;
      waiter.wake();
    }
  }

  /**
   * Fails the waiters that heard nothing for their timeout: no reply to any request and no
   * progress since `lastProgressAt` (slots held by abandoned requests of a server that stopped
   * answering never free up). None while `paused`. Returns the shortest timeout still waiting (0: none).
   */
  expire(now: number, lastProgressAt: number, paused: boolean, timedOut: (timeoutMs: number) => Error): number {
    let shortest = 0;
    for (let i = 0; i < this.#waiting.length; ) {
      const waiter = this.#waiting[i]!;
      if (waiter.timeoutMs > 0 && !paused && now - Math.max(waiter.since, lastProgressAt) >= waiter.timeoutMs) {
        this.#waiting.splice(i, 1);
        waiter.fail(timedOut(waiter.timeoutMs));
        continue;
      }
      if (waiter.timeoutMs > 0 && (shortest === 0 || waiter.timeoutMs < shortest)) shortest = waiter.timeoutMs;
      i++;
    }
    return shortest;
  }
}
