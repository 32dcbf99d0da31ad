/**
 * Finding (or installing) the system tools some tests need, so that a test group can be skipped
 * with a plain reason instead of failing on a machine that lacks them. Every call is bounded.
 */
import { execFile } from 'node:child_process';

/** What {@link probe} saw: `ok` when the command exited 0; its stdout and stderr together. */
export interface ProbeResult {
  ok: boolean;
  output: string;
  error: string;
}

/** Runs a command to completion, bounded by `timeoutMs`; never throws. */
export function probe(command: string, args: string[], timeoutMs = 10_000): Promise<ProbeResult> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }, (error, stdout, stderr) => {
      resolve({ ok: error === null, output: `${stdout}${stderr}`, error: error?.message ?? '' });
    });
  });
}

/**
 * `apt-get install -y PKG`, only as root and only where apt-get exists, with an `apt-get update`
 * first if the install fails (a fresh CI machine has no package lists). Resolves undefined once
 * installed, or with the reason it was not.
 */
export async function aptInstall(pkg: string): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root, so apt-get was not tried';
  if (!(await probe('apt-get', ['--version'])).ok) return 'apt-get not available';
  const deadline = Date.now() + 300_000;
  const left = (): number => Math.max(1000, deadline - Date.now());
  // Two test files may install at once: wait for the other's dpkg lock rather than fail on it.
  const install = ['-o', 'DPkg::Lock::Timeout=120', 'install', '-y', '--no-install-recommends', pkg];
  if ((await probe('apt-get', install, left())).ok) return undefined;
  await probe('apt-get', ['-o', 'DPkg::Lock::Timeout=120', 'update'], left());
  const second = await probe('apt-get', install, left());
  return second.ok ? undefined : `apt-get install ${pkg} failed: ${second.output.trim().split('\n').at(-1) || second.error}`;
}
