/**
 * The server serves exactly the services it is given, each checked against the frame type
 * registry when the server is built; the package root's createServer adds the message service.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createServer, type CreateServerOptions } from '../../src/create-server.js';
import { Server } from '../../src/server/server.js';
import type { Service } from '../../src/server/service.js';
import { messageService } from '../../src/services/message.js';
import { connect } from '../../src/client/client.js';
import { OptionError } from '../../src/errors.js';
import { FileFrame, FrameType, UploadFrame } from '../../src/protocol/types.js';
import { LOOPBACK } from '../helpers/net.js';

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

function service(name: string, requestTypes: number[], continuationTypes?: number[]): Service {
  return { name, requestTypes, ...(continuationTypes && { continuationTypes }), handle: (request, exchange) => exchange.reply(request.type + 1, request.payload) };
}

/** Listens on loopback, connects, and returns the services the server's HELLO lists, and the client. */
async function hello(server: Server): Promise<{ services: string[]; client: Awaited<ReturnType<typeof connect>> }> {
  cleanups.push(() => server.destroy());
  const { port } = await server.listen();
  const client = await connect(`${LOOPBACK}:${port}`);
  cleanups.push(() => client.close());
  return { services: [...client.server.services], client };
}

const options = (extra: CreateServerOptions = {}): CreateServerOptions => ({ host: LOOPBACK, port: 0, ...extra });

describe('what a server serves', () => {
  it('new Server() serves exactly its services: none, and a MESSAGE is UNSUPPORTED_REQUEST', async () => {
    const { services, client } = await hello(new Server(options()));
    assert.deepEqual(services, []);
    await assert.rejects(client.send('hi'), { code: 'TCPKIT_ERR_UNSUPPORTED_REQUEST' });
  });

  it('new Server() with a service of its own at a private type serves only that one', async () => {
    const { services, client } = await hello(new Server(options({ services: [service('mine', [0x80])] })));
    assert.deepEqual(services, ['mine']);
    assert.equal(Buffer.from((await client.request(0x80, Buffer.from('x'), 0x81)).payload).toString(), 'x');
  });

  it('createServer() adds the message service first, echo by default, or onMessage', async () => {
    const echo = await hello(createServer(options({ services: [service('mine', [0x80])] })));
    assert.deepEqual(echo.services, ['message', 'mine']);
    assert.equal(String(await echo.client.send('hi')), 'hi');
    const custom = await hello(createServer(options({ onMessage: (m) => `re: ${m}` })));
    assert.deepEqual(custom.services, ['message']);
    assert.equal(String(await custom.client.send('hi')), 're: hi');
  });

  it('createServer() with a message service of the caller installs that one, once', async () => {
    const { services, client } = await hello(createServer(options({ services: [service('mine', [0x80]), messageService(() => 'theirs')] })));
    assert.deepEqual(services, ['mine', 'message']);
    assert.equal(String(await client.send('hi')), 'theirs');
  });

  it('refuses onMessage where it would be ignored or is not a function', () => {
    const invalid = { code: 'TCPKIT_ERR_INVALID_OPTION' };
    assert.throws(() => createServer({ onMessage: () => 'a', services: [messageService(() => 'b')] }), { ...invalid, message: /onMessage and a message service/ });
    assert.throws(() => createServer({ onMessage: 'echo' as never }), { ...invalid, message: /onMessage must be a function/ });
    assert.throws(() => new Server({ onMessage: () => 'a' } as never), { ...invalid, message: /a Server serves only its services/ });
  });
});

describe('service registration', () => {
  const refused: Array<[string, Service[], RegExp]> = [
    ['a control type', [service('x', [FrameType.ERROR])], /frame type 0x05 \(ERROR\) is a control type/],
    ['type 0x00', [service('x', [0x00])], /frame type 0x00 \(0x00\) is a control type/],
    ['a value that is no u8', [service('x', [0x100])], /256 is not a frame type/],
    ['a fraction', [service('x', [0x80 + 0.5])], /is not a frame type/],
    ['a continuation in the control range', [service('x', [0x80], [FrameType.PING])], /0x03 \(PING\) is a control type/],
    ['a type of the file range by another service', [service('x', [FileFrame.GET])], /0x20 \(GET\) lies in the range of the "file" service \(0x20–0x2f\)/],
    ['a type of the upload range by another service', [service('x', [0x80], [UploadFrame.PUT_DATA])], /0x32 \(PUT_DATA\) lies in the range of the "upload" service/],
    ['a type served by two services', [service('a', [0x90]), service('b', [0x91, 0x90])], /service "b": frame type 0x90 \(0x90\) is served twice/],
    ['a request type that is also a continuation', [service('a', [0x90], [0x90])], /service "a": frame type 0x90 \(0x90\) is served twice/],
    ['two services of one name', [service('a', [0x90]), service('a', [0x91])], /two services are named "a"/],
    ['a service with no name', [service('', [0x90])], /a service needs a non-empty name/],
    ['a second message service', [messageService(() => 'a'), { ...messageService(() => 'b'), name: 'other' }], /0x10 \(MESSAGE\) lies in the range of the "message" service/],
  ];
  for (const [what, services, message] of refused) {
    it(`refuses ${what}, with an OptionError naming it`, () => {
      assert.throws(
        () => new Server({ services }),
        (error: unknown) => error instanceof OptionError && error.code === 'TCPKIT_ERR_INVALID_OPTION' && message.test(error.message),
      );
    });
  }

  it('takes types in the unassigned and private ranges, and the tcpkit ranges by their own service', () => {
    new Server({ services: [service('tidy', [0x70]), service('ext', [0x80, 0xff], [0xfe]), service('file', [FileFrame.GET]), service('message', [FrameType.MESSAGE])] });
  });
});
