/**
 * A small free list of equal-sized buffers. Bulk transfers reuse their 1 MiB buffers instead of
 * allocating (and faulting in) a fresh one per chunk: on our VMs, memory freed and touched anew
 * costs more than the copy itself.
 *
 * Memory it no longer needs is given back to the system at once, not left to the garbage
 * collector: an idle server runs no collection, and glibc keeps 1 MiB blocks freed by one in
 * its heap (its mmap threshold rises past them after the first), so RSS stayed up long after a
 * burst of downloads. Buffers beyond the pool's capacity, and every free buffer once the pool
 * has been idle for `idleMs`, are released that way.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { Clock } from './clock.js';

/**
 * The size of bulk payload buffers (1 MiB): the largest DATA and PUT_DATA payload, which every
 * client and server accepts. tcpkit's one constant for it (`DATA_CHUNK_BYTES` is this).
 */
export const BULK_BUFFER_BYTES = 1024 * 1024;

/** Time and timers of a pool: the one {@link Clock} of tcpkit. */
export type PoolClock = Clock;

const systemClock: PoolClock = {
  now: () => Date.now(),
  // Unref'd: a pool waiting to trim must not keep the process alive.
  setTimeout: (callback, ms, arg) => setTimeout(callback, ms, arg).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Options of a {@link BufferPool}. */
export interface BufferPoolOptions {
  /** Free buffers are released once nothing was taken for this long. @default 1000 */
  idleMs?: number;
  clock?: PoolClock;
}

/** A port whose other end is closed: what is transferred to it is freed when dropped, no GC needed. */
let sink: MessagePort | undefined;

/**
 * Frees `buffer`'s memory now. Transferring an ArrayBuffer detaches it (every view then has
 * length 0) and moves its memory into a message, which a closed port drops. The caller
 * guarantees nothing uses the buffer any more.
 */
export function releaseBuffer(buffer: Buffer): void {
  if (sink === undefined) {
    const channel = new MessageChannel();
    channel.port2.close();
    sink = channel.port1;
    sink.unref();
  }
  const memory = buffer.buffer as ArrayBuffer;
  sink.postMessage(memory, [memory]);
}

/** A pool of equal-sized buffers, reused instead of allocated, and released when idle. */
export class BufferPool {
  /** Bytes of each buffer the pool holds; `take()` returns buffers of exactly this size. */
  readonly size: number;
  readonly #max: number;
  readonly #free: Buffer[] = [];
  readonly #idleMs: number;
  readonly #clock: PoolClock;
  #lastTake = 0;
  #timer: unknown;

  /** Buffers of `size` bytes; at most `max` free ones are kept. */
  constructor(size: number, max: number, options: BufferPoolOptions = {}) {
    this.size = size;
    this.#max = max;
    this.#idleMs = options.idleMs ?? 1000;
    this.#clock = options.clock ?? systemClock;
  }

  /** Free buffers held now. */
  get available(): number {
    return this.#free.length;
  }

  /**
   * A buffer of `bytes` bytes, contents undefined: from the pool when it is the pool's size.
   * One function per pool, shared by every connection that allocates from it.
   */
  readonly allocate = (bytes: number): Buffer => (bytes === this.size ? this.take() : Buffer.allocUnsafe(bytes));

  /** A buffer of `size` bytes, contents undefined. */
  take(): Buffer {
    this.#lastTake = this.#clock.now();
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /**
   * Returns a buffer nobody references any more (a view into it would see it overwritten, or
   * emptied). One of the pool's size beyond its capacity is released at once; one of another
   * size, or a view into a larger allocation, is left to the garbage collector.
   */
  give(buffer: Buffer): void {
    if (buffer.length !== this.size || buffer.byteOffset !== 0 || buffer.buffer.byteLength !== this.size) return;
    if (this.#free.length >= this.#max) {
      releaseBuffer(buffer);
      return;
    }
    this.#free.push(buffer);
    if (this.#timer === undefined) this.#timer = this.#clock.setTimeout(BufferPool.#idleCheck, this.#idleMs, this);
  }

  static #idleCheck(pool: BufferPool): void {
    pool.#timer = undefined;
    if (pool.#free.length === 0) return;
    const quietFor = pool.#clock.now() - pool.#lastTake;
    if (quietFor < pool.#idleMs) {
      pool.#timer = pool.#clock.setTimeout(BufferPool.#idleCheck, pool.#idleMs - quietFor, pool);
      return;
    }
    for (const buffer of pool.#free.splice(0)) releaseBuffer(buffer);
  }
}

/**
 * The process's one pool of {@link BULK_BUFFER_BYTES} buffers, shared by every bulk transfer:
 * the download service's chunks, an upload's chunks, the payloads a connection assembles. 32
 * free buffers (32 MiB) at most: the largest of the pools it replaces (the download service
 * kept 32, the upload client 8, a server's connections 16, a client's 4), so a busy server
 * reuses as much as before; and an idle pool gives all of it back within {@link
 * BufferPoolOptions.idleMs}, so the bound costs nothing once transfers stop.
 */
export const bulkBuffers = new BufferPool(BULK_BUFFER_BYTES, 32);
