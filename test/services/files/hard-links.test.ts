/**
 * Hard links out of the served root (issue 10, item 6): a regular file in the root that is a
 * hard link to a file outside it is refused by default, framed (GET, a resuming GET, STAT, left
 * out of LIST) and raw (closed with no data), and every refusal is reported; with
 * `allowHardLinks` (`serve --allow-hard-links`) it is served. The outside file holds a marker
 * that must never reach a client unless hard links are allowed.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { link, mkdir, mkdtemp, readFile, rm, stat as fsStat, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../../src/client/client.js';
import { TcpkitError } from '../../../src/errors.js';
import { FrameType } from '../../../src/protocol/constants.js';
import { decodeErrorBody } from '../../../src/protocol/control.js';
import type { Server } from '../../../src/server/server.js';
import { list, stat } from '../../../src/services/files/download/client.js';
import { download } from '../../../src/services/files/download/save.js';
import { FileRoot } from '../../../src/services/files/jail.js';
import { upload } from '../../../src/services/files/upload/client.js';
import { rawFileHandler } from '../../../src/raw/files.js';
import { fileService } from '../../../src/services/files/download/service.js';
import { uploadService } from '../../../src/services/files/upload/service.js';
import { decodeFileHead, encodeGet, FileFrame } from '../../../src/services/files/wire.js';
import { runCli, startCliServer, type RunningCli } from '../../helpers/cli.js';
import { LOOPBACK, RawPeer, testServers, within } from '../../helpers/net.js';

const MARKER = 'OUTSIDE-HARD-LINK-MARKER-51c2';
const { serve } = testServers();
const undo: Array<() => Promise<unknown>> = [];
let base: string;
let served: string;
let work: string;

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'tcpkit-hard-links-'));
  undo.push(() => rm(base, { recursive: true, force: true }));
  served = path.join(base, 'served');
  const outside = path.join(base, 'outside');
  work = path.join(base, 'work');
  for (const dir of [served, outside, work, path.join(served, 'sub')]) await mkdir(dir);
  await writeFile(path.join(outside, 'secret.txt'), MARKER);
  // The way out: a name inside the root for an inode whose other name is outside it.
  await link(path.join(outside, 'secret.txt'), path.join(served, 'linked.txt'));
  await link(path.join(outside, 'secret.txt'), path.join(served, 'sub', 'deep.txt'));
  // An in-root symlink to it: followed, then refused for what it leads to.
  await symlink('linked.txt', path.join(served, 'via-symlink.txt'));
  await writeFile(path.join(served, 'plain.txt'), 'plain\n');
  assert.equal((await fsStat(path.join(served, 'linked.txt'))).nlink, 3);
});
after(async () => {
  for (const step of undo.splice(0).reverse()) await step();
});

interface Refusal {
  request: string;
  message: string;
}

/** A server over `served` with raw mode on, recording what it refuses. */
async function filesServer(allowHardLinks?: boolean): Promise<{ server: Server; port: number; address: string; refused: Refusal[]; rawErrors: string[] }> {
  const root = await FileRoot.open(served, allowHardLinks === undefined ? {} : { allowHardLinks });
  const refused: Refusal[] = [];
  const onRefused = (_peer: unknown, request: string, error: TcpkitError): void => {
    refused.push({ request, message: error.message });
  };
  const started = await serve({ services: [fileService(root, { onRefused })], raw: rawFileHandler(root) });
  const rawErrors: string[] = [];
  started.server.on('raw-error', (_peer, error) => rawErrors.push(error instanceof Error ? error.message : String(error)));
  return { ...started, refused, rawErrors };
}

/** Sends `request` as a raw client and returns everything the server sent before it closed. */
async function rawRequest(port: number, request: string): Promise<Buffer> {
  const socket = net.connect({ host: LOOPBACK, port });
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  await within(once(socket, 'connect'), 5000, 'connect');
  socket.write(`${request}\n`);
  await within(once(socket, 'close'), 10_000, 'the server to close the raw connection');
  return Buffer.concat(chunks);
}

/** The error for `id` that `peer` receives, decoded. */
async function errorFor(peer: RawPeer, id: number): Promise<{ code: string; message: string }> {
  await peer.until(() => peer.frames.some((f) => f.id === id) || peer.closed, `a reply for id ${id}`);
  const frame = peer.frames.find((f) => f.id === id);
  assert.ok(frame, `no reply for id ${id}`);
  assert.equal(frame.type, FrameType.ERROR, `expected ERROR for id ${id}, got type ${frame.type}`);
  return decodeErrorBody(frame.payload);
}

const forbiddenHardLink = (error: unknown): boolean => {
  assert.ok(error instanceof TcpkitError);
  assert.equal(error.wireCode, 'FORBIDDEN');
  assert.match(error.message, /hard link/);
  assert.doesNotMatch(error.message, new RegExp(base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  return true;
};

describe('hard links: refused by default', () => {
  it('refuses GET, a symlink to the file, and a file in a subdirectory (FORBIDDEN), and reports each refusal', async () => {
    const { address, refused } = await filesServer();
    const client = await connect(address);
    try {
      for (const name of ['linked.txt', 'via-symlink.txt', 'sub/deep.txt']) {
        await assert.rejects(download(client, name, path.join(work, `get-${path.basename(name)}`)), forbiddenHardLink);
      }
      // The connection is still usable, and a file with one link is served.
      const plain = path.join(work, 'plain-default.txt');
      await download(client, 'plain.txt', plain);
      assert.equal(await readFile(plain, 'utf8'), 'plain\n');
    } finally {
      await client.close();
    }
    assert.deepEqual(
      refused.map((r) => r.request),
      ['GET', 'GET', 'GET'],
    );
    assert.match(refused[0]!.message, /^linked\.txt: has more than one hard link/);
    await assert.rejects(readFile(path.join(work, 'get-linked.txt')), { code: 'ENOENT' });
  });

  it('refuses a resuming GET (offset, ifSize, ifMtimeMs) before any FILE_HEAD', async () => {
    const { port } = await filesServer();
    const { size, mtimeMs } = await fsStat(path.join(served, 'linked.txt'));
    const peer = await RawPeer.open(port);
    peer.send(FileFrame.GET, 1, encodeGet({ name: 'linked.txt', offset: 5, ifSize: size, ifMtimeMs: mtimeMs }));
    const error = await errorFor(peer, 1);
    assert.equal(error.code, 'FORBIDDEN');
    assert.match(error.message, /hard link/);
    assert.equal(
      peer.frames.some((f) => f.type === FileFrame.FILE_HEAD || f.type === FileFrame.DATA),
      false,
    );
    peer.socket.destroy();
  });

  it('refuses STAT and leaves the file out of LIST, as for a symlink leading outside', async () => {
    const { address, refused } = await filesServer();
    const client = await connect(address);
    try {
      await assert.rejects(stat(client, 'linked.txt'), forbiddenHardLink);
      await assert.rejects(stat(client, 'via-symlink.txt'), forbiddenHardLink);
      assert.equal((await stat(client, 'plain.txt')).type, 'file');
      assert.equal((await stat(client, 'sub')).type, 'directory'); // a directory's several links do not count
      const root = await list(client, '');
      assert.deepEqual(
        root.entries.map((e) => e.name),
        ['plain.txt', 'sub'],
      );
      assert.deepEqual((await list(client, 'sub')).entries, []);
    } finally {
      await client.close();
    }
    assert.deepEqual(
      refused.map((r) => r.request),
      ['STAT', 'STAT'],
    );
  });

  it('closes a raw request with no data, and reports it', async () => {
    const { port, rawErrors } = await filesServer();
    assert.equal((await rawRequest(port, 'linked.txt')).length, 0);
    assert.equal((await rawRequest(port, 'via-symlink.txt')).length, 0);
    assert.equal(rawErrors.length, 2);
    assert.match(rawErrors[0]!, /linked\.txt: has more than one hard link/);
    assert.equal((await rawRequest(port, 'plain.txt')).toString(), 'plain\n');
  });

  it('serves a file stored by an upload (one link once it is in place)', async () => {
    const incoming = path.join(base, 'incoming');
    await mkdir(incoming);
    const root = await FileRoot.open(incoming);
    const { address } = await serve({ services: [fileService(root), uploadService(root)] });
    const local = path.join(work, 'to-upload.txt');
    await writeFile(local, 'uploaded\n');
    const client = await connect(address);
    try {
      await upload(client, local, 'up.txt');
      assert.equal((await fsStat(path.join(incoming, 'up.txt'))).nlink, 1);
      const back = path.join(work, 'uploaded-back.txt');
      await download(client, 'up.txt', back);
      assert.equal(await readFile(back, 'utf8'), 'uploaded\n');
      assert.deepEqual(
        (await list(client, '')).entries.map((e) => e.name),
        ['up.txt'],
      );
    } finally {
      await client.close();
    }
  });
});

describe('hard links: served with allowHardLinks', () => {
  it('serves GET (also resumed), STAT, LIST and raw requests, and refuses nothing', async () => {
    const { address, port, refused, rawErrors } = await filesServer(true);
    const client = await connect(address);
    try {
      const target = path.join(work, 'allowed-linked.txt');
      await download(client, 'linked.txt', target);
      assert.equal(await readFile(target, 'utf8'), MARKER);
      const entry = await stat(client, 'linked.txt');
      assert.equal(entry.size, MARKER.length);
      assert.deepEqual(
        (await list(client, '')).entries.map((e) => e.name),
        ['linked.txt', 'plain.txt', 'sub', 'via-symlink.txt'],
      );
    } finally {
      await client.close();
    }
    const { size, mtimeMs } = await fsStat(path.join(served, 'linked.txt'));
    const peer = await RawPeer.open(port);
    peer.send(FileFrame.GET, 7, encodeGet({ name: 'linked.txt', offset: 5, ifSize: size, ifMtimeMs: mtimeMs }));
    await peer.until(() => peer.frames.some((f) => f.type === FileFrame.FILE_END) || peer.closed, 'FILE_END');
    const head = decodeFileHead(peer.frames.find((f) => f.type === FileFrame.FILE_HEAD)!.payload);
    assert.equal(head.offset, 5);
    const data = Buffer.concat(peer.frames.filter((f) => f.type === FileFrame.DATA).map((f) => f.payload));
    assert.equal(data.toString(), MARKER.slice(5));
    peer.socket.destroy();
    assert.equal((await rawRequest(port, 'linked.txt')).toString(), MARKER);
    assert.deepEqual(refused, []);
    assert.deepEqual(rawErrors, []);
  });

  it('rejects a non-boolean allowHardLinks', async () => {
    await assert.rejects(FileRoot.open(served, { allowHardLinks: 'yes' as unknown as boolean }), { code: 'TCPKIT_ERR_INVALID_OPTION' });
  });
});

describe('hard links: tcpkit serve', () => {
  const servers: RunningCli[] = [];
  after(async () => {
    for (const server of servers) {
      server.child.kill('SIGKILL');
      await server.exit().catch(() => {});
    }
  });

  it('refuses them by default, and logs it', async () => {
    const server = await startCliServer([served]);
    servers.push(server);
    const out = path.join(work, 'cli-default.txt');
    const got = await runCli(['get', `${LOOPBACK}:${server.port}`, 'linked.txt', '-o', out, '-q']);
    assert.notEqual(got.code, 0);
    assert.match(got.stderr, /hard link/);
    assert.doesNotMatch(got.stdout + got.stderr, new RegExp(MARKER));
    await assert.rejects(readFile(out), { code: 'ENOENT' });
    await server.waitStderr(/GET refused: linked\.txt: has more than one hard link/);
  });

  it('serves them with --allow-hard-links', async () => {
    const server = await startCliServer([served, '--allow-hard-links']);
    servers.push(server);
    const out = path.join(work, 'cli-allowed.txt');
    const got = await runCli(['get', `${LOOPBACK}:${server.port}`, 'linked.txt', '-o', out, '-q']);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(await readFile(out, 'utf8'), MARKER);
  });
});
