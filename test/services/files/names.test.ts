/**
 * The name validator: a hand-typed corpus of traversal and look-alike names (RELIABILITY §2.1,
 * §2.2), the length limits at their edges, and properties over arbitrary strings and bytes.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { TcpkitError } from '../../../src/errors.js';
import { isInside, validateDirName, validateName } from '../../../src/services/files/names.js';

const NUM_RUNS = Number.parseInt(process.env.FC_NUM_RUNS ?? '', 10) > 0 ? Number.parseInt(process.env.FC_NUM_RUNS!, 10) : 2000;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function refusedWith(code: 'INVALID_NAME' | 'FORBIDDEN' | 'INVALID_OPTION', reason?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof TcpkitError, `expected a TcpkitError, got ${String(error)}`);
    assert.equal(error.wireCode, code, error.message);
    if (reason) assert.match(error.message, reason);
    assert.doesNotMatch(error.message, CONTROL, 'the message must not carry control characters');
    return true;
  };
}

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);
const repeat = (unit: string, count: number): string => unit.repeat(count);

describe('validateName: accepted names come back unchanged', () => {
  const accepted = [
    'a',
    'report.pdf',
    'docs/2024/report.pdf',
    '你好.txt',
    'a..b',
    'a.b.c',
    '.hidden', // well-formed; hiding is a serving policy (allowHidden)
    '%2e%2e', // a literal name: never percent-decoded
    '%2e%2e/x',
    '%252e%252e/x',
    '．．／etc／passwd', // full-width: one literal component, never NFKC-normalised to ../etc/passwd
    'e\u0301', // not normalised to é
    'console.log',
    'COM10',
    'LPT0',
    'nul-device',
    'aux_',
    'con x',
    'a b',
    'file?.txt',
    '\u00a0', // U+00A0 is the first code point after the C1 block
  ];
  for (const name of accepted) {
    it(`accepts ${JSON.stringify(name)}`, () => {
      assert.equal(validateName(name), name);
      assert.equal(validateName(Buffer.from(name, 'utf8')), name);
    });
  }

  it('keeps a leading byte-order mark instead of stripping it', () => {
    assert.equal(validateName(bytes(0xef, 0xbb, 0xbf, 0x61)), '\ufeffa');
  });
});

describe('validateName: the traversal corpus is refused', () => {
  const refused: Array<[string, RegExp]> = [
    ['', /empty/],
    ['.', /"\." component/],
    ['..', /"\.\." component/],
    ['../x', /"\.\." component/],
    ['a/../../x', /"\.\." component/],
    ['a/..', /"\.\." component/],
    ['./a', /"\." component/],
    ['a/./b', /"\." component/],
    ['../../../../../../etc/passwd', /"\.\." component/],
    ['/etc/passwd', /absolute/],
    ['////etc/passwd', /absolute/],
    ['/', /absolute/],
    ['a/', /ends with \//],
    ['a//b', /empty component/],
    ['..\\x', /backslash/],
    ['a\\b', /backslash/],
    ['\\\\host\\share\\x', /backslash/],
    ['\\\\?\\C:\\x', /backslash/],
    ['C:..\\x', /backslash|colon/],
    ['C:x', /colon/],
    ['c:/windows/win.ini', /colon/],
    ['file::$DATA', /colon/],
    ['secret.txt\u0000.png', /NUL/],
    ['\u0000', /NUL/],
    ['a\u0001', /U\+0001/],
    ['a\tb', /U\+0009/],
    ['a\nb', /U\+000A/],
    ['a\rb', /U\+000D/],
    ['\u001b[31mred', /U\+001B/],
    ['a\u007f', /U\+007F/],
    ['a\u0080', /U\+0080/],
    ['a\u0085', /U\+0085/],
    ['a\u009b2J', /U\+009B/],
    ['a\u009f', /U\+009F/],
    ['CON', /reserved/],
    ['con', /reserved/],
    ['con.txt', /reserved/],
    ['Con.tar.gz', /reserved/],
    ['CON .txt', /reserved/],
    ['dir/NUL', /reserved/],
    ['nul.json/x', /reserved/],
    ['PRN', /reserved/],
    ['aux.c', /reserved/],
    ['COM1', /reserved/],
    ['com9.log', /reserved/],
    ['LPT1', /reserved/],
    ['lpt9.txt', /reserved/],
    ['COM\u00b9', /reserved/],
    ['lpt\u00b3.txt', /reserved/],
    ['CONIN$', /reserved/],
    ['conout$.txt', /reserved/],
    ['a.', /ends with a dot or a space/],
    ['a ', /ends with a dot or a space/],
    ['dir./x', /ends with a dot or a space/],
    ['x/dir ', /ends with a dot or a space/],
    ['...', /ends with a dot/],
    ['a\ud800', /well-formed/],
    ['\udc00b', /well-formed/],
  ];
  for (const [name, reason] of refused) {
    it(`refuses ${JSON.stringify(name)}`, () => {
      assert.throws(() => validateName(name), refusedWith('INVALID_NAME', reason));
    });
  }

  const refusedBytes: Array<[string, Uint8Array]> = [
    ['overlong "." (C0 AE)', bytes(0xc0, 0xae)],
    ['overlong "../x" (C0 AE C0 AE C0 AF 78)', bytes(0xc0, 0xae, 0xc0, 0xae, 0xc0, 0xaf, 0x78)],
    ['overlong "/" (C0 AF) after a name', bytes(0x61, 0xc0, 0xaf, 0x62)],
    ['three-byte overlong "." (E0 80 AE)', bytes(0xe0, 0x80, 0xae)],
    ['an encoded surrogate (ED A0 80)', bytes(0xed, 0xa0, 0x80)],
    ['a lone FF byte', bytes(0x61, 0xff)],
    ['a truncated sequence', bytes(0xe4, 0xbd)],
    ['a code point above U+10FFFF', bytes(0xf4, 0x90, 0x80, 0x80)],
  ];
  for (const [label, input] of refusedBytes) {
    it(`refuses bytes: ${label}`, () => {
      assert.throws(() => validateName(input), refusedWith('INVALID_NAME', /UTF-8/));
    });
  }

  it('refuses raw bytes of NUL and control characters like their string forms', () => {
    assert.throws(() => validateName(Buffer.from('secret.txt\u0000.png')), refusedWith('INVALID_NAME', /NUL/));
    assert.throws(() => validateName(bytes(0xc2, 0x9b)), refusedWith('INVALID_NAME', /U\+009B/));
  });
});

describe('validateName: length limits count UTF-8 bytes', () => {
  it('takes a 255-byte component and refuses 256', () => {
    assert.equal(validateName(repeat('a', 255)), repeat('a', 255));
    assert.throws(() => validateName(repeat('a', 256)), refusedWith('INVALID_NAME', /component is longer than 255 bytes/));
    assert.equal(validateName(`dir/${repeat('b', 255)}`).length, 259);
  });

  it('counts multi-byte characters by their bytes', () => {
    assert.equal(validateName(repeat('你', 85)).length, 85); // 255 bytes
    assert.throws(() => validateName(repeat('你', 86)), refusedWith('INVALID_NAME', /255 bytes/)); // 258 bytes
    assert.equal(validateName(repeat('😀', 63)).length, 126); // 252 bytes in surrogate pairs
    assert.throws(() => validateName(repeat('😀', 64)), refusedWith('INVALID_NAME', /255 bytes/)); // 256 bytes
  });

  it('takes a 1024-byte name and refuses 1025', () => {
    const name1024 = Array.from({ length: 5 }, () => repeat('c', 204)).join('/'); // 5 * 204 + 4
    assert.equal(Buffer.byteLength(name1024), 1024);
    assert.equal(validateName(name1024), name1024);
    assert.equal(validateName(Buffer.from(name1024)), name1024);
    const name1025 = `${name1024}c`;
    assert.throws(() => validateName(name1025), refusedWith('INVALID_NAME', /longer than 1024 bytes/));
    assert.throws(() => validateName(Buffer.from(name1025)), refusedWith('INVALID_NAME', /longer than 1024 bytes/));
    // 342 three-byte characters are 1026 bytes, though only 342 UTF-16 units.
    assert.throws(() => validateName(Array.from({ length: 6 }, () => repeat('你', 57)).join('/')), refusedWith('INVALID_NAME', /1024 bytes/));
  });

  it('refuses over-long bytes before decoding them', () => {
    assert.throws(() => validateName(new Uint8Array(1_000_000).fill(0xff)), refusedWith('INVALID_NAME', /longer than 1024 bytes/));
  });

  it('applies custom limits, and refuses bad ones', () => {
    assert.equal(validateName('abcd/ef', { maxNameBytes: 7, maxComponentBytes: 4 }), 'abcd/ef');
    assert.throws(() => validateName('abcd/efg', { maxNameBytes: 7 }), refusedWith('INVALID_NAME', /7 bytes/));
    assert.throws(() => validateName('abcde', { maxComponentBytes: 4 }), refusedWith('INVALID_NAME', /4 bytes/));
    assert.throws(() => validateName('a', { maxNameBytes: 0 }), refusedWith('INVALID_OPTION', /maxNameBytes/));
    assert.throws(() => validateName('a', { maxComponentBytes: Number.NaN }), refusedWith('INVALID_OPTION', /maxComponentBytes/));
  });
});

describe('validateName: hidden names', () => {
  it('accepts them by default (syntax) and refuses them with FORBIDDEN when allowHidden is false (policy)', () => {
    assert.equal(validateName('.env'), '.env');
    assert.equal(validateName('a/.git/config', { allowHidden: true }), 'a/.git/config');
    assert.throws(() => validateName('.env', { allowHidden: false }), refusedWith('FORBIDDEN', /hidden/));
    assert.throws(() => validateName('a/.git/config', { allowHidden: false }), refusedWith('FORBIDDEN', /hidden/));
    assert.equal(validateName('a.b/c.d', { allowHidden: false }), 'a.b/c.d');
  });

  it('reports a malformed name as INVALID_NAME even when it is also hidden', () => {
    assert.throws(() => validateName('..', { allowHidden: false }), refusedWith('INVALID_NAME'));
    assert.throws(() => validateName('.env.', { allowHidden: false }), refusedWith('INVALID_NAME'));
    assert.throws(() => validateName('.a/../b', { allowHidden: false }), refusedWith('INVALID_NAME'));
  });
});

describe('validateDirName', () => {
  it('reads the empty name and "." as the root', () => {
    assert.equal(validateDirName(''), '');
    assert.equal(validateDirName('.'), '');
    assert.equal(validateDirName(new Uint8Array(0)), '');
    assert.equal(validateDirName(bytes(0x2e)), '');
  });

  it('checks anything else like a file name', () => {
    assert.equal(validateDirName('sub/dir'), 'sub/dir');
    for (const name of ['..', '/', './', '/etc', 'a/', 'a\\b', 'CON']) {
      assert.throws(() => validateDirName(name), refusedWith('INVALID_NAME'), name);
    }
    assert.throws(() => validateDirName('.git', { allowHidden: false }), refusedWith('FORBIDDEN'));
  });
});

describe('isInside', () => {
  it('compares with the separator (CVE-2014-6394)', () => {
    assert.equal(isInside('/a/root', '/a/root'), true);
    assert.equal(isInside('/a/root', '/a/root/f'), true);
    assert.equal(isInside('/a/root', '/a/root/sub/f'), true);
    assert.equal(isInside('/a/root', '/a/root-x/f'), false);
    assert.equal(isInside('/a/root', '/a/rootx'), false);
    assert.equal(isInside('/a/root', '/a/roo'), false);
    assert.equal(isInside('/a/root', '/a'), false);
    assert.equal(isInside('/a/root/', '/a/root/f'), true);
    assert.equal(isInside('/', '/etc/passwd'), true);
  });

  it('refuses paths that are not absolute and canonical', () => {
    assert.equal(isInside('/a/root', '/a/root/../etc/passwd'), false);
    assert.equal(isInside('/a/root', '/a/root/./f'), false);
    assert.equal(isInside('/a/root', '/a/root//f'), false);
    assert.equal(isInside('/a/root', 'a/root/f'), false);
    assert.equal(isInside('/a/root', ''), false);
    assert.equal(isInside('a/root', 'a/root/f'), false);
    assert.equal(isInside('/a/root/../b', '/a/root/../b/f'), false);
  });
});

describe('validateName: properties', () => {
  const root = '/srv/tcpkit-root';
  // Pieces that traversal attempts are made of, so that generated names are often accepted,
  // often nearly accepted, and the rules are exercised at their edges.
  const piece = fc.constantFrom(
    '..', '.', '', 'a', 'b.txt', '/', '//', '\\', ':', '\u0000', '\u001b', '\u009b', 'CON', 'con.txt', 'COM1',
    '%2e', '%2f', '．', '／', '\u2024', 'x.', 'x ', ' ', '.hidden', '~', 'é', '😀', '\ud800',
  );
  const nameLike = fc.oneof(
    fc.array(piece, { maxLength: 8 }).map((pieces) => pieces.join('')),
    fc.array(piece, { maxLength: 6 }).map((pieces) => pieces.join('/')),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit)), maxLength: 20 }),
  );

  function checkAccepted(name: string): void {
    const joined = path.join(root, name);
    assert.ok(isInside(root, joined), `${JSON.stringify(name)} escapes`);
    assert.ok(joined.startsWith(`${root}/`), `${JSON.stringify(name)} is the root itself`);
    // path.join had nothing to normalise: what was checked is what is used.
    assert.equal(joined, `${root}/${name}`);
    const components = name.split('/');
    assert.ok(!components.includes('..') && !components.includes('.') && !components.includes(''));
    assert.ok(!name.includes('\u0000') && !name.includes('\\') && !name.includes(':'));
    assert.doesNotMatch(name, CONTROL);
  }

  it('every accepted name joined onto a root stays strictly inside it, unchanged', () => {
    let accepted = 0;
    fc.assert(
      fc.property(nameLike, (input) => {
        let name: string;
        try {
          name = validateName(input);
        } catch (error) {
          refusedWith('INVALID_NAME')(error);
          return;
        }
        accepted++;
        assert.equal(name, input);
        checkAccepted(name);
      }),
      { numRuns: NUM_RUNS },
    );
    assert.ok(accepted > 0, 'the generator should produce some valid names');
  });

  it('bytes are accepted only when they are exactly the UTF-8 of the returned name', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 40 }), nameLike.map((name) => Buffer.from(name, 'utf8'))), (input) => {
        let name: string;
        try {
          name = validateName(input);
        } catch (error) {
          refusedWith('INVALID_NAME')(error);
          return;
        }
        assert.deepEqual(Buffer.from(name, 'utf8'), Buffer.from(input));
        checkAccepted(name);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('with allowHidden false, no accepted component starts with "."', () => {
    fc.assert(
      fc.property(nameLike, (input) => {
        try {
          const name = validateName(input, { allowHidden: false });
          assert.ok(name.split('/').every((component) => !component.startsWith('.')));
        } catch (error) {
          assert.ok(error instanceof TcpkitError && (error.wireCode === 'INVALID_NAME' || error.wireCode === 'FORBIDDEN'));
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
