/**
 * `tcpkit get`: download files, verified, atomically, resumable; `tcpkit ls`: list a directory.
 */
import { stat as localStat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { ClientOptions } from '../../client/options.js';
import { withRetries } from '../../client/retry.js';
import { withClient } from '../../client/short.js';
import { OptionError, RemoteError } from '../../errors.js';
import { list } from '../../services/files/download/client.js';
import { download, type DownloadResult } from '../../services/files/download/save.js';
import { validateName } from '../../services/files/names.js';
import { rawDownload } from '../../raw/files.js';
import { DEFAULT_PORT } from '../../transport/address.js';
import { errorLine, exitCodeFor, ExitCode, fileError, intArg, safeText, clientCommand, clientOptions, type ClientFlags } from '../output.js';
import { sharedConnection } from '../connections.js';
import { createProgress, human } from '../progress.js';

/** Downloads in flight at once over one connection (more than a server serves at once). */
const CONCURRENT_FILES = 32;

interface GetFlags extends ClientFlags {
  raw?: boolean;
  output?: string;
  force?: boolean;
  short?: boolean;
  retries: number;
  json?: boolean;
  quiet?: boolean;
  resume: boolean;
}

/** Where each NAME is saved: its base name in the current directory, or under/at `-o`. */
async function destinations(names: string[], output: string | undefined): Promise<string[]> {
  let outputIsDir = false;
  if (output !== undefined) {
    try {
      outputIsDir = (await localStat(output)).isDirectory();
    } catch {
      outputIsDir = false;
    }
    if (names.length > 1 && !outputIsDir) {
      throw new OptionError('INVALID_OPTION', `-o ${output}: with several files, -o must be an existing directory`);
    }
  }
  const targets = names.map((name) => {
    const base = path.posix.basename(name);
    if (output === undefined) return base;
    return outputIsDir ? path.join(output, base) : output;
  });
  const seen = new Set<string>();
  for (const target of targets) {
    const key = path.resolve(target);
    if (seen.has(key)) throw new OptionError('INVALID_OPTION', `two files would be saved as ${target}`);
    seen.add(key);
  }
  return targets;
}

/** A person-readable reason for one failed download. */
function downloadError(name: string, error: unknown): unknown {
  if (error instanceof RemoteError && error.wireCode === 'NOT_FOUND') {
    return new RemoteError('NOT_FOUND', `no such file on server: ${name}`);
  }
  return fileError(name, error);
}

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
    .action(async (address: string, names: string[], flags: GetFlags) => {
      for (const name of names) validateName(name);
      const targets = await destinations(names, flags.output);
      const options: ClientOptions = clientOptions(flags);
      const progress = createProgress(process.stderr.isTTY === true && !flags.quiet && !flags.json);
      if (flags.raw) {
        let failures = 0;
        for (const [i, name] of names.entries()) {
          try {
            const result = await rawDownload(address, name, targets[i]!, { ...options, force: flags.force === true });
            const mbps = result.seconds > 0 ? result.bytes / 1e6 / result.seconds : 0;
            if (flags.json) {
              process.stdout.write(`${JSON.stringify({ name, bytes: result.bytes, digest: null, seconds: Number(result.seconds.toFixed(3)), mbps: Number(mbps.toFixed(1)), path: result.path })}\n`);
            } else if (!flags.quiet) {
              process.stderr.write(`saved ${safeText(name)} -> ${safeText(result.path)} (${human(result.bytes)}, ${mbps.toFixed(1)} MB/s, raw: not verified)\n`);
            }
          } catch (error) {
            failures++;
            process.stderr.write(`${errorLine(fileError(name, error))}\n`);
            if (process.exitCode === undefined) process.exitCode = exitCodeFor(error);
          }
        }
        if (failures > 0 && process.exitCode === undefined) process.exitCode = ExitCode.FAILED;
        return;
      }
      const say = progress.say;
      const shared = sharedConnection(address, options);
      let exitCode: number = ExitCode.OK;
      const report = (result: DownloadResult): void => {
        const mbps = result.seconds > 0 ? result.transferred / 1e6 / result.seconds : 0;
        if (flags.json) {
          process.stdout.write(
            `${JSON.stringify({
              name: result.name,
              bytes: result.bytes,
              digest: result.digest,
              seconds: Number(result.seconds.toFixed(3)),
              mbps: Number(mbps.toFixed(1)),
              path: result.path,
              resumedFrom: result.resumedFrom,
            })}\n`,
          );
        } else if (!flags.quiet) {
          const resumed = result.resumedFrom > 0 ? `, resumed at ${human(result.resumedFrom)}` : '';
          say(`saved ${safeText(result.name)} -> ${safeText(result.path)} (${human(result.bytes)}, ${mbps.toFixed(1)} MB/s${resumed}, ${result.digest} verified)`);
        }
      };
      const one = async (name: string, target: string): Promise<void> => {
        const bar = progress.start(name);
        const onProgress = ({ bytes, size }: { bytes: number; size: number | undefined }): void => bar.update(bytes, size);
        try {
          const result = await withRetries(
            flags.retries,
            async () => {
              const downloadOptions = { force: flags.force === true, resume: flags.resume, onProgress };
              if (flags.short) return withClient(address, (client) => download(client, name, target, downloadOptions), options);
              return download(await shared.get(), name, target, downloadOptions);
            },
            (error, attempt, delay) => {
              // "run again to resume" is what the retry is about to do: the line says the retry instead.
              if (!flags.quiet) say(`${errorLine(error).replace(/: run again to resume$/, '')}; retry ${attempt}/${flags.retries} in ${delay} ms`);
            },
          );
          bar.stop();
          report(result);
        } catch (error) {
          bar.stop();
          const failure = downloadError(name, error);
          say(errorLine(failure));
          if (exitCode === ExitCode.OK) exitCode = exitCodeFor(failure);
        }
      };
      try {
        // Pipelined, but at most CONCURRENT_FILES at once: each holds open files and buffers,
        // and 10,000 names must not need 20,000 file descriptors.
        let next = 0;
        const worker = async (): Promise<void> => {
          while (next < names.length) {
            const i = next++;
            await one(names[i]!, targets[i]!);
          }
        };
        await Promise.all(Array.from({ length: Math.min(CONCURRENT_FILES, names.length) }, worker));
      } finally {
        progress.stop();
        // A protocol error after the last reply (a second reply from a hostile server) is
        // reported: the files saved were verified, but the server is not to be trusted.
        await shared.close().catch((error: unknown) => {
          say(errorLine(error));
          if (exitCode === ExitCode.OK) exitCode = exitCodeFor(error);
        });
      }
      process.exitCode = exitCode;
    });
}

interface LsFlags extends ClientFlags {
  json?: boolean;
}

/** Adds `tcpkit ls` to `program`: lists a directory of the server's root (`--json`: one JSON line per entry). */
export function registerLs(program: Command): void {
  clientCommand(program.command('ls'), 'how long to wait for the reply')
    .summary('list a directory on the server')
    .description('List DIR (the served root by default) on the server at HOST[:PORT]: type, size, modification time, name.')
    .argument('<address>', 'HOST[:PORT] of the server')
    .argument('[dir]', 'directory on the server', '')
    .option('--json', 'print one JSON line per entry: name, type, size, mtimeMs')
    .action(async (address: string, dir: string, flags: LsFlags) => {
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
    });
}
