/**
 * A client that stopped reading (its disk is slow) does not blame the server: the heartbeat
 * and the request timeouts count only time during which it reads (issue 10, item 7e). Fake
 * time (node:test mock timers) stands for the long pause; the sockets are real.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it, mock } from 'node:test';
import { connect } from '../../src/client/client.js';
import { clientInternals } from '../../src/client/internal.js';
import type { TcpkitError } from '../../src/errors.js';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { scriptedServer, testServers } from '../helpers/net.js';

const { cleanups } = testServers();
afterEach(() => mock.timers.reset());

/** A server that completes the hello and never answers a MESSAGE; PINGs get a PONG while `alive.pongs`. */
async function slowServer(alive: { pongs: boolean; pings: number }): Promise<string> {
  const started = await scriptedServer(['message'], (frame, socket) => {
    if (frame.type !== FrameType.PING) return;
    alive.pings++;
    if (alive.pongs) socket.write(encodeFrame(FrameType.PONG, frame.id, frame.payload));
  });
  cleanups.push(() => started.close());
  return started.address;
}

/** Lets real I/O and promise callbacks run (the sockets are real; only timers are fake). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Waits for `predicate` through turns of the event loop (timers are fake): bounded in turns. */
async function spin(predicate: () => boolean, what: string): Promise<void> {
  for (let turn = 0; turn < 100_000; turn++) {
    if (predicate()) return;
    await settle();
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Advances fake time by `ms`, a sweep period at a time, letting I/O run between steps. */
async function pass(ms: number, until: () => boolean = () => false): Promise<void> {
  for (let done = 0; done < ms && !until(); done += 250) {
    mock.timers.tick(250);
    await settle();
  }
}

describe('client: paused reading is not the server going silent', () => {
  it('no heartbeat verdict and no request timeout while paused, however long; both count again once resumed', async () => {
    const alive = { pongs: false, pings: 0 };
    const address = await slowServer(alive);
    const client = await connect(address, { heartbeatMs: 1000, requestTimeoutMs: 3000 });
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.now() });
    let failure = undefined as TcpkitError | undefined;
    const pending = client.send('slow');
    pending.catch((error: TcpkitError) => (failure = error));
    clientInternals(client).pauseReading();
    // A minute of fake time paused: 60 heartbeat periods, 20 request timeouts.
    await pass(60_000);
    assert.equal(failure, undefined, `failed while paused: ${failure?.message}`);
    assert.equal(alive.pings, 0, 'no PING while paused: its PONG could not be read');
    clientInternals(client).resumeReading();
    // Reading again, a server that answers nothing is found out: PING after 1 s, verdict after 2 s.
    await pass(1000);
    await spin(() => alive.pings === 1, 'the PING');
    assert.equal(failure, undefined, 'not before the heartbeat had its chance');
    await pass(1500, () => failure !== undefined);
    await spin(() => failure !== undefined, 'the verdict');
    assert.match(failure!.message, /stopped answering: no pong within 1000 ms/);
    client.destroy();
  });

  it('a PING sent just before the pause is not held against the server', async () => {
    const alive = { pongs: true, pings: 0 };
    const address = await slowServer(alive);
    const client = await connect(address, { heartbeatMs: 1000, requestTimeoutMs: 0 });
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.now() });
    let failure = undefined as TcpkitError | undefined;
    client.send('slow').catch((error: TcpkitError) => (failure = error));
    // A quiet second: the heartbeat PINGs; we pause before its PONG is read.
    clientInternals(client).pauseReading();
    mock.timers.tick(1000);
    await settle();
    assert.equal(alive.pings, 0, 'paused: no PING');
    clientInternals(client).resumeReading();
    await pass(1000);
    await spin(() => alive.pings === 1, 'the PING to reach the server');
    clientInternals(client).pauseReading();
    // Its PONG waits in the socket while fake time runs far past the heartbeat's verdict.
    await pass(10_000);
    assert.equal(failure, undefined, `failed while paused: ${failure?.message}`);
    clientInternals(client).resumeReading();
    await pass(500);
    for (let i = 0; i < 50; i++) await settle();
    assert.equal(failure, undefined, "failed after resuming");
    client.destroy();
  });
});
