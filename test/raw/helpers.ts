/**
 * Test bench for the server side of raw mode: a hand-made host (what a server gives a raw
 * session or a sniffer) that records what it is told, over real loopback sockets and a fake
 * clock, so deadlines are driven by the test and never slept for.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { after } from 'node:test';
import type { Accepted } from '../../src/server/accepted.js';
import type { RawHandler } from '../../src/raw/handler.js';
import type { SnifferHost } from '../../src/raw/sniffer.js';
import type { CloseReason, PeerInfo } from '../../src/transport/peer.js';
import type { Expiry, WatchdogTimeouts } from '../../src/transport/watchdog.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { LOOPBACK, waitUntil, within } from '../helpers/net.js';

/** The deadlines of the bench: long enough that only the fake clock ends them. */
export const TIMEOUTS: WatchdogTimeouts = Object.freeze({ handshakeMs: 10_000, requestMs: 30_000, idleMs: 60_000, sendStallMs: 20_000 });
export const LINGER_MS = 5_000;

/** A framed session, as far as the sniffer can tell: it reads the stream and keeps the bytes. */
export class FramedStandIn implements Accepted {
  readonly admittedIp: string;
  readonly startedAt: number;
  readonly peer: PeerInfo = { address: 'framed', port: 0, label: 'framed' };
  readonly requests = 0;
  readonly bytesOut = 0;
  readonly received: Buffer[] = [];
  readonly #stream: Duplex;

  constructor(stream: Duplex, admittedIp: string, startedAt: number) {
    this.#stream = stream;
    this.admittedIp = admittedIp;
    this.startedAt = startedAt;
    stream.on('data', (chunk: Buffer) => this.received.push(chunk));
    stream.on('error', () => {});
  }
  get bytesIn(): number {
    return this.received.reduce((sum, chunk) => sum + chunk.length, 0);
  }
  drain(): void {
    this.#stream.destroy();
  }
  destroy(): void {
    this.#stream.destroy();
  }
}

/** What a server would be: it records every report, in order. */
export class TestHost implements SnifferHost {
  readonly clock = new FakeClock();
  readonly options = { lingerTimeoutMs: LINGER_MS, clock: this.clock };
  readonly timeouts: WatchdogTimeouts;
  raw: RawHandler | undefined;
  /** Every report, as text: `timeout:handshake`, `closed:local`, `raw-error:cut`... */
  readonly events: string[] = [];
  readonly rawErrors: unknown[] = [];
  /** The requests the handler got. */
  readonly requests: string[] = [];
  framedSession: FramedStandIn | undefined;
  chosenSession: Accepted | undefined;
  closedSession: Accepted | undefined;

  constructor(raw?: RawHandler, timeouts: WatchdogTimeouts = TIMEOUTS) {
    this.timeouts = timeouts;
    this.raw =
      raw &&
      ((request, exchange) => {
        this.requests.push(request.toString('utf8'));
        return raw(request, exchange);
      });
  }

  rawError(_peer: PeerInfo, error: unknown, cut: boolean): void {
    this.rawErrors.push(error);
    this.events.push(cut ? 'raw-error:cut' : 'raw-error');
  }
  timedOut(_peer: PeerInfo, why: Expiry): void {
    this.events.push(`timeout:${why}`);
  }
  peerEnded(): void {
    this.events.push('peer-end');
  }
  preAuthEnded(): void {
    this.events.push('pre-auth-ended');
  }
  closed(session: Accepted, reason: CloseReason): void {
    this.closedSession = session;
    this.events.push(`closed:${reason}`);
  }
  framed(stream: Duplex, admittedIp: string, startedAt: number): Accepted {
    this.framedSession = new FramedStandIn(stream, admittedIp, startedAt);
    return this.framedSession;
  }
  chosen(_waiting: Accepted, session: Accepted): void {
    this.chosenSession = session;
    this.events.push('chosen');
  }

  /** Resolves once the connection has closed (bounded, in real time). */
  waitClosed(): Promise<void> {
    return waitUntil(() => this.events.some((event) => event.startsWith('closed:')), 'the server side to close');
  }
}

/** A plain client of the bench: what it received and how the server ended it. */
export class TestClient {
  readonly socket: net.Socket;
  readonly parts: Buffer[] = [];
  /** 'end' (FIN) or the socket error code (ECONNRESET); undefined while open. */
  ending: string | undefined;
  closed = false;

  /** `autoEnd`: on the server's end, end our side too, as the tutorial's clients do. */
  constructor(socket: net.Socket, autoEnd = true) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.parts.push(chunk));
    socket.on('end', () => {
      this.ending ??= 'end';
      if (autoEnd) socket.end();
    });
    socket.on('error', (error: NodeJS.ErrnoException) => (this.ending ??= error.code ?? error.message));
    socket.on('close', () => (this.closed = true));
  }
  get data(): string {
    return Buffer.concat(this.parts).toString('utf8');
  }
  waitEnding(): Promise<void> {
    return waitUntil(() => this.ending !== undefined, 'the server to end the connection');
  }
  waitClosed(): Promise<void> {
    return waitUntil(() => this.closed, 'the connection to close');
  }
}

/**
 * A listener for one test file: each connection is handed to `serve`, which builds what is
 * under test (a RawSession, a Sniffer) over the accepted socket.
 */
export async function bench(): Promise<(serve: (socket: net.Socket) => Accepted, autoEnd?: boolean) => Promise<{ client: TestClient; accepted: Accepted }>> {
  let next: ((socket: net.Socket) => void) | undefined;
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    next?.(socket);
  });
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return async (serve, autoEnd = true) => {
    const accepted = new Promise<Accepted>((resolve) => {
      next = (socket) => resolve(serve(socket));
    });
    const socket = net.connect({ host: LOOPBACK, port, allowHalfOpen: true });
    const client = new TestClient(socket, autoEnd);
    await within(once(socket, 'connect'), 5000, 'connect');
    return { client, accepted: await within(accepted, 5000, 'accept') };
  };
}
