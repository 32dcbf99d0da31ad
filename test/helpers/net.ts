/**
 * Test helpers: real sockets on 127.0.0.1 and port 0 only, every wait bounded.
 */
import { once } from 'node:events';
import { after } from 'node:test';
import * as net from 'node:net';
import { createServer, type CreateServerOptions as ServerOptions } from '../../src/create-server.js';
import type { Server } from '../../src/server/server.js';
import { encodeFrame, FrameDecoder, type Frame } from '../../src/protocol/frame.js';
import { FrameType, PREAMBLE } from '../../src/protocol/constants.js';
import { encodeClientHello, encodeServerHello } from '../../src/protocol/control.js';

export const LOOPBACK = '127.0.0.1';

/** Rejects if `promise` does not settle within `ms`: a bound on every wait in the tests. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/**
 * Resolves once `predicate` holds, checked every few milliseconds, within `ms`: for state that
 * no event announces (counters, handler progress). Bounded like every wait here.
 */
export function waitUntil(predicate: () => boolean, what: string, ms = 5000): Promise<void> {
  return within(
    (async () => {
      while (!predicate()) await new Promise((resolve) => setTimeout(resolve, 2));
    })(),
    ms,
    what,
  );
}

/** A tcpkit server on 127.0.0.1 and an ephemeral port. */
export async function startServer(options: ServerOptions = {}): Promise<{ server: Server; port: number; address: string }> {
  const server = createServer({ host: LOOPBACK, port: 0, ...options });
  const { port } = await server.listen();
  return { server, port, address: `${LOOPBACK}:${port}` };
}

/**
 * Servers for one test file, destroyed (with anything else pushed on `cleanups`) after it.
 * @example const { serve, cleanups } = testServers();
 */
export function testServers(): { cleanups: Array<() => Promise<unknown>>; serve: typeof startServer } {
  const cleanups: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });
  return {
    cleanups,
    serve: async (...args) => {
      const started = await startServer(...args);
      cleanups.push(() => started.server.destroy());
      return started;
    },
  };
}

/** A port on which nothing listens (bound, then released). */
export async function freePort(): Promise<number> {
  const probe = net.createServer();
  probe.listen(0, LOOPBACK);
  await once(probe, 'listening');
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** The bytes a well-behaved client sends first: preamble and a v1 HELLO. */
export function clientOpening(versions: number[] = [1]): Buffer {
  return Buffer.concat([Buffer.from(PREAMBLE), encodeFrame(FrameType.HELLO, 0, encodeClientHello({ versions, capabilities: [] }))]);
}

/**
 * A hand-driven framed client over a raw socket: lets a test send exact bytes (including bad
 * ones) and read the server's frames.
 */
export class RawPeer {
  readonly socket: net.Socket;
  readonly frames: Frame[] = [];
  readonly #decoder = new FrameDecoder({ maxFrameBytes: 16 * 1024 * 1024 });
  #waiters: Array<() => void> = [];
  bytes = 0;
  ended = false;
  closed = false;
  decodeError: Error | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.bytes += chunk.length;
      try {
        this.frames.push(...this.#decoder.push(chunk));
      } catch (error) {
        this.decodeError = error as Error;
      }
      this.#wake();
    });
    socket.on('end', () => {
      this.ended = true;
      // The server is done with us: finish our side too, as a well-behaved peer would.
      socket.end();
      this.#wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  static async connect(port: number, options: { allowHalfOpen?: boolean; localAddress?: string } = {}): Promise<RawPeer> {
    const socket = net.connect({ host: LOOPBACK, port, allowHalfOpen: options.allowHalfOpen ?? true, ...(options.localAddress && { localAddress: options.localAddress }) });
    await within(once(socket, 'connect'), 5000, 'connect');
    return new RawPeer(socket);
  }

  /** Connects and completes the hello exchange. */
  static async open(port: number): Promise<RawPeer> {
    const peer = await RawPeer.connect(port);
    peer.socket.write(clientOpening());
    await peer.waitFrames(1);
    if (peer.frames[0]!.type !== FrameType.HELLO) throw new Error('server did not answer HELLO');
    peer.frames.shift();
    return peer;
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Resolves when `predicate` holds, re-checked on every socket event; bounded. */
  async until(predicate: () => boolean, what: string, ms = 5000): Promise<void> {
    await within(
      (async () => {
        while (!predicate()) await new Promise<void>((resolve) => this.#waiters.push(resolve));
      })(),
      ms,
      what,
    );
  }

  waitFrames(n: number, ms = 5000): Promise<void> {
    return this.until(() => this.frames.length >= n || this.closed, `${n} frames`, ms);
  }

  waitClosed(ms = 5000): Promise<void> {
    return this.until(() => this.closed, 'close', ms);
  }

  send(type: number, id: number, payload: Uint8Array = Buffer.alloc(0)): void {
    this.socket.write(encodeFrame(type, id, payload));
  }
}

/**
 * A scripted faulty server on port 0: `script` gets each accepted socket and misbehaves with it.
 */
export async function faultyServer(script: (socket: net.Socket) => void): Promise<{ port: number; close(): Promise<void>; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    script(socket);
  });
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A scripted tcpkit server on port 0: it completes the hello (announcing `services`), then
 * hands every other frame to `onFrame` with the socket to answer on, however it likes.
 */
export async function scriptedServer(
  services: string[],
  onFrame: (frame: Frame, socket: net.Socket) => void,
): Promise<{ address: string; close(): Promise<void> }> {
  const server = await faultyServer((socket) => {
    const decoder = new FrameDecoder({ maxFrameBytes: 1 << 20 });
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.type !== FrameType.HELLO) {
          onFrame(frame, socket);
          continue;
        }
        const limits = { maxFrameBytes: 1 << 20, maxInFlight: 16, idleTimeoutMs: 0 };
        const hello = encodeServerHello({ version: 1, services, capabilities: [], limits });
        socket.write(Buffer.concat([Buffer.from(PREAMBLE), encodeFrame(FrameType.HELLO, 0, hello)]));
      }
    });
  });
  return { address: `${LOOPBACK}:${server.port}`, close: () => server.close() };
}

/** Writes `data` one byte per timer tick: a trickling peer. */
export async function trickle(socket: net.Socket, data: Uint8Array, gapMs = 1): Promise<void> {
  for (const byte of data) {
    if (socket.destroyed) return;
    socket.write(Buffer.of(byte));
    await new Promise((resolve) => setTimeout(resolve, gapMs));
  }
}

/** A promise with its resolve exposed: lets a handler wait until the test releases it. */
export function gate<T = void>(): { promise: Promise<T>; open(value: T): void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}
