/**
 * `tcpkit get` (download files, verified, atomically, resumable) and `tcpkit ls` (list a
 * directory): their arguments, options and help. The work is in actions/get.ts and
 * actions/ls.ts, imported only when the command runs.
 */
import type { Command } from 'commander';
import { DEFAULT_PORT } from '../../transport/address.js';
import type { GetFlags } from '../actions/get.js';
import type { LsFlags } from '../actions/ls.js';
import { intArg, clientCommand } from '../output.js';

/** Adds `tcpkit get` to `program`: downloads each NAME, verified, atomically, resuming a partial file. */
export function registerGet(program: Command): void {
  clientCommand(program.command('get'), 'give up when no data arrives for this long')
    .summary('download files (verified, atomic, resumable)')
    .description(
      `Download each NAME from the server at HOST[:PORT] (port ${DEFAULT_PORT} by default). A file is saved under its ` +
        'base name in the current directory, or at -o (a file path for one NAME, a directory for several). Bytes go to ' +
        'a hidden partial file beside the destination (.NAME.tcpkit-part) and are renamed into place only once the ' +
        "whole file matches the server's digest; on any failure the destination is untouched. An existing file is " +
        'never replaced without --force. Run the same command again after an interruption and it resumes from the ' +
        'partial file (if the file on the server is still the same version) and verifies the whole result. All files ' +
        'travel over one kept connection, pipelined; --short uses one connection per file.',
    )
    .argument('<address>', 'HOST[:PORT] of the server')
    .argument('<name...>', 'files to download, as named on the server (e.g. docs/a.txt)')
    .option('-o, --output <path>', 'destination file (one NAME) or directory (several)')
    .option('-f, --force', 'replace existing files')
    .option('--short', 'one connection per file (short connections)')
    .option('--raw', "talk to a server that speaks no framing (e.g. the tutorial's download_server.py): send the bare name, save everything until the server closes; no integrity check, no resume")
    .option('--retries <n>', 'after a dropped connection, reconnect and resume up to N times (with backoff)', intArg(0, 1000), 0)
    .option('--no-resume', 'ignore partial files from earlier runs and start over')
    .option('--json', 'print one JSON line per file: name, bytes, digest, seconds, MB/s, saved path')
    .option('-q, --quiet', 'no progress bars and no summary lines')
    .action(async (address: string, names: string[], flags: GetFlags) => (await import('../actions/get.js')).runGet(address, names, flags));
}

/** Adds `tcpkit ls` to `program`: lists a directory of the server's root (`--json`: one JSON line per entry). */
export function registerLs(program: Command): void {
  clientCommand(program.command('ls'), 'how long to wait for the reply')
    .summary('list a directory on the server')
    .description('List DIR (the served root by default) on the server at HOST[:PORT]: type, size, modification time, name.')
    .argument('<address>', 'HOST[:PORT] of the server')
    .argument('[dir]', 'directory on the server', '')
    .option('--json', 'print one JSON line per entry: name, type, size, mtimeMs')
    .action(async (address: string, dir: string, flags: LsFlags) => (await import('../actions/ls.js')).runLs(address, dir, flags));
}
