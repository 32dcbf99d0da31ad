/**
 * `tcpkit cert`: a self-signed certificate and key for quick TLS use, made by the openssl
 * command (no hand-written ASN.1), and the fingerprint clients pin.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { access, chmod, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { TcpkitError } from '../../errors.js';
import { intArg } from '../output.js';

const run = promisify(execFile);

interface CertFlags {
  out: string;
  name: string;
  days: number;
  force?: boolean;
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

/** Adds `tcpkit cert` to `program`: writes a self-signed certificate and key with openssl, prints the fingerprint. */
export function registerCert(program: Command): void {
  program
    .command('cert')
    .summary('make a self-signed TLS certificate and key, and print its fingerprint')
    .description(
      'Make tcpkit-cert.pem and tcpkit-key.pem (an ECDSA P-256 key, mode 0600) in --out, with the openssl command, valid ' +
        'for NAME, localhost, 127.0.0.1 and ::1, and print the SHA-256 fingerprint. Serve with ' +
        '`tcpkit serve --tls-cert tcpkit-cert.pem --tls-key tcpkit-key.pem`; clients trust it with `--ca tcpkit-cert.pem` ' +
        'or `--pin FINGERPRINT`.',
    )
    .option('--out <dir>', 'directory for the two files', '.')
    .option('--name <host>', 'host name the certificate is for', 'localhost')
    .option('--days <n>', 'validity in days', intArg(1, 3650), 365)
    .option('-f, --force', 'replace existing files')
    .action(async (flags: CertFlags) => {
      const cert = path.join(flags.out, 'tcpkit-cert.pem');
      const key = path.join(flags.out, 'tcpkit-key.pem');
      if (!/^[A-Za-z0-9.-]{1,253}$/.test(flags.name)) throw new TcpkitError('INVALID_OPTION', `--name ${flags.name}: not a host name`);
      for (const file of [cert, key]) {
        if (!flags.force && (await exists(file))) throw new TcpkitError('FILE_EXISTS', `${file} exists (use --force to replace it)`);
      }
      try {
        await run('openssl', [
          'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
          '-days', String(flags.days), '-subj', `/CN=${flags.name}`,
          '-addext', `subjectAltName=DNS:${flags.name},DNS:localhost,IP:127.0.0.1,IP:::1`,
          '-keyout', key, '-out', cert,
        ]);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') throw new TcpkitError('LOCAL_FILE_ERROR', 'the openssl command is not installed (apt-get install openssl)');
        throw new TcpkitError('LOCAL_FILE_ERROR', `openssl failed: ${String((error as { stderr?: string }).stderr ?? error).trim()}`);
      }
      await chmod(key, 0o600);
      const fingerprint = new X509Certificate(await readFile(cert)).fingerprint256;
      process.stdout.write(`certificate: ${cert}\nkey:         ${key}\nsha256:      ${fingerprint}\n`);
    });
}
