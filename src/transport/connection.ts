/**
 * A Connection is a byte stream plus a frame decoder plus a batched, backpressure-aware writer.
 * The stream is any `Duplex`: a TCP or TLS socket in service, an in-memory pair in tests.
 * Socket-only features (no-delay, reset, the kernel's queues, the peer's address) are used when
 * the stream has them, with plain fallbacks otherwise. Sessions (src/session/) sit on top of it.
 */
import type { Duplex } from 'node:stream';
import { ProtocolError } from '../errors.js';
import { encodeFrame, encodeHeader, FrameDecoder, type Frame } from '../protocol/frame.js';
import type { CloseReason, PeerInfo } from './peer.js';
import type { BufferPool } from '../util/buffer-pool.js';
import { attachStream, closeReason, drained, noDelay, queuedBytes, resetStream, streamPeer, unacknowledged, type StreamEvents } from './stream.js';
import { systemClock, type Clock } from '../util/clock.js';
import { Watchdog, type Expiry, type WatchdogOwner, type WatchdogTimeouts } from './watchdog.js';
import { BatchedWriter } from './writer.js';

/** Callbacks a session gives its connection. */
export interface ConnectionHandlers {
  /** A complete frame arrived. Not called while the connection is paused. */
  frame(frame: Frame): void;
  /** The peer half-closed (EOF). Writes are still possible. */
  peerEnd(): void;
  /** The bytes received are not valid protocol; the session decides what to tell the peer. */
  protocolError(error: ProtocolError): void;
  /** The socket closed; called exactly once. */
  close(reason: CloseReason, error: Error | undefined): void;
  /** A phase deadline of the watchdog passed (only with `timeouts`). */
  timeout?(why: Expiry): void;
}

/** Options of a {@link Connection}. */
export interface ConnectionOptions {
  /** Frame payload limit until changed with {@link Connection.setMaxFrameBytes}. */
  maxFrameBytes: number;
  /** Who is at the other end. @default the socket's remote address; `memory` for a stream that is not a socket */
  peer?: PeerInfo;
  /**
   * Frame types delivered even while paused (PING, CANCEL...): a soft pause holds back requests,
   * not the control of the connection.
   */
  controlTypes?: ReadonlySet<number>;
  /** In a soft pause, reading goes on until this many bytes of frames are held back. @default 65536 */
  softPauseBytes?: number;
  /**
   * Bytes come through {@link Connection.receive} (a socket opened with `onread`, into one
   * reused buffer), not through 'data' events. @default false
   */
  externalReads?: boolean;
  /** Large payloads are assembled in this pool's buffers when they have its size. */
  payloadPool?: BufferPool;
  /**
   * Frame types delivered in pieces as their bytes arrive, never assembled (see
   * `FrameDecoderOptions.pieceTypes`). With `externalReads`, a piece is valid only during the
   * `frame` call, unless its reader keeps the memory (transport/read-slabs.ts).
   */
  pieceTypes?: ReadonlySet<number>;
  /** Phase deadlines; without them the connection never times out by itself. */
  timeouts?: WatchdogTimeouts;
  /** Clock of the watchdog and the kernel-queue samples (tests inject a fake one). @default systemClock */
  clock?: Clock;
  /** When the connection was accepted, on the clock: the handshake deadline counts from it. @default now */
  startedAt?: number;
}

/** Payloads at least this large are written as they are, after their header, never copied. */
const UNCOPIED_PAYLOAD_BYTES = 64 * 1024;

/** True when `frames` holds a whole frame or the last piece of one. */
function completesFrame(frames: Frame[]): boolean {
  for (let i = 0; i < frames.length; i++) if (frames[i]!.last !== false) return true;
  return false;
}

/** One framed connection over a byte stream; see the file comment. */
export class Connection implements WatchdogOwner {
  readonly #socket: Duplex;
  readonly #decoder: FrameDecoder;
  readonly #handlers: ConnectionHandlers;
  readonly #writer: BatchedWriter;
  #peer: PeerInfo | undefined;
  #paused = false;
  /** Frames decoded while paused, delivered on resume (created on first use). Bounded by `softPauseBytes`. */
  #backlog: Frame[] | undefined;
  #peerEnded = false;
  #ended = false;
  #closed = false;
  #destroyedLocally = false;
  #error: Error | undefined;
  #bytesIn = 0;
  readonly #clock: Clock;
  readonly #watchdog: Watchdog | undefined;
  readonly #controlTypes: ReadonlySet<number> | undefined;
  readonly #softPauseBytes: number;
  /** Pushed chunks are reused once {@link receive} returns (`externalReads`). */
  readonly #reusedInput: boolean;
  /** Hard pause: the socket is not read at all. Soft: read on, hold back non-control frames. */
  #hard = false;
  #backlogBytes = 0;

  /** Takes over `socket` (its listeners and reads); `handlers` hear of frames, EOF, errors and the close. */
  constructor(socket: Duplex, handlers: ConnectionHandlers, options: ConnectionOptions) {
    this.#socket = socket;
    this.#handlers = handlers;
    this.#clock = options.clock ?? systemClock;
    if (options.peer !== undefined) this.#peer = options.peer;
    const pool = options.payloadPool;
    this.#decoder = new FrameDecoder({
      maxFrameBytes: options.maxFrameBytes,
      reusedInput: options.externalReads === true,
      ...(options.pieceTypes && { pieceTypes: options.pieceTypes }),
      ...(pool && { allocate: pool.allocate }),
    });
    this.#controlTypes = options.controlTypes;
    this.#reusedInput = options.externalReads === true;
    this.#softPauseBytes = options.softPauseBytes ?? 64 * 1024;
    noDelay(socket);
    attachStream(socket, this, options.externalReads ? Connection.#eventsWithoutData : Connection.#events);
    if (options.timeouts) this.#watchdog = new Watchdog(options.timeouts, this, this.#clock, options.startedAt);
    this.#writer = new BatchedWriter(socket, this.#watchdog);
  }

  // One table of listeners for every stream: per-connection closures cost memory on idle connections.
  static readonly #events: StreamEvents<Connection> = {
    data: (conn, chunk) => conn.#onData(chunk),
    end: (conn) => conn.#onEnd(),
    error: (conn, error) => (conn.#error ??= error),
    close: (conn) => conn.#onClose(),
    drain: (conn) => conn.#watchdog?.sendBlocked(false),
  };
  /** For a socket read through {@link receive} (`externalReads`). */
  static readonly #eventsWithoutData: StreamEvents<Connection> = { ...Connection.#events, data: undefined };

  /** @internal Bytes read by the socket's `onread` callback; consumed before this returns. */
  receive(chunk: Buffer): void {
    this.#onData(chunk);
  }

  /** @internal For the watchdog: output bytes not yet taken by the kernel. */
  queuedBytes(): number {
    return queuedBytes(this.#socket);
  }

  /** @internal For the watchdog: bytes handed to the socket so far. */
  sentBytes(): number {
    return this.#writer.bytesOut;
  }

  /** @internal For the watchdog: bytes the peer has not acknowledged, as the kernel counts them. */
  unacknowledgedBytes(): number | undefined {
    return unacknowledged(this.#socket, this.#clock.now());
  }

  /** @internal For the watchdog: a phase deadline passed. */
  expired(why: Expiry): void {
    this.#handlers.timeout?.(why);
  }

  /** The hello is complete. */
  handshakeDone(): void {
    this.#watchdog?.handshakeDone();
  }

  /** Requests are in flight (the connection is not idle), or not. */
  setBusy(busy: boolean): void {
    this.#watchdog?.setBusy(busy);
  }

  /** Who is at the other end (looked up once, on first use). */
  get peer(): PeerInfo {
    this.#peer ??= streamPeer(this.#socket);
    return this.#peer;
  }

  /** Bytes received so far. */
  get bytesIn(): number {
    return this.#bytesIn;
  }
  /** Bytes handed to the socket so far. */
  get bytesOut(): number {
    return this.#writer.bytesOut;
  }
  /** True once the socket has closed. */
  get closed(): boolean {
    return this.#closed;
  }
  /** True once the peer sent EOF. */
  get peerEnded(): boolean {
    return this.#peerEnded;
  }
  /** True once we ended or destroyed our side: nothing more can be written. */
  get writeEnded(): boolean {
    return this.#ended || this.#closed;
  }
  /** True while frames received during a pause wait to be delivered. */
  get hasBacklog(): boolean {
    return this.#backlog !== undefined && this.#backlog.length > 0;
  }
  /** True when the socket's send buffer is over its high-water mark. */
  get needsDrain(): boolean {
    return this.#socket.writableNeedDrain;
  }

  /** Raises or lowers the frame payload limit (after the hello exchange). */
  setMaxFrameBytes(limit: number): void {
    this.#decoder.maxFrameBytes = limit;
  }

  /**
   * Queues bytes. Writes made in one turn of the event loop leave in one batch (one syscall).
   * Returns false when the caller should wait for {@link drained} before writing more.
   */
  write(data: Uint8Array, onSent?: () => void): boolean {
    if (this.writeEnded) {
      onSent?.();
      return false;
    }
    return this.#writer.write(data, onSent);
  }

  /**
   * Encodes and queues one frame. A large payload is sent as it is, never copied, and `onSent`
   * runs once the socket is done with it; a small one is copied into the frame (free at once)
   * and leaves with this turn's other small frames (see {@link BatchedWriter}).
   */
  sendFrame(type: number, id: number, payload?: Uint8Array, onSent?: () => void): boolean {
    if (payload !== undefined && payload.length >= UNCOPIED_PAYLOAD_BYTES) {
      this.write(encodeHeader(type, id, payload.length));
      return this.write(payload, onSent);
    }
    const room = !this.writeEnded && this.#writer.writeSmall(encodeFrame(type, id, payload));
    onSent?.();
    return room;
  }

  /**
   * Resolves when the send buffer has room again, or the connection closed. Every waiter shares
   * one promise and one pair of listeners, however many streams wait.
   */
  drained(): Promise<void> {
    return drained(this.#socket);
  }

  /**
   * Stops delivering frames. A hard pause stops reading the socket at once (TCP backpressure on
   * the peer). A soft pause holds back request frames but still reads, and still delivers
   * control frames, until `softPauseBytes` are held back: a server busy with its maximum of
   * requests still answers PINGs and CANCELs. With `externalReads` (reused input) a pause asked
   * for while a read is decoded lets that read's frames through, then reads no more.
   */
  pause(mode: 'hard' | 'soft' = 'hard'): void {
    const hard = mode === 'hard';
    if (this.#paused && this.#hard === hard) return;
    this.#paused = true;
    this.#hard = hard || this.#controlTypes === undefined;
    this.#reading(!(this.#hard || this.#backlogBytes >= this.#softPauseBytes));
  }

  /** Delivers frames held while paused, then reads the socket again. */
  resume(): void {
    if (!this.#paused || this.#closed) return;
    this.#paused = false;
    while (this.#backlog !== undefined && this.#backlog.length > 0 && !this.#paused && !this.#closed) {
      const frame = this.#backlog.shift()!;
      this.#backlogBytes -= frame.payload.length;
      this.#handlers.frame(frame);
    }
    if (!this.#paused) this.#reading(true);
  }

  /**
   * Reads the socket, or stops. While we do not read, the peer cannot complete a frame it has
   * begun: the request deadline runs only while we read (from when we read again, not from the
   * frame's first byte), so backpressure on a pipelining client is never its timeout.
   */
  #reading(on: boolean): void {
    if (on) {
      this.#socket.resume();
      this.#watchdog?.partialFrame(this.#decoder.midFrame);
    } else {
      this.#socket.pause();
      this.#watchdog?.partialFrame(false);
    }
  }

  /** Sends what is queued, then half-closes our side. Idempotent. */
  end(): void {
    if (this.writeEnded) return;
    this.#writer.flush();
    this.#ended = true;
    this.#socket.end();
  }

  /**
   * Closes at once with a reset (SO_LINGER 0): frees the kernel's buffers of a peer that stopped
   * reading. A stream that is not a socket is destroyed.
   */
  reset(): void {
    if (this.#closed) return;
    this.#destroyedLocally = true;
    resetStream(this.#socket);
  }

  /** Closes at once, dropping what is queued. Idempotent. */
  destroy(error?: Error): void {
    if (this.#closed) return;
    this.#destroyedLocally = true;
    this.#error ??= error;
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    this.#bytesIn += chunk.length;
    this.#watchdog?.activity();
    let frames: Frame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (error) {
      this.#socket.pause();
      this.#handlers.protocolError(error as ProtocolError);
      return;
    }
    if (this.#watchdog !== undefined) {
      // Each frame has its own deadline: one completed in this chunk ends its clock, and what
      // remains is a frame begun now. A bare header counts (its bytes are consumed, not buffered).
      // A piece that does not complete its frame ends nothing: a frame trickled in pieces is
      // still due whole within the request deadline.
      if (completesFrame(frames)) this.#watchdog.partialFrame(false);
      this.#watchdog.partialFrame(this.#decoder.midFrame);
    }
    for (let i = 0; i < frames.length; i++) {
      if (this.#closed) return;
      const frame = frames[i]!;
      // Held back while paused; control frames (PING, CANCEL) pass: they need no order among
      // requests. With reused input a pause takes effect at the next read: what this read
      // brought is delivered, since holding it would mean copying it out of memory the next
      // read reuses (a download's DATA pieces).
      if (this.#paused && !this.#reusedInput && this.#controlTypes?.has(frame.type) !== true) {
        (this.#backlog ??= []).push(frame);
        this.#backlogBytes += frame.payload.length;
        continue;
      }
      this.#handlers.frame(frame);
    }
    if (this.#paused && !this.#hard && this.#backlogBytes >= this.#softPauseBytes) this.#reading(false);
  }

  #onEnd(): void {
    this.#peerEnded = true;
    this.#handlers.peerEnd();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#watchdog?.stop();
    // Frames that arrived whole before the close are delivered, even if we had paused: a
    // download keeps every byte it received before a reset (and can resume from there).
    const backlog = this.#backlog?.splice(0) ?? [];
    this.#backlogBytes = 0;
    for (const frame of backlog) this.#handlers.frame(frame);
    this.#closed = true;
    this.#handlers.close(closeReason(this.#destroyedLocally, this.#error, this.#peerEnded), this.#error);
  }
}
