/**
 * `tcpkit put` against `tcpkit serve --writable / --upload-dir`, end to end: both sides are the
 * built command, spawned as a user runs it, on 127.0.0.1 and ephemeral ports.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, realpath, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../src/client/client.js';
import type { TcpkitError } from '../../src/errors.js';
import { createDigest, type DigestAlgorithm } from '../../src/services/files/digest.js';
import { uploadStream } from '../../src/services/files/upload/client.js';
import { UploadFrame } from '../../src/services/files/wire.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { runCli, startCliServer, type RunningCli } from '../helpers/cli.js';
import { gate, LOOPBACK, scriptedServer, waitUntil, within } from '../helpers/net.js';

/** The prefix of the server's temporary files (src/services/files/commit.ts). */
const TEMP_PREFIX = '.tcpkit-upload-';
/** A `put` of a few MiB on a slow, busy machine: generous, still bounded. */
const TRANSFER_MS = 60_000;

let base: string;
const servers: RunningCli[] = [];
/** Scripted servers, closed after the tests. */
const stops: Array<() => Promise<void>> = [];

before(async () => {
  // mkdtemp makes a 0700 directory: never world-writable, whatever the umask.
  base = await realpath(await mkdtemp(path.join(tmpdir(), 'tcpkit-put-')));
});
after(async () => {
  for (const stop of stops.splice(0)) await stop();
  for (const server of servers.splice(0)) {
    server.child.kill('SIGKILL');
    await server.exit().catch(() => {});
  }
  await rm(base, { recursive: true, force: true });
});

async function cliServer(extra: string[]): Promise<RunningCli & { port: number; address: string }> {
  const server = await startCliServer(extra);
  servers.push(server);
  return Object.assign(server, { address: `${LOOPBACK}:${server.port}` });
}

let counter = 0;
/**
 * A fresh place for one test: `served` (the server's DIR) and `local` (the client's files), both
 * owner-only. `top` holds them, so anything written outside `served` would show there.
 */
async function scratch(label: string): Promise<{ top: string; served: string; local: string }> {
  const top = path.join(base, `${++counter}-${label}`);
  const served = path.join(top, 'served');
  const local = path.join(top, 'local');
  // An explicit mode: a umask of 0 must not make them world-writable (serve would refuse them).
  for (const dir of [top, served, local]) await mkdir(dir, { mode: 0o700 });
  return { top, served, local };
}

/** Writes each local file and returns the contents by name. */
async function localFiles(dir: string, files: Record<string, Buffer | string>): Promise<Map<string, Buffer>> {
  const contents = new Map<string, Buffer>();
  for (const [name, data] of Object.entries(files)) {
    const buffer = Buffer.from(data);
    await writeFile(path.join(dir, name), buffer);
    contents.set(name, buffer);
  }
  return contents;
}

async function entries(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

async function leftovers(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.startsWith(TEMP_PREFIX));
}

function digestOf(data: Uint8Array, algorithm: DigestAlgorithm = 'xxh64'): string {
  const digest = createDigest(algorithm);
  digest.update(data);
  return digest.value();
}

/** Lines of `tcpkit: ...` and `stored ...` the command printed on stderr. */
function lines(text: string): string[] {
  return text.split('\n').filter((line) => line !== '');
}

/** Connections the server logged so far (` connected`, not `disconnected`). */
function connections(server: RunningCli): number {
  return (server.stderr().match(/ connected$/gm) ?? []).length;
}

describe('tcpkit put: storing files', () => {
  it('stores an empty, a small and a 5 MiB file in one run, over one connection, byte-identical, with no temporary file left', async () => {
    const { served, local } = await scratch('three');
    const files = await localFiles(local, {
      'empty.bin': Buffer.alloc(0),
      'small.txt': 'small file\n',
      'random.bin': randomBytes(5 * 1024 * 1024 + 123),
    });
    const server = await cliServer([served, '--writable']);
    await server.waitStderr(/\(uploads into .*served\)/);

    const result = await runCli(['put', server.address, 'empty.bin', 'small.txt', 'random.bin'], { cwd: local, timeoutMs: TRANSFER_MS });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '', 'summaries go to stderr');
    const said = lines(result.stderr);
    assert.equal(said.length, 3, result.stderr);
    assert.match(said[0]!, /^stored empty\.bin -> empty\.bin \(0 B, .*xxh3:[0-9a-f]{16} verified by the server\)$/);
    assert.match(said[1]!, /^stored small\.txt -> small\.txt \(11 B, /);
    assert.match(said[2]!, new RegExp(`^stored random\\.bin -> random\\.bin \\(5\\.0 MiB, .*${digestOf(files.get('random.bin')!, 'xxh3')} verified`));

    for (const [name, data] of files) assert.ok((await readFile(path.join(served, name))).equals(data), `${name} is byte-identical`);
    assert.deepEqual(await leftovers(served), [], 'no temporary file left');
    assert.deepEqual(await entries(served), ['empty.bin', 'random.bin', 'small.txt']);

    await server.waitStderr(/uploaded random\.bin \(5243003 bytes, xxh3:[0-9a-f]{16}\)/);
    await server.waitStderr(/ disconnected/);
    assert.equal(connections(server), 1, 'the files went over one kept connection');
  });

  it('--short stores each file over its own connection', async () => {
    const { served, local } = await scratch('short');
    const files = await localFiles(local, { 'a.txt': 'first\n', 'b.bin': randomBytes(200_000) });
    const server = await cliServer([served, '--writable']);
    const result = await runCli(['put', server.address, 'a.txt', 'b.bin', '--short'], { cwd: local, timeoutMs: TRANSFER_MS });
    assert.equal(result.code, 0, result.stderr);
    for (const [name, data] of files) assert.ok((await readFile(path.join(served, name))).equals(data), name);
    await waitUntil(() => (server.stderr().match(/ disconnected/g) ?? []).length === 2, 'both connections to close');
    assert.equal(connections(server), 2, 'one connection per file');
  });

  it('--json prints one JSON line per file: name, bytes and the digest the server verified; --to puts them in a directory', async () => {
    const { served, local } = await scratch('json');
    await mkdir(path.join(served, 'inbox'), { mode: 0o700 });
    const files = await localFiles(local, { 'a.txt': 'alpha\n', 'b.bin': randomBytes(300_000) });
    const server = await cliServer([served, '--writable']);

    const result = await runCli(['put', server.address, 'a.txt', 'b.bin', '--to', 'inbox', '--json'], { cwd: local, timeoutMs: TRANSFER_MS });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, '');
    const printed = lines(result.stdout).map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(printed.length, 2, result.stdout);
    for (const [i, [file, data]] of [...files].entries()) {
      const line = printed[i]!;
      assert.equal(line.file, file);
      assert.equal(line.name, `inbox/${file}`);
      assert.equal(line.bytes, data.length);
      assert.equal(line.digest, digestOf(data, 'xxh3'));
      assert.equal(typeof line.seconds, 'number');
      assert.equal(typeof line.mbps, 'number');
      assert.ok((await readFile(path.join(served, 'inbox', file))).equals(data));
    }
    assert.deepEqual(await entries(served), ['inbox']);
    assert.deepEqual(await entries(path.join(served, 'inbox')), ['a.txt', 'b.bin']);
  });

  it('--upload-dir stores into that directory, which is not served, and leaves the served one alone', async () => {
    const { top, served, local } = await scratch('upload-dir');
    const incoming = path.join(top, 'incoming');
    await mkdir(incoming, { mode: 0o700 });
    await writeFile(path.join(served, 'public.txt'), 'public\n');
    const files = await localFiles(local, { 'report.txt': 'quarterly numbers\n' });
    const server = await cliServer([served, '--upload-dir', incoming]);
    await server.waitStderr(/\(uploads into .*incoming\)/);

    const result = await runCli(['put', server.address, 'report.txt'], { cwd: local });
    assert.equal(result.code, 0, result.stderr);
    assert.ok((await readFile(path.join(incoming, 'report.txt'))).equals(files.get('report.txt')!));
    assert.deepEqual(await entries(incoming), ['report.txt']);
    assert.deepEqual(await entries(served), ['public.txt'], 'nothing written into the served directory');

    // The upload directory is not served: the file cannot be downloaded back.
    const get = await runCli(['get', server.address, 'report.txt', '-o', path.join(top, 'copy.txt')]);
    assert.equal(get.code, 1, get.stderr);
    assert.match(get.stderr, /no such file on server: report\.txt/);
  });

  it('stores several files when one of them fails, and exits 1', async () => {
    const { served, local } = await scratch('partial');
    await writeFile(path.join(served, 'two.txt'), 'original\n');
    const files = await localFiles(local, { 'one.txt': 'one\n', 'two.txt': 'second version\n', 'three.txt': 'three\n' });
    const server = await cliServer([served, '--writable']);

    const result = await runCli(['put', server.address, 'one.txt', 'two.txt', 'three.txt'], { cwd: local });
    assert.equal(result.code, 1, result.stderr);
    const said = lines(result.stderr);
    assert.equal(said.length, 3, result.stderr);
    assert.match(said[0]!, /^stored one\.txt -> one\.txt /);
    assert.match(said[1]!, /^tcpkit: two\.txt: two\.txt exists on the server/);
    assert.match(said[2]!, /^stored three\.txt -> three\.txt /);
    assert.ok((await readFile(path.join(served, 'one.txt'))).equals(files.get('one.txt')!));
    assert.ok((await readFile(path.join(served, 'three.txt'))).equals(files.get('three.txt')!));
    assert.equal(await readFile(path.join(served, 'two.txt'), 'utf8'), 'original\n', 'the existing file is unchanged');
    assert.deepEqual(await entries(served), ['one.txt', 'three.txt', 'two.txt']);
  });
});

describe('tcpkit put: refusals', () => {
  it('uploads are off by default: put against a plain serve exits 1, says how to allow them, and writes nothing', async () => {
    const { served, local } = await scratch('off');
    await writeFile(path.join(served, 'existing.txt'), 'x');
    await localFiles(local, { 'a.txt': 'a\n' });
    const server = await cliServer([served]);
    await server.waitStderr(/\(no uploads\)/);

    const result = await runCli(['put', server.address, 'a.txt'], { cwd: local });
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^tcpkit: a\.txt: .*does not accept uploads/);
    assert.match(result.stderr, /--writable/);
    assert.match(result.stderr, /--upload-dir/);
    assert.deepEqual(await entries(served), ['existing.txt']);
  });

  it('never replaces an existing file unless the client asks (--overwrite) and the server allows it (--allow-overwrite)', async () => {
    const { served, local } = await scratch('overwrite');
    await localFiles(local, { 'doc.txt': 'first version\n' });
    const strict = await cliServer([served, '--writable']);
    const first = await runCli(['put', strict.address, 'doc.txt'], { cwd: local });
    assert.equal(first.code, 0, first.stderr);

    await localFiles(local, { 'doc.txt': 'second version, longer\n' });
    const again = await runCli(['put', strict.address, 'doc.txt'], { cwd: local });
    assert.equal(again.code, 1, again.stderr);
    assert.match(again.stderr, /^tcpkit: doc\.txt: doc\.txt exists on the server \(not replaced: overwriting was not asked for\)\n$/);
    assert.equal(await readFile(path.join(served, 'doc.txt'), 'utf8'), 'first version\n');

    const asked = await runCli(['put', strict.address, 'doc.txt', '--overwrite'], { cwd: local });
    assert.equal(asked.code, 1, asked.stderr);
    assert.match(asked.stderr, /doc\.txt exists on the server \(this server does not allow overwriting\)/);
    assert.equal(await readFile(path.join(served, 'doc.txt'), 'utf8'), 'first version\n');

    const lenient = await cliServer([served, '--writable', '--allow-overwrite']);
    const unasked = await runCli(['put', lenient.address, 'doc.txt'], { cwd: local });
    assert.equal(unasked.code, 1, 'the server allowing it is not enough: the client must ask');
    assert.match(unasked.stderr, /exists on the server/);
    assert.equal(await readFile(path.join(served, 'doc.txt'), 'utf8'), 'first version\n');

    const both = await runCli(['put', lenient.address, 'doc.txt', '--overwrite'], { cwd: local });
    assert.equal(both.code, 0, both.stderr);
    assert.equal(await readFile(path.join(served, 'doc.txt'), 'utf8'), 'second version, longer\n');
    assert.deepEqual(await leftovers(served), [], 'no temporary file left');
    assert.deepEqual(await entries(served), ['doc.txt']);
  });

  it('refuses a file over --max-upload-size with the cap in the message, leaving nothing; a file of exactly the cap is stored', async () => {
    const { served, local } = await scratch('cap');
    const files = await localFiles(local, { 'big.bin': randomBytes(2 * 1024 * 1024), 'exact.bin': randomBytes(1024 * 1024) });
    const server = await cliServer([served, '--writable', '--max-upload-size', '1MB']);

    const big = await runCli(['put', server.address, 'big.bin'], { cwd: local, timeoutMs: TRANSFER_MS });
    assert.equal(big.code, 1, big.stderr);
    assert.match(big.stderr, /^tcpkit: big\.bin: big\.bin is 2097152 bytes; this server takes files of at most 1048576 bytes\n$/);
    assert.deepEqual(await leftovers(served), [], 'no temporary file');
    assert.deepEqual(await entries(served), [], 'nothing under the name');

    const exact = await runCli(['put', server.address, 'exact.bin'], { cwd: local, timeoutMs: TRANSFER_MS });
    assert.equal(exact.code, 0, exact.stderr);
    assert.ok((await readFile(path.join(served, 'exact.bin'))).equals(files.get('exact.bin')!));
    assert.deepEqual(await entries(served), ['exact.bin']);
  });

  it('refuses bad names before connecting, and says NOT_FOUND for a --to directory that does not exist', async () => {
    const { top, served, local } = await scratch('names');
    await localFiles(local, { 'a.txt': 'a\n' });
    const server = await cliServer([served, '--writable']);

    const dotdot = await runCli(['put', server.address, 'a.txt', '--as', '../x'], { cwd: local });
    assert.notEqual(dotdot.code, 0);
    assert.equal(dotdot.code, 1, dotdot.stderr); // INVALID_NAME, as `get` reports a bad name
    assert.match(dotdot.stderr, /^tcpkit: invalid name: contains a "\.\." component\n$/);

    const hidden = await runCli(['put', server.address, 'a.txt', '--as', '.hidden'], { cwd: local });
    assert.notEqual(hidden.code, 0);
    assert.equal(hidden.code, 1, hidden.stderr); // FORBIDDEN
    assert.match(hidden.stderr, /^tcpkit: hidden names .*\n$/);

    const hiddenDir = await runCli(['put', server.address, 'a.txt', '--to', '.ssh'], { cwd: local });
    assert.notEqual(hiddenDir.code, 0, hiddenDir.stderr);

    const severalAs = await runCli(['put', server.address, 'a.txt', 'a.txt', '--as', 'b.txt'], { cwd: local });
    assert.equal(severalAs.code, 2, severalAs.stderr);
    assert.match(severalAs.stderr, /--as names one file/);

    const missingDir = await runCli(['put', server.address, 'a.txt', '--to', 'missing'], { cwd: local });
    assert.equal(missingDir.code, 1, missingDir.stderr);
    assert.match(missingDir.stderr, /^tcpkit: a\.txt: no such directory on the server for missing\/a\.txt\n$/);

    // Only the last command connected: the server accepts in order, so by the time it logs that
    // connection's end, any earlier connection would have been logged too.
    await server.waitStderr(/ disconnected/);
    assert.equal(connections(server), 1, server.stderr());
    assert.deepEqual(await entries(served), [], 'nothing written');
    assert.deepEqual(await entries(top), ['local', 'served'], 'nothing written beside the upload directory');
    assert.deepEqual(await entries(local), ['a.txt']);
  });

  it('cleans up when the client goes away in the middle of an upload: no temporary file, nothing under the name', async () => {
    const { served } = await scratch('cut');
    const server = await cliServer([served, '--writable']);
    const client = await connect(server.address);
    const hold = gate();
    const source = async function* (): AsyncGenerator<Buffer> {
      yield randomBytes(64 * 1024);
      await hold.promise; // the rest never comes before the connection is cut
    };
    const uploading = uploadStream(client, 'cut.bin', source(), 4 * 1024 * 1024);
    uploading.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
    const tempExists = (): boolean => readdirSync(served).some((name) => name.startsWith(TEMP_PREFIX));
    await waitUntil(tempExists, 'the server to create its temporary file', 15_000);

    client.destroy();
    hold.open();
    await assert.rejects(within(uploading, 15_000, 'the upload to fail'));
    await server.waitStderr(/ disconnected/);
    await waitUntil(() => !tempExists(), 'the server to remove its temporary file', 15_000);
    assert.deepEqual(await leftovers(served), []);
    assert.deepEqual(await entries(served), [], 'nothing under the name');
    assert.doesNotMatch(server.stderr(), /uploaded cut\.bin/);
  });
});

describe('tcpkit put --timeout: a server that stops taking our bytes (issue 10, item 1)', () => {
  it('reports no progress after --timeout, exits 4 and does not hang', async () => {
    // It says PUT_READY and never reads again: the send buffer fills and never drains.
    const server = await scriptedServer(['message', 'upload'], (frame, socket) => {
      if (frame.type !== UploadFrame.PUT) return;
      socket.write(encodeFrame(UploadFrame.PUT_READY, frame.id, Buffer.from('{}')));
      socket.pause();
    });
    stops.push(() => server.close());
    const { local } = await scratch('stalled');
    // Sparse: 64 MiB is far more than the kernel's buffers take, and costs no disk.
    await writeFile(path.join(local, 'big.bin'), '');
    await truncate(path.join(local, 'big.bin'), 64 * 1024 * 1024);
    const started = Date.now();
    const result = await runCli(['put', server.address, 'big.bin', '--timeout', '2000'], { cwd: local, timeoutMs: 30_000 });
    const ms = Date.now() - started;
    assert.equal(result.code, 4, result.stderr);
    assert.match(result.stderr, /^tcpkit: big\.bin: no progress from 127\.0\.0\.1:\d+ within 2000 ms: it took none of the bytes sent and sent no reply\n$/);
    // Far below the heartbeat's 20 s (or never), far above 2 s and a node start on a busy machine.
    assert.ok(ms < 9_000, `exited after ${ms} ms`);
  });
});

describe('tcpkit serve killed mid-upload', () => {
  it('the client fails, nothing is under the name, and a restart on the same port removes the leftover', async () => {
    const { served, local } = await scratch('kill');
    const server = await cliServer([served, '--writable']);
    const tempExists = (): boolean => readdirSync(served).some((name) => name.startsWith(TEMP_PREFIX));
    // A client that sends a little, then waits: the server is killed with the upload open.
    const client = await connect(server.address);
    const hold = gate();
    const source = async function* (): AsyncGenerator<Buffer> {
      yield randomBytes(64 * 1024);
      await hold.promise;
    };
    const uploading = uploadStream(client, 'killed.bin', source(), 4 * 1024 * 1024);
    uploading.catch(() => {}); // awaited below
    await waitUntil(tempExists, 'the server to create its temporary file', 15_000);
    server.child.kill('SIGKILL');
    await server.exit();
    await assert.rejects(within(uploading, 15_000, 'the upload to fail'), (e: TcpkitError) => /CONNECTION_(FAILED|CLOSED)/.test(e.code));
    hold.open();
    assert.ok(!readdirSync(served).includes('killed.bin'), 'nothing under the name');
    assert.ok(tempExists(), 'a killed server leaves its temporary file');

    const restarted = await cliServer([served, '--writable', '--port', String(server.port)]);
    assert.equal(restarted.port, server.port, 'a restart on the same port works at once');
    await restarted.waitStderr(/removed 1 unfinished upload\(s\) left by an earlier run/);
    assert.equal(tempExists(), false);
    const files = await localFiles(local, { 'killed.bin': randomBytes(100_000) });
    const again = await runCli(['put', restarted.address, 'killed.bin'], { cwd: local, timeoutMs: TRANSFER_MS });
    assert.equal(again.code, 0, again.stderr);
    assert.ok((await readFile(path.join(served, 'killed.bin'))).equals(files.get('killed.bin')!));
  });
});

describe('tcpkit serve: upload flags', () => {
  it('refuses to start when the upload directory, or a --writable DIR, is writable by every user', async () => {
    const { top, served } = await scratch('world');
    const open = path.join(top, 'open');
    await mkdir(open);
    await chmod(open, 0o777);

    const uploadDir = await runCli(['serve', '--host', LOOPBACK, '--port', '0', served, '--upload-dir', open]);
    assert.notEqual(uploadDir.code, 0);
    assert.equal(uploadDir.stdout, '', 'never listening');
    assert.match(uploadDir.stderr, /^tcpkit: .*writable by every user/);

    const writable = await runCli(['serve', '--host', LOOPBACK, '--port', '0', open, '--writable']);
    assert.notEqual(writable.code, 0);
    assert.equal(writable.stdout, '', 'never listening');
    assert.match(writable.stderr, /^tcpkit: .*writable by every user/);
    assert.deepEqual(await entries(open), []);
  });

  it('rejects contradictory or pointless upload flags and bad sizes with exit 2', async () => {
    const { top, served } = await scratch('flags');
    const incoming = path.join(top, 'incoming');
    await mkdir(incoming, { mode: 0o700 });
    const serve = (...args: string[]) => runCli(['serve', '--host', LOOPBACK, '--port', '0', served, ...args]);

    const both = await serve('--writable', '--upload-dir', incoming);
    assert.equal(both.code, 2, both.stderr);
    assert.match(both.stderr, /--writable and --upload-dir/);

    const capAlone = await serve('--max-upload-size', '1G');
    assert.equal(capAlone.code, 2, capAlone.stderr);
    assert.match(capAlone.stderr, /--max-upload-size.*need --writable or --upload-dir/);

    const uploadsAlone = await serve('--max-uploads', '3');
    assert.equal(uploadsAlone.code, 2, uploadsAlone.stderr);
    assert.match(uploadsAlone.stderr, /--max-uploads.*need --writable or --upload-dir/);

    const overwriteAlone = await serve('--allow-overwrite');
    assert.equal(overwriteAlone.code, 2, overwriteAlone.stderr);
    assert.match(overwriteAlone.stderr, /need --writable or --upload-dir/);

    const bogus = await serve('--writable', '--max-upload-size', '12XB');
    assert.equal(bogus.code, 2, bogus.stderr);
    assert.match(bogus.stderr, /--max-upload-size.*12XB/);
    for (const result of [both, capAlone, uploadsAlone, overwriteAlone, bogus]) assert.equal(result.stdout, '', 'never listening');
  });

  it('--max-upload-size 1G parses as 1 GiB (not 1 byte), and --help lists the upload flags', async () => {
    const { served, local } = await scratch('1g');
    const files = await localFiles(local, { 'a.txt': 'more than one byte\n' });
    const server = await cliServer([served, '--writable', '--max-upload-size', '1G']);
    const result = await runCli(['put', server.address, 'a.txt'], { cwd: local });
    assert.equal(result.code, 0, result.stderr);
    assert.ok((await readFile(path.join(served, 'a.txt'))).equals(files.get('a.txt')!));

    const serveHelp = await runCli(['serve', '--help']);
    assert.equal(serveHelp.code, 0);
    for (const flag of ['--writable', '--upload-dir <dir>', '--max-upload-size <size>', '--max-uploads <n>', '--allow-overwrite']) assert.ok(serveHelp.stdout.includes(flag), flag);
    const putHelp = await runCli(['put', '--help']);
    assert.equal(putHelp.code, 0);
    assert.match(putHelp.stdout, /Usage: tcpkit put/);
    for (const flag of ['--as <name>', '--to <dir>', '--overwrite', '--short', '--retries <n>', '--json']) assert.ok(putHelp.stdout.includes(flag), flag);
    const help = await runCli(['--help']);
    assert.match(help.stdout, /\n  put /);
  });
});

describe('tcpkit put: over TLS, with a token', () => {
  it('stores a file over TLS (--pin) with the token, and a client without the token is refused', async () => {
    const { top, served, local } = await scratch('tls');
    const certs = path.join(top, 'certs');
    await mkdir(certs, { mode: 0o700 });
    const made = await runCli(['cert', '--out', certs]);
    assert.equal(made.code, 0, made.stderr);
    const pin = /sha256:\s+(\S+)/.exec(made.stdout)?.[1];
    assert.ok(pin, made.stdout);
    const files = await localFiles(local, { 'secret.bin': randomBytes(300_000) });
    const env = { TCPKIT_TOKEN: 'upload-token-123' };
    const tls = ['--tls-cert', path.join(certs, 'tcpkit-cert.pem'), '--tls-key', path.join(certs, 'tcpkit-key.pem')];
    const server = await startCliServer([served, '--writable', ...tls, '--token', env.TCPKIT_TOKEN]);
    servers.push(server);
    const address = `${LOOPBACK}:${server.port}`;

    const refused = await runCli(['put', address, 'secret.bin', '--pin', pin], { cwd: local });
    // Refused in the hello, like any connection the server will not take: exit 3.
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, /requires a token/);
    assert.deepEqual(await entries(served), []);

    const stored = await runCli(['put', address, 'secret.bin', '--pin', pin], { cwd: local, env });
    assert.equal(stored.code, 0, stored.stderr);
    assert.ok((await readFile(path.join(served, 'secret.bin'))).equals(files.get('secret.bin')!));
  });
});
