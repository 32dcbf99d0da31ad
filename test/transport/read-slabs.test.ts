import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { READ_BYTES, ReadSlabs, SLAB_BYTES } from '../../src/transport/read-slabs.js';

/** One read of up to `bytes` as the socket does it: next(), then filled() with what came. */
function read(slabs: ReadSlabs, bytes: number, fill: number): Buffer {
  const memory = slabs.next();
  const got = Math.min(bytes, memory.length);
  memory.fill(fill, 0, got);
  return slabs.filled(got, memory);
}

describe('ReadSlabs', () => {
  it('hands out consecutive windows of one slab, at most READ_BYTES each', () => {
    const slabs = new ReadSlabs();
    const a = read(slabs, 1000, 1);
    const b = read(slabs, 2000, 2);
    assert.equal(a.buffer, b.buffer, 'the same slab');
    assert.equal(b.byteOffset, a.byteOffset + a.length, 'adjacent in memory');
    assert.ok(slabs.next().length <= READ_BYTES);
  });

  it('never hands out memory that a hold still covers, and reuses a slab once released', () => {
    const slabs = new ReadSlabs();
    const first = read(slabs, 100, 7);
    const hold = slabs.hold(first);
    const firstMemory = first.buffer;
    // Fill the rest of the slab and several more: the held one must not come back.
    const seen = new Set<ArrayBufferLike>();
    for (let i = 0; i < (3 * SLAB_BYTES) / READ_BYTES; i++) seen.add(read(slabs, READ_BYTES, 9).buffer);
    assert.ok(first.every((byte) => byte === 7), 'the held piece is intact');
    const afterFirst = [...seen].filter((memory) => memory !== firstMemory);
    assert.ok(afterFirst.length >= 2, 'new slabs were taken while the first was held');
    hold.release();
    hold.release(); // idempotent
    // The first slab is free again now: reads reach it once the current one is full.
    let reused = false;
    for (let i = 0; i < (4 * SLAB_BYTES) / READ_BYTES && !reused; i++) reused = read(slabs, READ_BYTES, 3).buffer === firstMemory;
    assert.ok(reused, 'the released slab was reused');
  });

  it('reuses its slabs when nothing is held: a long stream of reads touches a bounded amount of memory', () => {
    const slabs = new ReadSlabs();
    const seen = new Set<ArrayBufferLike>();
    for (let i = 0; i < (64 * SLAB_BYTES) / READ_BYTES; i++) seen.add(read(slabs, READ_BYTES, i & 0xff).buffer);
    assert.ok(seen.size <= 2, `${seen.size} slabs for 64 slabs' worth of reads`);
  });

  it('reuses the slabs held pieces come back to, up to what a download holds', () => {
    const slabs = new ReadSlabs();
    const seen = new Set<ArrayBufferLike>();
    for (let round = 0; round < 16; round++) {
      // Hold ~8 MiB of pieces, as a download waiting for its disk does, then release them.
      const holds = [];
      for (let i = 0; i < 8; i++) {
        const piece = read(slabs, READ_BYTES, i);
        seen.add(piece.buffer);
        holds.push(slabs.hold(piece));
      }
      for (const hold of holds) hold.release();
    }
    assert.ok(seen.size <= 6, `${seen.size} distinct slabs over 16 rounds of 8 MiB held`);
  });

  it('needs no hold for memory that is not in a slab (a copy)', () => {
    const slabs = new ReadSlabs();
    const hold = slabs.hold(Buffer.from('a copy'));
    hold.release();
    const a = read(slabs, 10, 1);
    assert.ok(a.length === 10);
  });
});
