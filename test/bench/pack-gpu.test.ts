// scripts/pack-gpu.sh's checks before it packs anything (run in a copy of the script's tree).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inExecTempDir } from '../temp-dir';

const ROOT = join(__dirname, '..', '..', '..');

/** A tree with pack-gpu.sh, one source per folder and its build; `tweak` then makes it stale. */
function packTree(dir: string): void {
  mkdirSync(join(dir, 'scripts'));
  copyFileSync(join(ROOT, 'scripts', 'pack-gpu.sh'), join(dir, 'scripts', 'pack-gpu.sh'));
  const old = new Date(Date.now() - 60_000);
  for (const f of ['src/torch/index', 'test/a.test', 'bench/b']) {
    mkdirSync(join(dir, f, '..'), { recursive: true });
    mkdirSync(join(dir, 'dist', f, '..'), { recursive: true });
    writeFileSync(join(dir, `${f}.ts`), '');
    utimesSync(join(dir, `${f}.ts`), old, old);
    writeFileSync(join(dir, 'dist', `${f}.js`), '');
  }
}

function pack(dir: string): { status: number | null; stderr: string } {
  // A stand-in xz that fails: a pack that gets past the checks stops at its first step.
  mkdirSync(join(dir, 'bin'), { recursive: true });
  writeFileSync(join(dir, 'bin', 'xz'), '#!/bin/sh\necho "xz reached" >&2\nexit 3\n', { mode: 0o755 });
  return spawnSync('bash', ['scripts/pack-gpu.sh'], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, PATH: `${join(dir, 'bin')}:${process.env.PATH}` },
    timeout: 30_000,
  });
}

test(
  'pack-gpu: a source edited or added after the last build is refused before packing (the GPU machine cannot compile it)',
  inExecTempDir('semaim-pack-gpu-', (dir) => {
    packTree(dir);
    const fresh = pack(dir);
    assert.match(fresh.stderr, /xz reached/, `an up-to-date build goes on to pack:\n${fresh.stderr}`);
    rmSync(join(dir, '.gpu'), { recursive: true });
    // edited after the build
    writeFileSync(join(dir, 'src', 'torch', 'index.ts'), 'export const x = 1;');
    let r = pack(dir);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /pack-gpu: dist\/ is older than src\/torch\/index\.ts .*run npm run build first/);
    assert.doesNotMatch(r.stderr, /xz reached/);
    assert.equal(existsSync(join(dir, '.gpu')), false, 'nothing packed');
    // added, never built
    const old = new Date(Date.now() - 60_000);
    utimesSync(join(dir, 'src', 'torch', 'index.ts'), old, old);
    writeFileSync(join(dir, 'test', 'new.test.ts'), '');
    r = pack(dir);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /older than test\/new\.test\.ts/);
  }),
);
