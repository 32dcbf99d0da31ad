/**
 * Accepting: the listening socket of a server (bind, backlog, the bound address, close) and the
 * TLS wrapping of an accepted socket. The one place a server socket is made.
 */
import * as net from 'node:net';
import type { HostPort } from './address.js';
import type { Socket } from './dial.js';
import { acceptTls, type SecureContext } from './tls.js';

/** Where to bind. */
export interface ListenOptions {
  /** Interface to bind; undefined: all interfaces (IPv6 and IPv4 where the host has both). */
  readonly host: string | undefined;
  /** Port to bind; 0 picks a free one. */
  readonly port: number;
  /** Connections the kernel holds before they are accepted. */
  readonly backlog: number;
}

/** Called with each accepted TCP socket (not yet wrapped in TLS: see {@link Listener.secure}). */
export type AcceptHandler = (socket: Socket) => void;

/** A listening TCP socket that hands each accepted connection to its {@link AcceptHandler}. */
export class Listener {
  readonly #net: net.Server;
  readonly #tls: SecureContext | undefined;

  /** `tls`: the context {@link secure} wraps accepted sockets with; undefined: plain TCP. */
  constructor(accept: AcceptHandler, tls?: SecureContext) {
    this.#tls = tls;
    // allowHalfOpen: a client that half-closes after its request must still get every reply
    // (Node's default would end our side at once and truncate them; RELIABILITY.md §2.7).
    this.#net = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, accept);
  }

  /** Binds and starts accepting. Resolves with the address actually bound (the real port when 0 was asked). */
  listen(options: ListenOptions): Promise<HostPort> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error): void => reject(error);
      this.#net.once('error', onError);
      this.#net.listen({ host: options.host, port: options.port, backlog: options.backlog }, () => {
        this.#net.off('error', onError);
        // Errors after bind (e.g. EMFILE on accept) must never crash the process.
        this.#net.on('error', () => {});
        resolve(this.address()!);
      });
    });
  }

  /** The bound address, or undefined before listen() (and after close()). */
  address(): HostPort | undefined {
    const info = this.#net.address();
    if (info === null || typeof info === 'string') return undefined;
    return { host: info.address, port: info.port };
  }

  /**
   * The stream a session reads and writes for an accepted socket: the socket itself, or (when
   * serving TLS) a server-side TLS session over it, whose handshake runs under the session's
   * handshake deadline and counts against the caps like any connection still in its hello.
   */
  secure(socket: Socket): Socket {
    return this.#tls === undefined ? socket : acceptTls(socket, this.#tls);
  }

  /**
   * Stops accepting at once (new clients are refused by the kernel). Resolves once the listening
   * socket is closed and every accepted connection is gone (Node's `server.close()`), also when
   * it was never bound.
   */
  close(): Promise<void> {
    return new Promise((resolve) => this.#net.close(() => resolve()));
  }
}
