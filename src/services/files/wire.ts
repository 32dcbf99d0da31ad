/**
 * Payloads of the download service's frames (docs/PROTOCOL.md §5.2). Pure: bytes in, values out.
 */
import { ProtocolError, TcpkitError } from '../../errors.js';
import { BULK_BUFFER_BYTES } from '../../util/buffer-pool.js';

// Frame types of the download and upload services: registered in protocol/types.ts.
export { FileFrame, UploadFrame } from '../../protocol/types.js';

/** Largest DATA payload a server sends; every client accepts at least this (the one 1 MiB constant). */
export const DATA_CHUNK_BYTES = BULK_BUFFER_BYTES;

const utf8 = new TextDecoder('utf-8', { fatal: true });
/** Replaces invalid UTF-8 with U+FFFD: only to find out where the invalid bytes were. */
const lossyUtf8 = new TextDecoder('utf-8');

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parse(payload: Uint8Array, what: string, bad: (m: string) => Error): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(payload));
  } catch {
    throw bad(`${what} payload is not UTF-8 JSON`);
  }
  if (!isObject(value)) throw bad(`${what} payload is not a JSON object`);
  return value;
}

const invalidName = (reason: string): Error => new TcpkitError('INVALID_NAME', `invalid name: ${reason}`);

/**
 * A request payload (GET, STAT, LIST, PUT). Malformed is BAD_REQUEST, except that a name that is
 * not valid UTF-8 is INVALID_NAME (§5.2), like any other name that breaks the rules: when the
 * payload is not UTF-8 but, with the invalid bytes replaced by U+FFFD, is an object whose `name`
 * holds a U+FFFD, the invalid bytes are taken to be in the name. (A payload with invalid bytes
 * elsewhere and a genuine U+FFFD in its name is refused as INVALID_NAME too: refused either way.)
 */
function parseRequest(payload: Uint8Array, what: string): Record<string, unknown> {
  try {
    return parse(payload, what, badRequest);
  } catch (error) {
    let lossy: unknown;
    try {
      utf8.decode(payload);
    } catch {
      try {
        lossy = JSON.parse(lossyUtf8.decode(payload));
      } catch {
        // not JSON either way: BAD_REQUEST
      }
    }
    const name = isObject(lossy) ? field(lossy, 'name') : undefined;
    if (typeof name === 'string' && name.includes('\ufffd')) throw invalidName('not valid UTF-8');
    throw error;
  }
}

/** A request's `name`: a string (else BAD_REQUEST), of well-formed Unicode (else INVALID_NAME). */
function nameText(obj: Record<string, unknown>, what: string): string {
  const value = field(obj, 'name');
  if (typeof value !== 'string') throw badRequest(`${what}.name must be a string`);
  // "\ud800" is valid JSON, but no file name: the rules of names.ts, answered the same way.
  if (!value.isWellFormed()) throw invalidName('not well-formed Unicode (a lone surrogate)');
  return value;
}

function field(obj: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

function count(obj: Record<string, unknown>, key: string, what: string, bad: (m: string) => Error, optional = false): number {
  const value = field(obj, key);
  if (value === undefined && optional) return 0;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw bad(`${what}.${key} must be a non-negative integer`);
  return value;
}

function time(obj: Record<string, unknown>, key: string, what: string, bad: (m: string) => Error): number {
  const value = field(obj, key);
  if (typeof value !== 'number' || !Number.isFinite(value)) throw bad(`${what}.${key} must be a number`);
  return value;
}

function text(obj: Record<string, unknown>, key: string, what: string, bad: (m: string) => Error): string {
  const value = field(obj, key);
  if (typeof value !== 'string' || !value.isWellFormed()) throw bad(`${what}.${key} must be a string`);
  return value;
}

const badRequest = (message: string): Error => new TcpkitError('BAD_REQUEST', message);
const badReply = (message: string): Error => new ProtocolError('PROTOCOL_ERROR', message);
const encode = (value: object): Buffer => Buffer.from(JSON.stringify(value), 'utf8');

/**
 * GET: a file, from `offset`. With `ifSize`/`ifMtimeMs` the offset holds only if the file is
 * still that version. `digests`: the digest algorithms the client takes, preferred first.
 */
export interface GetRequest {
  name: string;
  offset: number;
  ifSize?: number;
  ifMtimeMs?: number;
  digests?: string[];
}

/** Most entries in a GET's `digests`, and longest entry (BAD_REQUEST beyond). */
export const MAX_DIGEST_NAMES = 8;
const MAX_DIGEST_NAME_CHARS = 32;

/** A list of algorithm names (GET.digests), checked: at most 8 short strings. */
function digestNames(obj: Record<string, unknown>, key: string, what: string): string[] {
  const value = field(obj, key);
  if (
    !Array.isArray(value) ||
    value.length > MAX_DIGEST_NAMES ||
    !value.every((name) => typeof name === 'string' && name.length <= MAX_DIGEST_NAME_CHARS)
  ) {
    throw badRequest(`${what}.${key} must be a list of at most ${MAX_DIGEST_NAMES} algorithm names`);
  }
  return value as string[];
}

/** The payload of a GET. */
export function encodeGet(request: GetRequest): Buffer {
  return encode(request);
}

/** A GET payload, checked (BAD_REQUEST, or INVALID_NAME for a name that is not valid Unicode). */
export function decodeGet(payload: Uint8Array): GetRequest {
  const obj = parseRequest(payload, 'GET');
  const request: GetRequest = { name: nameText(obj, 'GET'), offset: count(obj, 'offset', 'GET', badRequest, true) };
  if (field(obj, 'ifSize') !== undefined) request.ifSize = count(obj, 'ifSize', 'GET', badRequest);
  if (field(obj, 'ifMtimeMs') !== undefined) request.ifMtimeMs = time(obj, 'ifMtimeMs', 'GET', badRequest);
  if (field(obj, 'digests') !== undefined) request.digests = digestNames(obj, 'digests', 'GET');
  return request;
}

/** FILE_HEAD: what follows. `offset` is where the DATA starts (0 when a resume was refused). */
export interface FileHead {
  size: number;
  mtimeMs: number;
  offset: number;
  digest: string;
}

/** The payload of a FILE_HEAD. */
export function encodeFileHead(head: FileHead): Buffer {
  return encode(head);
}

/** A FILE_HEAD payload, checked (PROTOCOL_ERROR: it comes from the server). */
export function decodeFileHead(payload: Uint8Array): FileHead {
  const obj = parse(payload, 'FILE_HEAD', badReply);
  const head: FileHead = {
    size: count(obj, 'size', 'FILE_HEAD', badReply),
    mtimeMs: time(obj, 'mtimeMs', 'FILE_HEAD', badReply),
    offset: count(obj, 'offset', 'FILE_HEAD', badReply),
    digest: text(obj, 'digest', 'FILE_HEAD', badReply),
  };
  if (head.offset > head.size) throw badReply('FILE_HEAD.offset is past the end of the file');
  return head;
}

/** FILE_END: the digest of the whole file (not only the bytes sent) and the count of bytes sent. */
export interface FileEnd {
  digest: string;
  bytes: number;
}

/** The payload of a FILE_END. */
export function encodeFileEnd(end: FileEnd): Buffer {
  return encode(end);
}

/** `{digest, bytes}`: FILE_END from a server, PUT_END from a client. */
function decodeEnd(payload: Uint8Array, what: string, bad: (m: string) => Error): FileEnd {
  const obj = parse(payload, what, bad);
  return { digest: text(obj, 'digest', what, bad), bytes: count(obj, 'bytes', what, bad) };
}

/** A FILE_END payload, checked (PROTOCOL_ERROR). */
export function decodeFileEnd(payload: Uint8Array): FileEnd {
  return decodeEnd(payload, 'FILE_END', badReply);
}

/** What STAT and LIST say about one entry. */
export interface EntryInfo {
  name: string;
  type: 'file' | 'directory' | 'other';
  size: number;
  mtimeMs: number;
}

function decodeEntry(value: unknown, what: string): EntryInfo {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badReply(`${what} entry is not an object`);
  const obj = value as Record<string, unknown>;
  const type = field(obj, 'type');
  if (type !== 'file' && type !== 'directory' && type !== 'other') throw badReply(`${what}.type is not file, directory or other`);
  return {
    name: text(obj, 'name', what, badReply),
    type,
    size: count(obj, 'size', what, badReply),
    mtimeMs: time(obj, 'mtimeMs', what, badReply),
  };
}

/** The payload of a STAT or LIST: `{name}`. */
export function encodeNameRequest(name: string): Buffer {
  return encode({ name });
}

/** The name of a STAT or LIST payload (`what` names the request in errors). */
export function decodeNameRequest(payload: Uint8Array, what: string): string {
  return nameText(parseRequest(payload, what), what);
}

/** The payload of a STAT_REPLY. */
export function encodeEntry(entry: EntryInfo): Buffer {
  return encode(entry);
}

/** A STAT_REPLY payload, checked (PROTOCOL_ERROR). */
export function decodeStatReply(payload: Uint8Array): EntryInfo {
  return decodeEntry(parse(payload, 'STAT_REPLY', badReply), 'STAT_REPLY');
}

/** LIST_REPLY: the entries of a directory, and whether the list was cut at the server's cap. */
export interface Listing {
  entries: EntryInfo[];
  truncated: boolean;
}

/** The payload of a LIST_REPLY. */
export function encodeListing(listing: Listing): Buffer {
  return encode(listing);
}

/** A LIST_REPLY payload, checked (PROTOCOL_ERROR). */
export function decodeListing(payload: Uint8Array): Listing {
  const obj = parse(payload, 'LIST_REPLY', badReply);
  const entries = field(obj, 'entries');
  if (!Array.isArray(entries)) throw badReply('LIST_REPLY.entries must be a list');
  return { entries: entries.map((e) => decodeEntry(e, 'LIST_REPLY')), truncated: field(obj, 'truncated') === true };
}

/**
 * PUT: where the file goes, how big it is, whether an existing file may be replaced, and the
 * digest algorithm of its PUT_END (absent: `xxh64`).
 */
export interface PutRequest {
  name: string;
  size: number;
  overwrite: boolean;
  digest?: string;
}

/** The payload of a PUT. */
export function encodePut(request: PutRequest): Buffer {
  return encode(request);
}

/** A PUT payload, checked (BAD_REQUEST, or INVALID_NAME for a name that is not valid Unicode). */
export function decodePut(payload: Uint8Array): PutRequest {
  const obj = parseRequest(payload, 'PUT');
  const overwrite = field(obj, 'overwrite');
  if (overwrite !== undefined && typeof overwrite !== 'boolean') throw badRequest('PUT.overwrite must be true or false');
  const put: PutRequest = { name: nameText(obj, 'PUT'), size: count(obj, 'size', 'PUT', badRequest), overwrite: overwrite === true };
  if (field(obj, 'digest') !== undefined) put.digest = text(obj, 'digest', 'PUT', badRequest);
  return put;
}

/** PUT_END: the count of bytes sent and the digest of all of them (the shape of FILE_END). */
export const encodePutEnd = encodeFileEnd;

/** A PUT_END payload, checked (BAD_REQUEST: it comes from the client). */
export function decodePutEnd(payload: Uint8Array): FileEnd {
  return decodeEnd(payload, 'PUT_END', badRequest);
}

/** PUT_DONE: what the server stored. */
export interface PutDone {
  name: string;
  size: number;
  digest: string;
}

/** The payload of a PUT_DONE. */
export function encodePutDone(done: PutDone): Buffer {
  return encode(done);
}

/** A PUT_DONE payload, checked (PROTOCOL_ERROR). */
export function decodePutDone(payload: Uint8Array): PutDone {
  const obj = parse(payload, 'PUT_DONE', badReply);
  return { name: text(obj, 'name', 'PUT_DONE', badReply), size: count(obj, 'size', 'PUT_DONE', badReply), digest: text(obj, 'digest', 'PUT_DONE', badReply) };
}
