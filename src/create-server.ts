/**
 * The package root's `createServer`: a {@link Server} with the message service installed by
 * default (echo, or `onMessage`), as README documents. The server itself knows no service.
 */
import { OptionError } from './errors.js';
import { FrameType } from './protocol/types.js';
import type { ServerOptions } from './server/options.js';
import { Server } from './server/server.js';
import { echoHandler, messageService, type MessageHandler } from './services/message.js';

/** Options of {@link createServer}: those of a {@link Server}, and the message handler. */
export interface CreateServerOptions extends ServerOptions {
  /**
   * Answers each message (the message service, listed first in the HELLO). Not allowed beside a
   * message service of your own in `services`, which then replaces the default.
   * @default echo: the reply is the message itself
   */
  onMessage?: MessageHandler;
}

/** True for a service that serves messages: named "message", or taking MESSAGE requests. */
function servesMessages(services: ServerOptions['services']): boolean {
  return (services ?? []).some(
    (service) => service?.name === 'message' || (Array.isArray(service?.requestTypes) && service.requestTypes.includes(FrameType.MESSAGE)),
  );
}

/**
 * Creates a tcpkit server (call `listen()` to bind) serving messages and `options.services`.
 * The message service answers with `onMessage` (echo by default), unless `services` has a
 * message service of its own. For a server with no message service, use `new Server(options)`.
 * @example
 * const server = createServer({ port: 0, onMessage: (m, ctx) => `hello ${ctx.peer.address}` });
 * const { port } = await server.listen();
 */
export function createServer(options: CreateServerOptions = {}): Server {
  const { onMessage, ...rest } = options;
  if (onMessage !== undefined && typeof onMessage !== 'function') {
    throw new OptionError('INVALID_OPTION', 'onMessage must be a function');
  }
  const services = rest.services ?? [];
  if (servesMessages(services)) {
    if (onMessage !== undefined) throw new OptionError('INVALID_OPTION', 'onMessage and a message service in services: give one of them');
    return new Server(rest);
  }
  return new Server({ ...rest, services: [messageService(onMessage ?? echoHandler), ...services] });
}
