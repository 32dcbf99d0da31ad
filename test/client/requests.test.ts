import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError, RemoteError, type TcpkitError } from '../../src/errors.js';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeErrorBody } from '../../src/protocol/control.js';
import type { Frame } from '../../src/protocol/frame.js';
import { Requests, type Pending, type StreamConsumer } from '../../src/client/requests.js';
import { FakeClock } from '../helpers/fake-clock.js';

function frame(type: number, id: number, payload: Uint8Array = Buffer.alloc(0)): Frame {
  return { type, id, payload: Buffer.from(payload) } as Frame;
}

/** Requests over a fake clock, recording the CANCELs and freed slots. */
function setup() {
  const clock = new FakeClock();
  const cancels: number[] = [];
  let freed = 0;
  const requests = new Requests(clock, 'server:1', { cancel: (id) => cancels.push(id), freed: () => freed++ });
  const open = (timeoutMs: number, consumer?: Partial<StreamConsumer>, signal?: AbortSignal) => {
    const frames: Frame[] = [];
    let outcome: 'done' | Error | undefined;
    const pending: Pending = requests.create(
      { type: FrameType.MESSAGE, payload: Buffer.from('x'), consumer: { isFinal: () => true, frame: (f) => frames.push(f), ...consumer }, timeoutMs, signal },
      () => (outcome = 'done'),
      (error) => (outcome = error),
    );
    requests.add(pending);
    return { pending, frames, outcome: () => outcome };
  };
  return { clock, requests, cancels, freed: () => freed, open };
}

describe('client requests: correlation by id', () => {
  it('gives each request its own id and settles it with its final frame', () => {
    const { requests, open, freed } = setup();
    const a = open(0);
    const b = open(0);
    assert.notEqual(a.pending.id, b.pending.id);
    assert.equal(requests.settle(frame(FrameType.MESSAGE_REPLY, b.pending.id, Buffer.from('b'))), undefined);
    assert.equal(b.outcome(), 'done');
    assert.equal(a.outcome(), undefined);
    assert.equal(requests.size, 1);
    assert.equal(freed(), 1);
  });

  it('a reply for an id not in flight (a second reply) breaks the connection', () => {
    const { requests, open } = setup();
    const a = open(0);
    requests.settle(frame(FrameType.MESSAGE_REPLY, a.pending.id));
    const error = requests.settle(frame(FrameType.MESSAGE_REPLY, a.pending.id)) as TcpkitError;
    assert.equal(error.code, 'TCPKIT_ERR_PROTOCOL_ERROR');
    assert.match(error.message, /not in flight/);
  });

  it('an ERROR reply rejects with a RemoteError and frees the id without a CANCEL', () => {
    const { requests, open, cancels } = setup();
    const a = open(0);
    requests.settle(frame(FrameType.ERROR, a.pending.id, encodeErrorBody({ code: 'BUSY', message: 'later' })));
    assert.ok(a.outcome() instanceof RemoteError);
    assert.equal(requests.size, 0);
    assert.deepEqual(cancels, []);
  });

  it('a timed-out request is answered at once, CANCELled, and keeps its id until the late reply', () => {
    const { clock, requests, open, cancels, freed } = setup();
    const a = open(100);
    clock.advance(99);
    assert.equal(requests.expire(clock.now(), false, false).shortest, 100);
    assert.equal(a.outcome(), undefined);
    clock.advance(1);
    requests.expire(clock.now(), false, false);
    assert.equal((a.outcome() as TcpkitError).code, 'TCPKIT_ERR_REQUEST_TIMEOUT');
    assert.deepEqual(cancels, [a.pending.id]);
    assert.equal(requests.size, 1, 'the id stays reserved');
    assert.equal(requests.awaited(), false);
    // The reply that crossed the CANCEL is dropped, not a protocol error.
    assert.equal(requests.settle(frame(FrameType.MESSAGE_REPLY, a.pending.id)), undefined);
    assert.equal(requests.size, 0);
    assert.equal(freed(), 1);
  });

  it('no timeout while paused; every frame pushes the deadline back', () => {
    const { clock, requests, open } = setup();
    const a = open(100, { isFinal: (f) => f.payload.length === 0 });
    clock.advance(500);
    requests.expire(clock.now(), true, false);
    assert.equal(a.outcome(), undefined, 'paused: no verdict');
    requests.settle(frame(FrameType.MESSAGE_REPLY, a.pending.id, Buffer.from('part')));
    clock.advance(99);
    requests.expire(clock.now(), false, false);
    assert.equal(a.outcome(), undefined);
    assert.equal(a.frames.length, 1);
  });

  it('a request that sent content to a server taking none of it fails the connection', () => {
    const { clock, requests, open } = setup();
    const a = open(100);
    a.pending.sent = true;
    clock.advance(100);
    const { fatal } = requests.expire(clock.now(), false, true);
    assert.match((fatal as Error).message, /took none of the bytes sent/);
  });

  it('an abort abandons the request and CANCELs it', () => {
    const { requests, open, cancels } = setup();
    const controller = new AbortController();
    const a = open(0, {}, controller.signal);
    controller.abort();
    assert.equal((a.outcome() as TcpkitError).code, 'TCPKIT_ERR_ABORTED');
    assert.deepEqual(cancels, [a.pending.id]);
    assert.equal(requests.size, 1);
  });

  it('a consumer that throws abandons its request; a ProtocolError from it breaks the connection', () => {
    const { requests, open, cancels } = setup();
    const failing = () => {
      throw new Error('disk full');
    };
    const a = open(0, { isFinal: () => false, frame: failing });
    assert.equal(requests.settle(frame(FrameType.MESSAGE_REPLY, a.pending.id)), undefined);
    assert.equal((a.outcome() as Error).message, 'disk full');
    assert.deepEqual(cancels, [a.pending.id], 'not final: the server is told to stop');
    const hostile = new ProtocolError('PROTOCOL_ERROR', 'bad reply');
    const b = open(0, {
      frame: () => {
        throw hostile;
      },
    });
    assert.equal(requests.settle(frame(FrameType.MESSAGE_REPLY, b.pending.id)), hostile);
  });

  it('takeUnserved returns the requests still awaited and forgets every id', () => {
    const { clock, requests, open } = setup();
    const a = open(10);
    const b = open(0);
    clock.advance(10);
    requests.expire(clock.now(), false, false);
    assert.deepEqual(requests.takeUnserved(), [b.pending]);
    assert.equal(requests.size, 0);
    assert.ok(a.outcome() instanceof Error);
  });
});
