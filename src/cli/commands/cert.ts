/**
 * `tcpkit cert` (a self-signed certificate and key for quick TLS use, made by the openssl
 * command, no hand-written ASN.1, and the fingerprint clients pin): its options and help. The
 * work is in actions/cert.ts, imported only when it runs.
 */
import type { Command } from 'commander';
import type { CertFlags } from '../actions/cert.js';
import { intArg } from '../output.js';

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
    .action(async (flags: CertFlags) => (await import('../actions/cert.js')).runCert(flags));
}
