import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile, mkdir, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../../src/client/client.js';
import type { TcpkitError } from '../../../src/errors.js';
import { FrameType, PREAMBLE } from '../../../src/protocol/constants.js';
import { encodeServerHello } from '../../../src/protocol/control.js';
import { encodeFrame, FrameDecoder } from '../../../src/protocol/frame.js';
import { partialPaths } from '../../../src/services/files/commit.js';
import { getFile, getStream, list, stat as remoteStat } from '../../../src/services/files/download/client.js';
import { download } from '../../../src/services/files/download/save.js';
import { FileRoot } from '../../../src/services/files/jail.js';
import { fileService } from '../../../src/services/files/download/service.js';
import { DATA_CHUNK_BYTES, encodeFileEnd, encodeFileHead, FileFrame } from '../../../src/services/files/wire.js';
import { SLAB_BYTES } from '../../../src/transport/read-slabs.js';
import { runCli } from '../../helpers/cli.js';
import { faultyServer, LOOPBACK, RawPeer, startServer, within } from '../../helpers/net.js';
import { faultProxy } from '../../helpers/proxy.js';

let served: string;
let outside: string;
let work: string;
let address: string;
let port: number;
const cleanups: Array<() => Promise<unknown>> = [];
const files = new Map<string, Buffer>();

before(async () => {
  const base = await mkdtemp(path.join(tmpdir(), 'tcpkit-download-'));
  served = path.join(base, 'served');
  outside = path.join(base, 'outside');
  work = path.join(base, 'work');
  await mkdir(served);
  await mkdir(outside);
  await mkdir(work);
  await mkdir(path.join(served, 'sub'));
  files.set('empty.bin', Buffer.alloc(0));
  files.set('one.bin', Buffer.from('x'));
  files.set('chunk.bin', randomBytes(DATA_CHUNK_BYTES));
  files.set('chunk-plus-one.bin', randomBytes(DATA_CHUNK_BYTES + 1));
  files.set('multi.bin', randomBytes(7 * 1024 * 1024 + 123));
  files.set('sub/nested.txt', Buffer.from('nested file\n'));
  files.set('你好.txt', Buffer.from('unicode name\n'));
  for (const [name, data] of files) await writeFile(path.join(served, name), data);
  await writeFile(path.join(served, '.hidden'), 'hidden');
  await writeFile(path.join(outside, 'secret.txt'), 'OUTSIDE-SECRET');
  await symlink(path.join(outside, 'secret.txt'), path.join(served, 'escape.txt'));
  const root = await FileRoot.open(served);
  const started = await startServer({ services: [fileService(root)] });
  address = started.address;
  port = started.port;
  cleanups.push(() => started.server.destroy(), () => rm(base, { recursive: true, force: true }));
});
after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let counter = 0;
function dest(label: string): string {
  return path.join(work, `${++counter}-${label}`);
}

describe('download: whole files, byte-equal', () => {
  for (const name of ['empty.bin', 'one.bin', 'chunk.bin', 'chunk-plus-one.bin', 'multi.bin', 'sub/nested.txt', '你好.txt']) {
    it(`downloads ${name} and verifies it`, async () => {
      const client = await connect(address);
      const target = dest(path.basename(name));
      const progress: number[] = [];
      const result = await download(client, name, target, { onProgress: (p) => progress.push(p.bytes) });
      await client.close();
      assert.deepEqual(await readFile(target), files.get(name));
      assert.equal(result.bytes, files.get(name)!.length);
      assert.equal(result.resumedFrom, 0);
      // A client and a server of this version agree on XXH3 (§5.2).
      assert.match(result.digest, /^xxh3:[0-9a-f]{16}$/);
      assert.equal(progress.at(-1), files.get(name)!.length);
      const { part, meta } = partialPaths(target);
      await assert.rejects(stat(part), { code: 'ENOENT' });
      await assert.rejects(stat(meta), { code: 'ENOENT' });
    });
  }

  it('downloads many files pipelined over one kept connection, and several clients at once', async () => {
    const names = [...files.keys()];
    const clients = await Promise.all([1, 2, 3].map(() => connect(address)));
    await Promise.all(
      clients.flatMap((client, c) =>
        names.map(async (name) => {
          const target = dest(`c${c}-${path.basename(name)}`);
          await download(client, name, target);
          assert.deepEqual(await readFile(target), files.get(name));
        }),
      ),
    );
    await Promise.all(clients.map((client) => client.close()));
  });

  it('streams a file with getStream and verifies it at the end', async () => {
    const client = await connect(address);
    const { head, body, verified } = await getStream(client, 'multi.bin');
    assert.equal(head.size, files.get('multi.bin')!.length);
    const parts: Buffer[] = [];
    for await (const part of body) parts.push(part as Buffer);
    assert.deepEqual(Buffer.concat(parts), files.get('multi.bin'));
    assert.match(await verified, /^xxh3:/);
    await client.close();
  });

  it('hands a file over piece by piece with getFile, the pieces views of socket memory, verified at the end', async () => {
    const client = await connect(address);
    const parts: Buffer[] = [];
    let heads = 0;
    let views = 0;
    const result = await getFile(client, 'multi.bin', {
      head: (head) => {
        heads++;
        assert.equal(head.size, files.get('multi.bin')!.length);
      },
      data: (piece) => {
        // A view of the socket's read slab (4 MiB), not a frame assembled in a buffer of its own.
        if (piece.buffer.byteLength >= SLAB_BYTES) views++;
        parts.push(Buffer.from(piece)); // copied at once, as the contract says
      },
    });
    assert.equal(heads, 1);
    assert.equal(views, parts.length, 'every piece is a view of read memory');
    assert.deepEqual(Buffer.concat(parts), files.get('multi.bin'));
    assert.equal(result.bytes, files.get('multi.bin')!.length);
    assert.match(result.digest, /^xxh3:/);
    await client.close();
  });

  it('stats and lists, leaving out hidden entries', async () => {
    const client = await connect(address);
    const info = await remoteStat(client, 'multi.bin');
    assert.equal(info.type, 'file');
    assert.equal(info.size, files.get('multi.bin')!.length);
    const listing = await list(client, '');
    const names = listing.entries.map((e) => e.name).sort();
    assert.ok(names.includes('multi.bin') && names.includes('sub'), names.join(','));
    assert.ok(!names.includes('.hidden'));
    assert.equal(listing.entries.find((e) => e.name === 'sub')!.type, 'directory');
    assert.deepEqual(
      (await list(client, 'sub')).entries.map((e) => e.name),
      ['nested.txt'],
    );
    await client.close();
  });
});

describe('download: refusals', () => {
  const cases: Array<[string, string]> = [
    ['../outside/secret.txt', 'TCPKIT_ERR_INVALID_NAME'],
    ['/etc/passwd', 'TCPKIT_ERR_INVALID_NAME'],
    ['sub/../../outside/secret.txt', 'TCPKIT_ERR_INVALID_NAME'],
    ['..\\outside\\secret.txt', 'TCPKIT_ERR_INVALID_NAME'],
    ['a\u0000b', 'TCPKIT_ERR_INVALID_NAME'],
    ['escape.txt', 'TCPKIT_ERR_FORBIDDEN'],
    ['.hidden', 'TCPKIT_ERR_FORBIDDEN'],
    ['sub', 'TCPKIT_ERR_FORBIDDEN'],
    ['missing.bin', 'TCPKIT_ERR_NOT_FOUND'],
  ];
  for (const [name, code] of cases) {
    it(`refuses ${JSON.stringify(name)} with ${code}, leaving nothing behind`, async () => {
      const client = await connect(address);
      const target = dest('refused');
      await assert.rejects(download(client, name, target), (error: TcpkitError) => {
        assert.equal(error.code, code);
        assert.doesNotMatch(error.message, new RegExp(served.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
        return true;
      });
      assert.deepEqual(await readdir(work).then((all) => all.filter((f) => f.includes(path.basename(target)))), []);
      assert.equal((await client.send('still usable')).toString(), 'still usable');
      await client.close();
    });
  }

  it('never replaces an existing file without force, and does with it', async () => {
    const client = await connect(address);
    const target = dest('existing');
    await writeFile(target, 'precious');
    await assert.rejects(download(client, 'one.bin', target), { code: 'TCPKIT_ERR_FILE_EXISTS' });
    assert.equal(await readFile(target, 'utf8'), 'precious');
    await download(client, 'one.bin', target, { force: true });
    assert.equal(await readFile(target, 'utf8'), 'x');
    await client.close();
  });
});

describe('download: integrity and resume', () => {
  it('detects a byte flipped in transit and leaves nothing under the final name', async () => {
    const proxy = await faultProxy(port, { flipAt: 3 * 1024 * 1024 });
    cleanups.push(() => proxy.close());
    const client = await connect(`${LOOPBACK}:${proxy.port}`);
    const target = dest('flipped');
    await assert.rejects(download(client, 'multi.bin', target), { code: 'TCPKIT_ERR_DIGEST_MISMATCH' });
    await assert.rejects(stat(target), { code: 'ENOENT' });
    await assert.rejects(stat(partialPaths(target).part), { code: 'ENOENT' }, 'corrupt data is not kept for a resume');
    await client.close();
  });

  it('resumes an interrupted transfer from the partial file and verifies the whole', async () => {
    // The connection drops after 3 MiB (a FIN: a reset would let the kernel discard bytes
    // not yet read, which makes the size of the partial file a matter of timing).
    const proxy = await faultProxy(port, { endAfter: 3 * 1024 * 1024 });
    cleanups.push(() => proxy.close());
    const target = dest('resumed');
    const broken = await connect(`${LOOPBACK}:${proxy.port}`);
    await assert.rejects(download(broken, 'multi.bin', target), { code: 'TCPKIT_ERR_CONNECTION_CLOSED' });
    await assert.rejects(stat(target), { code: 'ENOENT' });
    const partSize = (await stat(partialPaths(target).part)).size;
    assert.ok(partSize >= 2 * 1024 * 1024 && partSize < 3 * 1024 * 1024, `partial file of ${partSize} bytes`);
    const client = await connect(address);
    const result = await download(client, 'multi.bin', target);
    await client.close();
    assert.equal(result.resumedFrom, partSize);
    assert.equal(result.transferred, files.get('multi.bin')!.length - partSize);
    assert.deepEqual(await readFile(target), files.get('multi.bin'));
  });

  it('detects a partial file whose prefix does not match, and starts over', async () => {
    const target = dest('bad-prefix');
    const { part, meta } = partialPaths(target);
    const real = files.get('multi.bin')!;
    const info = await stat(path.join(served, 'multi.bin'));
    const corrupt = Buffer.from(real.subarray(0, 1024 * 1024));
    corrupt[100]! ^= 1;
    await writeFile(part, corrupt);
    await writeFile(meta, JSON.stringify({ name: 'multi.bin', size: info.size, mtimeMs: info.mtimeMs }));
    const client = await connect(address);
    const result = await download(client, 'multi.bin', target);
    await client.close();
    assert.equal(result.resumedFrom, 0, 'started over after the whole-file digest caught the bad prefix');
    assert.deepEqual(await readFile(target), real);
  });

  it('starts over when the file on the server changed since the partial download', async () => {
    const name = 'changing.bin';
    const first = randomBytes(2 * 1024 * 1024);
    await writeFile(path.join(served, name), first);
    const target = dest('changed');
    const { part, meta } = partialPaths(target);
    const old = await stat(path.join(served, name));
    await writeFile(part, first.subarray(0, 1024 * 1024));
    await writeFile(meta, JSON.stringify({ name, size: old.size, mtimeMs: old.mtimeMs }));
    const second = randomBytes(2 * 1024 * 1024);
    await writeFile(path.join(served, name), second);
    await utimes(path.join(served, name), new Date(), new Date(old.mtimeMs + 5000));
    const client = await connect(address);
    const result = await download(client, name, target);
    await client.close();
    assert.equal(result.resumedFrom, 0);
    assert.deepEqual(await readFile(target), second);
  });

  it('keeps what arrived before a reset, and the next run completes the file', async () => {
    const proxy = await faultProxy(port, { resetAfter: 3 * 1024 * 1024 });
    cleanups.push(() => proxy.close());
    const target = dest('reset');
    const broken = await connect(`${LOOPBACK}:${proxy.port}`);
    await assert.rejects(download(broken, 'multi.bin', target), (error: TcpkitError) =>
      ['TCPKIT_ERR_CONNECTION_FAILED', 'TCPKIT_ERR_CONNECTION_CLOSED'].includes(error.code),
    );
    await assert.rejects(stat(target), { code: 'ENOENT' });
    const client = await connect(address);
    await download(client, 'multi.bin', target);
    await client.close();
    assert.deepEqual(await readFile(target), files.get('multi.bin'));
  });
});

describe('download: a client that stops reading', () => {
  it('costs the server bounded memory: it stops reading the file while the client does not read', async () => {
    const { server, port: slowPort } = await startServer({ services: [fileService(await FileRoot.open(served))] });
    cleanups.push(() => server.destroy());
    const peer = await RawPeer.open(slowPort);
    peer.socket.pause();
    peer.send(FileFrame.GET, 1, Buffer.from(JSON.stringify({ name: 'multi.bin' })));
    let last = -1;
    let stable = 0;
    for (let i = 0; i < 200 && stable < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const now = server.stats().bytesOut;
      stable = now === last ? stable + 1 : 0;
      last = now;
    }
    // Socket buffers on loopback hold a few MiB; the rest of the 7 MiB file must not be queued.
    assert.ok(last < files.get('multi.bin')!.length - 1024 * 1024, `server queued ${last} bytes for a client that reads nothing`);
    peer.socket.destroy();
  });
});

describe('download: a lying server', () => {
  function lyingServer(script: (send: (type: number, payload: Buffer) => void, id: number) => void) {
    return faultyServer((socket) => {
      const decoder = new FrameDecoder({ maxFrameBytes: 1 << 20 });
      socket.on('data', (chunk: Buffer) => {
        for (const frame of decoder.push(chunk)) {
          if (frame.type === FrameType.HELLO) {
            socket.write(
              Buffer.concat([
                Buffer.from(PREAMBLE),
                encodeFrame(
                  FrameType.HELLO,
                  0,
                  encodeServerHello({
                    version: 1,
                    services: ['message', 'file'],
                    capabilities: [],
                    limits: { maxFrameBytes: 1 << 20, maxInFlight: 16, idleTimeoutMs: 0 },
                  }),
                ),
              ]),
            );
          } else if (frame.type === FileFrame.GET) {
            script((type, payload) => socket.write(encodeFrame(type, frame.id, payload)), frame.id);
          }
        }
      });
    });
  }

  it('catches a server that sends more than it announced', async () => {
    const liar = await lyingServer((send) => {
      send(FileFrame.FILE_HEAD, encodeFileHead({ size: 10, mtimeMs: 0, offset: 0, digest: 'xxh64' }));
      send(FileFrame.DATA, Buffer.alloc(20, 1));
    });
    cleanups.push(() => liar.close());
    const client = await connect(`${LOOPBACK}:${liar.port}`);
    const target = dest('too-long');
    await assert.rejects(download(client, 'x', target), { code: 'TCPKIT_ERR_PROTOCOL_ERROR', message: /more than the 10 bytes/ });
    await assert.rejects(stat(target), { code: 'ENOENT' });
  });

  it('catches a server that sends less than it announced', async () => {
    const liar = await lyingServer((send) => {
      send(FileFrame.FILE_HEAD, encodeFileHead({ size: 100, mtimeMs: 0, offset: 0, digest: 'xxh64' }));
      send(FileFrame.DATA, Buffer.alloc(50, 1));
      send(FileFrame.FILE_END, encodeFileEnd({ digest: 'xxh64:0000000000000000', bytes: 100 }));
    });
    cleanups.push(() => liar.close());
    const client = await connect(`${LOOPBACK}:${liar.port}`);
    const target = dest('too-short');
    await assert.rejects(download(client, 'x', target), { code: 'TCPKIT_ERR_PROTOCOL_ERROR', message: /announced 100 bytes but sent 50/ });
    await assert.rejects(stat(target), { code: 'ENOENT' });
  });

  it('catches a server whose digest does not match the bytes', async () => {
    const liar = await lyingServer((send) => {
      send(FileFrame.FILE_HEAD, encodeFileHead({ size: 4, mtimeMs: 0, offset: 0, digest: 'xxh64' }));
      send(FileFrame.DATA, Buffer.from('abcd'));
      send(FileFrame.FILE_END, encodeFileEnd({ digest: 'xxh64:0123456789abcdef', bytes: 4 }));
    });
    cleanups.push(() => liar.close());
    const client = await connect(`${LOOPBACK}:${liar.port}`);
    const target = dest('bad-digest');
    await assert.rejects(download(client, 'x', target), { code: 'TCPKIT_ERR_DIGEST_MISMATCH' });
    await assert.rejects(stat(target), { code: 'ENOENT' });
    await assert.rejects(getFile(client, 'x', { data: () => {} }), { code: 'TCPKIT_ERR_DIGEST_MISMATCH' }, 'getFile rejects what does not verify');
    client.destroy();
  });
});

describe('tcpkit get / ls', () => {
  it('saves files under their base names, prints JSON lines, and refuses to overwrite', async () => {
    const cwd = dest('cli');
    await mkdir(cwd);
    const result = await runCli(['get', address, 'multi.bin', 'sub/nested.txt', '--json'], { cwd });
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(lines.length, 2);
    for (const line of lines) {
      assert.deepEqual(Object.keys(line).sort(), ['bytes', 'digest', 'mbps', 'name', 'path', 'resumedFrom', 'seconds']);
    }
    assert.deepEqual(await readFile(path.join(cwd, 'multi.bin')), files.get('multi.bin'));
    assert.deepEqual(await readFile(path.join(cwd, 'nested.txt')), files.get('sub/nested.txt'));
    const again = await runCli(['get', address, 'one.bin', '-o', 'multi.bin'], { cwd });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists \(use --force/);
    assert.deepEqual(await readFile(path.join(cwd, 'multi.bin')), files.get('multi.bin'));
    const forced = await runCli(['get', address, 'one.bin', '-o', 'multi.bin', '--force', '--short', '--quiet'], { cwd });
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(forced.stderr, '');
    assert.equal(await readFile(path.join(cwd, 'multi.bin'), 'utf8'), 'x');
  });

  it('says "no such file on server: NAME" and exits non-zero, leaving no file', async () => {
    const cwd = dest('cli-missing');
    await mkdir(cwd);
    const result = await runCli(['get', address, 'nope.txt'], { cwd });
    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'tcpkit: no such file on server: nope.txt\n');
    assert.deepEqual(await readdir(cwd), []);
  });

  it('--retries reconnects and resumes after dropped connections until the file is whole', async () => {
    // Every connection through this proxy drops after 3 MiB: three tries are needed for 7 MiB.
    const proxy = await faultProxy(port, { endAfter: 3 * 1024 * 1024 });
    cleanups.push(() => proxy.close());
    const cwd = dest('cli-retries');
    await mkdir(cwd);
    const result = await runCli(['get', `${LOOPBACK}:${proxy.port}`, 'multi.bin', '--retries', '5', '--json'], { cwd });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /retry 1\/5/);
    // The retry line says what happens next, not "run again".
    assert.match(result.stderr, /closed or reset the connection after [\d.]+ MB of [\d.]+ MB; the partial file is kept; retry 1\/5 in \d+ ms$/m);
    const line = JSON.parse(result.stdout) as { resumedFrom: number; bytes: number };
    assert.ok(line.resumedFrom > 0, 'the last try resumed from the partial file');
    assert.deepEqual(await readFile(path.join(cwd, 'multi.bin')), files.get('multi.bin'));
  });

  it('without --retries, a dropped connection fails the command and keeps the partial file', async () => {
    const proxy = await faultProxy(port, { endAfter: 3 * 1024 * 1024 });
    cleanups.push(() => proxy.close());
    const cwd = dest('cli-dropped');
    await mkdir(cwd);
    const result = await runCli(['get', `${LOOPBACK}:${proxy.port}`, 'multi.bin'], { cwd });
    assert.equal(result.code, 4);
    assert.deepEqual(await readdir(cwd), ['.multi.bin.tcpkit-part', '.multi.bin.tcpkit-part.json']);
  });

  it('draws a progress bar on a terminal (and none when stderr is not one)', async (t) => {
    const { execFileSync, spawn } = await import('node:child_process');

    try {
      execFileSync('script', ['--version'], { stdio: 'ignore' });
    } catch {
      t.skip('the `script` command (util-linux) is not installed: no pseudo-terminal to test with');
      return;
    }
    const cwd = dest('cli-tty');
    await mkdir(cwd);
    const { CLI } = await import('../../helpers/cli.js');
    const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} get ${address} multi.bin`;
    // Asynchronous: the server under test runs in this very process.
    const child = spawn('script', ['-qec', command, '/dev/null'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
    const [status] = (await within(once(child, 'close'), 30_000, 'tcpkit get under script')) as [number];
    const run = { status, stdout: output };
    assert.equal(run.status, 0, run.stdout);
    assert.match(run.stdout, /\d+% \| [\d.]+ (MiB|KiB|B)\/7\.0 MiB \|/);
    assert.match(run.stdout, /saved multi\.bin -> .* verified/);
    assert.deepEqual(await readFile(path.join(cwd, 'multi.bin')), files.get('multi.bin'));
    const piped = await runCli(['get', address, 'one.bin'], { cwd });
    assert.doesNotMatch(piped.stderr, /%/);
  });

  it('downloads hundreds of files pipelined within a small file-descriptor limit', async () => {
    const many = path.join(served, 'many');
    await mkdir(many);
    const names: string[] = [];
    for (let i = 0; i < 400; i++) {
      names.push(`many/f${String(i).padStart(4, '0')}.bin`);
      await writeFile(path.join(served, names[i]!), Buffer.alloc(4096, i % 256));
    }
    const cwd = dest('cli-many');
    await mkdir(cwd);
    const { spawn } = await import('node:child_process');
    const { CLI } = await import('../../helpers/cli.js');
    // 400 files at once would need 800+ descriptors; the limit here is 128.
    const script = `ulimit -n 128 && exec "$0" "$1" get "$2" "$@"`;
    const child = spawn('sh', ['-c', script.replace('"$@"', names.map((n) => `'${n}'`).join(' ')), process.execPath, CLI, address, '--quiet'], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const [code] = (await within(once(child, 'close'), 60_000, 'tcpkit get of 400 files')) as [number];
    assert.equal(code, 0, stderr);
    const saved = (await readdir(cwd)).sort();
    assert.equal(saved.length, 400, `saved ${saved.length}; left: ${saved.filter((f) => f.startsWith('.')).slice(0, 3).join(', ')}`);
    assert.deepEqual(await readFile(path.join(cwd, 'f0399.bin')), Buffer.alloc(4096, 399 % 256));
  });

  it('lists a directory', async () => {
    const result = await runCli(['ls', address]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^d +- +\S+ \S+ +sub\/$/m);
    assert.match(result.stdout, new RegExp(`^- +${files.get('multi.bin')!.length} .*multi\\.bin$`, 'm'));
    assert.doesNotMatch(result.stdout, /\.hidden/);
  });
});
