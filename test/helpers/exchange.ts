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

/** An {@link Exchange} for one request, driven by the test. */
export class TestExchange implements Exchange {
  readonly id: number;
  readonly peer: PeerInfo;
  /** Every frame sent, in order. */
  readonly sent: SentFrame[] = [];
  /** Payloads the handler handed back with `recycle()`. */
  readonly recycled: Uint8Array[] = [];
  readonly #controller = new AbortController();
  readonly #queue: Frame[] = [];
  #waiter: { resolve(frame: Frame): void; reject(error: unknown): void } | undefined;
  #ended: Error | undefined;
  #sink: ContinuationSink | undefined;
  #sinkEnded = false;
  /** The sink said false and has not called resumeInput() since. */
  #inputPaused = false;
  /** Times the sink said false (the server would have stopped reading). */
  pauses = 0;
  /** While set, `write()` waits on it: the connection has no room (the client reads slowly). */
  #room: Promise<void> | undefined;
  #makeRoom: (() => void) | undefined;

  constructor(options: { id?: number; peer?: PeerInfo } = {}) {
    this.id = options.id ?? 1;
    this.peer = options.peer ?? PEER;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The final reply, once sent. */
  get final(): SentFrame | undefined {
    return this.sent.find((frame) => frame.final);
  }

  reply(type: number, payload: Uint8Array = new Uint8Array(0)): void {
    if (this.final !== undefined) throw new Error(`request ${this.id} was already answered`);
    this.sent.push({ type, payload: Buffer.from(payload), final: true });
  }

  async write(type: number, payload: Uint8Array, onSent?: () => void): Promise<void> {
    if (this.final !== undefined) throw new Error(`request ${this.id} was already answered`);
    this.sent.push({ type, payload: Buffer.from(payload), final: false });
    // "Sent" at once: the copy above is all this side keeps.
    onSent?.();
    while (this.#room !== undefined) await this.#room;
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

  /** True while the handler's sink said it can take no more (a server would not read the client). */
  get inputPaused(): boolean {
    return this.#inputPaused;
  }

  /**
   * The client sends a continuation frame of this request (e.g. PUT_DATA): a copy of `payload`,
   * or `payload` itself with `asIs` (a piece the handler may keep). `last` makes it a piece.
   */
  push(type: number, payload: Uint8Array = new Uint8Array(0), options: { last?: boolean; asIs?: boolean } = {}): void {
    if (this.#ended !== undefined) throw new Error('the request is over: nothing more can be pushed');
    const bytes = options.asIs === true && Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    const frame: Frame = { type, flags: 0, id: this.id, payload: bytes, ...(options.last !== undefined && { last: options.last }) };
    if (this.#sink !== undefined) {
      this.#queue.push(frame);
      this.#deliver();
      return;
    }
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter !== undefined) waiter.resolve(frame);
    else this.#queue.push(frame);
  }

  receive(): Promise<Frame> {
    const frame = this.#queue.shift();
    if (frame !== undefined) return Promise.resolve(frame);
    if (this.#ended !== undefined) return Promise.reject(this.#ended);
    if (this.#waiter !== undefined) return Promise.reject(new Error('receive() called again before the last one settled'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  consume(sink: ContinuationSink): void {
    if (this.#sink !== undefined || this.#waiter !== undefined) throw new TcpkitError('INVALID_STATE', 'consume() called twice, or while a receive() waits');
    this.#sink = sink;
    this.#deliver();
  }

  resumeInput(): void {
    if (!this.#inputPaused) return;
    this.#inputPaused = false;
    this.#deliver();
  }

  /** Frames to the sink while it takes them; then, with none left and none to come, the end. */
  #deliver(): void {
    const sink = this.#sink!;
    if (this.#controller.signal.aborted) this.#queue.length = 0;
    while (!this.#inputPaused && this.#queue.length > 0) {
      if (sink.frame(this.#queue.shift()!) === false) {
        this.#inputPaused = true;
        this.pauses++;
      }
    }
    if (this.#ended !== undefined && this.#queue.length === 0 && !this.#sinkEnded) {
      this.#sinkEnded = true;
      sink.end(this.#ended);
    }
  }

  recycle(payload: Uint8Array): void {
    this.recycled.push(payload);
  }

  /** The client's CANCEL (or a closed connection): the signal aborts, a waiting `receive()` rejects. */
  cancel(reason: Error = new TcpkitError('ABORTED', 'the client cancelled the request')): void {
    this.#controller.abort(reason);
    this.#end(reason);
  }

  /** The client closed its side: what was pushed can still be taken, nothing more will come. */
  endInput(): void {
    this.#end(new TcpkitError('BAD_REQUEST', 'the client closed its side before finishing the request'));
  }

  #end(reason: Error): void {
    this.#ended ??= reason;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(reason);
    if (this.#sink !== undefined) this.#deliver();
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
  }
  if (error === undefined && exchange.final === undefined) throw new Error(`${service.name} returned without a final reply`);
  return { exchange, frames: exchange.sent, error };
}
