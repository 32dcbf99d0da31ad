/**
 * The programs the file suite runs, each as a server and its client on 127.0.0.1: tcpkit
 * (`tcpkit serve` + `tcpkit get`, or `get-null.js` for /dev/null; over plain TCP, or over TLS with
 * a certificate from `tcpkit cert`), socat, nc (netcat-openbsd) and nginx (sendfile) + curl. A
 * transfer starts the server (not timed), runs the client timed from spawn to exit, reads what
 * each side cost, and stops the server. What the client saved is checked by the suite afterwards.
 */
import { closeSync, openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Workspace } from './file-fixtures.js';
import { startNginx } from './nginx.js';
import { Daemon, failure, freePort, runTimed, TimedProcess, waitListening, type ProcessCost, type RunOptions, type RunResult } from './processes.js';

/** The tcpkit CLI beside this benchmark's build (dist/ under `npm run bench`). */
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
/** The library client for /dev/null. */
const GET_NULL = fileURLToPath(new URL('./get-null.js', import.meta.url));

/** Where a client puts the bytes. */
export type Sink = { kind: 'disk'; path: string } | { kind: 'null' };

/** What one transfer measured. */
export interface Transfer {
  /** The client process, from spawn to exit, in seconds. */
  seconds: number;
  /** What the client process cost. */
  client: ProcessCost;
  /** Server CPU time during the transfer, and the server's peak RSS. */
  server: ProcessCost;
  /** The client's own figure, when it reports one (tcpkit: from its request to the verified end). */
  inProcessSeconds?: number;
  /** Bytes (or files) the client says it received, when it says. */
  reported?: number;
}

/** A certificate and key for `tcpkit serve --tls-cert/--tls-key`, and the fingerprint clients pin. */
export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  /** SHA-256 fingerprint, as `tcpkit cert` prints it (`--pin`). */
  readonly fingerprint: string;
}

/** What every run needs. */
export interface ToolContext {
  /** Paths of the commands found (socat, nc, nginx, curl, openssl). */
  readonly commands: ReadonlyMap<string, string>;
  readonly workspace: Workspace;
  /** The certificate of the TLS runs, made once per suite run ({@link makeCertificate}). */
  readonly tls?: TlsFiles;
}

/** Options of a timed client or one-shot server run in `context`. */
function timed(context: ToolContext, label: string, timeoutMs: number): RunOptions {
  return { label, timeoutMs, scratchDir: context.workspace.scratch, gnuTime: context.commands.get('time') };
}

/** A program that downloads one large file. */
export interface BigFileTool {
  /** Row id part and short name. */
  readonly id: 'tcpkit' | 'tcpkit-tls' | 'socat' | 'nc' | 'nginx';
  readonly label: string;
  /** Commands it needs besides node. */
  readonly commands: readonly string[];
  /** How it runs, for the report (`PORT`, `FILE`, `OUT` stand for the real values). */
  describe(sink: Sink['kind']): string;
  /** Downloads `name` (under the served folder) of `size` bytes to `sink`. */
  fetch(context: ToolContext, name: string, size: number, sink: Sink, timeoutMs: number): Promise<Transfer>;
}

/** A program that downloads many small files over one connection. */
export interface SmallFilesTool {
  readonly id: 'tcpkit' | 'curl';
  readonly label: string;
  readonly commands: readonly string[];
  describe(): string;
  /** Downloads every name into `outDir` (saved under its base name). */
  fetch(context: ToolContext, names: readonly string[], outDir: string, timeoutMs: number): Promise<Transfer>;
}

/** The path of a command the suite found, or an error naming it. */
export function command(context: ToolContext, name: string): string {
  const where = context.commands.get(name);
  if (where === undefined) throw new Error(`${name} is not installed`);
  return where;
}

function check(result: RunResult, label: string): RunResult {
  const why = failure(result, label);
  if (why !== undefined) throw new Error(why);
  return result;
}

/** Runs `client` while `daemon` serves, and charges the server the CPU it used meanwhile. */
async function whileServing(daemon: Daemon, client: () => Promise<RunResult>, label: string): Promise<{ result: RunResult; server: ProcessCost }> {
  const before = daemon.cost();
  const result = check(await client(), label);
  const after = daemon.cost();
  return { result, server: { cpuSeconds: after.cpuSeconds - before.cpuSeconds, peakRssKiB: after.peakRssKiB } };
}

/** `tcpkit serve` on 127.0.0.1, port 0 (over TLS with `tls`); resolves once it says where it listens. */
async function startTcpkit(served: string, tls?: TlsFiles): Promise<{ daemon: Daemon; address: string }> {
  const tlsArgs = tls !== undefined ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : [];
  const daemon = Daemon.start(process.execPath, [CLI, 'serve', served, '--host', '127.0.0.1', '--port', '0', '--quiet', ...tlsArgs], 'tcpkit serve');
  try {
    const line = await daemon.firstLine();
    const match = /^listening on (\S+)$/.exec(line);
    if (match === null) throw new Error(`tcpkit serve said "${line}", not "listening on HOST:PORT"`);
    return { daemon, address: match[1]! };
  } catch (error) {
    await daemon.stop('SIGKILL');
    throw error;
  }
}

/** The JSON lines a tcpkit client printed. */
function jsonLines(stdout: string, label: string): Array<Record<string, unknown>> {
  try {
    return stdout
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  } catch {
    throw new Error(`${label} printed something that is not JSON lines: ${stdout.slice(0, 200)}`);
  }
}

/**
 * tcpkit on one large file: `tcpkit serve` + `tcpkit get` (disk) or `get-null.js` (/dev/null).
 * With `tls`, the same server and client over TLS, the client pinning the certificate of
 * `context.tls`: nothing else differs, the digest check included.
 */
function tcpkitBigTool(tls: boolean): BigFileTool {
  const over = tls ? ' --tls-cert CERT --tls-key KEY' : '';
  const pin = tls ? ' --pin SHA256' : '';
  return {
    id: tls ? 'tcpkit-tls' : 'tcpkit',
    label: tls ? 'tcpkit over TLS' : 'tcpkit',
    commands: tls ? ['openssl'] : [],
    describe: (sink) =>
      sink === 'disk'
        ? `\`tcpkit serve DIR --host 127.0.0.1 --port 0 --quiet${over}\`; \`tcpkit get 127.0.0.1:PORT FILE -o OUT --force --quiet --json${pin}\` (XXH64-verified, partial file renamed into place)` +
          (tls ? '; CERT, KEY and SHA256 from one `tcpkit cert` per bench run' : '')
        : `\`tcpkit serve\` as above; \`node bench/get-null.js 127.0.0.1:PORT FILE${pin}\` (library \`getStream\`, body dropped, digest verified)`,
    async fetch(context, name, size, sink, timeoutMs) {
      if (tls && context.tls === undefined) throw new Error('no TLS certificate was made for this run');
      const files = tls ? context.tls : undefined;
      const { daemon, address } = await startTcpkit(context.workspace.served, files);
      try {
        const pinArgs = files !== undefined ? ['--pin', files.fingerprint] : [];
        const args =
          sink.kind === 'disk'
            ? [CLI, 'get', address, name, '-o', sink.path, '--force', '--quiet', '--json', ...pinArgs]
            : [GET_NULL, address, name, ...pinArgs];
        const label = `${sink.kind === 'disk' ? 'tcpkit get' : 'get-null'}${tls ? ' (TLS)' : ''}`;
        const { result, server } = await whileServing(
          daemon,
          () => runTimed(process.execPath, args, timed(context, label, timeoutMs)),
          label,
        );
        const [line] = jsonLines(result.stdout, label);
        const seconds = Number(line?.seconds);
        const bytes = Number(line?.bytes);
        if (bytes !== size) throw new Error(`${label} reports ${String(line?.bytes)} bytes, expected ${size}`);
        return { seconds: result.seconds, client: result.cost, server, inProcessSeconds: seconds > 0 ? seconds : undefined, reported: bytes };
      } finally {
        await daemon.stop();
      }
    },
  };
}

/**
 * Makes the TLS runs' self-signed certificate with `tcpkit cert --out DIR` (which runs openssl)
 * and takes the paths and fingerprint it prints.
 */
export async function makeCertificate(context: ToolContext): Promise<TlsFiles> {
  const dir = path.join(context.workspace.scratch, 'tls');
  await mkdir(dir, { recursive: true });
  const result = check(await runTimed(process.execPath, [CLI, 'cert', '--out', dir], timed(context, 'tcpkit cert', 60_000)), 'tcpkit cert');
  const field = (name: string): string => {
    const value = new RegExp(`^${name}:\\s+(.+)$`, 'm').exec(result.stdout)?.[1]?.trim();
    if (value === undefined) throw new Error(`tcpkit cert printed no "${name}:" line: ${result.stdout.slice(0, 300)}`);
    return value;
  };
  return { cert: field('certificate'), key: field('key'), fingerprint: field('sha256') };
}

/** One-shot server (socat, nc) and its client, both timed; the server's cost is its whole life. */
async function oneShot(
  server: TimedProcess,
  port: number,
  serverLabel: string,
  client: () => Promise<RunResult>,
  clientLabel: string,
): Promise<{ result: RunResult; server: ProcessCost }> {
  try {
    await waitListening(port, serverLabel, () => server.alive);
    const result = check(await client(), clientLabel);
    const served = check(await server.done, serverLabel);
    return { result, server: served.cost };
  } finally {
    server.kill();
  }
}

const socat: BigFileTool = {
  id: 'socat',
  label: 'socat -b 1048576',
  commands: ['socat'],
  describe: (sink) =>
    `\`socat -b 1048576 -u FILE:FILE TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr\`; \`socat -b 1048576 -u TCP:127.0.0.1:PORT ${sink === 'disk' ? 'CREATE:OUT' : 'OPEN:/dev/null'}\``,
  async fetch(context, name, _size, sink, timeoutMs) {
    const socatPath = command(context, 'socat');
    const file = path.join(context.workspace.served, name);
    const target = sink.kind === 'disk' ? sink.path : '/dev/null';
    // socat's address syntax gives ':' and ',' a meaning; the workspace paths never hold them.
    if (/[:,!]/.test(file + target)) throw new Error(`socat cannot be given a path with ':' ',' or '!': ${file}`);
    const port = await freePort();
    const server = new TimedProcess(
      socatPath,
      ['-b', '1048576', '-u', `FILE:${file}`, `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`],
      timed(context, 'socat server', timeoutMs),
    );
    const { result, server: cost } = await oneShot(
      server,
      port,
      'socat server',
      () =>
        runTimed(
          socatPath,
          ['-b', '1048576', '-u', `TCP:127.0.0.1:${port}`, sink.kind === 'disk' ? `CREATE:${target}` : `OPEN:${target}`],
          timed(context, 'socat client', timeoutMs),
        ),
      'socat client',
    );
    return { seconds: result.seconds, client: result.cost, server: cost };
  },
};

const nc: BigFileTool = {
  id: 'nc',
  label: 'nc (netcat-openbsd)',
  commands: ['nc'],
  describe: (sink) => `\`nc -N -l 127.0.0.1 PORT < FILE\`; \`nc -d 127.0.0.1 PORT > ${sink === 'disk' ? 'OUT' : '/dev/null'}\` (-d: never reads stdin, so it never half-closes early)`,
  async fetch(context, name, _size, sink, timeoutMs) {
    const ncPath = command(context, 'nc');
    const port = await freePort();
    const input = openSync(path.join(context.workspace.served, name), 'r');
    const output = openSync(sink.kind === 'disk' ? sink.path : '/dev/null', 'w');
    try {
      const server = new TimedProcess(ncPath, ['-N', '-l', '127.0.0.1', String(port)], { ...timed(context, 'nc server', timeoutMs), stdinFd: input });
      const { result, server: cost } = await oneShot(
        server,
        port,
        'nc server',
        () => runTimed(ncPath, ['-d', '127.0.0.1', String(port)], { ...timed(context, 'nc client', timeoutMs), stdout: output }),
        'nc client',
      );
      return { seconds: result.seconds, client: result.cost, server: cost };
    } finally {
      closeSync(input);
      closeSync(output);
    }
  },
};

const nginxCurl: BigFileTool = {
  id: 'nginx',
  label: 'nginx (sendfile) + curl',
  commands: ['nginx', 'curl'],
  describe: (sink) =>
    `nginx (\`sendfile on; tcp_nopush on;\`, 1 worker) on 127.0.0.1:PORT; \`curl -sSf -o ${sink === 'disk' ? 'OUT' : '/dev/null'} http://127.0.0.1:PORT/FILE\``,
  async fetch(context, name, size, sink, timeoutMs) {
    const curlPath = command(context, 'curl');
    const { daemon, port } = await startNginx(command(context, 'nginx'), context.workspace.scratch, context.workspace.served);
    try {
      const { result, server } = await whileServing(
        daemon,
        () =>
          runTimed(
            curlPath,
            ['-sSf', '-o', sink.kind === 'disk' ? sink.path : '/dev/null', '-w', '%{size_download}', `http://127.0.0.1:${port}/${name}`],
            timed(context, 'curl', timeoutMs),
          ),
        'curl',
      );
      const bytes = Number(result.stdout.trim());
      if (bytes !== size) throw new Error(`curl reports ${result.stdout.trim()} bytes, expected ${size}`);
      return { seconds: result.seconds, client: result.cost, server, reported: bytes };
    } finally {
      await daemon.stop();
    }
  },
};

/** Every large-file tool, socat (the baseline) first; tcpkit over TLS runs only in the TLS case. */
export const BIG_FILE_TOOLS: readonly BigFileTool[] = [socat, tcpkitBigTool(false), tcpkitBigTool(true), nc, nginxCurl];

const tcpkitSmall: SmallFilesTool = {
  id: 'tcpkit',
  label: 'tcpkit get',
  commands: [],
  describe: () => '`tcpkit serve DIR`; one `tcpkit get 127.0.0.1:PORT NAME... -o OUTDIR --force --quiet --json` with every name (one kept connection, pipelined)',
  async fetch(context, names, outDir, timeoutMs) {
    const { daemon, address } = await startTcpkit(context.workspace.served);
    try {
      const { result, server } = await whileServing(
        daemon,
        () =>
          runTimed(process.execPath, [CLI, 'get', address, ...names, '-o', outDir, '--force', '--quiet', '--json'], timed(context, 'tcpkit get', timeoutMs)),
        'tcpkit get',
      );
      const lines = jsonLines(result.stdout, 'tcpkit get');
      if (lines.length !== names.length) throw new Error(`tcpkit get reported ${lines.length} files, expected ${names.length}`);
      return { seconds: result.seconds, client: result.cost, server, reported: lines.length };
    } finally {
      await daemon.stop();
    }
  },
};

const curlSmall: SmallFilesTool = {
  id: 'curl',
  label: 'curl + nginx',
  commands: ['nginx', 'curl'],
  describe: () =>
    'nginx as above; one `curl -sSf -w %{num_connects} -K LIST` whose LIST holds a `url =` and an `output =` line per file (curl reuses one keep-alive connection; the bench checks it opened exactly 1)',
  async fetch(context, names, outDir, timeoutMs) {
    const curlPath = command(context, 'curl');
    const { daemon, port } = await startNginx(command(context, 'nginx'), context.workspace.scratch, context.workspace.served);
    try {
      const list = path.join(context.workspace.scratch, 'curl-list.txt');
      const quote = (text: string): string => `"${text.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
      await writeFile(
        list,
        names.map((name) => `url = ${quote(`http://127.0.0.1:${port}/${name}`)}\noutput = ${quote(path.join(outDir, path.posix.basename(name)))}\n`).join(''),
      );
      const { result, server } = await whileServing(
        daemon,
        () => runTimed(curlPath, ['-sSf', '-w', '%{num_connects}\\n', '-K', list], timed(context, 'curl', timeoutMs)),
        'curl',
      );
      const counts = result.stdout.trim().split('\n').map(Number);
      const connects = counts.reduce((sum, count) => sum + count, 0);
      if (counts.length !== names.length) throw new Error(`curl reported ${counts.length} transfers, expected ${names.length}`);
      if (connects !== 1) throw new Error(`curl opened ${connects} connections for ${names.length} files, expected 1`);
      return { seconds: result.seconds, client: result.cost, server, reported: counts.length };
    } finally {
      await daemon.stop();
    }
  },
};

/** The small-files tools: curl + nginx (the baseline) and tcpkit. */
export const SMALL_FILES_TOOLS: readonly SmallFilesTool[] = [curlSmall, tcpkitSmall];

/** Whole-process time of `tcpkit --version`: Node start-up plus loading the CLI. */
export async function cliStartupSeconds(context: ToolContext): Promise<number> {
  const result = check(await runTimed(process.execPath, [CLI, '--version'], timed(context, 'tcpkit --version', 30_000)), 'tcpkit --version');
  return result.seconds;
}
