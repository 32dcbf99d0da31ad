/**
 * The framed-session core over an in-memory duplex pair, no sockets: each role against a
 * scripted peer, and the two roles against each other.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { duplexPair } from '../helpers/duplex-pair.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { clientOpening, waitUntil } from '../helpers/net.js';
import { CONNECTION_ID, FrameType, HELLO_MAX_FRAME_BYTES, PREAMBLE } from '../../src/protocol/constants.js';
import { decodeErrorBody, encodeErrorBody } from '../../src/protocol/control.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { ProtocolError, RemoteError } from '../../src/errors.js';
import { CLIENT_OPENING } from '../../src/client/opening.js';
import { ScriptedPeer, decodeServerHello, serverReply, startSession, turn, type RecordingRole } from './helpers.js';

/** A server-side core and the scripted client at the other end. */
function serverSide(clock?: FakeClock): { role: RecordingRole; peer: ScriptedPeer } {
  const [ours, theirs] = duplexPair();
  const role = startSession(ours, { side: 'server', maxFrameBytes: HELLO_MAX_FRAME_BYTES, lingerMs: 1000, ...(clock && { clock }) });
  return { role, peer: new ScriptedPeer(theirs) };
}

/** A server-side core past its hello. */
async function openServer(clock?: FakeClock): Promise<{ role: RecordingRole; peer: ScriptedPeer }> {
  const side = serverSide(clock);
  side.peer.write(clientOpening());
  await side.peer.until(() => side.peer.frames.length === 1, 'the HELLO reply');
  side.peer.frames.shift();
  return side;
}

/** A client-side core (its opening sent) and the scripted server at the other end. */
function clientSide(): { role: RecordingRole; peer: ScriptedPeer } {
  const [ours, theirs] = duplexPair();
  const role = startSession(ours, { side: 'client', maxFrameBytes: 1 << 20, opening: CLIENT_OPENING });
  return { role, peer: new ScriptedPeer(theirs) };
}

async function openClient(): Promise<{ role: RecordingRole; peer: ScriptedPeer }> {
  const side = clientSide();
  await side.peer.until(() => side.peer.frames.length === 1, "the client's HELLO");
  side.peer.frames.shift();
  side.peer.write(serverReply());
  await side.peer.until(() => side.role.session.state.name === 'open', 'open');
  return side;
}

describe('session core, server side (scripted client, in memory)', () => {
  it('answers the hello with its preamble and HELLO, then raises the frame limit', async () => {
    const { role, peer } = serverSide();
    assert.equal(role.session.state.name, 'hello');
    peer.write(clientOpening());
    await peer.until(() => peer.frames.length === 1, 'the HELLO reply');
    assert.equal(peer.frames[0]!.type, FrameType.HELLO);
    assert.equal(decodeServerHello(peer.frames[0]!.payload).version, 1);
    assert.equal(role.session.state.name, 'open');
    // Past the hello, a frame larger than the hello limit is accepted.
    peer.send(0x20, 1, Buffer.alloc(HELLO_MAX_FRAME_BYTES + 1));
    await waitUntil(() => role.frames.length === 1, 'the large frame');
    assert.equal(role.frames[0]!.payload.length, HELLO_MAX_FRAME_BYTES + 1);
  });

  it('tells a client whose first frame is not HELLO why, after its preamble, and ends', async () => {
    const { role, peer } = serverSide();
    peer.write(Buffer.concat([Buffer.from(PREAMBLE), encodeFrame(FrameType.MESSAGE, 1, Buffer.from('hi'))]));
    await peer.until(() => peer.ended, 'EOF');
    assert.equal(peer.frames.length, 1, 'the decoder read our preamble, then one ERROR');
    assert.equal(peer.frames[0]!.type, FrameType.ERROR);
    assert.equal(peer.frames[0]!.id, CONNECTION_ID);
    assert.match(decodeErrorBody(peer.frames[0]!.payload).message, /expected HELLO first, got MESSAGE/);
    assert.equal(role.protocolErrors.length, 1);
    assert.deepEqual(role.session.state, { name: 'ended', why: 'protocol-error' });
  });

  it('closes a peer that is not tcpkit at all without a byte', async () => {
    const { role, peer } = serverSide();
    peer.write(Buffer.from('GET / HTTP/1.0\r\n\r\n'));
    await role.waitClosed();
    assert.equal(peer.bytes, 0);
    assert.equal(role.protocolErrors[0]!.wireCode, 'NOT_TCPKIT');
  });

  it('answers PING with a PONG echoing id and payload; an oversized PING is a protocol error', async () => {
    const { role, peer } = await openServer();
    peer.send(FrameType.PING, 7, Buffer.from('abc'));
    await peer.until(() => peer.frames.length === 1, 'PONG');
    assert.equal(peer.frames[0]!.type, FrameType.PONG);
    assert.equal(peer.frames[0]!.id, 7);
    assert.equal(peer.frames[0]!.payload.toString(), 'abc');
    assert.equal(role.frames.length, 0, 'the role never saw the PING');
    peer.send(FrameType.PING, 8, Buffer.alloc(65));
    await peer.until(() => peer.ended, 'EOF');
    assert.equal(peer.frames[1]!.type, FrameType.ERROR);
    assert.equal(decodeErrorBody(peer.frames[1]!.payload).code, 'PROTOCOL_ERROR');
  });

  it('answers a client GOODBYE with its own once the role is idle, then ends', async () => {
    const { role, peer } = await openServer();
    role.working = 1;
    peer.send(FrameType.GOODBYE, CONNECTION_ID);
    await waitUntil(() => role.goodbyes.length === 1, 'the goodbye');
    assert.deepEqual(role.session.state, { name: 'closing', why: 'peer-goodbye', goodbye: { code: 'NORMAL', message: 'goodbye' } });
    await turn();
    assert.equal(peer.frames.length, 0, 'nothing said while busy');
    role.working = 0;
    assert.equal(role.session.workDone(), true);
    await peer.until(() => peer.ended, 'EOF');
    assert.equal(peer.frames[0]!.type, FrameType.GOODBYE);
    assert.equal(decodeErrorBody(peer.frames[0]!.payload).code, 'NORMAL');
    peer.stream.end();
    await role.waitClosed();
    assert.equal(role.closedWith!.reason, 'eof');
  });

  it('after the peer half-closes, ends once the role is idle, with no goodbye', async () => {
    const { role, peer } = await openServer();
    role.working = 1;
    peer.stream.end();
    await waitUntil(() => role.peerEnds === 1, 'EOF seen');
    assert.equal(role.session.state.name, 'open');
    role.working = 0;
    role.session.workDone();
    assert.deepEqual(role.session.state, { name: 'ended', why: 'peer-ended' });
    await role.waitClosed();
    assert.equal(peer.frames.length, 0);
  });

  it('closes at once on an ERROR(0) from the peer, with the error the role gives', async () => {
    const { role, peer } = await openServer();
    peer.send(FrameType.ERROR, CONNECTION_ID, encodeErrorBody({ code: 'PROTOCOL_ERROR', message: 'bad frames' }));
    await role.waitClosed();
    assert.equal(role.remoteErrors[0]!.message, 'bad frames');
    assert.ok(role.closedWith!.error instanceof RemoteError);
    assert.equal(role.session.state.name, 'closed');
  });

  it('routes ERROR and PONG with a request id to the role', async () => {
    const { role, peer } = await openServer();
    peer.send(FrameType.PONG, 3);
    peer.send(FrameType.ERROR, 4, encodeErrorBody({ code: 'NORMAL', message: '' }));
    await waitUntil(() => role.frames.length === 2, 'two frames');
    assert.deepEqual(
      role.frames.map((f) => [f.type, f.id]),
      [
        [FrameType.PONG, 3],
        [FrameType.ERROR, 4],
      ],
    );
  });

  it('lingers after ending: a peer that never closes is destroyed at the linger deadline (fake clock)', async () => {
    const clock = new FakeClock();
    const { role, peer } = await openServer(clock);
    role.session.endNow('idle', { type: FrameType.GOODBYE, body: { code: 'IDLE_TIMEOUT', message: 'idle' } });
    await peer.until(() => peer.ended, 'EOF');
    assert.equal(decodeErrorBody(peer.frames[0]!.payload).code, 'IDLE_TIMEOUT');
    clock.advance(999);
    await turn();
    assert.equal(role.closedWith, undefined, 'still lingering');
    clock.advance(1);
    await role.waitClosed();
    assert.equal(role.closedWith!.reason, 'local');
    assert.equal(clock.pending, 0);
  });

  it('a peer that closes while we linger clears the linger timer (fake clock)', async () => {
    const clock = new FakeClock();
    const { role, peer } = await openServer(clock);
    role.session.endNow('idle');
    await peer.until(() => peer.ended, 'EOF');
    assert.equal(clock.pending, 1);
    peer.stream.end();
    await role.waitClosed();
    assert.equal(role.closedWith!.reason, 'eof');
    assert.equal(clock.pending, 0);
  });
});

describe('session core, client side (scripted server, in memory)', () => {
  it('sends its opening at once and opens on the server HELLO', async () => {
    const { role, peer } = await openClient();
    assert.equal(role.session.state.name, 'open');
    assert.equal(peer.bytes, CLIENT_OPENING.length);
  });

  it('hears a refusal in the hello phase as a remote error and closes', async () => {
    const { role, peer } = clientSide();
    peer.write(Buffer.concat([Buffer.from(PREAMBLE), encodeFrame(FrameType.ERROR, 0, encodeErrorBody({ code: 'AUTH_FAILED', message: 'wrong token' }))]));
    await role.waitClosed();
    assert.equal(role.remoteErrors[0]!.code, 'AUTH_FAILED');
    assert.equal((role.closedWith!.error as RemoteError).wireCode, 'AUTH_FAILED');
  });

  it("fails when the server's first frame is not HELLO, telling the server nothing", async () => {
    const { role, peer } = clientSide();
    await peer.until(() => peer.frames.length === 1, "the client's HELLO");
    peer.write(Buffer.concat([Buffer.from(PREAMBLE), encodeFrame(FrameType.MESSAGE_REPLY, 1)]));
    await role.waitClosed();
    assert.ok(role.closedWith!.error instanceof ProtocolError);
    assert.match(role.closedWith!.error.message, /expected the server's HELLO, got MESSAGE_REPLY/);
    assert.equal(peer.frames.length, 1, 'only our HELLO');
  });

  it('answers a server PING, ignores an oversized one, and routes PONG(0) to the heartbeat', async () => {
    const { role, peer } = await openClient();
    peer.send(FrameType.PING, CONNECTION_ID, Buffer.from('x'));
    peer.send(FrameType.PING, CONNECTION_ID, Buffer.alloc(65));
    peer.send(FrameType.PONG, CONNECTION_ID);
    peer.send(FrameType.PONG, 9);
    await waitUntil(() => role.frames.length === 1 && peer.frames.length === 1, 'PONG out, PONG(9) in');
    assert.equal(peer.frames[0]!.type, FrameType.PONG);
    assert.equal(peer.frames[0]!.payload.toString(), 'x');
    assert.equal(role.pongs.length, 1);
    assert.equal(role.frames[0]!.id, 9);
    assert.equal(role.session.state.name, 'open');
  });

  it('fails on a malformed GOODBYE body', async () => {
    const { role, peer } = await openClient();
    peer.send(FrameType.GOODBYE, CONNECTION_ID, Buffer.from('not json'));
    await role.waitClosed();
    assert.ok(role.closedWith!.error instanceof ProtocolError);
    assert.equal(role.goodbyes.length, 0);
  });
});

describe('session core, both roles (in memory)', () => {
  it('hello, ping, and a goodbye from the client answered by the server', async () => {
    const [a, b] = duplexPair();
    const server = startSession(a, { side: 'server', maxFrameBytes: HELLO_MAX_FRAME_BYTES });
    const client = startSession(b, { side: 'client', maxFrameBytes: 1 << 20, opening: CLIENT_OPENING });
    await waitUntil(() => client.session.state.name === 'open', 'the hello exchange');
    assert.equal(server.session.state.name, 'open');
    assert.equal(client.session.state.name, 'open');
    client.session.send(FrameType.PING, CONNECTION_ID);
    await waitUntil(() => client.pongs.length === 1, 'the PONG');
    client.session.closeWhenDone('local', { code: 'NORMAL', message: 'client done' });
    assert.deepEqual(client.session.state, { name: 'ended', why: 'local' });
    await Promise.all([client.waitClosed(), server.waitClosed()]);
    assert.deepEqual(server.goodbyes, [{ code: 'NORMAL', message: 'client done' }]);
    assert.deepEqual(client.goodbyes, [{ code: 'NORMAL', message: 'goodbye' }]);
    assert.equal(server.closedWith!.reason, 'eof');
    assert.equal(client.closedWith!.reason, 'eof');
  });

  it('a server that goes away mid-session is an EOF to the client', async () => {
    const [a, b] = duplexPair();
    const server = startSession(a, { side: 'server', maxFrameBytes: HELLO_MAX_FRAME_BYTES });
    const client = startSession(b, { side: 'client', maxFrameBytes: 1 << 20, opening: CLIENT_OPENING });
    await waitUntil(() => client.session.state.name === 'open', 'the hello exchange');
    server.session.destroy();
    await server.waitClosed();
    await waitUntil(() => client.peerEnds === 1, "the server's EOF");
  });
});
