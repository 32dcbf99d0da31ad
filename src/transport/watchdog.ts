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
 * - send-stall: while our output is blocked (the peer does not read), the peer must take some
 *              of our bytes at least once in this long; a slow reader that keeps making progress
 *              is never cut. Taken means: our queue shrank (the kernel accepted more), or the
 *              kernel's count of bytes the peer has not acknowledged fell. The kernel accepts
 *              more only after a third of its send buffer (MiBs) is free, so a slow reader
 *              would show no progress for many seconds without the second measure; that one
 *              costs a read of /proc, so it is sampled only when the first shows nothing: at
 *              half the deadline (a baseline) and at the deadline.
 */
import { systemClock, type Clock } from '../util/clock.js';

export type { Clock };

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
  /**
   * Bytes handed to the connection so far (queued ones included): with {@link queuedBytes}, what
   * the kernel has taken, a count that only grows, however many streams write while blocked.
   * @default 0 (only the queue shrinking counts)
   */
  sentBytes?(): number;
  /**
   * Bytes sent or queued in the kernel that the peer has not acknowledged, or undefined when
   * this cannot be known (then only {@link queuedBytes} counts).
   */
  unacknowledgedBytes?(): number | undefined;
  /** A deadline passed; the watchdog has stopped. */
  expired(why: Expiry): void;
}

/**
 * The deadlines of one connection (see the file comment), on one timer of its clock. It calls
 * {@link WatchdogOwner.expired} once, with the first deadline that passed, and stops.
 */
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
  /** Bytes the kernel had taken from us at the last look (sent minus queued: never falls). */
  #lastAccepted = 0;
  /**
   * Bytes the peer had acknowledged at the last sample (taken minus unacknowledged: never
   * falls): undefined while a baseline is wanted, null when the owner could not tell this time
   * (asked again once the kernel takes more, or at the next block).
   */
  #lastAcked: number | undefined | null = undefined;
  #timer: unknown;
  #armedFor = Infinity;
  #stopped = false;

  /**
   * `timeouts` may be shared by every connection of a server: it is only read. `startedAt` is
   * when the connection was accepted (the handshake deadline counts from it), when that was
   * before the watchdog was made (a server that first looked at the client's first byte).
   */
  constructor(timeouts: WatchdogTimeouts, owner: WatchdogOwner, clock: Clock = systemClock, startedAt: number = clock.now()) {
    this.#timeouts = timeouts;
    this.#owner = owner;
    this.#clock = clock;
    this.#startedAt = startedAt;
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
      this.#lastAccepted = this.#accepted();
      this.#lastAcked = undefined;
      this.#rearm();
    } else {
      this.#lastActivity = this.#clock.now();
    }
  }

  /** No deadline applies any more (the connection closed): clears the timer. Idempotent and final. */
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
    if (this.#blocked && sendStallMs > 0) next = Math.min(next, this.#lastProgressAt + this.#stallCheckAfter(sendStallMs));
    if (this.#idleCounts() && idleMs > 0) next = Math.min(next, this.#lastActivity + idleMs);
    return next;
  }

  /** A baseline of unacknowledged bytes is sampled at half the deadline, when one is wanted. */
  #stallCheckAfter(sendStallMs: number): number {
    return this.#lastAcked === undefined && this.#owner.unacknowledgedBytes !== undefined ? Math.floor(sendStallMs / 2) : sendStallMs;
  }

  #accepted(): number {
    return (this.#owner.sentBytes?.() ?? 0) - this.#owner.queuedBytes();
  }

  /**
   * Whether the peer took some of our bytes since the last look; updates the samples. Both
   * measures only ever grow, so more output written while blocked (another reply stream) cannot
   * hide a peer that keeps reading.
   */
  #sendProgressed(): boolean {
    const accepted = this.#accepted();
    if (accepted > this.#lastAccepted) {
      this.#lastAccepted = accepted;
      this.#lastAcked = undefined; // and a fresh baseline of the kernel's count
      return true;
    }
    if (this.#lastAcked === null) return false;
    const unacked = this.#owner.unacknowledgedBytes?.();
    if (unacked === undefined) {
      this.#lastAcked = null;
      return false;
    }
    const acked = accepted - unacked;
    const progressed = this.#lastAcked !== undefined && acked > this.#lastAcked;
    this.#lastAcked = acked;
    return progressed;
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
    // Send progress is looked at only when its check is due: a look may read /proc.
    if (this.#blocked && sendStallMs > 0 && now >= this.#lastProgressAt + this.#stallCheckAfter(sendStallMs) && this.#sendProgressed()) {
      this.#lastProgressAt = now;
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
