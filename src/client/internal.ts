/**
 * What service clients built on the core (downloads, uploads) need beyond the public `Client`:
 * flow control of the reads and the payload buffers. Not exported from the package.
 */
import { OptionError } from '../errors.js';
import type { Client } from './client.js';
import type { InputHold } from '../transport/read-slabs.js';

/** The plumbing of one client, for service clients. */
export interface ClientInternals {
  /** Resolves once the server's hello arrived. */
  readonly ready: Promise<void>;
  /**
   * Stops reading the socket (backpressure from a slow consumer, e.g. a disk). While paused,
   * neither the heartbeat nor the request timeouts run: the server cannot be heard.
   */
  pauseReading(): void;
  /**
   * Reads the socket again. The heartbeat and the request timeouts count afresh from now, as if
   * a frame had just arrived: only time spent reading counts against the server.
   */
  resumeReading(): void;
  /**
   * Hands back a payload buffer the service client has finished with (written to disk), so the
   * next one reuses it. Only buffers nothing else references may be given back.
   */
  releasePayload(buffer: Buffer): void;
  /**
   * Keeps the memory of a received piece (a DATA payload or part of one) from being reused until
   * the hold is released: for a piece used after its `frame` call returned (an asynchronous
   * write of it). Without a hold, a piece is valid only during that call.
   */
  holdInput(piece: Uint8Array): InputHold;
}

const internals = new WeakMap<Client, ClientInternals>();

/** Called once by each Client as it is made. */
export function registerClientInternals(client: Client, plumbing: ClientInternals): void {
  internals.set(client, plumbing);
}

/** The plumbing of `client`, for a service client built on it. */
export function clientInternals(client: Client): ClientInternals {
  const plumbing = internals.get(client);
  if (plumbing === undefined) throw new OptionError('INVALID_OPTION', 'not a tcpkit Client');
  return plumbing;
}
