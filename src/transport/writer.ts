/**
 * The write side of a {@link Connection}: writes made in one turn of the event loop leave in one
 * batch (the socket is corked until the turn ends), and small frames of the turn are gathered
 * into one buffer, one `socket.write`, so a pipelining peer's many replies cost one pass through
 * the stream machinery, not one each. Large payloads are written as they are, never copied.
 */
import type { Duplex } from 'node:stream';
import type { Watchdog } from './watchdog.js';

/** Frames up to this size are gathered per turn; larger ones are written on their own. */
const OUTBOX_FRAME_BYTES = 16 * 1024;
/** An outbox this full is sent at once, without waiting for the end of the turn. */
const OUTBOX_FLUSH_BYTES = 64 * 1024;

/** Batched writes to one stream; see the file comment. */
export class BatchedWriter {
  readonly #socket: Duplex;
  /** Told of every write that reaches the stream (activity), and of a full send buffer. */
  readonly #watchdog: Watchdog | undefined;
  #corked = false;
  /** Small frames written this turn, sent together at its end. */
  #outbox: Buffer[] | undefined;
  #outboxBytes = 0;
  #bytesOut = 0;

  /** Writes to `socket`; `watchdog`, when given, sees every write as activity and hears of a full send buffer. */
  constructor(socket: Duplex, watchdog: Watchdog | undefined) {
    this.#socket = socket;
    this.#watchdog = watchdog;
  }

  /** Bytes handed to the stream so far. */
  get bytesOut(): number {
    return this.#bytesOut;
  }

  /** Writes `data` after everything queued before it; false when the caller should wait for 'drain'. */
  write(data: Uint8Array, onSent: (() => void) | undefined): boolean {
    this.#batch();
    this.flush(); // keep the order of everything written
    return this.#writeNow(data, onSent);
  }

  /** Queues one encoded frame of at most {@link OUTBOX_FRAME_BYTES} to leave with the turn's others. */
  writeSmall(frame: Buffer): boolean {
    if (frame.length > OUTBOX_FRAME_BYTES) return this.write(frame, undefined);
    this.#batch();
    (this.#outbox ??= []).push(frame);
    this.#outboxBytes += frame.length;
    if (this.#outboxBytes >= OUTBOX_FLUSH_BYTES) this.flush();
    return !this.#socket.writableNeedDrain;
  }

  /** Hands the gathered small frames to the stream now. */
  flush(): void {
    const outbox = this.#outbox;
    if (outbox === undefined) return;
    this.#outbox = undefined;
    const data = outbox.length === 1 ? outbox[0]! : Buffer.concat(outbox, this.#outboxBytes);
    this.#outboxBytes = 0;
    this.#writeNow(data, undefined);
  }

  /** Starts this turn's batch: writes are corked until the turn ends. */
  #batch(): void {
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      setImmediate(BatchedWriter.#uncork, this);
    }
  }

  static #uncork(writer: BatchedWriter): void {
    writer.#corked = false;
    writer.flush();
    if (!writer.#socket.destroyed) writer.#socket.uncork();
  }

  #writeNow(data: Uint8Array, onSent: (() => void) | undefined): boolean {
    this.#bytesOut += data.length;
    const room = onSent ? this.#socket.write(data, () => onSent()) : this.#socket.write(data);
    if (this.#watchdog !== undefined) {
      this.#watchdog.activity();
      if (!room) this.#watchdog.sendBlocked(true);
    }
    return room;
  }
}
