/**
 * `tcpkit send` (each argument is one message; each reply is printed on its own line): its
 * arguments, options and help. The work is in actions/send.ts, imported only when it runs.
 */
import type { Command } from 'commander';
import { DEFAULT_PORT } from '../../transport/address.js';
import type { SendFlags } from '../actions/send.js';
import { clientCommand } from '../output.js';

/** Adds `tcpkit send` to `program`: one message per argument, over one kept connection or (`--short`) one each. */
export function registerSend(program: Command): void {
  clientCommand(program.command('send'), 'how long to wait for each reply')
    .summary('send messages and print the replies')
    .description(
      `Send each MESSAGE to the server at HOST[:PORT] (port ${DEFAULT_PORT} by default) and print each reply\n` +
        'on its own line, in order. By default all messages travel over one kept (long) connection, ' +
        'pipelined; --short opens a new connection for each message. Control characters in replies are ' +
        'printed escaped (\\n, \\x1b, ...), so every reply stays on one line and cannot drive the terminal.',
    )
    .argument('<address>', 'HOST[:PORT] of the server')
    .argument('<message...>', 'messages to send, one per argument')
    .option('--short', 'one connection per message (short connections)')
    .option('--raw', "talk to a server that speaks no framing (e.g. the tutorial's tcp_server.py): each message on its own connection, the reply is everything the server sends until it closes")
    .action(async (address: string, messages: string[], flags: SendFlags) => (await import('../actions/send.js')).runSend(address, messages, flags));
}
