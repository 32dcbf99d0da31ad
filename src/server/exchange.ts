/**
 * One request being served, as its handler sees it ({@link Exchange}): replies go out through
 * the session, continuation frames (an upload's content) come in through a bounded queue, or
 * straight into the handler's sink ({@link Exchange.consume}) with the sink's own flow control.
 */
import { TcpkitError } from '../errors.js';
import type { Frame } from '../protocol/frame.js';
import type { ContinuationSink, Exchange } from './service.js';
import type { PeerInfo } from '../transport/peer.js';
import type { SessionStateName } from '../session/session.js';

/** What an exchange needs of its session. */
export interface ExchangeHost {
  readonly peer: PeerInfo;
  readonly state: SessionStateName;
  send(type: number, id: number, payload?: Uint8Array): boolean;
  sendStreamed(type: number, id: number, payload: Uint8Array, onSent?: () => void): Promise<void>;
  /** A continuation frame of `bytes` waits in a queue for its handler. */
  hold(bytes: number): void;
  /** A queued continuation frame of `bytes` was taken or dropped. */
  release(bytes: number): void;
  /** A sink can take no more: stop reading the connection (counted: one call per pausing exchange). */
  pauseInput(): void;
  /** A sink that paused takes frames again (one call per {@link pauseInput}). */
  resumeInput(): void;
  /** Takes back a payload buffer nothing references any more. */
  recycle(payload: Uint8Array): void;
  /** The final reply went out: the request's id is free again, even while its handler still runs. */
  answered(exchange: ServerExchange): void;
}

/** What a sink becomes once told the end: takes nothing, ends nothing again. */
const ENDED: ContinuationSink = Object.freeze({ frame: () => true, end: () => {} });

/** The per-request object handed to a service; also the handler's context. */
export class ServerExchange implements Exchange {
  /** The request id the client chose: every reply to this request carries it. */
  readonly id: number;
  readonly #session: ExchangeHost;
  /** Continuation frame types this request takes (its service's); undefined: none. */
  readonly #continuations: readonly number[] | undefined;
  #controller: AbortController | undefined;
  #done = false;
  /** Continuation frames received and not yet taken by the handler. */
  #queue: Frame[] | undefined;
  #waiter: { resolve(frame: Frame): void; reject(error: unknown): void } | undefined;
  /** Why no continuation frame can come any more (aborted, or the client ended its side). */
  #ended: Error | undefined;
  /** Where continuation frames go as they arrive, once the handler called {@link consume}. */
  #sink: ContinuationSink | undefined;
  /** The sink said it can take no more, and has not resumed. */
  #inputPaused = false;
  /** The session is paused on our account (told once, however often the sink says false). */
  #holdsSession = false;
  /** Inside {@link #deliver}: a frame pushed meanwhile queues behind the ones being delivered. */
  #delivering = false;

  /** Built by the server session for request `id`; `continuations` are the frame types it may receive. */
  constructor(session: ExchangeHost, id: number, continuations: readonly number[] | undefined) {
    this.#session = session;
    this.id = id;
    this.#continuations = continuations;
  }

  /** The client's address, for logs and per-client policies. */
  get peer(): PeerInfo {
    return this.#session.peer;
  }

  /** Created on first use: most handlers never look at it. */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    if (this.#session.state === 'closed') this.#controller.abort();
    return this.#controller.signal;
  }

  /** True once the final reply went out (or was queued): no other reply may follow. */
  get done(): boolean {
    return this.#done;
  }

  /** The request is stopped (CANCEL, the connection closed): {@link signal} aborts and {@link receive} rejects with `reason`. */
  abort(reason: Error): void {
    this.#controller ??= new AbortController();
    this.#controller.abort(reason);
    this.#end(reason);
  }

  /** No continuation frame will come any more: a waiting or later receive() fails with `reason`. */
  #end(reason: Error): void {
    this.#ended ??= reason;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(reason);
    if (this.#sink !== undefined) this.#deliver();
  }

  /** The client ended its side: what is queued can still be taken, nothing more will come. */
  peerEnded(): void {
    // With frames queued nobody waits, so this only marks the end, seen once the queue is empty
    // (a sink hears of it after the frames still queued for it).
    this.#end(new TcpkitError('BAD_REQUEST', 'the client closed its side before finishing the request'));
  }

  /** A continuation frame for this request arrived. Returns false when it is not one this request takes. */
  push(frame: Frame): boolean {
    if (this.#continuations?.includes(frame.type) !== true || this.#ended !== undefined) return false;
    const sink = this.#sink;
    if (sink !== undefined && !this.#inputPaused && !this.#delivering) {
      // The data path: straight into the handler's sink, nothing queued, no promise.
      this.#offer(sink, frame);
      return true;
    }
    if (this.#waiter !== undefined) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter.resolve(frame);
      return true;
    }
    (this.#queue ??= []).push(frame);
    this.#session.hold(frame.payload.length);
    return true;
  }

  /** The next continuation frame of this request; rejects once no more can come. One call at a time (else INVALID_STATE). */
  receive(): Promise<Frame> {
    if (this.#sink !== undefined) return Promise.reject(new TcpkitError('INVALID_STATE', `request ${this.id}: receive() called after consume()`));
    const frame = this.#queue?.shift();
    if (frame !== undefined) {
      this.#session.release(frame.payload.length);
      return Promise.resolve(frame);
    }
    if (this.#ended !== undefined) return Promise.reject(this.#ended);
    if (this.#waiter !== undefined) return Promise.reject(new TcpkitError('INVALID_STATE', `request ${this.id}: receive() called again before the last one settled`));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  /** Continuation frames go to `sink` from now on, queued ones first; see {@link Exchange.consume}. */
  consume(sink: ContinuationSink): void {
    if (this.#sink !== undefined) throw new TcpkitError('INVALID_STATE', `request ${this.id}: consume() called twice`);
    if (this.#waiter !== undefined) throw new TcpkitError('INVALID_STATE', `request ${this.id}: consume() called while a receive() waits`);
    this.#sink = sink;
    this.#deliver();
  }

  /** The sink takes frames again: what waits is delivered, then the connection is read again. */
  resumeInput(): void {
    if (!this.#inputPaused || this.#delivering) return;
    this.#inputPaused = false;
    this.#deliver();
    // Still not paused: every queued frame was taken; the session reads on (unless others hold it).
    if (!this.#inputPaused) this.#releaseSession();
  }

  /** One frame into the sink. A sink that throws (a bug) fails its request, not the connection's read loop. */
  #offer(sink: ContinuationSink, frame: Frame): void {
    try {
      if (sink.frame(frame) === false) this.#pauseInput();
    } catch (error) {
      this.abort(error instanceof Error ? error : new TcpkitError('HANDLER_ERROR', String(error)));
    }
  }

  /** The sink said false: the session stops reading until it resumes. */
  #pauseInput(): void {
    this.#inputPaused = true;
    if (this.#holdsSession) return;
    this.#holdsSession = true;
    this.#session.pauseInput();
  }

  #releaseSession(): void {
    if (!this.#holdsSession) return;
    this.#holdsSession = false;
    this.#session.resumeInput();
  }

  /**
   * Hands queued frames to the sink until it says false or none is left, then, with none left
   * and none to come, tells it the end. An abort drops what is queued: nobody wants it.
   */
  #deliver(): void {
    // Called again from inside the sink (it aborted the request): the outer call sees the change.
    if (this.#delivering) return;
    const sink = this.#sink!;
    this.#delivering = true;
    try {
      for (;;) {
        if (this.#controller?.signal.aborted === true) this.discard();
        const frame = this.#inputPaused ? undefined : this.#queue?.shift();
        if (frame === undefined) break;
        this.#session.release(frame.payload.length);
        this.#offer(sink, frame);
      }
      if (this.#ended !== undefined && (this.#queue === undefined || this.#queue.length === 0)) {
        const reason = this.#ended;
        this.#sink = ENDED;
        sink.end(reason);
      }
    } finally {
      this.#delivering = false;
    }
  }

  /** The request is over: frames still queued for it are dropped, and a pause on its account ends. */
  discard(): void {
    if (this.#queue !== undefined) for (const frame of this.#queue.splice(0)) this.#session.release(frame.payload.length);
    this.#inputPaused = false;
    this.#releaseSession();
  }

  /** Gives a received payload back to the connection's buffer pool; the caller must not touch it afterwards. */
  recycle(payload: Uint8Array): void {
    this.#session.recycle(payload);
  }

  /** Sends the final reply. Throws INVALID_STATE when one was sent already. */
  reply(type: number, payload?: Uint8Array): void {
    if (this.#done) throw new TcpkitError('INVALID_STATE', `request ${this.id} was already answered`);
    this.#done = true;
    this.#session.send(type, this.id, payload);
    this.#session.answered(this);
  }

  /** Sends a frame of a streamed reply and resolves once there is room to send more; `onSent` runs when the socket is done with `payload`. */
  write(type: number, payload: Uint8Array, onSent?: () => void): Promise<void> {
    if (this.#done) return Promise.reject(new TcpkitError('INVALID_STATE', `request ${this.id} was already answered`));
    return this.#session.sendStreamed(type, this.id, payload, onSent);
  }
}
