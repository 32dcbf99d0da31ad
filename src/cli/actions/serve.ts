/**
 * What `tcpkit serve` does: open the served and upload directories, run the server with the
 * message, file and upload services, log what happens, and shut down gracefully on a signal.
 */
import { readFileSync } from 'node:fs';
import { OptionError } from '../../errors.js';
import { FileRoot } from '../../services/files/jail.js';
import { fileService } from '../../services/files/download/service.js';
import { rawFileHandler } from '../../raw/files.js';
import { messageService, type MessageHandler } from '../../services/message.js';
import { rawMessageHandler } from '../../raw/message.js';
import type { RawHandler } from '../../raw/handler.js';
import type { Service } from '../../server/service.js';
import { sweepUploads, uploadService } from '../../services/files/upload/service.js';
import { Server } from '../../server/server.js';
import { formatAddress } from '../../transport/address.js';
import type { CloseReason } from '../../transport/peer.js';
import { VERSION } from '../../version.js';
import { ExitCode, safeText, tokenOption } from '../output.js';

/** The flags of `tcpkit serve`, as commander parses them. */
export interface ServeFlags {
  host?: string;
  port: number;
  backlog: number;
  reply?: string;
  quiet?: boolean;
  drainTimeout: number;
  raw: boolean;
  rawMessages?: boolean;
  maxConns: number;
  maxConnsPerIp: number;
  maxPreAuth: PreAuthFlag;
  maxPreAuthPerIp: number;
  allow: string[];
  deny: string[];
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  idleTimeout: number;
  handshakeTimeout: number;
  requestTimeout: number;
  sendTimeout: number;
  writable?: boolean;
  uploadDir?: string;
  maxUploadSize?: number;
  maxUploads?: number;
  allowOverwrite?: boolean;
  allowHardLinks?: boolean;
}

/** `--max-pre-auth FULL` or `START:RATE:FULL` (OpenSSH's MaxStartups), as given. */
export interface PreAuthFlag {
  full: number;
  /** Absent: the library's default (half of full, 30%). */
  start?: number;
  rate?: number;
  text: string;
}

/** The upload service the flags ask for, or undefined (uploads are off by default). */
async function uploadsFrom(flags: ServeFlags, root: FileRoot, log: (line: string) => void): Promise<{ service: Service; where: string } | undefined> {
  if (flags.writable && flags.uploadDir !== undefined) throw new OptionError('INVALID_OPTION', '--writable and --upload-dir: choose one');
  if (!flags.writable && flags.uploadDir === undefined) {
    if (flags.maxUploadSize !== undefined || flags.maxUploads !== undefined || flags.allowOverwrite) {
      throw new OptionError('INVALID_OPTION', '--max-upload-size, --max-uploads and --allow-overwrite need --writable or --upload-dir');
    }
    return undefined;
  }
  const where = flags.uploadDir ?? root.realPath;
  const target = flags.uploadDir === undefined ? root : await FileRoot.open(flags.uploadDir);
  // Uploads cut short by a crash or a kill left their temporary files: nothing else will remove them.
  const swept = await sweepUploads(target);
  if (swept.removed > 0) log(`removed ${swept.removed} unfinished upload(s) left by an earlier run`);
  if (swept.truncated) log('the upload directory is large: only part of it was checked for unfinished uploads');
  const service = uploadService(target, {
    ...(flags.maxUploadSize !== undefined && { maxFileBytes: flags.maxUploadSize }),
    ...(flags.maxUploads !== undefined && { maxConcurrent: flags.maxUploads }),
    allowOverwrite: flags.allowOverwrite === true,
    onStored: (stored, peer) => log(`${peer.label} uploaded ${safeText(stored.name)} (${stored.size} bytes, ${stored.digest})`),
  });
  return { service, where };
}

const REASONS: Record<CloseReason, string> = {
  eof: 'closed by the client',
  reset: 'reset by the client',
  error: 'network error',
  local: 'closed by the server',
};

function stamp(): string {
  return new Date().toISOString();
}

/** Runs the server the flags describe, serving `dir`, until SIGINT or SIGTERM. */
export async function runServe(dir: string, flags: ServeFlags): Promise<void> {
  const { quiet = false, reply } = flags;
  const root = await FileRoot.open(dir, { allowHardLinks: flags.allowHardLinks === true });
  const token = tokenOption(flags.token);
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) {
    throw new OptionError('INVALID_OPTION', '--tls-cert and --tls-key go together');
  }
  const tls = flags.tlsCert !== undefined ? { cert: readFileSync(flags.tlsCert), key: readFileSync(flags.tlsKey!) } : undefined;
  const log = (line: string): void => {
    if (!quiet) process.stderr.write(`${stamp()} ${line}\n`);
  };
  const uploads = await uploadsFrom(flags, root, log);
  const onMessage: MessageHandler = (message, context) => {
    if (!quiet) process.stdout.write(`${context.peer.label}: ${safeText(message)}\n`);
    return reply ?? message;
  };
  const files = fileService(root, { onRefused: (peer, request, error) => log(`${peer.label} ${request} refused: ${safeText(error.message)}`) });
  let raw: RawHandler | undefined;
  if (flags.raw) {
    const inner = flags.rawMessages ? rawMessageHandler(onMessage) : rawFileHandler(root);
    raw = async (request, exchange) => {
      await inner(request, exchange);
      if (!flags.rawMessages) log(`${exchange.peer.label} raw request served: ${safeText(request)}`);
    };
  }
  const server = new Server({
    ...(flags.host !== undefined && { host: flags.host }),
    port: flags.port,
    backlog: flags.backlog,
    drainTimeoutMs: flags.drainTimeout,
    maxConnections: flags.maxConns,
    idleTimeoutMs: flags.idleTimeout,
    handshakeTimeoutMs: flags.handshakeTimeout,
    requestTimeoutMs: flags.requestTimeout,
    sendTimeoutMs: flags.sendTimeout,
    maxConnectionsPerIp: flags.maxConnsPerIp,
    maxPreAuth: flags.maxPreAuth.full,
    ...(flags.maxPreAuth.start !== undefined && { preAuthDropStart: flags.maxPreAuth.start, preAuthDropRate: flags.maxPreAuth.rate! }),
    maxPreAuthPerIp: flags.maxPreAuthPerIp,
    ...(token !== undefined && { token }),
    ...(tls && { tls }),
    allow: flags.allow,
    deny: flags.deny,
    // The message service first, as the HELLO lists it: messages, then files, then uploads.
    services: [messageService(onMessage), files, ...(uploads ? [uploads.service] : [])],
    ...(raw && { raw }),
  });
  server.on('connection', (peer) => log(`${peer.label} connected`));
  server.on('disconnect', (peer, reason, error) => {
    const detail = reason === 'error' && error ? `: ${safeText(error.message)}` : '';
    log(`${peer.label} disconnected (${REASONS[reason]}${detail})`);
  });
  server.on('protocol-error', (peer, error) => log(`${peer.label} protocol error: ${safeText(error.message)}`));
  const TIMEOUTS = {
    handshake: 'no hello in time, closed',
    request: 'a frame it began did not arrive whole within the request deadline (stalled or trickling), closed',
    idle: 'idle, said goodbye',
    'send-stall': 'stopped reading our replies, reset',
  } as const;
  server.on('auth-failed', (peer) => log(`${peer.label} authentication failed`));
  server.on('timeout', (peer, why) => log(`${peer.label} timed out: ${TIMEOUTS[why]}`));
  const CAPS = {
    total: `--max-conns ${flags.maxConns}`,
    'per-ip': `--max-conns-per-ip ${flags.maxConnsPerIp}`,
    'pre-auth': `--max-pre-auth ${flags.maxPreAuth.text}: connections still in their hello`,
    'pre-auth-per-ip': `--max-pre-auth-per-ip ${flags.maxPreAuthPerIp}: connections still in their hello from this address`,
    'pre-auth-drop': `--max-pre-auth ${flags.maxPreAuth.text}: dropped at random, many connections still in their hello`,
  } as const;
  server.on('refused', (peer, reason) =>
    log(reason === 'denied' ? `${peer.label} refused: address not allowed (--allow/--deny)` : `${peer.label} refused: too many connections (${CAPS[reason]})`),
  );
  server.on('raw-error', (peer, error, cut) => {
    const why = safeText(error instanceof Error ? error.message : String(error));
    log(`${peer.label} ${cut ? 'raw transfer failed midway, connection reset' : 'raw request refused, closed without data'}: ${why}`);
  });
  server.on('handler-error', (peer, error) => log(`${peer.label} handler failed: ${safeText(String(error))}`));

  const address = await server.listen();
  process.stdout.write(`listening on ${formatAddress(address.host, address.port)}\n`);
  const writes = uploads ? `uploads into ${safeText(uploads.where)}` : 'no uploads';
  log(`tcpkit ${VERSION} serving messages (${reply === undefined ? 'echo' : 'fixed reply'}) and the files of ${safeText(dir)} (${writes}); Ctrl-C to stop`);

  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`tcpkit: ${signal} again, exiting now\n`);
        process.exit(ExitCode.INTERRUPTED);
      }
      stopping = true;
      log(`${signal}: shutting down, finishing requests in flight (${signal === 'SIGINT' ? 'Ctrl-C' : signal} again to force)`);
      void server.close().then(() => {
        log('stopped');
        resolve();
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
