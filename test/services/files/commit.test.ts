/**
 * The one atomic commit (commit.ts) and the one local error mapping (errors.ts) that the
 * download client, the raw download and the upload service share.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TcpkitError } from '../../../src/errors.js';
import { commitFile, commitFileSync, destinationExists, partialPaths, UPLOAD_TEMP_NAME, uploadTempPath } from '../../../src/services/files/commit.js';
import { localError, refusal, storageError, writeFailure } from '../../../src/services/files/errors.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tcpkit-commit-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: /secret/server/path`), { code });

describe('commitFile', () => {
  it('links the file under a free name and removes the temporary name', async () => {
    await writeFile(path.join(dir, 'tmp1'), 'one');
    await commitFile(path.join(dir, 'tmp1'), path.join(dir, 'one.txt'), { overwrite: false, exists: () => destinationExists('one.txt'), removeTemp: 'required', syncDirectory: dir });
    assert.equal(await readFile(path.join(dir, 'one.txt'), 'utf8'), 'one');
    assert.ok(!(await readdir(dir)).includes('tmp1'));
  });

  it('never replaces a taken name without overwrite: the caller’s FILE_EXISTS, both files untouched', async () => {
    await writeFile(path.join(dir, 'taken.txt'), 'theirs');
    await writeFile(path.join(dir, 'tmp2'), 'ours');
    await assert.rejects(
      commitFile(path.join(dir, 'tmp2'), path.join(dir, 'taken.txt'), { overwrite: false, exists: () => destinationExists('taken.txt'), removeTemp: 'required' }),
      { code: 'TCPKIT_ERR_FILE_EXISTS', message: 'taken.txt exists (use --force to replace it)' },
    );
    assert.equal(await readFile(path.join(dir, 'taken.txt'), 'utf8'), 'theirs');
    assert.equal(await readFile(path.join(dir, 'tmp2'), 'utf8'), 'ours', 'the temporary file is the caller’s to keep or remove');
  });

  it('replaces a taken name with overwrite (rename)', async () => {
    await writeFile(path.join(dir, 'old.txt'), 'old');
    await writeFile(path.join(dir, 'tmp3'), 'new');
    await commitFile(path.join(dir, 'tmp3'), path.join(dir, 'old.txt'), { overwrite: true, exists: () => destinationExists('old.txt'), removeTemp: 'best-effort' });
    assert.equal(await readFile(path.join(dir, 'old.txt'), 'utf8'), 'new');
    assert.ok(!(await readdir(dir)).includes('tmp3'));
  });

  it('throws any other failure as it is, for the caller to map', async () => {
    await assert.rejects(
      commitFile(path.join(dir, 'no-such-temp'), path.join(dir, 'x'), { overwrite: false, exists: () => destinationExists('x'), removeTemp: 'required' }),
      { code: 'ENOENT' },
    );
  });

  it('commitFileSync takes the same steps: link a free name, FILE_EXISTS for a taken one, rename with overwrite, other failures as they are', async () => {
    const at = (name: string): string => path.join(dir, name);
    const exists = (): TcpkitError => destinationExists('s-taken.txt');
    await writeFile(at('s-tmp1'), 'one');
    commitFileSync(at('s-tmp1'), at('s-one.txt'), { overwrite: false, exists, removeTemp: 'required' });
    assert.equal(await readFile(at('s-one.txt'), 'utf8'), 'one');
    await writeFile(at('s-taken.txt'), 'theirs');
    await writeFile(at('s-tmp2'), 'ours');
    assert.throws(() => commitFileSync(at('s-tmp2'), at('s-taken.txt'), { overwrite: false, exists, removeTemp: 'required' }), {
      code: 'TCPKIT_ERR_FILE_EXISTS',
    });
    assert.equal(await readFile(at('s-taken.txt'), 'utf8'), 'theirs');
    assert.equal(await readFile(at('s-tmp2'), 'utf8'), 'ours', 'the temporary file is the caller’s to keep or remove');
    commitFileSync(at('s-tmp2'), at('s-taken.txt'), { overwrite: true, exists, removeTemp: 'best-effort' });
    assert.equal(await readFile(at('s-taken.txt'), 'utf8'), 'ours');
    assert.ok(!(await readdir(dir)).some((name) => name === 's-tmp1' || name === 's-tmp2'));
    assert.throws(() => commitFileSync(at('s-none'), at('s-x'), { overwrite: false, exists, removeTemp: 'required' }), { code: 'ENOENT' });
  });

  it('names partial and temporary files hidden, beside their destination', () => {
    assert.deepEqual(partialPaths('/d/a.bin'), { part: '/d/.a.bin.tcpkit-part', meta: '/d/.a.bin.tcpkit-part.json' });
    const temp = uploadTempPath('/proc/self/fd/9');
    assert.equal(path.dirname(temp), '/proc/self/fd/9');
    assert.match(path.basename(temp), UPLOAD_TEMP_NAME);
  });
});

describe('the local error mapping', () => {
  it('server side: the client is told a code and the requested name, never a server path or cause', () => {
    const cases: Array<[string, string]> = [
      ['ENOENT', 'NOT_FOUND'],
      ['EACCES', 'FORBIDDEN'],
      ['EROFS', 'FORBIDDEN'],
      ['ELOOP', 'FORBIDDEN'],
      ['ENAMETOOLONG', 'INVALID_NAME'],
      ['EIO', 'LOCAL_FILE_ERROR'],
    ];
    for (const [code, wire] of cases) {
      const error = refusal(errno(code), 'a.txt');
      assert.equal(error.wireCode, wire, code);
      assert.ok(!error.message.includes('/secret'), error.message);
      assert.equal(error.cause, undefined);
    }
    assert.equal(refusal(errno('EIO'), 'a.txt').message, 'cannot open a.txt: EIO');
  });

  it('upload: no room first, then a directory in the way, then what a download is told', () => {
    for (const code of ['ENOSPC', 'EDQUOT', 'EFBIG']) {
      const error = storageError(errno(code), 'up.bin');
      assert.equal(error.wireCode, 'NO_SPACE');
      assert.equal(error.message, `no room on the server for up.bin (${code})`);
    }
    assert.equal(storageError(errno('EISDIR'), 'up.bin').wireCode, 'FORBIDDEN');
    assert.equal(storageError(errno('EIO'), 'up.bin').message, 'cannot store up.bin: EIO');
    const coded = new TcpkitError('TOO_LARGE', 'too big');
    assert.equal(storageError(coded, 'up.bin'), coded);
  });

  it('client side: LOCAL_FILE_ERROR naming the local file, with the cause a person acts on first', () => {
    assert.equal(writeFailure('/w/.a.tcpkit-part', errno('ENOSPC')).message, 'no space left on the device writing /w/.a.tcpkit-part');
    assert.equal(writeFailure('/w/p', errno('EDQUOT')).message, 'disk quota exceeded writing /w/p');
    const other = writeFailure('/w/p', errno('EIO'));
    assert.equal(other.wireCode, 'LOCAL_FILE_ERROR');
    assert.equal(other.message, 'cannot write /w/p: EIO');
    assert.equal((other.cause as NodeJS.ErrnoException).code, 'EIO');
    assert.equal(localError('x.bin is not a regular file').message, 'x.bin is not a regular file');
    const coded = new TcpkitError('FILE_EXISTS', 'exists');
    assert.equal(localError('cannot save x', coded), coded, 'a coded error passes unchanged');
  });
});
