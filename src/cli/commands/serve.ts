/**
 * `tcpkit serve` (the server, echoing messages or answering a fixed text, logging each message
 * with the client's address as the tutorial's server does): its arguments, options and help.
 * The work is in actions/serve.ts, imported only when it runs.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { DEFAULT_PORT } from '../../transport/address.js';
import type { PreAuthFlag, ServeFlags } from '../actions/serve.js';
import { intArg, sizeArg } from '../output.js';

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
    .action(async (dir: string, flags: ServeFlags) => (await import('../actions/serve.js')).runServe(dir, flags));
}
