/**
 * Sets of IP subnets (CIDR), IPv4 and IPv6, on Node's own `net.BlockList`: what the server's
 * allow and deny lists are made of.
 */
import { BlockList, isIP } from 'node:net';

/** 4 or 6 for an IP address written as text, 0 for anything else (a host name, garbage). */
export function ipVersion(text: string): 0 | 4 | 6 {
  return isIP(text) as 0 | 4 | 6;
}

/** A set of subnets; an address matches if it lies in any of them. */
export class SubnetList {
  readonly #list = new BlockList();

  /** Adds `address/prefix` (a single address: prefix 32 or 128). The caller has checked both. */
  add(address: string, prefix: number, family: 'ipv4' | 'ipv6'): void {
    this.#list.addSubnet(address, prefix, family);
  }

  /** True when `address` (an IPv4 or IPv6 address) lies in one of the subnets. */
  has(address: string, family: 'ipv4' | 'ipv6'): boolean {
    return this.#list.check(address, family);
  }
}
