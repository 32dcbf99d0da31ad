/**
 * Helpers shared by the option resolvers of each layer.
 */
import { OptionError } from '../errors.js';

/** `{a: undefined}` must not override a default. */
export function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Checks a whole-number option, naming it when it is out of range. */
export function intOption(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new OptionError('INVALID_OPTION', `${name} must be a whole number from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}
