/**
 * Dialing: opening a TCP or TLS connection to a server, within a deadline and an abort signal,
 * with errors a person understands. The one place a client socket is made (plain, TLS, raw).
 */
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { abortError, ConnectionError, TcpkitError, TimeoutError } from '../errors.js';
import { systemClock, type Clock } from '../util/clock.js';
import { ReadSlabs } from './read-slabs.js';

/** TLS settings of a client: a CA to trust, or a certificate pin, or no check at all. */
export interface DialTls {
  ca?: string | Buffer;
  pin?: string;
  insecure?: boolean;
}

/** Where and how to dial (a client's resolved options have this shape). */
export interface DialOptions {
  readonly host: string;
  readonly port: number;
  /** `host:port` for messages. */
  readonly label: string;
  readonly connectTimeoutMs: number;
  readonly tls: DialTls | undefined;
  readonly signal: AbortSignal | undefined;
  /** The clock of the connect deadline (`deadline` is on it). @default systemClock */
  readonly clock?: Clock;
}

/** A connected socket, as the rest of tcpkit sees it (no file outside transport/ imports node:net). */
export type Socket = net.Socket;

/** Maps a failed TCP connect to an error a person understands. */
function connectError(error: NodeJS.ErrnoException, options: DialOptions): TcpkitError {
  switch (error.code) {
    case 'ECONNREFUSED':
      return new ConnectionError('CONNECTION_REFUSED', `no server listening at ${options.label}`, { cause: error });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return new ConnectionError('HOST_NOT_FOUND', `cannot resolve host "${options.host}"`, { cause: error });
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new ConnectionError('CONNECTION_FAILED', `cannot reach ${options.label}: no route to host`, { cause: error });
    default:
      return new ConnectionError('CONNECTION_FAILED', `cannot connect to ${options.label}: ${error.message}`, { cause: error });
  }
}

/** `AB:CD:...` or `abcd...` → `abcd...`. */
function normalizeFingerprint(text: string): string {
  return text.replace(/:/g, '').toLowerCase();
}

/**
 * Waits for `socket` to reach `ready` ('connect' or 'secureConnect'), within the deadline and
 * the abort signal; on any failure the socket is destroyed. `check` may refuse a socket that got
 * there (a TLS pin). The one wait both plain and TLS connects share.
 */
function whenReady(
  socket: net.Socket,
  ready: 'connect' | 'secureConnect',
  options: DialOptions,
  deadline: number,
  how: { mapError(error: NodeJS.ErrnoException): TcpkitError; timeout: string; check?: () => TcpkitError | undefined },
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const clock = options.clock ?? systemClock;
    const finish = (error: Error | undefined): void => {
      clock.clearTimeout(timer);
      socket.off('error', onError);
      socket.off(ready, onReady);
      options.signal?.removeEventListener('abort', onAbort);
      if (error) {
        socket.destroy();
        reject(error);
      } else {
        resolve(socket);
      }
    };
    const onReady = (): void => finish(how.check?.());
    const onError = (error: NodeJS.ErrnoException): void => finish(how.mapError(error));
    const onAbort = (): void => finish(abortError(options.signal!));
    const timer = clock.setTimeout(() => finish(new TimeoutError('CONNECT_TIMEOUT', how.timeout)), Math.max(0, deadline - clock.now()), undefined);
    socket.once(ready, onReady);
    socket.on('error', onError);
    options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Opens a TLS connection: handshake, certificate check (CA, or pin), within the deadline.
 * node:tls is imported here, on the first TLS dial: a plain-TCP client never loads it.
 */
async function openTlsSocket(options: DialOptions, deadline: number): Promise<net.Socket> {
  const { connect: tlsConnect } = await import('node:tls');
  // The import let the event loop run: an abort in that time has no listener yet.
  if (options.signal?.aborted) throw abortError(options.signal);
  const settings = options.tls!;
  // allowHalfOpen is honoured by tls.connect though its type omits it: a goodbye, then our FIN,
  // must not end the server's side before its last replies.
  const connectOptions: tls.ConnectionOptions & { allowHalfOpen: boolean } = {
    host: options.host,
    port: options.port,
    allowHalfOpen: true,
    minVersion: 'TLSv1.2',
    ...(settings.ca !== undefined && { ca: settings.ca }),
    // A pin replaces the CA check: only that exact certificate is accepted (checked below).
    rejectUnauthorized: settings.insecure !== true && settings.pin === undefined,
    ...(net.isIP(options.host) === 0 && { servername: options.host }),
  };
  const socket = tlsConnect(connectOptions);
  return whenReady(socket, 'secureConnect', options, deadline, {
    timeout: `no TLS handshake with ${options.label} within ${options.connectTimeoutMs} ms`,
    mapError: (error) =>
      error.code === 'ECONNREFUSED' || error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN'
        ? connectError(error, options)
        : new ConnectionError('TLS_FAILED', `TLS with ${options.label} failed: ${error.message}`, { cause: error }),
    check: () => {
      if (settings.pin === undefined) return undefined;
      const actual = normalizeFingerprint(socket.getPeerCertificate().fingerprint256 ?? '');
      return actual === normalizeFingerprint(settings.pin)
        ? undefined
        : new ConnectionError('TLS_FAILED', `the certificate of ${options.label} does not match the pin (it is ${actual})`);
    },
  });
}

/**
 * Where the bytes of a socket opened with large reads go (set once its Connection exists), and
 * the slabs they are read into.
 */
export interface LargeReads {
  target: { receive(chunk: Buffer): void } | undefined;
  readonly slabs: ReadSlabs;
}

/** Large reads for one socket: see {@link openSocket}. */
export function largeReads(): LargeReads {
  return { target: undefined, slabs: new ReadSlabs() };
}

/** Opens the TCP (or TLS) connection, within the connect timeout and the abort signal (also used by raw mode). */
export function openSocket(options: DialOptions, deadline: number, reads?: LargeReads): Promise<net.Socket> {
  if (options.tls) return openTlsSocket(options, deadline);
  const socket = net.connect({
    host: options.host,
    port: options.port,
    allowHalfOpen: true,
    // Large reads into slabs (up to 1 MiB each): a bulk download needs ~16× fewer read() calls
    // than with Node's 64 KiB default, and its DATA is never copied (transport/read-slabs.ts).
    ...(reads && {
      onread: {
        buffer: reads.slabs.next,
        callback: (bytes: number, memory: Uint8Array): boolean => {
          reads.target?.receive(reads.slabs.filled(bytes, memory));
          return true;
        },
      },
    }),
  });
  return whenReady(socket, 'connect', options, deadline, {
    timeout: `could not connect to ${options.label} within ${options.connectTimeoutMs} ms`,
    mapError: (error) => connectError(error, options),
  });
}

