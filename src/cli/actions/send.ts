/**
 * What `tcpkit send` does: send each message, over one kept connection, one connection each
 * (`--short`) or raw, and print each reply.
 */
import { connect } from '../../client/client.js';
import type { ClientOptions } from '../../client/options.js';
import { sendOnce } from '../../client/short.js';
import { rawSend } from '../../raw/client.js';
import { safeText, clientOptions, type ClientFlags } from '../output.js';

/** The flags of `tcpkit send`, as commander parses them. */
export interface SendFlags extends ClientFlags {
  short?: boolean;
  raw?: boolean;
}

/** Sends each of `messages` to the server at `address` and prints each reply on its own line, in order. */
export async function runSend(address: string, messages: string[], flags: SendFlags): Promise<void> {
  const options: ClientOptions = clientOptions(flags);
  const print = (reply: Buffer): void => {
    process.stdout.write(`${safeText(reply)}\n`);
  };
  if (flags.raw) {
    for (const message of messages) print(await rawSend(address, message, options));
    return;
  }
  if (flags.short) {
    for (const message of messages) print(await sendOnce(address, message, options));
    return;
  }
  const client = await connect(address, options);
  try {
    const replies = messages.map((message) => client.send(message));
    // Every request is in flight at once; replies print in argument order.
    for (const reply of replies) reply.catch(() => {});
    for (const reply of replies) print(await reply);
  } finally {
    await client.close();
  }
}
