import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionError, ProtocolError } from '../../src/errors.js';
import { Reconnect, RECONNECT_RETRIES } from '../../src/client/reconnect.js';
import type { Pending } from '../../src/client/requests.js';
import { FakeClock } from '../helpers/fake-clock.js';

function held(name: string, rejected: Error[]): Pending {
  return { id: 7, abandoned: false, type: 1, payload: Buffer.from(name), reject: (error: Error) => rejected.push(error) } as unknown as Pending;
}

/** Advances fake time in steps until `done`, letting promises run between steps. */
async function runUntil(clock: FakeClock, done: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !done(); i++) {
    clock.advance(50);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('client reconnect after an idle goodbye (fake clock)', () => {
  it('tries again with backoff on the clock, then sends what crossed the goodbye, once', async () => {
    const clock = new FakeClock();
    const log: string[] = [];
    let dials = 0;
    const reconnect = new Reconnect<number>(clock, {
      dial: async () => {
        if (++dials < 3) throw new ConnectionError('CONNECTION_REFUSED', 'restarting');
        return dials;
      },
      start: async (n) => void log.push(`start ${n}`),
      resend: (pending) => log.push(`resend ${String(pending.payload)}`),
      reconnected: (resent) => log.push(`reconnected ${resent}`),
      failed: () => log.push('failed'),
    });
    const rejected: Error[] = [];
    const aborted = held('b', rejected);
    reconnect.hold([held('a', rejected), aborted]);
    aborted.abandoned = true;
    let done = false;
    const revived = reconnect.revive().then(() => (done = true));
    assert.equal(reconnect.revive(), reconnect.revive(), 'one reconnection at a time');
    await Promise.resolve();
    assert.equal(dials, 1);
    assert.equal(done, false, 'the backoff waits on the clock');
    await runUntil(clock, () => done);
    await revived;
    assert.deepEqual(log, ['start 3', 'resend a', 'reconnected 1']);
    assert.equal(reconnect.held, 0);
    assert.equal(reconnect.reviving, false);
    assert.deepEqual(rejected, []);
  });

  it('gives up after its retries, or at once on an error not worth another try, failing what it held', async () => {
    for (const [error, tries] of [
      [new ConnectionError('CONNECTION_REFUSED', 'gone'), 1 + RECONNECT_RETRIES],
      [new ProtocolError('NOT_TCPKIT', 'not tcpkit'), 1],
    ] as const) {
      const clock = new FakeClock();
      let dials = 0;
      const failures: Error[] = [];
      const reconnect = new Reconnect<void>(clock, {
        dial: async () => {
          dials++;
          throw error;
        },
        start: async () => {},
        resend: () => assert.fail('nothing to resend'),
        reconnected: () => assert.fail('not reconnected'),
        failed: (why) => failures.push(why),
      });
      const rejected: Error[] = [];
      reconnect.hold([held('a', rejected)]);
      let outcome: unknown;
      const revived = reconnect.revive().catch((why: unknown) => (outcome = why));
      await runUntil(clock, () => outcome !== undefined);
      await revived;
      assert.equal(outcome, error);
      assert.equal(dials, tries);
      assert.deepEqual(failures, [error]);
      assert.deepEqual(rejected, [error]);
    }
  });
});
