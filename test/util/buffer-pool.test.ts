import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BufferPool } from '../../src/util/buffer-pool.js';
import { waitUntil } from '../helpers/net.js';
import { FakeClock } from '../helpers/fake-clock.js';

const SIZE = 1024 * 1024;

describe('BufferPool', () => {
  it('reuses what it was given, up to its capacity', () => {
    const pool = new BufferPool(SIZE, 2, { clock: new FakeClock() });
    const a = pool.take();
    const b = pool.take();
    pool.give(a);
    pool.give(b);
    assert.equal(pool.available, 2);
    const again = [pool.take(), pool.take()];
    assert.ok(again.includes(a) && again.includes(b));
    assert.equal(pool.available, 0);
  });

  it('releases a buffer beyond its capacity at once (detached, its memory freed), not left to the GC', async () => {
    const pool = new BufferPool(SIZE, 1, { clock: new FakeClock() });
    const taken = Array.from({ length: 8 }, () => pool.take());
    for (const buffer of taken) buffer.fill(1); // touched: really resident
    const before = process.memoryUsage().arrayBuffers;
    for (const buffer of taken) pool.give(buffer);
    assert.equal(pool.available, 1);
    assert.equal(taken.filter((buffer) => buffer.length === 0).length, 7, 'the 7 over capacity are detached');
    // The memory leaves the process's count without any collection.
    await waitUntil(() => process.memoryUsage().arrayBuffers <= before - 6 * SIZE, 'the released memory to be freed');
  });

  it('releases every free buffer once nothing was taken for idleMs, and not before', () => {
    const clock = new FakeClock();
    const pool = new BufferPool(SIZE, 8, { idleMs: 1000, clock });
    const taken = Array.from({ length: 4 }, () => pool.take());
    for (const buffer of taken) pool.give(buffer);
    clock.advance(600);
    pool.give(pool.take()); // still in use: the idle period starts again
    clock.advance(900);
    assert.equal(pool.available, 4, 'busy 900 ms ago: kept');
    clock.advance(100);
    assert.equal(pool.available, 0);
    assert.ok(taken.every((buffer) => buffer.length === 0), 'all released');
    assert.equal(clock.pending, 0, 'no timer left while empty');
    // Used again afterwards: it allocates afresh and works as before.
    const fresh = pool.take();
    assert.equal(fresh.length, SIZE);
    pool.give(fresh);
    assert.equal(pool.available, 1);
  });

  it('ignores buffers of another size and views into larger memory', () => {
    const pool = new BufferPool(SIZE, 4, { clock: new FakeClock() });
    const other = Buffer.allocUnsafeSlow(SIZE * 2);
    pool.give(other.subarray(0, SIZE));
    pool.give(Buffer.allocUnsafe(100));
    assert.equal(pool.available, 0);
    assert.equal(other.length, SIZE * 2, 'not detached');
  });
});
