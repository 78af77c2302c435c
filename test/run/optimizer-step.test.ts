// optimizerStep, the update pretrain and finetune share: with fp16 loss scaling the gradients are unscaled
// before they are clipped, so the clip threshold and the logged norm are the true gradients', and the
// update is the one an unscaled step makes; then the gradients are cleared and the EMA copy updated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { GradScaler, SGD } from '../../src/optim';
import { optimizerStep } from '../../src/run/optimizer-step';

function oneStep(
  scaled: boolean,
  o: { clipGrad?: number; measureNorm?: boolean; clearGrads?: boolean } = {},
): { norm: number | null; w: number[]; grad: number[]; emaUpdates: number } {
  const w = torch.keep(torch.tensor([3, 4], { requiresGrad: true }));
  const opt = new SGD([['w', w]], { lr: 0.1 });
  const scaler = scaled ? new GradScaler({ initScale: 1024 }) : null;
  let emaUpdates = 0;
  try {
    const norm = torch.scope(() => {
      // gradient [30, 40]: norm 50
      const loss = w.mul(torch.tensor([30, 40])).sum();
      (scaler ? scaler.scale(loss) : loss).backward();
      const n = optimizerStep({ optimizer: opt, scaler, params: [['w', w]], clipGrad: o.clipGrad ?? 1, ema: { update: () => emaUpdates++ }, ...o });
      return n && n.item();
    });
    const grad = w.grad ? Array.from(w.grad.toFloat32Array()) : [];
    return { norm, w: Array.from(w.toFloat32Array()), grad, emaUpdates };
  } finally {
    opt.dispose();
    scaler?.dispose();
    w.dispose();
  }
}

test('optimizerStep with loss scaling unscales before clipping: the norm is the true one and the update that of an unscaled step', () => {
  const plain = oneStep(false);
  assert.ok(Math.abs(plain.norm! - 50) < 1e-4, `norm ${plain.norm}`);
  // clipped to norm 1: [0.6, 0.8], times lr 0.1
  plain.w.forEach((v, i) => assert.ok(Math.abs(v - [3 - 0.06, 4 - 0.08][i]) < 1e-6, `w ${plain.w}`));
  const scaled = oneStep(true);
  assert.ok(Math.abs(scaled.norm! - 50) < 1e-4, `the norm of the unscaled gradients, not the scaled ones: ${scaled.norm}`);
  scaled.w.forEach((v, i) => assert.ok(Math.abs(v - plain.w[i]) < 1e-6, `w ${scaled.w} vs ${plain.w}`));
  for (const r of [plain, scaled]) {
    assert.ok(
      r.grad.every((g) => g === 0),
      `gradients cleared: ${r.grad}`,
    );
    assert.equal(r.emaUpdates, 1, 'the EMA copy updated once');
  }
});

test('optimizerStep with --clip-grad 0 does not clip: the norm only when asked to measure it; clearGrads false leaves the gradients', () => {
  for (const scaled of [false, true]) {
    // the whole gradient [30, 40] times lr 0.1
    const unclipped = oneStep(scaled, { clipGrad: 0 });
    unclipped.w.forEach((v) => assert.ok(Math.abs(v) < 1e-5, `w ${unclipped.w}`));
    assert.equal(unclipped.norm, null, 'not measured');
    const measured = oneStep(scaled, { clipGrad: 0, measureNorm: true });
    assert.ok(Math.abs(measured.norm! - 50) < 1e-4, `norm ${measured.norm}`);
    measured.w.forEach((v) => assert.ok(Math.abs(v) < 1e-5, `w ${measured.w}`));
  }
  const kept = oneStep(false, { clipGrad: 0, clearGrads: false });
  assert.deepEqual(kept.grad, [30, 40], 'the gradients left for a replayed CUDA graph to overwrite');
});
