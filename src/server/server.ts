/**
 * The tcpkit server: accepts connections, keeps their registry, routes requests to services,
 * and shuts down gracefully.
 */
import { EventEmitter } from 'node:events';
import type { ProtocolError } from '../errors.js';
import { CONNECTION_ID, FrameType, preambleBytes } from '../protocol/constants.js';
import { encodeFrame } from '../protocol/frame.js';
import { BYTE_STREAM_TYPES } from '../protocol/types.js';
import { encodeServerHello } from '../protocol/control.js';
import type { Service } from './service.js';
import { checkService } from './registry.js';
import { Listener } from '../transport/listener.js';
import type { Socket } from '../transport/dial.js';
import type { Duplex } from 'node:stream';
import { formatAddress, type HostPort } from '../transport/address.js';
import type { CloseReason, PeerInfo } from '../transport/peer.js';
import type { Expiry } from '../transport/watchdog.js';
import { resolveServerOptions, type ResolvedServerOptions, type ServerOptions } from './options.js';
import { ServerSession } from './session.js';
import type { SessionHost } from './host.js';
import type { Accepted } from './accepted.js';
import { Sniffer, type SnifferHost } from '../raw/sniffer.js';
import { Admission, PreAuthAdmission, type RefusalReason } from './admission.js';
import { MAX_PENDING_REFUSALS, Refusals } from './refusal.js';
import { TokenCheck } from './auth.js';
import { normalizeIp } from '../transport/address.js';
import { VERSION } from '../version.js';
import { bulkBuffers } from '../util/buffer-pool.js';

/** Events of a {@link Server}, each with what a log line needs. */
export interface ServerEventMap {
  /** The server is bound. */
  listening: [address: HostPort];
  /** A connection was accepted. */
  connection: [peer: PeerInfo];
  /** The client closed its sending side (EOF): noticed at once, before replies in flight finish. */
  'peer-end': [peer: PeerInfo];
  /** A connection is gone and its resources are freed. */
  disconnect: [peer: PeerInfo, reason: CloseReason, error: Error | undefined];
  /** A client broke the protocol; it was told why (when framed) and disconnected. */
  'protocol-error': [peer: PeerInfo, error: ProtocolError];
  /** A service handler threw or rejected; the client got HANDLER_ERROR. */
  'handler-error': [peer: PeerInfo, error: unknown];
  /** A raw (unframed) request was refused (`cut` false: the client got no data) or failed midway (`cut`: reset). */
  'raw-error': [peer: PeerInfo, error: unknown, cut: boolean];
  /**
   * A phase deadline passed: `handshake` (no hello in time: closed), `request` (a frame not
   * completed in time: TIMEOUT, closed), `idle` (goodbye IDLE_TIMEOUT, closed), `send-stall` (the
   * client stopped reading: reset).
   */
  timeout: [peer: PeerInfo, why: Expiry];
  /** A client gave a wrong or no token; it gets AUTH_FAILED after a delay that grows per address. */
  'auth-failed': [peer: PeerInfo];
  /** A connection was refused at accept because a cap was reached. */
  refused: [peer: { address: string; port: number; label: string }, reason: RefusalReason];
  /** close() finished: every connection is gone. */
  close: [];
}

/** Counters of {@link Server.stats}. */
export interface ServerStats {
  /** Connections open now. */
  connections: number;
  /** Connections open now, per client address (tracked when a per-address cap or list is in force). */
  connectionsPerIp: Record<string, number>;
  /** Connections open now that have not completed their hello (TLS handshake and token included). */
  preAuth: number;
  /** Of those, per client address (tracked when maxPreAuthPerIp is in force). */
  preAuthPerIp: Record<string, number>;
  /** Connections refused since start, by reason. */
  refused: Record<RefusalReason, number>;
  /** Refused connections still open, waiting for the first byte that says how to refuse them (at most 64). */
  refusing: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Requests served since start, on closed and open connections. */
  requests: number;
  bytesIn: number;
  bytesOut: number;
}

/**
 * A tcpkit server: accepts connections (plain or TLS) through a transport {@link Listener}, keeps
 * their registry, serves exactly the services of its options, and shuts down gracefully. The
 * package root's `createServer()` adds the message service; `new Server()` adds nothing.
 */
export class Server extends EventEmitter<ServerEventMap> {
  readonly #options: ResolvedServerOptions;
  readonly #services = new Map<number, Service>();
  readonly #serviceNames: string[] = [];
  readonly #continuations = new Set<number>();
  /** Every accepted connection, whatever it became (framed, raw, or still waiting for its first byte). */
  readonly #sessions = new Set<Accepted>();
  readonly #listener: Listener;
  /** What framed and raw sessions (and, with raw mode on, the first-byte choice) report to. */
  readonly #host: SessionHost & SnifferHost;
  #closing: Promise<void> | undefined;
  #accepted = 0;
  readonly #admission: Admission;
  readonly #refused: Record<RefusalReason, number> = {
    'per-ip': 0,
    total: 0,
    'pre-auth': 0,
    'pre-auth-per-ip': 0,
    'pre-auth-drop': 0,
    denied: 0,
  };
  /** Sessions that have not completed their hello. */
  readonly #preAuth: PreAuthAdmission;
  /** Refused connections, waiting to tell a tcpkit client from a raw one (bounded). */
  readonly #refusals: Refusals;
  #finished = { requests: 0, bytesIn: 0, bytesOut: 0 };
  #allClosed: (() => void) | undefined;

  /** Validates the options (OptionError names a bad one) and registers the services; call listen() to serve. */
  constructor(options: ServerOptions = {}) {
    super();
    this.#options = resolveServerOptions(options);
    this.#admission = new Admission({
      maxConnections: this.#options.maxConnections,
      maxConnectionsPerIp: this.#options.maxConnectionsPerIp,
    });
    this.#preAuth = new PreAuthAdmission({
      maxPreAuth: this.#options.maxPreAuth,
      dropStart: this.#options.preAuthDropStart,
      dropRate: this.#options.preAuthDropRate,
      maxPreAuthPerIp: this.#options.maxPreAuthPerIp,
      random: this.#options.random,
    });
    this.#refusals = new Refusals(this.#options.handshakeTimeoutMs, MAX_PENDING_REFUSALS, this.#options.clock);
    // Exactly the services given: the message service is the package root's default (create-server.ts), not the server's.
    for (const service of this.#options.services) this.#addService(service);
    this.#host = {
      options: this.#options,
      timeouts: Object.freeze({
        handshakeMs: this.#options.handshakeTimeoutMs,
        requestMs: this.#options.requestTimeoutMs,
        idleMs: this.#options.idleTimeoutMs,
        sendStallMs: this.#options.sendTimeoutMs,
      }),
      services: this.#services,
      continuations: this.#continuations,
      pieceTypes: new Set([...BYTE_STREAM_TYPES].filter((type) => this.#continuations.has(type))),
      controlTypes: new Set([FrameType.PING, FrameType.PONG, FrameType.CANCEL, ...this.#continuations]),
      payloads: bulkBuffers,
      serviceNames: this.#serviceNames,
      hello: (version, capabilities) => this.#hello(version, capabilities),
      protocolError: (peer, error) => this.emit('protocol-error', peer, error),
      handlerError: (peer, error) => this.emit('handler-error', peer, error),
      // Raw clients cannot authenticate, nor speak TLS: with a token or TLS, raw mode is off.
      raw: this.#options.token === undefined && this.#options.tls === undefined ? this.#options.raw : undefined,
      auth: this.#options.token === undefined ? undefined : new TokenCheck(this.#options.token, this.#options.authFailureDelayMs),
      authFailed: (peer) => this.emit('auth-failed', peer),
      rawError: (peer: PeerInfo, error: unknown, cut: boolean) => this.emit('raw-error', peer, error, cut),
      // The first byte of a client chose what it speaks (src/raw/sniffer.ts).
      framed: (stream: Duplex, ip: string, startedAt: number) => new ServerSession(stream, this.#host, ip, startedAt),
      chosen: (waiting: Accepted, session: Accepted) => this.#onChosen(waiting, session),
      timedOut: (peer: PeerInfo, why: Expiry) => this.emit('timeout', peer, why),
      peerEnded: (peer: PeerInfo) => this.emit('peer-end', peer),
      preAuthEnded: (session: Accepted) => this.#preAuth.leave(this.#preAuthIp(session.admittedIp)),
      closed: (session: Accepted, reason: CloseReason, error: Error | undefined) => this.#onSessionClosed(session, reason, error),
    };
    this.#listener = new Listener((socket) => this.#onSocket(socket), this.#options.tls);
  }

  /** Openings already built, by version and capabilities granted (few: one per kind of client). */
  readonly #hellos = new Map<string, Buffer>();
  /** Capabilities the services support, granted to a client that asks. */
  readonly #capabilities = new Set<string>();

  /** Preamble and HELLO frame for a negotiated version and the capabilities a client asked for: built once per server. */
  #hello(version: number, asked: readonly string[]): Buffer {
    // In the services' order, whatever the client's: at most one opening per subset.
    const granted = [...this.#capabilities].filter((capability) => asked.includes(capability));
    const key = `${version} ${granted.join(' ')}`;
    let opening = this.#hellos.get(key);
    if (opening === undefined) {
      const { maxFrameBytes, maxInFlight } = this.#options;
      const payload = encodeServerHello({
        version,
        agent: `tcpkit/${VERSION}`,
        services: [...this.#serviceNames],
        capabilities: granted,
        limits: { maxFrameBytes, maxInFlight, idleTimeoutMs: this.#options.idleTimeoutMs },
      });
      opening = Buffer.concat([preambleBytes(), encodeFrame(FrameType.HELLO, CONNECTION_ID, payload)]);
      this.#hellos.set(key, opening);
    }
    return opening;
  }

  /** Installs a service, after the checks of registry.ts (an OptionError names what is wrong). */
  #addService(service: Service): void {
    checkService(service, (type) => this.#services.has(type) || this.#continuations.has(type), this.#serviceNames);
    for (const type of service.requestTypes) this.#services.set(type, service);
    for (const type of service.continuationTypes ?? []) this.#continuations.add(type);
    for (const capability of service.capabilities ?? []) this.#capabilities.add(capability);
    this.#serviceNames.push(service.name);
  }

  /** Binds and starts accepting. Resolves with the address actually bound (the real port when 0 was asked). */
  async listen(): Promise<HostPort> {
    const { host, port, backlog } = this.#options;
    const address = await this.#listener.listen({ host, port, backlog });
    this.emit('listening', address);
    return address;
  }

  /** The bound address, or undefined before listen(). */
  address(): HostPort | undefined {
    return this.#listener.address();
  }

  /** `host:port` of the bound address, IPv6 in brackets. */
  get label(): string {
    const address = this.address();
    return address ? formatAddress(address.host, address.port) : 'not listening';
  }

  /** Number of open connections. */
  get connections(): number {
    return this.#sessions.size;
  }

  /** Counters: connections now, refusals, requests and bytes since start. */
  stats(): ServerStats {
    const totals = { ...this.#finished };
    for (const session of this.#sessions) {
      totals.requests += session.requests;
      totals.bytesIn += session.bytesIn;
      totals.bytesOut += session.bytesOut;
    }
    return {
      connections: this.#sessions.size,
      connectionsPerIp: this.#admission.perIp(),
      preAuth: this.#preAuth.total,
      preAuthPerIp: this.#preAuth.perIp(),
      refused: { ...this.#refused },
      refusing: this.#refusals.pending,
      accepted: this.#accepted,
      ...totals,
    };
  }

  /**
   * Graceful shutdown: stops accepting at once (new clients are refused by the kernel), says
   * goodbye to idle connections, lets requests in flight finish, and destroys what is left at
   * `drainTimeoutMs`. Idempotent: every call returns the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown(this.#options.drainTimeoutMs);
    return this.#closing;
  }

  /** Immediate shutdown: stops accepting and destroys every connection. */
  destroy(): Promise<void> {
    for (const session of this.#sessions) session.destroy();
    return this.close();
  }

  async #shutdown(drainTimeoutMs: number): Promise<void> {
    const listenerClosed = this.#listener.close();
    const allClosed = new Promise<void>((resolve) => {
      this.#allClosed = resolve;
      if (this.#sessions.size === 0) resolve();
    });
    for (const session of this.#sessions) session.drain();
    const clock = this.#options.clock;
    let deadline: unknown;
    const timedOut = new Promise<void>((resolve) => {
      deadline = clock.setTimeout(
        (sessions: ReadonlySet<Accepted>) => {
          for (const session of sessions) session.destroy();
          resolve();
        },
        drainTimeoutMs,
        this.#sessions,
      );
    });
    await Promise.race([allClosed, timedOut]);
    clock.clearTimeout(deadline);
    await listenerClosed;
    this.emit('close');
  }

  #onSocket(socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    this.#accepted++;
    // Caps are counted at accept, per client address (IPv4-mapped IPv6 counts as IPv4). The
    // address costs a lookup (getpeername): made only when a per-address rule needs it.
    const { access, maxConnectionsPerIp, maxPreAuthPerIp } = this.#options;
    const ip = maxConnectionsPerIp > 0 || maxPreAuthPerIp > 0 || access.active ? normalizeIp(socket.remoteAddress ?? 'unknown') : '';
    if (access.active && !access.permits(ip)) {
      // Allow/deny lists: refused before a byte is read, with no answer at all.
      this.#refused.denied++;
      socket.on('error', () => {});
      socket.destroy();
      this.#emitRefused(ip, socket.remotePort ?? 0, 'denied');
      return;
    }
    // Pre-auth rules first (per address, full, random early drop), then the connection caps; a
    // connection refused by those gives its pre-auth place back at once.
    const preAuthIp = this.#preAuthIp(ip);
    let verdict = this.#preAuth.enter(preAuthIp);
    if (verdict.admitted) {
      verdict = this.#admission.admit(ip);
      if (!verdict.admitted) this.#preAuth.leave(preAuthIp);
    }
    if (!verdict.admitted) {
      this.#refused[verdict.reason]++;
      this.#refusals.refuse(socket, 'TOO_MANY_CONNECTIONS', this.#refusalMessage(verdict.reason));
      this.#emitRefused(ip || normalizeIp(socket.remoteAddress ?? 'unknown'), socket.remotePort ?? 0, verdict.reason);
      return;
    }
    // TLS: the handshake runs under the session's handshake deadline and counts against the caps.
    const stream = this.#listener.secure(socket);
    // With raw mode on (never with a token or TLS), the first byte tells a framed client from
    // a raw one; the registry entry is replaced by the session chosen (#onChosen).
    const session: Accepted = this.#host.raw === undefined ? new ServerSession(stream, this.#host, ip) : new Sniffer(stream, this.#host, ip);
    this.#sessions.add(session);
    // Describing the peer costs a getpeername() call: only when someone will hear of it (it must
    // be looked up now, while the socket is open, for a later 'disconnect').
    if (this.listenerCount('connection') > 0) this.emit('connection', session.peer);
    else if (this.listenerCount('disconnect') > 0) void session.peer;
  }

  /** The address a session counts under in the pre-auth rules: '' when no per-address pre-auth cap is in force. */
  #preAuthIp(ip: string): string {
    return this.#options.maxPreAuthPerIp > 0 ? ip : '';
  }

  /** What a refused client is told: which cap, with its value. */
  #refusalMessage(reason: RefusalReason): string {
    const { maxConnections, maxConnectionsPerIp, maxPreAuth, maxPreAuthPerIp } = this.#options;
    switch (reason) {
      case 'total':
        return `the server holds its maximum of ${maxConnections} connections`;
      case 'per-ip':
        return `the server allows ${maxConnectionsPerIp} connections per client address`;
      case 'pre-auth':
        return `the server holds its maximum of ${maxPreAuth} connections still in their hello; try again shortly`;
      case 'pre-auth-per-ip':
        return `the server allows ${maxPreAuthPerIp} connections still in their hello per client address; try again shortly`;
      case 'denied':
        return 'this address is not served';
      case 'pre-auth-drop':
        return `the server holds many connections still in their hello (${this.#preAuth.total} of at most ${maxPreAuth}) and refuses some new ones at random; try again shortly`;
    }
  }

  #emitRefused(address: string, port: number, reason: RefusalReason): void {
    if (this.listenerCount('refused') > 0) this.emit('refused', { address, port, label: formatAddress(address, port) }, reason);
  }

  /** A connection waiting for its first byte became `session`: same admission, same slot in the registry. */
  #onChosen(waiting: Accepted, session: Accepted): void {
    if (!this.#sessions.delete(waiting)) {
      session.destroy();
      return;
    }
    this.#sessions.add(session);
    // Looked up now, while the socket is open, for a later 'disconnect' (see #onSocket).
    if (this.listenerCount('disconnect') > 0) void session.peer;
  }

  #onSessionClosed(session: Accepted, reason: CloseReason, error: Error | undefined): void {
    if (!this.#sessions.delete(session)) return;
    this.#admission.release(session.admittedIp);
    this.#finished.requests += session.requests;
    this.#finished.bytesIn += session.bytesIn;
    this.#finished.bytesOut += session.bytesOut;
    if (this.listenerCount('disconnect') > 0) this.emit('disconnect', session.peer, reason, error);
    if (this.#sessions.size === 0) this.#allClosed?.();
  }
}
