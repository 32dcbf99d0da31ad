/**
 * What a benchmark suite is, what it reports, and the settings every suite shares (read once
 * from the environment). `run.ts` runs a list of suites; a new one (file downloads, ...) is one
 * more module implementing {@link Suite}.
 */

/** Settings of a benchmark run, from the environment. */
export interface BenchSettings {
  /** Measured time of each sample, in seconds (`BENCH_SECONDS`). @default 5 */
  seconds: number;
  /** Samples per row and server; the median is reported (`BENCH_RUNS`). @default 3 */
  runs: number;
  /** Load applied before each measured window, in seconds. @default 1 */
  warmupSeconds: number;
  /**
   * Which suites or rows run (`BENCH_ONLY`, comma-separated): a token selects a suite
   * (`messages`), a row (`messages/kept-1`) or a family of rows (`messages/kept`: kept-1 and
   * kept-16). @default [] (everything)
   */
  only: string[];
  /** Node flags for the server child, e.g. `--cpu-prof` (`BENCH_SERVER_NODE_ARGS`, space-separated). @default [] */
  serverNodeArgs: string[];
}

/** Defaults of {@link BenchSettings}, in one place. */
export const BENCH_DEFAULTS = Object.freeze({ seconds: 5, runs: 3, warmupSeconds: 1 });

function numberVar(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number, integer: boolean): number {
  const text = env[name]?.trim();
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new RangeError(`${name} must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max}, got "${text}"`);
  }
  return value;
}

/** Reads and checks the settings, naming the bad variable. */
export function readSettings(env: NodeJS.ProcessEnv): BenchSettings {
  const list = (name: string, separator: RegExp): string[] =>
    (env[name] ?? '')
      .split(separator)
      .map((token) => token.trim())
      .filter((token) => token !== '');
  return {
    seconds: numberVar(env, 'BENCH_SECONDS', BENCH_DEFAULTS.seconds, 0.1, 600, false),
    runs: numberVar(env, 'BENCH_RUNS', BENCH_DEFAULTS.runs, 1, 99, true),
    warmupSeconds: BENCH_DEFAULTS.warmupSeconds,
    only: list('BENCH_ONLY', /,/),
    serverNodeArgs: list('BENCH_SERVER_NODE_ARGS', /\s+/),
  };
}

/** What a suite gets from the runner. */
export interface SuiteContext {
  readonly settings: BenchSettings;
  /** Whether the row `suite/row` was selected by `BENCH_ONLY`. */
  selected(rowId: string): boolean;
  /** A progress line (the runner prints it on stderr, away from the tables). */
  progress(line: string): void;
}

/** One kind of load, measured against tcpkit and a baseline. */
export interface Suite {
  /** Short name, the first part of every row id. */
  readonly name: string;
  /** What it measures, for the report heading. */
  readonly title: string;
  run(context: SuiteContext): Promise<SuiteResult>;
}

/** One measured window. */
export interface Sample {
  /** Operations per second. */
  rate: number;
  /** CPU used by the server child during the window, as a fraction of one core. */
  serverCpu: number;
  /** CPU used by the load generator (this process) during the window, as a fraction of one core. */
  driverCpu: number;
  /** CPU seconds per unit of work, user and system, of each side (file suite). */
  cpuPerUnit?: CpuPerUnit;
}

/**
 * CPU seconds one run spent per unit of work (a GiB, 1,000 files), user and system, of the client
 * (the driver) and of the server: unlike the rate, nearly the same from run to run on a busy VM.
 */
export interface CpuPerUnit {
  /** What the seconds are per, e.g. `GiB` or `1,000 files`. */
  unit: string;
  clientUser: number;
  clientSystem: number;
  serverUser: number;
  serverSystem: number;
}

/** The samples of one row on one side, and their median. */
export interface Measured {
  samples: Sample[];
  /** Median rate; undefined when nothing was measured. */
  median: number | undefined;
  /** Why measuring stopped early, if it did. */
  error?: string;
}

/** One line of a result table: the subject beside its baseline. */
export interface ResultRow {
  /** `suite/row`, as `BENCH_ONLY` matches it. */
  id: string;
  label: string;
  /** Unit of the rates, e.g. `msg/s`. */
  unit: string;
  subject: Measured;
  baseline: Measured;
  /** subject / baseline medians. */
  ratio: number | undefined;
  /** ratio ≥ the table's target; undefined when the table has no target or a side is missing. */
  met: boolean | undefined;
}

/** One table of a suite's report. */
export interface ResultTable {
  title: string;
  /** Column heading of the measured side, e.g. `tcpkit`. */
  subjectName: string;
  /** Column heading of the side compared against, e.g. `bare`. */
  baselineName: string;
  /** Lowest acceptable subject/baseline ratio, when the issue sets one. */
  target?: number;
  /**
   * The unit of the samples' {@link CpuPerUnit} (file suite): the table then shows client and
   * server CPU seconds per unit, user + system, instead of server µs/op.
   */
  cpuUnit?: string;
  rows: ResultRow[];
}

/**
 * A table a suite lays out itself, for figures that are not rates of a subject against a
 * baseline with CPU columns (e.g. memory per connection). Rendered as given.
 */
export interface TextTable {
  title: string;
  headers: string[];
  rows: string[][];
  /** Lines printed under the table (verdicts, failures). */
  notes?: string[];
  /** A measurement behind the table failed (the runner should exit non-zero). */
  failed?: boolean;
  /** The raw figures behind the cells, for the JSON report. */
  data?: unknown;
}

/** What a suite reports. */
export interface SuiteResult {
  name: string;
  title: string;
  /** How the load was generated, one line each. */
  method: string[];
  tables: ResultTable[];
  /** Tables of other shapes, printed after {@link tables}. */
  textTables?: TextTable[];
}

/** Median of the rates (mean of the middle two for an even count). */
export function medianRate(samples: readonly Sample[]): number | undefined {
  if (samples.length === 0) return undefined;
  const rates = samples.map((sample) => sample.rate).sort((a, b) => a - b);
  const mid = rates.length >> 1;
  return rates.length % 2 === 1 ? rates[mid] : (rates[mid - 1]! + rates[mid]!) / 2;
}

/** Builds a row from both sides, with its ratio and verdict. */
export function compareRow(id: string, label: string, unit: string, subject: Measured, baseline: Measured, target?: number): ResultRow {
  const ratio =
    subject.median !== undefined && baseline.median !== undefined && baseline.median > 0 ? subject.median / baseline.median : undefined;
  return { id, label, unit, subject, baseline, ratio, met: ratio === undefined || target === undefined ? undefined : ratio >= target };
}
