/**
 * The programs the file suite runs, each as a server and its client on 127.0.0.1: tcpkit
 * (`tcpkit serve` + `tcpkit get`, or `get-null.js` for /dev/null; over plain TCP, or over TLS with
 * a certificate from `tcpkit cert`), socat, nc (netcat-openbsd) and nginx (sendfile) + curl; and
 * the uploaders: `tcpkit put` to `tcpkit serve --upload-dir`, and socat (with or without a
 * `sync` of the stored file). A transfer starts the server (not timed), runs the client timed from
 * spawn to exit, reads what each side cost, and stops the server. What the client (or, for an
 * upload, the server) saved is checked by the suite afterwards.
 */
import { closeSync, openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Workspace } from './file-fixtures.js';
import { startNginx } from './nginx.js';
import { addCosts, costSince, Daemon, failure, freePort, runTimed, TimedProcess, waitListening, type ProcessCost, type RunOptions, type RunResult } from './processes.js';

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
  /** What the client process cost (user and system CPU time, peak RSS). */
  client: ProcessCost;
  /** Server CPU time (user and system) during the transfer, and the server's peak RSS. */
  server: ProcessCost;
  /** The client's own figure, when it reports one (tcpkit: from its request to the verified end). */
  inProcessSeconds?: number;
  /** Bytes (or files) the client says it received, when it says. */
  reported?: number;
  /** The digest the client reports (`tcpkit put`: the one the server checked and stored). */
  digest?: string;
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
  /** Node flags for `tcpkit serve` (`BENCH_SERVER_NODE_ARGS`, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`). */
  readonly serverNodeArgs?: readonly string[];
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

/** A program that uploads one large file to a server that stores it on disk. */
export interface UploadTool {
  /** Row id part and short name. */
  readonly id: 'tcpkit' | 'socat' | 'socat-sync';
  readonly label: string;
  readonly commands: readonly string[];
  /** How it runs, for the report (`PORT`, `FILE`, `OUTDIR`, `NAME` stand for the real values). */
  describe(): string;
  /**
   * Sends the local file `source` of `size` bytes to a fresh server, which stores it as `name` in
   * `context.workspace.out` (which must not hold `name` yet). Resolves once the upload is stored.
   */
  push(context: ToolContext, source: string, name: string, size: number, timeoutMs: number): Promise<Transfer>;
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
  return { result, server: costSince(before, after) };
}

/**
 * `tcpkit serve` of the served folder on 127.0.0.1, port 0 (over TLS with `tls`, and given `more`
 * flags), under the context's Node flags; resolves once it says where it listens.
 */
async function startTcpkit(context: ToolContext, tls?: TlsFiles, more: readonly string[] = []): Promise<{ daemon: Daemon; address: string }> {
  const tlsArgs = tls !== undefined ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : [];
  const argv = [...(context.serverNodeArgs ?? []), CLI, 'serve', context.workspace.served, '--host', '127.0.0.1', '--port', '0', '--quiet', ...tlsArgs, ...more];
  const daemon = Daemon.start(process.execPath, argv, 'tcpkit serve');
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
        ? `\`tcpkit serve DIR --host 127.0.0.1 --port 0 --quiet${over}\`; \`tcpkit get 127.0.0.1:PORT FILE -o OUT --force --quiet --json${pin}\` (XXH3-verified, partial file renamed into place)` +
          (tls ? '; CERT, KEY and SHA256 from one `tcpkit cert` per bench run' : '')
        : `\`tcpkit serve\` as above; \`node bench/get-null.js 127.0.0.1:PORT FILE${pin}\` (library \`getFile\`: pieces never copied, counted and dropped, digest verified)`,
    async fetch(context, name, size, sink, timeoutMs) {
      if (tls && context.tls === undefined) throw new Error('no TLS certificate was made for this run');
      const files = tls ? context.tls : undefined;
      const { daemon, address } = await startTcpkit(context, files);
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

/**
 * One-shot server (socat, nc) and its client, both timed; the server's cost is its whole life.
 * `served` is how the server ended (an upload is stored only once the server has exited).
 */
async function oneShot(
  server: TimedProcess,
  port: number,
  serverLabel: string,
  client: () => Promise<RunResult>,
  clientLabel: string,
): Promise<{ result: RunResult; server: ProcessCost; served: RunResult }> {
  try {
    await waitListening(port, serverLabel, () => server.alive);
    const result = check(await client(), clientLabel);
    const served = check(await server.done, serverLabel);
    return { result, server: served.cost, served };
  } finally {
    server.kill();
  }
}

/** socat's address syntax gives ':' ',' and '!' a meaning; the workspace paths never hold them. */
function forSocat(file: string): string {
  if (/[:,!]/.test(file)) throw new Error(`socat cannot be given a path with ':' ',' or '!': ${file}`);
  return file;
}

const socat: BigFileTool = {
  id: 'socat',
  label: 'socat -b 1048576',
  commands: ['socat'],
  describe: (sink) =>
    `\`socat -b 1048576 -u FILE:FILE TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr\`; \`socat -b 1048576 -u TCP:127.0.0.1:PORT ${sink === 'disk' ? 'CREATE:OUT' : 'OPEN:/dev/null'}\``,
  async fetch(context, name, _size, sink, timeoutMs) {
    const socatPath = command(context, 'socat');
    const file = forSocat(path.join(context.workspace.served, name));
    const target = forSocat(sink.kind === 'disk' ? sink.path : '/dev/null');
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

/** The largest file `tcpkit serve` takes by default (`--max-upload-size`); the bench passes the file's size when larger. */
const UPLOAD_CAP_DEFAULT = 1024 ** 3;

/**
 * `tcpkit put` to `tcpkit serve --upload-dir`: the server writes a hidden temporary file, checks
 * the size and XXH3 digest, fsyncs the file and its directory and links it into place before its
 * PUT_DONE, which the client waits for; the client's exit therefore ends the upload.
 */
const tcpkitUpload: UploadTool = {
  id: 'tcpkit',
  label: 'tcpkit put',
  commands: [],
  describe: () =>
    '`tcpkit serve DIR --upload-dir OUTDIR --host 127.0.0.1 --port 0 --quiet` (`--max-upload-size` only above 1 GiB); ' +
    '`tcpkit put 127.0.0.1:PORT FILE --as NAME --quiet --json` (the server checks size and XXH3, fsyncs the file and OUTDIR, ' +
    'then links it into place; the client exits on its PUT_DONE)',
  async push(context, source, name, size, timeoutMs) {
    const { workspace } = context;
    const cap = size > UPLOAD_CAP_DEFAULT ? ['--max-upload-size', String(size)] : [];
    const { daemon, address } = await startTcpkit(context, undefined, ['--upload-dir', workspace.out, ...cap]);
    try {
      const label = 'tcpkit put';
      const { result, server } = await whileServing(
        daemon,
        () => runTimed(process.execPath, [CLI, 'put', address, source, '--as', name, '--quiet', '--json'], timed(context, label, timeoutMs)),
        label,
      );
      const [line] = jsonLines(result.stdout, label);
      const bytes = Number(line?.bytes);
      if (bytes !== size || line?.name !== name) {
        throw new Error(`${label} reports storing ${String(line?.bytes)} bytes as ${String(line?.name)}, expected ${size} as ${name}`);
      }
      const seconds = Number(line?.seconds);
      const transfer: Transfer = { seconds: result.seconds, client: result.cost, server, reported: bytes, digest: String(line?.digest) };
      if (seconds > 0) transfer.inProcessSeconds = seconds;
      return transfer;
    } finally {
      await daemon.stop();
    }
  },
};

/**
 * socat pushing a file to a one-shot socat that writes it. No check and no fsync: the upload is
 * over when both have exited (the server once it has written the last byte into the page cache).
 * With `sync`, `sync FILE OUTDIR` (coreutils: fsync of each) runs as soon as they have, and the
 * upload is over when it exits: the same durability as tcpkit's, without the check.
 */
function socatUpload(sync: boolean): UploadTool {
  return {
    id: sync ? 'socat-sync' : 'socat',
    label: sync ? 'socat -b 1048576 + sync' : 'socat -b 1048576',
    commands: sync ? ['socat', 'sync'] : ['socat'],
    describe: () =>
      '`socat -b 1048576 -u TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr CREATE:OUTDIR/NAME`; `socat -b 1048576 -u FILE:FILE TCP:127.0.0.1:PORT`' +
      (sync
        ? "; then `sync OUTDIR/NAME OUTDIR` (fsync of the file and its folder); timed from the client's spawn to the exit of `sync`"
        : "; timed from the client's spawn to the later exit of client and server (no check, no fsync)"),
    async push(context, source, name, _size, timeoutMs) {
      const socatCommand = command(context, 'socat');
      const stored = forSocat(path.join(context.workspace.out, name));
      const port = await freePort();
      const server = new TimedProcess(
        socatCommand,
        ['-b', '1048576', '-u', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, `CREATE:${stored}`],
        timed(context, 'socat server', timeoutMs),
      );
      const { result, served } = await oneShot(
        server,
        port,
        'socat server',
        () => runTimed(socatCommand, ['-b', '1048576', '-u', `FILE:${forSocat(source)}`, `TCP:127.0.0.1:${port}`], timed(context, 'socat client', timeoutMs)),
        'socat client',
      );
      let ended = result.ended > served.ended ? result.ended : served.ended;
      let cost = served.cost;
      if (sync) {
        const synced = check(await runTimed(command(context, 'sync'), ['--', stored, context.workspace.out], timed(context, 'sync', timeoutMs)), 'sync');
        ended = synced.ended;
        cost = addCosts(cost, synced.cost);
      }
      return { seconds: Number(ended - result.started) / 1e9, client: result.cost, server: cost };
    },
  };
}

/** The uploaders: socat (the baseline) first, then socat + sync and tcpkit. */
export const UPLOAD_TOOLS: readonly UploadTool[] = [socatUpload(false), socatUpload(true), tcpkitUpload];

const tcpkitSmall: SmallFilesTool = {
  id: 'tcpkit',
  label: 'tcpkit get',
  commands: [],
  describe: () => '`tcpkit serve DIR`; one `tcpkit get 127.0.0.1:PORT NAME... -o OUTDIR --force --quiet --json` with every name (one kept connection, pipelined)',
  async fetch(context, names, outDir, timeoutMs) {
    const { daemon, address } = await startTcpkit(context);
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

/** Start-up runs of each command in {@link cliStartupSeconds}, interleaved. */
const STARTUP_RUNS = 7;

/**
 * Whole-process time of `tcpkit --version` (Node start-up plus loading the CLI's command table)
 * and of bare `node -e 0` beside it: medians of {@link STARTUP_RUNS} interleaved runs each.
 */
export async function cliStartupSeconds(context: ToolContext): Promise<{ tcpkit: number; node: number }> {
  const tcpkit: number[] = [];
  const node: number[] = [];
  for (let i = 0; i < STARTUP_RUNS; i++) {
    tcpkit.push(check(await runTimed(process.execPath, [CLI, '--version'], timed(context, 'tcpkit --version', 30_000)), 'tcpkit --version').seconds);
    node.push(check(await runTimed(process.execPath, ['-e', '0'], timed(context, 'node -e 0', 30_000)), 'node -e 0').seconds);
  }
  const median = (values: number[]): number => values.sort((a, b) => a - b)[values.length >> 1]!;
  return { tcpkit: median(tcpkit), node: median(node) };
}
