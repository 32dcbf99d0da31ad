/**
 * The one load driver used against both servers: a raw `node:net` client that speaks tcpkit
 * framing through the public codec. It sends the preamble and a HELLO, waits for a preamble and
 * a HELLO back (the bare echo server returns the client's own, which is just as good here), then
 * sends MESSAGE frames and accepts MESSAGE_REPLY (tcpkit) or MESSAGE (the echo) with the same id.
 * All frames due in one 'data' event leave in one write, for both servers alike.
 */
import * as net from 'node:net';
import { protocol } from '../src/index.js';
import { LoadState, repeatLoad, type Load } from './measure.js';

const { FrameType, FrameDecoder, encodeFrame, encodeClientHello, frameTypeName, preambleBytes, MAX_REQUEST_ID } = protocol;

const HOST = '127.0.0.1';
/** Replies are echoes of our small messages; anything larger is a bug worth failing on. */
const REPLY_LIMIT_BYTES = 64 * 1024;
/** Bound on one short connection, from connect to close. */
const SHORT_LIMIT_MS = 10_000;
/** Where the request id sits in a frame header: after u32 length, u8 type, u8 flags. */
const ID_OFFSET = 6;

/** Preamble and HELLO, as every framed client opens. */
function opening(): Buffer {
  return Buffer.concat([
    preambleBytes(),
    encodeFrame(FrameType.HELLO, protocol.CONNECTION_ID, encodeClientHello({ versions: [1], capabilities: [] })),
  ]);
}

function isReply(frame: protocol.Frame): boolean {
  return frame.type === FrameType.MESSAGE_REPLY || frame.type === FrameType.MESSAGE;
}

function unexpected(frame: protocol.Frame, expected: string): Error {
  return new Error(`expected ${expected}, got ${frameTypeName(frame.type)} with id ${frame.id}`);
}

/**
 * Request frames for one connection, written in batches: one buffer per 'data' event, made from
 * a template frame encoded once (the codec's `encodeFrame`) with each request id patched in, so
 * the driver spends as little as it can per message and stays off the critical path.
 */
class MessageBatcher {
  readonly #template: Buffer;
  readonly #outstanding = new Set<number>();
  #lastId = 0;

  constructor(payload: Buffer) {
    this.#template = encodeFrame(FrameType.MESSAGE, 1, payload);
  }

  /** Marks a reply's id as answered; false when it was not outstanding. */
  answer(id: number): boolean {
    return this.#outstanding.delete(id);
  }

  /** `count` new request frames, in one buffer. */
  next(count: number): Buffer {
    const size = this.#template.length;
    const out = Buffer.allocUnsafe(count * size);
    for (let i = 0, offset = 0; i < count; i++, offset += size) {
      this.#lastId = this.#lastId >= MAX_REQUEST_ID ? 1 : this.#lastId + 1;
      this.#outstanding.add(this.#lastId);
      this.#template.copy(out, offset);
      out.writeUInt32BE(this.#lastId, offset + ID_OFFSET);
    }
    return out;
  }
}

/** Options of the kept-connection load. */
export interface KeptLoadOptions {
  port: number;
  connections: number;
  /** Requests kept in flight on each connection. */
  inFlight: number;
  payload: Buffer;
}

/**
 * Opens one kept connection and, once the hello is back, keeps `inFlight` messages in flight on
 * it until the load stops. Resolves when the hello exchange is done.
 */
function openKept(options: KeptLoadOptions, state: LoadState, sockets: Set<net.Socket>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const socket = net.connect({ host: HOST, port: options.port });
    sockets.add(socket);
    socket.setNoDelay(true);
    const decoder = new FrameDecoder({ maxFrameBytes: REPLY_LIMIT_BYTES });
    const batcher = new MessageBatcher(options.payload);
    let ready = false;
    const fail = (error: Error): void => {
      reject(error);
      state.fail(error);
      socket.destroy();
    };
    socket.on('data', (chunk: Buffer) => {
      let frames: protocol.Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        fail(error as Error);
        return;
      }
      let due = 0;
      for (const frame of frames) {
        if (!ready) {
          if (frame.type !== FrameType.HELLO || frame.id !== protocol.CONNECTION_ID) return fail(unexpected(frame, 'HELLO'));
          ready = true;
          resolve();
          due += options.inFlight;
        } else if (isReply(frame) && frame.payload.length === options.payload.length && batcher.answer(frame.id)) {
          state.completed++;
          if (!state.stopped) due++;
        } else {
          return fail(unexpected(frame, 'the echo of an outstanding MESSAGE'));
        }
      }
      if (due > 0) socket.write(batcher.next(due));
    });
    socket.on('error', fail);
    socket.on('close', () => {
      sockets.delete(socket);
      fail(new Error('the server closed a kept connection'));
    });
    socket.write(opening());
  });
}

/**
 * `connections` kept connections, each with `inFlight` messages always in flight (a reply
 * releases the next message). Resolves once every connection finished its hello.
 */
export async function startKeptLoad(options: KeptLoadOptions): Promise<Load> {
  const state = new LoadState();
  const sockets = new Set<net.Socket>();
  const stop = async (): Promise<void> => {
    state.stopped = true;
    for (const socket of sockets) socket.destroy();
  };
  try {
    await Promise.all(Array.from({ length: options.connections }, () => openKept(options, state, sockets)));
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    get completed() {
      return state.completed;
    },
    failed: state.failed,
    stop,
  };
}

/** Options of the short-connection load. */
export interface ShortLoadOptions {
  port: number;
  /** Connections open at once: each loop opens the next when the previous one closed. */
  concurrency: number;
  payload: Buffer;
}

/**
 * One short connection: connect, hello, one message, its reply, then a clean close (we end, the
 * server ends, the socket closes). Resolves at 'close' after the reply.
 */
function shortConnection(options: ShortLoadOptions, sockets: Set<net.Socket>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const socket = net.connect({ host: HOST, port: options.port });
    sockets.add(socket);
    socket.setNoDelay(true);
    const decoder = new FrameDecoder({ maxFrameBytes: REPLY_LIMIT_BYTES });
    let phase: 'hello' | 'reply' | 'done' = 'hello';
    let failure: Error | undefined;
    const timer = setTimeout(() => {
      failure ??= new Error(`a short connection took over ${SHORT_LIMIT_MS} ms`);
      socket.destroy();
    }, SHORT_LIMIT_MS);
    const fail = (error: Error): void => {
      failure ??= error;
      socket.destroy();
    };
    socket.on('data', (chunk: Buffer) => {
      let frames: protocol.Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        fail(error as Error);
        return;
      }
      for (const frame of frames) {
        if (phase === 'hello' && frame.type === FrameType.HELLO && frame.id === protocol.CONNECTION_ID) {
          phase = 'reply';
          socket.write(encodeFrame(FrameType.MESSAGE, 1, options.payload));
        } else if (phase === 'reply' && isReply(frame) && frame.id === 1) {
          phase = 'done';
          socket.end();
        } else {
          return fail(unexpected(frame, phase === 'hello' ? 'HELLO' : 'the echo of MESSAGE 1'));
        }
      }
    });
    socket.on('error', (error) => {
      failure ??= error;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      sockets.delete(socket);
      if (phase === 'done' && failure === undefined) resolve();
      else reject(failure ?? new Error('the server closed a short connection before replying'));
    });
    socket.write(opening());
  });
}

/** `concurrency` loops of short connections, one after another in each loop. */
export async function startShortLoad(options: ShortLoadOptions): Promise<Load> {
  const sockets = new Set<net.Socket>();
  return repeatLoad(
    options.concurrency,
    () => shortConnection(options, sockets),
    () => {
      for (const socket of sockets) socket.destroy();
    },
  );
}
