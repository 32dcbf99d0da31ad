/**
 * The client's heartbeat and its sweep timer, over an injected clock. While replies are awaited
 * and nothing has arrived for `heartbeatMs`, PING; no frame at all for another `heartbeatMs`
 * means the server (or the path to it) is dead. Suspended while we do not read: silence we cause
 * proves nothing. (nats.js `core/src/heartbeats.ts` is the model.)
 */
import { ConnectionError } from '../errors.js';
import type { Clock } from '../util/clock.js';

/** Decides when to PING and when the server is dead; the caller sends and fails. */
export class Heartbeat {
  readonly #everyMs: number;
  readonly #label: string;
  /** `clock.now()` when the server was last heard (a frame, or it took our bytes). */
  #lastHeard: number;
  /** When the heartbeat PING went out, 0 when none is outstanding. */
  #pingSentAt = 0;
  #paused = false;

  /** `everyMs` 0 turns it off; `label` names the server in the verdict. */
  constructor(everyMs: number, label: string, now: number) {
    this.#everyMs = everyMs;
    this.#label = label;
    this.#lastHeard = now;
  }

  /** True while we do not read (see {@link pause}). */
  get paused(): boolean {
    return this.#paused;
  }

  /** A frame arrived: the server is alive and any PING is answered. */
  heard(now: number): void {
    this.#lastHeard = now;
    this.#pingSentAt = 0;
  }

  /**
   * The server took some of our output: alive, though it has nothing to say until an upload
   * ends (and our PING waits behind those bytes), so an outstanding PING gets its time afresh.
   */
  progress(now: number): void {
    this.#lastHeard = now;
    if (this.#pingSentAt !== 0) this.#pingSentAt = now;
  }

  /** We stopped reading: no PING and no verdict until {@link resume}. */
  pause(): void {
    this.#paused = true;
  }

  /** We read again: silence counts afresh from `now`, as if a frame had just arrived. */
  resume(now: number): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.progress(now);
  }

  /**
   * One look at the silence, when replies are awaited (`active`): returns `'ping'` when a PING
   * is due (and counts it sent), the verdict when the server is dead, undefined otherwise.
   */
  check(now: number, active: boolean): 'ping' | ConnectionError | undefined {
    const every = this.#everyMs;
    if (every <= 0 || !active || this.#paused) return undefined;
    if (this.#pingSentAt === 0) {
      if (now - this.#lastHeard < every) return undefined;
      this.#pingSentAt = now;
      return 'ping';
    }
    if (now - this.#pingSentAt < every) return undefined;
    return new ConnectionError('CONNECTION_FAILED', `${this.#label} stopped answering: no pong within ${every} ms`);
  }
}

/**
 * One timer per connection, not one per request: it runs the sweep of deadlines at an eighth of
 * the shortest timeout (so a timeout fires at most 12.5% late), at least every second, and at a
 * quarter of the heartbeat.
 */
export class SweepTimer {
  readonly #clock: Clock;
  readonly #heartbeatMs: number;
  readonly #sweep: () => void;
  #timer: unknown;
  #everyMs = Infinity;

  /** `sweep` runs when the timer fires (it is then disarmed: the sweep re-arms it if needed). */
  constructor(clock: Clock, heartbeatMs: number, sweep: () => void) {
    this.#clock = clock;
    this.#heartbeatMs = heartbeatMs;
    this.#sweep = sweep;
  }

  /** Makes sure a sweep comes soon enough for a timeout of `timeoutMs` (Infinity: the heartbeat only). */
  arm(timeoutMs: number): void {
    const heartbeat = this.#heartbeatMs > 0 ? Math.floor(this.#heartbeatMs / 4) : Infinity;
    const every = Math.min(1000, heartbeat, Math.max(5, Math.floor(timeoutMs / 8)));
    if (this.#timer !== undefined && every >= this.#everyMs) return;
    this.#clock.clearTimeout(this.#timer);
    this.#everyMs = every;
    this.#timer = this.#clock.setTimeout(SweepTimer.#fire, every, this);
  }

  /** Stops the timer. */
  cancel(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  static #fire(self: SweepTimer): void {
    self.#timer = undefined;
    self.#everyMs = Infinity;
    self.#sweep();
  }
}
