/**
 * `tcpkit connect`: interactive. Every line typed is sent as a message and its reply printed,
 * until end of input; with no address it asks for the server's ip and port, as the tutorial's
 * client does. Its arguments, options and help; the work is in actions/connect.ts, imported
 * only when it runs.
 */
import type { Command } from 'commander';
import { DEFAULT_PORT } from '../../transport/address.js';
import { clientCommand, type ClientFlags } from '../output.js';

/** Adds `tcpkit connect` to `program`: one kept connection, each line of standard input sent as a message. */
export function registerConnect(program: Command): void {
  clientCommand(program.command('connect'), 'how long to wait for each reply')
    .summary('interactive: send each line typed, print each reply')
    .description(
      'Open one kept connection to HOST[:PORT] and send every line read from standard input as one ' +
        'message, printing each reply on its own line, until end of input (Ctrl-D). Without an address ' +
        `it first asks for the server's ip and port (port ${DEFAULT_PORT} when left empty). Works with piped\n` +
        'input too; prompts go to stderr, replies to stdout.',
    )
    .argument('[address]', 'HOST[:PORT] of the server')
    .action(async (address: string | undefined, flags: ClientFlags) => (await import('../actions/connect.js')).runConnect(address, flags));
}
