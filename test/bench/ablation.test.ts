// bench/ablation.ts's command line: what it refuses before measuring (it runs as a script: dist/bench/ablation.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

const SCRIPT = path.join(__dirname, '..', '..', 'bench', 'ablation.js');

test('bench:ablation: an --only naming no part of it is refused before anything is measured', () => {
  // Before: no part ran, the body was the date line alone, exit 0, and --write-docs replaced the recorded
  // tables of the ablation section by it.
  const r = spawnSync(process.execPath, [SCRIPT, '--quick', '--only', 'steps'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 2, `exit ${r.status}\n${r.stderr}`);
  assert.match(r.stderr, /--only steps: not one of step, threads, batch, eval/);
  assert.equal(r.stdout, '');
});

test('bench:ablation: a PyTorch side whose Python cannot be started is reported with the reason, not as "failed: null"', () => {
  // Before: spawnSync's error (ENOENT) was not read; the stderr it leaves is null, and the benchmark ended with "... failed:\nnull".
  const r = spawnSync(process.execPath, [SCRIPT, '--quick', '--only', 'step'], {
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, SEMAIM_PYTHON: '/nonexistent/python3' },
  });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /failed: spawnSync \/nonexistent\/python3 ENOENT \(SEMAIM_PYTHON names the Python with torch\)/);
});
