/**
 * Raw mode for messages: the tutorial's tcp_server.py protocol over tcpkit's message handlers.
 */
import { toBytes, type MessageHandler } from '../services/message.js';
import type { RawHandler } from './handler.js';

/**
 * Raw mode for messages (the tutorial's tcp_server.py): the raw request is the message, the
 * handler's reply is sent back as bare bytes, and the connection closes.
 */
export function rawMessageHandler(handler: MessageHandler): RawHandler {
  return async (request, exchange) => {
    const reply = await handler(request, { peer: exchange.peer, signal: exchange.signal, id: 0 });
    await exchange.write(toBytes(reply));
  };
}
