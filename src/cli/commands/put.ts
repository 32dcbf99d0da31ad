/**
 * `tcpkit put` (upload files to a server that accepts them, verified, atomic on the server): its
 * arguments, options and help. The work is in actions/put.ts, imported only when it runs.
 */
import type { Command } from 'commander';
import { DEFAULT_PORT } from '../../transport/address.js';
import type { PutFlags } from '../actions/put.js';
import { clientCommand, intArg } from '../output.js';

/** Adds `tcpkit put` to `program`: uploads each FILE to a server that accepts uploads. */
export function registerPut(program: Command): void {
  clientCommand(program.command('put'), 'give up when the server takes nothing for this long')
    .summary('upload files to a server that accepts uploads')
    .description(
      `Upload each FILE to the server at HOST[:PORT] (port ${DEFAULT_PORT} by default), which must accept uploads ` +
        '(`tcpkit serve --writable` or `--upload-dir`). A file is stored under its base name, or --as NAME, inside ' +
        "the server's upload directory (under --to DIR, which must exist there). The server writes to a hidden " +
        'temporary file and puts it under its name only once the size and the digest this side sends check out: a ' +
        'refused, cut or corrupt upload leaves nothing behind. An existing file is replaced only with --overwrite, ' +
        'and only if the server allows it (--allow-overwrite). Files go one after another over one kept connection; ' +
        '--short uses one connection per file. A file whose upload failed is sent whole again by --retries (uploads do not resume).',
    )
    .argument('<address>', 'HOST[:PORT] of the server')
    .argument('<file...>', 'local files to upload')
    .option('--as <name>', 'name on the server, for a single FILE (e.g. reports/2026.pdf)')
    .option('--to <dir>', 'directory on the server to store the files in (it must exist there)')
    .option('--overwrite', 'replace a file of the same name on the server, if the server allows it')
    .option('--short', 'one connection per file (short connections)')
    .option('--retries <n>', 'after a dropped connection or a BUSY server, reconnect and send the file again up to N times (with backoff)', intArg(0, 1000), 0)
    .option('--json', 'print one JSON line per file: file, name, bytes, digest, seconds, MB/s')
    .option('-q, --quiet', 'no progress bars and no summary lines')
    .action(async (address: string, files: string[], flags: PutFlags) => (await import('../actions/put.js')).runPut(address, files, flags));
}
