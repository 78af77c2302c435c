// Issue 19's verdict in the pre-training benchmark's docs section (bench/targets.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { issue19Verdict } from '../../bench/targets';

const GiB = 2 ** 30;

test('targets: issue 19 is met only at ≥ 3.0× within 37.8 GiB of peak GPU memory', () => {
  assert.equal(issue19Verdict(3.1, 36.76 * GiB), 'met');
  assert.equal(issue19Verdict(2.7, 37.8 * GiB), 'milestone met');
  assert.equal(issue19Verdict(2.35, 37.9 * GiB), 'NOT met');
  // the speed alone does not make the target: 37.90 GiB (a measured CUDA-graph side) is over the bound
  assert.match(issue19Verdict(3.1, 37.9 * GiB), /^NOT met/);
  assert.match(issue19Verdict(2.7, 40 * GiB), /^NOT met/);
  assert.match(issue19Verdict(3.1, undefined), /^NOT met/);
});
