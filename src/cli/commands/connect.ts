/**
 * `tcpkit connect`: interactive. Every line typed is sent as a message and its reply printed,
 * until end of input. With no address it asks for the server's ip and port, as the tutorial's
 * client does.
 */
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { connect } from '../../client/client.js';
import { OptionError } from '../../errors.js';
import { DEFAULT_PORT, formatAddress, parseAddress } from '../../transport/address.js';
import { safeText, clientCommand, clientOptions, type ClientFlags } from '../output.js';

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
    .action(async (address: string | undefined, flags: ClientFlags) => {
      const interactive = process.stdin.isTTY === true;
      const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: interactive });
      const lines = rl[Symbol.asyncIterator]();
      const ask = async (question: string): Promise<string | undefined> => {
        if (interactive) process.stderr.write(question);
        const next = await lines.next();
        return next.done ? undefined : next.value;
      };
      try {
        let target = address;
        if (target === undefined) {
          const ip = (await ask('server ip: '))?.trim();
          if (!ip) throw new OptionError('INVALID_ADDRESS', 'no server ip given');
          const portText = (await ask(`server port [${DEFAULT_PORT}]: `))?.trim();
          const port = portText ? parseAddress(`x:${portText}`).port : DEFAULT_PORT;
          target = formatAddress(parseAddress(ip).host, port);
        }
        const client = await connect(target, clientOptions(flags));
        if (interactive) process.stderr.write(`connected to ${client.remote}; type a message, Ctrl-D to end\n`);
        try {
          for (;;) {
            const line = await ask('> ');
            if (line === undefined) break;
            const reply = await client.send(line);
            process.stdout.write(`${safeText(reply)}\n`);
          }
        } finally {
          await client.close();
        }
      } finally {
        rl.close();
      }
    });
}
