/**
 * Whether the server takes our output: for requests that send content (an upload), bytes the
 * server takes are progress, as a reply would be. The same measures as the server's send-stall
 * rule (`transport/watchdog.ts`).
 */

/** What {@link SendProgress} reads of the connection. */
export interface OutputQueue {
  /** Output bytes not yet taken by the kernel. */
  queuedBytes(): number;
  /** Bytes the peer has not acknowledged, as the kernel counts them (undefined: unknown). */
  unacknowledgedBytes(): number | undefined;
}

/** Samples of our output, to tell a slow server that takes our bytes from one that takes none. */
export class SendProgress {
  /** `clock.now()` when the server last took some of our output: a drain, or a sample that moved. */
  #progressAt = 0;
  /** Our queued output at the last sample, to tell when the kernel took more of it. */
  #queuedSample = 0;
  /** The kernel's count of bytes the server has not acknowledged, at the last sample (undefined: none yet). */
  #unackedSample: number | undefined;

  /** When the server last took some of our output (0: never). */
  get progressAt(): number {
    return this.#progressAt;
  }

  /** The connection took a frame of ours without blocking, or drained: progress at `now`. */
  moved(now: number): void {
    this.#progressAt = now;
  }

  /**
   * Samples our output: whether the server took some of it since the last sample, and whether
   * some is still not taken. Taken means our queue shrank (the kernel took more), or the
   * kernel's count of bytes the server has not acknowledged fell. The kernel takes more only
   * once a third of its send buffer is free, so a slow but steady server can show no drain for
   * many seconds, and bytes it holds after the last drain are still on their way; its count (a
   * read of /proc, so read only once the queue has not moved for `quietMs`) shows both. A sample
   * that moved counts as progress.
   */
  sample(queue: OutputQueue, now: number, quietMs: number): { moved: boolean; outstanding: boolean } {
    const queued = queue.queuedBytes();
    const previous = this.#queuedSample;
    this.#queuedSample = queued;
    if (queued < previous) {
      this.#unackedSample = undefined; // the kernel's count rises as it takes more: a new baseline
      this.#progressAt = now;
      return { moved: true, outstanding: true };
    }
    if (now - this.#progressAt < quietMs) return { moved: false, outstanding: queued > 0 };
    const unacked = queue.unacknowledgedBytes();
    const before = this.#unackedSample;
    this.#unackedSample = unacked;
    const moved = unacked !== undefined && before !== undefined && unacked < before;
    if (moved) this.#progressAt = now;
    return { moved, outstanding: queued > 0 || (unacked !== undefined && unacked > 0) };
  }
}
