/**
 * What the CLI prints: peer text made safe for a terminal, errors as one line, exit codes.
 */
import { readFileSync } from 'node:fs';
import bytes from 'bytes';
import { InvalidArgumentError, type Command } from 'commander';
import type { ClientOptions } from '../client/options.js';
import { TcpkitError } from '../errors.js';

/** Exit codes of every command (README "Exit codes"). */
export const ExitCode = Object.freeze({
  OK: 0,
  /** The server answered with an error, or the work failed for another reason. */
  FAILED: 1,
  /** Bad command line. */
  USAGE: 2,
  /** Could not connect: nothing listening, unknown host, connect timeout, not a tcpkit server. */
  CONNECT: 3,
  /** The connection broke or a reply timed out mid-way. */
  CONNECTION_LOST: 4,
  /** Interrupted (Ctrl-C) in a client command. */
  INTERRUPTED: 130,
});

const fatalDecoder = new TextDecoder('utf-8', { fatal: true });
// C0 and C1 controls, DEL, line/paragraph separators and bidi overrides: what can move a
// terminal's cursor, change its state or disguise text (RELIABILITY.md G8, scp CVE-2019-6109).
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;

function escapeChar(ch: string): string {
  const code = ch.codePointAt(0)!;
  switch (ch) {
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    default:
      return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  }
}

/**
 * Text from a peer, safe to print on one line: control characters escaped, bytes that are not
 * UTF-8 shown as `\xNN`.
 */
export function safeText(data: Uint8Array | string): string {
  let text: string;
  if (typeof data === 'string') {
    text = data;
  } else {
    try {
      text = fatalDecoder.decode(data);
    } catch {
      let out = '';
      for (const byte of data) out += byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`;
      return out;
    }
  }
  return text.replace(UNSAFE, escapeChar);
}

/** The exit code an error deserves. */
export function exitCodeFor(error: unknown): number {
  if (!(error instanceof TcpkitError)) return ExitCode.FAILED;
  switch (error.wireCode) {
    case 'CONNECTION_REFUSED':
    case 'HOST_NOT_FOUND':
    case 'CONNECT_TIMEOUT':
    case 'NOT_TCPKIT':
    case 'UNSUPPORTED_VERSION':
    case 'TOO_MANY_CONNECTIONS':
    case 'AUTH_FAILED':
    case 'TLS_FAILED':
      return ExitCode.CONNECT;
    case 'CONNECTION_CLOSED':
    case 'CONNECTION_FAILED':
    case 'REQUEST_TIMEOUT':
    case 'PROTOCOL_ERROR':
    case 'FRAME_TOO_LARGE':
    case 'SHUTTING_DOWN':
    case 'IDLE_TIMEOUT':
      return ExitCode.CONNECTION_LOST;
    case 'INVALID_ADDRESS':
    case 'INVALID_OPTION':
      return ExitCode.USAGE;
    default:
      return ExitCode.FAILED;
  }
}

/** The error of one file among several, its message prefixed with the file (the code kept). */
export function fileError(file: string, error: unknown): unknown {
  return error instanceof TcpkitError ? new TcpkitError(error.wireCode, `${file}: ${error.message}`, { cause: error }) : error;
}

/** One line for stderr: `tcpkit: <reason>`. */
export function errorLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return `tcpkit: ${safeText(message)}`;
}

/** The token from `--token`, or from the TCPKIT_TOKEN environment variable (preferred: not visible in `ps`). */
export function tokenOption(flag: string | undefined): string | undefined {
  const token = flag ?? process.env.TCPKIT_TOKEN;
  return token === undefined || token === '' ? undefined : token;
}

/** Flags every client command takes for TLS. */
export interface TlsFlags {
  tls?: boolean;
  ca?: string;
  pin?: string;
  insecure?: boolean;
}

/**
 * Adds the options every client command shares: --tls, --ca, --pin, --insecure, --token,
 * --timeout (explained by `timeoutHelp`) and --connect-timeout. They fill {@link ClientFlags}.
 * The phases, as curl's --connect-timeout and -m: connecting (TCP, TLS, the server's hello) is
 * bounded by --connect-timeout, and also by --timeout when that is smaller (waiting for the
 * hello is waiting for the server to answer); after that, --timeout alone.
 */
export function clientCommand(command: Command, timeoutHelp: string): Command {
  return command
    .option('--tls', 'connect over TLS (1.2 minimum); the certificate must be trusted by the system, --ca or --pin')
    .option('--ca <file>', 'trust this CA (or self-signed) certificate, PEM; implies --tls')
    .option('--pin <sha256>', "accept only the server certificate with this SHA-256 fingerprint (as `tcpkit cert` prints it); implies --tls")
    .option('--insecure', 'TLS without checking the certificate: for testing only; implies --tls')
    .option('--token <token>', 'token for a server that requires one (default: $TCPKIT_TOKEN)')
    .option('--timeout <ms>', `${timeoutHelp}; also bounds connecting when smaller than --connect-timeout; 0 waits forever`, intArg(0, 2_147_483_647), 30_000)
    .option('--connect-timeout <ms>', "longest time connecting may take: TCP connect, TLS handshake and the server's hello", intArg(1, 2_147_483_647), 10_000);
}

/** The client's TLS settings from the flags, or undefined for plain TCP. */
export function tlsSettings(flags: TlsFlags): ClientOptions['tls'] {
  if (!flags.tls && flags.ca === undefined && flags.pin === undefined && !flags.insecure) return undefined;
  return {
    ...(flags.ca !== undefined && { ca: readFileSync(flags.ca) }),
    ...(flags.pin !== undefined && { pin: flags.pin }),
    ...(flags.insecure && { insecure: true }),
  };
}

/** Flags every client command has: timeouts, token, TLS. */
export interface ClientFlags extends TlsFlags {
  token?: string;
  timeout: number;
  connectTimeout: number;
}

/** The library's client options from a client command's flags. */
export function clientOptions(flags: ClientFlags): ClientOptions {
  const token = tokenOption(flags.token);
  const tls = tlsSettings(flags);
  return {
    // A user who allows 2 s for an answer does not want 10 s for the hello (see clientCommand).
    connectTimeoutMs: flags.timeout > 0 ? Math.min(flags.connectTimeout, flags.timeout) : flags.connectTimeout,
    requestTimeoutMs: flags.timeout,
    ...(token !== undefined && { token }),
    ...(tls && { tls }),
  };
}

/** Commander parser for a whole number within bounds. */
export function intArg(min: number, max: number): (value: string) => number {
  return (value: string) => {
    if (!/^[0-9]+$/.test(value)) throw new InvalidArgumentError(`expected a whole number, got "${value}"`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected a number from ${min} to ${max}`);
    return n;
  };
}

/**
 * A commander parser for sizes: bytes, or with a binary unit (`500MB`, `2G`, `1.5 GiB`; K, M, G,
 * T = 1024, 1024², ...). Stricter than `bytes.parse` alone, which reads `1G` as 1 byte.
 */
export function sizeArg(value: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])i?b?|b)?\s*$/i.exec(value);
  if (match === null) throw new InvalidArgumentError(`expected a size such as 1048576, 500MB or 2GB, got "${value}"`);
  const n = bytes.parse(`${match[1]}${match[2] ?? ''}b`);
  if (n === null || !Number.isSafeInteger(Math.floor(n))) throw new InvalidArgumentError(`"${value}" is too large`);
  return Math.floor(n);
}
