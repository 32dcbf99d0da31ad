/**
 * Runs the built `tcpkit` command as a child process, as a user would.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { within } from './net.js';

/** The built CLI entry point (tests run from dist/test/, the CLI is dist/src/cli/main.js). */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `tcpkit ARGS`, feeding `input` on stdin, and waits (bounded) for it to exit. */
export async function runCli(
  args: string[],
  options: { input?: string; timeoutMs?: number; cwd?: string; env?: Record<string, string>; via?: string[] } = {},
): Promise<CliResult> {
  const running = startCli(args, options.cwd, options.env, options.via);
  running.child.stdin.end(options.input ?? '');
  return running.exit(options.timeoutMs ?? 20_000);
}

/** A long-running `tcpkit` process (a server) whose output the test reads as it comes. */
export interface RunningCli {
  child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stdout line matching `pattern` (bounded). */
  waitStdout(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
  waitStderr(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
  exit(ms?: number): Promise<CliResult>;
}

/**
 * Starts `tcpkit ARGS`. `via` is a command that execs the CLI in its place (such as
 * `nsenter --net=... --`: the CLI then runs inside a network namespace, with the same pid).
 */
export function startCli(args: string[], cwd?: string, env?: Record<string, string>, via: string[] = []): RunningCli {
  const argv = [...via, process.execPath, CLI, ...args];
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: 'pipe',
    ...(cwd && { cwd }),
    // TCPKIT_TOKEN from the test runner's own environment must not leak into the CLI under test.
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'TCPKIT_TOKEN')), ...env },
  });
  let out = '';
  let err = '';
  const waiters: Array<() => void> = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    out += text;
    wake();
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    err += text;
    wake();
  });
  const exited = new Promise<CliResult>((resolve) => {
    child.on('close', (code, signal) => {
      wake();
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  let done = false;
  void exited.then(() => {
    done = true;
  });
  const waitFor = (read: () => string, pattern: RegExp, ms: number): Promise<RegExpMatchArray> =>
    within(
      (async () => {
        for (;;) {
          const match = read().match(pattern);
          if (match) return match;
          if (done) throw new Error(`tcpkit exited before printing ${pattern}; stdout: ${out} stderr: ${err}`);
          await new Promise<void>((resolve) => waiters.push(resolve));
        }
      })(),
      ms,
      `output matching ${pattern}`,
    );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitStdout: (pattern, ms = 15_000) => waitFor(() => out, pattern, ms),
    waitStderr: (pattern, ms = 15_000) => waitFor(() => err, pattern, ms),
    exit: (ms = 20_000) =>
      within(exited, ms, 'tcpkit to exit').catch((error: unknown) => {
        child.kill('SIGKILL');
        throw error;
      }),
  };
}

/** Starts `tcpkit serve --port 0 ...` on loopback (a later `--port` in `extra` wins) and returns it with its real port. */
export async function startCliServer(extra: string[] = []): Promise<RunningCli & { port: number }> {
  const running = startCli(['serve', '--host', '127.0.0.1', '--port', '0', ...extra]);
  const match = await running.waitStdout(/^listening on 127\.0\.0\.1:(\d+)$/m);
  return Object.assign(running, { port: Number(match[1]) });
}
