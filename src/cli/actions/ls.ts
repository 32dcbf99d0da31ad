/**
 * What `tcpkit ls` does: list a directory of the server's root.
 */
import { withClient } from '../../client/short.js';
import { list } from '../../services/files/download/client.js';
import { safeText, clientOptions, type ClientFlags } from '../output.js';

/** The flags of `tcpkit ls`, as commander parses them. */
export interface LsFlags extends ClientFlags {
  json?: boolean;
}

/** Lists `dir` on the server at `address`, one line (or JSON line) per entry. */
export async function runLs(address: string, dir: string, flags: LsFlags): Promise<void> {
  const listing = await withClient(address, (client) => list(client, dir), clientOptions(flags));
  for (const entry of listing.entries) {
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(entry)}\n`);
      continue;
    }
    const type = entry.type === 'directory' ? 'd' : entry.type === 'file' ? '-' : '?';
    const size = entry.type === 'directory' ? '-' : String(entry.size);
    const when = new Date(entry.mtimeMs).toISOString().slice(0, 16).replace('T', ' ');
    process.stdout.write(`${type} ${size.padStart(12)}  ${when}  ${safeText(entry.name)}${entry.type === 'directory' ? '/' : ''}\n`);
  }
  if (listing.truncated) process.stderr.write(`tcpkit: listing cut at ${listing.entries.length} entries by the server\n`);
}
