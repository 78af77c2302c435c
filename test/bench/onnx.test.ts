// bench/onnx.ts's statistics (the script's main runs only when it is started as a script).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { median } from '../../bench/onnx';

test('bench:onnx: the median of an even number of runs is the mean of the two middle ones', () => {
  // Before: the upper middle value (--runs 4 reported the third fastest run as the median).
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([7]), 7);
});

test('bench:onnx: the printed command reproduces the run, --models included', () => {
  // Before: 'npm run bench:onnx -- --threads 1 --runs 1', which exports vit_small and vit_base instead.
  const script = path.join(__dirname, '..', '..', 'bench', 'onnx.js');
  const r = spawnSync(process.execPath, [script, '--models', 'vit_tiny', '--runs', '1', '--threads', '1'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Command: npm run bench:onnx -- --threads 1 --runs 1 --models vit_tiny\n/);
  assert.match(r.stdout, /\| vit_tiny\/16 \(5\.\d M\) \| float32 \|/);
});
