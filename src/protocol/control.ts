/**
 * Payloads of the control frames (HELLO, GOODBYE, ERROR): UTF-8 JSON objects, validated field by
 * field as hostile input. Pure functions, no I/O.
 */
import { ProtocolError } from '../errors.js';
import { SUPPORTED_VERSIONS } from './constants.js';

const decoder = new TextDecoder('utf-8', { fatal: true });
const MAX_TEXT = 1024;

/** Parses a JSON object payload; anything else is a protocol error naming `what`. */
function parseObject(payload: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch {
    throw new ProtocolError('PROTOCOL_ERROR', `${what} payload is not UTF-8 JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError('PROTOCOL_ERROR', `${what} payload is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function encodeObject(value: object): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function optionalText(obj: Record<string, unknown>, key: string, what: string): string | undefined {
  const value = Object.hasOwn(obj, key) ? obj[key] : undefined;
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new ProtocolError('PROTOCOL_ERROR', `${what}.${key} must be a string`);
  return value.length > MAX_TEXT ? value.slice(0, MAX_TEXT) : value;
}

function stringList(obj: Record<string, unknown>, key: string, what: string): string[] {
  const value = Object.hasOwn(obj, key) ? obj[key] : undefined;
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > 64 || !value.every((v) => typeof v === 'string' && v.length <= 64)) {
    throw new ProtocolError('PROTOCOL_ERROR', `${what}.${key} must be a list of at most 64 short strings`);
  }
  return value as string[];
}

function positiveInt(obj: Record<string, unknown>, key: string, what: string): number {
  const value = Object.hasOwn(obj, key) ? obj[key] : undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ProtocolError('PROTOCOL_ERROR', `${what}.${key} must be a non-negative integer`);
  }
  return value;
}

/** What a client says first. */
export interface ClientHello {
  /** Protocol versions the client speaks. */
  versions: number[];
  /** Free text naming the client software, for logs. */
  agent?: string;
  /** Optional features the client asks for; unknown ones are ignored by the server. */
  capabilities: string[];
  /** Credentials, when the server requires them (kept for the authentication feature). */
  auth?: Record<string, unknown>;
}

/** Limits the server enforces on this connection, stated in its hello. */
export interface ServerLimits {
  /** Largest frame payload the server accepts. */
  maxFrameBytes: number;
  /** Requests the server serves at once on one connection; more wait, unread, in TCP buffers. */
  maxInFlight: number;
  /** Idle time after which the server says goodbye (0 when it never does). */
  idleTimeoutMs: number;
}

/** What the server answers to a client hello. */
export interface ServerHello {
  /** The version chosen: the highest both speak. */
  version: number;
  agent?: string;
  /** Request families served, e.g. `message`. */
  services: string[];
  /** Capabilities granted, out of those the client asked for. */
  capabilities: string[];
  limits: ServerLimits;
}

/** The payload of a client HELLO: `hello` as UTF-8 JSON, as given (not validated). */
export function encodeClientHello(hello: ClientHello): Buffer {
  return encodeObject(hello);
}

/**
 * Validates a client HELLO payload as hostile input. `agent` is cut to 1024 characters, a missing
 * `capabilities` is `[]`, unknown fields are dropped.
 * @throws {ProtocolError} `PROTOCOL_ERROR` when it is not a UTF-8 JSON object, `versions` is not 1 to 32
 *   integers from 1 to 65535, `capabilities` is not at most 64 strings of at most 64 characters, or `auth`
 *   is not an object.
 */
export function decodeClientHello(payload: Uint8Array): ClientHello {
  const obj = parseObject(payload, 'hello');
  const raw = Object.hasOwn(obj, 'versions') ? obj.versions : undefined;
  if (
    !Array.isArray(raw) ||
    raw.length === 0 ||
    raw.length > 32 ||
    !raw.every((v) => typeof v === 'number' && Number.isInteger(v) && v > 0 && v < 65536)
  ) {
    throw new ProtocolError('PROTOCOL_ERROR', 'hello.versions must be a list of 1 to 32 version numbers');
  }
  const hello: ClientHello = { versions: raw as number[], capabilities: stringList(obj, 'capabilities', 'hello') };
  const agent = optionalText(obj, 'agent', 'hello');
  if (agent !== undefined) hello.agent = agent;
  const auth = Object.hasOwn(obj, 'auth') ? obj.auth : undefined;
  if (auth !== undefined) {
    if (typeof auth !== 'object' || auth === null || Array.isArray(auth)) {
      throw new ProtocolError('PROTOCOL_ERROR', 'hello.auth must be an object');
    }
    hello.auth = auth as Record<string, unknown>;
  }
  return hello;
}

/** The payload of the server's HELLO reply: `hello` as UTF-8 JSON, as given (not validated). */
export function encodeServerHello(hello: ServerHello): Buffer {
  return encodeObject(hello);
}

/**
 * Validates the server's HELLO payload. `limits.maxInFlight` is raised to at least 1, `agent` is cut
 * to 1024 characters, missing `services` and `capabilities` are `[]`, unknown fields are dropped.
 * @throws {ProtocolError} `PROTOCOL_ERROR` when it is not a UTF-8 JSON object, `version` or a limit is
 *   not a non-negative integer, `limits` is not an object, or a list is not at most 64 short strings.
 */
export function decodeServerHello(payload: Uint8Array): ServerHello {
  const obj = parseObject(payload, 'server hello');
  const version = positiveInt(obj, 'version', 'server hello');
  const limitsRaw = Object.hasOwn(obj, 'limits') ? obj.limits : undefined;
  if (typeof limitsRaw !== 'object' || limitsRaw === null || Array.isArray(limitsRaw)) {
    throw new ProtocolError('PROTOCOL_ERROR', 'server hello.limits must be an object');
  }
  const limitsObj = limitsRaw as Record<string, unknown>;
  const limits: ServerLimits = {
    maxFrameBytes: positiveInt(limitsObj, 'maxFrameBytes', 'limits'),
    maxInFlight: Math.max(1, positiveInt(limitsObj, 'maxInFlight', 'limits')),
    idleTimeoutMs: positiveInt(limitsObj, 'idleTimeoutMs', 'limits'),
  };
  const hello: ServerHello = {
    version,
    services: stringList(obj, 'services', 'server hello'),
    capabilities: stringList(obj, 'capabilities', 'server hello'),
    limits,
  };
  const agent = optionalText(obj, 'agent', 'server hello');
  if (agent !== undefined) hello.agent = agent;
  return hello;
}

/**
 * Picks the highest version both sides speak, or undefined when there is none.
 */
export function negotiateVersion(offered: readonly number[], supported: readonly number[] = SUPPORTED_VERSIONS): number | undefined {
  let best: number | undefined;
  for (const v of offered) if (supported.includes(v) && (best === undefined || v > best)) best = v;
  return best;
}

/** Payload of ERROR and GOODBYE frames: a stable code and a sentence for people. */
export interface ErrorBody {
  code: string;
  message: string;
  /** Extra machine-readable facts (e.g. the versions a server speaks). */
  details?: Record<string, unknown>;
}

/** The payload of an ERROR or GOODBYE frame: `body` as UTF-8 JSON, as given (not validated). */
export function encodeErrorBody(body: ErrorBody): Buffer {
  return encodeObject(body);
}

/** Decodes an ERROR or GOODBYE payload. An empty GOODBYE payload means `NORMAL`. */
export function decodeErrorBody(payload: Uint8Array, what = 'error'): ErrorBody {
  if (payload.length === 0) return { code: 'NORMAL', message: '' };
  const obj = parseObject(payload, what);
  const code = optionalText(obj, 'code', what);
  if (code === undefined || !/^[A-Z][A-Z0-9_]{0,63}$/.test(code)) {
    throw new ProtocolError('PROTOCOL_ERROR', `${what}.code must be an upper-case code name`);
  }
  const body: ErrorBody = { code, message: optionalText(obj, 'message', what) ?? '' };
  const details = Object.hasOwn(obj, 'details') ? obj.details : undefined;
  if (typeof details === 'object' && details !== null && !Array.isArray(details)) {
    body.details = details as Record<string, unknown>;
  }
  return body;
}
