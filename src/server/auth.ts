/**
 * Token authentication: the token travels in the client's HELLO (`auth.token`), is compared in
 * constant time, and repeated failures from one address are answered ever more slowly. The
 * token never appears in a log line, an error or a reply.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Failures remembered per address, at most; the oldest record goes first. */
const MAX_TRACKED = 10_000;
/** A record of failures is forgotten this long after the last one. */
const FORGET_MS = 10 * 60 * 1000;

/**
 * The server's token check, and the delays it imposes on addresses that keep failing it: see the file
 * comment. Holds only a SHA-256 digest of the token, and failure records for at most 10 000 addresses.
 */
export class TokenCheck {
  readonly #expected: Buffer;
  readonly #baseDelayMs: number;
  readonly #failures = new Map<string, { count: number; last: number }>();

  /**
   * `token`: the secret clients must present. `baseDelayMs`: the delay before answering a first failure,
   * doubled for each further one from the same address (within 10 minutes), at most 5000 ms.
   */
  constructor(token: string, baseDelayMs: number) {
    this.#expected = digest(token);
    this.#baseDelayMs = baseDelayMs;
  }

  /** True when `given` is the token. Hashing first makes the comparison length-independent. */
  matches(given: unknown): boolean {
    if (typeof given !== 'string') return false;
    return timingSafeEqual(digest(given), this.#expected);
  }

  /** Records a failure from `ip` at `now` (the server's clock); returns how long to wait before answering it. */
  failed(ip: string, now: number): number {
    const record = this.#failures.get(ip);
    const count = record && now - record.last < FORGET_MS ? record.count + 1 : 1;
    this.#failures.delete(ip);
    this.#failures.set(ip, { count, last: now });
    if (this.#failures.size > MAX_TRACKED) this.#failures.delete(this.#failures.keys().next().value!);
    return Math.min(5000, this.#baseDelayMs * 2 ** (count - 1));
  }

  /** A success clears the address's record. */
  succeeded(ip: string): void {
    this.#failures.delete(ip);
  }
}
