/**
 * Child processes of the file suite: run a command and time it from spawn to exit, with what it
 * cost (user and system CPU seconds, peak RSS) read from GNU time, or from /proc when GNU time is missing; keep a
 * server running and read its cost from /proc; wait for a port to listen; find a free port.
 * Every wait is bounded, and every process started here is killed if the suite is interrupted.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';

/** What a process cost. */
export interface ProcessCost {
  /** User + system CPU time, in seconds: always {@link userSeconds} + {@link systemSeconds}. */
  cpuSeconds: number;
  /** User CPU time (GNU time's %U, utime in /proc/PID/stat), in seconds. */
  userSeconds: number;
  /** System CPU time (GNU time's %S, stime in /proc/PID/stat), in seconds. */
  systemSeconds: number;
  /** Peak resident set size (VmHWM, `ru_maxrss`), in KiB; summed over a server's processes. */
  peakRssKiB: number;
}

/** Every process started here and not yet gone: killed by {@link killAll}. */
const live = new Set<ChildProcess>();

/** Kills every process this module started that is still running (interrupted or failed suite). */
export function killAll(): void {
  for (const child of live) {
    if (child.pid !== undefined) for (const pid of childrenOf(child.pid)) signal(pid, 'SIGKILL');
    child.kill('SIGKILL');
  }
  live.clear();
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
}

let clockTicks: number | undefined;

/** A cost from its user and system seconds. */
export function processCost(userSeconds: number, systemSeconds: number, peakRssKiB: number): ProcessCost {
  return { cpuSeconds: userSeconds + systemSeconds, userSeconds, systemSeconds, peakRssKiB };
}

/** What `later` cost beyond `earlier` (CPU time; the peak RSS is `later`'s). */
export function costSince(earlier: ProcessCost, later: ProcessCost): ProcessCost {
  return processCost(later.userSeconds - earlier.userSeconds, later.systemSeconds - earlier.systemSeconds, later.peakRssKiB);
}

/** Two costs as one: CPU times added, the higher peak RSS. */
export function addCosts(a: ProcessCost, b: ProcessCost): ProcessCost {
  return processCost(a.userSeconds + b.userSeconds, a.systemSeconds + b.systemSeconds, Math.max(a.peakRssKiB, b.peakRssKiB));
}

/** Clock ticks per second of the times in /proc/PID/stat. */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    const answer = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim());
    clockTicks = Number.isInteger(answer) && answer > 0 ? answer : 100;
  }
  return clockTicks;
}

/** Direct children of a process (nginx's workers, the program GNU time runs). */
export function childrenOf(pid: number): number[] {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8');
    return text
      .split(/\s+/)
      .filter((word) => word !== '')
      .map(Number);
  } catch {
    return [];
  }
}

/** CPU time and VmHWM of one live process from /proc, or undefined once it is gone. */
function readOne(pid: number): ProcessCost | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return processCost(Number(fields[11]) / ticksPerSecond(), Number(fields[12]) / ticksPerSecond(), hwm ? Number(hwm[1]) : 0);
  } catch {
    return undefined;
  }
}

/** Cost of a live process and its children so far, or undefined once it is gone. */
export function readCost(pid: number): ProcessCost | undefined {
  let total = readOne(pid);
  if (total === undefined) return undefined;
  for (const child of childrenOf(pid)) {
    const more = readOne(child);
    if (more === undefined) continue;
    total = processCost(total.userSeconds + more.userSeconds, total.systemSeconds + more.systemSeconds, total.peakRssKiB + more.peakRssKiB);
  }
  return total;
}

/** A free TCP port on 127.0.0.1, for programs that must be told a number (bind port 0, close). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether something listens on 127.0.0.1:port, from /proc/net/tcp (connecting would use up a one-shot server). */
async function listening(port: number): Promise<boolean> {
  const wanted = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const table = await readFile('/proc/net/tcp', 'utf8');
  return table.split('\n').some((line) => {
    const fields = line.trim().split(/\s+/);
    return fields[1] === wanted && fields[3] === '0A';
  });
}

/** Waits until 127.0.0.1:port listens; fails early if `alive()` turns false. */
export async function waitListening(port: number, what: string, alive: () => boolean, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await listening(port))) {
    if (!alive()) throw new Error(`${what} exited before listening on 127.0.0.1:${port}`);
    if (Date.now() > deadline) throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${limitMs} ms`);
    await sleep(5);
  }
}

/** How to run a timed process. */
export interface RunOptions {
  /** What the process is, for errors. */
  label: string;
  /** A file descriptor to read standard input from. @default nothing (`/dev/null`) */
  stdinFd?: number;
  /** A file descriptor to write standard output to, or `pipe` to collect it. @default 'pipe' */
  stdout?: number | 'pipe';
  /** The process is killed after this long. */
  timeoutMs: number;
  /** Folder for GNU time's report. */
  scratchDir: string;
  /** Path of GNU time, which reports exact CPU time and peak RSS (`ru_maxrss`); without it, /proc is polled. */
  gnuTime: string | undefined;
}

/** How a timed process ended. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** From spawn to exit, in seconds. */
  seconds: number;
  /** `process.hrtime.bigint()` just before the spawn and at the exit: to time several processes as one. */
  started: bigint;
  ended: bigint;
  cost: ProcessCost;
  stdout: string;
  /** The end of its standard error. */
  stderr: string;
}

const STDOUT_LIMIT = 16 * 1024 * 1024;
const STDERR_LIMIT = 64 * 1024;
let reports = 0;

/** One line saying why a finished process counts as failed, or undefined if it exited 0. */
export function failure(result: RunResult, label: string): string | undefined {
  if (result.code === 0) return undefined;
  const how = result.signal !== null ? `was killed (${result.signal})` : `exited ${String(result.code)}`;
  const said = result.stderr.trim().split('\n').slice(-3).join(' / ').slice(0, 400);
  return `${label} ${how}${said !== '' ? `: ${said}` : ''}`;
}

/**
 * A process timed from spawn to exit. Under GNU time (when installed) its CPU time and peak RSS
 * are exact; otherwise they are read from /proc every 10 ms while it runs (the last few
 * milliseconds of CPU time are then missed).
 */
export class TimedProcess {
  readonly #child: ChildProcess;
  readonly #wrapped: boolean;
  /** Resolves when the process has exited and its output is read. */
  readonly done: Promise<RunResult>;

  constructor(command: string, args: readonly string[], options: RunOptions) {
    this.#wrapped = options.gnuTime !== undefined;
    const report = path.join(options.scratchDir, `time-${process.pid}-${++reports}.txt`);
    const argv = options.gnuTime !== undefined ? [options.gnuTime, '-f', '%U %S %M', '-o', report, '--', command, ...args] : [command, ...args];
    const started = process.hrtime.bigint();
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: [options.stdinFd ?? 'ignore', options.stdout ?? 'pipe', 'pipe'],
    });
    this.#child = child;
    track(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      if (stdout.length < STDOUT_LIMIT) stdout += text;
    });
    child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      stderr = (stderr + text).slice(-STDERR_LIMIT);
    });
    let polled = processCost(0, 0, 0);
    const poller = this.#wrapped
      ? undefined
      : setInterval(() => {
          // A zombie's /proc/PID/status has no VmHWM any more: keep the highest readings.
          const now = child.pid === undefined ? undefined : readCost(child.pid);
          if (now !== undefined) {
            polled = processCost(
              Math.max(polled.userSeconds, now.userSeconds),
              Math.max(polled.systemSeconds, now.systemSeconds),
              Math.max(polled.peakRssKiB, now.peakRssKiB),
            );
          }
        }, 10);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.kill();
    }, options.timeoutMs);
    let ended = 0n;
    child.once('exit', () => {
      ended = process.hrtime.bigint();
    });
    this.done = new Promise<RunResult>((resolve, reject) => {
      child.once('error', (error) => {
        clearTimeout(timer);
        clearInterval(poller);
        reject(new Error(`${options.label}: cannot run ${command}: ${error.message}`));
      });
      child.once('close', (code, signalName) => {
        clearTimeout(timer);
        clearInterval(poller);
        ended ||= process.hrtime.bigint();
        const seconds = Number(ended - started) / 1e9;
        void this.#cost(report, polled).then((spent) => {
          if (timedOut) stderr += `\n(killed after ${options.timeoutMs} ms)`;
          resolve({ code, signal: signalName, seconds, started, ended, cost: spent, stdout, stderr });
        }, reject);
      });
    });
    // A one-shot server whose client failed first may never be awaited.
    this.done.catch(() => {});
  }

  /** Kills the measured program (not only GNU time around it). Idempotent. */
  kill(): void {
    const pid = this.#child.pid;
    if (pid === undefined || this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    if (this.#wrapped) for (const inner of childrenOf(pid)) signal(inner, 'SIGKILL');
    this.#child.kill('SIGKILL');
  }

  /** Whether the process still runs. */
  get alive(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  async #cost(report: string, polled: ProcessCost): Promise<ProcessCost> {
    if (!this.#wrapped) return polled;
    try {
      const text = await readFile(report, 'utf8');
      // GNU time prefixes "Command exited with non-zero status N" on a line of its own.
      const last = text.trim().split('\n').at(-1) ?? '';
      const [user, system, rss] = last.split(' ').map(Number);
      if (user === undefined || system === undefined || rss === undefined || [user, system, rss].some(Number.isNaN)) return polled;
      return processCost(user, system, rss);
    } catch {
      return polled;
    } finally {
      await rm(report, { force: true });
    }
  }
}

/** Runs a command to its end. */
export function runTimed(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  return new TimedProcess(command, args, options).done;
}

/** A server that serves one or more transfers, read from /proc while it runs. */
export class Daemon {
  readonly #child: ChildProcess;
  readonly #label: string;
  #stderr = '';
  readonly #lines: string[] = [];
  #lineWaiter: (() => void) | undefined;

  private constructor(child: ChildProcess, label: string) {
    this.#child = child;
    this.#label = label;
    let partial = '';
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      if (this.#lines.length < 100) this.#lines.push(...lines);
      this.#lineWaiter?.();
    });
    child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      this.#stderr = (this.#stderr + text).slice(-STDERR_LIMIT);
    });
    child.once('exit', () => this.#lineWaiter?.());
  }

  /** Starts `command`; its standard output is read line by line. */
  static start(command: string, args: readonly string[], label: string): Daemon {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    child.on('error', () => {});
    return new Daemon(child, label);
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  get alive(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null && this.#child.pid !== undefined;
  }

  /** The first line of standard output (tcpkit's `listening on HOST:PORT`). */
  async firstLine(limitMs = 10_000): Promise<string> {
    const deadline = Date.now() + limitMs;
    while (this.#lines.length === 0) {
      if (!this.alive) throw new Error(`${this.#label} exited before saying where it listens: ${this.#stderr.trim().slice(-500)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.#label} said nothing within ${limitMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#lineWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#lineWaiter = undefined;
    }
    return this.#lines[0]!;
  }

  /** User and system CPU time and peak RSS so far (with its children, e.g. nginx's worker). */
  cost(): ProcessCost {
    const now = readCost(this.pid);
    if (now === undefined) throw new Error(`${this.#label} is gone: ${this.#stderr.trim().slice(-500)}`);
    return now;
  }

  /** Sends `name` (SIGTERM by default) and waits for the exit; SIGKILL after `limitMs`. */
  async stop(name: NodeJS.Signals = 'SIGTERM', limitMs = 5_000): Promise<void> {
    if (!this.alive) return;
    const exited = once(this.#child, 'exit');
    this.#child.kill(name);
    const timer = setTimeout(() => {
      for (const pid of childrenOf(this.pid)) signal(pid, 'SIGKILL');
      this.#child.kill('SIGKILL');
    }, limitMs);
    await exited;
    clearTimeout(timer);
  }
}
