/**
 * Every export under src/ (the library, and the CLI built on it) has a JSDoc comment: exported
 * functions, classes, interfaces, type aliases, enums, variable statements and `export default`,
 * and every public member (constructor, method, accessor, property) of an exported class.
 * Re-exports (`export { x } from`, `export * from`) are documented where they are declared.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The repository root: this file runs as dist/test/docs/jsdoc.test.js. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * Directories not checked, relative to the root, `/`-separated with a trailing `/`. None: src/cli/
 * is an application, but it is checked too (cheaply kept documented); list it here to stop that.
 */
const EXCLUDED_DIRS: readonly string[] = [];

/** One declaration without a JSDoc comment. */
interface Missing {
  /** The file, relative to the root, `/`-separated. */
  readonly file: string;
  /** 1-based line of the declaration's first token. */
  readonly line: number;
  /** The declaration's name; `Class.member` for class members. */
  readonly name: string;
}

/** Every `.ts` file under `dir`, as root-relative `/`-separated paths. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sources(path));
    else if (entry.isFile() && entry.name.endsWith('.ts')) out.push(relative(ROOT, path).split(sep).join('/'));
  }
  return out.sort();
}

/**
 * Whether `node` has a `/** ... *\/` comment immediately before it: its last leading comment is a
 * JSDoc block and no blank line separates the two (a file's header comment is not a declaration's).
 */
function hasJsDoc(node: ts.Node, file: ts.SourceFile): boolean {
  const text = file.text;
  const ranges = ts.getLeadingCommentRanges(text, node.pos) ?? [];
  const last = ranges.at(-1);
  if (last === undefined || last.kind !== ts.SyntaxKind.MultiLineCommentTrivia) return false;
  const comment = text.slice(last.pos, last.end);
  if (!comment.startsWith('/**') || comment === '/**/') return false;
  const gap = text.slice(last.end, node.getStart(file));
  return !/\n[ \t]*\r?\n/.test(gap);
}

/** Whether `node` carries modifier `kind` (`export`, `default`, `private`, ...). */
function has(node: ts.Node, kind: ts.SyntaxKind): boolean {
  return ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === kind);
}

/** A declaration's name as reported. */
function nameOf(node: ts.Node, file: ts.SourceFile): string {
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const name = (node as { name?: ts.Node }).name;
  if (name !== undefined) return name.getText(file);
  if (ts.isVariableStatement(node)) return node.declarationList.declarations.map((d) => d.name.getText(file)).join(', ');
  if (ts.isExportAssignment(node)) return 'default';
  return has(node, ts.SyntaxKind.DefaultKeyword) ? 'default' : ts.SyntaxKind[node.kind];
}

/**
 * The nodes of `nodes` that must carry the comment: of a run of same-named overloads, the first
 * signature (the implementation and later signatures share it); of a get/set pair, the getter.
 */
function needingDocs<T extends ts.Node>(nodes: readonly T[], file: ts.SourceFile): T[] {
  const out: T[] = [];
  const getters = new Set(nodes.filter(ts.isGetAccessorDeclaration).map((g) => `${has(g, ts.SyntaxKind.StaticKeyword)}:${nameOf(g, file)}`));
  let previous: string | undefined;
  for (const node of nodes) {
    const key = `${ts.SyntaxKind[node.kind]}:${has(node, ts.SyntaxKind.StaticKeyword)}:${nameOf(node, file)}`;
    const overload = ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ts.isConstructorDeclaration(node);
    if (overload && key === previous) continue;
    previous = overload ? key : undefined;
    if (ts.isSetAccessorDeclaration(node) && getters.has(`${has(node, ts.SyntaxKind.StaticKeyword)}:${nameOf(node, file)}`)) continue;
    out.push(node);
  }
  return out;
}

/** Whether a class member is part of the public surface. */
function isPublicMember(member: ts.ClassElement): boolean {
  if (!(ts.isMethodDeclaration(member) || ts.isPropertyDeclaration(member) || ts.isGetAccessorDeclaration(member) ||
    ts.isSetAccessorDeclaration(member) || ts.isConstructorDeclaration(member))) return false;
  if (member.name !== undefined && ts.isPrivateIdentifier(member.name)) return false;
  return !has(member, ts.SyntaxKind.PrivateKeyword) && !has(member, ts.SyntaxKind.ProtectedKeyword);
}

/** Every exported declaration of `text` (and public member of an exported class) without a JSDoc comment. */
function missingIn(path: string, text: string): Missing[] {
  const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const missing: Missing[] = [];
  const report = (node: ts.Node, name: string): void => {
    if (hasJsDoc(node, file)) return;
    missing.push({ file: path, line: file.getLineAndCharacterOfPosition(node.getStart(file)).line + 1, name });
  };
  const exported = file.statements.filter(
    (s) =>
      (ts.isExportAssignment(s) && !s.isExportEquals) ||
      ((ts.isFunctionDeclaration(s) || ts.isClassDeclaration(s) || ts.isInterfaceDeclaration(s) || ts.isTypeAliasDeclaration(s) ||
        ts.isEnumDeclaration(s) || ts.isVariableStatement(s) || ts.isModuleDeclaration(s)) &&
        has(s, ts.SyntaxKind.ExportKeyword)),
  );
  for (const node of needingDocs(exported, file)) {
    report(node, nameOf(node, file));
    if (!ts.isClassDeclaration(node)) continue;
    const owner = node.name?.getText(file) ?? 'default';
    for (const member of needingDocs(node.members.filter(isPublicMember), file)) report(member, `${owner}.${nameOf(member, file)}`);
  }
  return missing;
}

/** `file:line name`, one per line. */
const format = (list: readonly Missing[]): string => list.map((m) => `${m.file}:${m.line} ${m.name}`).join('\n');

test('every export under src/ has a JSDoc comment', (t) => {
  const files = sources(join(ROOT, 'src')).filter((path) => !EXCLUDED_DIRS.some((dir) => path.startsWith(dir)));
  assert.ok(files.length > 0, `no sources found under ${ROOT}src`);

  const failing = files.flatMap((path) => missingIn(path, readFileSync(join(ROOT, path), 'utf8')));
  t.diagnostic(`${files.length} source files checked`);
  assert.equal(failing.length, 0, `exports without a JSDoc comment:\n${format(failing)}`);
});

test('the JSDoc check finds what it should', () => {
  // A self-check on a fixture, so that a check gone blind fails here rather than passing everywhere.
  const fixture = [
    '/** Module header. */',
    '',
    'export const a = 1;',
    '/** Documented. */',
    'export function b(): void {}',
    'export function c(x: string): void;',
    'export function c(x: number): void;',
    'export function c(_x: unknown): void {}',
    '/** Documented. */',
    'export class D {',
    '  /** Documented. */',
    '  constructor() {}',
    '  e = 1;',
    '  private f = 2;',
    '  #g = 3;',
    '  protected h(): void {}',
    '  get i(): number { return 1; }',
    '  set i(_v: number) {}',
    '  // not JSDoc',
    '  j(): void {}',
    '}',
    'export interface K {}',
    'export type L = string;',
    'export enum M { N }',
    'export default 1;',
    'export { a as z };',
    'export * from "./x.js";',
    'const unexported = 1;',
  ].join('\n');
  const names = missingIn('fixture.ts', fixture).map((m) => m.name);
  assert.deepEqual(names, ['a', 'c', 'D.e', 'D.i', 'D.j', 'K', 'L', 'M', 'default']);
});
