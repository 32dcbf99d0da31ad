/**
 * What a service is to the server: a set of request frame types and a handler that turns one
 * decoded request into reply frames. A handler never sees a socket, so it can be called in a
 * test with a hand-made {@link Exchange}.
 */
import type { Frame } from '../protocol/frame.js';
import type { PeerInfo } from '../transport/peer.js';

/** One request being served: who asked, and how to answer. */
export interface Exchange {
  /** Request id chosen by the client; every reply frame carries it. */
  readonly id: number;
  /** The client's address. */
  readonly peer: PeerInfo;
  /** Aborted when the client cancels the request or the connection closes. */
  readonly signal: AbortSignal;
  /** Sends the one frame that completes the reply. */
  reply(type: number, payload?: Uint8Array): void;
  /**
   * Sends a frame of a reply that continues (a stream); resolves when the connection can take
   * more, so a handler that awaits it never buffers more than one frame ahead of the client.
   * `onSent` runs once the connection no longer needs `payload` (it may then be reused).
   */
  write(type: number, payload: Uint8Array, onSent?: () => void): Promise<void>;
  /**
   * The next continuation frame the client sent for this request (one of the service's
   * `continuationTypes`, e.g. the content of an upload), in order; one of a byte-stream type may
   * come in pieces, as for {@link consume}. Rejects once the request is
   * aborted (CANCEL, connection closed). The server stops reading the connection while frames
   * wait here unread, so a handler that takes them one at a time bounds the memory they hold.
   */
  receive(): Promise<Frame>;
  /**
   * Takes this request's continuation frames synchronously, as they arrive, instead of through
   * {@link receive} (one or the other, for the whole request): `sink.frame()` is called for each,
   * in order, frames that came before this call first, at once. A frame of a byte-stream type
   * (PUT_DATA, `BYTE_STREAM_TYPES` in protocol/types.ts) may come in pieces (`frame.last` set),
   * each a view of memory the server never reuses: a sink may keep a piece (to write it out)
   * without copying it. When `sink.frame()` returns false the server stops reading the
   * connection (frames already read wait here, bounded by one read) until the handler calls
   * {@link resumeInput}: a sink that returns false while it holds more than its bound keeps the
   * memory of the request bounded, however fast the client sends. `sink.end()` is called once,
   * after the last frame delivered, when no more can come (CANCEL, the connection closed, the
   * client ended its side). Throws INVALID_STATE when called twice or while a receive() waits.
   */
  consume(sink: ContinuationSink): void;
  /**
   * The sink given to {@link consume} can take frames again: frames that waited are delivered
   * (until it says false once more), then the connection is read again. A no-op unless it said
   * false.
   */
  resumeInput(): void;
  /**
   * Hands back the payload of a continuation frame the handler is completely done with (written
   * to disk, hashed), so a later frame reuses its memory instead of a fresh allocation. Optional:
   * a payload not handed back is simply garbage-collected.
   */
  recycle?(payload: Uint8Array): void;
}

/** What takes a request's continuation frames as they arrive: see {@link Exchange.consume}. */
export interface ContinuationSink {
  /**
   * The next continuation frame (or piece of one), in order, called synchronously as it
   * arrives. Returns false when the sink can take no more for now (the server stops reading
   * until {@link Exchange.resumeInput}); anything else means go on.
   */
  frame(frame: Frame): boolean | void;
  /** No more frames will come for this request (`reason` says why). Called at most once. */
  end(reason: Error): void;
}

/** A family of requests the server answers. */
export interface Service {
  /** Name announced in the server hello's `services` list. */
  readonly name: string;
  /** Request frame types this service handles. */
  readonly requestTypes: readonly number[];
  /**
   * Frame types a client sends after a request, with its id, to continue it (an upload's
   * content). The server hands them to that request's {@link Exchange.receive} (or its
   * {@link Exchange.consume} sink); one that arrives
   * for an id no longer in flight (it crossed the final reply on the wire) is discarded.
   */
  readonly continuationTypes?: readonly number[];
  /**
   * Hello capabilities this service supports (e.g. `digest:xxh3`): the server grants each to a
   * client that asks for it in its HELLO (docs/PROTOCOL.md §3).
   */
  readonly capabilities?: readonly string[];
  /**
   * Serves one request. It must call `exchange.reply()` exactly once before it returns (or
   * before its promise settles), or throw: a thrown {@link TcpkitError} with a wire code reaches
   * the client as that code; anything else as HANDLER_ERROR.
   */
  handle(request: Frame, exchange: Exchange): void | Promise<void>;
}
