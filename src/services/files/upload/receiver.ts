/**
 * The content of one upload as it arrives (issue 12): the {@link ContinuationSink} of its
 * exchange. Each piece of PUT_DATA is counted (the caps, before anything is written), hashed and
 * handed to an {@link FileWriter}, synchronously, in the read that brought it: no copy, no
 * promise and no timer per piece. When the writer holds its high-water mark of bytes the sink
 * says false and the server stops reading the client until the disk catches up.
 *
 * The stall deadline is one timer per upload, re-armed lazily: each piece only notes the time;
 * when the timer fires it checks how long ago the last progress was and sleeps for the rest.
 * Time while we hold the client back (the disk is slow) is never the client's stall.
 */
import { TcpkitError } from '../../../errors.js';
import type { Frame } from '../../../protocol/frame.js';
import type { ContinuationSink, Exchange } from '../../../server/service.js';
import type { Clock } from '../../../util/clock.js';
import { createDigest, type Digest, type DigestAlgorithm } from '../digest.js';
import { decodePutEnd, UploadFrame, type FileEnd, type PutRequest } from '../wire.js';
import { FileWriter, type FileWriterOptions } from '../writer.js';

/** What arrived: the byte count and digest of the content, and what the client says it sent. */
export interface Received {
  received: number;
  digest: string;
  end: FileEnd;
}

/** What a {@link Receiver} needs besides its exchange and file. */
export interface ReceiverOptions {
  /** Largest file accepted: more bytes than this is TOO_LARGE. */
  maxFileBytes: number;
  /** Longest time without a byte from the client while we read it. */
  stallTimeoutMs: number;
  clock: Clock;
  /** Tuning of the writer (tests). */
  writer?: Omit<FileWriterOptions, 'startAt' | 'onRoom' | 'onError'>;
}

/** Receives one upload into an open file; see the file comment. */
export class Receiver implements ContinuationSink {
  /** Settles once the content is written (PUT_END), or at the first failure. */
  readonly done: Promise<Received>;
  readonly #exchange: Exchange;
  readonly #put: PutRequest;
  readonly #options: ReceiverOptions;
  readonly #digest: Digest;
  readonly #writer: FileWriter;
  #received = 0;
  /** PUT_END came, or the upload failed: later frames are dropped. */
  #over = false;
  /** We said false: the client is held back for the disk. */
  #holding = false;
  #lastProgress = 0;
  #timer: unknown;
  #resolve!: (received: Received) => void;
  #reject!: (error: unknown) => void;

  /** Writes the upload `put` of `exchange` into the file open as `fd`, hashing it with `algorithm` (the PUT's). */
  constructor(exchange: Exchange, put: PutRequest, fd: number, algorithm: DigestAlgorithm, options: ReceiverOptions) {
    this.#digest = createDigest(algorithm);
    this.#exchange = exchange;
    this.#put = put;
    this.#options = options;
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Seen by whoever awaits it; an upload that fails before anyone does must not be "unhandled".
    this.done.catch(() => {});
    this.#writer = new FileWriter(fd, {
      ...options.writer,
      onRoom: () => this.#room(),
      onError: (error) => this.#fail(error),
    });
  }

  /** Starts the stall deadline (once PUT_READY is out: from then on the client owes us bytes). */
  start(): void {
    if (this.#over || this.#timer !== undefined) return;
    this.#lastProgress = this.#options.clock.now();
    this.#timer = this.#options.clock.setTimeout(Receiver.#check, this.#options.stallTimeoutMs, this);
  }

  /** Stops receiving (the upload is over either way); resolves once no write runs on the file. */
  async stop(): Promise<void> {
    if (!this.#over) this.#fail(new TcpkitError('ABORTED', `the upload of ${this.#put.name} stopped`));
    await this.#writer.settled();
  }

  /** @internal A continuation frame, or a piece of PUT_DATA; false: hold the client back. */
  frame(frame: Frame): boolean {
    if (this.#over) return true;
    if (frame.type === UploadFrame.PUT_END) {
      this.#finish(frame.payload);
      return true;
    }
    const { payload } = frame;
    this.#lastProgress = this.#options.clock.now();
    this.#received += payload.length;
    // Counted as the bytes arrive: the announced size is a promise, not a proof.
    const cap = this.#options.maxFileBytes;
    if (this.#received > cap) {
      this.#fail(new TcpkitError('TOO_LARGE', `${this.#put.name}: more than ${cap} bytes sent; this server takes no more`));
      return true;
    }
    if (this.#received > this.#put.size) {
      this.#fail(new TcpkitError('BAD_REQUEST', `${this.#put.name}: more bytes sent than the ${this.#put.size} announced`));
      return true;
    }
    this.#digest.update(payload);
    // Whole frames (not pieces) may be payload buffers of the server's pool: given back once written.
    const recycle = this.#exchange.recycle;
    const hold = frame.last === undefined && recycle !== undefined ? { release: () => recycle.call(this.#exchange, payload) } : undefined;
    if (this.#writer.add(payload, hold)) return true;
    this.#holding = true;
    return false;
  }

  /** @internal No more frames can come (CANCEL, closed, the client ended its side). */
  end(reason: Error): void {
    this.#fail(reason);
  }

  /** The writer has room again: read the client again. */
  #room(): void {
    if (!this.#holding) return;
    this.#holding = false;
    this.#lastProgress = this.#options.clock.now();
    if (!this.#over) this.#exchange.resumeInput();
  }

  #finish(payload: Buffer): void {
    this.#over = true;
    this.#stopTimer();
    let end: FileEnd;
    try {
      end = decodePutEnd(payload);
    } catch (error) {
      this.#writer.stop(error);
      this.#reject(error);
      return;
    }
    const received = this.#received;
    const digest = this.#digest.value();
    this.#writer.finish().then(() => this.#resolve({ received, digest, end }), this.#reject);
  }

  #fail(error: unknown): void {
    if (this.#over) {
      // After PUT_END only the writer can still fail: finish() reports it.
      return;
    }
    this.#over = true;
    this.#stopTimer();
    this.#writer.stop(error);
    this.#reject(error);
  }

  #stopTimer(): void {
    this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  static #check(receiver: Receiver): void {
    receiver.#timer = undefined;
    if (receiver.#over) return;
    const { clock, stallTimeoutMs } = receiver.#options;
    const now = clock.now();
    // Held back by us, the client cannot send: not its stall.
    if (receiver.#holding) receiver.#lastProgress = now;
    const quiet = now - receiver.#lastProgress;
    if (quiet >= stallTimeoutMs) {
      receiver.#fail(new TcpkitError('TIMEOUT', `the upload of ${receiver.#put.name} made no progress for ${stallTimeoutMs} ms`));
      return;
    }
    receiver.#timer = clock.setTimeout(Receiver.#check, stallTimeoutMs - quiet, receiver);
  }
}
