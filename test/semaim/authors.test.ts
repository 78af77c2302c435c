// The authors'-style reference (bench/pretrain_authors.py: explicit -inf masks, tokens in image
// order, the per-step no-grad forward_encoder pass) and our fast path are the same math: the golden
// files of scripts/golden_authors.py hold initial weights, images and each step's order noise; the TS
// model must reproduce the reference's semantic order values and its per-step losses over 5 steps of
// clip 3 + AdamW, in float64 (1e-8: measured 2e-10, the fixed position embedding and blur kernel are
// rounded to float32 on both sides, differently) and in float32 (1e-5; measured 2e-7).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { loadTensors } from '../../src/io';
import { SemAIM, SemAIMConfig } from '../../src/semaim';
import { AdamW, clipGradNorm, paramGroupsWeightDecay } from '../../src/optim';

const GOLDEN = join(__dirname, '..', '..', '..', 'test', 'golden', 'semaim');

interface AuthorsConfig {
  imgSize: number;
  patchSize: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  decoderDepth: number;
  order: { type: 'semantic'; filter: boolean; lambda: number };
  lr: number;
  betas: [number, number];
  weightDecay: number;
  clip: number;
  steps: number;
}

function replay(name: string, dtype: 'float64' | 'float32'): { losses: number[]; expect: number[]; orderErr: number[] } {
  const { tensors, metadata } = loadTensors(join(GOLDEN, `${name}.safetensors`), { device: torch.getDefaultDevice() });
  const g = JSON.parse(metadata.config) as AuthorsConfig;
  const expect = JSON.parse(dtype === 'float64' ? metadata.losses_f64 : metadata.losses_f32) as number[];
  const cfg: SemAIMConfig = {
    imgSize: g.imgSize,
    patchSize: g.patchSize,
    embedDim: g.embedDim,
    depth: g.depth,
    numHeads: g.numHeads,
    mlpRatio: g.mlpRatio,
    decoderDepth: g.decoderDepth,
    order: { type: 'semantic', source: 'online', filter: g.order.filter, lambda: g.order.lambda },
    target: { type: 'pixels', normPix: true, blur: true, blurKernel: 9, blurSigma: 1 },
  };
  const model = new SemAIM(cfg).to({ dtype });
  const params = new Map(model.namedParameters());
  for (const k of params.keys()) assert.ok(tensors.has(k), `${name}: ${k} missing from the golden file`);
  model.loadStateDict(new Map([...tensors].filter(([k]) => params.has(k))), { strict: false });
  const groups = paramGroupsWeightDecay(model.namedParameters(), { weightDecay: g.weightDecay, noWeightDecay: ['cls_token', 'pos_embed'] });
  const optimizer = new AdamW(groups, { lr: g.lr, betas: g.betas, weightDecay: g.weightDecay });
  const images = torch.keep(tensors.get('input.images')!.to({ dtype }));
  const noise = tensors.get('input.noise')!;
  const expectOrder = tensors.get('expect.order')!;
  const losses: number[] = [];
  const orderErr: number[] = [];
  for (let s = 0; s < g.steps; s++) {
    torch.scope(() => {
      const { order } = model.makeOrder(images, { noise: noise.select(0, s).to({ dtype }) });
      orderErr.push(order.to({ dtype: 'float64' }).sub(expectOrder.select(0, s)).abs().max().item());
      const out = model.forward(images, order); // the fast path: tokens gathered into order, causal attention
      out.loss.backward();
      losses.push(out.loss.item());
    });
    torch.scope(() => {
      clipGradNorm(model.namedParameters(), g.clip);
      optimizer.step();
      optimizer.zeroGrad();
    });
  }
  optimizer.dispose();
  images.dispose();
  for (const t of tensors.values()) t.dispose();
  model.dispose();
  return { losses, expect, orderErr };
}

for (const name of ['authors_paper', 'authors_code']) {
  for (const [dtype, tol, orderTol] of [
    ['float64', 1e-8, 1e-12],
    ['float32', 1e-5, 1e-5],
  ] as const) {
    test(`${name} (${dtype}): our fast path reproduces the authors'-style masked reference over 5 AdamW steps`, () => {
      // The reference is IEEE float32: keep cuDNN's TF32 convolutions (PyTorch's default on a GPU) out of it.
      const tf32 = torch.backends.cudnn.allowTF32;
      torch.backends.cudnn.allowTF32 = false;
      let r: ReturnType<typeof replay>;
      try {
        r = replay(name, dtype);
      } finally {
        torch.backends.cudnn.allowTF32 = tf32;
      }
      const { losses, expect, orderErr } = r;
      assert.equal(losses.length, expect.length);
      orderErr.forEach((e, s) => assert.ok(e < orderTol, `step ${s}: order values differ by ${e}`));
      losses.forEach((l, s) => {
        const rel = Math.abs(l - expect[s]) / Math.abs(expect[s]);
        assert.ok(rel < tol, `step ${s}: loss ${l} vs reference ${expect[s]} (rel ${rel.toExponential(2)})`);
      });
      assert.ok(expect[expect.length - 1] < expect[0], 'the reference loss decreases');
    });
  }
}
