import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_RAW_REQUEST_BYTES, RawRequestReader, type RawVerdict } from '../../src/raw/request.js';

/** Feeds `chunks` in order until the reader decides; if it never does, the client half-closes. */
function drive(chunks: Buffer[], limit?: number): RawVerdict {
  const reader = new RawRequestReader(limit);
  for (const chunk of chunks) {
    const verdict = reader.push(chunk);
    if (verdict.done) return verdict;
  }
  return reader.end();
}

/** A verdict as plain data, so that results can be compared with deepEqual. */
function show(verdict: RawVerdict): string {
  if (!verdict.done) return 'pending';
  return 'tooLong' in verdict ? 'tooLong' : `request:${verdict.request.toString('hex')}`;
}

function request(verdict: RawVerdict): string {
  assert.ok(verdict.done && 'request' in verdict, `expected a request, got ${show(verdict)}`);
  return verdict.request.toString('utf8');
}

/** Every way to cut `data` in two, plus one byte at a time. */
function chunkings(data: Buffer): Buffer[][] {
  const ways: Buffer[][] = [[data]];
  for (let cut = 0; cut <= data.length; cut++) ways.push([data.subarray(0, cut), data.subarray(cut)]);
  ways.push([...data].map((byte) => Buffer.of(byte)));
  return ways;
}

describe('RawRequestReader: where a raw request ends', () => {
  it('ends at the first newline', () => {
    const reader = new RawRequestReader();
    assert.equal(request(reader.push(Buffer.from('docs/a.txt\n'))), 'docs/a.txt');
  });

  it('strips one CR before the newline (netcat -C, telnet), and only one', () => {
    assert.equal(request(drive([Buffer.from('a.txt\r\n')])), 'a.txt');
    assert.equal(request(drive([Buffer.from('a.txt\r\r\n')])), 'a.txt\r');
  });

  it('ignores the bytes after the newline, and any later push', () => {
    const reader = new RawRequestReader();
    assert.equal(request(reader.push(Buffer.from('first\nsecond\nthird'))), 'first');
    assert.deepEqual(reader.push(Buffer.from('more\n')), { done: false });
    assert.deepEqual(reader.end(), { done: false }, 'a request is decided once');
  });

  it('waits while no newline came, then end() returns what arrived (EOF or the quiet period)', () => {
    const reader = new RawRequestReader();
    assert.deepEqual(reader.push(Buffer.from('你好')), { done: false });
    assert.deepEqual(reader.push(Buffer.from('.txt')), { done: false });
    assert.equal(request(reader.end()), '你好.txt');
    assert.deepEqual(reader.end(), { done: false });
    assert.deepEqual(reader.push(Buffer.from('\n')), { done: false });
  });

  it('returns an empty request for a bare newline or an end with nothing received', () => {
    assert.equal(request(drive([Buffer.from('\n')])), '');
    assert.equal(request(drive([Buffer.from('\r\n')])), '');
    assert.equal(request(new RawRequestReader().end()), '');
    assert.equal(request(drive([Buffer.alloc(0), Buffer.alloc(0)])), '');
  });

  it('keeps bytes that are not text as they are', () => {
    const bytes = Buffer.from([0x00, 0xff, 0xfe, 0x0d, 0x41]);
    const verdict = drive([bytes, Buffer.from('\n')]);
    assert.ok(verdict.done && 'request' in verdict);
    assert.deepEqual(verdict.request, bytes);
  });

  it(`accepts ${MAX_RAW_REQUEST_BYTES} bytes by default and refuses one more as tooLong`, () => {
    const most = Buffer.alloc(MAX_RAW_REQUEST_BYTES, 0x61);
    assert.equal(request(drive([most, Buffer.from('\n')])).length, MAX_RAW_REQUEST_BYTES);
    assert.equal(request(drive([most])).length, MAX_RAW_REQUEST_BYTES);
    const over = Buffer.alloc(MAX_RAW_REQUEST_BYTES + 1, 0x61);
    assert.deepEqual(new RawRequestReader().push(over), { done: true, tooLong: true });
    assert.deepEqual(new RawRequestReader().push(Buffer.concat([over, Buffer.from('\n')])), { done: true, tooLong: true });
  });

  it('says tooLong as soon as the limit is passed, without waiting for a newline or the end', () => {
    const reader = new RawRequestReader(8);
    assert.deepEqual(reader.push(Buffer.from('12345678')), { done: false });
    assert.deepEqual(reader.push(Buffer.from('9')), { done: true, tooLong: true });
    assert.deepEqual(reader.end(), { done: false });
    assert.deepEqual(reader.push(Buffer.from('\n')), { done: false });
  });

  it('does not count bytes after the newline against the limit', () => {
    const verdict = drive([Buffer.from(`short\n${'x'.repeat(100)}`)], 8);
    assert.equal(request(verdict), 'short');
  });

  describe('gives the same result however the bytes are chunked', () => {
    const cases: Array<[string, Buffer, number | undefined]> = [
      ['a name and a newline', Buffer.from('sub/file.bin\n'), undefined],
      ['CRLF', Buffer.from('a.txt\r\n'), undefined],
      ['bytes after the newline', Buffer.from('one\ntwo\nthree'), undefined],
      ['no newline (EOF)', Buffer.from('名字.txt'), undefined],
      ['a CR kept inside', Buffer.from('a\rb\n'), undefined],
      ['exactly at the limit', Buffer.from('12345678\n'), 8],
      ['over the limit', Buffer.from('123456789\n'), 8],
      ['over the limit, no newline', Buffer.from('1234567890'), 8],
      ['newline right after the limit', Buffer.from('12345678\nzzzzzzzzzz'), 8],
    ];
    for (const [label, data, limit] of cases) {
      it(`${label}: whole, split at every offset, one byte at a time`, () => {
        const whole = show(drive([data], limit));
        for (const chunks of chunkings(data)) {
          assert.equal(show(drive(chunks, limit)), whole, `chunks: ${chunks.map((c) => c.length).join('+')}`);
        }
      });
    }

    it('property: arbitrary bytes, arbitrary cuts, arbitrary limit', () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ maxLength: 64 }),
          fc.array(fc.nat({ max: 64 }), { maxLength: 8 }),
          fc.integer({ min: 1, max: 40 }),
          (bytes, cuts, limit) => {
            const data = Buffer.from(bytes);
            const offsets = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
            const chunks: Buffer[] = [];
            let from = 0;
            for (const offset of [...offsets, data.length]) {
              chunks.push(data.subarray(from, offset));
              from = offset;
            }
            const whole = drive([data], limit);
            assert.equal(show(drive(chunks, limit)), show(whole));
            // And the verdict is the one the rules give.
            const newline = data.indexOf(0x0a);
            const line = newline >= 0 ? data.subarray(0, newline) : data;
            if (line.length > limit) {
              assert.equal(show(whole), 'tooLong');
            } else {
              const expected = line.length > 0 && line[line.length - 1] === 0x0d ? line.subarray(0, -1) : line;
              assert.equal(show(whole), `request:${expected.toString('hex')}`);
            }
          },
        ),
        { numRuns: 500 },
      );
    });
  });
});
