/**
 * Options of a tcpkit client, their defaults in one frozen object, validated once.
 */
import { OptionError } from '../errors.js';
import { HARD_MAX_FRAME_BYTES, HELLO_MAX_FRAME_BYTES } from '../protocol/constants.js';
import { intOption, stripUndefined } from '../util/options.js';
import { checkPort, DEFAULT_PORT, formatAddress, parseAddress } from '../transport/address.js';
import { systemClock, type Clock } from '../util/clock.js';

/** Options of {@link connect}. */
export interface ClientOptions {
  /** Server host name or address. @default '127.0.0.1' */
  host?: string;
  /** Server port. @default 7890 */
  port?: number;
  /** Time allowed for the TCP connection and the hello exchange together. @default 10000 */
  connectTimeoutMs?: number;
  /** Time allowed for each reply, unless a request says otherwise; 0 waits forever. @default 30000 */
  requestTimeoutMs?: number;
  /**
   * While replies are awaited and nothing arrives for this long, the client PINGs; no answer
   * within as long again and the connection is declared dead (CONNECTION_FAILED). 0: off. @default 10000
   */
  heartbeatMs?: number;
  /** Largest reply frame accepted from the server (a hostile server cannot make us buffer more). @default 16777216 */
  maxFrameBytes?: number;
  /**
   * Connect over TLS (1.2 minimum). `ca`: PEM of the certificate authority (or the self-signed
   * certificate) to trust instead of the system's; `pin`: the server certificate's SHA-256
   * fingerprint (hex, colons optional) — with a pin, only that certificate is accepted, whoever
   * signed it; `insecure`: accept any certificate (testing only).
   */
  tls?: { ca?: string | Buffer; pin?: string; insecure?: boolean };
  /** Token for a server that requires authentication (sent in the hello). */
  token?: string;
  /** Aborts connecting. */
  signal?: AbortSignal;
  /**
   * Time and timers of the client: request deadlines, the sweep, the heartbeat, the linger
   * after a goodbye, the hello deadline (tests inject a fake one). @default systemClock
   */
  clock?: Clock;
}

/** Defaults of {@link ClientOptions}, in one place. */
export const CLIENT_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  port: DEFAULT_PORT,
  connectTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  heartbeatMs: 10_000,
  maxFrameBytes: HARD_MAX_FRAME_BYTES,
});

/** {@link ClientOptions} merged over {@link CLIENT_DEFAULTS} and checked: what the client runs on. */
export interface ResolvedClientOptions {
  host: string;
  port: number;
  /** `host:port` for messages. */
  label: string;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  heartbeatMs: number;
  maxFrameBytes: number;
  token: string | undefined;
  tls: { ca?: string | Buffer; pin?: string; insecure?: boolean } | undefined;
  signal: AbortSignal | undefined;
  clock: Clock;
}

/** Where to connect: `"HOST[:PORT]"` or options carrying host and port. */
export type Target = string | ClientOptions;

const MAX_TIMER_MS = 2_147_483_647;

/** Merges a target and options over the defaults and checks them. */
export function resolveClientOptions(target: Target, options: ClientOptions = {}): ResolvedClientOptions {
  const fromTarget: ClientOptions = typeof target === 'string' ? parseAddress(target) : target;
  const o = { ...CLIENT_DEFAULTS, ...stripUndefined(fromTarget), ...stripUndefined(options) };
  if (typeof o.host !== 'string' || o.host.length === 0) throw new OptionError('INVALID_ADDRESS', 'host must be a non-empty string');
  const port = checkPort(o.port);
  const maxFrameBytes = intOption('maxFrameBytes', o.maxFrameBytes, HELLO_MAX_FRAME_BYTES, HARD_MAX_FRAME_BYTES);
  return {
    host: o.host,
    port,
    label: formatAddress(o.host, port),
    connectTimeoutMs: intOption('connectTimeoutMs', o.connectTimeoutMs, 1, MAX_TIMER_MS),
    requestTimeoutMs: intOption('requestTimeoutMs', o.requestTimeoutMs, 0, MAX_TIMER_MS),
    heartbeatMs: intOption('heartbeatMs', o.heartbeatMs, 0, MAX_TIMER_MS),
    maxFrameBytes,
    token: o.token,
    tls: o.tls,
    signal: o.signal,
    clock: o.clock ?? systemClock,
  };
}
