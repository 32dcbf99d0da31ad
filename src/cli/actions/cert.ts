/**
 * What `tcpkit cert` does: run openssl for a self-signed certificate and key, print the
 * fingerprint.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { access, chmod, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { TcpkitError } from '../../errors.js';

/** The flags of `tcpkit cert`, as commander parses them. */
export interface CertFlags {
  out: string;
  name: string;
  days: number;
  force?: boolean;
}

const run = promisify(execFile);

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

/** Writes the certificate and key into `flags.out` with openssl and prints where they are and the fingerprint. */
export async function runCert(flags: CertFlags): Promise<void> {
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
}
