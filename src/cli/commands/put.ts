/**
 * `tcpkit put`: upload files to a server that accepts them (verified, atomic on the server).
 */
import path from 'node:path';
import type { Command } from 'commander';
import { withRetries } from '../../client/retry.js';
import { withClient } from '../../client/short.js';
import { OptionError } from '../../errors.js';
import { validateName } from '../../services/files/names.js';
import { upload, type UploadResult } from '../../services/files/upload/client.js';
import { DEFAULT_PORT } from '../../transport/address.js';
import { clientCommand, clientOptions, errorLine, exitCodeFor, ExitCode, fileError, intArg, safeText, type ClientFlags } from '../output.js';
import { sharedConnection } from '../connections.js';
import { createProgress, human } from '../progress.js';

interface PutFlags extends ClientFlags {
  as?: string;
  to?: string;
  overwrite?: boolean;
  short?: boolean;
  retries: number;
  json?: boolean;
  quiet?: boolean;
}

/** The name each FILE gets on the server: `--as`, or its base name, under `--to`. */
function remoteNames(files: string[], flags: PutFlags): string[] {
  if (flags.as !== undefined && files.length > 1) throw new OptionError('INVALID_OPTION', '--as names one file; with several, use --to DIR');
  const names = files.map((file) => {
    const base = flags.as ?? path.basename(file);
    return flags.to === undefined ? base : `${flags.to.replace(/\/+$/, '')}/${base}`;
  });
  const seen = new Set<string>();
  for (const name of names) {
    // The server checks too; checking here gives the error before anything is sent.
    validateName(name, { allowHidden: false });
    if (seen.has(name)) throw new OptionError('INVALID_OPTION', `two files would be stored as ${name}`);
    seen.add(name);
  }
  return names;
}

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
    .action(async (address: string, files: string[], flags: PutFlags) => {
      const names = remoteNames(files, flags);
      const progress = createProgress(process.stderr.isTTY === true && !flags.quiet && !flags.json);
      let exitCode: number = ExitCode.OK;
      const report = (file: string, result: UploadResult, seconds: number): void => {
        const mbps = seconds > 0 ? result.size / 1e6 / seconds : 0;
        if (flags.json) {
          const line = { file, name: result.name, bytes: result.size, digest: result.digest, seconds: Number(seconds.toFixed(3)), mbps: Number(mbps.toFixed(1)) };
          process.stdout.write(`${JSON.stringify(line)}\n`);
        } else if (!flags.quiet) {
          progress.say(`stored ${safeText(file)} -> ${safeText(result.name)} (${human(result.size)}, ${mbps.toFixed(1)} MB/s, ${result.digest} verified by the server)`);
        }
      };
      const options = clientOptions(flags);
      const shared = sharedConnection(address, options);
      try {
        for (const [i, file] of files.entries()) {
          const bar = progress.start(file);
          const started = performance.now();
          const uploadOptions = { overwrite: flags.overwrite === true, onProgress: (sent: number, size: number) => bar.update(sent, size) };
          try {
            const result = await withRetries(
              flags.retries,
              async () => {
                if (flags.short) return withClient(address, (client) => upload(client, file, names[i], uploadOptions), options);
                return upload(await shared.get(), file, names[i], uploadOptions);
              },
              (error, attempt, delay) => {
                if (!flags.quiet) progress.say(`${errorLine(fileError(file, error))}; retry ${attempt}/${flags.retries} in ${delay} ms`);
              },
            );
            bar.stop();
            report(file, result, (performance.now() - started) / 1000);
          } catch (error) {
            bar.stop();
            const failure = fileError(file, error);
            progress.say(errorLine(failure));
            if (exitCode === ExitCode.OK) exitCode = exitCodeFor(failure);
          }
        }
      } finally {
        progress.stop();
        await shared.close();
      }
      process.exitCode = exitCode;
    });
}
