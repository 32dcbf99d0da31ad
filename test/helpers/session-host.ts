/**
 * A {@link SessionHost} without a server or sockets, for driving a {@link ServerSession} over an
 * in-memory duplex pair: it records what the session reports.
 */
import type { Duplex } from 'node:stream';
import { CONNECTION_ID, FrameType, preambleBytes } from '../../src/protocol/constants.js';
import { encodeServerHello } from '../../src/protocol/control.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { TokenCheck } from '../../src/server/auth.js';
import { resolveServerOptions, type ServerOptions } from '../../src/server/options.js';
import { ServerSession } from '../../src/server/session.js';
import type { SessionHost } from '../../src/server/host.js';
import { echoHandler, messageService, type MessageHandler } from '../../src/services/message.js';
import type { CloseReason } from '../../src/transport/peer.js';
import { BufferPool, BULK_BUFFER_BYTES } from '../../src/util/buffer-pool.js';

/** What a test host heard from its sessions. */
export interface HostLog {
  protocolErrors: Error[];
  authFailures: number;
  peerEnds: number;
  closed: Array<{ reason: CloseReason; error: Error | undefined }>;
}

/** A ServerSession on `stream`, served as `createServer({ ...options, onMessage })` would serve it (the message service included). */
export function memorySession(stream: Duplex, options: ServerOptions = {}, onMessage: MessageHandler = echoHandler): { session: ServerSession; log: HostLog } {
  const resolved = resolveServerOptions(options);
  const services = new Map();
  const names: string[] = [];
  for (const service of [messageService(onMessage), ...resolved.services]) {
    for (const type of service.requestTypes) services.set(type, service);
    names.push(service.name);
  }
  const log: HostLog = { protocolErrors: [], authFailures: 0, peerEnds: 0, closed: [] };
  const host: SessionHost = {
    options: resolved,
    timeouts: { handshakeMs: resolved.handshakeTimeoutMs, requestMs: resolved.requestTimeoutMs, idleMs: resolved.idleTimeoutMs, sendStallMs: resolved.sendTimeoutMs },
    services,
    continuations: new Set(),
    pieceTypes: new Set(),
    controlTypes: new Set([FrameType.PING, FrameType.PONG, FrameType.CANCEL]),
    payloads: new BufferPool(BULK_BUFFER_BYTES, 2),
    serviceNames: names,
    hello: (version) =>
      Buffer.concat([
        preambleBytes(),
        encodeFrame(
          FrameType.HELLO,
          CONNECTION_ID,
          encodeServerHello({
            version,
            agent: 'test',
            services: names,
            capabilities: [],
            limits: { maxFrameBytes: resolved.maxFrameBytes, maxInFlight: resolved.maxInFlight, idleTimeoutMs: resolved.idleTimeoutMs },
          }),
        ),
      ]),
    protocolError: (_peer, error) => log.protocolErrors.push(error),
    handlerError: () => {},
    auth: resolved.token === undefined ? undefined : new TokenCheck(resolved.token, resolved.authFailureDelayMs),
    authFailed: () => log.authFailures++,
    timedOut: () => {},
    peerEnded: () => log.peerEnds++,
    preAuthEnded: () => {},
    closed: (_session, reason, error) => log.closed.push({ reason, error }),
  };
  return { session: new ServerSession(stream, host), log };
}
