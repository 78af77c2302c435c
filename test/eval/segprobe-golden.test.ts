// The segmentation head against PyTorch: scripts/golden_segprobe.py (Debian's torch 1.13) wrote
// test/golden/segprobe/head.json — bilinear upsampling of logit maps (align_corners = False) and the
// whole head in training mode (BatchNorm, per-patch Linear, upsampling, cross-entropy with ignore
// index 255) with the gradients of its Linear. Compared in float64.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { F } from '../../src/torch';
import { SegLinearHead, upsampleLogits } from '../../src/eval/seg-head';
import { maxDiff } from './helpers';

interface Encoded {
  shape: number[];
  data: number[];
}
interface UpCase {
  input: Encoded;
  size: [number, number];
  output: Encoded;
}
interface HeadCase {
  tokens: Encoded;
  weight: Encoded;
  bias: Encoded;
  target: Encoded;
  grid: [number, number];
  size: [number, number];
  logits: Encoded;
  loss: number;
  gradWeight: Encoded;
  gradBias: Encoded;
}

const golden = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'test', 'golden', 'segprobe', 'head.json'), 'utf8')) as {
  torch: string;
  cases: Record<string, UpCase | HeadCase>;
};
const f64 = (e: Encoded) => torch.tensor(Float64Array.from(e.data), { shape: e.shape });

test('logit upsampling matches torch F.interpolate(bilinear, align_corners=False)', () => {
  for (const name of ['upsample_patch_grid', 'upsample_odd', 'upsample_demo']) {
    const c = golden.cases[name] as UpCase;
    torch.scope(() => {
      const out = upsampleLogits(f64(c.input), c.size);
      assert.deepEqual(out.shape, c.output.shape);
      const d = maxDiff(out.toFloat64Array(), c.output.data);
      assert.ok(d < 1e-12, `${name}: max diff ${d}`);
    });
  }
});

test('the head (BatchNorm, Linear per patch, upsampling, cross-entropy ignoring 255) and its gradients match torch', () => {
  const c = golden.cases.head as HeadCase;
  const [B, N, D] = c.tokens.shape;
  const C = c.weight.shape[0];
  const head = new SegLinearHead(D, C).to({ dtype: 'float64' });
  try {
    torch.scope(() => {
      torch.noGrad(() => {
        head.linear.weight.copy_(f64(c.weight));
        head.linear.bias!.copy_(f64(c.bias));
      });
      head.train();
      const target = torch.tensor(BigInt64Array.from(c.target.data.map(BigInt)), { shape: c.target.shape });
      const logits = head.forward(f64(c.tokens), c.grid, c.size);
      assert.deepEqual(logits.shape, [B, C, ...c.size]);
      assert.ok(N === c.grid[0] * c.grid[1]);
      const dl = maxDiff(logits.toFloat64Array(), c.logits.data);
      assert.ok(dl < 1e-10, `logits: max diff ${dl}`);
      const loss = F.crossEntropy(logits, target, { ignoreIndex: 255 });
      assert.ok(Math.abs(loss.item() - c.loss) < 1e-12, `loss ${loss.item()} vs ${c.loss}`);
      loss.backward();
      const gw = maxDiff(head.linear.weight.grad!.toFloat64Array(), c.gradWeight.data);
      const gb = maxDiff(head.linear.bias!.grad!.toFloat64Array(), c.gradBias.data);
      assert.ok(gw < 1e-12 && gb < 1e-12, `gradients: weight ${gw}, bias ${gb}`);
    });
  } finally {
    head.dispose();
  }
});
