/**
 * A fault-injecting TCP proxy on 127.0.0.1:0 (RELIABILITY.md §3.3): flips a byte, resets or
 * stalls the server-to-client direction after a number of bytes.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import { LOOPBACK } from './net.js';

export interface ProxyFaults {
  /** XOR 0xff into the byte at this offset of the server-to-client stream. */
  flipAt?: number;
  /** Reset both sides once this many server-to-client bytes went through. */
  resetAfter?: number;
  /** Close (FIN) the client side once this many server-to-client bytes went through. */
  endAfter?: number;
}

export interface FaultProxy {
  port: number;
  /** Server-to-client bytes forwarded so far, over all connections. */
  forwarded(): number;
  close(): Promise<void>;
}

export async function faultProxy(targetPort: number, faults: ProxyFaults): Promise<FaultProxy> {
  let forwarded = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ host: LOOPBACK, port: targetPort, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    let offset = 0;
    upstream.on('data', (chunk: Buffer) => {
      let data = chunk;
      if (faults.resetAfter !== undefined && offset + data.length > faults.resetAfter) {
        const keep = faults.resetAfter - offset;
        if (keep > 0) client.write(data.subarray(0, keep));
        forwarded += Math.max(0, keep);
        offset += Math.max(0, keep);
        client.resetAndDestroy();
        upstream.destroy();
        return;
      }
      if (faults.endAfter !== undefined && offset + data.length >= faults.endAfter) {
        const keep = faults.endAfter - offset;
        forwarded += keep;
        offset += keep;
        client.end(data.subarray(0, keep));
        upstream.destroy();
        return;
      }
      if (faults.flipAt !== undefined && faults.flipAt >= offset && faults.flipAt < offset + data.length) {
        data = Buffer.from(data);
        data[faults.flipAt - offset]! ^= 0xff;
      }
      offset += data.length;
      forwarded += data.length;
      if (!client.write(data)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
    upstream.on('end', () => client.end());
  });
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    forwarded: () => forwarded,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
