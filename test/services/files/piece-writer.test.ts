import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { PieceWriter } from '../../../src/services/files/download/writer.js';
import type { InputHold } from '../../../src/transport/read-slabs.js';

function tempFile(): { file: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tcpkit-writer-'));
  return { file: path.join(dir, 'out'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

describe('PieceWriter', () => {
  it('writes pieces at their positions, joins adjacent ones into fewer writes, and releases every hold once written', async () => {
    const { file, cleanup } = tempFile();
    const fd = openSync(file, 'w+');
    try {
      const memory = Buffer.alloc(300_000);
      for (let i = 0; i < memory.length; i++) memory[i] = i % 251;
      let held = 0;
      let released = 0;
      const writes: number[] = [];
      const writer = new PieceWriter(
        fd,
        (): InputHold => {
          held++;
          return { release: () => void released++ };
        },
        (bytes) => writes.push(bytes),
      );
      // 30 adjacent pieces of one memory: one run; then a piece elsewhere in memory.
      for (let i = 0; i < 30; i++) writer.add(memory.subarray(i * 10_000, (i + 1) * 10_000), i * 10_000);
      const other = Buffer.from('the tail');
      writer.add(other, 300_000);
      assert.equal(writer.queued, 300_000 + other.length);
      await writer.idle();
      assert.equal(writer.queued, 0);
      assert.equal(held, 31);
      assert.equal(released, 31, 'every hold released');
      assert.deepEqual(writes, [300_000, other.length], 'the adjacent pieces left as one write');
      assert.deepEqual(readFileSync(file), Buffer.concat([memory, other]));
      assert.equal(writer.error, undefined);
    } finally {
      closeSync(fd);
      cleanup();
    }
  });

  it('reports a failed write, drops what follows, and still releases the holds', async () => {
    const { file, cleanup } = tempFile();
    closeSync(openSync(file, 'w'));
    const fd = openSync(file, 'r'); // read-only: every write fails
    try {
      let released = 0;
      const writer = new PieceWriter(fd, () => ({ release: () => void released++ }), () => {});
      writer.add(Buffer.from('abc'), 0);
      await writer.idle();
      assert.equal((writer.error as NodeJS.ErrnoException).code, 'EBADF');
      writer.add(Buffer.from('def'), 3);
      await writer.idle();
      assert.equal(released, 1, 'the failed write released its hold; the later piece was never held');
      assert.equal(writer.queued, 0);
    } finally {
      closeSync(fd);
      cleanup();
    }
  });
});
