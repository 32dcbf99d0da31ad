/**
 * Test roles and a scripted peer for the framed-session core, over an in-memory duplex pair.
 */
import type { Duplex } from 'node:stream';
import { FrameDecoder, encodeFrame, type Frame } from '../../src/protocol/frame.js';
import { CONNECTION_ID, FrameType } from '../../src/protocol/constants.js';
import { decodeServerHello, encodeServerHello, type ErrorBody } from '../../src/protocol/control.js';
import { RemoteError, type ProtocolError } from '../../src/errors.js';
import { FramedSession, type SessionOptions, type SessionRole } from '../../src/session/session.js';
import type { CloseReason } from '../../src/transport/peer.js';
import { within } from '../helpers/net.js';

/** A role that records what the core hands it; `busy` and `onHello` are set by the test. */
export class RecordingRole implements SessionRole {
  session!: FramedSession;
  readonly frames: Frame[] = [];
  readonly pongs: Frame[] = [];
  readonly goodbyes: ErrorBody[] = [];
  readonly remoteErrors: ErrorBody[] = [];
  readonly protocolErrors: ProtocolError[] = [];
  peerEnds = 0;
  working = 0;
  closedWith: { reason: CloseReason; error: Error | undefined } | undefined;
  /** What to do with the peer's HELLO. @default open (a server answers with a HELLO reply) */
  onHello: (frame: Frame) => void = () => this.session.open(this.session.side === 'server' ? serverReply() : undefined, 1 << 20);
  /** What to do with the peer's GOODBYE. @default close once idle, answering a client's goodbye */
  onGoodbye: (body: ErrorBody) => void = () =>
    this.session.closeWhenDone('peer-goodbye', this.session.side === 'server' ? { code: 'NORMAL', message: 'goodbye' } : undefined);
  readonly #closed: Promise<void>;
  #resolveClosed!: () => void;

  constructor() {
    this.#closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  hello(frame: Frame): void {
    this.onHello(frame);
  }
  frame(frame: Frame): void {
    this.frames.push(frame);
  }
  goodbye(body: ErrorBody): void {
    this.goodbyes.push(body);
    this.onGoodbye(body);
  }
  remoteError(body: ErrorBody): Error | undefined {
    this.remoteErrors.push(body);
    return new RemoteError(body.code, body.message);
  }
  protocolError(error: ProtocolError): Error | undefined {
    this.protocolErrors.push(error);
    return undefined;
  }
  peerEnded(): void {
    this.peerEnds++;
    this.session.workDone();
  }
  busy(): boolean {
    return this.working > 0;
  }
  pong(frame: Frame): void {
    this.pongs.push(frame);
  }
  closed(reason: CloseReason, error: Error | undefined): void {
    this.closedWith = { reason, error };
    this.#resolveClosed();
  }
  /** Resolves once the stream closed (bounded). */
  waitClosed(ms = 2000): Promise<void> {
    return within(this.#closed, ms, 'the session to close');
  }
}

/** Starts a core with a recording role over `stream`. */
export function startSession(stream: Duplex, options: SessionOptions): RecordingRole {
  const role = new RecordingRole();
  role.session = new FramedSession(stream, role, options);
  return role;
}

/** A server's preamble-less HELLO reply frame body, with the preamble: what `open()` sends. */
export function serverReply(): Buffer {
  const hello = encodeServerHello({
    version: 1,
    agent: 'test',
    services: ['message'],
    capabilities: [],
    limits: { maxFrameBytes: 1 << 20, maxInFlight: 4, idleTimeoutMs: 60_000 },
  });
  return Buffer.concat([Buffer.from([0x89, 0x54, 0x4b, 0x50, 0x0d, 0x0a, 0x1a, 0x0a]), encodeFrame(FrameType.HELLO, CONNECTION_ID, hello)]);
}

/** Decodes a server HELLO reply, to check it. */
export { decodeServerHello };

/** The scripted other end: exact bytes out, every frame in, EOF and close seen. */
export class ScriptedPeer {
  readonly frames: Frame[] = [];
  readonly #decoder = new FrameDecoder({ maxFrameBytes: 1 << 24 });
  bytes = 0;
  ended = false;
  closed = false;
  #waiters: Array<() => void> = [];

  constructor(readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => {
      this.bytes += chunk.length;
      this.frames.push(...this.#decoder.push(chunk));
      this.#wake();
    });
    stream.on('end', () => {
      this.ended = true;
      this.#wake();
    });
    stream.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Resolves once `predicate` holds, re-checked on every stream event (bounded). */
  until(predicate: () => boolean, what: string, ms = 2000): Promise<void> {
    return within(
      (async () => {
        while (!predicate()) await new Promise<void>((resolve) => this.#waiters.push(resolve));
      })(),
      ms,
      what,
    );
  }

  write(bytes: Uint8Array): void {
    this.stream.write(bytes);
  }

  send(type: number, id: number, payload: Uint8Array = Buffer.alloc(0)): void {
    this.stream.write(encodeFrame(type, id, payload));
  }
}

/** One turn of the event loop and the ticks before it: lets writes batched for the turn go out. */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
