/**
 * A small free list of equal-sized buffers. Bulk transfers reuse their 1 MiB buffers instead of
 * allocating (and faulting in) a fresh one per chunk: on our VMs, memory freed and touched anew
 * costs more than the copy itself.
 */
/** The size of bulk payload buffers: DATA and PUT_DATA frames (1 MiB). */
export const BULK_BUFFER_BYTES = 1024 * 1024;

export class BufferPool {
  readonly size: number;
  readonly #max: number;
  readonly #free: Buffer[] = [];

  constructor(size: number, max: number) {
    this.size = size;
    this.#max = max;
  }

  /**
   * A buffer of `bytes` bytes, contents undefined: from the pool when it is the pool's size.
   * One function per pool, shared by every connection that allocates from it.
   */
  readonly allocate = (bytes: number): Buffer => (bytes === this.size ? this.take() : Buffer.allocUnsafe(bytes));

  /** A buffer of `size` bytes, contents undefined. */
  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /**
   * Returns a buffer nobody references any more (a view into it would see it overwritten).
   * Buffers of another size, or beyond the pool's capacity, are left to the garbage collector.
   */
  give(buffer: Buffer): void {
    if (buffer.length === this.size && buffer.byteOffset === 0 && buffer.buffer.byteLength === this.size && this.#free.length < this.#max) {
      this.#free.push(buffer);
    }
  }
}
