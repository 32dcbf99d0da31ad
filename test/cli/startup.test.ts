/**
 * Start-up of the CLI: the command table loads no library layer, and a command loads what it
 * uses only. Each run records the modules it imports (helpers/module-log.ts) and the test reads
 * that list.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { freePort, LOOPBACK } from '../helpers/net.js';

const PRELOAD = new URL('../helpers/module-log.js', import.meta.url).href;
/** The built src/ directory, as the module URLs name it. */
const SRC = new URL('../../src/', import.meta.url).href;

let dir: string;
let runs = 0;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tcpkit-startup-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs `tcpkit ARGS` and returns its result and the URLs of the modules it imported, src/ ones relative to src/. */
async function loadedBy(args: string[]) {
  const log = path.join(dir, `modules-${runs++}.txt`);
  const result = await runCli(args, { env: { NODE_OPTIONS: `--import=${PRELOAD}`, TCPKIT_TEST_MODULE_LOG: log } });
  const urls = [...new Set((await readFile(log, 'utf8')).split('\n').filter(Boolean))];
  const modules = urls.map((url) => (url.startsWith(SRC) ? url.slice(SRC.length) : url));
  // Not vacuous: the log saw the CLI itself.
  assert.ok(modules.includes('cli/main.js'), `module log without cli/main.js: ${modules.join(' ')}`);
  return { result, modules };
}

/** What the command table (every command's options and help) may load: the CLI's shell, commander and the few leaves it needs. */
const TABLE = /^(cli\/main\.js|cli\/output\.js|cli\/commands\/[a-z-]+\.js|errors\.js|version\.js|transport\/address\.js|node:(fs|net))$|\/node_modules\/(commander|bytes)\//;

describe('tcpkit start-up', () => {
  for (const args of [['--version'], ['--help'], ['get', '--help'], ['serve', '--help']]) {
    it(`\`tcpkit ${args.join(' ')}\` loads the command table only: no client, server, services, digest, TLS or progress bars`, async () => {
      const { result, modules } = await loadedBy(args);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(
        modules.filter((module) => !TABLE.test(module)),
        [],
        'modules loaded beyond the command table',
      );
    });
  }

  it('`tcpkit get` over plain TCP, not on a terminal, loads the client but not node:tls, cli-progress or the server', async () => {
    const port = await freePort();
    const { result, modules } = await loadedBy(['get', `${LOOPBACK}:${port}`, 'a.txt']);
    assert.equal(result.code, 3, result.stderr); // nothing listening: could not connect
    assert.ok(modules.includes('cli/actions/get.js') && modules.includes('client/client.js'), modules.join(' '));
    const unwanted = modules.filter((module) => module === 'node:tls' || module.includes('/node_modules/cli-progress/') || module.startsWith('server/') || module.startsWith('cli/actions/serve'));
    assert.deepEqual(unwanted, []);
  });
});
