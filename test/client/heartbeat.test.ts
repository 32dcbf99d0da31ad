import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Heartbeat, SweepTimer } from '../../src/client/heartbeat.js';
import { FakeClock } from '../helpers/fake-clock.js';

describe('client heartbeat (fake clock)', () => {
  it('PINGs after a silence of heartbeatMs, declares the server dead after as long again', () => {
    const clock = new FakeClock();
    const heartbeat = new Heartbeat(100, 'server:1', clock.now());
    clock.advance(99);
    assert.equal(heartbeat.check(clock.now(), true), undefined);
    clock.advance(1);
    assert.equal(heartbeat.check(clock.now(), true), 'ping');
    clock.advance(99);
    assert.equal(heartbeat.check(clock.now(), true), undefined, 'the PING has its time');
    clock.advance(1);
    const verdict = heartbeat.check(clock.now(), true);
    assert.ok(verdict instanceof Error);
    assert.match(verdict.message, /server:1 stopped answering: no pong within 100 ms/);
  });

  it('a frame answers the PING; nothing is due while no reply is awaited, or when off', () => {
    const clock = new FakeClock();
    const heartbeat = new Heartbeat(100, 'server:1', clock.now());
    clock.advance(100);
    assert.equal(heartbeat.check(clock.now(), false), undefined, 'nothing awaited: no PING');
    assert.equal(heartbeat.check(clock.now(), true), 'ping');
    clock.advance(50);
    heartbeat.heard(clock.now());
    clock.advance(99);
    assert.equal(heartbeat.check(clock.now(), true), undefined);
    const off = new Heartbeat(0, 'server:1', clock.now());
    clock.advance(1e6);
    assert.equal(off.check(clock.now(), true), undefined);
  });

  it('is suspended while paused, and counts afresh from the resume', () => {
    const clock = new FakeClock();
    const heartbeat = new Heartbeat(100, 'server:1', clock.now());
    clock.advance(100);
    assert.equal(heartbeat.check(clock.now(), true), 'ping');
    heartbeat.pause();
    clock.advance(10_000);
    assert.equal(heartbeat.check(clock.now(), true), undefined, 'a PONG cannot be read while paused');
    heartbeat.resume(clock.now());
    clock.advance(99);
    assert.equal(heartbeat.check(clock.now(), true), undefined, 'the outstanding PING gets its time afresh');
    clock.advance(1);
    assert.ok(heartbeat.check(clock.now(), true) instanceof Error);
  });

  it('the server taking our bytes counts as hearing from it', () => {
    const clock = new FakeClock();
    const heartbeat = new Heartbeat(100, 'server:1', clock.now());
    clock.advance(100);
    assert.equal(heartbeat.check(clock.now(), true), 'ping');
    clock.advance(90);
    heartbeat.progress(clock.now());
    clock.advance(90);
    assert.equal(heartbeat.check(clock.now(), true), undefined);
  });
});

describe('client sweep timer (fake clock)', () => {
  it('runs at an eighth of the shortest timeout, a quarter of the heartbeat, at least every second', () => {
    const clock = new FakeClock();
    const runs: number[] = [];
    const sweeper = new SweepTimer(clock, 0, () => runs.push(clock.now()));
    const start = clock.now();
    sweeper.arm(800);
    clock.advance(100);
    assert.deepEqual(runs, [start + 100]);
    sweeper.arm(Infinity);
    clock.advance(1000);
    assert.deepEqual(runs, [start + 100, start + 1100]);
    sweeper.arm(80_000);
    sweeper.arm(400); // a shorter timeout arms it sooner
    clock.advance(50);
    assert.equal(runs.length, 3);
    assert.equal(clock.pending, 0, 'fired: disarmed until re-armed');
    const beat = new SweepTimer(clock, 100, () => runs.push(clock.now()));
    beat.arm(Infinity);
    clock.advance(25);
    assert.equal(runs.length, 4);
    beat.arm(Infinity);
    beat.cancel();
    clock.advance(1000);
    assert.equal(runs.length, 4, 'cancelled');
  });
});
