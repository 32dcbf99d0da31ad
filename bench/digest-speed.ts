/**
 * `node dist/bench/digest-speed.js`: how fast the file services' digests hash, one core, 1 MiB
 * updates from one Buffer (what a DATA frame is), as MB/s (10^6 bytes) per algorithm: the
 * figures of docs/PROTOCOL.md ("Why XXH3"). Environment: `DIGEST_MIB` (MiB hashed per run,
 * default 2048), `DIGEST_RUNS` (runs, default 5; best, median and worst printed).
 */
import { randomFillSync } from 'node:crypto';
import { createDigest, type DigestAlgorithm } from '../src/services/files/digest.js';

const mib = Number(process.env.DIGEST_MIB ?? 2048);
const runs = Number(process.env.DIGEST_RUNS ?? 5);
const buffer = randomFillSync(Buffer.allocUnsafe(1024 * 1024));

/** MB/s of one run of `mib` updates of 1 MiB. */
function once(algorithm: DigestAlgorithm): number {
  const digest = createDigest(algorithm);
  const started = process.hrtime.bigint();
  for (let i = 0; i < mib; i++) digest.update(buffer);
  digest.value();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return (mib * buffer.length) / 1e6 / seconds;
}

for (const algorithm of ['xxh64', 'xxh3'] as const) {
  once(algorithm); // warm-up
  const rates = Array.from({ length: runs }, () => once(algorithm)).sort((a, b) => a - b);
  const show = (rate: number): string => Math.round(rate).toLocaleString('en-US');
  process.stdout.write(`${algorithm}: best ${show(rates.at(-1)!)} MB/s, median ${show(rates[Math.floor(runs / 2)]!)}, worst ${show(rates[0]!)} (${runs} runs of ${mib} MiB)\n`);
}
