/**
 * transport/ owns every socket: no file outside src/transport/ imports node:net or node:tls, not
 * even for a type (they use `Socket` from transport/dial.ts, or `Duplex` from node:stream).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';

const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));

/** `import ... from 'node:net'`, `import type`, `export ... from`, `import('tls')`, `require("net")`. */
const SOCKET_MODULE = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)['"](?:node:)?(?:net|tls)['"]/;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** The files of src/ outside transport/ that import a socket module. */
export function socketImporters(): string[] {
  return sources(SRC)
    .map((file) => path.relative(SRC, file).split(path.sep).join('/'))
    .filter((file) => !file.startsWith('transport/'))
    .filter((file) => SOCKET_MODULE.test(readFileSync(path.join(SRC, file), 'utf8')))
    .sort();
}

it('the pattern catches every form of import of node:net and node:tls, and nothing else', () => {
  for (const line of [
    "import * as net from 'node:net';",
    "import type { Socket } from 'node:net';",
    'import { BlockList, isIP } from "node:net";',
    "import * as tls from 'tls';",
    "export { Socket } from 'node:net';",
    "type S = import('node:net').Socket;",
    "import 'node:tls';",
  ]) {
    assert.match(line, SOCKET_MODULE, line);
  }
  for (const line of ["import { Duplex } from 'node:stream';", "import { x } from './net.js';", "import * as tls from './transport/tls.js';", '// node:net is not imported here']) {
    assert.doesNotMatch(line, SOCKET_MODULE, line);
  }
});

it('no file outside src/transport/ imports node:net or node:tls', () => {
  assert.deepEqual(socketImporters(), []);
});
