/**
 * Socket reads into slabs: the memory a client socket reads into (`onread`), handed out so that
 * a received byte is never copied in user space. Each read lands in the next free part of a
 * 4 MiB slab, up to 1 MiB at a time; the frame decoder hands DATA on as views of it
 * (protocol/frame.ts, `pieceTypes`), and a reader that keeps a view past its `frame` call (an
 * asynchronous disk write) holds the slab until it releases it. A slab is reused only once it
 * is full and nothing holds it, so a view stays valid for as long as it is held.
 *
 * Memory is bounded by what readers hold (a download pauses reading while its disk is behind),
 * plus one slab being filled; at most {@link FREE_SLABS} empty slabs are kept for reuse.
 */

/** Bytes of one slab. */
export const SLAB_BYTES = 4 * 1024 * 1024;
/** The most one read asks the kernel for. */
export const READ_BYTES = 1024 * 1024;
/** A slab with less room than this left takes no more reads: the next read starts a new one. */
const MIN_READ_BYTES = 256 * 1024;
/**
 * Empty slabs kept for the next ones: enough for what a download holds while its disk is behind
 * (8 MiB, see download/save.ts) to come back and be reused. A slab dropped and allocated anew
 * costs a page fault per 4 KiB on first touch: on these VMs, more than the copy into it.
 */
const FREE_SLABS = 4;

interface Slab {
  readonly memory: Buffer;
  /** Bytes handed out to reads so far. */
  used: number;
  /** Views of it held by readers. */
  holds: number;
  /** Full: takes no more reads, free again once nothing holds it. */
  retired: boolean;
}

/** What a reader keeps while it uses a piece past its `frame` call; released exactly once. */
export interface InputHold {
  release(): void;
}

/** The hold of memory that needs none (a copy). */
export const NO_HOLD: InputHold = Object.freeze({ release() {} });

/** The slabs of one socket; see the file comment. */
export class ReadSlabs {
  #current: Slab;
  readonly #free: Slab[] = [];
  /** Slabs by their memory, to find the one a view lies in. */
  readonly #byMemory = new WeakMap<ArrayBufferLike, Slab>();

  /** Starts with one slab; more are taken as reads need them. */
  constructor() {
    this.#current = this.#newSlab();
  }

  /** For `onread.buffer`: the memory of the next read. */
  readonly next = (): Buffer => {
    let slab = this.#current;
    if (SLAB_BYTES - slab.used < MIN_READ_BYTES) {
      const full = slab;
      slab = this.#current = this.#free.pop() ?? this.#newSlab();
      // Free again at once when nothing holds it (a reader that used every piece in its call).
      full.retired = true;
      if (full.holds === 0) this.#recycle(full);
    }
    return slab.memory.subarray(slab.used, slab.used + Math.min(READ_BYTES, SLAB_BYTES - slab.used));
  };

  /** A read of `bytes` into `memory`, the last buffer {@link next} gave: the view to decode. */
  filled(bytes: number, memory: Uint8Array): Buffer {
    const slab = this.#current;
    // `memory` starts at `slab.used`: next() handed it out, and nothing read into it since.
    slab.used += bytes;
    return Buffer.from(memory.buffer, memory.byteOffset, bytes);
  }

  /**
   * Keeps the memory of `view` from being reused until the hold is released. A view not in a
   * slab (a copy) needs no hold.
   */
  hold(view: Uint8Array): InputHold {
    const slab = this.#byMemory.get(view.buffer);
    if (slab === undefined) return NO_HOLD;
    slab.holds++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        if (--slab.holds === 0 && slab.retired) this.#recycle(slab);
      },
    };
  }

  #newSlab(): Slab {
    const slab: Slab = { memory: Buffer.allocUnsafeSlow(SLAB_BYTES), used: 0, holds: 0, retired: false };
    this.#byMemory.set(slab.memory.buffer, slab);
    return slab;
  }

  #recycle(slab: Slab): void {
    if (slab === this.#current) return;
    if (this.#free.length >= FREE_SLABS) return; // left to the garbage collector
    slab.used = 0;
    slab.retired = false;
    this.#free.push(slab);
  }
}
