/**
 * Manual time for code written against an injected clock (the watchdog's {@link Clock}, a
 * buffer pool's): timers fire only when the test advances the clock.
 */
import type { Clock } from '../../src/util/clock.js';

export class FakeClock implements Clock {
  #now = 1_000_000;
  #timers = new Map<number, { at: number; callback: () => void }>();
  #next = 1;
  now(): number {
    return this.#now;
  }
  setTimeout<T>(callback: (arg: T) => void, ms: number, arg: T): unknown {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + ms, callback: () => callback(arg) });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }
  get pending(): number {
    return this.#timers.size;
  }
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.#now = due[1].at;
      due[1].callback();
    }
    this.#now = end;
  }
}
