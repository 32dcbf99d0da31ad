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
   * `continuationTypes`, e.g. the content of an upload), in order. Rejects once the request is
   * aborted (CANCEL, connection closed). The server stops reading the connection while frames
   * wait here unread, so a handler that takes them one at a time bounds the memory they hold.
   */
  receive(): Promise<Frame>;
  /**
   * Hands back the payload of a continuation frame the handler is completely done with (written
   * to disk, hashed), so a later frame reuses its memory instead of a fresh allocation. Optional:
   * a payload not handed back is simply garbage-collected.
   */
  recycle?(payload: Uint8Array): void;
}

/** A family of requests the server answers. */
export interface Service {
  /** Name announced in the server hello's `services` list. */
  readonly name: string;
  /** Request frame types this service handles. */
  readonly requestTypes: readonly number[];
  /**
   * Frame types a client sends after a request, with its id, to continue it (an upload's
   * content). The server hands them to that request's {@link Exchange.receive}; one that arrives
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
