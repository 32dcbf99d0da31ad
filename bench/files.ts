/**
 * The file download suite (the benchmark): a 1 GiB page-cached file downloaded to disk
 * and to /dev/null by tcpkit beside socat -b 1048576, nc and nginx (sendfile) + curl, and 10,000
 * files of 4 KiB over one kept connection by tcpkit beside curl + nginx over one keep-alive
 * connection; the 1 GiB file also by tcpkit over TLS beside tcpkit over plain TCP (disk and
 * /dev/null), and uploaded to the server's disk by `tcpkit put` beside socat (with and without a
 * `sync` of the stored file); with BENCH_BIG=1 also a 4 GiB file to disk (tcpkit and socat).
 * Every client is timed as a whole process, from spawn to exit (an upload by socat, until its
 * server has exited too); medians of BENCH_RUNS runs, ratios against socat (large files), curl +
 * nginx (small files) or plain TCP (TLS). Targets: 1 GiB to disk ≥ 1.0× socat; 10,000 small files
 * ≥ 5× curl + nginx; server and client peak RSS under 100 MiB.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  compareFiles,
  compareSmallFiles,
  emptyDir,
  fileDigest,
  freeBytes,
  makeWorkspace,
  openFileLimit,
  warmPageCache,
  writeRandomFile,
  writeSmallFiles,
} from './file-fixtures.js';
import {
  BIG_FILE_TOOLS,
  cliStartupSeconds,
  makeCertificate,
  SMALL_FILES_TOOLS,
  UPLOAD_TOOLS,
  type BigFileTool,
  type Sink,
  type ToolContext,
  type Transfer,
  type UploadTool,
} from './file-tools.js';
import { ensureCommands } from './peer-install.js';
import { killAll } from './processes.js';
import { compareRow, medianRate, type Measured, type ResultRow, type ResultTable, type Sample, type Suite, type SuiteContext, type SuiteResult } from './suite.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SMALL_COUNT = 10_000;
const SMALL_BYTES = 4096;
/** The targets. */
const DISK_TARGET = 1.0;
const SMALL_TARGET = 5;
const RSS_LIMIT_KIB = 100 * 1024;

/** One timed transfer, as the report keeps it. */
interface FileSample extends Sample {
  /** Whole client process, in seconds. */
  seconds: number;
  /** The client's own figure (tcpkit), in seconds. */
  inProcessSeconds?: number;
  clientRssKiB: number;
  serverRssKiB: number;
}

/**
 * The samples of one tool in one case. A failed run does not end the others: a tool that fails
 * now and then (a race, a resource limit) still shows its median, marked partial, and how often.
 */
class Side {
  readonly samples: FileSample[] = [];
  readonly failures: string[] = [];
  attempts = 0;
  skipped: string | undefined;

  get error(): string | undefined {
    if (this.failures.length === 0) return undefined;
    return `${this.failures.length} of ${this.attempts} runs failed (warm-up included); first: ${this.failures[0]}`;
  }

  result(rate: (sample: FileSample) => number | undefined = (sample) => sample.rate): Measured {
    const samples = this.samples.flatMap((sample) => {
      const value = rate(sample);
      return value === undefined ? [] : [{ ...sample, rate: value }];
    });
    const measured: Measured = { samples, median: medianRate(samples) };
    const error = this.error;
    if (error !== undefined) measured.error = error;
    return measured;
  }

  peak(key: 'clientRssKiB' | 'serverRssKiB'): number | undefined {
    return this.samples.length === 0 ? undefined : Math.max(...this.samples.map((sample) => sample[key]));
  }
}

function mib(kib: number | undefined): string {
  return kib === undefined ? '—' : `${(kib / 1024).toFixed(0)} MiB`;
}

/** What CPU time is counted per: a GiB (large files) or 1,000 files (small files). */
interface Work {
  unit: string;
  /** How many units one run moves. */
  units: number;
}

function bytesOf(bytes: number): Work {
  return { unit: 'GiB', units: bytes / GiB };
}

function filesOf(count: number): Work {
  return { unit: '1,000 files', units: count / 1000 };
}

/** A run as a sample: `amount` (MB, files) per second, and what each side spent per unit of `work`. */
function toSample(transfer: Transfer, amount: number, work: Work): FileSample {
  const { client, server } = transfer;
  const sample: FileSample = {
    rate: amount / transfer.seconds,
    serverCpu: server.cpuSeconds / transfer.seconds,
    driverCpu: client.cpuSeconds / transfer.seconds,
    cpuPerUnit: {
      unit: work.unit,
      clientUser: client.userSeconds / work.units,
      clientSystem: client.systemSeconds / work.units,
      serverUser: server.userSeconds / work.units,
      serverSystem: server.systemSeconds / work.units,
    },
    seconds: transfer.seconds,
    clientRssKiB: transfer.client.peakRssKiB,
    serverRssKiB: transfer.server.peakRssKiB,
  };
  if (transfer.inProcessSeconds !== undefined) sample.inProcessSeconds = transfer.inProcessSeconds;
  return sample;
}

function describeSample(sample: FileSample, unit: string): string {
  const inProcess = sample.inProcessSeconds !== undefined ? `, in-process ${sample.inProcessSeconds.toFixed(2)} s` : '';
  const per = sample.cpuPerUnit;
  const spent =
    per === undefined
      ? ''
      : ` (s/${per.unit} user+sys: server ${per.serverUser.toFixed(2)}+${per.serverSystem.toFixed(2)}, client ${per.clientUser.toFixed(2)}+${per.clientSystem.toFixed(2)})`;
  return (
    `${Math.round(sample.rate).toLocaleString('en-US')} ${unit} (${sample.seconds.toFixed(2)} s${inProcess}; ` +
    `CPU server ${Math.round(sample.serverCpu * 100)}%, client ${Math.round(sample.driverCpu * 100)}%${spent}; ` +
    `peak RSS server ${mib(sample.serverRssKiB)}, client ${mib(sample.clientRssKiB)})`
  );
}

/** A tool of a case: its id, why it cannot run (if so), and one measured run. */
interface Contender {
  id: string;
  missing: string | undefined;
  /** One run; returns the sample (already verified). */
  run(): Promise<FileSample>;
}

/**
 * Runs each contender once unmeasured (the first write of a fresh file into the page cache is
 * often much slower on this kind of VM, whoever comes first), then `runs` times, rotating the
 * order so drift in machine load hits every tool alike.
 */
async function measureCase(context: SuiteContext, caseId: string, unit: string, contenders: readonly Contender[]): Promise<Map<string, Side>> {
  const sides = new Map(contenders.map((contender) => [contender.id, new Side()]));
  const attempt = async (contender: Contender, tag: string, keep: boolean): Promise<void> => {
    const side = sides.get(contender.id)!;
    if (side.skipped !== undefined) return;
    side.attempts++;
    try {
      const sample = await contender.run();
      if (keep) side.samples.push(sample);
      context.progress(`files/${caseId} ${contender.id} ${tag}: ${describeSample(sample, unit)}`);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      side.failures.push(message);
      context.progress(`files/${caseId} ${contender.id} ${tag}: FAILED: ${message}`);
    }
  };
  for (const contender of contenders) {
    if (contender.missing !== undefined) {
      sides.get(contender.id)!.skipped = contender.missing;
      context.progress(`files/${caseId} ${contender.id}: skipped: ${contender.missing}`);
    }
  }
  for (const contender of contenders) await attempt(contender, 'warm-up (not counted)', false);
  const { runs } = context.settings;
  for (let i = 0; i < runs; i++) {
    for (let j = 0; j < contenders.length; j++) await attempt(contenders[(i + j) % contenders.length]!, `run ${i + 1}/${runs}`, true);
  }
  return sides;
}

/** What the suite found out about its environment. */
interface Setup {
  context: ToolContext;
  /** Why a command is unavailable, by command name. */
  missing: Map<string, string>;
  notes: string[];
}

function missingFor(setup: Setup, commands: readonly string[]): string | undefined {
  const reasons = commands.flatMap((name) => {
    const why = setup.missing.get(name);
    return why === undefined ? [] : [`${name}: ${why}`];
  });
  return reasons.length === 0 ? undefined : reasons.join('; ');
}

/** A large-file case: one file, one kind of sink, every selected tool beside socat. */
interface BigCase {
  id: 'disk' | 'null' | 'big';
  title: string;
  name: string;
  bytes: number;
  sink: Sink['kind'];
  target: number | undefined;
  toolIds: ReadonlyArray<string>;
}

/** The large-file tools among `toolIds`, in {@link BIG_FILE_TOOLS} order. */
function bigTools(toolIds: readonly string[]): BigFileTool[] {
  return BIG_FILE_TOOLS.filter((tool) => toolIds.includes(tool.id));
}

/** How long one transfer of `bytes` may take before it is killed (at least a minute, 20 MB/s). */
function transferTimeoutMs(bytes: number): number {
  return Math.max(60_000, (bytes / 20e6) * 1000);
}

/**
 * Runs `body` with the output folder empty before and after: every run starts with nothing saved
 * (an upload's destination absent), and what it saved is removed at once (a deleted file's dirty
 * pages are dropped, never written back during a later run).
 */
async function inEmptyOut<T>(setup: Setup, body: () => Promise<T>): Promise<T> {
  const { out } = setup.context.workspace;
  await emptyDir(out);
  try {
    return await body();
  } finally {
    await emptyDir(out);
  }
}

/** One large-file tool as a contender: `file` downloaded to its sink, checked, the copy removed. */
function bigContender(setup: Setup, file: Pick<BigCase, 'name' | 'bytes' | 'sink'>, tool: BigFileTool): Contender {
  const { workspace } = setup.context;
  const source = path.join(workspace.served, file.name);
  const output = path.join(workspace.out, `${file.name}.copy`);
  return {
    id: tool.id,
    missing: missingFor(setup, tool.commands),
    run: () =>
      inEmptyOut(setup, async () => {
        const sink: Sink = file.sink === 'disk' ? { kind: 'disk', path: output } : { kind: 'null' };
        const transfer = await tool.fetch(setup.context, file.name, file.bytes, sink, transferTimeoutMs(file.bytes));
        if (sink.kind === 'disk') {
          const differs = await compareFiles(source, output);
          if (differs !== undefined) throw new Error(`${tool.label}: ${differs}`);
        }
        return toSample(transfer, file.bytes / 1e6, bytesOf(file.bytes));
      }),
  };
}

/** A tcpkit side's in-process rates (request to verified end), in MB/s; failures stay on its whole-process row. */
function inProcess(side: Side, bytes: number): Measured {
  const measured = side.result((sample) => (sample.inProcessSeconds !== undefined ? bytes / 1e6 / sample.inProcessSeconds : undefined));
  delete measured.error; // reported once, on the whole-process row
  return measured;
}

async function runBigCase(context: SuiteContext, setup: Setup, spec: BigCase): Promise<{ table: ResultTable; sides: Map<string, Side> }> {
  const tools = bigTools(spec.toolIds);
  const contenders = tools.map((tool) => bigContender(setup, spec, tool));
  for (const tool of tools) setup.notes.push(`${tool.label}, ${spec.id}: ${tool.describe(spec.sink)}`);
  const sides = await measureCase(context, spec.id, 'MB/s', contenders);
  const baseline = sides.get('socat')!;
  const rows: ResultRow[] = [];
  for (const tool of tools) {
    if (tool.id === 'socat') continue;
    const side = sides.get(tool.id)!;
    const tcpkitLabel = `${spec.sink === 'disk' ? 'tcpkit get' : 'tcpkit, get-null.js'} (whole process: Node start-up, connect, transfer)`;
    const label = side.skipped !== undefined ? `${tool.label} (skipped)` : tool.id === 'tcpkit' ? tcpkitLabel : tool.label;
    rows.push(compareRow(`files/${spec.id}-${tool.id}`, label, 'MB/s', side.result(), baseline.result(), tool.id === 'tcpkit' ? spec.target : undefined));
    if (tool.id === 'tcpkit' && side.samples.length > 0) {
      rows.push(compareRow(`files/${spec.id}-tcpkit-inproc`, 'tcpkit, in-process (request to verified end)', 'MB/s', inProcess(side, spec.bytes), baseline.result()));
    }
  }
  const size = spec.bytes >= GiB ? `${spec.bytes / GiB} GiB` : `${spec.bytes / MiB} MiB`;
  return {
    table: { title: `${size} file, page-cached, ${spec.title}`, subjectName: 'tool', baselineName: 'socat -b 1048576', target: spec.target, cpuUnit: 'GiB', rows },
    sides,
  };
}

/**
 * The 1 GiB file by tcpkit over TLS beside tcpkit over plain TCP, for each selected sink: the
 * same server and client, measured in the same case (rotating order), so the two differ only by
 * TLS; the ratio is TLS / plain. One table, a whole-process and an in-process row per sink, and
 * the peak RSS notes of each sink.
 */
async function runTlsCase(
  context: SuiteContext,
  setup: Setup,
  file: Pick<BigCase, 'name' | 'bytes'>,
  sinks: ReadonlyArray<Sink['kind']>,
): Promise<{ table: ResultTable; rss: string[] }> {
  const tools = bigTools(['tcpkit', 'tcpkit-tls']);
  const rows: ResultRow[] = [];
  const rss: string[] = [];
  for (const sink of sinks) {
    const caseId = `tls-${sink}`;
    for (const tool of tools) setup.notes.push(`${tool.label}, ${caseId}: ${tool.describe(sink)}`);
    const measured = await measureCase(context, caseId, 'MB/s', tools.map((tool) => bigContender(setup, { ...file, sink }, tool)));
    const plain = measured.get('tcpkit')!;
    const tls = measured.get('tcpkit-tls')!;
    const client = sink === 'disk' ? 'tcpkit get to disk' : 'get-null.js to /dev/null';
    const label = tls.skipped !== undefined ? `${client} (TLS skipped)` : `${client} (whole process: Node start-up, connect, handshake, transfer)`;
    rows.push(compareRow(`files/${caseId}`, label, 'MB/s', tls.result(), plain.result()));
    if (tls.samples.length > 0 || plain.samples.length > 0) {
      rows.push(compareRow(`files/${caseId}-inproc`, `${client}, in-process (request to verified end)`, 'MB/s', inProcess(tls, file.bytes), inProcess(plain, file.bytes)));
    }
    rss.push(...rssNotes(`1 GiB ${sink === 'disk' ? 'to disk' : 'to /dev/null'}, TLS beside plain`, measured));
  }
  return {
    table: {
      title: '1 GiB file, page-cached, tcpkit over TLS beside plain TCP (same server and client; XXH3 digest verified on both)',
      subjectName: 'TLS',
      baselineName: 'plain TCP',
      cpuUnit: 'GiB',
      rows,
    },
    rss,
  };
}

/**
 * One uploader as a contender: `file` (under the served folder) sent to a fresh server that
 * stores it under its name in the (empty) output folder; the stored file is compared with the
 * source (size, then bytes), the digest tcpkit reports with `digest`, and the file removed.
 */
function uploadContender(setup: Setup, file: Pick<BigCase, 'name' | 'bytes'>, tool: UploadTool, digest: string): Contender {
  const { workspace } = setup.context;
  const source = path.join(workspace.served, file.name);
  const stored = path.join(workspace.out, file.name);
  return {
    id: tool.id,
    missing: missingFor(setup, tool.commands),
    run: () =>
      inEmptyOut(setup, async () => {
        const transfer = await tool.push(setup.context, source, file.name, file.bytes, transferTimeoutMs(file.bytes));
        if (transfer.digest !== undefined && transfer.digest !== digest) {
          throw new Error(`${tool.label} reports ${transfer.digest}, the source's digest is ${digest}`);
        }
        const differs = await compareFiles(source, stored);
        if (differs !== undefined) throw new Error(`${tool.label}: stored ${differs}`);
        return toSample(transfer, file.bytes / 1e6, bytesOf(file.bytes));
      }),
  };
}

/**
 * The 1 GiB file uploaded to the server's disk by `tcpkit put` (into `tcpkit serve
 * --upload-dir`), beside socat (the baseline: no check, no fsync) and, when selected, socat
 * followed by `sync FILE DIR` (the same durability as tcpkit's). Two tables: every uploader
 * against plain socat, and tcpkit against socat + sync.
 */
async function runUploadCase(
  context: SuiteContext,
  setup: Setup,
  file: Pick<BigCase, 'name' | 'bytes'>,
  toolIds: readonly string[],
): Promise<{ tables: ResultTable[]; sides: Map<string, Side> }> {
  const tools = UPLOAD_TOOLS.filter((tool) => toolIds.includes(tool.id));
  const digest = await fileDigest(path.join(setup.context.workspace.served, file.name));
  for (const tool of tools) setup.notes.push(`${tool.label}, upload: ${tool.describe()}`);
  setup.notes.push(
    'Upload: each run starts with the destination absent (the output folder emptied; tcpkit never overwrites by default) and ends by deleting it; ' +
      `it counts once the stored file has the source's size and bytes, and tcpkit's reported digest is the source's (${digest}). ` +
      "tcpkit put is timed to its exit, which waits for the server's PUT_DONE (sent after the size + XXH3 check and the fsync of the file and its folder); " +
      'socat checks nothing and never fsyncs, so its upload ends when client and server have both exited, the file still in the page cache: ' +
      'socat + sync is the like-for-like baseline',
  );
  const sides = await measureCase(context, 'upload', 'MB/s', tools.map((tool) => uploadContender(setup, file, tool, digest)));
  const label = (id: string, text: string): string => (sides.get(id)?.skipped !== undefined ? `${text} (skipped)` : text);
  const socat = sides.get('socat')!.result();
  const tcpkit = sides.get('tcpkit');
  const synced = sides.get('socat-sync');
  const rows: ResultRow[] = [];
  const versusSync: ResultRow[] = [];
  const whole = 'tcpkit put (whole process: Node start-up, connect, transfer, server check + fsync)';
  const ownTime = 'tcpkit put, in-process (file open to PUT_DONE: stored, verified, fsynced)';
  if (tcpkit !== undefined) {
    rows.push(compareRow('files/upload-tcpkit', label('tcpkit', whole), 'MB/s', tcpkit.result(), socat));
    if (tcpkit.samples.length > 0) rows.push(compareRow('files/upload-tcpkit-inproc', ownTime, 'MB/s', inProcess(tcpkit, file.bytes), socat));
  }
  if (synced !== undefined) {
    rows.push(compareRow('files/upload-socat-sync', label('socat-sync', 'socat -b 1048576 + `sync FILE DIR` (fsync, no check)'), 'MB/s', synced.result(), socat));
  }
  if (tcpkit !== undefined && synced !== undefined) {
    // The same samples against the other baseline; failures are reported once, in the first table.
    const quiet = (measured: Measured): Measured => {
      delete measured.error;
      return measured;
    };
    versusSync.push(compareRow('files/upload-tcpkit-vs-sync', label('tcpkit', whole), 'MB/s', quiet(tcpkit.result()), quiet(synced.result())));
    if (tcpkit.samples.length > 0) {
      versusSync.push(compareRow('files/upload-tcpkit-inproc-vs-sync', ownTime, 'MB/s', inProcess(tcpkit, file.bytes), quiet(synced.result())));
    }
  }
  const tables: ResultTable[] = [
    { title: "1 GiB file, page-cached, uploaded to the server's disk", subjectName: 'tool', baselineName: 'socat -b 1048576 (no fsync)', cpuUnit: 'GiB', rows },
  ];
  if (versusSync.length > 0) {
    tables.push({
      title: '1 GiB upload, tcpkit beside socat + sync (both end with the file and its folder fsynced; only tcpkit checks size and digest)',
      subjectName: 'tcpkit put',
      baselineName: 'socat + sync',
      cpuUnit: 'GiB',
      rows: versusSync,
    });
  }
  return { tables, sides };
}

async function runSmallCase(
  context: SuiteContext,
  setup: Setup,
  names: readonly string[],
  toolIds: readonly string[],
): Promise<{ table: ResultTable; sides: Map<string, Side> }> {
  const { workspace } = setup.context;
  const tools = SMALL_FILES_TOOLS.filter((tool) => toolIds.includes(tool.id));
  const contenders: Contender[] = tools.map((tool) => ({
    id: tool.id,
    missing: missingFor(setup, tool.commands),
    run: () =>
      inEmptyOut(setup, async () => {
        const transfer = await tool.fetch(setup.context, names, workspace.out, 120_000);
        const differs = await compareSmallFiles(workspace.served, names, workspace.out);
        if (differs !== undefined) throw new Error(`${tool.label}: ${differs}`);
        return toSample(transfer, names.length, filesOf(names.length));
      }),
  }));
  for (const tool of tools) setup.notes.push(`${tool.label}, small: ${tool.describe()}`);
  const sides = await measureCase(context, 'small', 'files/s', contenders);
  const tcpkit = sides.get('tcpkit');
  const curl = sides.get('curl') ?? new Side();
  const rows: ResultRow[] = [];
  if (tcpkit !== undefined) {
    rows.push(compareRow('files/small-tcpkit', 'tcpkit get (whole process: Node start-up, connect, 10,000 files)', 'files/s', tcpkit.result(), curl.result(), SMALL_TARGET));
    // No in-process row here: `tcpkit get` runs at most 32 downloads at once, so no single
    // file's own time spans the batch, and the JSON lines give no batch time.
    const argv = names.reduce((sum, name) => sum + Buffer.byteLength(name) + 1, 0);
    const argMax = Number(spawnSync('getconf', ['ARG_MAX'], { encoding: 'utf8' }).stdout?.trim());
    setup.notes.push(
      `tcpkit get is given all ${names.length.toLocaleString('en-US')} names in one run: ${Math.round(argv / 1024)} KiB of arguments` +
        (Number.isFinite(argMax) ? ` (ARG_MAX ${Math.round(argMax / 1024)} KiB)` : '') +
        `; soft open-file limit ${String(openFileLimit() ?? 'unknown')}`,
    );
  }
  return {
    table: {
      title: `${names.length.toLocaleString('en-US')} files of ${SMALL_BYTES / 1024} KiB over one kept connection`,
      subjectName: 'tcpkit',
      baselineName: 'curl + nginx',
      target: SMALL_TARGET,
      cpuUnit: '1,000 files',
      rows,
    },
    sides,
  };
}

/** Peak RSS lines for the report, per case. */
function rssNotes(caseLabel: string, sides: Map<string, Side>): string[] {
  const lines: string[] = [];
  const tcpkit = sides.get('tcpkit');
  if (tcpkit !== undefined && tcpkit.samples.length > 0) {
    const server = tcpkit.peak('serverRssKiB')!;
    const client = tcpkit.peak('clientRssKiB')!;
    const verdict = server < RSS_LIMIT_KIB && client < RSS_LIMIT_KIB ? 'both under 100 MiB' : 'NOT both under 100 MiB';
    lines.push(`Peak RSS, ${caseLabel}, tcpkit (highest of its runs): server ${mib(server)}, client ${mib(client)}: ${verdict}`);
  }
  const others = [...sides.entries()]
    .filter(([id, side]) => id !== 'tcpkit' && side.samples.length > 0)
    .map(([id, side]) => `${id} server ${mib(side.peak('serverRssKiB'))} / client ${mib(side.peak('clientRssKiB'))}`);
  if (others.length > 0) lines.push(`Peak RSS, ${caseLabel}, others: ${others.join('; ')}`);
  return lines;
}

function wants(context: SuiteContext, caseId: string, toolIds: readonly string[]): string[] {
  return toolIds.filter((id) => context.selected(`files/${caseId}-${id}`));
}

async function run(context: SuiteContext): Promise<SuiteResult> {
  const only = context.settings.only;
  const bigWanted = process.env.BENCH_BIG === '1' || only.some((token) => token.startsWith('files/big'));
  const disk = wants(context, 'disk', ['tcpkit', 'nc', 'nginx']);
  const toNull = wants(context, 'null', ['tcpkit', 'nc', 'nginx']);
  const tlsSinks = (['disk', 'null'] as const).filter((sink) => context.selected(`files/tls-${sink}`));
  const upload = wants(context, 'upload', ['tcpkit', 'socat-sync']);
  const small = wants(context, 'small', ['tcpkit']);
  const big = bigWanted ? wants(context, 'big', ['tcpkit']) : [];
  const notes: string[] = [];
  const tables: ResultTable[] = [];
  const method = [
    'Every server on 127.0.0.1 on a free port, started before and stopped after each run (not timed); each client timed as a whole process, from spawn to exit, its CPU time and peak RSS taken by GNU time',
    "tcpkit's whole-process figure therefore includes Node's start-up and loading the CLI, and connect + hello; the in-process row is tcpkit's own figure from the same runs",
    'Each tool runs once unmeasured first, then BENCH_RUNS times in rotating order; the table shows medians. MB = 10^6 bytes',
    'Checked after every run: outputs on disk (and uploads stored by the server) compared byte for byte with the source; /dev/null rows: exit status, plus the byte count tcpkit (after verifying its XXH3 digest) and curl report; small files: all compared, and curl made exactly 1 connection',
    'client / server CPU s/GiB user+sys (per 1,000 files in the small-files table): median user and median system CPU seconds of the client process and of the server over the run, per GiB moved; ' +
      "server and client clocks from GNU time (%U, %S) or /proc/PID/stat (utime, stime); the in-process rows repeat the whole-process CPU figures of the same runs",
    "% of a core srv/cli: server / client CPU over the client's run; `server-bound`/`client-bound`: that side used ≥ 90% of a core",
  ];
  const workspace = await makeWorkspace();
  const onSignal = (): void => {
    killAll();
    rmSync(workspace.root, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const found = await ensureCommands(
      ['socat', 'nc', 'nginx', 'curl', 'time', ...(tlsSinks.length > 0 ? ['openssl'] : []), ...(upload.includes('socat-sync') ? ['sync'] : [])],
      context.progress,
    );
    const commands = new Map<string, string>();
    const missing = new Map<string, string>();
    for (const [name, where] of found) {
      if ('path' in where) commands.set(name, where.path);
      else missing.set(name, where.missing);
    }
    const ncPath = commands.get('nc');
    if (ncPath !== undefined && !/OpenBSD/.test(`${spawnSync(ncPath, ['-h'], { encoding: 'utf8' }).stderr ?? ''}`)) {
      commands.delete('nc');
      missing.set('nc', 'the installed nc is not netcat-openbsd (needs -N and -d)');
    }
    for (const [name, why] of missing) if (name !== 'time') notes.push(`Skipped ${name}: ${why}`);
    if (!commands.has('time')) notes.push('GNU time missing: CPU time and peak RSS of clients read from /proc every 10 ms instead (the last few ms are missed)');
    const plain: ToolContext = { commands, workspace, serverNodeArgs: context.settings.serverNodeArgs };
    // One certificate per bench run; without openssl the TLS side is skipped, and says why.
    const tls = tlsSinks.length > 0 && commands.has('openssl') ? await makeCertificate(plain) : undefined;
    const setup: Setup = { context: tls !== undefined ? { ...plain, tls } : plain, missing, notes };

    const free = await freeBytes(workspace.root);
    const startup = await cliStartupSeconds(setup.context);
    notes.push(
      `Files in ${workspace.root} (${(free / GiB).toFixed(0)} GiB free); RAM ${(os.totalmem() / GiB).toFixed(0)} GiB; ` +
        `tcpkit CLI start-up (\`tcpkit --version\`, whole process, median): ${startup.tcpkit.toFixed(3)} s, bare \`node -e 0\` ${startup.node.toFixed(3)} s`,
    );
    // Source and one copy at a time, plus room to spare; a case without room is skipped, and says so.
    const room = (bytes: number, what: string): boolean => {
      if (free >= 2 * bytes + 512 * MiB) return true;
      notes.push(`Skipped ${what}: needs ${((2 * bytes + 512 * MiB) / GiB).toFixed(1)} GiB free in ${os.tmpdir()}, has ${(free / GiB).toFixed(1)} GiB`);
      return false;
    };
    const bigFile = disk.length + toNull.length + tlsSinks.length + upload.length > 0 && room(GiB, 'the 1 GiB rows');
    if (big.length > 0 && !room(4 * GiB, 'the 4 GiB row')) big.length = 0;

    const rss: string[] = [];
    if (bigFile) {
      context.progress('writing a 1 GiB file of random bytes and reading it once into the page cache');
      await writeRandomFile(path.join(workspace.served, 'big.bin'), GiB);
      await warmPageCache(path.join(workspace.served, 'big.bin'));
      for (const [id, tools, title] of [
        ['disk', disk, 'downloaded to disk'],
        ['null', toNull, 'downloaded to /dev/null'],
      ] as const) {
        if (tools.length === 0) continue;
        const spec: BigCase = { id, title, name: 'big.bin', bytes: GiB, sink: id, target: id === 'disk' ? DISK_TARGET : undefined, toolIds: ['socat', ...tools] };
        const { table, sides } = await runBigCase(context, setup, spec);
        tables.push(table);
        rss.push(...rssNotes(`1 GiB ${title}`, sides));
      }
      if (tlsSinks.length > 0) {
        const { table, rss: tlsRss } = await runTlsCase(context, setup, { name: 'big.bin', bytes: GiB }, tlsSinks);
        tables.push(table);
        rss.push(...tlsRss);
      }
      if (upload.length > 0) {
        const { tables: uploadTables, sides } = await runUploadCase(context, setup, { name: 'big.bin', bytes: GiB }, ['socat', ...upload]);
        tables.push(...uploadTables);
        rss.push(...rssNotes("1 GiB uploaded to the server's disk", sides));
      }
      await rm(path.join(workspace.served, 'big.bin'), { force: true });
    }
    if (small.length > 0) {
      context.progress(`writing ${SMALL_COUNT.toLocaleString('en-US')} files of ${SMALL_BYTES} bytes`);
      const names = await writeSmallFiles(workspace.served, 'small', SMALL_COUNT, SMALL_BYTES);
      const { table, sides } = await runSmallCase(context, setup, names, ['curl', ...small]);
      tables.push(table);
      rss.push(...rssNotes(`${SMALL_COUNT.toLocaleString('en-US')} small files`, sides));
    }
    if (big.length > 0) {
      context.progress('writing a 4 GiB file of random bytes and reading it once into the page cache (BENCH_BIG=1)');
      await writeRandomFile(path.join(workspace.served, 'huge.bin'), 4 * GiB);
      await warmPageCache(path.join(workspace.served, 'huge.bin'));
      const spec: BigCase = { id: 'big', title: 'downloaded to disk (BENCH_BIG=1)', name: 'huge.bin', bytes: 4 * GiB, sink: 'disk', target: undefined, toolIds: ['socat', 'tcpkit'] };
      const { table, sides } = await runBigCase(context, setup, spec);
      tables.push(table);
      rss.push(...rssNotes('4 GiB to disk', sides));
    } else if (!bigWanted) {
      notes.push('The 4 GiB row (RSS target) is opt-in: BENCH_BIG=1 (needs ~8.5 GiB free and a few minutes)');
    }
    notes.push(...rss);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    killAll();
    await rm(workspace.root, { recursive: true, force: true });
  }
  return { name: 'files', title: 'File downloads', method: [...method, ...notes], tables };
}

/** The file download suite. */
export const filesSuite: Suite = {
  name: 'files',
  title: 'File downloads',
  run,
};
