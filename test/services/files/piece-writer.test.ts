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
  it('writes pieces at their positions, gathers those that follow each other in the file into one write, and releases every hold once written', async () => {
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
      // 30 pieces that follow each other in the file, then one from other memory that follows
      // them too (as DATA payloads do, a frame header apart): one write. Then a gap: another.
      for (let i = 0; i < 30; i++) writer.add(memory.subarray(i * 10_000, (i + 1) * 10_000), i * 10_000);
      const tail = Buffer.from('the tail');
      writer.add(tail, 300_000);
      const far = Buffer.from('far away');
      writer.add(far, 400_000);
      assert.equal(writer.queued, 300_000 + tail.length + far.length);
      await writer.idle();
      assert.equal(writer.queued, 0);
      assert.equal(held, 32);
      assert.equal(released, 32, 'every hold released');
      assert.deepEqual(writes, [300_000 + tail.length, far.length], 'one write per run of the file');
      const written = readFileSync(file);
      assert.deepEqual(written.subarray(0, 300_008), Buffer.concat([memory, tail]));
      assert.deepEqual(written.subarray(400_000), far);
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
