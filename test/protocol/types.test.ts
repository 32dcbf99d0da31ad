/**
 * The frame type registry: unique values, every type in its range, ranges that tile 0x01–0xFF,
 * and docs/PROTOCOL.md stating every type and every range.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  FileFrame,
  FRAME_TYPE_RANGES,
  FRAME_TYPES,
  FrameType,
  frameTypeHex,
  frameTypeName,
  frameTypeRange,
  UploadFrame,
} from '../../src/protocol/types.js';
import * as protocol from '../../src/protocol/index.js';
import * as wire from '../../src/services/files/wire.js';

const spec = readFileSync(new URL('../../../docs/PROTOCOL.md', import.meta.url), 'utf8');

/** Each group of types, with the range it must lie in. */
const GROUPS = [
  { types: { HELLO: 1, GOODBYE: 2, PING: 3, PONG: 4, ERROR: 5, CANCEL: 6 }, use: 'control', service: undefined },
  { types: { MESSAGE: FrameType.MESSAGE, MESSAGE_REPLY: FrameType.MESSAGE_REPLY }, use: 'service', service: 'message' },
  { types: FileFrame, use: 'service', service: 'file' },
  { types: UploadFrame, use: 'service', service: 'upload' },
] as const;

const all = [...Object.entries(FrameType), ...Object.entries(FileFrame), ...Object.entries(UploadFrame)];

/** `0x2F` as PROTOCOL.md writes range ends. */
const upperHex = (type: number): string => `0x${type.toString(16).padStart(2, '0').toUpperCase()}`;

describe('frame type registry', () => {
  it('no two names share a value, and FRAME_TYPES holds every group whole', () => {
    const values = all.map(([, value]) => value);
    assert.equal(new Set(values).size, values.length, 'a value is used twice');
    assert.equal(Object.keys(FRAME_TYPES).length, all.length, 'a name is used twice');
    assert.deepEqual(Object.entries(FRAME_TYPES).sort(), all.sort());
  });

  it('the control types are exactly those of FrameType below 0x10', () => {
    const control = Object.entries(FrameType).filter(([, value]) => value < 0x10);
    assert.deepEqual(Object.fromEntries(control), GROUPS[0].types);
  });

  it('every type lies in the range of its group', () => {
    for (const group of GROUPS) {
      for (const [name, value] of Object.entries(group.types)) {
        const range = frameTypeRange(value);
        assert.ok(range, `${name} lies in no range`);
        assert.equal(range.use, group.use, name);
        assert.equal(range.service, group.service, name);
      }
    }
  });

  it('the ranges tile 0x01–0xFF in order, without overlap; 0x00 and non-bytes are in none', () => {
    let next = 0x01;
    for (const range of FRAME_TYPE_RANGES) {
      assert.equal(range.first, next, `a gap or an overlap at ${frameTypeHex(next)}`);
      assert.ok(range.last >= range.first);
      assert.equal(range.use === 'service', range.service !== undefined);
      next = range.last + 1;
    }
    assert.equal(next, 0x100);
    for (const type of [0x00, 0x100, -1, 1.5]) assert.equal(frameTypeRange(type), undefined, String(type));
    assert.equal(frameTypeRange(0x80)?.use, 'private');
    assert.equal(frameTypeRange(0xff)?.use, 'private');
    assert.equal(frameTypeRange(0x40)?.use, 'unassigned');
  });

  it('frameTypeName knows every type of v1, and writes others in hex', () => {
    for (const [name, value] of all) assert.equal(frameTypeName(value), name);
    assert.equal(frameTypeName(0x7e), '0x7e');
    assert.equal(frameTypeName(0x00), '0x00');
    assert.equal(protocol.frameTypeName(FileFrame.FILE_HEAD), 'FILE_HEAD', 'the package root exports the registry one');
  });

  it('the file services take their types from the registry', () => {
    assert.equal(wire.FileFrame, FileFrame);
    assert.equal(wire.UploadFrame, UploadFrame);
    assert.equal(protocol.FrameType, FrameType);
  });
});

describe('docs/PROTOCOL.md', () => {
  it('lists every frame type, name and hex value, on one row of the table of §5', () => {
    for (const [name, value] of all) {
      assert.match(spec, new RegExp(`^\\| ${frameTypeHex(value)} \\| ${name} \\|`, 'm'), name);
    }
  });

  it('states every range, with what it is for', () => {
    for (const range of FRAME_TYPE_RANGES) {
      const ends = `${upperHex(range.first)}–${upperHex(range.last)}`;
      const row = spec.split('\n').find((line) => line.startsWith(`| ${ends} | `) && line.includes(`| ${range.use}`));
      assert.ok(row, `no row "| ${ends} | ... | ${range.use}" in the table of ranges`);
      if (range.service !== undefined) assert.ok(row.includes(`\`"${range.service}"\``), `${ends}: the service "${range.service}"`);
    }
  });
});
