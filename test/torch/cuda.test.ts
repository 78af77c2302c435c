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
    const a = torch.randn([64, 32], { dtype: 'float64', device: 'cpu' });
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
    for (const [L, S] of [
      [64, 64],
      [63, 64],
    ]) {
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

test('seeded draws on cuda equal the same draws on cpu (drawn on the host, copied without blocking)', { skip }, () => {
  torch.scope(() => {
    const draws: [string, (device: torch.Device, g: torch.Generator) => torch.Tensor][] = [
      ['rand', (device, g) => torch.rand([5, 7], { device, generator: g })],
      ['randn', (device, g) => torch.randn([5, 7], { device, generator: g, dtype: 'float64' })],
      ['randint', (device, g) => torch.randint(0, 100, [5, 7], { device, generator: g })],
      ['randperm', (device, g) => torch.randperm(37, { device, generator: g })],
      ['bernoulli', (device, g) => torch.bernoulli(torch.zeros([5, 7], { device }), 0.3, { generator: g })],
      ['uniform_', (device, g) => torch.zeros([5, 7], { device }).uniform_(-2, 3, g)],
      ['normal_', (device, g) => torch.zeros([5, 7], { device }).normal_(1, 2, g)],
    ];
    for (const [name, draw] of draws) {
      const a = draw('cpu', new torch.Generator(42));
      const b = draw('cuda', new torch.Generator(42));
      assert.equal(b.device, 'cuda:0', name);
      assert.deepEqual(Array.from(b.cpu().toFloat64Array()), Array.from(a.toFloat64Array()), name);
    }
  });
});

test('pretrain runs on cuda: uint8 uploads, bf16 (auto), checkpoints and resume', { skip }, async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { pretrain } = await import('../../src/train/pretrain');
  const { makeTrainData } = await import('../../src/data');
  const { PRETRAIN_OPTIONS, trainDataRequest } = await import('../../src/train/pretrain-options');
  const { resolveOptions } = await import('../../src/util/options');
  const dir = mkdtempSync(join(tmpdir(), 'semaim-cuda-'));
  const o = (extra: Record<string, unknown>) =>
    resolveOptions(PRETRAIN_OPTIONS, {
      model: 'vit_tiny',
      imgSize: 32,
      patchSize: 4,
      embedDim: 64,
      depth: 4,
      numHeads: 4,
      decoderDepth: 4,
      dataset: 'synthetic',
      syntheticSize: 64,
      numWorkers: 1,
      batchSize: 16,
      epochs: 2,
      warmupEpochs: 0,
      blr: 1e-3,
      logEvery: 2,
      checkpointEvery: 2,
      device: 'cuda',
      outDir: dir,
      seed: 1,
      ...extra,
    });
  try {
    const first = await pretrain(o({ maxSteps: 4 }), makeTrainData(trainDataRequest(o({}))), { log: () => {} });
    assert.equal(o({}).precision, 'bf16');
    assert.equal(o({}).upload, 'uint8');
    assert.equal(first.steps, 4);
    assert.ok(Number.isFinite(first.lastLoss) && first.lastLoss < first.firstLoss * 1.5, `${first.firstLoss} → ${first.lastLoss}`);
    const resumed = await pretrain(o({ maxSteps: 6 }), makeTrainData(trainDataRequest(o({}))), { log: () => {} });
    assert.equal(resumed.steps, 6);
    const fp16 = await pretrain(o({ maxSteps: 2, precision: 'fp16', outDir: join(dir, 'fp16') }), makeTrainData(trainDataRequest(o({}))), { log: () => {} });
    assert.ok(Number.isFinite(fp16.lastLoss), 'fp16 with loss scaling');
    assert.ok(torch.cuda.memory().peakAllocated > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the global CUDA generator state round-trips (checkpointed for drop path and other unseeded draws)', { skip }, () => {
  torch.scope(() => {
    torch.manualSeed(3);
    const state = torch.cuda.getRngState(0);
    assert.equal(state.device, 'cpu');
    const a = torch.rand([1000], { device: 'cuda' }).cpu().toFloat32Array();
    torch.rand([77], { device: 'cuda' });
    torch.cuda.setRngState(state, 0);
    assert.deepEqual(torch.rand([1000], { device: 'cuda' }).cpu().toFloat32Array(), a);
  });
});

test('device properties: name, compute capability and memory', { skip }, () => {
  const p = torch.cuda.getDeviceProperties(0);
  assert.ok(p.name.length > 0);
  assert.ok(p.major >= 3 && p.minor >= 0, `${p.major}.${p.minor}`);
  assert.ok(p.totalMemory > 2 ** 30);
});
