// The layers of src/ and what each may import: lower layers never import higher ones, so the tensor
// library, the data pipeline and the model stay usable on their own. Reads the import statements
// of every source file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const SRC = resolve(__dirname, '..', '..', 'src');

/** Folder → the folders it may import from (besides itself). */
const MAY_IMPORT: Record<string, string[]> = {
  util: [],
  torch: ['util'],
  nn: ['torch', 'util'],
  optim: ['torch', 'nn', 'util'],
  io: ['torch', 'util'],
  data: ['torch', 'io', 'util'],
  semaim: ['torch', 'nn', 'io', 'util'],
  dist: ['torch', 'nn', 'util'],
  run: ['torch', 'nn', 'optim', 'io', 'semaim', 'data', 'dist', 'util'],
  viz: ['torch', 'nn', 'io', 'semaim', 'data', 'run', 'util'],
  train: ['torch', 'nn', 'optim', 'io', 'semaim', 'data', 'dist', 'run', 'util'],
  eval: ['torch', 'nn', 'optim', 'io', 'semaim', 'data', 'dist', 'run', 'viz', 'util'],
  export: ['torch', 'nn', 'io', 'semaim', 'data', 'run', 'viz', 'eval', 'util'], // eval: a fine-tuned classifier
  experiments: ['torch', 'nn', 'optim', 'io', 'semaim', 'data', 'dist', 'run', 'train', 'eval', 'viz', 'util'],
  cli: ['torch', 'nn', 'optim', 'io', 'semaim', 'data', 'dist', 'run', 'train', 'eval', 'viz', 'export', 'experiments', 'util'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sourceFiles(p) : n.endsWith('.ts') ? [p] : [];
  });
}

/** Top-level folder of src/ a path lies in ('' for files directly in src/). */
function layerOf(path: string): string {
  const parts = relative(SRC, path).split(sep);
  return parts.length > 1 ? parts[0] : '';
}

/** Relative module specifiers a file imports (static, dynamic and require). */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|require\s*\(\s*|import\s+)'(\.[^']*)'/g)) out.push(m[1]);
  return out;
}

test('each layer of src/ imports only the layers below it', () => {
  const violations: string[] = [];
  const files = sourceFiles(SRC);
  assert.ok(files.length > 50, `found only ${files.length} source files under ${SRC}`);
  for (const file of files) {
    const from = layerOf(file);
    if (!from) continue; // src/index.ts: the public entry point may re-export anything
    const allowed = MAY_IMPORT[from];
    if (!allowed) {
      violations.push(`${relative(SRC, file)}: folder '${from}' has no entry in the layer table`);
      continue;
    }
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      const to = relative(SRC, resolve(dirname(file), spec)).split(sep)[0];
      if (to !== from && !allowed.includes(to)) violations.push(`${relative(SRC, file)} imports ${spec} (${from} → ${to || 'src'})`);
    }
  }
  assert.deepEqual(violations, []);
});

/** Relative modules a file loads when it runs: importsOf without type-only imports and re-exports (erased by tsc). */
export function runtimeImportsOf(text: string): string[] {
  const typeOnly = /^(?:import|export)\s+type\s|^(?:import|export)\s*\{(\s*type\s+\w+\s*(?:as\s+\w+\s*)?,?)+\s*\}\s*from/;
  const code = text.replace(/\/\*[\s\S]*?\*\/|^\s*\/\/.*$/gm, '');
  const statements = code.split(/;\s*\n/).filter((st) => !typeOnly.test(st.trim()));
  return statements.flatMap((st) => importsOf(st));
}

/** The file a relative specifier names: <spec>.ts or <spec>/index.ts. */
function moduleFile(from: string, spec: string): string | null {
  const base = resolve(dirname(from), spec);
  for (const p of [`${base}.ts`, join(base, 'index.ts')]) if (existsSync(p)) return p;
  return null;
}

test('no source file imports itself at run time through a cycle (a module could run before those it needs)', () => {
  const files = sourceFiles(SRC);
  const edges = new Map(files.map((f) => [f, runtimeImportsOf(readFileSync(f, 'utf8')).flatMap((spec) => moduleFile(f, spec) ?? [])]));
  // Tarjan's strongly connected components: any with two or more files is a cycle
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (stack.includes(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const part: string[] = [];
      let w: string;
      do part.push((w = stack.pop()!));
      while (w !== v);
      if (part.length > 1) cycles.push(part.map((f) => relative(SRC, f)).sort());
    }
  };
  for (const f of files) if (!index.has(f)) visit(f);
  assert.deepEqual(cycles, []);
});

test('type-only imports are not run-time imports', () => {
  const text =
    "// a comment\nimport type { A } from './a';\nimport { type B, type C as D } from './b';\nexport type { E } from './e';\nimport { F, type G } from './f';\nexport { H } from './h';";
  assert.deepEqual(runtimeImportsOf(text), ['./f', './h']);
});

test('the import reader sees static, dynamic and require imports', () => {
  assert.deepEqual(importsOf("import { a } from '../x';\nconst b = await import('./y');\nconst c = require('../../z');\nimport './side';"), [
    '../x',
    './y',
    '../../z',
    './side',
  ]);
  assert.deepEqual(importsOf("import { readFileSync } from 'node:fs';"), []);
});

/** The folders of README's Layout table, row by row (a row may name two: `nn/`, `optim/`). */
export function readmeLayers(readme: string): string[][] {
  const start = readme.indexOf('\n## Layout');
  assert.ok(start >= 0, "README has no '## Layout' section");
  const end = readme.indexOf('\n## ', start + 1);
  return [...readme.slice(start, end).matchAll(/^\| ((?:`[a-z]+\/`(?:, )?)+) \|/gm)].map((m) => [...m[1].matchAll(/`([a-z]+)\/`/g)].map((x) => x[1]));
}

test("README's Layout table: every folder of src/, each listed after the folders it may import", () => {
  const rows = readmeLayers(readFileSync(resolve(SRC, '..', 'README.md'), 'utf8'));
  const rowOf = new Map(rows.flatMap((names, i) => names.map((n) => [n, i] as const)));
  assert.deepEqual([...rowOf.keys()].sort(), Object.keys(MAY_IMPORT).sort());
  const wrong: string[] = [];
  for (const [folder, allowed] of Object.entries(MAY_IMPORT))
    for (const dep of allowed) if (rowOf.get(dep)! > rowOf.get(folder)!) wrong.push(`${folder}/ may import ${dep}/, which README lists after it`);
  assert.deepEqual(wrong, []);
});
