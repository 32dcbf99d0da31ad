/**
 * One error base with stable codes. The wire name of a code (`NOT_FOUND`) travels in ERROR and
 * GOODBYE frames; the library code is the wire name prefixed with `TCPKIT_ERR_`. The table below
 * is the single source of truth, and `docs/PROTOCOL.md` §7 prints the same table.
 */

/** Where a code can appear: on the wire (sent by a peer) or only locally (raised by this side). */
export type CodeScope = 'wire' | 'local';

interface CodeInfo {
  readonly scope: CodeScope;
  readonly summary: string;
}

/** Every error code tcpkit knows, by wire name. Codes are never renumbered or reused. */
export const ERROR_CODES = Object.freeze({
  PROTOCOL_ERROR: { scope: 'wire', summary: 'the peer sent bytes that are not valid tcpkit protocol' },
  FRAME_TOO_LARGE: { scope: 'wire', summary: 'a frame header announced more payload than the receiver accepts' },
  UNSUPPORTED_VERSION: { scope: 'wire', summary: 'no protocol version in common' },
  UNSUPPORTED_REQUEST: { scope: 'wire', summary: 'the receiver does not serve this request type' },
  BAD_REQUEST: { scope: 'wire', summary: 'the request payload is malformed' },
  HANDLER_ERROR: { scope: 'wire', summary: "the server's handler failed while serving the request" },
  SHUTTING_DOWN: { scope: 'wire', summary: 'the server is shutting down and takes no new requests' },
  TOO_MANY_CONNECTIONS: { scope: 'wire', summary: 'a connection cap of the server is reached' },
  IDLE_TIMEOUT: { scope: 'wire', summary: 'the connection was idle too long' },
  TIMEOUT: { scope: 'wire', summary: 'a phase deadline of the server passed' },
  NOT_FOUND: { scope: 'wire', summary: 'no such file on the server' },
  INVALID_NAME: { scope: 'wire', summary: 'the name breaks the naming rules' },
  FORBIDDEN: { scope: 'wire', summary: 'the server refuses to serve this' },
  AUTH_FAILED: { scope: 'wire', summary: 'authentication failed' },
  FILE_CHANGED: { scope: 'wire', summary: 'the file changed on the server during the transfer' },
  CANCELLED: { scope: 'wire', summary: 'the request was cancelled by the client' },
  NORMAL: { scope: 'wire', summary: 'orderly goodbye, no error' },
  TOO_LARGE: { scope: 'wire', summary: "the upload is over the server's size cap" },
  NO_SPACE: { scope: 'wire', summary: 'the server has no room left to store the upload (disk full)' },
  BUSY: { scope: 'wire', summary: 'the server is serving its maximum of such requests at once; try again shortly' },
  FILE_EXISTS: { scope: 'wire', summary: 'the destination exists and overwriting was not asked for, or is not allowed' },
  DIGEST_MISMATCH: { scope: 'wire', summary: 'the received content does not match the digest its sender announced' },
  CONNECTION_REFUSED: { scope: 'local', summary: 'no server listening at the address' },
  HOST_NOT_FOUND: { scope: 'local', summary: 'the host name does not resolve' },
  CONNECT_TIMEOUT: { scope: 'local', summary: 'the connection was not established in time' },
  REQUEST_TIMEOUT: { scope: 'local', summary: 'no reply arrived in time' },
  CONNECTION_CLOSED: { scope: 'local', summary: 'the connection closed before the reply arrived' },
  CONNECTION_FAILED: { scope: 'local', summary: 'a network error ended the connection' },
  NOT_TCPKIT: { scope: 'local', summary: 'the peer does not speak the tcpkit protocol' },
  CLIENT_CLOSED: { scope: 'local', summary: 'the client was closed by its owner' },
  ABORTED: { scope: 'local', summary: 'the operation was aborted by its AbortSignal' },
  INVALID_ADDRESS: { scope: 'local', summary: 'the address is not HOST[:PORT]' },
  INVALID_OPTION: { scope: 'local', summary: 'an option has a bad value' },
  INVALID_STATE: { scope: 'local', summary: 'a method was called in a state that does not allow it (a programming error)' },
  REMOTE_ERROR: { scope: 'local', summary: 'the peer sent an error code this version does not know' },
  LOCAL_FILE_ERROR: { scope: 'local', summary: 'a local file could not be read or written' },
  TLS_FAILED: { scope: 'local', summary: "the TLS handshake failed or the server's certificate was refused" },
} satisfies Record<string, CodeInfo>);

/** The wire name of an error code, e.g. `NOT_FOUND`. */
export type ErrorCodeName = keyof typeof ERROR_CODES;
/** The library code of an error, e.g. `TCPKIT_ERR_NOT_FOUND`. */
export type ErrorCode = `TCPKIT_ERR_${ErrorCodeName}`;

/** True when `name` is a code this version knows. */
export function isErrorCodeName(name: string): name is ErrorCodeName {
  return Object.hasOwn(ERROR_CODES, name);
}

/** The base of every error tcpkit raises. `code` is stable; `message` is for people. */
export class TcpkitError extends Error {
  /** Library code, `TCPKIT_ERR_` + {@link wireCode}. */
  readonly code: ErrorCode;
  /** Name as it travels on the wire. */
  readonly wireCode: ErrorCodeName;

  /** `wireCode` picks the code (and so {@link code}); `cause` is kept as the standard `Error.cause`. */
  constructor(wireCode: ErrorCodeName, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TcpkitError';
    this.wireCode = wireCode;
    this.code = `TCPKIT_ERR_${wireCode}`;
  }
}

/** The peer broke the protocol (bad bytes, oversized frame, bad hello). The connection is unusable. */
export class ProtocolError extends TcpkitError {
  /** One of the codes that mean the peer's bytes are unusable. */
  constructor(wireCode: 'PROTOCOL_ERROR' | 'FRAME_TOO_LARGE' | 'UNSUPPORTED_VERSION' | 'NOT_TCPKIT', message: string) {
    super(wireCode, message);
    this.name = 'ProtocolError';
  }
}

/** The peer answered a request with an ERROR frame (or said goodbye with an error). */
export class RemoteError extends TcpkitError {
  /** The code exactly as the peer sent it (it may be one this version does not know). */
  readonly remoteCode: string;

  /** `remoteCode` as received; an unknown one becomes `REMOTE_ERROR` while {@link remoteCode} keeps it. */
  constructor(remoteCode: string, message: string) {
    super(isErrorCodeName(remoteCode) ? remoteCode : 'REMOTE_ERROR', message);
    this.name = 'RemoteError';
    this.remoteCode = remoteCode;
  }
}

/** A network-level failure: refused, unresolvable, timed out, closed under us. */
export class ConnectionError extends TcpkitError {
  /** One of the network-level codes; `cause` is the system error (ECONNREFUSED, ...) when there is one. */
  constructor(
    wireCode:
      | 'CONNECTION_REFUSED'
      | 'HOST_NOT_FOUND'
      | 'CONNECT_TIMEOUT'
      | 'CONNECTION_CLOSED'
      | 'CONNECTION_FAILED'
      | 'CLIENT_CLOSED'
      | 'TLS_FAILED',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(wireCode, message, options);
    this.name = 'ConnectionError';
  }
}

/** A reply did not arrive within the request timeout. */
export class TimeoutError extends TcpkitError {
  /** `REQUEST_TIMEOUT` (no reply in time) or `CONNECT_TIMEOUT` (no connection or hello in time). */
  constructor(wireCode: 'REQUEST_TIMEOUT' | 'CONNECT_TIMEOUT', message: string) {
    super(wireCode, message);
    this.name = 'TimeoutError';
  }
}

/** A caller passed a bad option or address; names the option. */
export class OptionError extends TcpkitError {
  /** `message` names the option (or the address) and what is wrong with it. */
  constructor(wireCode: 'INVALID_OPTION' | 'INVALID_ADDRESS', message: string) {
    super(wireCode, message);
    this.name = 'OptionError';
  }
}

/** The error an aborted operation rejects with: the signal's reason when it is a tcpkit error, else ABORTED. */
export function abortError(signal: AbortSignal): TcpkitError {
  const reason: unknown = signal.reason;
  if (reason instanceof TcpkitError) return reason;
  return new TcpkitError('ABORTED', 'the operation was aborted', { cause: reason });
}
