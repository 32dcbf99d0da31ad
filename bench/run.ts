/**
 * `npm run bench`: runs every benchmark suite, prints each one's tables (markdown) on stdout,
 * progress on stderr, and writes the results as JSON to `bench/results/latest.json`.
 *
 * Environment: `BENCH_SECONDS` (measured seconds per sample, default 5), `BENCH_RUNS` (samples
 * per row and server, median reported, default 3), `BENCH_ONLY` (comma-separated suite names or
 * row ids, e.g. `messages/short`, `files/disk`), `BENCH_SERVER_NODE_ARGS` (Node flags for the
 * server child, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`), `BENCH_BIG=1` (the file suite's
 * 4 GiB row).
 *
 * @example BENCH_SECONDS=2 BENCH_RUNS=1 BENCH_ONLY=messages/kept npm run bench
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VERSION } from '../src/index.js';
import { filesSuite } from './files.js';
import { idleSuite } from './idle.js';
import { messagesSuite } from './messages.js';
import { renderSuite } from './report.js';
import { readSettings, type BenchSettings, type Suite, type SuiteResult } from './suite.js';

/** Every suite, in the order they run. More plug in here. */
const SUITES: readonly Suite[] = [messagesSuite, filesSuite, idleSuite];

/** The package root: the nearest folder above this script holding a package.json. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
}

function selector(settings: BenchSettings): (rowId: string) => boolean {
  if (settings.only.length === 0) return () => true;
  // A token names a suite, a row, or a family of rows: `messages`, `messages/kept-1`, `messages/kept`.
  return (rowId) =>
    settings.only.some((token) => rowId === token || rowId.startsWith(`${token}/`) || rowId.startsWith(`${token}-`));
}

function environment(settings: BenchSettings): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    tcpkit: VERSION,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    loadAverage: os.loadavg().map((load) => load.toFixed(2)).join(' '),
    seconds: settings.seconds,
    runs: settings.runs,
    warmupSeconds: settings.warmupSeconds,
  };
}

async function main(): Promise<number> {
  const settings = readSettings(process.env);
  const selected = selector(settings);
  const suites = SUITES.filter((suite) => settings.only.length === 0 || settings.only.some((token) => token.split('/')[0] === suite.name));
  if (suites.length === 0) {
    console.error(`BENCH_ONLY=${settings.only.join(',')} selects no suite; suites: ${SUITES.map((suite) => suite.name).join(', ')}`);
    return 2;
  }
  const before = environment(settings);
  console.log('# tcpkit benchmark');
  console.log('');
  console.log(`- Node ${before.node}, ${before.platform}`);
  console.log(`- CPU: ${before.cpu} × ${before.cores}; load average at start: ${before.loadAverage}`);
  console.log(
    `- ${settings.seconds} s measured after ${settings.warmupSeconds} s warm-up, median of ${settings.runs} run(s) per row and server` +
      (settings.only.length > 0 ? `; BENCH_ONLY=${settings.only.join(',')}` : ''),
  );
  const started = Date.now();
  const results: SuiteResult[] = [];
  for (const suite of suites) {
    console.error(`[bench] ${suite.name}: ${suite.title}`);
    const result = await suite.run({
      settings,
      selected,
      progress: (line) => console.error(`[bench] ${line}`),
    });
    results.push(result);
    console.log('');
    for (const line of renderSuite(result)) console.log(line);
  }
  const loadAfter = os.loadavg().map((load) => load.toFixed(2)).join(' ');
  console.log('');
  console.log(`Load average at end: ${loadAfter}; took ${Math.round((Date.now() - started) / 1000)} s.`);

  const file = path.join(packageRoot(), 'bench', 'results', 'latest.json');
  await mkdir(path.dirname(file), { recursive: true });
  const report = { date: new Date(started).toISOString(), environment: { ...before, loadAverageAtEnd: loadAfter }, settings, suites: results };
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`Results: ${path.relative(process.cwd(), file) || file}`);

  const failed = results.some(
    (result) =>
      result.tables.some((table) => table.rows.some((row) => row.subject.error !== undefined || row.baseline.error !== undefined)) ||
      (result.textTables ?? []).some((table) => table.failed === true),
  );
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 1;
  },
);
