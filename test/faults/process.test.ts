/**
 * `kill -9` of the server in the middle of a transfer, then a restart on the same port
 * (issue 10, "Also deliver"; RELIABILITY.md §3.4, G9: "SIGKILL leaves no corrupt visible state. A
 * restart on the same port works immediately"). Server and client are the built CLI inside a
 * private network namespace (test/helpers/netns.ts) whose loopback is slowed with tc `tbf`
 * (16 Mbit/s), so that a 24 MB transfer lasts long enough to be cut; the limit is lifted before
 * the transfer is done again.
 *
 * test/cli/put.test.ts already kills a server under a paused library upload into `--writable`
 * DIR and checks the sweep at restart; here the client is the `put` command itself, sending
 * flat out, and the upload goes to a subdirectory of a separate `--upload-dir`.
 *
 * Skipped, with the reason printed, where that cannot be set up: not Linux, not root, no
 * unshare/nsenter/ip/tc, nftables missing and not installable with apt-get, or a kernel that
 * refuses the namespace or the tbf qdisc.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIG_BYTES, faultScratch, partialOf, sizeOf, uploadTemps } from '../helpers/faults.js';
import { waitUntil } from '../helpers/net.js';
import { netnsSkipReason, openNetns, type Netns } from '../helpers/netns.js';

const skip = await netnsSkipReason();

/** 2 MB/s: the 24 MB file takes ~12 s, so it is cut after a few MiB, well before its end. */
const RATE = '16mbit';
/** Cut once this much reached the disk on the receiving side. */
const CUT_AT = 2 * 1024 * 1024;
const EXIT_MS = 20_000;

type Scratch = Awaited<ReturnType<typeof faultScratch>>;

let ns: Netns | undefined;
let scratch: Scratch | undefined;
before(async () => {
  if (skip !== undefined) return;
  scratch = await faultScratch('proc');
  ns = await openNetns();
});
after(async () => {
  await ns?.close();
  await scratch?.remove();
});

describe('fault: kill -9 of the server in the middle of a download', { skip }, () => {
  it('the client exits 4 and keeps its partial file; a server restarted at once on the same port serves the rest, and the result verifies', async () => {
    const { served, local, big } = scratch!;
    const destination = path.join(local, 'big.bin');
    const server = await ns!.startServer([served]);
    await ns!.limitRate(RATE);
    const client = ns!.startCli(['get', `127.0.0.1:${server.port}`, 'big.bin', '--json'], local);
    client.child.stdin.end();
    await waitUntil(() => sizeOf(partialOf(destination)) >= CUT_AT, `the partial file to reach ${CUT_AT} bytes`, 30_000);
    server.child.kill('SIGKILL');
    const killed = await server.exit(EXIT_MS);
    assert.equal(killed.signal, 'SIGKILL');

    const cut = await client.exit(EXIT_MS);
    assert.equal(cut.code, 4, `exit code 4 (the connection broke): ${cut.stderr}`);
    assert.equal(cut.stdout, '', 'no JSON line: nothing was saved');
    assert.match(cut.stderr, /^tcpkit: big\.bin: /m);
    assert.equal(existsSync(destination), false, 'nothing under the final name');
    const kept = sizeOf(partialOf(destination));
    assert.ok(kept >= CUT_AT && kept < BIG_BYTES, `the partial file is kept (${kept} bytes)`);

    // At once, on the same port: the killed server's connections must not hold it.
    const restarted = await ns!.startServer([served, '--port', String(server.port)]);
    assert.equal(restarted.port, server.port);
    await ns!.unlimit();
    const again = await ns!.runCli(['get', `127.0.0.1:${restarted.port}`, 'big.bin', '--json'], { cwd: local, timeoutMs: 60_000 });
    assert.equal(again.code, 0, again.stderr);
    const saved = JSON.parse(again.stdout) as { bytes: number; resumedFrom: number };
    assert.equal(saved.resumedFrom, kept, 'resumed from the partial file');
    assert.equal(saved.bytes, BIG_BYTES);
    assert.ok((await readFile(destination)).equals(big), 'the resumed file is byte-identical');
    assert.equal(existsSync(partialOf(destination)), false, 'the partial file is gone');
    restarted.child.kill('SIGTERM');
    assert.equal((await restarted.exit(EXIT_MS)).code, 0);
  });
});

describe('fault: kill -9 of the server in the middle of an upload', { skip }, () => {
  it('the put exits 4, nothing is under the name; a restart on the same port sweeps the temporary file (logged) and the same put then succeeds', async () => {
    const { served, incoming, local, big } = scratch!;
    const sub = path.join(incoming, 'sub');
    const server = await ns!.startServer([served, '--upload-dir', incoming]);
    await ns!.limitRate(RATE);
    const client = ns!.startCli(['put', `127.0.0.1:${server.port}`, 'up.bin', '--to', 'sub', '--json'], local);
    client.child.stdin.end();
    const temp = (): number => uploadTemps(sub).reduce((most, name) => Math.max(most, sizeOf(path.join(sub, name))), -1);
    await waitUntil(() => temp() >= CUT_AT, `the server's temporary file to reach ${CUT_AT} bytes`, 30_000);
    server.child.kill('SIGKILL');
    assert.equal((await server.exit(EXIT_MS)).signal, 'SIGKILL');

    const cut = await client.exit(EXIT_MS);
    assert.equal(cut.code, 4, `exit code 4 (the connection broke): ${cut.stderr}`);
    assert.equal(cut.stdout, '', 'no JSON line: nothing was stored');
    assert.match(cut.stderr, /^tcpkit: up\.bin: /m);
    assert.equal(uploadTemps(sub).length, 1, 'a killed server leaves its temporary file');
    assert.equal(existsSync(path.join(sub, 'up.bin')), false, 'nothing under the name');

    const restarted = await ns!.startServer([served, '--upload-dir', incoming, '--port', String(server.port)]);
    assert.equal(restarted.port, server.port);
    // The sweep runs before the server listens (its log line may come after on the other pipe), and finds the file in the subdirectory.
    await restarted.waitStderr(/removed 1 unfinished upload\(s\) left by an earlier run/, 5000);
    assert.deepEqual(await readdir(sub), [], 'the temporary file is gone, nothing under the name');

    await ns!.unlimit();
    const again = await ns!.runCli(['put', `127.0.0.1:${restarted.port}`, 'up.bin', '--to', 'sub', '--json'], { cwd: local, timeoutMs: 60_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as { bytes: number }).bytes, BIG_BYTES);
    assert.ok((await readFile(path.join(sub, 'up.bin'))).equals(big), 'stored byte-identical');
    assert.deepEqual(uploadTemps(sub), []);
    restarted.child.kill('SIGTERM');
    assert.equal((await restarted.exit(EXIT_MS)).code, 0);
  });
});
