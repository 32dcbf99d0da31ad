/**
 * A hand-made {@link Exchange}: a service's handler called with no server, no session and no
 * socket, as hono's `app.request()` calls an app. It records every frame the handler sends,
 * lets the test push the continuation frames a client would send (an upload's content), and
 * cancels like a client's CANCEL or a closed connection would.
 *
 * @example
 * const { frames, error } = await request(fileService(root), FileFrame.GET, encodeGet({ name: 'a.txt', offset: 0 }));
 */
import { TcpkitError } from '../../src/errors.js';
import type { Frame } from '../../src/protocol/frame.js';
import { ServerExchange, type ExchangeHost } from '../../src/server/exchange.js';
import type { ContinuationSink, Exchange, Service } from '../../src/server/service.js';
import type { PeerInfo } from '../../src/transport/peer.js';

/** A frame the handler sent: through `write()` (a reply that continues) or `reply()` (the final one). */
export interface SentFrame {
  type: number;
  /** A copy, taken when it was sent: the handler may reuse its buffer once told it was sent. */
  payload: Buffer;
  final: boolean;
}

const PEER: PeerInfo = { address: '192.0.2.1', port: 40000, label: '192.0.2.1:40000' };
const EMPTY = new Uint8Array(0);

/** Every frame type: a test exchange takes any continuation the test pushes. */
const ANY_TYPE: readonly number[] = Array.from({ length: 256 }, (_, type) => type);

/**
 * An {@link Exchange} for one request, driven by the test. It is the server's own
 * {@link ServerExchange} (queue, sink, flow control, abort: the code a real request runs) over a
 * hand-made session that records what is sent instead of writing to a socket.
 */
export class TestExchange implements Exchange {
  readonly id: number;
  readonly peer: PeerInfo;
  /** Every frame sent, in order. */
  readonly sent: SentFrame[] = [];
  /** Payloads the handler handed back with `recycle()`. */
  readonly recycled: Uint8Array[] = [];
  /** Times the sink stopped the input (the server would have stopped reading). */
  pauses = 0;
  #inputPaused = false;
  readonly #exchange: ServerExchange;
  /** While set, `write()` waits on it: the connection has no room (the client reads slowly). */
  #room: Promise<void> | undefined;
  #makeRoom: (() => void) | undefined;

  constructor(options: { id?: number; peer?: PeerInfo } = {}) {
    this.id = options.id ?? 1;
    this.peer = options.peer ?? PEER;
    const session: ExchangeHost = {
      peer: this.peer,
      state: 'open',
      send: (type, _id, payload) => {
        this.sent.push({ type, payload: Buffer.from(payload ?? EMPTY), final: true });
        return true;
      },
      sendStreamed: async (type, _id, payload, onSent) => {
        this.sent.push({ type, payload: Buffer.from(payload), final: false });
        // "Sent" at once: the copy above is all this side keeps.
        onSent?.();
        while (this.#room !== undefined) await this.#room;
      },
      hold: () => {},
      release: () => {},
      pauseInput: () => {
        this.pauses++;
        this.#inputPaused = true;
      },
      resumeInput: () => {
        this.#inputPaused = false;
      },
      recycle: (payload) => void this.recycled.push(payload),
      answered: () => {},
    };
    this.#exchange = new ServerExchange(session, this.id, ANY_TYPE);
  }

  get signal(): AbortSignal {
    return this.#exchange.signal;
  }

  /** The final reply, once sent. */
  get final(): SentFrame | undefined {
    return this.sent.find((frame) => frame.final);
  }

  reply(type: number, payload: Uint8Array = EMPTY): void {
    this.#exchange.reply(type, payload);
  }

  write(type: number, payload: Uint8Array, onSent?: () => void): Promise<void> {
    return this.#exchange.write(type, payload, onSent);
  }

  /** From now on `write()` waits until {@link unblock}: a client that stopped reading. */
  block(): void {
    this.#room ??= new Promise((resolve) => {
      this.#makeRoom = resolve;
    });
  }

  /** The client reads again: waiting writes resolve. */
  unblock(): void {
    const makeRoom = this.#makeRoom;
    this.#room = undefined;
    this.#makeRoom = undefined;
    makeRoom?.();
  }

  /** True while the handler's sink keeps the input stopped (a server would not read the client). */
  get inputPaused(): boolean {
    return this.#inputPaused;
  }

  /**
   * The client sends a continuation frame of this request (e.g. PUT_DATA): a copy of `payload`,
   * or `payload` itself with `asIs` (a piece the handler may keep). `last` makes it a piece.
   */
  push(type: number, payload: Uint8Array = EMPTY, options: { last?: boolean; asIs?: boolean } = {}): void {
    const bytes = options.asIs === true && Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    const frame: Frame = { type, flags: 0, id: this.id, payload: bytes, ...(options.last !== undefined && { last: options.last }) };
    if (!this.#exchange.push(frame)) throw new Error('the request is over: nothing more can be pushed');
  }

  receive(): Promise<Frame> {
    return this.#exchange.receive();
  }

  consume(sink: ContinuationSink): void {
    this.#exchange.consume(sink);
  }

  resumeInput(): void {
    this.#exchange.resumeInput();
  }

  recycle(payload: Uint8Array): void {
    this.#exchange.recycle(payload);
  }

  /** The client's CANCEL (or a closed connection): the signal aborts, a waiting `receive()` rejects. */
  cancel(reason: Error = new TcpkitError('ABORTED', 'the client cancelled the request')): void {
    this.#exchange.abort(reason);
  }

  /** The client closed its side: what was pushed can still be taken, nothing more will come. */
  endInput(): void {
    this.#exchange.peerEnded();
  }

  /** The request is over (as the session does after the handler): queued frames dropped, a pause ended. */
  discard(): void {
    this.#exchange.discard();
  }
}

/** What one request to a service came to, as a client would see it. */
export interface Served {
  exchange: TestExchange;
  /** Every frame sent, in order. */
  frames: SentFrame[];
  /** The error the handler threw (the client gets its wire code), if it threw. */
  error: TcpkitError | undefined;
}

/**
 * Serves one request with `service`, as the server would, and waits for the handler to finish.
 * `exchange` may be made and fed beforehand (its continuation frames pushed), or fed by
 * `during`, which runs once the handler has started.
 */
export async function request(
  service: Service,
  type: number,
  payload: Uint8Array,
  options: { exchange?: TestExchange; during?: (exchange: TestExchange) => void | Promise<void> } = {},
): Promise<Served> {
  const exchange = options.exchange ?? new TestExchange();
  if (!service.requestTypes.includes(type)) throw new Error(`${service.name} does not take request type 0x${type.toString(16)}`);
  const frame: Frame = { type, flags: 0, id: exchange.id, payload: Buffer.from(payload) };
  const handled = (async () => service.handle(frame, exchange))();
  await options.during?.(exchange);
  let error: TcpkitError | undefined;
  try {
    await handled;
  } catch (thrown) {
    if (!(thrown instanceof TcpkitError)) throw thrown;
    error = thrown;
  } finally {
    exchange.discard(); // as the server's session does once the handler settled
  }
  if (error === undefined && exchange.final === undefined) throw new Error(`${service.name} returned without a final reply`);
  return { exchange, frames: exchange.sent, error };
}
