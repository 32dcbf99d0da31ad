/**
 * The per-connection watchdog: one timer, named deadlines for each phase a connection can be
 * stuck in (RELIABILITY.md G5). Pure logic over an injected clock, so its edges are tested with
 * fake time; the Connection feeds it events.
 *
 * - handshake: the hello (or a raw request) must be complete this long after accept.
 * - request:   a frame that has started arriving must be complete this long after its first
 *              byte; trickling bytes does not extend it (slowloris).
 * - idle:      no request in flight, no frame half-received, nothing being sent, and no bytes
 *              either way for this long.
 * - send-stall: while our output is blocked (the peer does not read), the bytes still queued
 *              must shrink at least once in this long; a slow reader that keeps making progress
 *              is never cut.
 */

/** Time and timers, injectable for tests. */
export interface Clock {
  now(): number;
  /** Calls `callback(arg)` after `ms` (an argument, not a closure: no allocation per connection). */
  setTimeout<T>(callback: (arg: T) => void, ms: number, arg: T): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms, arg) => setTimeout(callback, ms, arg),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Which deadline passed. */
export type Expiry = 'handshake' | 'request' | 'idle' | 'send-stall';

/** The deadlines, in milliseconds; 0 turns one off. */
export interface WatchdogTimeouts {
  handshakeMs: number;
  requestMs: number;
  idleMs: number;
  sendStallMs: number;
}

/** What a watchdog watches: it asks for queued output and reports expiry. */
export interface WatchdogOwner {
  /** Bytes of output still queued, for send-progress. */
  queuedBytes(): number;
  /** A deadline passed; the watchdog has stopped. */
  expired(why: Expiry): void;
}

export class Watchdog {
  readonly #timeouts: WatchdogTimeouts;
  readonly #clock: Clock;
  readonly #owner: WatchdogOwner;
  readonly #startedAt: number;
  #handshakeDone = false;
  #busy = false;
  #lastActivity: number;
  #partialSince: number | undefined;
  #blocked = false;
  #lastProgressAt = 0;
  #lastQueued = 0;
  #timer: unknown;
  #armedFor = Infinity;
  #stopped = false;

  /** `timeouts` may be shared by every connection of a server: it is only read. */
  constructor(timeouts: WatchdogTimeouts, owner: WatchdogOwner, clock: Clock = systemClock) {
    this.#timeouts = timeouts;
    this.#owner = owner;
    this.#clock = clock;
    this.#startedAt = clock.now();
    this.#lastActivity = this.#startedAt;
    this.#rearm();
  }

  /** The hello (or raw request) is complete: the handshake deadline no longer applies. */
  handshakeDone(): void {
    this.#handshakeDone = true;
    this.#lastActivity = this.#clock.now();
    this.#rearm();
  }

  /** Requests are in flight (never idle) or not. */
  setBusy(busy: boolean): void {
    if (busy === this.#busy) return;
    this.#busy = busy;
    if (!busy) {
      this.#lastActivity = this.#clock.now();
      this.#rearm();
    }
  }

  /** Bytes moved, either way. Cheap: no timer work on the hot path. */
  activity(): void {
    this.#lastActivity = this.#clock.now();
  }

  /** A frame has started arriving (`true`) or none is half-received (`false`). */
  partialFrame(pending: boolean): void {
    if (pending) {
      if (this.#partialSince !== undefined) return;
      this.#partialSince = this.#clock.now();
      this.#rearm();
    } else {
      this.#partialSince = undefined;
    }
  }

  /** Our output is blocked by a peer that does not read (`true`), or flows again. */
  sendBlocked(blocked: boolean): void {
    if (blocked === this.#blocked) return;
    this.#blocked = blocked;
    if (blocked) {
      this.#lastProgressAt = this.#clock.now();
      this.#lastQueued = this.#owner.queuedBytes();
      this.#rearm();
    } else {
      this.#lastActivity = this.#clock.now();
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The earliest deadline in force (ms since the epoch of the clock), or Infinity. */
  #nextDeadline(): number {
    const { handshakeMs, requestMs, idleMs, sendStallMs } = this.#timeouts;
    let next = Infinity;
    if (!this.#handshakeDone && handshakeMs > 0) next = Math.min(next, this.#startedAt + handshakeMs);
    if (this.#partialSince !== undefined && requestMs > 0) next = Math.min(next, this.#partialSince + requestMs);
    if (this.#blocked && sendStallMs > 0) next = Math.min(next, this.#lastProgressAt + sendStallMs);
    if (this.#idleCounts() && idleMs > 0) next = Math.min(next, this.#lastActivity + idleMs);
    return next;
  }

  #idleCounts(): boolean {
    return this.#handshakeDone && !this.#busy && this.#partialSince === undefined && !this.#blocked;
  }

  #rearm(): void {
    if (this.#stopped) return;
    const next = this.#nextDeadline();
    if (next >= this.#armedFor) return; // the armed timer fires first and re-checks
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#armedFor = next;
    this.#timer = next === Infinity ? undefined : this.#clock.setTimeout(Watchdog.#fire, Math.max(0, next - this.#clock.now()), this);
  }

  static #fire(dog: Watchdog): void {
    dog.#check();
  }

  #check(): void {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    if (this.#stopped) return;
    const now = this.#clock.now();
    const { handshakeMs, requestMs, idleMs, sendStallMs } = this.#timeouts;
    if (this.#blocked) {
      const queued = this.#owner.queuedBytes();
      if (queued < this.#lastQueued) {
        this.#lastQueued = queued;
        this.#lastProgressAt = now;
      }
    }
    let expired: Expiry | undefined;
    if (!this.#handshakeDone && handshakeMs > 0 && now >= this.#startedAt + handshakeMs) expired = 'handshake';
    else if (this.#partialSince !== undefined && requestMs > 0 && now >= this.#partialSince + requestMs) expired = 'request';
    else if (this.#blocked && sendStallMs > 0 && now >= this.#lastProgressAt + sendStallMs) expired = 'send-stall';
    else if (this.#idleCounts() && idleMs > 0 && now >= this.#lastActivity + idleMs) expired = 'idle';
    if (expired !== undefined) {
      this.stop();
      this.#owner.expired(expired);
      return;
    }
    this.#rearm();
  }
}
