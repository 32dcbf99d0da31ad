/**
 * Options of a tcpkit server, their defaults in one frozen object, validated once.
 */
import { OptionError } from '../errors.js';
import { intOption, stripUndefined } from '../util/options.js';
import { AccessList } from './access.js';
import { DEFAULT_MAX_FRAME_BYTES, HARD_MAX_FRAME_BYTES, HELLO_MAX_FRAME_BYTES } from '../protocol/constants.js';
import type { RawHandler } from '../raw/handler.js';
import type { Service } from './service.js';
import { checkPort, DEFAULT_PORT } from '../transport/address.js';
import { serverSecureContext, type SecureContext, type ServerCertificate } from '../transport/tls.js';
import { systemClock, type Clock } from '../util/clock.js';

/**
 * Options of a {@link Server}. Every timeout is finite. (The package root's `createServer` adds
 * `onMessage`: the message service.)
 */
export interface ServerOptions {
  /** Interface to bind. @default undefined: all interfaces (IPv6 and IPv4 where the host has both) */
  host?: string;
  /** Port to bind; 0 picks a free one. @default 7890 */
  port?: number;
  /** Listen backlog (connections the kernel holds before they are accepted). @default 128 */
  backlog?: number;
  /**
   * The services (request families) served, in the order the HELLO lists them; a server serves
   * exactly these. Their frame types must lie in the service ranges of docs/PROTOCOL.md §5 and
   * not collide. @default []
   */
  services?: Service[];
  /**
   * Serves raw clients (no framing; told apart by their first byte), e.g. with
   * `rawFileHandler(root)` or `rawMessageHandler(onMessage)`. @default undefined: raw clients are
   * closed without a byte
   */
  raw?: RawHandler;
  /** Largest frame payload accepted after the hello; announced to clients. @default 1048576 (1 MiB) */
  maxFrameBytes?: number;
  /**
   * Connections held at once, counted at accept; over it a client is refused with
   * TOO_MANY_CONNECTIONS (a raw client: closed with no data). 0: no cap. @default 1024
   */
  maxConnections?: number;
  /** Connections held at once per client address (IPv4-mapped IPv6 counts as IPv4). 0: no cap. @default 64 */
  maxConnectionsPerIp?: number;
  /**
   * Connections held at once that have not completed their hello yet (TLS handshake, token,
   * raw request included): a flood of connections that never speak is refused early, while
   * clients already in are served. The `full` of OpenSSH's MaxStartups start:rate:full: from
   * {@link preAuthDropStart} on, new ones are refused at random, and at this many always.
   * 0: no cap and no random drop. @default 256
   */
  maxPreAuth?: number;
  /**
   * Random early drop (sshd's `start`): while this many connections or more are in their hello,
   * a new one is refused with a chance of {@link preAuthDropRate}% here, rising linearly to 100%
   * at {@link maxPreAuth}. An attacker who holds many slots then cannot shut everyone out: a
   * legitimate client still gets in with a fair chance. From 0 to maxPreAuth; equal to
   * maxPreAuth: no random drop. @default half of maxPreAuth (rounded down)
   */
  preAuthDropStart?: number;
  /** Percent of new connections refused at {@link preAuthDropStart} (sshd's `rate`), 0 to 100. @default 30 */
  preAuthDropRate?: number;
  /**
   * Connections still in their hello per client address (IPv4-mapped IPv6 counts as IPv4), so
   * one address cannot take every pre-auth slot, even where maxConnectionsPerIp is raised for
   * clients that keep many connections. 0: no cap. @default 64
   */
  maxPreAuthPerIp?: number;
  /** Uniform random numbers in [0, 1) for the random early drop; for tests. @default Math.random */
  random?: () => number;
  /**
   * Serve over TLS (Node's `tls`, TLS 1.2 minimum): every connection must then complete a TLS
   * handshake (within the handshake deadline) before anything else; plaintext and raw clients
   * are refused. PEM text or buffers. @default undefined (plain TCP)
   */
  tls?: ServerCertificate;
  /**
   * Clients must present this token in their hello (compared in constant time); others get
   * AUTH_FAILED. Raw clients are then refused entirely. @default undefined (no authentication)
   */
  token?: string;
  /** First delay before answering a failed authentication; it doubles per failure from the same address, up to 5 s. @default 100 */
  authFailureDelayMs?: number;
  /** Only clients whose address matches one of these (CIDR or single address, IPv4/IPv6) are served. @default [] (everyone) */
  allow?: string[];
  /** Clients whose address matches one of these are refused, even if allowed. @default [] */
  deny?: string[];
  /** Requests served at once on one connection; the rest wait unread (TCP backpressure). @default 16 */
  maxInFlight?: number;
  /** A connection that has not completed its hello (or raw request) by then is closed without a byte. @default 10000 */
  handshakeTimeoutMs?: number;
  /**
   * A frame must be complete this long after its first byte arrived; trickling cannot extend
   * it (slowloris). The client gets ERROR TIMEOUT and the connection closes. @default 10000
   */
  requestTimeoutMs?: number;
  /**
   * A connection with nothing in flight and no traffic for this long gets GOODBYE IDLE_TIMEOUT
   * and is closed; a transfer in progress is never idle. @default 60000
   */
  idleTimeoutMs?: number;
  /**
   * While the client does not read what we send, the queued bytes must shrink at least once in
   * this long, or the connection is reset; a slow reader that keeps reading is never cut. @default 30000
   */
  sendTimeoutMs?: number;
  /** On close(), connections still busy after this long are destroyed. @default 30000 */
  drainTimeoutMs?: number;
  /** After the server ends a connection, the peer has this long to close its side. @default 5000 */
  lingerTimeoutMs?: number;
  /**
   * Time and timers of every deadline (the phase deadlines, linger, the auth-failure delay, the
   * shutdown's drain deadline); tests pass a fake one. @default systemClock
   */
  clock?: Clock;
}

/** Defaults of {@link ServerOptions}, in one place. */
export const SERVER_DEFAULTS = Object.freeze({
  host: undefined as string | undefined,
  port: DEFAULT_PORT,
  backlog: 128,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  maxInFlight: 16,
  maxConnections: 1024,
  maxConnectionsPerIp: 64,
  maxPreAuth: 256,
  preAuthDropRate: 30,
  maxPreAuthPerIp: 64,
  handshakeTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  sendTimeoutMs: 30_000,
  drainTimeoutMs: 30_000,
  lingerTimeoutMs: 5_000,
});

/** Options after defaults and validation. */
export interface ResolvedServerOptions {
  host: string | undefined;
  port: number;
  backlog: number;
  services: Service[];
  raw: RawHandler | undefined;
  maxFrameBytes: number;
  maxInFlight: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  maxPreAuth: number;
  preAuthDropStart: number;
  preAuthDropRate: number;
  maxPreAuthPerIp: number;
  random: () => number;
  access: AccessList;
  tls: SecureContext | undefined;
  token: string | undefined;
  authFailureDelayMs: number;
  handshakeTimeoutMs: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  sendTimeoutMs: number;
  drainTimeoutMs: number;
  lingerTimeoutMs: number;
  clock: Clock;
}

const MAX_TIMEOUT_MS = 24 * 3600 * 1000;

function secureContext(options: ServerOptions['tls']): SecureContext | undefined {
  if (options === undefined) return undefined;
  try {
    return serverSecureContext(options);
  } catch (error) {
    throw new OptionError('INVALID_OPTION', `tls: cannot use this certificate and key: ${(error as Error).message}`);
  }
}

function checkToken(token: unknown): string | undefined {
  if (token === undefined) return undefined;
  if (typeof token !== 'string' || token.length < 8 || token.length > 4096) {
    throw new OptionError('INVALID_OPTION', 'token must be a string of 8 to 4096 characters');
  }
  return token;
}

/** Applies defaults and checks every option, naming the bad one. */
export function resolveServerOptions(options: ServerOptions = {}): ResolvedServerOptions {
  const o = { ...SERVER_DEFAULTS, ...stripUndefined(options) };
  if (o.host !== undefined && (typeof o.host !== 'string' || o.host.length === 0)) {
    throw new OptionError('INVALID_OPTION', 'host must be a non-empty string');
  }
  if ((options as { onMessage?: unknown }).onMessage !== undefined) {
    // A Server serves only its `services`: a handler given here would be silently ignored.
    throw new OptionError('INVALID_OPTION', 'onMessage: a Server serves only its services; use createServer() from the package root, or add messageService(onMessage) to services');
  }
  if (o.random !== undefined && typeof o.random !== 'function') {
    throw new OptionError('INVALID_OPTION', 'random must be a function returning numbers in [0, 1)');
  }
  const clock = o.clock ?? systemClock;
  if (typeof clock !== 'object' || clock === null || typeof clock.now !== 'function' || typeof clock.setTimeout !== 'function' || typeof clock.clearTimeout !== 'function') {
    throw new OptionError('INVALID_OPTION', 'clock must have now(), setTimeout() and clearTimeout()');
  }
  const maxPreAuth = intOption('maxPreAuth', o.maxPreAuth, 0, 10_000_000);
  const preAuthDropStart =
    o.preAuthDropStart === undefined ? Math.floor(maxPreAuth / 2) : intOption('preAuthDropStart', o.preAuthDropStart, 0, 10_000_000);
  if (maxPreAuth > 0 && preAuthDropStart > maxPreAuth) {
    throw new OptionError('INVALID_OPTION', `preAuthDropStart must not exceed maxPreAuth (${maxPreAuth}), got ${preAuthDropStart}`);
  }
  return {
    host: o.host,
    port: checkPort(o.port, true),
    backlog: intOption('backlog', o.backlog, 1, 65535),
    services: [...(o.services ?? [])],
    raw: o.raw,
    maxFrameBytes: intOption('maxFrameBytes', o.maxFrameBytes, HELLO_MAX_FRAME_BYTES, HARD_MAX_FRAME_BYTES),
    maxInFlight: intOption('maxInFlight', o.maxInFlight, 1, 4096),
    maxConnections: intOption('maxConnections', o.maxConnections, 0, 10_000_000),
    maxConnectionsPerIp: intOption('maxConnectionsPerIp', o.maxConnectionsPerIp, 0, 10_000_000),
    maxPreAuth,
    preAuthDropStart,
    preAuthDropRate: intOption('preAuthDropRate', o.preAuthDropRate, 0, 100),
    maxPreAuthPerIp: intOption('maxPreAuthPerIp', o.maxPreAuthPerIp, 0, 10_000_000),
    random: o.random ?? Math.random,
    access: new AccessList(o.allow ?? [], o.deny ?? []),
    tls: secureContext(o.tls),
    token: checkToken(o.token),
    authFailureDelayMs: intOption('authFailureDelayMs', o.authFailureDelayMs ?? 100, 0, 60_000),
    handshakeTimeoutMs: intOption('handshakeTimeoutMs', o.handshakeTimeoutMs, 1, MAX_TIMEOUT_MS),
    requestTimeoutMs: intOption('requestTimeoutMs', o.requestTimeoutMs, 1, MAX_TIMEOUT_MS),
    idleTimeoutMs: intOption('idleTimeoutMs', o.idleTimeoutMs, 1, MAX_TIMEOUT_MS),
    sendTimeoutMs: intOption('sendTimeoutMs', o.sendTimeoutMs, 1, MAX_TIMEOUT_MS),
    drainTimeoutMs: intOption('drainTimeoutMs', o.drainTimeoutMs, 0, MAX_TIMEOUT_MS),
    lingerTimeoutMs: intOption('lingerTimeoutMs', o.lingerTimeoutMs, 1, MAX_TIMEOUT_MS),
    clock,
  };
}
