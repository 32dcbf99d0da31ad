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

  it('needs no hold for memory that is not in a slab (a copy)', () => {
    const slabs = new ReadSlabs();
    const hold = slabs.hold(Buffer.from('a copy'));
    hold.release();
    const a = read(slabs, 10, 1);
    assert.ok(a.length === 10);
  });
});
