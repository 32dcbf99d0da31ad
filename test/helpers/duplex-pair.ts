/**
 * Two in-memory `Duplex` streams wired to each other (as ws's test/duplex-pair.js): what one
 * writes, the other reads; ending one is the other's EOF; destroying one is the other's EOF too
 * (a closed peer). A write waits while the other side's read buffer is full, so backpressure
 * works as on a socket. No sockets, no ports, no timers.
 */
import { Duplex } from 'node:stream';

class End extends Duplex {
  other!: End;
  /** The callback of a write held until the other side reads (its buffer was full). */
  #held: (() => void) | undefined;

  override _read(): void {
    const held = this.other === undefined ? undefined : this.other.#held;
    if (held !== undefined) {
      this.other.#held = undefined;
      held();
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.other.destroyed || this.other.readableEnded) {
      callback();
      return;
    }
    if (this.other.push(chunk)) callback();
    else this.#held = () => callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.other.destroyed) this.other.push(null);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.other.destroyed && !this.other.readableEnded) this.other.push(null);
    const held = this.#held;
    this.#held = undefined;
    held?.();
    callback(error);
  }
}

/** A connected pair: `[a, b]`, a's writes are b's reads and the other way round. */
export function duplexPair(): [Duplex, Duplex] {
  const a = new End({ allowHalfOpen: true });
  const b = new End({ allowHalfOpen: true });
  a.other = b;
  b.other = a;
  return [a, b];
}
