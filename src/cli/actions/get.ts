/**
 * What `tcpkit get` does: download files over one kept connection (or one each), verified,
 * atomically, resuming partial files, with progress bars on a terminal.
 */
import { stat as localStat } from 'node:fs/promises';
import path from 'node:path';
import type { ClientOptions } from '../../client/options.js';
import { withRetries } from '../../client/retry.js';
import { withClient } from '../../client/short.js';
import { OptionError, RemoteError } from '../../errors.js';
import { download, type DownloadResult } from '../../services/files/download/save.js';
import { validateName } from '../../services/files/names.js';
import { rawDownload } from '../../raw/files.js';
import { errorLine, exitCodeFor, ExitCode, fileError, safeText, clientOptions, type ClientFlags } from '../output.js';
import { sharedConnection } from '../connections.js';
import { createProgress, human } from '../progress.js';

/** Downloads in flight at once over one connection (more than a server serves at once). */
const CONCURRENT_FILES = 32;

/** The flags of `tcpkit get`, as commander parses them. */
export interface GetFlags extends ClientFlags {
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

/**
 * Lines written together once per turn of the event loop, not one write each: 10,000 small
 * files would otherwise cost 10,000 writes to stdout. `flush` writes what is pending now.
 */
function batchedLines(write: (text: string) => void): { push(line: string): void; flush(): void } {
  let pending: string[] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (pending.length === 0) return;
    const text = pending.join('');
    pending = [];
    write(text);
  };
  return {
    push(line) {
      pending.push(line);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    flush,
  };
}

/** A person-readable reason for one failed download. */
function downloadError(name: string, error: unknown): unknown {
  if (error instanceof RemoteError && error.wireCode === 'NOT_FOUND') {
    return new RemoteError('NOT_FOUND', `no such file on server: ${name}`);
  }
  return fileError(name, error);
}

/** Downloads each of `names` from `address` (`tcpkit get`); sets the exit code when a file failed. */
export async function runGet(address: string, names: string[], flags: GetFlags): Promise<void> {
  for (const name of names) validateName(name);
  const targets = await destinations(names, flags.output);
  const options: ClientOptions = clientOptions(flags);
  const bars = process.stderr.isTTY === true && !flags.quiet && !flags.json;
  const progress = await createProgress(bars);
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
  const lines = batchedLines((text) => process.stdout.write(text));
  const report = (result: DownloadResult): void => {
    const mbps = result.seconds > 0 ? result.transferred / 1e6 / result.seconds : 0;
    if (flags.json) {
      lines.push(
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
    // No bar to draw: no call per DATA frame.
    const onProgress = bars ? ({ bytes, size }: { bytes: number; size: number | undefined }): void => bar.update(bytes, size) : undefined;
    const downloadOptions = { force: flags.force === true, resume: flags.resume, onProgress };
    const attempt = async (): Promise<DownloadResult> => {
      if (flags.short) return withClient(address, (client) => download(client, name, target, downloadOptions), options);
      return download(await shared.get(), name, target, downloadOptions);
    };
    try {
      const result =
        flags.retries === 0
          ? await attempt()
          : await withRetries(flags.retries, attempt, (error, retry, delay) => {
              // "run again to resume" is what the retry is about to do: the line says the retry instead.
              if (!flags.quiet) say(`${errorLine(error).replace(/: run again to resume$/, '')}; retry ${retry}/${flags.retries} in ${delay} ms`);
            });
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
    lines.flush();
    progress.stop();
    // A protocol error after the last reply (a second reply from a hostile server) is
    // reported: the files saved were verified, but the server is not to be trusted.
    await shared.close().catch((error: unknown) => {
      say(errorLine(error));
      if (exitCode === ExitCode.OK) exitCode = exitCodeFor(error);
    });
  }
  process.exitCode = exitCode;
}
