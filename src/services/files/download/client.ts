/**
 * The download service, client side: STAT and LIST, and GET as a verified stream. Saving to a
 * path (atomic, resumable) is {@link download} in `save.ts`, built on the same verified GET.
 */
import { Readable } from 'node:stream';
import type { Client, RequestOptions } from '../../../client/client.js';
import { clientInternals } from '../../../client/internal.js';
import { ProtocolError, TcpkitError } from '../../../errors.js';
import type { Frame } from '../../../protocol/frame.js';
import { createDigest, DEFAULT_DIGEST, DIGEST_ALGORITHMS, isDigestAlgorithm, XXH3_CAPABILITY, type Digest, type DigestAlgorithm } from '../digest.js';
import {
  decodeFileEnd,
  decodeFileHead,
  decodeListing,
  decodeStatReply,
  encodeGet,
  encodeNameRequest,
  FileFrame,
  type EntryInfo,
  type FileHead,
  type GetRequest,
  type Listing,
} from '../wire.js';

/** Describes one entry on the server. */
export async function stat(client: Client, name: string, options?: RequestOptions): Promise<EntryInfo> {
  const frame = await client.request(FileFrame.STAT, encodeNameRequest(name), FileFrame.STAT_REPLY, options);
  return decodeStatReply(frame.payload);
}

/** Lists a directory on the server (`''` is the served root). */
export async function list(client: Client, dir = '', options?: RequestOptions): Promise<Listing> {
  const frame = await client.request(FileFrame.LIST, encodeNameRequest(dir), FileFrame.LIST_REPLY, options);
  return decodeListing(frame.payload);
}

/** What a GET is told as its bytes arrive (for {@link getBody}). */
export interface BodySink {
  /** FILE_HEAD arrived. May return a promise; DATA is held back until it settles. */
  head(head: FileHead): void;
  /**
   * The next piece of the content (a DATA frame or part of one), already counted and hashed.
   * It may be a view of memory the next socket read reuses: use it before returning, or hold it
   * (`ClientInternals.holdInput`).
   */
  data(chunk: Buffer): void;
}

/** Outcome of a verified GET ({@link getBody}). */
export interface BodyResult {
  head: FileHead;
  digest: string;
  /** Bytes received in this GET (from head.offset). */
  received: number;
}

/**
 * Runs one GET and checks everything a hostile or broken server could get wrong: the reply
 * order, the announced size (never more, never less), and the digest of the whole file
 * (`prefix` must already hold the digest of the bytes before `request.offset`). The GET asks
 * for XXH3 or XXH64 (§5.2), and for the prefix's algorithm alone when resuming: pick it with
 * {@link resumeDigest}.
 */
export async function getBody(
  client: Client,
  request: GetRequest,
  prefix: Digest | undefined,
  sink: BodySink,
  options: RequestOptions,
): Promise<BodyResult> {
  let head: FileHead | undefined;
  let digest: Digest | undefined;
  let received = 0;
  let expected = 0;
  let end: { digest: string; bytes: number } | undefined;
  await client.stream(
    FileFrame.GET,
    encodeGet({ ...request, digests: prefix === undefined ? [...DIGEST_ALGORITHMS] : [prefix.algorithm] }),
    {
      isFinal: (frame) => frame.type === FileFrame.FILE_END,
      frame: (frame: Frame) => {
        switch (frame.type) {
          case FileFrame.FILE_HEAD: {
            if (head) throw new ProtocolError('PROTOCOL_ERROR', 'FILE_HEAD sent twice');
            head = decodeFileHead(frame.payload);
            // The algorithm's name (§5.2); a value (`xxh64:<hex>`) was accepted before, and still is.
            const algorithm = head.digest.split(':', 1)[0];
            if (!isDigestAlgorithm(algorithm)) {
              throw new TcpkitError('UNSUPPORTED_REQUEST', `the server uses digest ${algorithm}, this client knows ${DIGEST_ALGORITHMS.join(' and ')}`);
            }
            if (head.offset !== 0 && head.offset !== request.offset) {
              throw new ProtocolError('PROTOCOL_ERROR', `the server resumed at ${head.offset}, not at ${request.offset} or 0`);
            }
            if (head.offset > 0 && prefix !== undefined && prefix.algorithm !== algorithm) {
              // Asked for the prefix's algorithm alone, and got another: the prefix cannot be
              // checked, so it counts as not matching (a download then starts over).
              throw new TcpkitError('DIGEST_MISMATCH', `${request.name}: the server resumed with digest ${algorithm}, the local prefix was hashed with ${prefix.algorithm}`);
            }
            expected = head.size - head.offset;
            // Resumed: continue the digest of the prefix we hold; refused: start a fresh one.
            digest = head.offset > 0 && prefix ? prefix : createDigest(algorithm);
            sink.head(head);
            return;
          }
          case FileFrame.DATA: {
            if (!head || !digest) throw new ProtocolError('PROTOCOL_ERROR', 'DATA before FILE_HEAD');
            received += frame.payload.length;
            if (received > expected) {
              throw new ProtocolError('PROTOCOL_ERROR', `the server sent more than the ${head.size} bytes it announced`);
            }
            digest.update(frame.payload);
            sink.data(frame.payload);
            return;
          }
          case FileFrame.FILE_END: {
            if (!head) throw new ProtocolError('PROTOCOL_ERROR', 'FILE_END before FILE_HEAD');
            end = decodeFileEnd(frame.payload);
            if (received !== expected || end.bytes !== expected) {
              throw new ProtocolError('PROTOCOL_ERROR', `the server announced ${head.size} bytes but sent ${head.offset + received}`);
            }
            return;
          }
          default:
            throw new ProtocolError('PROTOCOL_ERROR', `unexpected frame 0x${frame.type.toString(16)} in a file transfer`);
        }
      },
    },
    options,
  );
  const actual = digest!.value();
  if (actual !== end!.digest) {
    throw new TcpkitError('DIGEST_MISMATCH', `${request.name}: content does not match the server's digest (got ${actual}, expected ${end!.digest})`);
  }
  return { head: head!, digest: actual, received };
}

/**
 * The algorithm to hash a resumed local prefix with, before the GET: XXH3 when the server's
 * hello granted `digest:xxh3` (it then answers XXH3 to a GET that asks for it alone), else XXH64,
 * which every server computes.
 */
export function resumeDigest(client: Client): DigestAlgorithm {
  return client.server.capabilities.includes(XXH3_CAPABILITY) ? 'xxh3' : DEFAULT_DIGEST;
}

/** A file being received as a stream. */
export interface FileStream {
  /** Size, modification time and starting offset, as announced by the server. */
  head: FileHead;
  /** The bytes. It errors (never ends cleanly) if the content is short, long or corrupt. */
  body: Readable;
  /** Resolves with the digest once the whole body arrived and was verified. */
  verified: Promise<string>;
}

/**
 * Gets a file as a readable stream with backpressure: a slow reader pauses the connection.
 * @example const { head, body } = await getStream(client, 'big.iso'); body.pipe(process.stdout);
 */
export function getStream(client: Client, name: string, options: RequestOptions = {}): Promise<FileStream> {
  return new Promise((resolve, reject) => {
    let paused = false;
    const body = new Readable({
      highWaterMark: 4 * 1024 * 1024,
      read() {
        if (paused) {
          paused = false;
          clientInternals(client).resumeReading();
        }
      },
    });
    let started = false;
    const verified = getBody(
      client,
      { name, offset: 0 },
      undefined,
      {
        head(head) {
          started = true;
          resolve({ head, body, verified });
        },
        data(chunk) {
          // A piece may be a view of the socket's read memory: the stream's reader keeps a copy.
          if (!body.push(Buffer.from(chunk)) && !paused) {
            paused = true;
            clientInternals(client).pauseReading();
          }
        },
      },
      options,
    ).then(
      (result) => {
        body.push(null);
        return result.digest;
      },
      (error: unknown) => {
        if (paused) clientInternals(client).resumeReading();
        if (started) body.destroy(error as Error);
        else reject(error as Error);
        throw error;
      },
    );
    verified.catch(() => {});
  });
}

/** What {@link getFile} calls as a file arrives. */
export interface FileHandler {
  /** Size, modification time and digest algorithm, before any byte of content. */
  head?(head: FileHead): void;
  /**
   * The next piece of the content, in order. It is a view of the memory the socket reads into,
   * valid only during this call: consume it (hash it, write it synchronously) or copy it before
   * returning. Throwing abandons the download.
   */
  data(piece: Buffer): void;
}

/** What a verified {@link getFile} reports. */
export interface GetFileResult {
  head: FileHead;
  /** The digest the content was verified against, e.g. `xxh3:…`. */
  digest: string;
  /** Bytes of content received. */
  bytes: number;
}

/**
 * Receives a file piece by piece, with no copy of its bytes in user space: the fastest way to
 * consume a download, for handlers that use each piece at once (see {@link FileHandler.data}).
 * Resolves once the whole file arrived and matched the server's digest; rejects with
 * DIGEST_MISMATCH (or the error that cut it short) otherwise, so what `data` saw is to be
 * trusted only once this resolves. {@link getStream} is the same download as a `Readable`.
 * @example let n = 0; await getFile(client, 'big.iso', { data: (piece) => void (n += piece.length) });
 */
export async function getFile(client: Client, name: string, handler: FileHandler, options: RequestOptions = {}): Promise<GetFileResult> {
  const result = await getBody(client, { name, offset: 0 }, undefined, { head: (head) => handler.head?.(head), data: (piece) => handler.data(piece) }, options);
  return { head: result.head, digest: result.digest, bytes: result.received };
}
