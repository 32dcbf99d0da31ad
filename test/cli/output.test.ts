import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { ConnectionError, OptionError, ProtocolError, RemoteError, TcpkitError, TimeoutError } from '../../src/errors.js';
import { errorLine, ExitCode, exitCodeFor, intArg, safeText } from '../../src/cli/output.js';

/** Both forms safeText accepts: a string, and its UTF-8 bytes. */
function both(text: string): string[] {
  return [safeText(text), safeText(Buffer.from(text, 'utf8'))];
}

describe('safeText', () => {
  it('escapes characters that drive a terminal', () => {
    const cases: [string, string][] = [
      ['\u001b[2J', '\\x1b[2J'],
      ['a\rb', 'a\\rb'],
      ['a\nb', 'a\\nb'],
      ['a\tb', 'a\\tb'],
      ['a\u0000b', 'a\\x00b'],
      ['a\u0007b', 'a\\x07b'],
      ['a\u007fb', 'a\\x7fb'],
      ['\u009b31m', '\\x9b31m'],
      ['\u0085', '\\x85'],
      ['a\u2028b\u2029c', 'a\\u2028b\\u2029c'],
      ['evil\u202etxt.exe', 'evil\\u202etxt.exe'],
      ['\u202a\u2066\u2069', '\\u202a\\u2066\\u2069'],
    ];
    for (const [input, expected] of cases) {
      assert.deepEqual(both(input), [expected, expected], JSON.stringify(input));
    }
  });

  it('leaves no control character in its output', () => {
    let all = '';
    for (let c = 0; c <= 0x9f; c++) all += String.fromCharCode(c);
    for (const out of both(all + '\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069')) {
      assert.doesNotMatch(out, /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u);
    }
  });

  it('keeps ordinary text, UTF-8 included, unchanged', () => {
    for (const text of ['hello, world', '你哈啊', 'naïve café — ok', 'emoji 😀 ok', '']) {
      assert.deepEqual(both(text), [text, text]);
    }
  });

  it('renders bytes that are not UTF-8 as \\xNN and keeps printable ASCII', () => {
    assert.equal(safeText(Buffer.from([0x61, 0xff, 0x62])), 'a\\xffb');
    assert.equal(safeText(Buffer.from([0xc3, 0x28])), '\\xc3(');
    assert.equal(safeText(Buffer.from([0x1b, 0x5b, 0x41, 0x80])), '\\x1b[A\\x80');
    assert.equal(safeText(Buffer.from([0xed, 0xa0, 0x80])), '\\xed\\xa0\\x80');
    assert.doesNotMatch(safeText(Buffer.from([0xfe, 0x0a, 0x0d, 0x9b, 0x00])), /[\u0000-\u001f\u007f-\u009f]/);
  });

  it('errorLine prints one safe line', () => {
    assert.equal(errorLine(new Error('bad\nname\u001b[31m')), 'tcpkit: bad\\nname\\x1b[31m');
    assert.equal(errorLine('plain'), 'tcpkit: plain');
  });
});

describe('exitCodeFor', () => {
  it('maps errors to the documented exit codes', () => {
    const cases: [unknown, number][] = [
      [new ConnectionError('CONNECTION_REFUSED', 'refused'), 3],
      [new ConnectionError('HOST_NOT_FOUND', 'nx'), 3],
      [new TimeoutError('CONNECT_TIMEOUT', 't'), 3],
      [new ProtocolError('NOT_TCPKIT', 'x'), 3],
      [new ProtocolError('UNSUPPORTED_VERSION', 'x'), 3],
      [new RemoteError('TOO_MANY_CONNECTIONS', 'busy'), 3],
      [new TimeoutError('REQUEST_TIMEOUT', 't'), 4],
      [new ConnectionError('CONNECTION_CLOSED', 'c'), 4],
      [new ConnectionError('CONNECTION_FAILED', 'c'), 4],
      [new ProtocolError('PROTOCOL_ERROR', 'x'), 4],
      [new ProtocolError('FRAME_TOO_LARGE', 'x'), 4],
      [new RemoteError('SHUTTING_DOWN', 'bye'), 4],
      [new RemoteError('IDLE_TIMEOUT', 'bye'), 4],
      [new OptionError('INVALID_ADDRESS', 'a'), 2],
      [new OptionError('INVALID_OPTION', 'o'), 2],
      [new RemoteError('NOT_FOUND', 'no such file'), 1],
      [new RemoteError('SOMETHING_NEW', 'unknown code'), 1],
      [new TcpkitError('HANDLER_ERROR', 'h'), 1],
      [new Error('plain'), 1],
      [new TypeError('t'), 1],
      ['a string', 1],
      [undefined, 1],
    ];
    for (const [error, code] of cases) {
      assert.equal(exitCodeFor(error), code, error instanceof Error ? `${error.name} ${error.message}` : String(error));
    }
  });

  it('the named exit codes have their documented values', () => {
    assert.deepEqual({ ...ExitCode }, { OK: 0, FAILED: 1, USAGE: 2, CONNECT: 3, CONNECTION_LOST: 4, INTERRUPTED: 130 });
  });
});

describe('intArg', () => {
  const parse = intArg(1, 100);

  it('accepts whole numbers within bounds', () => {
    assert.equal(parse('1'), 1);
    assert.equal(parse('100'), 100);
    assert.equal(parse('042'), 42);
    assert.equal(intArg(0, 0)('0'), 0);
  });

  it('rejects non-numbers and out-of-range values with InvalidArgumentError', () => {
    for (const bad of ['', 'abc', '1.5', '-1', '+5', ' 5', '5 ', '1e2', '0x10', 'NaN', 'Infinity', '0', '101', '99999999999999999999999']) {
      assert.throws(() => parse(bad), InvalidArgumentError, JSON.stringify(bad));
    }
  });
});
