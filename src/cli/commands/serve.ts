/**
 * `tcpkit serve`: the server, echoing messages or answering a fixed text, logging each message
 * with the client's address as the tutorial's server does.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
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
import { DEFAULT_PORT, formatAddress } from '../../transport/address.js';
import type { CloseReason } from '../../transport/peer.js';
import { VERSION } from '../../version.js';
import { ExitCode, intArg, safeText, sizeArg, tokenOption } from '../output.js';

interface ServeFlags {
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

/** `--max-pre-auth FULL` or `START:RATE:FULL` (OpenSSH's MaxStartups), as given. */
interface PreAuthFlag {
  full: number;
  /** Absent: the library's default (half of full, 30%). */
  start?: number;
  rate?: number;
  text: string;
}

const MAX_COUNT = 10_000_000;

/** Parses `--max-pre-auth`: `FULL`, or `START:RATE:FULL` as sshd's MaxStartups. */
function preAuthArg(value: string): PreAuthFlag {
  const match = /^(\d+)(?::(\d+):(\d+))?$/.exec(value);
  if (match === null) throw new InvalidArgumentError(`expected FULL or START:RATE:FULL (e.g. 256 or 128:30:256), got "${value}"`);
  if (match[2] === undefined) {
    const full = Number(match[1]);
    if (full > MAX_COUNT) throw new InvalidArgumentError(`expected a number from 0 to ${MAX_COUNT}`);
    return { full, text: value };
  }
  const [start, rate, full] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (full > MAX_COUNT) throw new InvalidArgumentError(`FULL must be from 0 to ${MAX_COUNT}`);
  if (rate > 100) throw new InvalidArgumentError(`RATE is a percentage (0 to 100), got ${rate}`);
  if (start > full) throw new InvalidArgumentError(`START (${start}) must not exceed FULL (${full})`);
  return { full, start, rate, text: value };
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

/** Adds `tcpkit serve` to `program`: runs a server (messages, files from DIR, uploads when allowed) until stopped. */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .summary('run the server: messages, files from DIR, and uploads when allowed')
    .description(
      'Run a tcpkit server. It serves the files under DIR (the current directory by default), read-only: ' +
        'names resolve inside DIR only; hidden files, links leading outside and files with several hard links ' +
        '(unless --allow-hard-links) are refused, and logged. A DIR (or upload directory) ' +
        'that every user may write to is refused. Uploads (`tcpkit put`) are off unless --writable (into DIR) or ' +
        '--upload-dir; an upload is kept only once its size and digest check out, never replaces a file unless ' +
        '--allow-overwrite and the client asks, and a failed one leaves nothing behind. ' +
        'Every client is served on its own connection, concurrently; each message ' +
        'is answered with itself (echo), or with --reply TEXT. Each message is printed on stdout with the ' +
        "client's address; connections and disconnections are logged on stderr. The first line on stdout " +
        'is always "listening on HOST:PORT" with the real port. Raw clients (no framing: the tutorial\'s Python programs, ' +
        'netcat) are told apart by their first byte on the same port: by default a raw request is a file name, ended by a ' +
        'newline, by the client half-closing, or by 200 ms of quiet; the whole file is sent and the connection closed, and a ' +
        'missing or refused file is closed with no data. Raw mode has no integrity check, no resume and no error codes. ' +
        'Governance: connection caps counted at accept (refusals are explicit: TOO_MANY_CONNECTIONS), and a finite deadline ' +
        'for each phase (handshake, request, idle, send); every refusal and timeout is logged with the client address. Ctrl-C (or SIGTERM) stops taking new ' +
        'clients, lets requests in flight finish, and exits 0; a second Ctrl-C exits at once.',
    )
    .argument('[dir]', 'directory whose files are served, read-only', '.')
    .option('--host <host>', 'interface to bind (default: all interfaces)')
    .option('-p, --port <port>', 'port to listen on; 0 picks a free port', intArg(0, 65535), DEFAULT_PORT)
    .option('--backlog <n>', 'listen backlog: connections the kernel holds before they are accepted', intArg(1, 65535), 128)
    .option('--reply <text>', 'answer every message with this text instead of echoing it')
    .option('--max-conns <n>', 'connections held at once; more are refused with TOO_MANY_CONNECTIONS (0: no cap)', intArg(0, 10_000_000), 1024)
    .option('--max-conns-per-ip <n>', 'connections held at once per client address (0: no cap)', intArg(0, 10_000_000), 64)
    .addOption(
      new Option(
        '--max-pre-auth <start:rate:full>',
        'connections still in their hello (TLS, token) at once, as sshd\'s MaxStartups: from START on, a new one is refused ' +
          'at random, RATE% of them at START rising to all at FULL, so that an attacker holding many slots cannot shut ' +
          'everyone out; a single number is FULL (START is then half of it, RATE 30); START = FULL: no random drop; 0: no cap',
      )
        .argParser(preAuthArg)
        .default(preAuthArg('128:30:256'), '128:30:256'),
    )
    .option('--max-pre-auth-per-ip <n>', 'connections still in their hello at once per client address (0: no cap)', intArg(0, MAX_COUNT), 64)
    .option('--tls-cert <file>', 'serve over TLS with this certificate (PEM); every client must then use TLS (see `tcpkit cert`)')
    .option('--tls-key <file>', 'the private key of --tls-cert (PEM)')
    .option('--token <token>', 'require this token from every client (default: $TCPKIT_TOKEN; the environment keeps it out of `ps`); raw clients are then refused')
    .option('--allow <cidr>', 'serve only clients in this network (e.g. 10.0.0.0/8, ::1); repeatable', (value: string, list: string[]) => [...list, value], [] as string[])
    .option('--deny <cidr>', 'refuse clients in this network, before reading a byte; repeatable', (value: string, list: string[]) => [...list, value], [] as string[])
    .option('--idle-timeout <ms>', 'close connections with nothing in flight and no traffic for this long (goodbye IDLE_TIMEOUT)', intArg(1, 86_400_000), 60_000)
    .option('--handshake-timeout <ms>', 'close connections that have not completed their hello (or raw request) by then', intArg(1, 86_400_000), 10_000)
    .option('--request-timeout <ms>', 'a frame must arrive whole this long after its first byte (slowloris guard)', intArg(1, 86_400_000), 10_000)
    .option('--send-timeout <ms>', 'reset a client that reads nothing of what we send for this long (a slow reader is never cut)', intArg(1, 86_400_000), 30_000)
    .option('--drain-timeout <ms>', 'on shutdown, how long requests in flight may take to finish', intArg(0, 86_400_000), 30_000)
    .option('--writable', 'accept uploads (`tcpkit put`) into DIR; off by default')
    .option('--upload-dir <dir>', 'accept uploads into this directory instead (it need not be served)')
    .option('--max-upload-size <size>', 'largest file accepted per upload, e.g. 500MB, 2GB (default 1GB); counted as bytes arrive', sizeArg)
    .option('--max-uploads <n>', 'uploads received at once, over all clients; more are answered BUSY (default 64)', intArg(1, 1_000_000))
    .option('--allow-overwrite', 'let a client that asks (put --overwrite) replace an existing file')
    .option('--allow-hard-links', 'serve files that have more than one hard link (refused by default: another name of the file may lie outside DIR)')
    .option('--raw-messages', 'raw clients (no framing, e.g. the tutorial\'s tcp_client.py or netcat) send a message and get the reply, instead of a file name and the file')
    .option('--no-raw', 'refuse raw clients (close without a byte); only tcpkit clients are served')
    .option('-q, --quiet', 'print only the "listening on" line')
    .action(async (dir: string, flags: ServeFlags) => {
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
    });
}
