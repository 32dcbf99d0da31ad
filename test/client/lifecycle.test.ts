/**
 * The client's lifecycle as typed events and two verbs for ending (issue 11, item 6): a
 * reconnect after an idle goodbye is an event, not silent; close() and destroy() are idempotent
 * and both return promises.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { connect } from '../../src/client/client.js';
import { clientInternals } from '../../src/client/internal.js';
import type { TcpkitError } from '../../src/errors.js';
import { CONNECTION_ID, FrameType, PREAMBLE } from '../../src/protocol/constants.js';
import { encodeServerHello } from '../../src/protocol/control.js';
import { encodeFrame, FrameDecoder } from '../../src/protocol/frame.js';
import { LOOPBACK, faultyServer, testServers, waitUntil, within } from '../helpers/net.js';

const { serve, cleanups } = testServers();

/** Preamble and HELLO of a scripted server. */
const OPENING = Buffer.concat([
  Buffer.from(PREAMBLE),
  encodeFrame(
    FrameType.HELLO,
    CONNECTION_ID,
    encodeServerHello({ version: 1, services: ['message'], capabilities: [], limits: { maxFrameBytes: 1 << 20, maxInFlight: 4, idleTimeoutMs: 0 } }),
  ),
]);

describe('client lifecycle events', () => {
  it('tells of the idle goodbye and of the reconnect that follows it', async () => {
    const { server, address } = await serve({ idleTimeoutMs: 100 });
    const client = await connect(address);
    const events: string[] = [];
    client.on('goodbye', (code, message) => events.push(`goodbye ${code} ${message}`));
    client.on('reconnect', (resent) => events.push(`reconnect ${resent}`));
    client.on('close', (error) => events.push(`close ${error}`));
    await client.send('before');
    await within(once(client, 'goodbye'), 5000, 'the idle goodbye');
    await waitUntil(() => server.connections === 0, 'the reaped connection closed');
    assert.deepEqual(events, [`goodbye IDLE_TIMEOUT ${events[0]!.split(' ').slice(2).join(' ')}`]);
    assert.equal((await client.send('after')).toString(), 'after');
    assert.deepEqual(events.slice(1), ['reconnect 0']);
    await client.close();
    // The server may answer our goodbye with its own (NORMAL); the close comes last, clean.
    assert.deepEqual(events.slice(2).filter((event) => event !== 'goodbye NORMAL goodbye'), ['close undefined']);
  });

  it('tells of a shutdown goodbye, and of the close with its error', async () => {
    const { server, address } = await serve();
    const client = await connect(address);
    await client.send('x');
    const goodbye = once(client, 'goodbye');
    const closed = once(client, 'close');
    await server.close();
    assert.equal((await within(goodbye, 5000, 'goodbye'))[0], 'SHUTTING_DOWN');
    const [error] = (await within(closed, 5000, 'close')) as [TcpkitError | undefined];
    assert.equal(error, await client.closed());
  });
});

describe('client: close() and destroy() are idempotent promises', () => {
  it('destroy() resolves once closed, as often as it is called, and close() after it too', async () => {
    const { address } = await serve();
    const client = await connect(address);
    let closes = 0;
    client.on('close', () => closes++);
    const first = client.destroy();
    assert.ok(first instanceof Promise);
    await first;
    assert.equal(client.state, 'closed');
    await client.destroy();
    await client.close();
    assert.equal(closes, 1, 'one close event');
  });

  it('close() twice resolves twice, once closed; destroy() after it resolves too', async () => {
    const { address } = await serve();
    const client = await connect(address);
    await client.send('x');
    await Promise.all([client.close(), client.close()]);
    assert.equal(client.state, 'closed');
    await client.destroy();
    assert.equal(await client.closed(), undefined);
  });

  it('destroy() during the reconnect after an idle goodbye: no new connection is used, the request crossing the goodbye is failed', async () => {
    const seen: string[] = [];
    let connections = 0;
    const started = await faultyServer((socket) => {
      const mine = ++connections;
      const decoder = new FrameDecoder({ maxFrameBytes: 1 << 20 });
      socket.on('data', (chunk: Buffer) => {
        for (const frame of decoder.push(chunk)) {
          if (frame.type === FrameType.HELLO) socket.write(OPENING);
          else if (frame.type === FrameType.MESSAGE) {
            seen.push(`${mine}:${frame.payload.toString()}`);
            // The first connection crosses an idle goodbye; a second one would answer.
            if (mine === 1) socket.end(encodeFrame(FrameType.GOODBYE, CONNECTION_ID, Buffer.from(JSON.stringify({ code: 'IDLE_TIMEOUT', message: 'idle' }))));
            else socket.write(encodeFrame(FrameType.MESSAGE_REPLY, frame.id, frame.payload));
          }
        }
      });
    });
    cleanups.push(() => started.close());
    const client = await connect(`${LOOPBACK}:${started.port}`);
    client.on('goodbye', () => void client.destroy());
    await assert.rejects(within(client.send('crossed'), 5000, 'the request'), (error: TcpkitError) => error.code === 'TCPKIT_ERR_CLIENT_CLOSED');
    assert.ok((await client.closed()) instanceof Error);
    assert.deepEqual(seen, ['1:crossed'], 'not sent again after destroy()');
  });

  it('the plumbing of service clients is off the public Client', async () => {
    const { address } = await serve();
    const client = await connect(address);
    for (const name of ['ready', 'pauseReading', 'resumeReading', 'releasePayload']) assert.equal(name in client, false, name);
    const internals = clientInternals(client);
    await internals.ready;
    internals.pauseReading();
    internals.resumeReading();
    assert.equal((await client.send('x')).toString(), 'x');
    await client.close();
  });
});
