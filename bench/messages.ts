/**
 * The message suite (the benchmark): round trips per second over 50 kept connections
 * with 1 and 16 requests in flight, and short connections per second, each against the tcpkit
 * server and a bare `node:net` echo server driven by the same raw driver in the same run. Target:
 * tcpkit ≥ 0.8× bare on every row. A second table drives the tcpkit server through tcpkit's own
 * client library, beside the raw driver, to show the client's overhead.
 */
import { startClientKeptLoad, startClientShortLoad } from './client-load.js';
import { startKeptLoad, startShortLoad } from './driver.js';
import { measure, type Load } from './measure.js';
import { ServerProcess } from './server-process.js';
import type { ServerKind } from './servers.js';
import { compareRow, medianRate, type Measured, type ResultRow, type Sample, type Suite, type SuiteContext, type SuiteResult } from './suite.js';

const CONNECTIONS = 50;
const SHORT_CONCURRENCY = 50;
const PAYLOAD = Buffer.alloc(32, 0x78);
/** The target: tcpkit at least this fraction of the bare server on every row. */
const TARGET = 0.8;

/** One load shape of the suite. */
interface RowSpec {
  /** Row id after `messages/`. */
  name: string;
  label: string;
  unit: string;
  /** The load through the raw driver (used against both servers). */
  raw(port: number): Promise<Load>;
  /** The same load through tcpkit's client library. */
  library(port: number): Promise<Load>;
  /** How the library row is labelled. */
  libraryLabel: string;
}

const ROWS: readonly RowSpec[] = [
  {
    name: 'kept-1',
    label: `${CONNECTIONS} kept connections × 1 in flight`,
    unit: 'msg/s',
    raw: (port) => startKeptLoad({ port, connections: CONNECTIONS, inFlight: 1, payload: PAYLOAD }),
    library: (port) => startClientKeptLoad({ port, connections: CONNECTIONS, inFlight: 1, payload: PAYLOAD }),
    libraryLabel: `Client.send, ${CONNECTIONS} clients × 1 in flight`,
  },
  {
    name: 'kept-16',
    label: `${CONNECTIONS} kept connections × 16 in flight`,
    unit: 'msg/s',
    raw: (port) => startKeptLoad({ port, connections: CONNECTIONS, inFlight: 16, payload: PAYLOAD }),
    library: (port) => startClientKeptLoad({ port, connections: CONNECTIONS, inFlight: 16, payload: PAYLOAD }),
    libraryLabel: `Client.send, ${CONNECTIONS} clients × 16 in flight`,
  },
  {
    name: 'short',
    label: `short connections, ${SHORT_CONCURRENCY} at once`,
    unit: 'conn/s',
    raw: (port) => startShortLoad({ port, concurrency: SHORT_CONCURRENCY, payload: PAYLOAD }),
    library: (port) => startClientShortLoad({ port, concurrency: SHORT_CONCURRENCY, payload: PAYLOAD }),
    libraryLabel: `sendOnce, ${SHORT_CONCURRENCY} at once`,
  },
];

function percent(fraction: number): string {
  return `${Math.round(fraction * 100)}%`;
}

function formatSample(sample: Sample, unit: string): string {
  return `${Math.round(sample.rate).toLocaleString('en-US')} ${unit} (CPU server ${percent(sample.serverCpu)}, driver ${percent(sample.driverCpu)})`;
}

/** Collects the samples of one side of a row; the first error ends that side. */
class Side {
  readonly samples: Sample[] = [];
  error: string | undefined;

  result(): Measured {
    const measured: Measured = { samples: this.samples, median: medianRate(this.samples) };
    if (this.error !== undefined) measured.error = this.error;
    return measured;
  }
}

/** One sample: a fresh server child, the load, then the child is stopped. */
async function sampleOnce(context: SuiteContext, kind: ServerKind, load: (port: number) => Promise<Load>): Promise<Sample> {
  const { settings } = context;
  const server = await ServerProcess.start(kind, settings.serverNodeArgs);
  try {
    return await measure(server, () => load(server.port), {
      warmupMs: settings.warmupSeconds * 1000,
      durationMs: settings.seconds * 1000,
    });
  } finally {
    await server.stop();
  }
}

/** Runs `side`'s next sample unless it already failed, logging the outcome. */
async function sampleInto(
  context: SuiteContext,
  side: Side,
  what: string,
  unit: string,
  kind: ServerKind,
  load: (port: number) => Promise<Load>,
): Promise<void> {
  if (side.error !== undefined) return;
  try {
    const sample = await sampleOnce(context, kind, load);
    side.samples.push(sample);
    context.progress(`${what}: ${formatSample(sample, unit)}`);
  } catch (error) {
    side.error = error instanceof Error ? error.message : String(error);
    context.progress(`${what}: FAILED: ${side.error}`);
  }
}

async function run(context: SuiteContext): Promise<SuiteResult> {
  const { runs } = context.settings;
  const compared: ResultRow[] = [];
  const library: ResultRow[] = [];
  for (const spec of ROWS) {
    const id = `messages/${spec.name}`;
    const libraryId = `messages/client-${spec.name}`;
    const tcpkit = new Side();
    const bare = new Side();
    const client = new Side();
    const wantRaw = context.selected(id);
    const wantLibrary = context.selected(libraryId);
    if (!wantRaw && !wantLibrary) continue;
    for (let i = 0; i < runs; i++) {
      const tag = `run ${i + 1}/${runs}`;
      // Alternate which server goes first, so a drift in machine load hits both alike.
      const order: ServerKind[] = i % 2 === 0 ? ['tcpkit', 'bare'] : ['bare', 'tcpkit'];
      if (wantRaw) {
        for (const kind of order) {
          await sampleInto(context, kind === 'tcpkit' ? tcpkit : bare, `${id} ${kind} ${tag}`, spec.unit, kind, spec.raw);
        }
      }
      if (wantLibrary) await sampleInto(context, client, `${libraryId} tcpkit ${tag}`, spec.unit, 'tcpkit', spec.library);
    }
    if (wantRaw) compared.push(compareRow(id, spec.label, spec.unit, tcpkit.result(), bare.result(), TARGET));
    if (wantLibrary) library.push(compareRow(libraryId, spec.libraryLabel, spec.unit, client.result(), tcpkit.result()));
  }
  const tables: SuiteResult['tables'] = [];
  if (compared.length > 0) {
    tables.push({
      title: 'tcpkit server vs bare node:net echo server, same raw driver',
      subjectName: 'tcpkit',
      baselineName: 'bare',
      target: TARGET,
      rows: compared,
    });
  }
  if (library.length > 0) {
    tables.push({
      title: "tcpkit's client library vs the raw driver, both against the tcpkit server",
      subjectName: 'client lib',
      baselineName: 'raw driver',
      rows: library,
    });
  }
  return {
    name: 'messages',
    title: 'Message round trips and short connections',
    method: [
      `${PAYLOAD.length}-byte MESSAGE payloads; echo handler on both servers; each server in its own child process on 127.0.0.1, port 0`,
      'raw driver: node:net + tcpkit codec, preamble + HELLO, then MESSAGE frames; one write per data event',
      `short connection: connect, hello, one message, reply, end, close; ${SHORT_CONCURRENCY} loops at once`,
      'CPU columns: % of one core used during the window by the server child / by the driver (this process); ' +
        'a driver-bound baseline could go faster, so the ratio against it flatters tcpkit; then compare server µs/op',
    ],
    tables,
  };
}

/** The message suite. */
export const messagesSuite: Suite = {
  name: 'messages',
  title: 'Message round trips and short connections',
  run,
};
