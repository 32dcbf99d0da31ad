/**
 * What `tcpkit put` does: upload files one after another over one kept connection (or one
 * each), with progress bars on a terminal.
 */
import path from 'node:path';
import { withRetries } from '../../client/retry.js';
import { withClient } from '../../client/short.js';
import { OptionError } from '../../errors.js';
import { validateName } from '../../services/files/names.js';
import { upload, type UploadResult } from '../../services/files/upload/client.js';
import { clientOptions, errorLine, exitCodeFor, ExitCode, fileError, safeText, type ClientFlags } from '../output.js';
import { sharedConnection } from '../connections.js';
import { createProgress, human } from '../progress.js';

/** The flags of `tcpkit put`, as commander parses them. */
export interface PutFlags extends ClientFlags {
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

/** Uploads each of `files` to the server at `address` (`tcpkit put`); sets the exit code when a file failed. */
export async function runPut(address: string, files: string[], flags: PutFlags): Promise<void> {
  const names = remoteNames(files, flags);
  const progress = await createProgress(process.stderr.isTTY === true && !flags.quiet && !flags.json);
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
}
