/**
 * Server-side TLS: a secure context from a certificate and key, and the TLS wrapping of an
 * accepted socket. (Client-side TLS is dialing: dial.ts.)
 */
import * as tls from 'node:tls';
import type { Socket } from './dial.js';

/** A server's certificate and key, ready to serve TLS (Node's `tls.SecureContext`). */
export type SecureContext = tls.SecureContext;

/** PEM text or buffers of a server certificate and its private key. */
export interface ServerCertificate {
  cert: string | Buffer;
  key: string | Buffer;
}

/**
 * Builds the secure context of a TLS server, TLS 1.2 minimum. Throws Node's own error when the
 * certificate or key cannot be used (the option layer turns it into an OptionError).
 */
export function serverSecureContext(certificate: ServerCertificate): SecureContext {
  return tls.createSecureContext({ cert: certificate.cert, key: certificate.key, minVersion: 'TLSv1.2' });
}

/**
 * Wraps an accepted socket in a server-side TLS session. The handshake starts when the peer's
 * first bytes arrive, so it runs under whatever deadline the caller keeps on the returned stream.
 */
export function acceptTls(socket: Socket, context: SecureContext): Socket {
  return new tls.TLSSocket(socket, { isServer: true, secureContext: context });
}
