/**
 * Replies matched to requests: a frame for an id not in flight is a protocol error (a second
 * reply included), while frames that crossed the client's CANCEL are not (issue 10, item 7c).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type * as net from 'node:net';
import { connect } from '../../src/client/client.js';
import { withClient } from '../../src/client/short.js';
import type { TcpkitError } from '../../src/errors.js';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeErrorBody } from '../../src/protocol/control.js';
import { encodeFrame, type Frame } from '../../src/protocol/frame.js';
import { scriptedServer, waitUntil, within } from '../helpers/net.js';

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function server(onFrame: (frame: Frame, socket: net.Socket) => void): Promise<string> {
  const started = await scriptedServer(['message'], onFrame);
  cleanups.push(() => started.close());
  return started.address;
}

const reply = (id: number, text: string): Buffer => encodeFrame(FrameType.MESSAGE_REPLY, id, Buffer.from(text));

function notInFlight(error: TcpkitError): boolean {
  assert.equal(error.code, 'TCPKIT_ERR_PROTOCOL_ERROR');
  assert.match(error.message, /sent MESSAGE_REPLY for request id \d+, which is not in flight \(already answered, or never sent\)/);
  return true;
}

describe('client: a frame for a request no longer in flight', () => {
  it('a second reply after the last one awaited breaks the connection, and close() reports it', async () => {
    const address = await server((frame, socket) => {
      if (frame.type === FrameType.MESSAGE) socket.write(Buffer.concat([reply(frame.id, 'first'), reply(frame.id, 'second')]));
    });
    const client = await connect(address);
    assert.equal((await client.send('x')).toString(), 'first');
    await assert.rejects(within(client.close(), 5000, 'close'), notInFlight);
    assert.equal(client.state, 'closed');
  });

  it('withClient fails with it too, though the work itself succeeded', async () => {
    const address = await server((frame, socket) => {
      if (frame.type === FrameType.MESSAGE) socket.write(Buffer.concat([reply(frame.id, 'first'), reply(frame.id, 'again')]));
    });
    await assert.rejects(
      within(
        withClient(address, (client) => client.send('x')),
        5000,
        'withClient',
      ),
      notInFlight,
    );
  });

  it('a second reply while other requests wait fails those requests with the protocol error', async () => {
    let first = 0;
    const address = await server((frame, socket) => {
      if (frame.type !== FrameType.MESSAGE) return;
      if (first === 0) {
        first = frame.id;
        return;
      }
      // The second request's arrival: answer the first twice; the second is left waiting.
      socket.write(Buffer.concat([reply(first, 'one'), reply(first, 'one again')]));
    });
    const client = await connect(address);
    const one = client.send('1');
    const two = client.send('2');
    assert.equal((await one).toString(), 'one');
    await assert.rejects(within(two, 5000, 'the waiting request'), notInFlight);
    await client.close().catch(() => {});
  });
});

describe('client: requests waiting for a free slot', () => {
  it('do not time out while replies to other requests keep coming, however long they wait', async () => {
    // 16 slots (the scripted hello), each reply after 200 ms: the last of 80 waits about 1 s,
    // past its 600 ms timeout, while the connection is never silent for that long.
    const address = await server((frame, socket) => {
      if (frame.type === FrameType.MESSAGE) setTimeout(() => socket.destroyed || socket.write(reply(frame.id, frame.payload.toString())), 200);
    });
    const client = await connect(address, { requestTimeoutMs: 600 });
    const replies = await within(Promise.all(Array.from({ length: 80 }, (_, i) => client.send(`m${i}`))), 20_000, '80 replies');
    assert.deepEqual(replies.map(String), Array.from({ length: 80 }, (_, i) => `m${i}`));
    client.destroy();
  });
});

describe('client: frames that crossed a CANCEL on the wire', () => {
  for (const how of ['aborted', 'timed out'] as const) {
    it(`are taken quietly for a request the client ${how}, until its final frame; the connection stays usable`, async () => {
      const cancelled: number[] = [];
      const address = await server((frame, socket) => {
        if (frame.type === FrameType.GOODBYE) {
          socket.end(encodeFrame(FrameType.GOODBYE, 0));
        } else if (frame.type === FrameType.CANCEL) {
          cancelled.push(frame.id);
          // Frames already on their way, then the final answer to the cancelled id.
          socket.write(
            Buffer.concat([
              encodeFrame(0x22, frame.id, Buffer.alloc(1000)),
              encodeFrame(0x22, frame.id, Buffer.alloc(1000)),
              encodeFrame(FrameType.ERROR, frame.id, encodeErrorBody({ code: 'CANCELLED', message: 'cancelled' })),
            ]),
          );
        } else if (frame.type === FrameType.MESSAGE && frame.payload.toString() === 'slow') {
          socket.write(encodeFrame(0x21, frame.id, Buffer.from('{}')));
        } else if (frame.type === FrameType.MESSAGE) {
          socket.write(reply(frame.id, `echo ${frame.payload.toString()}`));
        }
      });
      const client = await connect(address, how === 'timed out' ? { requestTimeoutMs: 300 } : {});
      const controller = new AbortController();
      let frames = 0;
      const streaming = client.stream(
        FrameType.MESSAGE,
        Buffer.from('slow'),
        {
          isFinal: () => false,
          frame: () => {
            frames++;
            if (how === 'aborted') controller.abort();
          },
        },
        { signal: controller.signal },
      );
      await assert.rejects(within(streaming, 5000, 'the request to end'), { code: how === 'aborted' ? 'TCPKIT_ERR_ABORTED' : 'TCPKIT_ERR_REQUEST_TIMEOUT' });
      await waitUntil(() => cancelled.length === 1 && client.inFlight === 0, 'the cancelled request to get its final frame');
      assert.equal(frames, 1, 'frames after the CANCEL are not delivered to the abandoned consumer');
      assert.equal((await client.send('next', { timeoutMs: 5000 })).toString(), 'echo next');
      await within(client.close(), 5000, 'close');
      assert.equal(await client.closed(), undefined, 'a clean close');
    });
  }
});
