/**
 * Admission: the connection caps, counted at accept (so idle and slow connections count too).
 * A pure policy: the server asks and reports; this keeps the counts.
 */

/** Why a connection was refused. */
export type RefusalReason = 'per-ip' | 'total' | 'pre-auth' | 'denied';

/** Caps of {@link Admission}; 0 means no cap. */
export interface AdmissionLimits {
  maxConnections: number;
  maxConnectionsPerIp: number;
}

export type AdmissionVerdict = { admitted: true } | { admitted: false; reason: RefusalReason };

export class Admission {
  readonly #limits: AdmissionLimits;
  readonly #perIp = new Map<string, number>();
  #total = 0;

  constructor(limits: AdmissionLimits) {
    this.#limits = limits;
  }

  /**
   * Counts the connection in if a cap allows it. `ip` must be normalised (IPv4-mapped shown as
   * IPv4), or '' when no per-address cap is in force (then only the total is counted).
   */
  admit(ip: string): AdmissionVerdict {
    const { maxConnections, maxConnectionsPerIp } = this.#limits;
    if (maxConnections > 0 && this.#total >= maxConnections) return { admitted: false, reason: 'total' };
    if (ip === '') {
      // No per-address rule in force: the address was not even looked up.
      this.#total++;
      return { admitted: true };
    }
    const held = this.#perIp.get(ip) ?? 0;
    if (maxConnectionsPerIp > 0 && held >= maxConnectionsPerIp) return { admitted: false, reason: 'per-ip' };
    this.#perIp.set(ip, held + 1);
    this.#total++;
    return { admitted: true };
  }

  /** An admitted connection is gone. Exactly once per admitted connection. */
  release(ip: string): void {
    if (ip === '') {
      this.#total--;
      return;
    }
    const held = this.#perIp.get(ip);
    if (held === undefined) throw new Error(`release of ${ip}, which holds no connection`);
    if (held <= 1) this.#perIp.delete(ip);
    else this.#perIp.set(ip, held - 1);
    this.#total--;
  }

  get total(): number {
    return this.#total;
  }

  /** Open connections per client address. */
  perIp(): Record<string, number> {
    return Object.fromEntries(this.#perIp);
  }
}
