/**
 * One kept connection shared by every file of a command (`get`, `put`): opened on first use,
 * opened again after it breaks (for --retries), closed at the end only if it is open.
 */
import { connect, type Client } from '../client/client.js';
import type { ClientOptions } from '../client/options.js';

/** A lazily opened client connection that a command reuses across files, reopened after it breaks. */
export interface SharedConnection {
  /** The open connection, or a new one when there is none or it broke. */
  get(): Promise<Client>;
  /** Closes the connection gracefully if one is open; never opens one. */
  close(): Promise<void>;
}

/** A {@link SharedConnection} to `address`; nothing is dialled until the first `get()`. */
export function sharedConnection(address: string, options: ClientOptions): SharedConnection {
  let current: Promise<Client> | undefined;
  return {
    async get() {
      if (current) {
        const client = await current.catch(() => undefined);
        if (client && client.state === 'open') return client;
      }
      current = connect(address, options);
      return current;
    },
    async close() {
      const client = await current?.catch(() => undefined);
      await client?.close();
    },
  };
}
