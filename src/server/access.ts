/**
 * Allow and deny lists of client addresses (CIDR, IPv4 and IPv6), checked at accept before a
 * byte is read. Built on transport's {@link SubnetList} (Node's own `net.BlockList`).
 */
import { OptionError } from '../errors.js';
import { ipVersion, SubnetList } from '../transport/subnets.js';

function parseCidr(text: string, option: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [address = '', prefixText, extra] = text.trim().split('/');
  const version = ipVersion(address);
  if (version === 0 || extra !== undefined) throw new OptionError('INVALID_OPTION', `${option} ${text}: expected ADDRESS or ADDRESS/PREFIX`);
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (prefixText !== undefined && (!/^[0-9]{1,3}$/.test(prefixText) || prefix > max)) {
    throw new OptionError('INVALID_OPTION', `${option} ${text}: the prefix must be 0 to ${max}`);
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

function subnetList(cidrs: readonly string[], option: string): SubnetList {
  const list = new SubnetList();
  for (const cidr of cidrs) {
    const { address, prefix, family } = parseCidr(cidr, option);
    list.add(address, prefix, family);
  }
  return list;
}

/** Decides from the client's address alone: denied if it matches `deny`, or if `allow` is non-empty and it matches none. */
export class AccessList {
  readonly #allow: SubnetList | undefined;
  readonly #deny: SubnetList | undefined;

  /**
   * `allow` and `deny`: addresses or CIDR blocks (`ADDRESS/PREFIX`), IPv4 or IPv6; empty lists check nothing.
   * @throws {OptionError} `INVALID_OPTION` for an entry that is no address, or whose prefix is out of range.
   */
  constructor(allow: readonly string[] = [], deny: readonly string[] = []) {
    this.#allow = allow.length > 0 ? subnetList(allow, '--allow') : undefined;
    this.#deny = deny.length > 0 ? subnetList(deny, '--deny') : undefined;
  }

  /** True when a list is set at all (otherwise nothing needs checking). */
  get active(): boolean {
    return this.#allow !== undefined || this.#deny !== undefined;
  }

  /** `address` normalised: IPv4-mapped IPv6 already shown as IPv4. */
  permits(address: string): boolean {
    const version = ipVersion(address);
    if (version === 0) return false;
    const family = version === 4 ? 'ipv4' : 'ipv6';
    if (this.#deny?.has(address, family)) return false;
    if (this.#allow && !this.#allow.has(address, family)) return false;
    return true;
  }
}
