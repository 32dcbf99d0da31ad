/**
 * How many bytes of a TCP socket's output the peer has not yet acknowledged: the kernel's view
 * of a slow reader. Node reports only what the kernel accepted from us, and Linux wakes a writer
 * only once a third of the send buffer (up to 4 MiB) is free: a peer taking 80 KB/s shows no
 * progress there for many seconds. The unacknowledged count (`tx_queue` of /proc/net/tcp, as
 * `ss` shows it) falls as soon as the peer reads and its window opens.
 *
 * Linux only (/proc); elsewhere, and for a socket whose descriptor is not at hand, the answer is
 * undefined and callers fall back to what Node reports. (A TLS socket's handle has the
 * descriptor of its TCP socket: its count is of TLS records, which is just as good.)
 */
import { readFileSync, readlinkSync } from 'node:fs';
import type { Socket } from 'node:net';

/** The kernel's table of a socket's family (a dual-stack listener's sockets are all IPv6). */
const TABLES = { IPv4: '/proc/net/tcp', IPv6: '/proc/net/tcp6' } as const;
/**
 * One reading of the tables serves every socket asking within this long: they are read only
 * when a blocked connection's deadline comes without progress, but a busy server can have many.
 */
const SNAPSHOT_MS = 100;

const snapshots = new Map<string, { at: number; queues: Map<string, number> }>();
/** False once /proc proved unreadable: not asked again. */
let available = process.platform === 'linux';

/** `tx_queue` of every TCP socket of one family in this network namespace, by inode. */
function readQueues(table: string): Map<string, number> {
  const queues = new Map<string, number>();
  let text: string;
  try {
    text = readFileSync(table, 'latin1');
  } catch {
    return queues; // no IPv6, for instance
  }
  // "sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode ..."
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || fields[0] === 'sl') continue;
    const queue = fields[4]!;
    queues.set(fields[9]!, Number.parseInt(queue.slice(0, queue.indexOf(':')), 16));
  }
  return queues;
}

/**
 * Bytes the kernel holds for `socket` that the peer has not acknowledged (sent and unsent), or
 * undefined when that cannot be known here. Synchronous: a read of /proc, shared by every call
 * within {@link SNAPSHOT_MS}.
 */
export function unacknowledgedBytes(socket: Socket, now: number): number | undefined {
  if (!available) return undefined;
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  let inode: string | undefined;
  try {
    inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
  } catch {
    available = false;
    return undefined;
  }
  if (inode === undefined) return undefined;
  const table = TABLES[socket.remoteFamily === 'IPv4' ? 'IPv4' : 'IPv6'];
  let snapshot = snapshots.get(table);
  if (snapshot === undefined || now - snapshot.at >= SNAPSHOT_MS || now < snapshot.at) {
    snapshot = { at: now, queues: readQueues(table) };
    snapshots.set(table, snapshot);
  }
  return snapshot.queues.get(inode);
}
