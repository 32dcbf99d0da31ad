import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Watchdog, type Expiry, type WatchdogTimeouts } from '../../src/transport/watchdog.js';
import { FakeClock } from '../helpers/fake-clock.js';

const TIMEOUTS: WatchdogTimeouts = { handshakeMs: 100, requestMs: 200, idleMs: 1000, sendStallMs: 300 };

function setup(timeouts: Partial<WatchdogTimeouts> = {}) {
  const clock = new FakeClock();
  const expired: Expiry[] = [];
  let queued = 0;
  const dog = new Watchdog({ ...TIMEOUTS, ...timeouts }, { expired: (why) => expired.push(why), queuedBytes: () => queued }, clock);
  return { clock, expired, dog, setQueued: (n: number) => (queued = n) };
}

describe('watchdog (fake clock)', () => {
  it('fires the handshake deadline exactly at its time, once', () => {
    const { clock, expired } = setup();
    clock.advance(99);
    assert.deepEqual(expired, []);
    clock.advance(1);
    assert.deepEqual(expired, ['handshake']);
    clock.advance(10_000);
    assert.deepEqual(expired, ['handshake']);
    assert.equal(clock.pending, 0);
  });

  it('a completed handshake cancels it; then idle fires after idleMs without traffic', () => {
    const { clock, expired, dog } = setup();
    clock.advance(50);
    dog.handshakeDone();
    clock.advance(999);
    assert.deepEqual(expired, []);
    clock.advance(1);
    assert.deepEqual(expired, ['idle']);
  });

  it('traffic pushes the idle deadline back; requests in flight are never idle', () => {
    const { clock, expired, dog } = setup();
    dog.handshakeDone();
    clock.advance(900);
    dog.activity();
    clock.advance(900);
    assert.deepEqual(expired, [], 'activity at 900 moved the deadline to 1900');
    dog.setBusy(true);
    clock.advance(60_000);
    assert.deepEqual(expired, [], 'a long transfer is never idle');
    dog.setBusy(false);
    clock.advance(999);
    assert.deepEqual(expired, []);
    clock.advance(1);
    assert.deepEqual(expired, ['idle']);
  });

  it('a half-received frame must complete within requestMs, however it trickles', () => {
    const { clock, expired, dog } = setup();
    dog.handshakeDone();
    dog.partialFrame(true);
    for (let i = 0; i < 19; i++) {
      clock.advance(10);
      dog.activity(); // a byte every 10 ms
      dog.partialFrame(true);
    }
    clock.advance(9);
    assert.deepEqual(expired, []);
    clock.advance(1);
    assert.deepEqual(expired, ['request']);
  });

  it('a frame that completes in time clears the request deadline', () => {
    const { clock, expired, dog } = setup();
    dog.handshakeDone();
    dog.partialFrame(true);
    clock.advance(150);
    dog.partialFrame(false);
    dog.setBusy(true);
    clock.advance(5000);
    assert.deepEqual(expired, []);
  });

  it('send-stall: a peer that reads nothing is cut after sendStallMs', () => {
    const { clock, expired, dog, setQueued } = setup();
    dog.handshakeDone();
    dog.setBusy(true);
    setQueued(1_000_000);
    dog.sendBlocked(true);
    clock.advance(299);
    assert.deepEqual(expired, []);
    clock.advance(1);
    assert.deepEqual(expired, ['send-stall']);
  });

  it('send-stall: a slow reader that keeps making progress is never cut', () => {
    const { clock, expired, dog, setQueued } = setup();
    dog.handshakeDone();
    dog.setBusy(true);
    let queued = 1_000_000;
    setQueued(queued);
    dog.sendBlocked(true);
    for (let i = 0; i < 100; i++) {
      clock.advance(250);
      queued -= 1000; // a trickle, but progress
      setQueued(queued);
    }
    assert.deepEqual(expired, []);
    clock.advance(10_000); // now it stops reading
    assert.deepEqual(expired, ['send-stall']);
  });

  it('send-stall: progress the kernel sees (fewer unacknowledged bytes) counts when our queue does not move', () => {
    const clock = new FakeClock();
    const expired: Expiry[] = [];
    let unacked = 4_000_000;
    let looks = 0;
    const owner = {
      expired: (why: Expiry) => expired.push(why),
      queuedBytes: () => 1_000_000, // the kernel takes nothing more from us: no wake-up in sight
      unacknowledgedBytes: () => {
        looks++;
        return unacked;
      },
    };
    const dog = new Watchdog(TIMEOUTS, owner, clock);
    dog.handshakeDone();
    dog.setBusy(true);
    dog.sendBlocked(true);
    assert.equal(looks, 0, 'not looked at when blocking: a fast transfer blocks all the time');
    for (let i = 0; i < 40; i++) {
      clock.advance(100);
      unacked -= 16_384; // the peer reads 16 KB every 100 ms; the kernel acknowledges it
    }
    assert.deepEqual(expired, []);
    // One baseline, then one look per 300 ms deadline: 4 s of transfer, about 14 looks.
    assert.ok(looks <= 20, `${looks} looks in 4 s: only when a check is due`);
    clock.advance(600); // it stops reading: cut within two deadlines of its last progress
    assert.deepEqual(expired, ['send-stall']);
  });

  it('send-stall: a steady reader is not cut when more streams write while the connection is blocked', () => {
    // Several replies on one connection: each writes its next chunk while blocked, so our queue
    // grows, and when the kernel takes more of it the unacknowledged count jumps up. Neither
    // says "no progress": what the peer acknowledged keeps growing.
    const clock = new FakeClock();
    const expired: Expiry[] = [];
    let sent = 1_000_000;
    let queued = 1_000_000;
    let unacked = 2_000_000;
    const owner = {
      expired: (why: Expiry) => expired.push(why),
      sentBytes: () => sent,
      queuedBytes: () => queued,
      unacknowledgedBytes: () => unacked,
    };
    const dog = new Watchdog(TIMEOUTS, owner, clock);
    dog.handshakeDone();
    dog.setBusy(true);
    dog.sendBlocked(true);
    for (let tick = 1; tick <= 60; tick++) {
      clock.advance(100);
      unacked -= 20_000; // the peer reads 200 KB/s
      if (tick % 7 === 0) {
        // The kernel takes 600 KB of our queue, and three streams write 1 MB more meanwhile.
        queued -= 600_000;
        unacked += 600_000;
        sent += 1_000_000;
        queued += 1_000_000;
      }
    }
    assert.deepEqual(expired, []);
    clock.advance(600); // it stops reading
    assert.deepEqual(expired, ['send-stall']);
  });

  it('send-stall: a peer that acknowledges nothing is cut on time, kernel view or not', () => {
    for (const unacked of [() => 3_000_000, () => undefined]) {
      const clock = new FakeClock();
      const expired: Expiry[] = [];
      const dog = new Watchdog(TIMEOUTS, { expired: (why) => expired.push(why), queuedBytes: () => 1_000_000, unacknowledgedBytes: unacked }, clock);
      dog.handshakeDone();
      dog.setBusy(true);
      dog.sendBlocked(true);
      clock.advance(299);
      assert.deepEqual(expired, []);
      clock.advance(1);
      assert.deepEqual(expired, ['send-stall']);
    }
  });

  it('a zero timeout is off', () => {
    const { clock, expired, dog } = setup({ idleMs: 0, handshakeMs: 0 });
    clock.advance(1_000_000);
    dog.handshakeDone();
    clock.advance(1_000_000);
    assert.deepEqual(expired, []);
  });

  it('stop() cancels everything', () => {
    const { clock, expired, dog } = setup();
    dog.stop();
    clock.advance(1_000_000);
    assert.deepEqual(expired, []);
    assert.equal(clock.pending, 0);
  });

  it('keeps one timer, however many events arrive', () => {
    const { clock, dog } = setup();
    dog.handshakeDone();
    for (let i = 0; i < 1000; i++) {
      dog.activity();
      dog.partialFrame(i % 2 === 0);
      dog.setBusy(i % 3 === 0);
    }
    assert.ok(clock.pending <= 1, `${clock.pending} timers`);
  });
});
