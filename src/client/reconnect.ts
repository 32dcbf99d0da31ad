/**
 * Reconnecting after the server closed a kept connection as idle (an IDLE_TIMEOUT goodbye):
 * the next request, or one that crossed the goodbye, opens a new connection, with a few tries,
 * and what crossed the goodbye is sent again there.
 */
import type { Clock } from '../util/clock.js';
import type { Pending } from './requests.js';
import { withRetries } from './retry.js';

/** Reconnection tries after an idle goodbye, beyond the first. */
export const RECONNECT_RETRIES = 3;

/** What {@link Reconnect} asks of the client. */
export interface ReconnectHooks<T> {
  /** Opens a new connection (tried again with backoff while it fails with a retryable error). */
  dial(): Promise<T>;
  /** Puts the new connection under the client and waits for its hello. */
  start(opened: T): Promise<void>;
  /** Sends a held request again, on the new connection. */
  resend(pending: Pending): void;
  /** Reconnected, and `resent` requests were sent again. */
  reconnected(resent: number): void;
  /** Reconnecting failed for good: the client is closed with `error`. */
  failed(error: Error): void;
}

/** One reconnection at a time, and the requests that wait for it. */
export class Reconnect<T> {
  readonly #clock: Clock;
  readonly #hooks: ReconnectHooks<T>;
  /** Requests that crossed the server's idle goodbye: never served, sent again after reconnecting. */
  #held: Pending[] = [];
  #reviving: Promise<void> | undefined;

  /** `clock` times the backoff between dial tries; `hooks` are how it dials, restarts and resends for the client. */
  constructor(clock: Clock, hooks: ReconnectHooks<T>) {
    this.#clock = clock;
    this.#hooks = hooks;
  }

  /** True while a reconnection is under way. */
  get reviving(): boolean {
    return this.#reviving !== undefined;
  }

  /** Requests held for the next connection. */
  get held(): number {
    return this.#held.length;
  }

  /** Holds requests that crossed an idle goodbye, to send them again on the next connection. */
  hold(requests: Pending[]): void {
    this.#held.push(...requests);
  }

  /** Resolves once a reconnection under way is over (whatever its outcome); at once when none is. */
  async settled(): Promise<void> {
    await this.#reviving?.catch(() => {});
  }

  /**
   * Reconnects and sends again the requests that crossed the goodbye (the server had nothing in
   * flight when it said goodbye, so none of them was served: sending them again cannot run
   * anything twice). Concurrent calls share one reconnection. Rejects when it failed for good.
   */
  revive(): Promise<void> {
    this.#reviving ??= (async () => {
      try {
        // A few tries with exponential backoff and jitter: a server restarting is back soon.
        const opened = await withRetries(RECONNECT_RETRIES, () => this.#hooks.dial(), undefined, { clock: this.#clock });
        await this.#hooks.start(opened);
        // A request abandoned while held (aborted) is not sent: nobody awaits its answer.
        const held = this.#held.splice(0).filter((pending) => !pending.abandoned);
        for (const pending of held) this.#hooks.resend(pending);
        this.#hooks.reconnected(held.length);
      } catch (error) {
        for (const pending of this.#held.splice(0)) pending.reject(error as Error);
        this.#hooks.failed(error as Error);
        throw error;
      } finally {
        this.#reviving = undefined;
      }
    })();
    return this.#reviving;
  }
}
