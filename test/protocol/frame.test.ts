import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError } from '../../src/errors.js';
import {
  FrameType,
  HARD_MAX_FRAME_BYTES,
  HEADER_BYTES,
  MAX_REQUEST_ID,
  PREAMBLE,
  preambleBytes,
} from '../../src/protocol/constants.js';
import { encodeFrame, encodeHeader, FrameDecoder, type Frame } from '../../src/protocol/frame.js';

/** A frame with its payload copied out of the decoder's chunks, comparable with deepEqual. */
interface PlainFrame {
  type: number;
  flags: number;
  id: number;
  payload: string;
}

function plain(frames: readonly Frame[]): PlainFrame[] {
  return frames.map((f) => ({ type: f.type, flags: f.flags, id: f.id, payload: f.payload.toString('hex') }));
}

function isProtocolError(code: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}

/** Deterministic payload bytes, so a byte out of place shows in the comparison. */
function pattern(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = (seed * 31 + i * 7) & 0xff;
  return out;
}

const LIMIT = 64;

/** Frames covering every type, boundary ids and flags, and payloads of 0, 1, around a header, and exactly the limit. */
const FRAMES: PlainFrame[] = (() => {
  const types = [...Object.values(FrameType), 0x00, 0x7f, 0x80, 0xff];
  const ids = [0, 1, 2, 0x1234_5678, MAX_REQUEST_ID - 1, MAX_REQUEST_ID];
  const sizes = [0, 1, 0, 2, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 1, LIMIT, 1, LIMIT - 1, 0, 33, LIMIT];
  const flags = [0, 1, 0x80, 0xff];
  const frames: PlainFrame[] = [];
  for (let i = 0; i < Math.max(types.length, sizes.length) + 3; i++) {
    frames.push({
      type: types[i % types.length]!,
      flags: flags[i % flags.length]!,
      id: ids[i % ids.length]!,
      payload: pattern(sizes[i % sizes.length]!, i).toString('hex'),
    });
  }
  return frames;
})();

const BODY = Buffer.concat(FRAMES.map((f) => encodeFrame(f.type, f.id, Buffer.from(f.payload, 'hex'), f.flags)));
const STREAM = Buffer.concat([preambleBytes(), BODY]);

function decodeChunks(chunks: readonly Uint8Array[], options = { maxFrameBytes: LIMIT }): { frames: Frame[]; decoder: FrameDecoder } {
  const decoder = new FrameDecoder(options);
  const frames: Frame[] = [];
  for (const chunk of chunks) frames.push(...decoder.push(chunk));
  return { frames, decoder };
}

describe('FrameDecoder: chunk boundaries never matter', () => {
  it('the test stream really holds 0-byte, 1-byte and limit-sized payloads', () => {
    const sizes = new Set(FRAMES.map((f) => f.payload.length / 2));
    for (const size of [0, 1, LIMIT]) assert.ok(sizes.has(size), `no ${size}-byte payload`);
  });

  it('decodes the whole stream in one push', () => {
    const { frames, decoder } = decodeChunks([STREAM]);
    assert.deepEqual(plain(frames), FRAMES);
    assert.equal(decoder.bufferedBytes, 0);
    assert.equal(decoder.preambleDone, true);
  });

  it('gives identical frames when split into two chunks at every offset', () => {
    for (let at = 0; at <= STREAM.length; at++) {
      const { frames, decoder } = decodeChunks([STREAM.subarray(0, at), STREAM.subarray(at)]);
      assert.deepEqual(plain(frames), FRAMES, `split at ${at}`);
      assert.equal(decoder.bufferedBytes, 0, `split at ${at}`);
    }
  });

  it('gives identical frames when fed one byte at a time', () => {
    const chunks: Buffer[] = [];
    for (let i = 0; i < STREAM.length; i++) chunks.push(STREAM.subarray(i, i + 1));
    const { frames, decoder } = decodeChunks(chunks);
    assert.deepEqual(plain(frames), FRAMES);
    assert.equal(decoder.bufferedBytes, 0);
  });

  it('returns each frame from the push that completes it, not earlier', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: LIMIT });
    const frame = encodeFrame(FrameType.MESSAGE, 7, Buffer.from('hello'));
    assert.deepEqual(decoder.push(preambleBytes()), []);
    assert.deepEqual(decoder.push(frame.subarray(0, frame.length - 1)), []);
    assert.deepEqual(plain(decoder.push(frame.subarray(frame.length - 1))), [
      { type: FrameType.MESSAGE, flags: 0, id: 7, payload: Buffer.from('hello').toString('hex') },
    ]);
  });

  it('says a frame has begun from its first header byte to its last payload byte (midFrame)', () => {
    // A small payload is buffered in chunks, a large one assembled in its own buffer.
    for (const payload of [Buffer.from('hello'), pattern(100 * 1024, 3)]) {
      const frame = encodeFrame(FrameType.MESSAGE, 7, payload);
      for (const cut of [1, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 1, frame.length - 1]) {
        const probe = new FrameDecoder({ maxFrameBytes: payload.length });
        probe.push(preambleBytes());
        assert.equal(probe.midFrame, false, 'between frames');
        assert.deepEqual(probe.push(frame.subarray(0, cut)), []);
        assert.equal(probe.midFrame, true, `${payload.length}-byte payload, ${cut} bytes in`);
        assert.equal(probe.push(frame.subarray(cut)).length, 1);
        assert.equal(probe.midFrame, false, `${payload.length}-byte payload, complete`);
      }
    }
  });

  it('accepts plain Uint8Array views with a byte offset, not only Buffers', () => {
    const backing = new Uint8Array(STREAM.length + 5);
    backing.set(STREAM, 3);
    const view = backing.subarray(3, 3 + STREAM.length);
    const half = Math.floor(view.length / 2);
    const { frames } = decodeChunks([view.subarray(0, half), view.subarray(half)]);
    assert.deepEqual(plain(frames), FRAMES);
  });

  it('decodes a frame of exactly the default 1 MiB limit, whole and in uneven chunks', () => {
    const limit = 1024 * 1024;
    const payload = pattern(limit, 5);
    const stream = Buffer.concat([preambleBytes(), encodeFrame(FrameType.MESSAGE, 9, payload), encodeFrame(FrameType.PING, 0)]);
    for (const cuts of [[], [9], [8 + HEADER_BYTES], [8 + HEADER_BYTES + 1, 500_000], [stream.length - HEADER_BYTES - 1]]) {
      const chunks: Buffer[] = [];
      let from = 0;
      for (const cut of [...cuts, stream.length]) {
        chunks.push(stream.subarray(from, cut));
        from = cut;
      }
      const { frames, decoder } = decodeChunks(chunks, { maxFrameBytes: limit });
      assert.equal(frames.length, 2, `cuts ${cuts.join(',')}`);
      assert.equal(frames[0]!.id, 9);
      assert.ok(frames[0]!.payload.equals(payload), `cuts ${cuts.join(',')}`);
      assert.equal(frames[1]!.type, FrameType.PING);
      assert.equal(frames[1]!.payload.length, 0);
      assert.equal(decoder.bufferedBytes, 0);
    }
  });
});

describe('FrameDecoder: oversized frames', () => {
  it('throws FRAME_TOO_LARGE as soon as the header arrives, before any body byte', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 100 });
    decoder.push(preambleBytes());
    const header = encodeHeader(FrameType.MESSAGE, 1, 101);
    for (let i = 0; i < HEADER_BYTES - 1; i++) {
      assert.deepEqual(decoder.push(header.subarray(i, i + 1)), []);
      assert.ok(decoder.bufferedBytes < HEADER_BYTES, `buffered ${decoder.bufferedBytes}`);
    }
    assert.throws(() => decoder.push(header.subarray(HEADER_BYTES - 1)), isProtocolError('TCPKIT_ERR_FRAME_TOO_LARGE'));
    assert.equal(decoder.bufferedBytes, 0);
    assert.equal(decoder.failure?.code, 'TCPKIT_ERR_FRAME_TOO_LARGE');
  });

  it('throws on a whole oversized header in one push, and accepts exactly the limit', () => {
    const tooBig = new FrameDecoder({ maxFrameBytes: 100, expectPreamble: false });
    assert.throws(() => tooBig.push(encodeHeader(FrameType.MESSAGE, 1, 101)), isProtocolError('TCPKIT_ERR_FRAME_TOO_LARGE'));
    assert.equal(tooBig.bufferedBytes, 0);

    const atLimit = new FrameDecoder({ maxFrameBytes: 100, expectPreamble: false });
    assert.deepEqual(atLimit.push(encodeHeader(FrameType.MESSAGE, 1, 100)), []);
    assert.equal(atLimit.bufferedBytes, 0);
    assert.equal(atLimit.push(Buffer.alloc(100)).length, 1);
  });

  it('rejects a 4 GiB announcement without buffering anything', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: HARD_MAX_FRAME_BYTES });
    const header = Buffer.from([0xff, 0xff, 0xff, 0xff, FrameType.MESSAGE, 0, 0, 0, 0, 1]);
    assert.throws(() => decoder.push(Buffer.concat([preambleBytes(), header])), isProtocolError('TCPKIT_ERR_FRAME_TOO_LARGE'));
    assert.equal(decoder.bufferedBytes, 0);
  });

  it('throws on the oversized header even when earlier frames share its chunk', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 8, expectPreamble: false });
    const chunk = Buffer.concat([encodeFrame(FrameType.PING, 0, Buffer.from('ok')), encodeHeader(FrameType.MESSAGE, 2, 9)]);
    assert.throws(() => decoder.push(chunk), isProtocolError('TCPKIT_ERR_FRAME_TOO_LARGE'));
  });
});

describe('FrameDecoder: preamble', () => {
  it('throws NOT_TCPKIT at the first wrong byte, whichever it is', () => {
    for (let wrong = 0; wrong < PREAMBLE.length; wrong++) {
      const bytes = preambleBytes();
      bytes[wrong] = bytes[wrong]! ^ 0xff;
      const decoder = new FrameDecoder({ maxFrameBytes: LIMIT });
      for (let i = 0; i < wrong; i++) {
        assert.deepEqual(decoder.push(bytes.subarray(i, i + 1)), [], `byte ${i} of preamble with byte ${wrong} wrong`);
      }
      assert.equal(decoder.preambleDone, false);
      assert.throws(() => decoder.push(bytes.subarray(wrong, wrong + 1)), isProtocolError('TCPKIT_ERR_NOT_TCPKIT'), `byte ${wrong}`);
    }
  });

  it('throws NOT_TCPKIT for a raw text client and for frames without a preamble', () => {
    assert.throws(() => new FrameDecoder({ maxFrameBytes: LIMIT }).push(Buffer.from('hello.txt\n')), isProtocolError('TCPKIT_ERR_NOT_TCPKIT'));
    assert.throws(() => new FrameDecoder({ maxFrameBytes: LIMIT }).push(BODY), isProtocolError('TCPKIT_ERR_NOT_TCPKIT'));
  });

  it('waits for a preamble split across pushes without decoding anything', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: LIMIT });
    assert.deepEqual(decoder.push(STREAM.subarray(0, 3)), []);
    assert.equal(decoder.preambleDone, false);
    assert.deepEqual(decoder.push(STREAM.subarray(3, PREAMBLE.length)), []);
    assert.equal(decoder.preambleDone, true);
    assert.deepEqual(plain(decoder.push(STREAM.subarray(PREAMBLE.length))), FRAMES);
  });

  it('with expectPreamble:false decodes frames at once and treats preamble bytes as a header', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: LIMIT, expectPreamble: false });
    assert.equal(decoder.preambleDone, true);
    assert.deepEqual(plain(decoder.push(BODY)), FRAMES);

    // 0x89544b50 read as a payload length is far over the limit.
    const confused = new FrameDecoder({ maxFrameBytes: LIMIT, expectPreamble: false });
    assert.throws(() => confused.push(STREAM), isProtocolError('TCPKIT_ERR_FRAME_TOO_LARGE'));
  });
});

describe('FrameDecoder: failure is final', () => {
  it('every push after a failure throws the same error, even with valid bytes', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: LIMIT });
    let first: unknown;
    try {
      decoder.push(Buffer.from('GET / HTTP/1.1\r\n'));
    } catch (error) {
      first = error;
    }
    assert.ok(first instanceof ProtocolError);
    assert.equal(decoder.failure, first);
    for (const chunk of [STREAM, preambleBytes(), Buffer.alloc(0), BODY]) {
      assert.throws(
        () => decoder.push(chunk),
        (error: unknown) => error === first,
      );
    }
    assert.equal(decoder.bufferedBytes, 0);
  });

  it('stays failed after FRAME_TOO_LARGE, even if the limit is raised', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 4, expectPreamble: false });
    assert.throws(() => decoder.push(encodeHeader(1, 0, 5)), isProtocolError('TCPKIT_ERR_FRAME_TOO_LARGE'));
    const failure = decoder.failure;
    decoder.maxFrameBytes = 1000;
    assert.throws(
      () => decoder.push(Buffer.alloc(5)),
      (error: unknown) => error === failure,
    );
  });

  it('has no failure while it is healthy', () => {
    const { decoder } = decodeChunks([STREAM]);
    assert.equal(decoder.failure, undefined);
  });
});

describe('FrameDecoder: limits', () => {
  it('the maxFrameBytes setter changes the limit for later headers', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 16, expectPreamble: false });
    assert.equal(decoder.maxFrameBytes, 16);
    assert.equal(decoder.push(encodeFrame(1, 1, Buffer.alloc(16))).length, 1);
    decoder.maxFrameBytes = 32;
    assert.equal(decoder.maxFrameBytes, 32);
    assert.equal(decoder.push(encodeFrame(1, 2, Buffer.alloc(32))).length, 1);
    decoder.maxFrameBytes = 8;
    assert.throws(() => decoder.push(encodeHeader(1, 3, 9)), isProtocolError('TCPKIT_ERR_FRAME_TOO_LARGE'));
  });

  it('lowering the limit does not cancel a frame whose header was already accepted', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 32, expectPreamble: false });
    const frame = encodeFrame(1, 4, pattern(32, 1));
    assert.deepEqual(decoder.push(frame.subarray(0, HEADER_BYTES + 1)), []);
    decoder.maxFrameBytes = 8;
    const [decoded] = decoder.push(frame.subarray(HEADER_BYTES + 1));
    assert.ok(decoded?.payload.equals(pattern(32, 1)));
    assert.throws(() => decoder.push(encodeHeader(1, 5, 9)), isProtocolError('TCPKIT_ERR_FRAME_TOO_LARGE'));
  });

  it('a limit of 0 accepts only empty frames', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 0, expectPreamble: false });
    assert.equal(decoder.push(encodeFrame(FrameType.PING, 0)).length, 1);
    assert.throws(() => decoder.push(encodeHeader(FrameType.PING, 0, 1)), isProtocolError('TCPKIT_ERR_FRAME_TOO_LARGE'));
  });

  it('rejects a bad limit in the constructor and the setter with RangeError', () => {
    for (const bad of [-1, 1.5, Number.NaN, HARD_MAX_FRAME_BYTES + 1, Infinity]) {
      assert.throws(() => new FrameDecoder({ maxFrameBytes: bad }), RangeError, String(bad));
      const decoder = new FrameDecoder({ maxFrameBytes: 10 });
      assert.throws(() => {
        decoder.maxFrameBytes = bad;
      }, RangeError);
      assert.equal(decoder.maxFrameBytes, 10);
    }
    assert.equal(new FrameDecoder({ maxFrameBytes: HARD_MAX_FRAME_BYTES }).maxFrameBytes, HARD_MAX_FRAME_BYTES);
  });
});

describe('encodeFrame and encodeHeader', () => {
  it('lay out length, type, flags and id big-endian', () => {
    assert.equal(encodeHeader(0x10, 0x0102_0304, 0x00ab_cdef, 0x7f).toString('hex'), '00abcdef107f01020304');
    assert.equal(encodeFrame(0x05, 0xffff_ffff, Buffer.from([0xaa, 0xbb]), 0x01).toString('hex'), '000000020501ffffffffaabb');
    assert.equal(encodeFrame(0x03, 0).toString('hex'), '00000000030000000000');
  });

  it('encodeFrame equals encodeHeader followed by the payload, and copies the payload', () => {
    const payload = pattern(50, 3);
    const frame = encodeFrame(0x11, 42, payload, 3);
    assert.ok(frame.equals(Buffer.concat([encodeHeader(0x11, 42, payload.length, 3), payload])));
    payload[0] = payload[0]! ^ 0xff;
    assert.notEqual(frame[HEADER_BYTES], payload[0]);
  });

  it('accept the boundary values', () => {
    assert.equal(encodeHeader(0xff, MAX_REQUEST_ID, HARD_MAX_FRAME_BYTES, 0xff).length, HEADER_BYTES);
    assert.equal(encodeHeader(0, 0, 0, 0).length, HEADER_BYTES);
  });

  it('reject out-of-range type, id, flags and length with RangeError', () => {
    const badBytes = [-1, 256, 1.5, Number.NaN, Infinity];
    const badIds = [-1, MAX_REQUEST_ID + 1, 0.5, Number.NaN];
    const badLengths = [-1, HARD_MAX_FRAME_BYTES + 1, 1.5, Number.NaN, Infinity];
    for (const type of badBytes) {
      assert.throws(() => encodeHeader(type, 0, 0), RangeError, `type ${type}`);
      assert.throws(() => encodeFrame(type, 0), RangeError, `type ${type}`);
    }
    for (const flags of badBytes) {
      assert.throws(() => encodeHeader(1, 0, 0, flags), RangeError, `flags ${flags}`);
      assert.throws(() => encodeFrame(1, 0, undefined, flags), RangeError, `flags ${flags}`);
    }
    for (const id of badIds) {
      assert.throws(() => encodeHeader(1, id, 0), RangeError, `id ${id}`);
      assert.throws(() => encodeFrame(1, id), RangeError, `id ${id}`);
    }
    // A fractional or NaN length would otherwise be written truncated, announcing a body size
    // that differs from what the caller then sends: the stream would desynchronise.
    for (const length of badLengths) assert.throws(() => encodeHeader(1, 0, length), RangeError, `length ${length}`);
  });
});
