import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { ERROR_CODES } from '../../src/errors.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { FrameType, PREAMBLE } from '../../src/protocol/constants.js';
import { FileFrame } from '../../src/services/files/wire.js';

const spec = readFileSync(new URL('../../../docs/PROTOCOL.md', import.meta.url), 'utf8');

it('docs/PROTOCOL.md lists exactly the error codes of src/errors.ts, with their scope', () => {
  const rows = [...spec.matchAll(/^\| `([A-Z_]+)` \| (wire|local) \|/gm)].map((m) => [m[1], m[2]]);
  const codes = Object.entries(ERROR_CODES).map(([name, info]) => [name, info.scope]);
  assert.deepEqual(rows, codes);
});

it('docs/PROTOCOL.md states the frame types and the preamble the codec uses', () => {
  for (const [name, value] of [...Object.entries(FrameType), ...Object.entries(FileFrame)]) {
    assert.match(spec, new RegExp(`\\| 0x${value.toString(16).padStart(2, '0')} \\| ${name} \\|`), name);
  }
  assert.ok(spec.includes(PREAMBLE.map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join(' ')));
});

it("the spec's example MESSAGE frame is what the encoder produces", () => {
  const hex = encodeFrame(FrameType.MESSAGE, 1, Buffer.from('hi')).toString('hex').match(/../g)!.join(' ');
  assert.ok(spec.includes(`C→S  ${hex.slice(0, 29)}  ${hex.slice(30)}`), hex);
});
