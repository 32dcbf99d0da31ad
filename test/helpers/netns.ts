/**
 * A private network namespace for fault-injection tests (RELIABILITY.md §3.1–3.2): its own
 * loopback, where nftables rules (reset or black-hole a connection after N bytes) and a tc `tbf`
 * rate limit cannot disturb the host or the other tests. The built CLI runs inside it through
 * `nsenter`, which execs it: the child's pid is the CLI's own, so `kill -9` hits the server.
 *
 * The namespace is held by `unshare --net cat` reading a pipe from this process: it goes away
 * when {@link Netns.close} ends that pipe, and also when the test runner dies (EOF), so a failed
 * or killed run leaves nothing behind (no `ip netns` mount to remove).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readlink } from 'node:fs/promises';
import { runCli, startCli, type CliResult, type RunningCli } from './cli.js';
import { aptInstall, probe } from './system.js';

/** The nftables table and output chain every rule of {@link Netns.rule} goes into. */
const TABLE = ['inet', 'chaos'] as const;
const CHAIN = [...TABLE, 'out'] as const;
/**
 * Put first in a rule that answers with `reject with tcp reset`: such a rule must not match a
 * reset, or it swallows the resets it (or a rule for the other direction) sends, since nft drops
 * a rejected RST, and the "reset" becomes a black hole. Drop rules leave it out: a black hole
 * swallows resets too.
 */
export const NOT_RESET = 'tcp flags & rst == 0';

/** A network namespace with its loopback up, conntrack byte accounting on, and a chain for faults. */
export interface Netns {
  /** The command prefix that runs a program inside the namespace. */
  readonly via: string[];
  /** Runs a command inside the namespace; rejects with its output if it fails. */
  exec(command: string, args: string[]): Promise<string>;
  /** `nft add rule inet chaos out RULE` (output hook: every packet of loopback passes it once). */
  rule(rule: string): Promise<void>;
  /** Removes every rule. */
  clearRules(): Promise<void>;
  /** Packets the rules' counters matched so far: proof that a fault was really injected. */
  matched(): Promise<number>;
  /** Limits loopback to `rate` (tc syntax, e.g. `16mbit`) with tbf; MTU 1500 so a 64 KiB burst passes. */
  limitRate(rate: string): Promise<void>;
  /** Removes the rate limit. */
  unlimit(): Promise<void>;
  /** `tcpkit serve` on 127.0.0.1 inside the namespace (`--port 0` unless `extra` says otherwise), once listening. */
  startServer(extra: string[]): Promise<RunningCli & { port: number }>;
  /** A `tcpkit` command inside the namespace, running until the test waits for it. */
  startCli(args: string[], cwd: string): RunningCli;
  /** A `tcpkit` command inside the namespace, waited for (bounded). */
  runCli(args: string[], options: { cwd: string; timeoutMs?: number }): Promise<CliResult>;
  /** Kills what still runs inside, and lets the namespace go. Idempotent. */
  close(): Promise<void>;
}

function spawnBounded(child: ChildProcess, what: string, ms: number): Promise<{ code: number | null; output: string }> {
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => (output += text));
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (output += text));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what}: no exit within ${ms} ms`));
    }, ms);
    child.on('error', (error) => (output += `${error.message}\n`));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Opens a namespace; rejects with the reason if this machine cannot (see {@link netnsSkipReason}). */
export async function openNetns(): Promise<Netns> {
  const holder = spawn('unshare', ['--net', 'cat'], { stdio: ['pipe', 'ignore', 'pipe'] });
  let holderErr = '';
  holder.stderr.setEncoding('utf8').on('data', (text: string) => (holderErr += text));
  const held = new Promise<void>((resolve) => holder.on('close', () => resolve()));
  let gone = false;
  void held.then(() => (gone = true));
  holder.on('error', () => {});
  const own = await readlink('/proc/self/ns/net');
  const nsPath = `/proc/${holder.pid}/ns/net`;
  // unshare execs cat once the namespace exists: until then the pid's namespace is still ours.
  for (let polls = 0; ; polls++) {
    if ((await readlink(nsPath).catch(() => own)) !== own) break;
    if (gone || polls > 2000) throw new Error(`unshare --net did not create a namespace${holderErr ? `: ${holderErr.trim()}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const via = ['nsenter', `--net=${nsPath}`, '--'];
  const children = new Set<RunningCli>();
  const track = <T extends RunningCli>(running: T): T => {
    children.add(running);
    running.child.once('close', () => children.delete(running));
    return running;
  };

  const exec = async (command: string, args: string[]): Promise<string> => {
    const child = spawn(via[0]!, [...via.slice(1), command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const { code, output } = await spawnBounded(child, `${command} ${args.join(' ')}`, 15_000);
    if (code !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${code}): ${output.trim()}`);
    return output;
  };

  const ns: Netns = {
    via,
    exec,
    rule: async (rule) => void (await exec('nft', ['add', 'rule', ...CHAIN, ...rule.split(/\s+/)])),
    clearRules: async () => void (await exec('nft', ['flush', 'chain', ...CHAIN])),
    matched: async () => {
      const listing = await exec('nft', ['list', 'chain', ...CHAIN]);
      return [...listing.matchAll(/counter packets (\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0);
    },
    limitRate: async (rate) => {
      await exec('ip', ['link', 'set', 'lo', 'mtu', '1500']);
      // RELIABILITY.md §3.2: with a burst under one packet, tbf drops everything (a hang).
      await exec('tc', ['qdisc', 'replace', 'dev', 'lo', 'root', 'tbf', 'rate', rate, 'burst', '64kb', 'latency', '200ms']);
    },
    unlimit: async () => void (await exec('tc', ['qdisc', 'del', 'dev', 'lo', 'root'])),
    startServer: async (extra) => {
      // Tracked before it is listening, so that a server that never says so is still killed.
      const server = track(startCli(['serve', '--host', '127.0.0.1', '--port', '0', ...extra], undefined, undefined, via));
      const match = await server.waitStdout(/^listening on 127\.0\.0\.1:(\d+)$/m);
      return Object.assign(server, { port: Number(match[1]) });
    },
    startCli: (args, cwd) => track(startCli(args, cwd, undefined, via)),
    runCli: (args, options) => runCli(args, { ...options, via }),
    close: async () => {
      for (const running of children) {
        running.child.kill('SIGKILL');
        await running.exit(5000).catch(() => {});
      }
      holder.stdin.end();
      await Promise.race([held, new Promise((resolve) => setTimeout(resolve, 5000))]);
      if (!gone) holder.kill('SIGKILL');
    },
  };

  try {
    await exec('ip', ['link', 'set', 'lo', 'up']);
    await exec('nft', ['add', 'table', ...TABLE]);
    await exec('nft', ['add', 'chain', ...CHAIN, '{ type filter hook output priority 0; }']);
    // A ct rule loads conntrack in this namespace, so that its sysctl exists; byte accounting
    // (for `ct reply bytes gt N`) applies to connections created after it is switched on.
    await exec('nft', ['add', 'rule', ...CHAIN, 'ct', 'state', 'invalid', 'accept']);
    await exec('sysctl', ['-qw', 'net.netfilter.nf_conntrack_acct=1']);
    await exec('nft', ['flush', 'chain', ...CHAIN]);
  } catch (error) {
    await ns.close();
    throw error;
  }
  return ns;
}

/**
 * Why fault tests that need a namespace cannot run here, or undefined when they can: checks for
 * root, unshare and nsenter, installs nftables with apt-get when it is missing, then opens a
 * trial namespace and applies a conntrack rule and a tbf qdisc in it.
 */
export async function netnsSkipReason(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `network namespaces are Linux only (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'not root: creating a network namespace and nftables rules needs root';
  for (const [tool, pkg] of [['unshare', 'util-linux'], ['nsenter', 'util-linux'], ['ip', 'iproute2'], ['tc', 'iproute2']] as const) {
    const args = tool === 'ip' || tool === 'tc' ? ['-V'] : ['--version'];
    if ((await probe(tool, args)).ok) continue;
    const failed = await aptInstall(pkg);
    if (failed !== undefined || !(await probe(tool, args)).ok) return `${tool} not found (${failed ?? `${pkg} installed, but ${tool} still not runnable`})`;
  }
  if (!(await probe('nft', ['--version'])).ok) {
    const failed = await aptInstall('nftables');
    if (failed !== undefined) return `nft not found and not installable (${failed})`;
    if (!(await probe('nft', ['--version'])).ok) return 'nftables installed, but nft still not runnable';
  }
  let ns: Netns | undefined;
  try {
    ns = await openNetns();
    await ns.rule(`${NOT_RESET} tcp dport 9 ct reply bytes gt 1000 counter reject with tcp reset`);
    await ns.clearRules();
    await ns.limitRate('16mbit');
    await ns.unlimit();
    return undefined;
  } catch (error) {
    return `cannot set up a network namespace with nftables and tbf: ${(error as Error).message}`;
  } finally {
    await ns?.close();
  }
}
