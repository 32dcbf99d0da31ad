/**
 * Statements of docs/PROTOCOL.md §4–5 about the file services, pinned over the wire with a
 * hand-driven client (issue 10, items 7d and 7f): a name that is not valid Unicode or not valid
 * UTF-8 is INVALID_NAME while a malformed payload is BAD_REQUEST (GET, STAT, LIST, PUT); STAT
 * names the whole path and LIST base names; what LIST shows of symlinks, FIFOs and directories;
 * a resume holds only with `ifMtimeMs` echoed exactly; an ERROR frame from a client closes the
 * connection; the server token's length limits.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat as fsStat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FrameType } from '../../../src/protocol/constants.js';
import { decodeErrorBody, encodeErrorBody } from '../../../src/protocol/control.js';
import { createServer } from '../../../src/create-server.js';
import { FileRoot } from '../../../src/services/files/jail.js';
import { fileService } from '../../../src/services/files/download/service.js';
import { uploadService } from '../../../src/services/files/upload/service.js';
import { decodeFileHead, decodeListing, decodeStatReply, encodeGet, FileFrame, UploadFrame } from '../../../src/services/files/wire.js';
import { RawPeer, testServers } from '../../helpers/net.js';

const { serve } = testServers();
const undo: Array<() => Promise<unknown>> = [];
let port: number;
let served: string;

before(async () => {
  const base = await mkdtemp(path.join(tmpdir(), 'tcpkit-spec-'));
  undo.push(() => rm(base, { recursive: true, force: true }));
  served = path.join(base, 'served');
  await mkdir(path.join(served, 'sub', 'inner'), { recursive: true });
  await writeFile(path.join(base, 'outside.txt'), 'outside');
  await writeFile(path.join(served, 'a.txt'), 'hello, world\n');
  await writeFile(path.join(served, 'sub', 'nested.txt'), 'nested\n');
  await symlink('../a.txt', path.join(served, 'sub', 'link-in'));
  await symlink('inner', path.join(served, 'sub', 'dir-link'));
  await symlink(path.join(base, 'outside.txt'), path.join(served, 'sub', 'link-out'));
  await symlink('nowhere', path.join(served, 'sub', 'dangling'));
  execFileSync('mkfifo', [path.join(served, 'sub', 'fifo')]);
  await writeFile(path.join(served, 'sub', '.hidden'), 'hidden');
  // A fractional modification time, as most file systems give: it must be echoed exactly.
  await utimes(path.join(served, 'a.txt'), 1_700_000_000, 1_700_000_000.123457);
  const root = await FileRoot.open(served);
  ({ port } = await serve({ services: [fileService(root), uploadService(root)] }));
});
after(async () => {
  for (const step of undo.splice(0).reverse()) await step();
});

/** Sends one request frame on a fresh connection and returns the first reply frame for it. */
async function ask(type: number, payload: Uint8Array, id = 1): Promise<{ type: number; payload: Buffer; peer: RawPeer }> {
  const peer = await RawPeer.open(port);
  peer.send(type, id, payload);
  await peer.until(() => peer.frames.some((f) => f.id === id) || peer.closed, `a reply for id ${id}`);
  const frame = peer.frames.find((f) => f.id === id);
  assert.ok(frame, 'the server closed without replying');
  return { type: frame.type, payload: frame.payload, peer };
}

async function errorCode(type: number, payload: Uint8Array): Promise<{ code: string; message: string }> {
  const reply = await ask(type, payload);
  // A refused request leaves the connection usable: a refusal is for the id, not id 0.
  reply.peer.socket.destroy();
  assert.equal(reply.type, FrameType.ERROR, `expected ERROR, got frame type ${reply.type}`);
  return decodeErrorBody(reply.payload);
}

const REQUESTS = [
  { what: 'GET', type: FileFrame.GET, extra: '' },
  { what: 'STAT', type: FileFrame.STAT, extra: '' },
  { what: 'LIST', type: FileFrame.LIST, extra: '' },
  { what: 'PUT', type: UploadFrame.PUT, extra: ',"size":1' },
];

describe('names that are not valid Unicode are INVALID_NAME (§5.2)', () => {
  for (const { what, type, extra } of REQUESTS) {
    it(`${what}: a lone surrogate (valid JSON "\\ud800") is INVALID_NAME`, async () => {
      for (const name of ['\\ud800', 'a\\udc00b', 'sub/\\udbff']) {
        const error = await errorCode(type, Buffer.from(`{"name":"${name}"${extra}}`));
        assert.equal(error.code, 'INVALID_NAME', `${name}: ${error.message}`);
        assert.match(error.message, /surrogate/);
      }
    });

    it(`${what}: invalid UTF-8 bytes in the name are INVALID_NAME`, async () => {
      for (const bad of [[0xff], [0xc0, 0xae], [0xed, 0xa0, 0x80], [0xe4, 0xbd]]) {
        const payload = Buffer.concat([Buffer.from('{"name":"a'), Buffer.from(bad), Buffer.from(`"${extra}}`)]);
        const error = await errorCode(type, payload);
        assert.equal(error.code, 'INVALID_NAME', `${Buffer.from(bad).toString('hex')}: ${error.message}`);
        assert.match(error.message, /UTF-8/);
      }
    });

    it(`${what}: a malformed payload is still BAD_REQUEST`, async () => {
      const payloads = [
        Buffer.from('not json'),
        Buffer.from('["a.txt"]'),
        Buffer.from(`{"name":42${extra}}`),
        Buffer.from(`{${extra.slice(1)}}`),
        // Invalid UTF-8 outside the name: the payload is at fault, not the name.
        Buffer.concat([Buffer.from(`{"name":"a.txt"${extra},"x":"`), Buffer.of(0xff), Buffer.from('"}')]),
        Buffer.concat([Buffer.from('{"name":"a.txt"'), Buffer.of(0xff), Buffer.from('}')]),
      ];
      for (const payload of payloads) {
        const error = await errorCode(type, payload);
        assert.equal(error.code, 'BAD_REQUEST', `${payload.toString('hex')}: ${error.message}`);
      }
    });
  }
});

describe('STAT and LIST (§5.2)', () => {
  it('STAT names the whole path; LIST entries carry base names', async () => {
    const stat = await ask(FileFrame.STAT, Buffer.from('{"name":"sub/nested.txt"}'));
    stat.peer.socket.destroy();
    assert.equal(stat.type, FileFrame.STAT_REPLY);
    assert.deepEqual({ ...decodeStatReply(stat.payload), mtimeMs: 0 }, { name: 'sub/nested.txt', type: 'file', size: 7, mtimeMs: 0 });
    const listing = await ask(FileFrame.LIST, Buffer.from('{"name":"sub"}'));
    listing.peer.socket.destroy();
    assert.ok(decodeListing(listing.payload).entries.some((e) => e.name === 'nested.txt'));
  });

  it('LIST shows symlinks inside as what they lead to, FIFOs as "other", directories with size 0, and leaves out links outside or nowhere and hidden names', async () => {
    const reply = await ask(FileFrame.LIST, Buffer.from('{"name":"sub"}'));
    reply.peer.socket.destroy();
    const { entries, truncated } = decodeListing(reply.payload);
    assert.equal(truncated, false);
    const shown = entries.map(({ name, type, size }) => ({ name, type, size }));
    assert.deepEqual(shown, [
      { name: 'dir-link', type: 'directory', size: 0 },
      { name: 'fifo', type: 'other', size: 0 },
      { name: 'inner', type: 'directory', size: 0 },
      { name: 'link-in', type: 'file', size: 13 },
      { name: 'nested.txt', type: 'file', size: 7 },
    ]);
    // The in-root link's mtime is its target's.
    const target = await fsStat(path.join(served, 'a.txt'));
    assert.equal(entries.find((e) => e.name === 'link-in')!.mtimeMs, target.mtimeMs);
  });

  it('STAT describes a FIFO and a directory, refuses a link leading outside, and cannot name the root', async () => {
    const fifo = await ask(FileFrame.STAT, Buffer.from('{"name":"sub/fifo"}'));
    fifo.peer.socket.destroy();
    assert.equal(decodeStatReply(fifo.payload).type, 'other');
    const dir = await ask(FileFrame.STAT, Buffer.from('{"name":"sub/dir-link"}'));
    dir.peer.socket.destroy();
    assert.deepEqual(
      (({ name, type, size }) => ({ name, type, size }))(decodeStatReply(dir.payload)),
      { name: 'sub/dir-link', type: 'directory', size: 0 },
    );
    assert.equal((await errorCode(FileFrame.STAT, Buffer.from('{"name":"sub/link-out"}'))).code, 'FORBIDDEN');
    assert.equal((await errorCode(FileFrame.STAT, Buffer.from('{"name":""}'))).code, 'INVALID_NAME');
  });
});

describe('resume (§5.2)', () => {
  it('holds only when ifMtimeMs is the FILE_HEAD mtimeMs exactly', async () => {
    const first = await ask(FileFrame.GET, encodeGet({ name: 'a.txt', offset: 0 }));
    first.peer.socket.destroy();
    const head = decodeFileHead(first.payload);
    assert.notEqual(head.mtimeMs, Math.round(head.mtimeMs), 'the test needs a fractional mtime');
    const resumed = await ask(FileFrame.GET, encodeGet({ name: 'a.txt', offset: 5, ifSize: head.size, ifMtimeMs: head.mtimeMs }));
    resumed.peer.socket.destroy();
    assert.equal(decodeFileHead(resumed.payload).offset, 5);
    for (const near of [Math.round(head.mtimeMs), Math.floor(head.mtimeMs), Number(head.mtimeMs.toFixed(3)) + 0.001]) {
      const restarted = await ask(FileFrame.GET, encodeGet({ name: 'a.txt', offset: 5, ifSize: head.size, ifMtimeMs: near }));
      restarted.peer.socket.destroy();
      assert.equal(decodeFileHead(restarted.payload).offset, 0, `ifMtimeMs ${near} for ${head.mtimeMs}`);
    }
  });
});

describe('connection rules (§4)', () => {
  for (const id of [0, 1]) {
    it(`an ERROR frame from the client (id ${id}) makes the server close the connection without a reply`, async () => {
      const peer = await RawPeer.open(port);
      peer.send(FrameType.ERROR, id, encodeErrorBody({ code: 'PROTOCOL_ERROR', message: 'you sent garbage' }));
      peer.send(FileFrame.STAT, 2, Buffer.from('{"name":"a.txt"}'));
      await peer.waitClosed();
      assert.deepEqual(peer.frames, []);
    });
  }

  it('a server token is 8 to 4096 characters', () => {
    for (const token of ['', 'x'.repeat(7), 'x'.repeat(4097)]) {
      assert.throws(() => createServer({ token }), { code: 'TCPKIT_ERR_INVALID_OPTION' }, `length ${token.length}`);
    }
    for (const token of ['x'.repeat(8), 'x'.repeat(4096)]) createServer({ token });
  });
});
