import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pretrainSummary } from '../../src/cli/pretrain-summary';

test('pretrain\'s summary of a run stopped before its first checkpoint says "none yet", not "null"', () => {
  const r = { stoppedBy: 'nonfinite' as const, steps: 3, firstLoss: 1.1649, lastLoss: NaN, outDir: 'runs/x' };
  const text = pretrainSummary({ ...r, checkpoint: null });
  assert.equal(text, 'pretrain diverged (NaN/Inf) after 3 steps; loss 1.1649 → NaN\n  checkpoint: none yet\n  metrics:    runs/x/metrics.jsonl\n');
  assert.match(pretrainSummary({ ...r, checkpoint: 'runs/x/checkpoints/step-00000002' }), /checkpoint: runs\/x\/checkpoints\/step-00000002\n/);
});

test("pretrain's summary of a run whose first logged window diverged says its loss was NaN, not that no loss was logged", () => {
  const text = pretrainSummary({ stoppedBy: 'nonfinite', steps: 2, firstLoss: NaN, lastLoss: NaN, outDir: 'runs/x', checkpoint: null });
  assert.match(text, /^pretrain diverged \(NaN\/Inf\) after 2 steps; loss NaN\n/);
  // a run that logged nothing (stopped before its first step) still says so
  assert.match(pretrainSummary({ stoppedBy: 'signal', steps: 0, firstLoss: NaN, lastLoss: NaN, outDir: 'runs/x', checkpoint: null }), /; no loss logged\n/);
});

test("pretrain's summary prints a path holding a newline quoted and escaped, on its own line", () => {
  const r = { stoppedBy: 'finished' as const, steps: 3, firstLoss: 1, lastLoss: 0.5, outDir: 'runs/a\nb' };
  const text = pretrainSummary({ ...r, checkpoint: 'runs/a\nb/checkpoints/step-00000002' });
  assert.match(text, /\n {2}checkpoint: "runs\/a\\nb\/checkpoints\/step-00000002"\n {2}metrics: {4}"runs\/a\\nb\/metrics\.jsonl"\n$/);
  assert.equal(text.split('\n').length, 4);
});
