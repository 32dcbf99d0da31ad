/**
 * The file-name policy of the download service, shared by server and client. Pure: no I/O, no
 * timers; a name is checked lexically before it comes anywhere near a filesystem call
 * (RELIABILITY §1.2 step 1, goal G1).
 *
 * A valid name is a relative path of one or more components separated by `/`:
 * - it is strict UTF-8 (bytes are decoded with a fatal decoder that keeps a BOM, so no two byte
 *   strings decode to the same name) or, given as a string, well-formed Unicode;
 * - it is at most {@link NameRules.maxNameBytes} bytes long, each component at most
 *   {@link NameRules.maxComponentBytes} bytes (UTF-8 byte lengths);
 * - it has no empty component (no leading `/`, trailing `/` or `//`) and no `.` or `..` component;
 * - it contains no `\`, no `:`, no C0 control (NUL included), no DEL and no C1 control
 *   (U+0080–U+009F: U+009B is a one-character terminal escape);
 * - no component is a Windows device name (`CON`, `PRN`, `AUX`, `NUL`, `COM1`–`COM9`,
 *   `LPT1`–`LPT9`, their superscript-digit forms, `CONIN$`, `CONOUT$`; any case, with or without
 *   an extension) and no component ends in `.` or a space, so a name means the same file on every
 *   system a client may save it on (Node CVE-2025-27210, node-tar CVE-2021-37713).
 *
 * Nothing is ever decoded or normalised: `%2e%2e` is a literal seven-character name (CVE-2014-3744,
 * CVE-2021-41773) and `．．／` stays full-width (its NFKC form is `../`). What is checked is
 * exactly what is used.
 *
 * Hidden names (a component starting with `.`) are well-formed; whether they are *served* is a
 * policy of the server. {@link validateName} therefore accepts them by default, and refuses them
 * with `FORBIDDEN` (not `INVALID_NAME`: the name is fine, the policy says no) when
 * `allowHidden: false`, which is what `FileRoot` passes unless told otherwise.
 */
import path from 'node:path';
import { OptionError, TcpkitError } from '../../errors.js';
import { stripUndefined } from '../../util/options.js';

/** Rules a name is checked against. */
export interface NameRules {
  /** Longest name, in UTF-8 bytes. @default 1024 */
  maxNameBytes?: number;
  /** Longest component, in UTF-8 bytes (the usual filesystem `NAME_MAX`). @default 255 */
  maxComponentBytes?: number;
  /**
   * Accept components starting with `.`. When false they are refused with `FORBIDDEN`. The
   * default is true because this is the *syntax* shared with the client, which must not impose
   * one server's policy on another; the server's default (`FileRoot`) is false.
   * @default true
   */
  allowHidden?: boolean;
}

/** The defaults of {@link NameRules}, in one place. */
export const NAME_RULES_DEFAULTS: Readonly<Required<NameRules>> = Object.freeze({
  maxNameBytes: 1024,
  maxComponentBytes: 255,
  allowHidden: true,
});

// ignoreBOM keeps a leading U+FEFF in the result: the default strips it, so `EF BB BF 61` and
// `61` would both decode to "a" and name the same file.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// Win32 maps these to devices whatever follows the first dot and whatever spaces precede it.
const DEVICE_NAMES = /^(?:CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[1-9¹²³]|LPT[1-9¹²³])$/i;

function invalid(reason: string): TcpkitError {
  return new TcpkitError('INVALID_NAME', `invalid name: ${reason}`);
}

function resolveRules(rules: NameRules): Required<NameRules> {
  const resolved: Required<NameRules> = { ...NAME_RULES_DEFAULTS, ...stripUndefined(rules) };
  for (const key of ['maxNameBytes', 'maxComponentBytes'] as const) {
    const value = resolved[key];
    if (!Number.isInteger(value) || value < 1) {
      throw new OptionError('INVALID_OPTION', `${key} must be a whole number of at least 1, got ${String(value)}`);
    }
  }
  if (typeof resolved.allowHidden !== 'boolean') throw new OptionError('INVALID_OPTION', 'allowHidden must be a boolean');
  return resolved;
}

/** UTF-8 length of a well-formed string, without encoding it. */
function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff) {
      bytes += 4; // a surrogate pair (the string is well-formed), one code point
      i++;
    } else bytes += 3;
  }
  return bytes;
}

function hex(unit: number): string {
  return `U+${unit.toString(16).toUpperCase().padStart(4, '0')}`;
}

function decode(input: Uint8Array | string, maxNameBytes: number): string {
  if (typeof input === 'string') {
    if (!input.isWellFormed()) throw invalid('not well-formed Unicode (a lone surrogate)');
    // A UTF-16 unit is at least one UTF-8 byte: a quick bound before the exact count.
    if (input.length > maxNameBytes || utf8Length(input) > maxNameBytes) throw invalid(`longer than ${maxNameBytes} bytes`);
    return input;
  }
  // Checked before decoding, so a huge input costs nothing.
  if (input.length > maxNameBytes) throw invalid(`longer than ${maxNameBytes} bytes`);
  try {
    return strictUtf8.decode(input);
  } catch {
    throw invalid('not valid UTF-8');
  }
}

function checkCharacters(name: string): void {
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    if (unit === 0) throw invalid('contains a NUL byte');
    if (unit < 0x20 || (unit >= 0x7f && unit <= 0x9f)) throw invalid(`contains the control character ${hex(unit)}`);
    if (unit === 0x5c) throw invalid('contains a backslash');
    if (unit === 0x3a) throw invalid('contains a colon');
  }
}

function checkComponents(name: string, rules: Required<NameRules>): string[] {
  if (name.startsWith('/')) throw invalid('absolute (starts with /)');
  if (name.endsWith('/')) throw invalid('ends with /');
  const components = name.split('/');
  for (const component of components) {
    if (component === '') throw invalid('contains an empty component (//)');
    if (component === '.' || component === '..') throw invalid(`contains a "${component}" component`);
    if (utf8Length(component) > rules.maxComponentBytes) throw invalid(`a component is longer than ${rules.maxComponentBytes} bytes`);
    if (component.endsWith('.') || component.endsWith(' ')) {
      throw invalid(`component ${JSON.stringify(component)} ends with a dot or a space`);
    }
    const stem = component.split('.', 1)[0]!.replace(/ +$/, '');
    if (DEVICE_NAMES.test(stem)) throw invalid(`component ${JSON.stringify(component)} is a reserved Windows device name`);
  }
  return components;
}

/**
 * Checks a requested file name and returns it as a string of `/`-separated components.
 * Throws `INVALID_NAME` naming the broken rule, or `FORBIDDEN` for a hidden component when
 * `rules.allowHidden` is false. The message never echoes control characters.
 * @example
 * validateName('docs/report.pdf'); // 'docs/report.pdf'
 * validateName('../etc/passwd');   // throws TCPKIT_ERR_INVALID_NAME
 * validateName(Uint8Array.of(0xc0, 0xae)); // throws: overlong UTF-8 is not valid UTF-8
 */
export function validateName(input: Uint8Array | string, rules: NameRules = {}): string {
  const resolved = resolveRules(rules);
  const name = decode(input, resolved.maxNameBytes);
  if (name === '') throw invalid('empty');
  checkCharacters(name);
  const components = checkComponents(name, resolved);
  if (!resolved.allowHidden && components.some((component) => component.startsWith('.'))) {
    throw new TcpkitError('FORBIDDEN', 'hidden names (a component starting with ".") are refused');
  }
  return name;
}

/**
 * Like {@link validateName}, for a directory to list: the empty name and `.` mean the root and
 * are returned as `''`; anything else must be a valid name.
 */
export function validateDirName(input: Uint8Array | string, rules: NameRules = {}): string {
  if (input.length === 0) return '';
  if (input.length === 1 && (input === '.' || (typeof input !== 'string' && input[0] === 0x2e))) return '';
  return validateName(input, rules);
}

/**
 * True when `candidate` is `rootReal` itself or lies below it. Both must be absolute, canonical
 * paths (from `realpath` or `/proc/self/fd`); anything else, such as a path with a `..` segment,
 * is never inside. The comparison includes the separator: `/srv/files-x` is not inside
 * `/srv/files` (the CVE-2014-6394 prefix bug of `send`).
 */
export function isInside(rootReal: string, candidate: string): boolean {
  if (!path.isAbsolute(rootReal) || !path.isAbsolute(candidate)) return false;
  if (path.normalize(rootReal) !== rootReal || path.normalize(candidate) !== candidate) return false;
  if (candidate === rootReal) return true;
  const prefix = rootReal.endsWith(path.sep) ? rootReal : rootReal + path.sep;
  return candidate.startsWith(prefix);
}
