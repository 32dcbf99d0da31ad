import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OptionError } from '../../src/errors.js';
import { checkPort, DEFAULT_PORT, formatAddress, normalizeIp, parseAddress } from '../../src/transport/address.js';

function isInvalidAddress(error: unknown): boolean {
  assert.ok(error instanceof OptionError, `expected an OptionError, got ${String(error)}`);
  assert.equal(error.code, 'TCPKIT_ERR_INVALID_ADDRESS');
  return true;
}

describe('parseAddress', () => {
  it('the default port is 7890', () => {
    assert.equal(DEFAULT_PORT, 7890);
  });

  it('reads HOST and HOST:PORT', () => {
    assert.deepEqual(parseAddress('localhost'), { host: 'localhost', port: 7890 });
    assert.deepEqual(parseAddress('127.0.0.1:9000'), { host: '127.0.0.1', port: 9000 });
    assert.deepEqual(parseAddress('example.com:1'), { host: 'example.com', port: 1 });
    assert.deepEqual(parseAddress('10.0.0.1:65535'), { host: '10.0.0.1', port: 65535 });
    assert.deepEqual(parseAddress('  host:80  '), { host: 'host', port: 80 });
  });

  it('reads [IPV6], [IPV6]:PORT and a bare IPv6 address', () => {
    assert.deepEqual(parseAddress('[::1]'), { host: '::1', port: 7890 });
    assert.deepEqual(parseAddress('[::1]:9000'), { host: '::1', port: 9000 });
    assert.deepEqual(parseAddress('[2001:db8::7]:443'), { host: '2001:db8::7', port: 443 });
    assert.deepEqual(parseAddress('::1'), { host: '::1', port: 7890 });
    assert.deepEqual(parseAddress('fe80::1:2'), { host: 'fe80::1:2', port: 7890 });
  });

  it('uses the given default port', () => {
    assert.deepEqual(parseAddress('host', 1234), { host: 'host', port: 1234 });
    assert.deepEqual(parseAddress('[::1]', 1234), { host: '::1', port: 1234 });
    assert.deepEqual(parseAddress('::1', 1234), { host: '::1', port: 1234 });
    assert.deepEqual(parseAddress('host:99', 1234), { host: 'host', port: 99 });
  });

  it('accepts port 0 only with allowZero', () => {
    assert.throws(() => parseAddress('host:0'), isInvalidAddress);
    assert.throws(() => parseAddress('[::1]:0'), isInvalidAddress);
    assert.deepEqual(parseAddress('host:0', DEFAULT_PORT, true), { host: 'host', port: 0 });
    assert.deepEqual(parseAddress('[::1]:0', DEFAULT_PORT, true), { host: '::1', port: 0 });
  });

  it('rejects malformed addresses with INVALID_ADDRESS', () => {
    const bad = [
      '',
      '   ',
      'host:',
      ':80',
      'host:65536',
      'host:99999',
      'host:123456',
      'host:-1',
      'host:+80',
      'host:8o',
      'host: 80',
      'host:0x50',
      'host:1e3',
      'a:b:c',
      'host:80:90',
      '1.2.3.4:5:6',
      '[::1',
      '[::1]80',
      '[::1]:',
      '[::1]:port',
      '[::1]:65536',
      '[127.0.0.1]:80',
      '[host]',
      '[]',
    ];
    for (const text of bad) assert.throws(() => parseAddress(text), isInvalidAddress, JSON.stringify(text));
  });
});

describe('checkPort', () => {
  it('accepts 1..65535, and 0 only with allowZero', () => {
    assert.equal(checkPort(1), 1);
    assert.equal(checkPort(65535), 65535);
    assert.equal(checkPort(0, true), 0);
    for (const bad of [0, -1, 65536, 1.5, Number.NaN]) assert.throws(() => checkPort(bad), isInvalidAddress, String(bad));
    assert.throws(() => checkPort(-1, true), isInvalidAddress);
  });
});

describe('normalizeIp and formatAddress', () => {
  it('strips the IPv4-mapped prefix, in any case, and nothing else', () => {
    assert.equal(normalizeIp('::ffff:127.0.0.7'), '127.0.0.7');
    assert.equal(normalizeIp('::FFFF:10.1.2.3'), '10.1.2.3');
    assert.equal(normalizeIp('127.0.0.7'), '127.0.0.7');
    assert.equal(normalizeIp('::1'), '::1');
    assert.equal(normalizeIp('::ffff:1'), '::ffff:1');
    assert.equal(normalizeIp('::ffff:not-an-ip'), '::ffff:not-an-ip');
    assert.equal(normalizeIp('2001:db8::1'), '2001:db8::1');
  });

  it('brackets IPv6 hosts only', () => {
    assert.equal(formatAddress('::1', 80), '[::1]:80');
    assert.equal(formatAddress('2001:db8::7', 7890), '[2001:db8::7]:7890');
    assert.equal(formatAddress('127.0.0.1', 80), '127.0.0.1:80');
    assert.equal(formatAddress('example.com', 443), 'example.com:443');
  });

  it('what formatAddress prints, parseAddress reads back', () => {
    for (const [host, port] of [['::1', 1], ['2001:db8::7', 65535], ['127.0.0.1', 7890], ['example.com', 22]] as const) {
      assert.deepEqual(parseAddress(formatAddress(host, port)), { host, port });
    }
  });
});
