/** Who is at the other end of a connection, and why it closed: shared by every session kind. */
import type { Socket } from 'node:net';
import { formatAddress, normalizeIp } from './address.js';

/** Who is at the other end, with IPv4-mapped IPv6 addresses shown as IPv4. */
export interface PeerInfo {
  readonly address: string;
  readonly port: number;
  /** `address:port`, IPv6 in brackets: what logs print. */
  readonly label: string;
}

/** Why a connection closed. `eof`: the peer closed cleanly; `reset`: the peer reset it; `local`: we closed it. */
export type CloseReason = 'eof' | 'reset' | 'error' | 'local';

/** The peer of a stream that is not a socket (an in-memory pair). */
export const MEMORY_PEER: PeerInfo = Object.freeze({ address: 'memory', port: 0, label: 'memory' });

/** Describes the peer of a socket (after `connect` on a client, at once on a server). */
export function peerOf(socket: Socket): PeerInfo {
  const address = normalizeIp(socket.remoteAddress ?? 'unknown');
  const port = socket.remotePort ?? 0;
  return { address, port, label: formatAddress(address, port) };
}
