/**
 * A download cut short by the connection says what happened and how far it got (issue 10,
 * item 7b), and keeps its partial file for the next run.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { connect } from '../../src/client/client.js';
import type { TcpkitError } from '../../src/errors.js';
import { partialPaths } from '../../src/services/files/commit.js';
import { download } from '../../src/services/files/download/save.js';
import { FileRoot } from '../../src/services/files/jail.js';
import { fileService } from '../../src/services/files/download/service.js';
import { LOOPBACK, testServers } from '../helpers/net.js';
import { faultProxy, type ProxyFaults } from '../helpers/proxy.js';

const { cleanups, serve } = testServers();
const SIZE = 12 * 1024 * 1024;
let base: string;
let port: number;

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'tcpkit-interrupted-'));
  cleanups.push(() => rm(base, { recursive: true, force: true }));
  const served = path.join(base, 'served');
  await mkdir(served);
  await writeFile(path.join(served, 'big.bin'), randomBytes(SIZE));
  ({ port } = await serve({ services: [fileService(await FileRoot.open(served))] }));
});

/** Downloads big.bin through a proxy with `faults`; returns the error and the partial file's size. */
async function cut(label: string, faults: ProxyFaults): Promise<{ error: TcpkitError; partSize: number }> {
  const proxy = await faultProxy(port, faults);
  cleanups.push(() => proxy.close());
  const client = await connect(`${LOOPBACK}:${proxy.port}`);
  const target = path.join(base, `${label}.bin`);
  let error: TcpkitError | undefined;
  await download(client, 'big.bin', target).catch((e: TcpkitError) => (error = e));
  client.destroy();
  assert.ok(error, 'the download failed');
  await assert.rejects(stat(target), { code: 'ENOENT' }, 'nothing under the final name');
  return { error, partSize: (await stat(partialPaths(target).part)).size };
}

/** The "after X MB" of a message, checked against the partial file (the MB shown are rounded). */
function assertProgress(message: string, partSize: number): void {
  const match = /after (\d+\.\d) MB of 12\.6 MB; the partial file is kept: run again to resume$/.exec(message);
  assert.ok(match, message);
  assert.ok(Math.abs(Number(match[1]) - partSize / 1e6) <= 0.051, `${match[1]} MB said, ${partSize} bytes kept`);
  // A reset lets the kernel drop bytes not yet read: the partial file may even be empty.
  assert.ok(partSize < SIZE, `partial file of ${partSize} bytes`);
}

describe('download: cut short by the connection', () => {
  it('a reset 4 MB in says "connection reset", how far it got, and that the partial file is kept', async () => {
    const { error, partSize } = await cut('reset', { resetAfter: 4 * 1024 * 1024 });
    // A reset read as such (ECONNRESET); or, when it arrives while the client is not reading
    // (paused for its disk), Linux drops the unread bytes and reports an end of stream.
    if (error.code === 'TCPKIT_ERR_CONNECTION_FAILED') assert.match(error.message, /^connection reset by 127\.0\.0\.1:\d+ after /);
    else assert.match(error.message, /^127\.0\.0\.1:\d+ closed or reset the connection after /);
    assertProgress(error.message, partSize);
  });

  it('an EOF 4 MB in says the server closed the connection, how far it got, and that the partial file is kept', async () => {
    const { error, partSize } = await cut('eof', { endAfter: 4 * 1024 * 1024 });
    assert.equal(error.code, 'TCPKIT_ERR_CONNECTION_CLOSED');
    assert.match(error.message, /^127\.0\.0\.1:\d+ closed or reset the connection after /);
    assertProgress(error.message, partSize);
  });
});
