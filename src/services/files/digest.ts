/**
 * The content digests of the file services: XXH64 and XXH3-64 (both seed 0), native
 * (`@node-rs/xxhash`, napi-rs): each update hashes the caller's bytes in place, with no copy.
 *
 * The digest guards against corruption in transit and on disk, not against a hostile server
 * (which controls the content anyway; TLS and authentication answer that). At 64 bits an
 * undetected random corruption has a chance of 2^-64. XXH64 is what every tcpkit speaks;
 * XXH3-64 is faster and is used when both sides know it (docs/PROTOCOL.md §5.2, §5.3).
 * Measured figures: docs/PROTOCOL.md ("Why XXH3").
 */
import { Xxh64, xxh3 } from '@node-rs/xxhash';

/** Digest algorithms, by their name on the wire. */
export type DigestAlgorithm = 'xxh64' | 'xxh3';

/** The algorithm of a peer that names none (every tcpkit before XXH3). */
export const DEFAULT_DIGEST: DigestAlgorithm = 'xxh64';

/** Every algorithm this side computes, fastest first: the order a client asks for them in. */
export const DIGEST_ALGORITHMS: readonly DigestAlgorithm[] = Object.freeze(['xxh3', 'xxh64']);

/** The hello capability of a server that takes XXH3 uploads (docs/PROTOCOL.md §5.3). */
export const XXH3_CAPABILITY = 'digest:xxh3';

/** True when `name` is an algorithm this side computes. */
export function isDigestAlgorithm(name: unknown): name is DigestAlgorithm {
  return name === 'xxh64' || name === 'xxh3';
}

/** The algorithm of a digest value (`xxh3:…` → `xxh3`), or undefined when it names none known. */
export function digestAlgorithmOf(value: string): DigestAlgorithm | undefined {
  const name = value.slice(0, value.indexOf(':'));
  return isDigestAlgorithm(name) ? name : undefined;
}

/** An incremental digest. */
export interface Digest {
  /** The algorithm, as named on the wire. */
  readonly algorithm: DigestAlgorithm;
  /** Hashes `data` at once (it is not kept: the caller may reuse the buffer on return). */
  update(data: Uint8Array): void;
  /** `<algorithm>:` followed by 16 lower-case hex digits. Ends the digest. */
  value(): string;
}

/** A fresh digest of `algorithm` (XXH64 by default). */
export function createDigest(algorithm: DigestAlgorithm = DEFAULT_DIGEST): Digest {
  const hasher = algorithm === 'xxh3' ? xxh3.Xxh3.withSeed() : new Xxh64();
  return {
    algorithm,
    update(data) {
      hasher.update(data);
    },
    value() {
      return `${algorithm}:${hasher.digest().toString(16).padStart(16, '0')}`;
    },
  };
}
