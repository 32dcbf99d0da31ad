/**
 * The programs the file suite compares tcpkit with (socat, nc, nginx, curl), GNU time, openssl
 * (for `tcpkit cert`, when the TLS rows run) and coreutils' sync (the upload row): found on the
 * PATH (or in sbin), installed with apt-get when missing, or reported missing with the reason, so
 * that the suite can skip that peer and say why.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import * as path from 'node:path';

/** Debian packages that provide each command, best first. */
const PACKAGES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  socat: ['socat'],
  nc: ['netcat-openbsd'],
  // nginx-light is gone from newer Debian releases; plain nginx has sendfile all the same.
  nginx: ['nginx-light', 'nginx'],
  curl: ['curl'],
  time: ['time'],
  // `tcpkit cert` runs it, for the TLS rows' certificate.
  openssl: ['openssl'],
  // `sync FILE DIR` (fsync of each), for the upload row's socat + sync.
  sync: ['coreutils'],
});

/** How long apt-get may take, each call. */
const APT_LIMIT_MS = 10 * 60_000;

/** Where a command lives, or undefined. Also looks in sbin, which is not on every user's PATH. */
export function findCommand(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Runs apt-get; resolves with undefined on success, or the last lines it printed. */
function aptGet(args: readonly string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn('apt-get', [...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr = (stderr + text).slice(-4096);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), APT_LIMIT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve(error.message);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve(code === 0 ? undefined : stderr.trim().split('\n').slice(-2).join(' / ') || `exit ${String(code)}`);
    });
  });
}

/** A command found, or why it is not there. */
export type Found = { path: string } | { missing: string };

/**
 * Finds each command, installing the missing ones with `apt-get install -y` (after an
 * `apt-get update` if the first attempt fails). Never throws: a command that cannot be had is
 * reported with the reason.
 */
export async function ensureCommands(names: readonly string[], progress: (line: string) => void): Promise<Map<string, Found>> {
  const found = new Map<string, Found>();
  const missing: string[] = [];
  for (const name of names) {
    const where = findCommand(name);
    if (where !== undefined) found.set(name, { path: where });
    else missing.push(name);
  }
  if (missing.length === 0) return found;
  const wanted = missing.flatMap((name) => PACKAGES[name]?.slice(0, 1) ?? []);
  const why = new Map<string, string>();
  let general: string | undefined;
  if (process.getuid?.() !== 0) {
    general = `not installed, and this is not root: apt-get install -y ${wanted.join(' ')}`;
  } else if (findCommand('apt-get') === undefined) {
    general = 'not installed, and there is no apt-get';
  } else {
    progress(`installing ${wanted.join(' ')} (apt-get)`);
    let failed = await aptGet(['install', '-y', '--no-install-recommends', ...wanted]);
    if (failed !== undefined) {
      progress(`apt-get install failed (${failed}); apt-get update, then one package at a time`);
      await aptGet(['update']);
      for (const name of missing) {
        for (const pkg of PACKAGES[name] ?? []) {
          failed = await aptGet(['install', '-y', '--no-install-recommends', pkg]);
          if (failed === undefined) break;
          why.set(name, `apt-get install ${pkg} failed: ${failed}`);
        }
      }
    }
  }
  for (const name of missing) {
    const where = findCommand(name);
    found.set(name, where !== undefined ? { path: where } : { missing: general ?? why.get(name) ?? 'still not found after apt-get install' });
  }
  return found;
}
