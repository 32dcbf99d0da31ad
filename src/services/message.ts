/**
 * The message service: a client sends a message (text or bytes), the server's handler answers.
 */
import { FrameType } from '../protocol/constants.js';
import type { PeerInfo } from '../transport/peer.js';
import type { Exchange, Service } from '../server/service.js';

/** What a message handler may answer: text (sent as UTF-8) or bytes. */
export type MessageReply = string | Uint8Array;

/** What a message handler knows about the request. */
export interface MessageContext {
  /** The client's address (IPv4-mapped IPv6 shown as IPv4). */
  readonly peer: PeerInfo;
  /** Aborted when the client goes away or cancels. */
  readonly signal: AbortSignal;
  /** The request id on its connection. */
  readonly id: number;
}

/**
 * Answers one message.
 * @example const upper: MessageHandler = (message) => message.toString('utf8').toUpperCase();
 */
export type MessageHandler = (message: Buffer, context: MessageContext) => MessageReply | Promise<MessageReply>;

/** The default handler: answers every message with itself. */
export const echoHandler: MessageHandler = (message) => message;

/** A handler that answers every message with the same text, as the tutorial's server does. */
export function fixedReplyHandler(reply: MessageReply): MessageHandler {
  return () => reply;
}

/** A reply as bytes: text is encoded as UTF-8. */
export function toBytes(reply: MessageReply): Uint8Array {
  if (typeof reply === 'string') return Buffer.from(reply, 'utf8');
  if (reply instanceof Uint8Array) return reply;
  throw new TypeError('a message handler must return a string or bytes');
}

/** Wraps a {@link MessageHandler} as a server {@link Service}. */
export function messageService(handler: MessageHandler): Service {
  return {
    name: 'message',
    requestTypes: [FrameType.MESSAGE],
    handle(request, exchange: Exchange) {
      const result = handler(request.payload, exchange);
      // Answer a synchronous handler in the same turn: no promise on the hot path.
      if (result instanceof Promise) {
        return result.then((reply) => exchange.reply(FrameType.MESSAGE_REPLY, toBytes(reply)));
      }
      exchange.reply(FrameType.MESSAGE_REPLY, toBytes(result));
      return undefined;
    },
  };
}
