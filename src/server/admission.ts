/**
 * Admission: the connection caps, counted at accept (so idle and slow connections count too),
 * and the rules for connections still in their hello (pre-auth). Pure policies: the server asks
 * and reports; these keep the counts.
 */
import { TcpkitError } from '../errors.js';

/**
 * Why a connection was refused: `total` and `per-ip` connection caps; `pre-auth` (as many
 * connections in their hello as `maxPreAuth`), `pre-auth-per-ip` (as many from this address),
 * `pre-auth-drop` (random early drop between `preAuthDropStart` and `maxPreAuth`); `denied` by
 * the allow/deny lists.
 */
export type RefusalReason = 'per-ip' | 'total' | 'pre-auth' | 'pre-auth-per-ip' | 'pre-auth-drop' | 'denied';

/** Caps of {@link Admission}; 0 means no cap. */
export interface AdmissionLimits {
  maxConnections: number;
  maxConnectionsPerIp: number;
}

/** What a policy decided about one connection: admitted, or refused and why. */
export type AdmissionVerdict = { admitted: true } | { admitted: false; reason: RefusalReason };

/**
 * Connections counted in total and per client address ('' : counted in the total only, its
 * address not looked up). Shared by both policies below.
 */
class AddressCounts {
  readonly #perIp = new Map<string, number>();
  #total = 0;

  get total(): number {
    return this.#total;
  }

  held(ip: string): number {
    return ip === '' ? 0 : (this.#perIp.get(ip) ?? 0);
  }

  add(ip: string): void {
    if (ip !== '') this.#perIp.set(ip, this.held(ip) + 1);
    this.#total++;
  }

  /** Exactly once per {@link add}, with the same `ip`; `what` names the count in the error of a bad call. */
  remove(ip: string, what: string): void {
    if (ip !== '') {
      const held = this.#perIp.get(ip);
      if (held === undefined) throw new TcpkitError('INVALID_STATE', `${what} of ${ip}, which holds no connection`);
      if (held <= 1) this.#perIp.delete(ip);
      else this.#perIp.set(ip, held - 1);
    }
    this.#total--;
  }

  perIp(): Record<string, number> {
    return Object.fromEntries(this.#perIp);
  }
}

/** The connection caps: in total and per client address, counted from accept to close. */
export class Admission {
  readonly #limits: AdmissionLimits;
  readonly #counts = new AddressCounts();

  /** Caps as resolved by the server's options (0: no cap). */
  constructor(limits: AdmissionLimits) {
    this.#limits = limits;
  }

  /**
   * Counts the connection in if a cap allows it. `ip` must be normalised (IPv4-mapped shown as
   * IPv4), or '' when no per-address cap is in force (then only the total is counted).
   */
  admit(ip: string): AdmissionVerdict {
    const { maxConnections, maxConnectionsPerIp } = this.#limits;
    if (maxConnections > 0 && this.#counts.total >= maxConnections) return { admitted: false, reason: 'total' };
    if (maxConnectionsPerIp > 0 && ip !== '' && this.#counts.held(ip) >= maxConnectionsPerIp) return { admitted: false, reason: 'per-ip' };
    this.#counts.add(ip);
    return { admitted: true };
  }

  /** An admitted connection is gone. Exactly once per admitted connection. */
  release(ip: string): void {
    this.#counts.remove(ip, 'release');
  }

  /** Connections admitted and not yet released. */
  get total(): number {
    return this.#counts.total;
  }

  /** Open connections per client address. */
  perIp(): Record<string, number> {
    return this.#counts.perIp();
  }
}

/** Rules of {@link PreAuthAdmission}; 0 means no cap. */
export interface PreAuthLimits {
  /** At this many connections in their hello, every new one is refused (sshd's `full`). 0: no cap, no drop. */
  maxPreAuth: number;
  /** From this many, new ones are refused at random (sshd's `start`); equal to maxPreAuth: no random drop. */
  dropStart: number;
  /** Percent refused at `dropStart`, rising linearly to 100 at `maxPreAuth` (sshd's `rate`). */
  dropRate: number;
  /** Connections in their hello per client address. 0: no cap. */
  maxPreAuthPerIp: number;
  /** Uniform in [0, 1), as Math.random. */
  random: () => number;
}

/**
 * Chance (0 to 1) that a new connection is refused while `held` connections are in their hello:
 * 0 below `dropStart`, `dropRate`% at it, rising linearly to 1 at `maxPreAuth` (OpenSSH's
 * MaxStartups start:rate:full).
 */
export function dropChance(held: number, limits: Pick<PreAuthLimits, 'maxPreAuth' | 'dropStart' | 'dropRate'>): number {
  const { maxPreAuth: full, dropStart: start, dropRate: rate } = limits;
  if (full === 0 || held < start) return 0;
  if (held >= full) return 1;
  return (rate + ((100 - rate) * (held - start)) / (full - start)) / 100;
}

/**
 * Connections that have not completed their hello, in total and per address. A flood of them
 * is refused early, and one address (or a few) cannot take every slot: a per-address cap, then
 * random early drop between a start and a full threshold, so that a legitimate client still
 * gets in, with a fair chance, while an attacker holds many slots.
 */
export class PreAuthAdmission {
  readonly #limits: PreAuthLimits;
  readonly #counts = new AddressCounts();

  /** Caps and drop thresholds as resolved by the server's options; `random` is injectable for tests. */
  constructor(limits: PreAuthLimits) {
    this.#limits = limits;
  }

  /**
   * Counts a new connection in its hello if the rules allow it. `ip` is normalised, or '' when
   * no per-address cap is in force. Draws one random number when in the random-drop range.
   */
  enter(ip: string): AdmissionVerdict {
    const { maxPreAuthPerIp, maxPreAuth, random } = this.#limits;
    const total = this.#counts.total;
    if (maxPreAuthPerIp > 0 && this.#counts.held(ip) >= maxPreAuthPerIp) return { admitted: false, reason: 'pre-auth-per-ip' };
    if (maxPreAuth > 0 && total >= maxPreAuth) return { admitted: false, reason: 'pre-auth' };
    const chance = dropChance(total, this.#limits);
    if (chance > 0 && random() < chance) return { admitted: false, reason: 'pre-auth-drop' };
    this.#counts.add(ip);
    return { admitted: true };
  }

  /**
   * A connection counted by enter() completed its hello, closed, or was refused by another cap
   * after all. Exactly once per entered connection, with the same `ip`.
   */
  leave(ip: string): void {
    this.#counts.remove(ip, 'pre-auth leave');
  }

  /** Connections entered and still in their hello. */
  get total(): number {
    return this.#counts.total;
  }

  /** Connections in their hello per client address (tracked when a per-address rule is in force). */
  perIp(): Record<string, number> {
    return this.#counts.perIp();
  }
}
