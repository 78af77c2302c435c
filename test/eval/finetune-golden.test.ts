// Whole fine-tuning steps against an independent reference: scripts/golden_finetune.py (Debian's torch
// 1.13, float64, written from MAE's models_vit / lr_decay / lr_sched / engine_finetune and timm's Mixup
// and SoftTargetCrossEntropy) wrote test/golden/finetune/steps.json: 4 AdamW steps of a tiny ViT
// (avg pool → fc_norm → head) with layer decay 0.65, weight decay 0.05, warm-up + cosine per step (lr 0,
// ½, 1, then cosine), mixup and cutmix with label smoothing 0.1. Here semaim's own step
// (finetuneStep: the optimiser, schedule, mixing and loss `semaim finetune` uses) runs in semaim's own
// loop (trainLoop) in float64 on the CPU from the same weights, images and labels, and must give the
// same loss at every step and the same final weights. The mixing draws are not fed in: semaim makes
// them from --seed 7 as `finetune` does, and the test checks they are the ones the reference was given.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { Tensor } from '../../src/torch';
import { resolveOptions } from '../../src/util/options';
import { FINETUNE_OPTIONS } from '../../src/eval/options';
import { ViTClassifier } from '../../src/eval/classifier';
import { FinetuneStep, finetuneStep } from '../../src/eval/finetune';
import { MixParams } from '../../src/eval/mix';
import { peakLr } from '../../src/optim';
import { trainLoop } from '../../src/run/loop';
import type { LabelledBatch } from '../../src/data';
import { cpuOnly } from '../torch/helpers';

interface Golden {
  torch: string;
  model: {
    img_size: number;
    patch_size: number;
    in_chans: number;
    embed_dim: number;
    depth: number;
    num_heads: number;
    mlp_ratio: number;
    num_classes: number;
  };
  options: Record<string, number>;
  stepsPerEpoch: number;
  labels: number[][];
  mix: { mode: 'mixup' | 'cutmix'; lam?: number; box?: MixParams['box'] }[];
  groups: { name: string; lr_scale: number; weight_decay: number; params: string[] }[];
  initialSums: Record<string, number>;
  steps: { lr: number; lam: number; loss: number; logits: number[] }[];
  final: Record<string, { shape: number[]; every: number; values: number[]; sum: number; sumsq: number; maxUpdate: number }>;
}

const golden = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'test', 'golden', 'finetune', 'steps.json'), 'utf8')) as Golden;

/** scripts/golden_finetune.py's initial_value: element `index` of parameter `name`, the t-th in sorted name order. */
function initialValue(name: string, index: number, t: number, shape: number[]): number {
  const u = ((index * 37 + t * 101 + 17) % 251) - 125;
  if (name === 'cls_token') return u / 4096;
  if (name === 'pos_embed') return u / 1024;
  if (/(norm1|norm2|fc_norm)\.weight$/.test(name)) return 1 + u / 1024;
  if (shape.length === 1) return u / 2048;
  return u / 512;
}

/** scripts/golden_finetune.py's images_of: step `step`'s images, multiples of 1/64 (exact in float32). */
function batchOf(step: number): LabelledBatch {
  const { batchSize: B } = golden.options;
  const { in_chans: C, img_size: S } = golden.model;
  const images = new Float32Array(B * C * S * S);
  for (let i = 0; i < images.length; i++) images[i] = (((i * 29 + step * 7919 + 3) % 253) - 126) / 64;
  return { images, shape: [B, C, S, S], labels: Int32Array.from(golden.labels[step]) };
}

const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);

test("semaim finetune's step, 4 times, equals MAE/timm's (PyTorch, float64): the loss at every step and the final weights", { skip: cpuOnly }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-golden-'));
  const m = golden.model;
  const o = resolveOptions(FINETUNE_OPTIONS, {
    checkpoint: 'golden',
    outDir: join(dir, 'run'),
    ...golden.options,
    device: 'cpu',
    precision: 'fp32',
    threads: 1,
    logEvery: 1,
    evalEvery: 0,
  });
  const steps = golden.steps.length;
  const perEpoch = golden.stepsPerEpoch;
  const model = new ViTClassifier({
    imgSize: m.img_size,
    patchSize: m.patch_size,
    inChans: m.in_chans,
    embedDim: m.embed_dim,
    depth: m.depth,
    numHeads: m.num_heads,
    mlpRatio: m.mlp_ratio,
    dropPath: o.dropPath,
    numClasses: m.num_classes,
    pool: 'avg',
  }).to({ dtype: 'float64' });
  const sorted = [...model.namedParameters()].map(([name]) => name).sort();
  let step: FinetuneStep | null = null;
  try {
    // ---- the same initial weights as the reference (every parameter, by timm name)
    assert.deepEqual(sorted, Object.keys(golden.final).sort(), "the parameters are the reference model's (timm names: fc_norm, no norm)");
    torch.noGrad(() => {
      for (const [name, p] of model.namedParameters()) {
        const values = Float64Array.from({ length: p.numel }, (_, i) => initialValue(name, i, sorted.indexOf(name), p.shape));
        torch.scope(() => p.copy_(torch.tensor(values, { shape: p.shape })));
      }
    });
    for (const [name, p] of model.namedParameters()) {
      const sum = torch.scope(() => p.sum().item());
      const want = golden.initialSums[name];
      assert.ok(Math.abs(sum - want) <= 1e-12 * Math.max(1, Math.abs(want)), `${name}: initial sum ${sum}, reference ${want}`);
    }
    const lr = peakLr(o, o.batchSize * o.accumIter);
    step = finetuneStep(model, o, lr, 'cpu');
    const { optimizer, loss: stepLoss } = step;

    // ---- MAE's groups: every parameter with its lr scale and weight decay (a failure here names the wiring)
    const ours = new Map<string, { lrScale: number; weightDecay: number }>();
    for (const g of optimizer.paramGroups) for (const [name] of g.params) ours.set(name, { lrScale: g.lrScale, weightDecay: g.weightDecay });
    assert.equal(ours.size, sorted.length, 'every parameter is trained');
    for (const g of golden.groups) {
      for (const name of g.params) {
        const s = ours.get(name);
        assert.ok(s, `${name} is in no optimiser group`);
        assert.ok(relDiff(s.lrScale, g.lr_scale) < 1e-14, `${name}: lr scale ${s.lrScale}, MAE's param_groups_lrd ${g.lr_scale} (${g.name})`);
        assert.equal(s.weightDecay, g.weight_decay, `${name}: weight decay ${s.weightDecay}, MAE's ${g.weight_decay} (${g.name})`);
      }
    }

    // ---- run: semaim's loop over its step; recorded: the mixing draws, the logits, the losses, the group lrs
    const draws: MixParams[] = [];
    const mixup = step.mixup;
    const params = mixup.params.bind(mixup);
    mixup.params = (H, W) => {
      const p = params(H, W);
      draws.push(p);
      return p;
    };
    const logits: number[][] = [];
    const forward = model.forward.bind(model);
    model.forward = (images: Tensor) => {
      assert.equal(images.dtype, 'float64', "the step runs in the model's dtype");
      const out = forward(images);
      logits.push([...out.toFloat64Array()]);
      return out;
    };
    const losses: number[] = [];
    const lrs: [string, number][][] = [];
    const logged: number[] = [];
    const r = await trainLoop<LabelledBatch>(
      {
        kind: 'finetune',
        model,
        optimizer,
        schedule: step.schedule,
        scaler: null,
        ema: null,
        generators: { mix: step.mixGen },
        config: model.cfg,
        options: o,
        optionTable: FINETUNE_OPTIONS,
        batchesPerEpoch: perEpoch,
        async *batches(epoch, start) {
          for (let b = start; b < perEpoch && epoch * perEpoch + b < steps; b++) yield batchOf(epoch * perEpoch + b);
        },
        batchSize: (b) => b.shape[0],
        loss(batch) {
          const loss = stepLoss(batch);
          assert.equal(loss.dtype, 'float64');
          losses.push(loss.item());
          return loss;
        },
        best: { score: () => null, lowerIsBetter: false },
      },
      { ...o, device: 'cpu', group: null },
      {
        log: () => {},
        progress: false,
        catchSignals: false,
        onStep: () => lrs.push(optimizer.paramGroups.map((g) => [g.params[0][0], g.lr])),
        onMetrics: (rec) => {
          if (typeof rec.loss === 'number') logged.push(rec.loss);
        },
      },
    );
    assert.equal(r.steps, steps);
    assert.equal(r.stoppedBy, 'maxSteps');

    // the draws finetune makes with --seed 7 are the ones the reference was given
    assert.equal(draws.length, steps);
    for (const [k, d] of draws.entries()) {
      const g = golden.mix[k];
      assert.equal(d.mode, g.mode, `step ${k + 1}: mixing mode`);
      if (g.mode === 'mixup') assert.equal(d.lam, g.lam, `step ${k + 1}: mixup λ`);
      else assert.deepEqual(d.box, g.box, `step ${k + 1}: cutmix box`);
      // cutmix: semaim's λ (from the box) against the reference's correct_lam
      assert.ok(relDiff(d.lam, golden.steps[k].lam) < 1e-15, `step ${k + 1}: λ ${d.lam}, reference ${golden.steps[k].lam}`);
    }
    // the lr of each step, set before it (MAE's adjust_learning_rate at data_iter_step / len + epoch)
    const scaleOf = new Map(golden.groups.flatMap((g) => g.params.map((n) => [n, g.lr_scale] as const)));
    assert.equal(lrs.length, steps);
    for (const [k, row] of lrs.entries()) {
      for (const [name, lr] of row) {
        const want = golden.steps[k].lr * scaleOf.get(name)!;
        assert.ok(Math.abs(lr - want) <= 1e-15 * want, `step ${k + 1}: lr of ${name}'s group ${lr}, reference ${want}`);
      }
    }

    const report: string[] = [];
    // ---- the logits and the loss of every step
    let worstLogit = 0;
    let worstLoss = 0;
    for (let k = 0; k < steps; k++) {
      const want = golden.steps[k];
      const dl = Math.max(...logits[k].map((v, i) => Math.abs(v - want.logits[i])));
      worstLogit = Math.max(worstLogit, dl);
      assert.ok(dl < 1e-11, `step ${k + 1}: logits differ by ${dl}`);
      const d = relDiff(losses[k], want.loss);
      worstLoss = Math.max(worstLoss, d);
      assert.ok(d < 1e-12, `step ${k + 1}: loss ${losses[k]}, reference ${want.loss} (relative difference ${d})`);
      assert.ok(relDiff(logged[k], want.loss) < 1e-6, `step ${k + 1}: metrics.jsonl's loss ${logged[k]} (the loss window is float32)`);
    }
    report.push(`logits ${worstLogit.toExponential(2)} abs, loss ${worstLoss.toExponential(2)} rel`);

    // ---- the final weights: the recorded elements, and the sum and sum of squares of the sampled tensors
    // The key part of each qkv bias (elements D..2D−1) has no gradient in exact arithmetic: it adds q·b_k to
    // every logit of a softmax row, which the softmax ignores. Its computed gradient is rounding noise
    // (~1e-17) that AdamW's m̂/(√v̂ + ε) scales up to about lr × noise / ε ≈ 1e-11, differently on either
    // side: those elements must stay where they started (within 1e-8, a millionth of the other updates) on both; every other element must
    // agree to 1e-12 of the tensor's largest value and 1e-9 of its largest update.
    const D = m.embed_dim;
    const noGradient = (name: string, i: number) => /^blocks\.\d+\.attn\.qkv\.bias$/.test(name) && i >= D && i < 2 * D;
    let worstRel = 0;
    let worstOfUpdate = 0;
    let worstStill = 0;
    for (const [name, p] of model.namedParameters()) {
      const want = golden.final[name];
      const all = p.toFloat64Array();
      assert.equal(Math.ceil(all.length / want.every), want.values.length, name);
      let d = 0;
      for (const [j, w] of want.values.entries()) {
        const i = j * want.every;
        if (noGradient(name, i)) {
          const start = initialValue(name, i, sorted.indexOf(name), p.shape);
          const moved = Math.max(Math.abs(all[i] - start), Math.abs(w - start));
          worstStill = Math.max(worstStill, moved);
          assert.ok(moved < 1e-8, `${name}[${i}] (a key bias, no gradient) moved by ${moved}`);
        } else d = Math.max(d, Math.abs(all[i] - w));
      }
      const scale = Math.max(...want.values.map(Math.abs));
      worstRel = Math.max(worstRel, d / scale);
      worstOfUpdate = Math.max(worstOfUpdate, d / want.maxUpdate);
      assert.ok(
        d <= 1e-12 * scale && d <= 1e-9 * want.maxUpdate,
        `${name}: final values differ by ${d} (largest value ${scale}, largest update ${want.maxUpdate})`,
      );
      if (want.every === 1) continue; // every value compared
      const sum = all.reduce((a, v) => a + v, 0);
      const sumsq = all.reduce((a, v) => a + v * v, 0);
      assert.ok(Math.abs(sum - want.sum) <= 1e-12 * Math.max(1, Math.abs(want.sum)), `${name}: sum ${sum}, reference ${want.sum}`);
      assert.ok(relDiff(sumsq, want.sumsq) < 1e-12, `${name}: sum of squares ${sumsq}, reference ${want.sumsq}`);
    }
    report.push(
      `weights ${worstRel.toExponential(2)} of the largest value, ${worstOfUpdate.toExponential(2)} of the largest update; key biases moved ${worstStill.toExponential(2)}`,
    );
    t.diagnostic(`max differences: ${report.join('; ')}`);
  } finally {
    step?.optimizer.dispose();
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});
