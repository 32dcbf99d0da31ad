/**
 * The tcpkit client of the file suite's "/dev/null" rows. `tcpkit get` always saves through a
 * partial file renamed into place, so it cannot write to /dev/null; this script downloads one
 * file with the library's `getFile` (each piece handed over as a view of the socket's memory,
 * never copied) over one kept connection, counts and drops the bytes, waits for the digest to be
 * verified, and prints one JSON line: bytes, in-process seconds (from the request
 * to the verified end, connect excluded), digest. With `--pin SHA256` it connects over TLS and
 * accepts only the certificate with that fingerprint (as `tcpkit get --pin` does).
 *
 * @example node dist/bench/get-null.js 127.0.0.1:7890 big.bin
 * @example node dist/bench/get-null.js 127.0.0.1:7890 big.bin --pin AB:CD:...
 */
import { connect, getFile } from '../src/index.js';

async function main(address: string, name: string, pin: string | undefined): Promise<void> {
  const client = await connect(address, { requestTimeoutMs: 60_000, ...(pin !== undefined && { tls: { pin } }) });
  try {
    const started = performance.now();
    let bytes = 0;
    const { digest } = await getFile(client, name, {
      data(piece) {
        bytes += piece.length;
      },
    });
    const seconds = (performance.now() - started) / 1000;
    process.stdout.write(`${JSON.stringify({ name, bytes, seconds, digest })}\n`);
  } finally {
    await client.close();
  }
}

const [address, name, flag, pin, ...extra] = process.argv.slice(2);
if (address === undefined || name === undefined || (flag !== undefined && (flag !== '--pin' || pin === undefined)) || extra.length > 0) {
  process.stderr.write('usage: get-null.js HOST:PORT NAME [--pin SHA256]\n');
  process.exitCode = 2;
} else {
  main(address, name, pin).catch((error: unknown) => {
    process.stderr.write(`get-null: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
