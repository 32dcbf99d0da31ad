/**
 * The loader hooks of module-log.ts: each resolved URL is appended to the log file, synchronously,
 * before the module loads (so a run that exits at once still leaves a whole list).
 */
import { appendFileSync } from 'node:fs';

let file: string | undefined;

/** Called once by `register`, with the log file's path. */
export function initialize(data: { file: string }): void {
  file = data.file;
}

interface Resolved {
  url: string;
}

/** Resolves as Node would, then writes the URL down. */
export async function resolve(specifier: string, context: unknown, next: (specifier: string, context: unknown) => Promise<Resolved>): Promise<Resolved> {
  const resolved = await next(specifier, context);
  if (file !== undefined) appendFileSync(file, `${resolved.url}\n`);
  return resolved;
}
