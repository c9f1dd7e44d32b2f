// The architecture, enforced (issue 14): no import cycle in src/, no import from a lower layer to
// a higher one, no file over 600 lines, the waypoint never reaches into the node proxy, and every
// fixed port is a named constant in src/common/ports.ts. The layer table below is the one
// ARCHITECTURE.md shows; a test checks that the two agree.
//
// Imports are read with the TypeScript compiler's own pre-processor (`ts.preProcessFile`), which
// lists static `import` / `import type` / `export … from` and `import('literal')` without
// type-checking, so the whole tree is read in well under a second and no new dependency is needed.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '../..');
const SRC = path.join(ROOT, 'src');
const MAX_LINES = 600;
const PORTS_MODULE = 'src/common/ports.ts';
/** The node proxy's folder (named so it does not read as Node.js). */
const NODE_PROXY_FOLDER = 'nodeproxy';

/**
 * Layers, lowest first. A folder may import itself and any folder of a LOWER layer; never one of
 * the same layer (the components are separate processes and share code only through the layers
 * below them) and never one above.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['common'], // errors, logging, addresses, ports, tokens, drain: no mesh knowledge
  ['config'], // Kubernetes objects: types, YAML loading, validation, file and API sources
  ['xds'], // the workload API protos and the Delta xDS client (reads config's mesh-config)
  ['identity'], // SPIFFE ids, keys, CSRs, certificate manager (its CA client uses xds's proto loader)
  ['hbone'], // the tunnel: client pool, server, TLS with SPIFFE verification
  ['telemetry'], // metric families, exposition, admin/debug endpoints (given interfaces, never a proxy)
  ['proxy'], // the shared proxy core: state, policy store, L4 decider, routes, splice, gate, record
  ['redirect'], // the node agent: namespaces, veth, iptables, native socket helpers
  ['controlplane', 'nodeproxy', 'waypoint'], // the three processes, each built on the layers below
  ['cli'], // the ambit command: parses flags, starts components, orchestrates `up`
];

interface Pending {
  from: string; // a src-relative file, or a folder for a whole-folder arrow
  to: string;
  who: string;
  why: string;
}

/**
 * Violations known and being fixed while issue 14 is in progress, each with who fixes it. An entry
 * that no longer matches a real import fails the "no stale entries" test, so this list can only
 * shrink. It must end empty, or every remaining line must say why it stays.
 */
const PENDING: readonly Pending[] = [];

/** Files allowed over MAX_LINES for now, with who splits them. Same rule: it must end empty. */
const PENDING_LONG: readonly { file: string; who: string; why: string }[] = [];

// ---------------------------------------------------------------------------------------------
// Reading the tree

interface ImportEdge {
  from: string; // 'src/…/x.ts'
  to: string;
  spec: string;
}

/** Every relative module specifier a TypeScript source names (static, type-only, re-export, dynamic). */
export function importSpecifiers(source: string): string[] {
  const info = ts.preProcessFile(source, true, true);
  return info.importedFiles.map((f) => f.fileName);
}

function listSources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listSources(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

const rel = (abs: string): string => path.relative(ROOT, abs).split(path.sep).join('/');
const folderOf = (file: string): string => file.split('/')[1] ?? '';

interface Tree {
  files: Map<string, string>; // rel path → text
  edges: ImportEdge[];
  unresolved: string[];
}

function readTree(): Tree {
  const files = new Map<string, string>();
  for (const abs of listSources(SRC)) files.set(rel(abs), readFileSync(abs, 'utf8'));
  const edges: ImportEdge[] = [];
  const unresolved: string[] = [];
  for (const [file, text] of files) {
    for (const spec of importSpecifiers(text)) {
      if (!spec.startsWith('.')) continue; // a package or node: built-in
      // NodeNext ESM: sources import './x.js' for './x.ts'.
      const target = path.posix
        .normalize(path.posix.join(path.posix.dirname(file), spec))
        .replace(/\.js$/, '.ts');
      if (!files.has(target)) {
        if (!spec.endsWith('.json') && !spec.endsWith('.cjs')) unresolved.push(`${file}: '${spec}'`);
        continue;
      }
      edges.push({ from: file, to: target, spec });
    }
  }
  return { files, edges, unresolved };
}

const tree = readTree();

function isPending(e: ImportEdge): boolean {
  return PENDING.some(
    (p) => (p.from === e.from || p.from === folderOf(e.from)) && (p.to === e.to || p.to === folderOf(e.to)),
  );
}

function layerOf(folder: string): number {
  return LAYERS.findIndex((l) => l.includes(folder));
}

/** Strongly connected components with more than one file (or a file importing itself): the cycles. */
export function findCycles(
  nodes: Iterable<string>,
  edges: readonly { from: string; to: string }[],
): string[][] {
  const out = new Map<string, string[]>();
  for (const e of edges) (out.get(e.from) ?? out.set(e.from, []).get(e.from)!).push(e.to);
  // Tarjan's algorithm, iterative so a deep chain cannot overflow the stack.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const sccs: string[][] = [];
  for (const start of nodes) {
    if (index.has(start)) continue;
    const work: { node: string; next: number }[] = [{ node: start, next: 0 }];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const succ = out.get(frame.node) ?? [];
      if (frame.next < succ.length) {
        const w = succ[frame.next++]!;
        if (!index.has(w)) {
          index.set(w, counter);
          low.set(w, counter++);
          stack.push(w);
          onStack.add(w);
          work.push({ node: w, next: 0 });
        } else if (onStack.has(w)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(w)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(frame.node)!));
      if (low.get(frame.node) === index.get(frame.node)) {
        const scc: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          scc.push(w);
        } while (w !== frame.node);
        const selfLoop = (out.get(frame.node) ?? []).includes(frame.node);
        if (scc.length > 1 || selfLoop) sccs.push(scc.sort());
      }
    }
  }
  return sccs;
}

/** One concrete loop through a cycle's files, for the failure message: a → b → … → a. */
function oneLoop(scc: readonly string[], edges: readonly { from: string; to: string }[]): string {
  const members = new Set(scc);
  const start = scc[0]!;
  // Breadth-first from start back to start, inside the component only: the shortest loop.
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const n = queue.shift()!;
    for (const e of edges) {
      if (e.from !== n || !members.has(e.to)) continue;
      if (e.to === start) {
        const loop = [start];
        for (let c: string | undefined = n; c !== undefined && c !== start; c = prev.get(c))
          loop.splice(1, 0, c);
        loop.push(start);
        return loop.join(' → ');
      }
      if (!prev.has(e.to)) {
        prev.set(e.to, n);
        queue.push(e.to);
      }
    }
  }
  return scc.join(', ');
}

/** Numeric literals between 15000 and 15099 outside comments (the scanner skips comments and strings). */
export function portLiterals(text: string): { line: number; value: number }[] {
  const found: { line: number; value: number }[] = [];
  const sf = ts.createSourceFile('x.ts', text, ts.ScriptTarget.ES2022, true);
  const visit = (node: ts.Node): void => {
    // A literal written with a separator (15_000) is a duration or a count by this codebase's
    // convention, never a port.
    if (ts.isNumericLiteral(node) && !node.getText(sf).includes('_')) {
      const value = Number(node.text);
      if (value >= 15000 && value <= 15099) {
        found.push({ line: sf.getLineAndCharacterOfPosition(node.getStart()).line + 1, value });
      }
    } else if (
      ts.isStringLiteral(node) ||
      ts.isNoSubstitutionTemplateLiteral(node) ||
      ts.isTemplateLiteralToken(node)
    ) {
      // An address written as text ('127.0.0.1:15012', `…svc:15012`) is a port definition too.
      const m = /:(150\d\d)(?!\d)/.exec(node.text);
      if (m)
        found.push({ line: sf.getLineAndCharacterOfPosition(node.getStart()).line + 1, value: Number(m[1]) });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

// ---------------------------------------------------------------------------------------------

describe('architecture: the reader itself', () => {
  it('sees static, type-only, re-exported and literal dynamic imports, and ignores computed ones', () => {
    const src = [
      "import { a } from './a.js';",
      "import type { B } from '../b.js';",
      "export { c } from './c.js';",
      "export * from './d.js';",
      "const e = await import('./e.js');",
      'const f = await import(name);',
      "// import { g } from './g.js';",
      "import 'node:fs';",
    ].join('\n');
    expect(importSpecifiers(src)).toEqual(['./a.js', '../b.js', './c.js', './d.js', './e.js', 'node:fs']);
  });

  it('finds a three-file cycle and a self-import, and no cycle in a chain', () => {
    const edges = [
      { from: 'a', to: 'b' },
      { from: 'b', to: 'c' },
      { from: 'c', to: 'a' },
      { from: 'c', to: 'd' },
      { from: 'e', to: 'e' },
    ];
    expect(findCycles(['a', 'b', 'c', 'd', 'e'], edges).map((s) => s.join(','))).toEqual(['a,b,c', 'e']);
    expect(oneLoop(['a', 'b', 'c'], edges)).toBe('a → b → c → a');
    expect(
      findCycles(
        ['a', 'b', 'c'],
        [
          { from: 'a', to: 'b' },
          { from: 'b', to: 'c' },
        ],
      ),
    ).toEqual([]);
  });

  it('finds port numbers in code and in address strings, not in comments', () => {
    const text = [
      '// admin 15000',
      'const a = 15001;',
      "const b = '127.0.0.1:15012';",
      'const c = 1500;',
      'const d = 15_000;',
    ].join('\n');
    expect(portLiterals(text)).toEqual([
      { line: 2, value: 15001 },
      { line: 3, value: 15012 },
    ]);
  });

  it('reads every src/ file and resolves every relative import to a file', () => {
    expect(tree.files.size).toBeGreaterThan(100);
    expect(tree.edges.length).toBeGreaterThan(300);
    expect(tree.unresolved).toEqual([]);
  });
});

describe('architecture: src/', () => {
  it('places every src/ folder in exactly one layer', () => {
    const folders = readdirSync(SRC, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
    const unplaced = folders.filter((f) => LAYERS.filter((l) => l.includes(f)).length !== 1);
    expect(unplaced, 'add the folder to LAYERS here and in ARCHITECTURE.md').toEqual([]);
  });

  it('has no import cycle', () => {
    const edges = tree.edges.filter((e) => !isPending(e));
    // One loop per strongly connected component, then every file in it (a component can hold
    // several loops; breaking the printed one may leave another).
    const loops = findCycles(tree.files.keys(), edges).map(
      (scc) => `${oneLoop(scc, edges)}   [${scc.length} files: ${scc.join(', ')}]`,
    );
    expect(loops, 'import cycles (break them by moving the shared piece below both)').toEqual([]);
  });

  it('never imports from a higher layer or a sibling of the same layer', () => {
    const bad = tree.edges
      .filter((e) => folderOf(e.from) !== folderOf(e.to) && !isPending(e))
      .filter((e) => layerOf(folderOf(e.from)) <= layerOf(folderOf(e.to)))
      .map((e) => `${e.from} → ${e.to} (${folderOf(e.from)} may not import ${folderOf(e.to)})`);
    expect(bad).toEqual([]);
  });

  it(`keeps the waypoint out of the node proxy (src/waypoint imports nothing from src/${NODE_PROXY_FOLDER})`, () => {
    // A renamed folder must be renamed here too, or this check would pass on nothing.
    expect(LAYERS.flat(), `src/${NODE_PROXY_FOLDER}/ is in LAYERS`).toContain(NODE_PROXY_FOLDER);
    expect(tree.edges.some((e) => folderOf(e.from) === NODE_PROXY_FOLDER)).toBe(true);
    const bad = tree.edges
      .filter((e) => folderOf(e.from) === 'waypoint' && folderOf(e.to) === NODE_PROXY_FOLDER && !isPending(e))
      .map((e) => `${e.from} → ${e.to}`);
    expect(bad).toEqual([]);
  });

  it(`has no file over ${MAX_LINES} lines`, () => {
    const long = [...tree.files]
      .map(([file, text]) => ({ file, lines: text.split('\n').length - (text.endsWith('\n') ? 1 : 0) }))
      .filter((f) => f.lines > MAX_LINES && !PENDING_LONG.some((p) => p.file === f.file))
      .map((f) => `${f.file}: ${f.lines} lines`);
    expect(long).toEqual([]);
  });

  it(`defines every fixed 150xx port once, in ${PORTS_MODULE}`, () => {
    const found: string[] = [];
    for (const [file, text] of tree.files) {
      if (file === PORTS_MODULE) continue;
      for (const p of portLiterals(text)) found.push(`${file}:${p.line}: ${p.value}`);
    }
    expect(found, `import the port from ${PORTS_MODULE}`).toEqual([]);
  });

  it('has no stale PENDING entry (each still names a real import or a long file)', () => {
    const stale = PENDING.filter(
      (p) =>
        !tree.edges.some(
          (e) =>
            (p.from === e.from || p.from === folderOf(e.from)) && (p.to === e.to || p.to === folderOf(e.to)),
        ),
    ).map((p) => `${p.from} → ${p.to} (${p.who})`);
    const staleLong = PENDING_LONG.filter((p) => {
      const text = tree.files.get(p.file);
      return text === undefined || text.split('\n').length <= MAX_LINES;
    }).map((p) => p.file);
    expect([...stale, ...staleLong], 'remove these from PENDING: they are fixed').toEqual([]);
  });
});

describe('architecture: ARCHITECTURE.md', () => {
  it('shows the same layer table the test enforces', () => {
    const doc = readFileSync(path.join(ROOT, 'ARCHITECTURE.md'), 'utf8');
    // The rows between the layers markers: "| 1 | `src/common/` | …", folders in backticks in column 2.
    const start = doc.indexOf('<!-- layers');
    const end = doc.indexOf('<!-- /layers -->');
    expect(start, 'ARCHITECTURE.md has the <!-- layers --> … <!-- /layers --> markers').toBeGreaterThan(-1);
    expect(end).toBeGreaterThan(start);
    const table = doc.slice(start, end);
    const rows = [...table.matchAll(/^\|\s*(\d+)\s*\|([^|]*)\|/gm)].map((m) => ({
      n: Number(m[1]),
      folders: [...m[2]!.matchAll(/`src\/([a-z]+)\/`/g)].map((f) => f[1]!),
    }));
    expect(rows.map((r) => r.folders)).toEqual(LAYERS.map((l) => [...l]));
    expect(rows.map((r) => r.n)).toEqual(LAYERS.map((_, i) => i + 1));
  });
});
