/**
 * The client role on the session core over an in-memory duplex pair and a fake clock: no
 * sockets, no sleeps. The scripted server is the core's test peer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ClientRole } from '../../src/client/role.js';
import { resolveClientOptions } from '../../src/client/options.js';
import type { TcpkitError } from '../../src/errors.js';
import { CONNECTION_ID, FrameType } from '../../src/protocol/constants.js';
import { decodeErrorBody } from '../../src/protocol/control.js';
import { duplexPair } from '../helpers/duplex-pair.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { ScriptedPeer, serverReply, turn } from '../session/helpers.js';

/** A client role over one end of a pair, its hello answered by the scripted server at the other. */
async function started(options: { requestTimeoutMs?: number } = {}) {
  const clock = new FakeClock();
  const [ours, theirs] = duplexPair();
  const server = new ScriptedPeer(theirs);
  const events: string[] = [];
  const role = new ClientRole({ socket: ours, reads: undefined }, resolveClientOptions('127.0.0.1:1', { clock, heartbeatMs: 0, ...options }), {
    goodbye: (code) => events.push(`goodbye ${code}`),
    reconnect: (resent) => events.push(`reconnect ${resent}`),
    close: (error) => events.push(`close ${error?.message}`),
  });
  await server.until(() => server.frames.length === 1, "the client's HELLO");
  server.write(serverReply());
  await role.ready;
  return { clock, role, server, events };
}

describe('client role over an in-memory pair (fake clock)', () => {
  it('close(): GOODBYE NORMAL and FIN once the last reply is in; a server that never closes is destroyed after the linger', async () => {
    const { clock, role, server, events } = await started();
    const reply = role.stream(FrameType.MESSAGE, Buffer.from('hi'), { isFinal: () => true, frame: () => {} });
    await server.until(() => server.frames.length === 2, 'the MESSAGE');
    let closed = false;
    const closing = role.close().then(() => (closed = true));
    await turn();
    assert.equal(server.frames.length, 2, 'no goodbye while a reply is awaited');
    server.send(FrameType.MESSAGE_REPLY, server.frames[1]!.id, Buffer.from('hi'));
    await reply;
    await server.until(() => server.ended, 'the FIN');
    const goodbye = server.frames[2]!;
    assert.equal(goodbye.type, FrameType.GOODBYE);
    assert.equal(decodeErrorBody(goodbye.payload, 'goodbye').code, 'NORMAL');
    clock.advance(4999);
    await turn();
    assert.equal(closed, false, 'lingering: the server may still close its side');
    clock.advance(1);
    await closing;
    assert.deepEqual(events, ['close undefined']);
  });

  it('a request times out on the fake clock, is CANCELled, and the late reply is dropped', async () => {
    const { clock, role, server } = await started({ requestTimeoutMs: 1000 });
    let failure = undefined as TcpkitError | undefined;
    const reply = role.stream(FrameType.MESSAGE, Buffer.from('slow'), { isFinal: () => true, frame: () => {} }).catch((error: TcpkitError) => {
      failure = error;
    });
    await server.until(() => server.frames.length === 2, 'the MESSAGE');
    const id = server.frames[1]!.id;
    clock.advance(999);
    await turn();
    assert.equal(failure, undefined);
    clock.advance(200);
    await reply;
    assert.equal((failure as TcpkitError | undefined)?.code, 'TCPKIT_ERR_REQUEST_TIMEOUT');
    await server.until(() => server.frames.length === 3, 'the CANCEL');
    assert.deepEqual([server.frames[2]!.type, server.frames[2]!.id], [FrameType.CANCEL, id]);
    server.send(FrameType.MESSAGE_REPLY, id, Buffer.from('late'));
    await turn();
    assert.equal(role.inFlight, 0, 'the late reply freed the id, without breaking the connection');
    assert.equal(role.state, 'open');
    role.destroy();
    await role.closed();
  });

  it('a goodbye from the server is told, and a new request gets its reason', async () => {
    const { role, server, events } = await started();
    server.send(FrameType.GOODBYE, CONNECTION_ID, Buffer.from(JSON.stringify({ code: 'SHUTTING_DOWN', message: 'bye' })));
    await server.until(() => server.ended, 'our FIN after the goodbye');
    await assert.rejects(
      role.stream(FrameType.MESSAGE, Buffer.from('x'), { isFinal: () => true, frame: () => {} }),
      (error: TcpkitError) => error.code === 'TCPKIT_ERR_SHUTTING_DOWN',
    );
    server.stream.end();
    const closedWith = await role.closed();
    assert.equal((closedWith as TcpkitError).code, 'TCPKIT_ERR_SHUTTING_DOWN');
    assert.deepEqual(events, ['goodbye SHUTTING_DOWN', `close ${closedWith!.message}`]);
  });
});
