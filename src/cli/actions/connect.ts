/**
 * What `tcpkit connect` does: ask for the address when none was given, then send each line of
 * standard input over one kept connection and print each reply.
 */
import { createInterface } from 'node:readline';
import { connect } from '../../client/client.js';
import { OptionError } from '../../errors.js';
import { DEFAULT_PORT, formatAddress, parseAddress } from '../../transport/address.js';
import { safeText, clientOptions, type ClientFlags } from '../output.js';

/** Sends each line of standard input to the server at `address` (asked for when undefined) and prints each reply. */
export async function runConnect(address: string | undefined, flags: ClientFlags): Promise<void> {
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
}
