/**
 * One request being served, as its handler sees it ({@link Exchange}): replies go out through
 * the session, continuation frames (an upload's content) come in through a bounded queue.
 */
import { TcpkitError } from '../errors.js';
import type { Frame } from '../protocol/frame.js';
import type { Exchange } from './service.js';
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
  /** Takes back a payload buffer nothing references any more. */
  recycle(payload: Uint8Array): void;
  /** The final reply went out: the request's id is free again, even while its handler still runs. */
  answered(exchange: ServerExchange): void;
}

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
  }

  /** The client ended its side: what is queued can still be taken, nothing more will come. */
  peerEnded(): void {
    // With frames queued nobody waits, so this only marks the end, seen once the queue is empty.
    this.#end(new TcpkitError('BAD_REQUEST', 'the client closed its side before finishing the request'));
  }

  /** A continuation frame for this request arrived. Returns false when it is not one this request takes. */
  push(frame: Frame): boolean {
    if (this.#continuations?.includes(frame.type) !== true || this.#ended !== undefined) return false;
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

  /** The request is over: frames still queued for it are dropped. */
  discard(): void {
    if (this.#queue === undefined) return;
    for (const frame of this.#queue.splice(0)) this.#session.release(frame.payload.length);
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
