/**
 * Request correlation: the requests in flight on one connection, by id, with their deadlines.
 * A request the caller gave up on (timeout, abort, failed consumer) is answered at once but keeps
 * its id until the server's final frame arrives, so a late reply is told from a hostile one.
 * (nats.js `core/src/muxsubscription.ts` is the model: correlation as a class of its own.)
 */
import { abortError, ProtocolError, RemoteError, TimeoutError } from '../errors.js';
import { FrameType, MAX_REQUEST_ID, frameTypeName } from '../protocol/constants.js';
import { decodeErrorBody } from '../protocol/control.js';
import type { Frame } from '../protocol/frame.js';
import type { Clock } from '../util/clock.js';

/** Receives the frames of a streamed reply; see `Client.stream`. */
export interface StreamConsumer {
  /** True when `frame` is the last frame of the reply. */
  isFinal(frame: Frame): boolean;
  /** Called for every reply frame but ERROR, in order; throwing abandons the request. */
  frame(frame: Frame): void;
  /** Called once the request is sent, with the way to send continuation frames (an upload's content). */
  opened?(channel: RequestChannel): void;
}

/** Sends the continuation frames of a request in flight; see {@link StreamConsumer.opened}. */
export interface RequestChannel {
  /**
   * Sends one continuation frame of the request; resolves when the connection can take more
   * (backpressure). Sending counts as progress for the request timeout. Rejects once the request
   * is over (answered, failed, timed out or aborted): the request's own promise says why.
   * `onSent` runs once the connection no longer needs `payload` (it may then be reused); it does
   * not run when the send is refused.
   */
  send(type: number, payload: Uint8Array, onSent?: () => void): Promise<void>;
}

/** One request in flight (or held across a reconnect). */
export interface Pending {
  /** Its id on the current connection (a new one after it is sent again). */
  id: number;
  /** The request, kept to send it again on a new connection after an idle goodbye. */
  readonly type: number;
  readonly payload: Uint8Array;
  readonly consumer: StreamConsumer;
  /** Milliseconds without a reply frame after which the request times out; 0 = never. */
  readonly timeoutMs: number;
  /** `clock.now()` at which it times out (0 = never); pushed back by every frame received. */
  deadline: number;
  /** The caller was already answered (timeout, abort, failed consumer): later frames only free the id. */
  abandoned: boolean;
  /** It sent continuation frames (an upload's content): the server taking our output is its progress. */
  sent: boolean;
  /** Set while a continuation frame waits for room in the send buffer: wakes it once the request is over. */
  unblock: (() => void) | undefined;
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  readonly complete: () => void;
  readonly reject: (error: Error) => void;
}

/** What a new request is: see {@link Requests.open}. */
export interface RequestSpec {
  type: number;
  payload: Uint8Array;
  consumer: StreamConsumer;
  timeoutMs: number;
  signal: AbortSignal | undefined;
}

/** What {@link Requests} asks of the connection under it. */
export interface RequestsHooks {
  /** Tells the server request `id` was abandoned (a CANCEL), if anything can still be sent. */
  cancel(id: number): void;
  /** A final frame freed an id: an in-flight slot opened. */
  freed(): void;
}

/** The requests in flight on one connection, by id. */
export class Requests {
  readonly #pending = new Map<number, Pending>();
  readonly #clock: Clock;
  readonly #label: string;
  readonly #hooks: RequestsHooks;
  #nextId = 1;
  /** `clock.now()` of the last reply frame to any request: what a request waiting for a slot measures. */
  lastReplyAt: number;

  /** `label` names the server in error messages. */
  constructor(clock: Clock, label: string, hooks: RequestsHooks) {
    this.#clock = clock;
    this.#label = label;
    this.#hooks = hooks;
    this.lastReplyAt = clock.now();
  }

  /** Requests sent and not yet answered (including abandoned ones the server still works on). */
  get size(): number {
    return this.#pending.size;
  }

  /** The requests in flight. */
  values(): IterableIterator<Pending> {
    return this.#pending.values();
  }

  /** True while `pending` is in flight under its id. */
  has(pending: Pending): boolean {
    return this.#pending.get(pending.id) === pending;
  }

  /** True while some request in flight still has a caller waiting for its reply. */
  awaited(): boolean {
    for (const pending of this.#pending.values()) if (!pending.abandoned) return true;
    return false;
  }

  /** Makes the record of a new request (not yet in flight: see {@link add}); an abort abandons it. */
  create(spec: RequestSpec, complete: () => void, reject: (error: Error) => void): Pending {
    const pending: Pending = {
      id: 0,
      type: spec.type,
      payload: spec.payload,
      consumer: spec.consumer,
      timeoutMs: spec.timeoutMs,
      deadline: spec.timeoutMs > 0 ? this.#clock.now() + spec.timeoutMs : 0,
      abandoned: false,
      sent: false,
      unblock: undefined,
      signal: spec.signal,
      onAbort: undefined,
      complete,
      reject,
    };
    if (spec.signal) {
      const signal = spec.signal;
      pending.onAbort = () => this.abandon(pending, abortError(signal));
      signal.addEventListener('abort', pending.onAbort, { once: true });
    }
    return pending;
  }

  /** Puts `pending` in flight under a fresh id (also when it is sent again after a reconnect); returns the id. */
  add(pending: Pending): number {
    for (;;) {
      const id = this.#nextId;
      this.#nextId = id >= MAX_REQUEST_ID ? 1 : id + 1;
      if (!this.#pending.has(id)) {
        pending.id = id;
        this.#pending.set(id, pending);
        return id;
      }
    }
  }

  /** Answers the caller now (timeout, abort) but keeps the id reserved until the server replies. */
  abandon(pending: Pending, error: Error, cancel = true): void {
    if (pending.abandoned) return;
    pending.abandoned = true;
    release(pending);
    pending.reject(error);
    if (cancel) this.#hooks.cancel(pending.id);
  }

  /**
   * Takes one reply frame. Returns the error that breaks the connection (a frame for an id not
   * in flight, a broken ERROR body, a consumer's ProtocolError), undefined otherwise.
   */
  settle(frame: Frame): Error | undefined {
    const id = frame.id;
    const pending = this.#pending.get(id);
    const now = this.#clock.now();
    this.lastReplyAt = now;
    // An id stays in flight until its final frame arrives, abandoned (timed out, aborted,
    // cancelled) or not: frames that crossed our CANCEL on the wire land here and are dropped.
    // That record is bounded (abandoned requests keep their in-flight slot, so there are at most
    // maxInFlight of them). Any other id is not in flight: never sent, or already answered (a
    // second reply): the server is broken or hostile and the connection is failed.
    if (pending === undefined) {
      return new ProtocolError(
        'PROTOCOL_ERROR',
        `${this.#label} sent ${frameTypeName(frame.type)} for request id ${id}, which is not in flight (already answered, or never sent)`,
      );
    }
    const isError = frame.type === FrameType.ERROR;
    let final: boolean;
    try {
      final = isError || pending.consumer.isFinal(frame);
    } catch (error) {
      return error as Error;
    }
    if (!pending.abandoned) {
      if (isError) {
        let body: ReturnType<typeof decodeErrorBody>;
        try {
          body = decodeErrorBody(frame.payload, 'error');
        } catch (error) {
          return error as Error;
        }
        this.abandon(pending, new RemoteError(body.code, body.message || body.code), false);
      } else {
        try {
          pending.consumer.frame(frame);
        } catch (error) {
          if (error instanceof ProtocolError) return error;
          this.abandon(pending, error as Error, !final);
        }
        if (pending.deadline !== 0) pending.deadline = now + pending.timeoutMs;
      }
    }
    if (!final) return undefined;
    this.#pending.delete(id);
    if (!pending.abandoned) {
      release(pending);
      pending.abandoned = true;
      pending.complete();
    }
    this.#hooks.freed();
    return undefined;
  }

  /**
   * Progress seen now (the server took our bytes, or we read again): the requests' deadlines
   * count from now, those that sent content only, or all. An abandoned request has none (0).
   */
  pushDeadlines(now: number, sendingOnly: boolean): void {
    for (const pending of this.#pending.values()) {
      if (pending.deadline !== 0 && (pending.sent || !sendingOnly)) pending.deadline = Math.max(pending.deadline, now + pending.timeoutMs);
    }
  }

  /**
   * Abandons the requests whose deadline passed (none while `paused`: no reply could arrive).
   * `stuck` says the server takes none of our output: a request that sent content then fails
   * the whole connection (the returned error). `shortest` is the shortest timeout still running.
   */
  expire(now: number, paused: boolean, stuck: boolean): { fatal: Error | undefined; shortest: number } {
    let shortest = 0;
    for (const pending of this.#pending.values()) {
      if (pending.abandoned || pending.deadline === 0) continue;
      if (pending.deadline <= now && !paused) {
        if (pending.sent && stuck) {
          // Nothing can get through a connection whose server takes none of our bytes: every
          // request on it, and whatever would follow, is failed with this one.
          const why = `no progress from ${this.#label} within ${pending.timeoutMs} ms: it took none of the bytes sent and sent no reply`;
          return { fatal: new TimeoutError('REQUEST_TIMEOUT', why), shortest };
        }
        this.abandon(pending, new TimeoutError('REQUEST_TIMEOUT', `no reply from ${this.#label} within ${pending.timeoutMs} ms`));
      } else if (shortest === 0 || pending.timeoutMs < shortest) {
        shortest = pending.timeoutMs;
      }
    }
    return { fatal: undefined, shortest };
  }

  /** The quiet time after which the kernel's count of unacknowledged bytes is worth reading, or Infinity. */
  sendingQuietMs(heartbeatMs: number): number {
    let quietMs = Infinity;
    for (const pending of this.#pending.values()) {
      if (pending.sent && pending.deadline !== 0) quietMs = Math.min(quietMs, pending.timeoutMs / 2);
      if (pending.sent && heartbeatMs > 0) quietMs = Math.min(quietMs, heartbeatMs / 2);
    }
    return quietMs;
  }

  /** Rejects every caller still waiting with `error` and forgets every id; true when there was a caller. */
  failAll(error: Error): boolean {
    let told = false;
    for (const pending of this.#pending.values()) {
      if (!pending.abandoned) {
        pending.abandoned = true;
        release(pending);
        pending.reject(error);
        told = true;
      }
    }
    this.#pending.clear();
    return told;
  }

  /**
   * Takes out every request a caller still awaits and forgets the rest: after an idle goodbye,
   * what is in flight crossed the goodbye unserved and is sent again on a new connection.
   */
  takeUnserved(): Pending[] {
    const unserved = [...this.#pending.values()].filter((pending) => !pending.abandoned);
    this.#pending.clear();
    return unserved;
  }
}

/** A request is over for its caller: no deadline, no abort listener, no sender left waiting. */
function release(pending: Pending): void {
  pending.deadline = 0;
  pending.unblock?.();
  if (pending.onAbort) pending.signal?.removeEventListener('abort', pending.onAbort);
}
