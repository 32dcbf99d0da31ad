import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeErrorBody } from '../../src/protocol/control.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { createDigest } from '../../src/services/files/digest.js';
import { encodeFileEnd, encodeFileHead, encodeListing, FileFrame } from '../../src/services/files/wire.js';
import { runCli } from '../helpers/cli.js';
import { scriptedServer } from '../helpers/net.js';

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

const ESC = '\u001b';

/** A server that completes the hello, then answers every request with `answer`. */
async function hostile(answer: (id: number, type: number) => Buffer): Promise<string> {
  const server = await scriptedServer(['message', 'file'], (frame, socket) => {
    if (frame.id !== 0) socket.write(answer(frame.id, frame.type));
  });
  cleanups.push(() => server.close());
  return server.address;
}

describe('a hostile server cannot drive the terminal or choose where files go', () => {
  it('ls prints names with escape sequences and traversal escaped, as plain text', async () => {
    const address = await hostile((id) =>
      encodeFrame(
        FileFrame.LIST_REPLY,
        id,
        encodeListing({
          entries: [
            { name: `evil${ESC}[2J${ESC}]0;pwned\u0007`, type: 'file', size: 1, mtimeMs: 0 },
            { name: '../../etc/passwd\r\nfake line', type: 'file', size: 2, mtimeMs: 0 },
          ],
          truncated: false,
        }),
      ),
    );
    const result = await runCli(['ls', address]);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(!result.stdout.includes(ESC) && !result.stdout.includes('\u0007') && !result.stdout.includes('\r'), JSON.stringify(result.stdout));
    assert.match(result.stdout, /evil\\x1b\[2J\\x1b\]0;pwned\\x07/);
    assert.match(result.stdout, /\.\.\/\.\.\/etc\/passwd\\r\\nfake line/);
    assert.equal(result.stdout.trim().split('\n').length, 2, 'one line per entry, whatever the names hold');
  });

  it("get prints a server's error message escaped, and saves nothing", async () => {
    const address = await hostile((id) =>
      encodeFrame(FrameType.ERROR, id, encodeErrorBody({ code: 'FORBIDDEN', message: `no${ESC}[31m red\rover` })),
    );
    const cwd = await mkdtemp(path.join(tmpdir(), 'tcpkit-hostile-'));
    cleanups.push(() => rm(cwd, { recursive: true, force: true }));
    const result = await runCli(['get', address, 'file.txt'], { cwd });
    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'tcpkit: file.txt: no\\x1b[31m red\\rover\n');
    assert.deepEqual(await readdir(cwd), []);
  });

  it('get notices a second complete reply to one GET: exit 4 with a PROTOCOL_ERROR, though the first was verified', async () => {
    const body = Buffer.from('hello\n');
    const digest = createDigest();
    digest.update(body);
    const end = encodeFileEnd({ digest: digest.value(), bytes: body.length });
    const head = encodeFileHead({ size: body.length, mtimeMs: 0, offset: 0, digest: digest.value() });
    const whole = (id: number): Buffer =>
      Buffer.concat([encodeFrame(FileFrame.FILE_HEAD, id, head), encodeFrame(FileFrame.DATA, id, body), encodeFrame(FileFrame.FILE_END, id, end)]);
    const address = await hostile((id, type) => (type === FileFrame.GET ? Buffer.concat([whole(id), whole(id)]) : Buffer.alloc(0)));
    const cwd = await mkdtemp(path.join(tmpdir(), 'tcpkit-hostile-'));
    cleanups.push(() => rm(cwd, { recursive: true, force: true }));
    const result = await runCli(['get', address, 'a.txt'], { cwd });
    assert.equal(result.code, 4, result.stderr);
    assert.match(result.stderr, /^tcpkit: 127\.0\.0\.1:\d+ sent FILE_HEAD for request id 1, which is not in flight \(already answered, or never sent\)$/m);
  });

  it('send prints replies escaped', async () => {
    const address = await hostile((id) => encodeFrame(FrameType.MESSAGE_REPLY, id, Buffer.from(`ok${ESC}[?1049h\u009b2J`)));
    const result = await runCli(['send', address, 'x']);
    assert.equal(result.stdout, 'ok\\x1b[?1049h\\x9b2J\n');
  });
});
