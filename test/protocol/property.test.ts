/**
 * Property tests of the frame codec (fast-check). A failure prints the seed and path; rerun it
 * with FC_SEED=<seed> FC_PATH=<path>. FC_NUM_RUNS overrides the number of runs per property.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../../src/errors.js';
import { HEADER_BYTES, MAX_REQUEST_ID, preambleBytes } from '../../src/protocol/constants.js';
import { encodeFrame, encodeHeader, FrameDecoder } from '../../src/protocol/frame.js';

function runParameters(): fc.Parameters<unknown> {
  const numRuns = Number.parseInt(process.env.FC_NUM_RUNS ?? '', 10);
  const seed = Number.parseInt(process.env.FC_SEED ?? '', 10);
  const params: fc.Parameters<unknown> = { numRuns: numRuns > 0 ? numRuns : 300 };
  if (Number.isSafeInteger(seed)) params.seed = seed;
  if (process.env.FC_PATH) params.path = process.env.FC_PATH;
  return params;
}

const PARAMS = runParameters();

interface PlainFrame {
  type: number;
  flags: number;
  id: number;
  payload: Uint8Array;
}

/** A frame whose payload is at most `maxFrameBytes`, with exactly-the-limit payloads made likely. */
function frameArb(maxFrameBytes: number): fc.Arbitrary<PlainFrame> {
  return fc.record({
    type: fc.integer({ min: 0, max: 0xff }),
    flags: fc.integer({ min: 0, max: 0xff }),
    id: fc.oneof(fc.constantFrom(0, 1, MAX_REQUEST_ID), fc.integer({ min: 0, max: MAX_REQUEST_ID })),
    payload: fc.oneof(
      { weight: 4, arbitrary: fc.uint8Array({ maxLength: Math.min(maxFrameBytes, 64) }) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: maxFrameBytes }) },
      { weight: 1, arbitrary: fc.uint8Array({ minLength: maxFrameBytes, maxLength: maxFrameBytes }) },
    ),
  });
}

/** Split points as free integers, reduced modulo the stream length when used. */
const splitsArb = fc.array(fc.nat(), { maxLength: 24 });

/** Cuts `bytes` at the given points (reduced into range, sorted, duplicates give empty chunks). */
function chunk(bytes: Buffer, splits: readonly number[]): Buffer[] {
  const points = splits.map((p) => p % (bytes.length + 1)).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const point of [...points, bytes.length]) {
    chunks.push(bytes.subarray(from, point));
    from = point;
  }
  return chunks;
}

function encodeAll(frames: readonly PlainFrame[], preamble: boolean): { bytes: Buffer; ends: number[] } {
  const parts: Buffer[] = preamble ? [preambleBytes()] : [];
  const ends: number[] = [];
  let offset = preamble ? preambleBytes().length : 0;
  for (const f of frames) {
    const encoded = encodeFrame(f.type, f.id, f.payload, f.flags);
    parts.push(encoded);
    offset += encoded.length;
    ends.push(offset);
  }
  return { bytes: Buffer.concat(parts), ends };
}

function plain(frames: readonly { type: number; flags: number; id: number; payload: Uint8Array }[]): string[] {
  return frames.map((f) => `${f.type}/${f.flags}/${f.id}/${Buffer.from(f.payload).toString('hex')}`);
}

/** A limit, and frames that respect it. */
const streamArb = fc
  .integer({ min: 0, max: 1024 })
  .chain((maxFrameBytes) =>
    fc.record({
      maxFrameBytes: fc.constant(maxFrameBytes),
      frames: fc.array(frameArb(maxFrameBytes), { maxLength: 12 }),
      preamble: fc.boolean(),
    }),
  );

/**
 * Bytes that look like frames often enough to reach every decoder state: headers announcing
 * lengths near the limit, bodies shorter or longer than announced, and plain noise.
 */
function hostileArb(maxFrameBytes: number): fc.Arbitrary<Buffer> {
  const header = fc
    .record({
      type: fc.integer({ min: 0, max: 0xff }),
      flags: fc.integer({ min: 0, max: 0xff }),
      id: fc.integer({ min: 0, max: MAX_REQUEST_ID }),
      length: fc.oneof(
        fc.integer({ min: 0, max: maxFrameBytes }),
        fc.integer({ min: Math.max(0, maxFrameBytes - 2), max: maxFrameBytes + 2 }),
      ),
      body: fc.uint8Array({ maxLength: maxFrameBytes + 2 * HEADER_BYTES }),
    })
    .map((h) => Buffer.concat([encodeHeader(h.type, h.id, h.length, h.flags), h.body]));
  const noise = fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b));
  return fc.array(fc.oneof({ weight: 3, arbitrary: header }, { weight: 1, arbitrary: noise }), { maxLength: 8 }).map((parts) => Buffer.concat(parts));
}

describe('frame codec properties', () => {
  it('decode(encode(frames)) returns the frames, however the bytes are chunked', () => {
    fc.assert(
      fc.property(streamArb, splitsArb, ({ maxFrameBytes, frames, preamble }, splits) => {
        const { bytes } = encodeAll(frames, preamble);
        const decoder = new FrameDecoder({ maxFrameBytes, expectPreamble: preamble });
        const decoded = chunk(bytes, splits).flatMap((c) => decoder.push(c));
        assert.deepEqual(plain(decoded), plain(frames));
        assert.equal(decoder.bufferedBytes, 0);
        assert.equal(decoder.preambleDone, true);
      }),
      PARAMS,
    );
  });

  it('a strict prefix of a valid stream yields exactly the frames wholly inside it, without throwing', () => {
    fc.assert(
      fc.property(streamArb, fc.nat(), splitsArb, ({ maxFrameBytes, frames, preamble }, cutSeed, splits) => {
        const { bytes, ends } = encodeAll(frames, preamble);
        fc.pre(bytes.length > 0);
        const cut = cutSeed % bytes.length;
        const prefix = bytes.subarray(0, cut);
        const decoder = new FrameDecoder({ maxFrameBytes, expectPreamble: preamble });
        const decoded = chunk(prefix, splits).flatMap((c) => decoder.push(c));
        const whole = ends.filter((end) => end <= cut).length;
        assert.deepEqual(plain(decoded), plain(frames.slice(0, whole)));
        const lastEnd = whole === 0 ? 0 : ends[whole - 1]!;
        assert.ok(decoder.bufferedBytes <= cut - lastEnd, `buffered ${decoder.bufferedBytes} of ${cut - lastEnd} undecoded bytes`);
        assert.equal(decoder.failure, undefined);
        // The rest of the stream completes it: "need more" lost nothing.
        const rest = decoder.push(bytes.subarray(cut));
        assert.deepEqual(plain([...decoded, ...rest]), plain(frames));
      }),
      PARAMS,
    );
  });

  it('frames of pieceTypes arrive in pieces that join into the frame, as views of the input, even of reused input', () => {
    const input = streamArb.chain((stream) =>
      fc.record({ stream: fc.constant(stream), pieceTypes: fc.uniqueArray(fc.integer({ min: 0, max: 0xff }), { maxLength: 4 }), reused: fc.boolean() }),
    );
    fc.assert(
      fc.property(input, splitsArb, ({ stream: { maxFrameBytes, frames, preamble }, pieceTypes, reused }, splits) => {
        // Some of the frames' own types, so pieces are common.
        const types = new Set([...pieceTypes, ...frames.filter((_, i) => i % 2 === 0).map((f) => f.type)]);
        const { bytes } = encodeAll(frames, preamble);
        const decoder = new FrameDecoder({ maxFrameBytes, expectPreamble: preamble, pieceTypes: types, reusedInput: reused });
        const joined: PlainFrame[] = [];
        let open: { type: number; id: number; parts: Buffer[] } | undefined;
        // With reused input, every push lands in the same memory, overwritten after each push.
        const memory = Buffer.alloc(bytes.length + 1);
        for (const part of chunk(bytes, splits)) {
          const pushed = reused ? memory.subarray(0, part.length) : part;
          if (reused) part.copy(pushed);
          for (const frame of decoder.push(pushed)) {
            if (frame.last === undefined) {
              assert.equal(open, undefined, 'a whole frame inside a frame in pieces');
              assert.ok(!types.has(frame.type) || frame.payload.length === 0, 'a frame of a piece type came whole');
              joined.push({ type: frame.type, flags: frame.flags, id: frame.id, payload: Buffer.from(frame.payload) });
              continue;
            }
            assert.ok(types.has(frame.type));
            assert.ok(frame.payload.length > 0, 'an empty piece');
            // Never a copy: a piece lies in the memory just pushed, unless it is bytes the
            // decoder had to keep from an earlier push (only ever a piece's first bytes).
            if (frame.payload.buffer !== pushed.buffer) assert.equal(open, undefined, 'a later piece that is not a view of the input');
            open ??= { type: frame.type, id: frame.id, parts: [] };
            assert.equal(frame.type, open.type);
            assert.equal(frame.id, open.id);
            open.parts.push(Buffer.from(frame.payload)); // used at once, as a receiver must
            if (frame.last) {
              joined.push({ type: frame.type, flags: frame.flags, id: frame.id, payload: Buffer.concat(open.parts) });
              open = undefined;
            }
          }
          if (reused) memory.fill(0xee);
        }
        assert.equal(open, undefined);
        assert.deepEqual(plain(joined), plain(frames));
        assert.equal(decoder.midFrame, false);
      }),
      PARAMS,
    );
  });

  for (const withPreamble of [true, false]) {
    it(`arbitrary bytes ${withPreamble ? 'after a valid preamble' : 'from the first byte'} only ever raise ProtocolError and stay bounded`, () => {
      const input = fc
        .integer({ min: 64, max: 4096 })
        .chain((maxFrameBytes) =>
          fc.record({
            maxFrameBytes: fc.constant(maxFrameBytes),
            bytes: fc.oneof(hostileArb(maxFrameBytes), fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b))),
            expectPreamble: withPreamble ? fc.constant(true) : fc.boolean(),
          }),
        );
      fc.assert(
        fc.property(input, splitsArb, ({ maxFrameBytes, bytes, expectPreamble }, splits) => {
          const stream = withPreamble ? Buffer.concat([preambleBytes(), bytes]) : bytes;
          const decoder = new FrameDecoder({ maxFrameBytes, expectPreamble });
          let failure: unknown;
          for (const piece of chunk(stream, splits)) {
            if (failure !== undefined) {
              assert.throws(
                () => decoder.push(piece),
                (error: unknown) => error === failure,
              );
              continue;
            }
            try {
              for (const frame of decoder.push(piece)) assert.ok(frame.payload.length <= maxFrameBytes);
            } catch (error) {
              if (!(error instanceof ProtocolError)) throw error;
              assert.match(error.code, /^TCPKIT_ERR_(NOT_TCPKIT|FRAME_TOO_LARGE)$/);
              assert.equal(decoder.failure, error);
              failure = error;
              continue;
            }
            assert.ok(
              decoder.bufferedBytes <= HEADER_BYTES + maxFrameBytes,
              `buffered ${decoder.bufferedBytes} > ${HEADER_BYTES} + ${maxFrameBytes}`,
            );
          }
        }),
        PARAMS,
      );
    });
  }
});
