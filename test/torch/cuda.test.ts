// Engine checks on a CUDA device. Skipped where libtorch has no CUDA (CI, laptops); run on a GPU
// machine by scripts/gpu-check.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { F } from '../../src/torch';
import { SemAIM, makeConfig } from '../../src/semaim';
import { AdamW } from '../../src/optim';

const cuda = torch.cuda.isAvailable();
const skip = cuda ? false : 'no CUDA device (libtorch built without CUDA or no GPU)';

function maxAbs(a: torch.Tensor, b: torch.Tensor): number {
  return torch.scope(() => a.float().cpu().sub(b.float().cpu()).abs().max().item());
}

test('tensors move to cuda and back; ops and autograd run there', { skip }, () => {
  torch.scope(() => {
    const a = torch.randn([64, 32], { dtype: 'float64' });
    const g = a.cuda();
    assert.equal(g.device, 'cuda:0');
    const w = torch.randn([32, 16], { dtype: 'float64', device: 'cuda' }).requiresGrad_();
    const y = F.gelu(g.matmul(w)).sum();
    y.backward();
    const wc = w.detach().cpu().requiresGrad_();
    F.gelu(a.matmul(wc)).sum().backward();
    assert.ok(maxAbs(w.grad!, wc.grad!) < 1e-9);
  });
});

test('host data reaches cuda through pinned memory, asynchronously, intact', { skip }, () => {
  torch.scope(() => {
    // Many uploads of different buffers back to back: each staging block may be reused only after
    // its copy has finished, so every device tensor must still hold its own bytes.
    const n = 3 * 64 * 64;
    const uploads = Array.from({ length: 16 }, (_, i) => {
      const bytes = new Uint8Array(n).map((_, j) => (i * 31 + j) & 255);
      return { bytes, dev: torch.tensor(bytes, { shape: [3, 64, 64], dtype: 'uint8', device: 'cuda' }) };
    });
    for (const { bytes, dev } of uploads) assert.deepEqual(dev.cpu().data(), bytes);
    const f = Float32Array.from({ length: 1000 }, (_, j) => j / 7);
    assert.deepEqual(torch.tensor(f, { device: 'cuda' }).cpu().toFloat32Array(), f);
  });
});

test('causal attention on cuda: fused bf16/fp16 and float64 equal the explicit masked softmax', { skip }, () => {
  torch.scope(() => {
    for (const [L, S] of [[64, 64], [63, 64]]) {
      const q = torch.randn([2, 4, L, 32], { dtype: 'float64', device: 'cuda' });
      const k = torch.randn([2, 4, S, 32], { dtype: 'float64', device: 'cuda' });
      const v = torch.randn([2, 4, S, 32], { dtype: 'float64', device: 'cuda' });
      const mask = torch.ones([L, S], { dtype: 'bool', device: 'cuda' }).tril();
      const ref = F.attentionReference(q, k, v, { mask });
      assert.ok(maxAbs(F.scaledDotProductAttention(q, k, v, { causal: true }), ref) < 1e-6, `float64 L=${L} S=${S}`);
      for (const dtype of ['bfloat16', 'float16'] as const) {
        const out = F.scaledDotProductAttention(q.to({ dtype }), k.to({ dtype }), v.to({ dtype }), { causal: true });
        assert.equal(out.dtype, dtype);
        assert.ok(maxAbs(out, ref) < (dtype === 'bfloat16' ? 5e-2 : 1e-2), `${dtype} L=${L} S=${S}: ${maxAbs(out, ref)}`);
      }
    }
  });
});

test('bf16 autocast keeps float32 master weights and float32 grads', { skip }, () => {
  torch.scope(() => {
    const w = torch.randn([32, 32], { device: 'cuda' }).requiresGrad_();
    const x = torch.randn([8, 32], { device: 'cuda' });
    const y = torch.autocast({ device: 'cuda', dtype: 'bfloat16' }, () => F.linear(x, w));
    assert.equal(y.dtype, 'bfloat16');
    y.float().sum().backward();
    assert.equal(w.grad!.dtype, 'float32');
  });
});

test('AdamW on cuda matches AdamW on cpu', { skip }, () => {
  torch.manualSeed(0);
  const pc = torch.keep(torch.randn([16, 8], { dtype: 'float64' }).requiresGrad_());
  const pg = torch.keep(pc.detach().cuda().requiresGrad_());
  const oc = new AdamW([['w', pc]], { lr: 1e-2 });
  const og = new AdamW([['w', pg]], { lr: 1e-2 });
  for (let i = 0; i < 5; i++) {
    torch.scope(() => {
      const g = torch.randn([16, 8], { dtype: 'float64' });
      pc.grad = g.clone();
      pg.grad = g.cuda();
    });
    oc.step();
    og.step();
  }
  assert.ok(maxAbs(pc, pg) < 1e-12);
});

test('SemAIM fast path equals the masked reference on cuda and its step runs in bf16', { skip }, () => {
  torch.manualSeed(1);
  const model = new SemAIM(makeConfig('vit_tiny', { imgSize: 32, patchSize: 4, embedDim: 64, depth: 4, numHeads: 4, decoderDepth: 4 })).initWeights();
  model.to({ device: 'cuda' });
  torch.scope(() => {
    const images = torch.randn([4, 3, 32, 32], { device: 'cuda' });
    const { order } = model.makeOrder(images);
    const a = model.forward(images, order).loss.item();
    const b = model.forward(images, order, { path: 'reference' }).loss.item();
    assert.ok(Math.abs(a - b) < 1e-4 * Math.abs(b), `${a} vs ${b}`);
    const c = torch.autocast({ device: 'cuda', dtype: 'bfloat16' }, () => model.forward(images, order).loss);
    c.backward();
    assert.ok(Number.isFinite(c.item()) && Math.abs(c.item() - b) < 0.05 * Math.abs(b));
  });
  model.dispose();
});
