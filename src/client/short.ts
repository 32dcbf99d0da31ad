/**
 * Short connections: one request on a fresh connection, then close. Built on the kept-connection
 * core, never a second implementation.
 */
import { connect, type Client, type RequestOptions } from './client.js';
import type { ClientOptions, Target } from './options.js';

/**
 * Connects, runs `work` with the client, and closes the connection whatever happens.
 * @example const n = await withClient('127.0.0.1', (c) => c.ping());
 */
export async function withClient<T>(target: Target, work: (client: Client) => Promise<T>, options?: ClientOptions): Promise<T> {
  const client = await connect(target, options);
  let result: T;
  try {
    result = await work(client);
  } catch (error) {
    // The work's own error is the one to report; a broken connection closes at once.
    await client.close().catch(() => {});
    throw error;
  }
  // After a success, close() may still report a protocol error (a reply nobody asked for).
  await client.close();
  return result;
}

/**
 * Sends one message over a connection of its own (a short connection) and returns the reply.
 * @example const reply = await sendOnce('127.0.0.1:7890', 'hello');
 */
export function sendOnce(target: Target, message: string | Uint8Array, options?: ClientOptions & RequestOptions): Promise<Buffer> {
  const request: RequestOptions = {};
  if (options?.timeoutMs !== undefined) request.timeoutMs = options.timeoutMs;
  if (options?.signal !== undefined) request.signal = options.signal;
  return withClient(target, (client) => client.send(message, request), options);
}
