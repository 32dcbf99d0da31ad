/**
 * The checks a service passes before a server installs it: a name for the HELLO, and frame types
 * in the service ranges of protocol/types.ts that no other service (nor itself) already took.
 * Pure; a bad service is an OptionError when the server is built, not a surprise at run time.
 */
import { OptionError } from '../errors.js';
import { frameTypeHex, frameTypeName, frameTypeRange } from '../protocol/types.js';
import type { Service } from './service.js';

function refuse(message: string): never {
  throw new OptionError('INVALID_OPTION', `services: ${message}`);
}

/** Why `type` cannot be one of `service`'s frame types, or undefined when it can. */
function typeProblem(service: Service, type: unknown): string | undefined {
  if (typeof type !== 'number' || !Number.isInteger(type) || type < 0 || type > 0xff) return `${String(type)} is not a frame type (0x00 to 0xff)`;
  const range = frameTypeRange(type);
  const shown = `${frameTypeHex(type)} (${frameTypeName(type)})`;
  if (range === undefined || range.use === 'control') return `${shown} is a control type, never a service's`;
  if (range.service !== undefined && range.service !== service.name) {
    return `${shown} lies in the range of the "${range.service}" service (${frameTypeHex(range.first)}–${frameTypeHex(range.last)})`;
  }
  return undefined;
}

/**
 * Throws an OptionError naming the problem when `service` cannot join the services already
 * installed: `names` (in HELLO order) and `served` (true for a type a service already takes,
 * as a request or a continuation).
 */
export function checkService(service: Service, served: (type: number) => boolean, names: readonly string[]): void {
  if (typeof service !== 'object' || service === null) refuse('a service must be an object');
  const { name } = service;
  if (typeof name !== 'string' || name.length === 0) refuse('a service needs a non-empty name');
  if (names.includes(name)) refuse(`two services are named "${name}"`);
  if (typeof service.handle !== 'function') refuse(`service "${name}" has no handle() function`);
  if (!Array.isArray(service.requestTypes)) refuse(`service "${name}": requestTypes must be a list of frame types`);
  const continuations = service.continuationTypes ?? [];
  if (!Array.isArray(continuations)) refuse(`service "${name}": continuationTypes must be a list of frame types`);
  const capabilities = service.capabilities ?? [];
  if (!Array.isArray(capabilities) || !capabilities.every((c) => typeof c === 'string' && c.length > 0 && c.length <= 64)) {
    refuse(`service "${name}": capabilities must be a list of strings of 1 to 64 characters`);
  }
  const own = new Set<number>();
  for (const type of [...service.requestTypes, ...continuations]) {
    const problem = typeProblem(service, type);
    if (problem !== undefined) refuse(`service "${name}": frame type ${problem}`);
    if (own.has(type) || served(type)) refuse(`service "${name}": frame type ${frameTypeHex(type)} (${frameTypeName(type)}) is served twice`);
    own.add(type);
  }
}
