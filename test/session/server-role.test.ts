/**
 * The server role (ServerSession) over an in-memory duplex pair: no sockets, no ports, the
 * clock faked. What test/server/ shows over TCP, shown here without the network.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { duplexPair } from '../helpers/duplex-pair.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { clientOpening, waitUntil } from '../helpers/net.js';
import { memorySession } from '../helpers/session-host.js';
import { FrameType, PREAMBLE } from '../../src/protocol/constants.js';
import { decodeErrorBody, encodeClientHello } from '../../src/protocol/control.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { ScriptedPeer } from './helpers.js';

describe('server role over an in-memory duplex pair', () => {
  it('serves pipelined requests past maxInFlight to a client that half-closed, then ends', async () => {
    const [ours, theirs] = duplexPair();
    const waiting: Array<() => void> = [];
    const { session, log } = memorySession(ours, { maxInFlight: 2 }, (message) => new Promise((resolve) => waiting.push(() => resolve(message))));
    assert.equal(session.peer.label, 'memory');
    const peer = new ScriptedPeer(theirs);
    const requests = [1, 2, 3, 4, 5].map((id) => encodeFrame(FrameType.MESSAGE, id, Buffer.from(`m${id}`)));
    peer.write(Buffer.concat([clientOpening(), ...requests]));
    peer.stream.end();
    await waitUntil(() => waiting.length === 2 && log.peerEnds === 1, 'two requests running, EOF seen');
    assert.equal(session.inFlight, 2, 'the cap holds the other three back');
    while (peer.frames.length < 6) {
      waiting.shift()?.();
      await waitUntil(() => waiting.length > 0 || peer.frames.length === 6, 'the next request');
    }
    await peer.until(() => peer.closed, 'the close');
    assert.deepEqual(
      peer.frames.map((f) => [f.type, f.id]),
      [[FrameType.HELLO, 0], ...[1, 2, 3, 4, 5].map((id) => [FrameType.MESSAGE_REPLY, id])],
    );
    assert.equal(session.requests, 5);
    assert.deepEqual(log.closed.map((c) => c.reason), ['eof']);
  });

  it('answers a wrong token with AUTH_FAILED only after the delay, on the fake clock', async () => {
    const clock = new FakeClock();
    const [ours, theirs] = duplexPair();
    const { session, log } = memorySession(ours, { token: 'the right token', authFailureDelayMs: 250, clock });
    const peer = new ScriptedPeer(theirs);
    const hello = encodeClientHello({ versions: [1], capabilities: [], auth: { token: 'a wrong token' } });
    peer.write(Buffer.concat([Buffer.from(PREAMBLE), encodeFrame(FrameType.HELLO, 0, hello)]));
    await waitUntil(() => log.authFailures === 1, 'the failure');
    assert.equal(session.state, 'closing');
    clock.advance(249);
    assert.equal(session.bytesOut, 0, 'nothing said before the delay');
    clock.advance(1);
    await peer.until(() => peer.ended, 'EOF');
    assert.deepEqual(
      peer.frames.map((f) => decodeErrorBody(f.payload).code),
      ['AUTH_FAILED'],
    );
    assert.equal(session.state, 'ended');
  });

  it('drains for shutdown: goodbye SHUTTING_DOWN once the request in flight is answered', async () => {
    const [ours, theirs] = duplexPair();
    let answer: (() => void) | undefined;
    const { session } = memorySession(ours, {}, (message) => new Promise((resolve) => (answer = () => resolve(message))));
    const peer = new ScriptedPeer(theirs);
    peer.write(Buffer.concat([clientOpening(), encodeFrame(FrameType.MESSAGE, 1, Buffer.from('x'))]));
    await waitUntil(() => answer !== undefined, 'the request running');
    session.drain();
    assert.equal(session.state, 'closing');
    peer.send(FrameType.MESSAGE, 2, Buffer.from('late'));
    await peer.until(() => peer.frames.length === 2, 'the refusal');
    assert.equal(decodeErrorBody(peer.frames[1]!.payload).code, 'SHUTTING_DOWN');
    answer!();
    await peer.until(() => peer.ended, 'EOF');
    assert.deepEqual(
      peer.frames.slice(2).map((f) => f.type),
      [FrameType.MESSAGE_REPLY, FrameType.GOODBYE],
    );
    assert.equal(decodeErrorBody(peer.frames[3]!.payload).code, 'SHUTTING_DOWN');
  });
});
