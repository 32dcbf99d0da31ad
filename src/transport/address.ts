/**
 * Addresses as people type them (`HOST[:PORT]`) and as logs show them.
 */
import { isIP } from 'node:net';
import { OptionError } from '../errors.js';

/** The port tcpkit uses when none is given, as the tutorial's server does. */
export const DEFAULT_PORT = 7890;

/** A host and a port. */
export interface HostPort {
  host: string;
  port: number;
}

/** Checks a port number; `allowZero` for servers (0 picks a free port). */
export function checkPort(port: number, allowZero = false, what = 'port'): number {
  const low = allowZero ? 0 : 1;
  if (!Number.isInteger(port) || port < low || port > 65535) {
    throw new OptionError('INVALID_ADDRESS', `${what} must be a whole number from ${low} to 65535, got ${String(port)}`);
  }
  return port;
}

function parsePortText(text: string, allowZero: boolean): number {
  if (!/^[0-9]{1,5}$/.test(text)) throw new OptionError('INVALID_ADDRESS', `bad port "${text}": expected a number`);
  return checkPort(Number(text), allowZero);
}

/**
 * Parses `HOST`, `HOST:PORT`, `[IPV6]`, `[IPV6]:PORT` or a bare IPv6 address.
 * @example parseAddress('127.0.0.1:9000') // { host: '127.0.0.1', port: 9000 }
 */
export function parseAddress(text: string, defaultPort = DEFAULT_PORT, allowZero = false): HostPort {
  const input = text.trim();
  if (input.length === 0) throw new OptionError('INVALID_ADDRESS', 'empty address: expected HOST[:PORT]');
  if (input.startsWith('[')) {
    const close = input.indexOf(']');
    if (close < 0) throw new OptionError('INVALID_ADDRESS', `bad address "${input}": missing "]"`);
    const host = input.slice(1, close);
    const rest = input.slice(close + 1);
    if (isIP(host) !== 6) throw new OptionError('INVALID_ADDRESS', `bad address "${input}": "${host}" is not an IPv6 address`);
    if (rest === '') return { host, port: defaultPort };
    if (!rest.startsWith(':')) throw new OptionError('INVALID_ADDRESS', `bad address "${input}": expected ":PORT" after "]"`);
    return { host, port: parsePortText(rest.slice(1), allowZero) };
  }
  const colons = input.split(':').length - 1;
  if (colons > 1) {
    if (isIP(input) === 6) return { host: input, port: defaultPort };
    throw new OptionError('INVALID_ADDRESS', `bad address "${input}": write IPv6 with a port as [ADDRESS]:PORT`);
  }
  if (colons === 1) {
    const at = input.indexOf(':');
    const host = input.slice(0, at);
    if (host === '') throw new OptionError('INVALID_ADDRESS', `bad address "${input}": missing host before ":"`);
    return { host, port: parsePortText(input.slice(at + 1), allowZero) };
  }
  return { host: input, port: defaultPort };
}

/** Strips the IPv4-mapped IPv6 prefix, so `::ffff:127.0.0.7` counts and prints as `127.0.0.7`. */
export function normalizeIp(address: string): string {
  const lower = address.toLowerCase();
  if (lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4) return lower.slice(7);
  return address;
}

/** `host:port`, with IPv6 hosts in brackets. */
export function formatAddress(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
