/**
 * Renders suite results as markdown tables: each row's rates, their ratio, whether the target
 * is met, the server's CPU time per operation (file tables: client and server CPU seconds per
 * GiB or per 1,000 files, user + system), and how busy each side was (which tells a
 * server-bound row from a driver-bound one).
 */
import type { Measured, ResultTable, Sample, SuiteResult, TextTable } from './suite.js';

function rate(measured: Measured, unit: string): string {
  if (measured.median === undefined) return measured.error !== undefined ? 'failed' : '—';
  const text = `${Math.round(measured.median).toLocaleString('en-US')} ${unit}`;
  return measured.error !== undefined ? `${text} (partial)` : text;
}

function middle(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A side that used at least this much of a core set the pace of its row. */
const SATURATED = 0.9;

/**
 * Median server / driver CPU of a side, in % of one core, and which one was saturated: a
 * driver-bound side could have gone faster with a faster load generator.
 */
function cpu(samples: readonly Sample[], compact = false): string {
  if (samples.length === 0) return '—';
  const server = middle(samples.map((sample) => sample.serverCpu));
  const driver = middle(samples.map((sample) => sample.driverCpu));
  const bound = server >= SATURATED ? ' server-bound' : driver >= SATURATED ? ` ${compact ? 'client' : 'driver'}-bound` : '';
  return compact ? `${Math.round(server * 100)}/${Math.round(driver * 100)}${bound}` : `${Math.round(server * 100)}% / ${Math.round(driver * 100)}%${bound}`;
}

/** Median user + median system CPU seconds per unit of one side (`client` or `server`), e.g. `0.61+1.02`. */
function cpuPerUnit(samples: readonly Sample[], side: 'client' | 'server'): string {
  const costs = samples.flatMap((sample) => (sample.cpuPerUnit === undefined ? [] : [sample.cpuPerUnit]));
  if (costs.length === 0) return '—';
  const user = middle(costs.map((cost) => (side === 'client' ? cost.clientUser : cost.serverUser)));
  const system = middle(costs.map((cost) => (side === 'client' ? cost.clientSystem : cost.serverSystem)));
  return `${user.toFixed(2)}+${system.toFixed(2)}`;
}

/** Median server CPU per operation, in microseconds: comparable even when a side was driver-bound. */
function costPerOp(samples: readonly Sample[]): string {
  const costs = samples.filter((sample) => sample.rate > 0).map((sample) => (sample.serverCpu * 1e6) / sample.rate);
  return costs.length === 0 ? '—' : middle(costs).toFixed(costs.every((cost) => cost >= 10) ? 0 : 2);
}

function verdict(met: boolean | undefined): string {
  if (met === undefined) return '—';
  return met ? 'yes' : 'NO';
}

function markdown(headers: string[], rows: string[][]): string[] {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`, ...rows.map(line)];
}

/** One table as markdown lines. */
export function renderTable(table: ResultTable): string[] {
  const { subjectName: subject, baselineName: baseline } = table;
  const headers = ['row', subject, baseline, `ratio ${subject}/${baseline}`];
  if (table.target !== undefined) headers.push(`target ≥ ${table.target}×`);
  const unit = table.cpuUnit;
  if (unit === undefined) headers.push(`server µs/op ${subject} · ${baseline}`, `CPU srv/drv ${subject}`, `CPU srv/drv ${baseline}`);
  else {
    headers.push(
      `client CPU s/${unit} user+sys ${subject} · ${baseline}`,
      `server CPU s/${unit} user+sys ${subject} · ${baseline}`,
      `% of a core srv/cli ${subject} · ${baseline}`,
    );
  }
  const rows = table.rows.map((row) => {
    const cells = [row.label, rate(row.subject, row.unit), rate(row.baseline, row.unit), row.ratio === undefined ? '—' : `${row.ratio.toFixed(2)}×`];
    if (table.target !== undefined) cells.push(verdict(row.met));
    const [ours, theirs] = [row.subject.samples, row.baseline.samples];
    if (unit === undefined) cells.push(`${costPerOp(ours)} · ${costPerOp(theirs)}`, cpu(ours), cpu(theirs));
    else {
      cells.push(
        `${cpuPerUnit(ours, 'client')} · ${cpuPerUnit(theirs, 'client')}`,
        `${cpuPerUnit(ours, 'server')} · ${cpuPerUnit(theirs, 'server')}`,
        `${cpu(ours, true)} · ${cpu(theirs, true)}`,
      );
    }
    return cells;
  });
  const errors: string[] = [];
  for (const row of table.rows) {
    if (row.subject.error !== undefined) errors.push(`- ${row.id} ${subject}: ${row.subject.error}`);
    if (row.baseline.error !== undefined) errors.push(`- ${row.id} ${baseline}: ${row.baseline.error}`);
  }
  return [`### ${table.title}`, '', ...markdown(headers, rows), ...(errors.length > 0 ? ['', ...errors] : [])];
}

/** A table laid out by its suite, as markdown lines. */
export function renderTextTable(table: TextTable): string[] {
  const notes = table.notes ?? [];
  return [`### ${table.title}`, '', ...markdown(table.headers, table.rows), ...(notes.length > 0 ? ['', ...notes.map((note) => `- ${note}`)] : [])];
}

/** A whole suite as markdown lines. */
export function renderSuite(result: SuiteResult): string[] {
  const lines = [`## ${result.title} (${result.name})`, '', ...result.method.map((line) => `- ${line}`)];
  for (const table of result.tables) lines.push('', ...renderTable(table));
  for (const table of result.textTables ?? []) lines.push('', ...renderTextTable(table));
  return lines;
}
