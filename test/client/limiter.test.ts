import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TimeoutError } from '../../src/errors.js';
import { Limiter } from '../../src/client/limiter.js';

describe('client limiter: in-flight slots', () => {
  it('wakes waiters in order as slots free, one per slot', async () => {
    let inUse = 2;
    const limiter = new Limiter(() => inUse, () => 2);
    assert.equal(limiter.full(), true);
    const woken: string[] = [];
    const a = limiter.wait(0, 0).then(() => woken.push('a'));
    const b = limiter.wait(0, 0).then(() => woken.push('b'));
    inUse = 1;
    limiter.wakeNext();
    await a;
    assert.deepEqual(woken, ['a']);
    assert.equal(limiter.full(), true, 'the freed slot is reserved for the woken request');
    limiter.claim();
    inUse = 2;
    assert.equal(limiter.waiting, 1);
    limiter.wakeNext();
    await Promise.resolve();
    assert.deepEqual(woken, ['a'], 'no free slot: b still waits');
    limiter.wakeAll();
    await b;
    assert.deepEqual(woken, ['a', 'b']);
  });

  it('a new request waits behind the waiters even when a slot is free', () => {
    let inUse = 1;
    const limiter = new Limiter(() => inUse, () => 1);
    void limiter.wait(0, 0);
    inUse = 0;
    assert.equal(limiter.full(), true);
  });

  it('fails a waiter once nothing was heard for its timeout, not while paused', async () => {
    const limiter = new Limiter(() => 1, () => 1);
    const failed = limiter.wait(100, 1000);
    const never = limiter.wait(0, 1000);
    const timedOut = (ms: number) => new TimeoutError('REQUEST_TIMEOUT', `waited ${ms}`);
    assert.equal(limiter.expire(1099, 0, false, timedOut), 100);
    assert.equal(limiter.expire(1500, 0, true, timedOut), 100, 'paused: no verdict');
    assert.equal(limiter.expire(1150, 1060, false, timedOut), 100, 'a reply at 1060 counts as progress');
    assert.equal(limiter.expire(1160, 1060, false, timedOut), 0);
    await assert.rejects(failed, /waited 100/);
    assert.equal(limiter.waiting, 1);
    void never;
  });
});
