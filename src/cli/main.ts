#!/usr/bin/env node
/**
 * The tcpkit command: a thin table of subcommands over the library.
 */
import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import { registerCert } from './commands/cert.js';
import { registerConnect } from './commands/connect.js';
import { registerGet, registerLs } from './commands/get.js';
import { registerPut } from './commands/put.js';
import { registerSend } from './commands/send.js';
import { registerServe } from './commands/serve.js';
import { errorLine, exitCodeFor, ExitCode } from './output.js';

/** Every subcommand, in the order `--help` lists them. */
const COMMANDS: ReadonlyArray<(program: Command) => void> = [registerServe, registerSend, registerConnect, registerGet, registerLs, registerPut, registerCert];

const EPILOG = `
Addresses are HOST[:PORT]; the port is 7890 when omitted. IPv6: [ADDR]:PORT.
Exit codes: 0 ok, 1 the request failed (the server answered with an error), 2 bad command line,
3 could not connect, 4 connection lost or reply timed out, 130 interrupted.`;

function buildProgram(): Command {
  const program = new Command('tcpkit')
    .description('TCP toolkit: a server for messages and files, and its clients, over one framed protocol, long or short connections.')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EPILOG)
    .exitOverride();
  for (const register of COMMANDS) register(program);
  for (const command of program.commands) command.exitOverride().showHelpAfterError('(run with --help for usage)');
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  if (argv.length <= 2) {
    program.outputHelp();
    return ExitCode.USAGE;
  }
  try {
    await program.parseAsync(argv);
    // A command that finished with partial failures (e.g. one file of several) set its code.
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed the message (or the help / version).
      return error.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    }
    process.stderr.write(`${errorLine(error)}\n`);
    return exitCodeFor(error);
  }
}

process.exitCode = await main(process.argv);
