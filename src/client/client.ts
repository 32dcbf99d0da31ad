/**
 * The client: one kept (long) connection carrying many requests, pipelined, replies matched by
 * request id. The short form (one request per connection) is built on it in `short.ts`. This
 * file is the public face; the machinery is in `role.ts` and the small modules it uses.
 */
import { EventEmitter } from 'node:events';
import { abortError, ProtocolError } from '../errors.js';
import { FrameType, MAX_PING_BYTES, frameTypeName } from '../protocol/constants.js';
import type { ServerHello } from '../protocol/control.js';
import type { Frame } from '../protocol/frame.js';
import { clientInternals, registerClientInternals } from './internal.js';
import { resolveClientOptions, type ClientOptions, type ResolvedClientOptions, type Target } from './options.js';
import type { StreamConsumer } from './requests.js';
import { helloBy, openConnection, type Opened } from './opening.js';
import { ClientRole, type ClientState, type RequestOptions } from './role.js';

export type { RequestChannel, StreamConsumer } from './requests.js';
export type { ClientState, RequestOptions } from './role.js';

/** Lifecycle events of a {@link Client}. */
export interface ClientEventMap {
  /**
   * The server closed the kept connection as idle and the client opened a new one (for the next
   * request, or for requests that crossed the goodbye: `resent` of them were sent again).
   */
  reconnect: [resent: number];
  /** The server said goodbye: `IDLE_TIMEOUT` (a reconnect follows when needed), `SHUTTING_DOWN`, `NORMAL`... */
  goodbye: [code: string, message: string];
  /** The client is closed: with the error that closed it, or undefined after a clean close. */
  close: [error: Error | undefined];
}

/** Makes a Client (its constructor is private: get one with {@link connect}). */
let createClient: (opened: Opened, options: ResolvedClientOptions) => Client;

/**
 * A kept connection to a tcpkit server. Get one with {@link connect}. Its lifecycle is told by
 * events ({@link ClientEventMap}) and by {@link Client.closed}.
 * @example
 * const client = await connect('127.0.0.1:7890');
 * client.on('reconnect', () => console.error('reconnected after an idle goodbye'));
 * console.log((await client.send('hello')).toString());
 * await client.close();
 */
export class Client extends EventEmitter<ClientEventMap> {
  readonly #role: ClientRole;

  static {
    createClient = (opened, options) => new Client(opened, options);
  }

  private constructor(opened: Opened, options: ResolvedClientOptions) {
    super();
    this.#role = new ClientRole(opened, options, {
      goodbye: (code, message) => this.emit('goodbye', code, message),
      reconnect: (resent) => this.emit('reconnect', resent),
      close: (error) => this.emit('close', error),
    });
    registerClientInternals(this, this.#role);
  }

  /** What the server said in its hello: version, services, limits. */
  get server(): ServerHello {
    return this.#role.server;
  }

  /** `host:port` of the server. */
  get remote(): string {
    return this.#role.label;
  }

  /** Open, closing (no new requests) or closed. */
  get state(): ClientState {
    return this.#role.state;
  }

  /** Requests sent and not yet answered (including abandoned ones the server still works on). */
  get inFlight(): number {
    return this.#role.inFlight;
  }

  /**
   * Sends one message and resolves with the server's reply.
   * @example const reply = await client.send('hello'); console.log(reply.toString());
   */
  async send(message: string | Uint8Array, options?: RequestOptions): Promise<Buffer> {
    const payload = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
    const frame = await this.request(FrameType.MESSAGE, payload, FrameType.MESSAGE_REPLY, options);
    return frame.payload;
  }

  /** Round-trip time of a PING, in milliseconds. */
  async ping(options?: RequestOptions): Promise<number> {
    const started = process.hrtime.bigint();
    const probe = Buffer.alloc(8);
    probe.writeBigUInt64BE(started);
    const frame = await this.request(FrameType.PING, probe, FrameType.PONG, options);
    if (frame.payload.length > MAX_PING_BYTES || !frame.payload.equals(probe)) {
      throw this.#role.fail(new ProtocolError('PROTOCOL_ERROR', 'PONG does not echo the PING'));
    }
    return Number(process.hrtime.bigint() - started) / 1e6;
  }

  /**
   * Sends one request frame and resolves with its one reply frame of type `replyType`. An ERROR
   * reply rejects with a {@link RemoteError}. For service clients built on this core.
   */
  async request(type: number, payload: Uint8Array, replyType: number, options: RequestOptions = {}): Promise<Frame> {
    let reply: Frame | undefined;
    await this.stream(
      type,
      payload,
      {
        isFinal: () => true,
        frame: (frame) => {
          if (frame.type !== replyType) {
            throw new ProtocolError('PROTOCOL_ERROR', `expected ${frameTypeName(replyType)}, got ${frameTypeName(frame.type)}`);
          }
          reply = frame;
        },
      },
      options,
    );
    return reply!;
  }

  /**
   * Sends one request and feeds every frame of its reply to `consumer` until the final one; an
   * ERROR reply rejects with a {@link RemoteError}. The timeout counts from the last frame
   * received, so a long transfer that keeps making progress never times out. For service
   * clients (downloads) built on this core.
   */
  stream(type: number, payload: Uint8Array, consumer: StreamConsumer, options: RequestOptions = {}): Promise<void> {
    return this.#role.stream(type, payload, consumer, options);
  }

  /**
   * Graceful close: waits for the replies callers still await, says goodbye, and resolves once
   * the connection is closed. Requests already abandoned (timed out, aborted) are not waited
   * for: their CANCEL went out and nobody wants their answer, so once only they remain the
   * connection is closed at once (a server that stopped answering must not hold the process).
   * Rejects with the protocol error that broke the connection when no request was there to
   * report it (a hostile server's second reply after the last one awaited). Idempotent.
   */
  close(): Promise<void> {
    return this.#role.close();
  }

  /**
   * Closes at once; requests in flight reject with `error` (or CLIENT_CLOSED). Resolves once the
   * connection is closed (never rejects: {@link closed} says with what). Idempotent.
   */
  async destroy(error?: Error): Promise<void> {
    this.#role.destroy(error);
    await this.#role.closed();
  }

  /** Resolves when the connection is closed: with the error that closed it, or undefined after a clean close. */
  closed(): Promise<Error | undefined> {
    return this.#role.closed();
  }
}

/**
 * Connects to a tcpkit server and completes the hello exchange.
 * @example
 * const client = await connect('127.0.0.1:7890');
 * console.log((await client.send('hello')).toString());
 * await client.close();
 */
export async function connect(target: Target, options?: ClientOptions): Promise<Client> {
  const resolved = resolveClientOptions(target, options);
  if (resolved.signal?.aborted) throw abortError(resolved.signal);
  const deadline = resolved.clock.now() + resolved.connectTimeoutMs;
  const client = createClient(await openConnection(resolved), resolved);
  try {
    await helloBy(resolved.clock, clientInternals(client).ready, deadline, `${resolved.label} accepted the connection but sent no hello within ${resolved.connectTimeoutMs} ms`);
  } catch (error) {
    void client.destroy(error as Error);
    throw error;
  }
  return client;
}
