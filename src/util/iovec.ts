/** Lists of buffers as one run of bytes (the iovecs of `readv` and `writev`). */

/** Bytes in all of `buffers`. */
export function totalBytes(buffers: readonly Uint8Array[]): number {
  let total = 0;
  for (const buffer of buffers) total += buffer.length;
  return total;
}

/** `buffers` without their first `skip` bytes (views, no copy): what is left after a short read or write. */
export function afterBytes(buffers: readonly Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const buffer of buffers) {
    if (skip >= buffer.length) {
      skip -= buffer.length;
      continue;
    }
    out.push(skip > 0 ? buffer.subarray(skip) : buffer);
    skip = 0;
  }
  return out;
}
