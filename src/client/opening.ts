/**
 * Opening a client connection: the socket, the first bytes a client sends (the preamble and its
 * HELLO), and the wait for the server's hello.
 */
import { TimeoutError } from '../errors.js';
import { CONNECTION_ID, FrameType, SUPPORTED_VERSIONS, preambleBytes } from '../protocol/constants.js';
import { encodeClientHello } from '../protocol/control.js';
import { encodeFrame } from '../protocol/frame.js';
import type { Duplex } from 'node:stream';
import { largeReads, openSocket, type LargeReads } from '../transport/dial.js';
import type { Clock } from '../util/clock.js';
import { VERSION } from '../version.js';
import type { ResolvedClientOptions } from './options.js';

/** What a client says first: preamble and HELLO, in one buffer. */
export function clientOpening(token: string | undefined): Buffer {
  return Buffer.concat([
    preambleBytes(),
    encodeFrame(
      FrameType.HELLO,
      CONNECTION_ID,
      encodeClientHello({
        versions: [...SUPPORTED_VERSIONS],
        agent: `tcpkit/${VERSION}`,
        // The file services' XXH3 (services/files/digest.ts XXH3_CAPABILITY): granted only by a server that has it.
        capabilities: ['digest:xxh3'],
        ...(token !== undefined && { auth: { token } }),
      }),
    ),
  ]);
}

/** The opening of every client without a token: built once. */
export const CLIENT_OPENING = clientOpening(undefined);

/** A stream just opened (a socket, or an in-memory pair in tests), and where its large reads go. */
export interface Opened {
  socket: Duplex;
  reads: LargeReads | undefined;
}

/** Opens a socket to the server within the connect timeout; large reads on plain sockets. */
export async function openConnection(options: ResolvedClientOptions): Promise<Opened> {
  // Large reads into a reused buffer need a plain socket (TLS sockets read through OpenSSL).
  const reads: LargeReads | undefined = options.tls ? undefined : largeReads();
  // The dial keeps its own timer, on the system's time (transport/dial.ts).
  const socket = await openSocket(options, options.clock.now() + options.connectTimeoutMs, reads);
  return { socket, reads };
}

/** Waits for the server's hello until `deadline` (on `clock`); then CONNECT_TIMEOUT with `message`. */
export async function helloBy(clock: Clock, ready: Promise<void>, deadline: number, message: string): Promise<void> {
  let timer: unknown;
  const timedOut = new Promise<never>((_, reject) => {
    timer = clock.setTimeout(reject, Math.max(0, deadline - clock.now()), new TimeoutError('CONNECT_TIMEOUT', message));
  });
  try {
    await Promise.race([ready, timedOut]);
  } finally {
    clock.clearTimeout(timer);
  }
}
