import assert from 'node:assert/strict';
import { it } from 'node:test';
import fc from 'fast-check';
import { PREAMBLE } from '../../src/protocol/constants.js';
import { encodeFrame, FrameDecoder, type Frame } from '../../src/protocol/frame.js';

const frameArb = fc.record({
  type: fc.integer({ min: 0, max: 255 }),
  id: fc.integer({ min: 0, max: 0xffff_ffff }),
  payload: fc.uint8Array({ maxLength: 3000 }),
});

function plain(frames: Frame[]): Array<{ type: number; id: number; payload: number[] }> {
  return frames.map((f) => ({ type: f.type, id: f.id, payload: [...f.payload] }));
}

it('reusedInput: frames come out intact when every chunk is read into the same buffer', () => {
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 12 }), fc.integer({ min: 1, max: 4096 }), (specs, chunkSize) => {
      const stream = Buffer.concat([Buffer.from(PREAMBLE), ...specs.map((f) => encodeFrame(f.type, f.id, f.payload))]);
      const shared = Buffer.alloc(chunkSize);
      const decoder = new FrameDecoder({ maxFrameBytes: 4096, reusedInput: true });
      const frames: Frame[] = [];
      for (let at = 0; at < stream.length; at += chunkSize) {
        const n = Math.min(chunkSize, stream.length - at);
        stream.copy(shared, 0, at, at + n);
        frames.push(...decoder.push(shared.subarray(0, n)));
        shared.fill(0xee); // the caller reuses the memory at once
      }
      assert.deepEqual(plain(frames), specs.map((f) => ({ type: f.type, id: f.id, payload: [...f.payload] })));
    }),
    { numRuns: Number(process.env.FC_NUM_RUNS ?? 300) },
  );
});
