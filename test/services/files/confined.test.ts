/**
 * FileRoot against a real directory tree: in-root and escaping symlinks, a symlinked directory
 * leading outside, special files (FIFO, socket, /dev/zero), hard links, names that are literal
 * look-alikes of traversal, listings, descriptor hygiene, and a symlink-swap race run by another
 * process. The outside files hold a marker that must never be read (goal G1).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, readdirSync } from 'node:fs';
import { chmod, link, mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TcpkitError } from '../../../src/errors.js';
import { FileRoot, type FileRootOptions, type OpenedFile, type SymlinkPolicy } from '../../../src/services/files/jail.js';

const MARKER = 'OUTSIDE-MARKER-7f3a';
const HELLO = 'hello, world\n';

let base: string; // real path of the temporary tree
let rootDir: string;
let outsideDir: string;
let root: FileRoot;
const cleanups: Array<() => Promise<void> | void> = [];

before(async () => {
  base = await realpath(await mkdtemp(path.join(os.tmpdir(), 'tcpkit-confined-')));
  cleanups.push(() => rm(base, { recursive: true, force: true }));
  rootDir = path.join(base, 'root');
  outsideDir = path.join(base, 'outside');
  const sibling = `${rootDir}-x`; // shares the root's name as a prefix (CVE-2014-6394)
  for (const dir of [rootDir, outsideDir, sibling, path.join(rootDir, 'sub'), path.join(outsideDir, 'dir')]) await mkdir(dir);
  await writeFile(path.join(outsideDir, 'secret.txt'), MARKER);
  await writeFile(path.join(outsideDir, 'nested.txt'), MARKER);
  await writeFile(path.join(outsideDir, 'dir', 'f'), MARKER);
  await writeFile(path.join(sibling, 'f'), MARKER);

  const at = (name: string): string => path.join(rootDir, name);
  await writeFile(at('hello.txt'), HELLO);
  await writeFile(at('empty.bin'), '');
  await writeFile(at('%41'), 'percent'); // a literal name; "A" must not find it
  await writeFile(at('sub/nested.txt'), 'nested\n');
  await writeFile(at('sub/.dotfile'), 'dot');
  await writeFile(at('.hidden'), 'HIDDEN');
  await writeFile(at('hl-a'), 'hard link');
  await link(at('hl-a'), at('hl-b'));
  await writeFile(at('CON'), 'reserved'); // exists on disk, but no valid name reaches it
  await writeFile(Buffer.concat([Buffer.from(at('bad-')), Buffer.of(0xff)]), 'invalid utf-8 name');
  await writeFile(at('ctrl-\u001b[2J'), 'control');
  await symlink('hello.txt', at('link-in'));
  await symlink('../hello.txt', at('sub/up'));
  await symlink('sub', at('dir-in'));
  await symlink(path.join(outsideDir, 'secret.txt'), at('link-out'));
  await symlink('../outside/secret.txt', at('link-out-relative'));
  await symlink(outsideDir, at('dir-out'));
  await symlink('/dev/zero', at('zero'));
  await symlink('loop', at('loop'));
  await symlink('does-not-exist', at('dangling'));
  execFileSync('mkfifo', [at('fifo')]);
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at('sock'), resolve);
  });
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  root = await FileRoot.open(rootDir);
});

after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function refusedWith(code: 'INVALID_NAME' | 'NOT_FOUND' | 'FORBIDDEN' | 'INVALID_OPTION', reason?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof TcpkitError, `expected a TcpkitError, got ${error instanceof Error ? error.stack : String(error)}`);
    assert.equal(error.wireCode, code, error.message);
    if (reason) assert.match(error.message, reason);
    if (code !== 'INVALID_OPTION') {
      assert.ok(!error.message.includes(base), `the message reveals a server path: ${error.message}`);
      assert.ok(!error.message.includes(MARKER));
    }
    return true;
  };
}

async function readAll(root: FileRoot, name: string | Uint8Array): Promise<string> {
  const file = await root.openFile(name);
  try {
    return (await file.handle.readFile()).toString('utf8');
  } finally {
    await file.handle.close();
  }
}

/**
 * The two ways to open a file, as one promise-returning call: `openFile` (a FileHandle) and
 * `openFileSync` (a descriptor, GET's way): the same checks, so every refusal is run through both.
 * Resolves with the size once the file is closed again.
 */
const OPENERS: ReadonlyArray<[string, (root: FileRoot, name: string | Uint8Array, access?: { allowHidden?: boolean }) => Promise<number>]> = [
  [
    'openFile',
    async (root, name, access) => {
      const file = await root.openFile(name, access);
      await file.handle.close();
      return file.size;
    },
  ],
  [
    'openFileSync',
    async (root, name, access) => {
      const file = root.openFileSync(name, access);
      closeSync(file.fd);
      return file.size;
    },
  ],
];

function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('FileRoot.open', () => {
  it('resolves the root once, through symlinks', async () => {
    const alias = path.join(base, 'alias');
    await symlink(rootDir, alias);
    const aliased = await FileRoot.open(alias);
    assert.equal(aliased.realPath, rootDir);
    assert.equal(await readAll(aliased, 'hello.txt'), HELLO);
  });

  it('refuses a root that is not a directory or does not exist', async () => {
    await assert.rejects(FileRoot.open(path.join(rootDir, 'hello.txt')), refusedWith('INVALID_OPTION', /not a directory/));
    await assert.rejects(FileRoot.open(path.join(base, 'missing')), refusedWith('INVALID_OPTION', /no such directory/));
    await assert.rejects(FileRoot.open(path.join(rootDir, 'fifo')), refusedWith('INVALID_OPTION', /not a directory/));
  });

  it('refuses bad options, naming them', async () => {
    const bad: Array<[FileRootOptions, RegExp]> = [
      [{ maxListEntries: 0 }, /maxListEntries/],
      [{ maxNameBytes: 1.5 }, /maxNameBytes/],
      [{ maxComponentBytes: 256 }, /maxComponentBytes/],
      [{ symlinks: 'follow' as unknown as SymlinkPolicy }, /symlinks/],
      [{ allowHidden: 'yes' as unknown as boolean }, /allowHidden/],
    ];
    for (const [options, reason] of bad) await assert.rejects(FileRoot.open(rootDir, options), refusedWith('INVALID_OPTION', reason));
  });
});

describe('FileRoot.openFile: what is served', () => {
  it('serves regular files with their size and mtime', async () => {
    const file = await root.openFile('hello.txt');
    try {
      assert.equal(file.name, 'hello.txt');
      assert.equal(file.size, Buffer.byteLength(HELLO));
      assert.ok(file.mtimeMs > 0);
      assert.equal((await file.handle.readFile()).toString(), HELLO);
    } finally {
      await file.handle.close();
    }
    const empty = await root.openFile('empty.bin');
    assert.equal(empty.size, 0);
    await empty.handle.close();
    assert.equal(await readAll(root, 'sub/nested.txt'), 'nested\n');
  });

  it('follows symlinks whose target is inside the root', async () => {
    assert.equal(await readAll(root, 'link-in'), HELLO);
    assert.equal(await readAll(root, 'sub/up'), HELLO);
    assert.equal(await readAll(root, 'dir-in/nested.txt'), 'nested\n');
  });

  it('takes names as bytes too', async () => {
    assert.equal(await readAll(root, Buffer.from('sub/nested.txt')), 'nested\n');
  });

  it('treats percent signs as literal bytes', async () => {
    assert.equal(await readAll(root, '%41'), 'percent');
    await assert.rejects(root.openFile('A'), refusedWith('NOT_FOUND'));
  });

  it('refuses hard-linked files unless allowHardLinks is true', async () => {
    for (const [label, opener] of OPENERS) {
      await assert.rejects(opener(root, 'hl-a'), refusedWith('FORBIDDEN', /hard link/), label);
      await assert.rejects(opener(root, 'hl-b'), refusedWith('FORBIDDEN', /hard link/), label);
    }
    await assert.rejects(root.stat('hl-b'), refusedWith('FORBIDDEN', /hard link/));
    assert.equal(await readAll(root, 'sub/nested.txt'), 'nested\n');
    const lenient = await FileRoot.open(rootDir, { allowHardLinks: true });
    assert.equal(await readAll(lenient, 'hl-b'), 'hard link');
    for (const [, opener] of OPENERS) assert.equal(await opener(lenient, 'hl-a'), 'hard link'.length);
    assert.equal((await lenient.stat('hl-a')).type, 'file');
  });

  it('serves hidden files only when allowed, per root or per call', async () => {
    for (const [label, opener] of OPENERS) {
      await assert.rejects(opener(root, '.hidden'), refusedWith('FORBIDDEN', /hidden/), label);
      await assert.rejects(opener(root, 'sub/.dotfile'), refusedWith('FORBIDDEN', /hidden/), label);
      assert.equal(await opener(root, '.hidden', { allowHidden: true }), 'HIDDEN'.length, label);
    }
    const file = await root.openFile('.hidden', { allowHidden: true });
    await file.handle.close();
    const open = await FileRoot.open(rootDir, { allowHidden: true });
    assert.equal(await readAll(open, '.hidden'), 'HIDDEN');
    await assert.rejects(open.openFile('.hidden', { allowHidden: false }), refusedWith('FORBIDDEN'));
  });
});

describe('FileRoot.openFile: refusals', () => {
  const cases: Array<[string | Uint8Array, 'INVALID_NAME' | 'NOT_FOUND' | 'FORBIDDEN', RegExp?]> = [
    ['../outside/secret.txt', 'INVALID_NAME'],
    ['sub/../../outside/secret.txt', 'INVALID_NAME'],
    ['a/../../x', 'INVALID_NAME'],
    ['/etc/passwd', 'INVALID_NAME'],
    ['////etc/passwd', 'INVALID_NAME'],
    ['..\\outside\\secret.txt', 'INVALID_NAME'],
    ['C:..\\x', 'INVALID_NAME'],
    ['../root-x/f', 'INVALID_NAME'],
    ['secret.txt\u0000.png', 'INVALID_NAME'],
    ['hello.txt\u0000', 'INVALID_NAME'],
    ['CON', 'INVALID_NAME'],
    ['con.txt', 'INVALID_NAME'],
    ['hello.txt.', 'INVALID_NAME'],
    ['hello.txt ', 'INVALID_NAME'],
    ['a\u009b', 'INVALID_NAME'],
    [Uint8Array.of(0xc0, 0xae, 0xc0, 0xae, 0x2f, 0x6f), 'INVALID_NAME'],
    [Buffer.concat([Buffer.from('bad-'), Buffer.of(0xff)]), 'INVALID_NAME'],
    ['%2e%2e/outside/secret.txt', 'NOT_FOUND', /no such file: %2e%2e\/outside\/secret\.txt/],
    ['%2e%2e%2foutside%2fsecret.txt', 'NOT_FOUND'],
    ['．．／outside／secret.txt', 'NOT_FOUND'],
    ['missing.txt', 'NOT_FOUND', /^no such file: missing\.txt$/],
    ['hello.txt/x', 'NOT_FOUND'],
    ['dangling', 'NOT_FOUND'],
    ['.hidden', 'FORBIDDEN'],
    ['sub', 'FORBIDDEN', /is a directory/],
    ['dir-in', 'FORBIDDEN', /is a directory/],
    ['link-out', 'FORBIDDEN', /outside the served root/],
    ['link-out-relative', 'FORBIDDEN', /outside the served root/],
    ['dir-out/secret.txt', 'FORBIDDEN', /outside the served root/],
    ['dir-out/dir/f', 'FORBIDDEN', /outside the served root/],
    ['dir-out', 'FORBIDDEN', /outside the served root/],
    ['zero', 'FORBIDDEN', /outside the served root/],
    ['fifo', 'FORBIDDEN', /not a regular file/],
    ['sock', 'FORBIDDEN', /not a regular file/],
    ['loop', 'FORBIDDEN', /symbolic links/],
  ];
  for (const [name, code, reason] of cases) {
    it(`refuses ${typeof name === 'string' ? JSON.stringify(name) : `bytes ${Buffer.from(name).toString('hex')}`} with ${code}, sync or not`, async () => {
      for (const [label, opener] of OPENERS) await assert.rejects(opener(root, name), refusedWith(code, reason), label);
    });
  }

  it('openFileSync serves what openFile serves, with the same description', async () => {
    for (const name of ['hello.txt', 'link-in', 'sub/up', 'dir-in/nested.txt', 'empty.bin']) {
      const { handle, ...described } = await root.openFile(name);
      await handle.close();
      const { fd, ...same } = root.openFileSync(name);
      closeSync(fd);
      assert.deepEqual(same, described, name);
    }
  });

  it('refuses a FIFO at once, without holding a threadpool thread (O_NONBLOCK / O_PATH)', async () => {
    const started = performance.now();
    // More than the 4 threads of libuv's default pool: a blocking open would stall them all.
    const refusals = await Promise.allSettled(Array.from({ length: 8 }, () => root.openFile('fifo')));
    for (const refusal of refusals) assert.equal(refusal.status, 'rejected');
    assert.equal(await readAll(root, 'hello.txt'), HELLO);
    assert.ok(performance.now() - started < 2000, 'the FIFO was refused promptly');
  });

  it('refuses EACCES as FORBIDDEN (only as a non-root user: root ignores mode bits)', async (t) => {
    if (process.getuid?.() === 0) {
      t.skip('running as root, which ignores mode bits; run as an unprivileged user to cover EACCES');
      return;
    }
    const locked = path.join(rootDir, 'locked.txt');
    await writeFile(locked, 'locked');
    await chmod(locked, 0o000);
    try {
      await assert.rejects(root.openFile('locked.txt'), refusedWith('FORBIDDEN', /permission denied/));
    } finally {
      await rm(locked, { force: true });
    }
  });

  it('refuses every symlink under symlinks: "refuse", and still serves plain files', async () => {
    const strict = await FileRoot.open(rootDir, { symlinks: 'refuse' });
    for (const name of ['link-in', 'sub/up', 'dir-in/nested.txt', 'link-out', 'dir-out/secret.txt', 'zero']) {
      for (const [label, opener] of OPENERS) await assert.rejects(opener(strict, name), refusedWith('FORBIDDEN', /symbolic links are not served/), `${label} ${name}`);
    }
    assert.equal(await readAll(strict, 'sub/nested.txt'), 'nested\n');
  });

  it('leaves no descriptor open, served or refused', async () => {
    const names = ['hello.txt', 'link-in', 'missing', 'sub', 'link-out', 'dir-out/secret.txt', 'zero', 'fifo', 'sock', 'loop', '.hidden'];
    const baseline = openDescriptors();
    for (let round = 0; round < 20; round++) {
      for (const [, opener] of OPENERS) await Promise.allSettled(names.map((name) => opener(root, name)));
      await Promise.allSettled(names.map((name) => root.stat(name)));
      await Promise.allSettled(['', 'sub', 'dir-out', 'hello.txt'].map((name) => root.list(name)));
    }
    assert.equal(openDescriptors(), baseline);
  });
});

describe('FileRoot.stat', () => {
  it('describes files, directories and special files, following in-root links', async () => {
    assert.deepEqual(
      { ...(await root.stat('hello.txt')), mtimeMs: 0 },
      { name: 'hello.txt', type: 'file', size: Buffer.byteLength(HELLO), mtimeMs: 0 },
    );
    assert.equal((await root.stat('sub')).type, 'directory');
    assert.equal((await root.stat('dir-in')).type, 'directory');
    assert.equal((await root.stat('fifo')).type, 'other');
    assert.equal((await root.stat('sock')).type, 'other');
    const linked = await root.stat('link-in');
    assert.equal(linked.name, 'link-in');
    assert.equal(linked.type, 'file');
    assert.equal(linked.size, Buffer.byteLength(HELLO));
  });

  it('refuses like openFile', async () => {
    await assert.rejects(root.stat('link-out'), refusedWith('FORBIDDEN'));
    await assert.rejects(root.stat('dir-out'), refusedWith('FORBIDDEN'));
    await assert.rejects(root.stat('zero'), refusedWith('FORBIDDEN'));
    await assert.rejects(root.stat('.hidden'), refusedWith('FORBIDDEN'));
    await assert.rejects(root.stat('missing'), refusedWith('NOT_FOUND'));
    await assert.rejects(root.stat('../outside/secret.txt'), refusedWith('INVALID_NAME'));
    await assert.rejects(root.stat(''), refusedWith('INVALID_NAME'));
  });
});

describe('FileRoot.list', () => {
  const visible = ['%41', 'dir-in', 'empty.bin', 'fifo', 'hello.txt', 'link-in', 'sock', 'sub'];

  it('lists only entries a client could fetch back, sorted by name', async () => {
    const listing = await root.list('');
    assert.equal(listing.truncated, false);
    // Left out: .hidden, CON, bad-\xff, the control-character name, and every link leading
    // outside (link-out, link-out-relative, dir-out, zero) or nowhere (loop, dangling), and the
    // hard-linked files (hl-a, hl-b), whose other names could be outside.
    assert.deepEqual(
      listing.entries.map((entry) => entry.name),
      visible,
    );
    const byName = new Map(listing.entries.map((entry) => [entry.name, entry]));
    assert.equal(byName.get('sub')!.type, 'directory');
    assert.equal(byName.get('dir-in')!.type, 'directory');
    assert.equal(byName.get('link-in')!.type, 'file');
    assert.equal(byName.get('link-in')!.size, Buffer.byteLength(HELLO));
    assert.equal(byName.get('fifo')!.type, 'other');
    assert.equal(byName.get('sock')!.type, 'other');
    assert.deepEqual(await root.list('.'), listing);
    assert.deepEqual(await root.list(), listing);
    const lenient = await FileRoot.open(rootDir, { allowHardLinks: true });
    const names = (await lenient.list('')).entries.map((entry) => entry.name);
    assert.deepEqual(names, [...visible.slice(0, 5), 'hl-a', 'hl-b', ...visible.slice(5)]);
  });

  it('lists subdirectories, in-root directory links, and hidden entries only when allowed', async () => {
    assert.deepEqual((await root.list('sub')).entries.map((entry) => entry.name), ['nested.txt', 'up']);
    assert.deepEqual((await root.list('dir-in')).entries.map((entry) => entry.name), ['nested.txt', 'up']);
    const names = (await root.list('sub', { allowHidden: true })).entries.map((entry) => entry.name);
    assert.deepEqual(names, ['.dotfile', 'nested.txt', 'up']);
    assert.ok((await root.list('', { allowHidden: true })).entries.some((entry) => entry.name === '.hidden'));
  });

  it('refuses what is not a directory inside the root', async () => {
    await assert.rejects(root.list('hello.txt'), refusedWith('FORBIDDEN', /not a directory/));
    await assert.rejects(root.list('dir-out'), refusedWith('FORBIDDEN', /outside the served root/));
    await assert.rejects(root.list('missing'), refusedWith('NOT_FOUND'));
    await assert.rejects(root.list('..'), refusedWith('INVALID_NAME'));
    await assert.rejects(root.list('/'), refusedWith('INVALID_NAME'));
    await assert.rejects(root.list('sub/'), refusedWith('INVALID_NAME'));
  });

  it('caps the entries and says so', async () => {
    const capped = await FileRoot.open(rootDir, { maxListEntries: 3 });
    const listing = await capped.list('');
    assert.equal(listing.entries.length, 3);
    assert.equal(listing.truncated, true);
    for (const entry of listing.entries) assert.ok(visible.includes(entry.name));
    const exact = await FileRoot.open(rootDir, { maxListEntries: visible.length });
    assert.deepEqual(await exact.list(''), await root.list(''));
  });

  it('leaves out every symlink under symlinks: "refuse"', async () => {
    const strict = await FileRoot.open(rootDir, { symlinks: 'refuse' });
    const names = (await strict.list('')).entries.map((entry) => entry.name);
    assert.deepEqual(names, visible.filter((name) => name !== 'link-in' && name !== 'dir-in'));
  });
});

describe('FileRoot: symlink-swap race', () => {
  it('never reads the outside file while another process swaps links under it', async (t) => {
    await writeFile(path.join(rootDir, 'sub', 'race-target.txt'), 'INSIDE');
    await symlink('sub/race-target.txt', path.join(rootDir, 'race'));
    await symlink('sub', path.join(rootDir, 'race-dir'));
    // Swapped atomically (symlink to a temporary name, then rename over) as fast as the child
    // can: `race` between an in-root file and the outside marker, `race-dir` between sub/ and
    // the outside directory, which holds a nested.txt with the marker.
    const swapper = `
      const fs = require('node:fs');
      const [dir, outsideFile, outsideDir, ms] = process.argv.slice(1);
      const end = Date.now() + Number(ms);
      for (let i = 0; Date.now() < end; i++) {
        fs.symlinkSync(i % 2 ? outsideFile : 'sub/race-target.txt', dir + '/.race-tmp');
        fs.renameSync(dir + '/.race-tmp', dir + '/race');
        fs.symlinkSync(i % 2 ? outsideDir : 'sub', dir + '/.race-dir-tmp');
        fs.renameSync(dir + '/.race-dir-tmp', dir + '/race-dir');
      }`;
    const child = spawn(process.execPath, ['-e', swapper, rootDir, path.join(outsideDir, 'secret.txt'), outsideDir, '1500'], {
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    let running = true;
    void exited.then(() => {
      running = false;
    });
    const counts = { served: 0, refused: 0, requests: 0 };
    const reader = async (name: string, inside: string): Promise<void> => {
      for (let i = 0; running && i < 20_000; i++) {
        counts.requests++;
        let file: OpenedFile;
        try {
          file = await root.openFile(name);
        } catch (error) {
          refusedWith('FORBIDDEN', /outside the served root/)(error);
          counts.refused++;
          continue;
        }
        try {
          const content = (await file.handle.readFile()).toString();
          assert.notEqual(content, MARKER, 'read the outside file');
          assert.equal(content, inside);
          counts.served++;
        } finally {
          await file.handle.close();
        }
      }
    };
    await Promise.all([
      reader('race', 'INSIDE'),
      reader('race', 'INSIDE'),
      reader('race-dir/nested.txt', 'nested\n'),
      reader('race-dir/nested.txt', 'nested\n'),
    ]);
    assert.equal(await exited, 0);
    for (const name of ['race', 'race-dir', '.race-tmp', '.race-dir-tmp', 'sub/race-target.txt']) await rm(path.join(rootDir, name), { force: true });
    t.diagnostic(`race: ${JSON.stringify(counts)}`);
    assert.ok(counts.served > 0 && counts.refused > 0, `both sides of the race were seen: ${JSON.stringify(counts)}`);
  });
});

describe('FileRoot: the root-prefix sibling', () => {
  it('cannot be reached by any name', async () => {
    await assert.rejects(root.openFile('../root-x/f'), refusedWith('INVALID_NAME'));
    await assert.rejects(root.openFile('root-x/f'), refusedWith('NOT_FOUND'));
    await symlink(`${rootDir}-x/f`, path.join(rootDir, 'sibling-link'));
    await assert.rejects(root.openFile('sibling-link'), refusedWith('FORBIDDEN', /outside the served root/));
    await rm(path.join(rootDir, 'sibling-link'));
  });
});
