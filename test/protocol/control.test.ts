import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../../src/errors.js';
import { SUPPORTED_VERSIONS } from '../../src/protocol/constants.js';
import {
  decodeClientHello,
  decodeErrorBody,
  decodeServerHello,
  encodeClientHello,
  encodeErrorBody,
  encodeServerHello,
  negotiateVersion,
  type ClientHello,
  type ServerHello,
} from '../../src/protocol/control.js';

const NUM_RUNS = Number.parseInt(process.env.FC_NUM_RUNS ?? '', 10) > 0 ? Number.parseInt(process.env.FC_NUM_RUNS!, 10) : 200;

function isProtocolError(error: unknown): boolean {
  assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error instanceof Error ? error.stack : String(error)}`);
  assert.equal(error.code, 'TCPKIT_ERR_PROTOCOL_ERROR');
  return true;
}

const utf8 = (text: string): Buffer => Buffer.from(text, 'utf8');
const json = (value: unknown): Buffer => utf8(JSON.stringify(value));

/** A server hello that decodes, to be broken one field at a time. */
const SERVER_HELLO: ServerHello = {
  version: 1,
  agent: 'tcpkit/0.1.0',
  services: ['message'],
  capabilities: [],
  limits: { maxFrameBytes: 1024 * 1024, maxInFlight: 16, idleTimeoutMs: 60_000 },
};

/** Payloads no decoder accepts: not UTF-8, not JSON, or JSON but not an object. */
const NOT_AN_OBJECT: [string, Buffer][] = [
  ['empty', Buffer.alloc(0)],
  ['plain text', utf8('hello')],
  ['truncated JSON', utf8('{"versions":[1]')],
  ['invalid UTF-8 byte', Buffer.from([0xff, 0xfe, 0x7b, 0x7d])],
  ['invalid UTF-8 inside a string', Buffer.concat([utf8('{"versions":[1],"agent":"'), Buffer.from([0xc3, 0x28]), utf8('"}')])],
  ['overlong UTF-8', Buffer.concat([utf8('{"agent":"'), Buffer.from([0xc0, 0xaf]), utf8('"}')])],
  ['UTF-8 encoded surrogate', Buffer.concat([utf8('{"agent":"'), Buffer.from([0xed, 0xa0, 0x80]), utf8('"}')])],
  ['JSON array', utf8('[1]')],
  ['JSON number', utf8('1')],
  ['JSON string', utf8('"versions"')],
  ['JSON null', utf8('null')],
  ['JSON true', utf8('true')],
  ['deeply nested arrays', utf8('['.repeat(100_000) + ']'.repeat(100_000))],
  ['unclosed nesting', utf8('{"a":'.repeat(50_000))],
  ['NUL bytes', Buffer.alloc(16)],
];

describe('control payloads: hello', () => {
  it('a client hello round-trips, with and without the optional fields', () => {
    const full: ClientHello = { versions: [1, 2], agent: 'tcpkit/0.1.0 (test)', capabilities: ['resume', 'x-y'], auth: { token: 't', n: 1 } };
    assert.deepEqual(decodeClientHello(encodeClientHello(full)), full);
    const minimal: ClientHello = { versions: [1], capabilities: [] };
    assert.deepEqual(decodeClientHello(encodeClientHello(minimal)), minimal);
    assert.deepEqual(decodeClientHello(json({ versions: [3] })), { versions: [3], capabilities: [] });
  });

  it('a server hello round-trips, with and without an agent', () => {
    assert.deepEqual(decodeServerHello(encodeServerHello(SERVER_HELLO)), SERVER_HELLO);
    const { agent: _agent, ...noAgent } = SERVER_HELLO;
    assert.deepEqual(decodeServerHello(encodeServerHello(noAgent)), noAgent);
  });

  it('unknown fields are ignored and long agents are cut to 1024 characters', () => {
    const hello = decodeClientHello(json({ versions: [1], agent: 'a'.repeat(5000), future: { x: 1 } }));
    assert.equal(hello.agent, 'a'.repeat(1024));
    assert.equal(Object.hasOwn(hello, 'future'), false);
  });

  it('a server limit of 0 in-flight requests is read as 1', () => {
    const hello = decodeServerHello(json({ ...SERVER_HELLO, limits: { ...SERVER_HELLO.limits, maxInFlight: 0 } }));
    assert.equal(hello.limits.maxInFlight, 1);
  });

  it('negotiateVersion picks the highest common version, or undefined', () => {
    assert.equal(negotiateVersion([1, 2, 3], [2, 3, 4]), 3);
    assert.equal(negotiateVersion([3, 1, 2], [1, 2]), 2);
    assert.equal(negotiateVersion([7], [7]), 7);
    assert.equal(negotiateVersion([5, 6], [1, 2]), undefined);
    assert.equal(negotiateVersion([], [1]), undefined);
    assert.equal(negotiateVersion([1], []), undefined);
    assert.equal(negotiateVersion([...SUPPORTED_VERSIONS, 65535]), Math.max(...SUPPORTED_VERSIONS));
    assert.equal(negotiateVersion([65535]), undefined);
  });

  it('hostile client hellos give PROTOCOL_ERROR and nothing else', () => {
    const cases: [string, Buffer][] = [
      ...NOT_AN_OBJECT,
      ['no versions', json({})],
      ['empty versions', utf8('{"versions":[]}')],
      ['versions not a list', json({ versions: 1 })],
      ['versions as an object', json({ versions: { 0: 1, length: 1 } })],
      ['versions as a string', json({ versions: '1' })],
      ['version as a string', json({ versions: ['1'] })],
      ['version 0', json({ versions: [0] })],
      ['negative version', json({ versions: [-1] })],
      ['fractional version', json({ versions: [1.5] })],
      ['version too big', json({ versions: [65536] })],
      ['version null', json({ versions: [null] })],
      ['33 versions', json({ versions: Array.from({ length: 33 }, (_, i) => i + 1) })],
      ['a huge version list', json({ versions: Array.from({ length: 200_000 }, () => 1) })],
      ['versions only under __proto__', utf8('{"__proto__":{"versions":[1]}}')],
      ['agent not a string', json({ versions: [1], agent: 5 })],
      ['agent null', json({ versions: [1], agent: null })],
      ['capabilities not a list', json({ versions: [1], capabilities: 'resume' })],
      ['capability not a string', json({ versions: [1], capabilities: [1] })],
      ['65 capabilities', json({ versions: [1], capabilities: Array.from({ length: 65 }, (_, i) => `c${i}`) })],
      ['a long capability', json({ versions: [1], capabilities: ['c'.repeat(65)] })],
      ['a huge capability list', json({ versions: [1], capabilities: Array.from({ length: 100_000 }, () => 'c') })],
      ['auth a list', json({ versions: [1], auth: [] })],
      ['auth a string', json({ versions: [1], auth: 'secret' })],
      ['auth null', json({ versions: [1], auth: null })],
    ];
    for (const [name, payload] of cases) assert.throws(() => decodeClientHello(payload), isProtocolError, name);
  });

  it('__proto__ keys in a hello neither pollute prototypes nor smuggle fields', () => {
    const hello = decodeClientHello(utf8('{"versions":[1],"__proto__":{"polluted":true},"auth":{"__proto__":{"isAdmin":true}}}'));
    assert.deepEqual(hello.versions, [1]);
    assert.equal(Object.getPrototypeOf(hello), Object.prototype);
    assert.equal((hello as unknown as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.getPrototypeOf(hello.auth), Object.prototype);
    assert.equal(hello.auth?.isAdmin, undefined);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(({} as Record<string, unknown>).isAdmin, undefined);
  });

  it('hostile server hellos give PROTOCOL_ERROR and nothing else', () => {
    const limits = SERVER_HELLO.limits;
    const cases: [string, Buffer][] = [
      ...NOT_AN_OBJECT,
      ['no version', json({ ...SERVER_HELLO, version: undefined })],
      ['version a string', json({ ...SERVER_HELLO, version: '1' })],
      ['version negative', json({ ...SERVER_HELLO, version: -1 })],
      ['version fractional', json({ ...SERVER_HELLO, version: 1.5 })],
      ['version unsafe', utf8(JSON.stringify(SERVER_HELLO).replace('"version":1', '"version":1e300'))],
      ['no limits', json({ ...SERVER_HELLO, limits: undefined })],
      ['limits a list', json({ ...SERVER_HELLO, limits: [1, 2, 3] })],
      ['limits null', json({ ...SERVER_HELLO, limits: null })],
      ['maxFrameBytes missing', json({ ...SERVER_HELLO, limits: { ...limits, maxFrameBytes: undefined } })],
      ['maxFrameBytes a string', json({ ...SERVER_HELLO, limits: { ...limits, maxFrameBytes: '1024' } })],
      ['maxFrameBytes negative', json({ ...SERVER_HELLO, limits: { ...limits, maxFrameBytes: -1 } })],
      ['maxInFlight fractional', json({ ...SERVER_HELLO, limits: { ...limits, maxInFlight: 0.5 } })],
      ['idleTimeoutMs 2^53', json({ ...SERVER_HELLO, limits: { ...limits, idleTimeoutMs: 2 ** 53 } })],
      ['limits only under __proto__', utf8(JSON.stringify({ ...SERVER_HELLO, limits: undefined }).replace('{', `{"__proto__":{"limits":${JSON.stringify(limits)}},`))],
      ['services a string', json({ ...SERVER_HELLO, services: 'message' })],
      ['a huge service list', json({ ...SERVER_HELLO, services: Array.from({ length: 100_000 }, () => 'message') })],
      ['capabilities of objects', json({ ...SERVER_HELLO, capabilities: [{}] })],
      ['agent a list', json({ ...SERVER_HELLO, agent: ['x'] })],
    ];
    for (const [name, payload] of cases) assert.throws(() => decodeServerHello(payload), isProtocolError, name);
  });
});

describe('control payloads: error and goodbye bodies', () => {
  it('an empty payload means NORMAL', () => {
    assert.deepEqual(decodeErrorBody(Buffer.alloc(0)), { code: 'NORMAL', message: '' });
    assert.deepEqual(decodeErrorBody(new Uint8Array(0), 'goodbye'), { code: 'NORMAL', message: '' });
  });

  it('round-trips code, message and details', () => {
    const body = { code: 'NOT_FOUND', message: 'no such file', details: { name: 'a.txt' } };
    assert.deepEqual(decodeErrorBody(encodeErrorBody(body)), body);
    assert.deepEqual(decodeErrorBody(json({ code: 'X_1' })), { code: 'X_1', message: '' });
  });

  it('details that are not an object are dropped, not trusted', () => {
    for (const details of [[1, 2], 'x', 5, null]) {
      const body = decodeErrorBody(json({ code: 'BAD_REQUEST', message: 'm', details }));
      assert.equal(Object.hasOwn(body, 'details'), false, JSON.stringify(details));
    }
  });

  it('the code must be an upper-case code name', () => {
    const codes: unknown[] = [undefined, '', 'not_found', 'Not_Found', '1ABC', '_ABC', 'A B', 'A-B', 'NOT_FOUND\n', 'A'.repeat(65), 5, null, ['NOT_FOUND']];
    for (const code of codes) {
      assert.throws(() => decodeErrorBody(json({ code, message: 'm' })), isProtocolError, JSON.stringify(code));
    }
    assert.equal(decodeErrorBody(json({ code: 'A'.repeat(64) })).code, 'A'.repeat(64));
  });

  it('hostile bodies give PROTOCOL_ERROR and name what was being decoded', () => {
    const cases: [string, Buffer][] = [
      ...NOT_AN_OBJECT.filter(([name]) => name !== 'empty'),
      ['message not a string', json({ code: 'NOT_FOUND', message: 5 })],
      ['code only under __proto__', utf8('{"__proto__":{"code":"NOT_FOUND"}}')],
    ];
    for (const [name, payload] of cases) assert.throws(() => decodeErrorBody(payload), isProtocolError, name);
    assert.throws(() => decodeErrorBody(utf8('[]'), 'goodbye'), /goodbye/);
  });
});

describe('control payloads: fuzzing', () => {
  const hostileJson = fc.oneof(
    fc.jsonValue(),
    fc.record(
      {
        versions: fc.oneof(fc.array(fc.integer({ min: -2, max: 70_000 }), { maxLength: 40 }), fc.jsonValue()),
        version: fc.oneof(fc.integer({ min: -2, max: 70_000 }), fc.jsonValue()),
        code: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_]{0,70}$/), fc.jsonValue()),
        message: fc.jsonValue(),
        agent: fc.jsonValue(),
        capabilities: fc.oneof(fc.array(fc.string({ maxLength: 70 }), { maxLength: 70 }), fc.jsonValue()),
        services: fc.jsonValue(),
        auth: fc.jsonValue(),
        details: fc.jsonValue(),
        limits: fc.oneof(
          fc.record({ maxFrameBytes: fc.jsonValue(), maxInFlight: fc.jsonValue(), idleTimeoutMs: fc.jsonValue() }, { requiredKeys: [] }),
          fc.record({ maxFrameBytes: fc.nat(), maxInFlight: fc.nat(), idleTimeoutMs: fc.nat() }),
        ),
      },
      { requiredKeys: [] },
    ),
  );
  const payload = fc.oneof(
    hostileJson.map((value) => json(value)),
    fc.uint8Array({ maxLength: 256 }).map((bytes) => Buffer.from(bytes)),
  );

  it('any payload either decodes or throws ProtocolError(PROTOCOL_ERROR), in every decoder', () => {
    fc.assert(
      fc.property(payload, (bytes) => {
        for (const decode of [decodeClientHello, decodeServerHello, decodeErrorBody]) {
          try {
            decode(bytes);
          } catch (error) {
            isProtocolError(error);
          }
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
