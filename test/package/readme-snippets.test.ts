// The README's TypeScript blocks (and docs/DISTRIBUTED.md's, below) are code a user copies: each is type-checked (strict, against the
// package's entry points) and run, with `semaim` resolved to this checkout's compiled package.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ts from 'typescript';
import { ROOT, packageProject, typeErrors } from './type-check';

function readmeBlocks(): string[] {
  const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
  return [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** A block as a module: its imports at the top, the rest inside an async function (for top-level await). */
function asModule(block: string): string {
  const lines = block.split('\n');
  const imports = lines.filter((l) => l.startsWith('import '));
  const body = lines.filter((l) => !l.startsWith('import '));
  return `${imports.join('\n')}\nexport async function main(): Promise<void> {\n${body.join('\n')}\n}\nvoid main();\n`;
}

test("the README's TypeScript blocks type-check (strict) against the package and run", { timeout: 10 * 60_000 }, () => {
  const blocks = readmeBlocks();
  assert.ok(blocks.length >= 2, `found ${blocks.length} blocks`);
  const work = packageProject('semaim-readme-');
  try {
    const files = blocks.map((b, i) => {
      const f = join(work, `block${i}.ts`);
      writeFileSync(f, asModule(b));
      return f;
    });
    assert.deepEqual(typeErrors(files), [], 'type errors in the README blocks');
    for (const [i, f] of files.entries()) {
      const js = ts.transpileModule(readFileSync(f, 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
      }).outputText;
      writeFileSync(join(work, `block${i}.js`), js);
      const r = spawnSync(process.execPath, [join(work, `block${i}.js`)], { cwd: work, encoding: 'utf8', timeout: 5 * 60_000 });
      assert.equal(r.status, 0, `README block ${i} failed:\n${r.stderr}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

// docs/DISTRIBUTED.md's API block is a fragment (a model, data and an optimiser of the reader's own):
// it is type-checked against the package with those free names declared, not run.
const DISTRIBUTED_PRELUDE = `
declare const device: 'cpu';
declare const model: SemAIM;
declare const encoder: VisionTransformer;
declare const B: number, batchSize: number, numClasses: number;
declare const myShardOfTheData: { images: Tensor }[];
declare const optimizer: { step(): void; zeroGrad(): void };
declare const microLoss: Tensor;
declare const myTrainSlice: data.LabelledData, myTestSlice: data.LabelledData;
declare const probeOptions: LinprobeOptions;
`;

test("docs/DISTRIBUTED.md's TypeScript block type-checks (strict) against the package", { timeout: 5 * 60_000 }, () => {
  const text = readFileSync(join(ROOT, 'docs', 'DISTRIBUTED.md'), 'utf8');
  const blocks = [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.equal(blocks.length, 1, `found ${blocks.length} blocks`);
  const work = packageProject('semaim-dist-doc-');
  try {
    const lines = blocks[0].split('\n');
    const imports = lines.filter((l) => l.startsWith('import '));
    const body = lines.filter((l) => !l.startsWith('import '));
    const source =
      `${imports.join('\n')}\nimport type { SemAIM, Tensor, VisionTransformer, data, LinprobeOptions } from 'semaim';\n${DISTRIBUTED_PRELUDE}\n` +
      `export async function main(): Promise<void> {\n${body.join('\n')}\n}\n`;
    const file = join(work, 'distributed.ts');
    writeFileSync(file, source);
    assert.deepEqual(typeErrors([file]), [], 'type errors in the DISTRIBUTED.md block');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
