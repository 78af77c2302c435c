import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { loadTensors } from '../../src/io';
import {
  Attention,
  SemAIM,
  SemAIMConfig,
  VisionTransformer,
  makeConfig,
  decoderTaps,
  sincosPosEmbed2d,
  configToJSON,
  configFromJSON,
  ConfigError,
  OrderConfig,
  semanticOrder,
  encoderSimilarity,
  strictOrder,
  CrossAttention,
  DecoderBlock,
  pixelTargets,
  patchify,
  unpatchify,
  gaussianKernel,
  gaussianBlur,
  featurePatchLoss,
} from '../../src/semaim';
import { DropPath } from '../../src/nn';
import { globalPool } from '../../src/semaim/vit';

const GOLDEN = join(__dirname, '..', '..', '..', 'test', 'golden', 'semaim');

function maxRel(a: torch.Tensor, b: torch.Tensor): number {
  return torch.scope(() => a.sub(b).abs().max().item() / Math.max(b.abs().max().item(), 1e-12));
}

interface GoldenConfig {
  imgSize: number;
  patchSize: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  decoderDepth: number;
  target: { type: 'pixel' | 'feature'; normPix: boolean; blur: boolean; blurKernel: number; blurSigma: number };
  teacher: null | { imgSize: number; patchSize: number; embedDim: number; depth: number; numHeads: number; mlpRatio: number; prefix: string };
  order: { type: string; filter?: boolean; lambda?: number };
  decoderTaps: number[];
}

function loadCase(name: string) {
  const { tensors, metadata } = loadTensors(join(GOLDEN, `${name}.safetensors`), { device: torch.getDefaultDevice() });
  const g = JSON.parse(metadata.config) as GoldenConfig;
  const order: OrderConfig =
    g.order.type === 'semantic' ? { type: 'semantic', source: 'online', filter: !!g.order.filter, lambda: g.order.lambda! } : { type: 'stochastic' };
  const teacherConfig = g.teacher
    ? {
        imgSize: g.teacher.imgSize,
        patchSize: g.teacher.patchSize,
        embedDim: g.teacher.embedDim,
        depth: g.teacher.depth,
        numHeads: g.teacher.numHeads,
        mlpRatio: g.teacher.mlpRatio,
      }
    : null;
  const cfg: SemAIMConfig = {
    imgSize: g.imgSize,
    patchSize: g.patchSize,
    embedDim: g.embedDim,
    depth: g.depth,
    numHeads: g.numHeads,
    mlpRatio: g.mlpRatio,
    decoderDepth: g.decoderDepth,
    order,
    target:
      g.target.type === 'pixel'
        ? { type: 'pixels', normPix: g.target.normPix, blur: g.target.blur, blurKernel: g.target.blurKernel, blurSigma: g.target.blurSigma }
        : { type: 'features', teacher: 'in-file', teacherConfig: teacherConfig! },
  };
  const model = new SemAIM(cfg).to({ dtype: 'float64' });
  assert.deepEqual(model.taps, g.decoderTaps);
  // Our own fixed position embedding must equal the reference's.
  assert.ok(maxRel(model.pos_embed, tensors.get('pos_embed')!) < 1e-6, 'pos_embed');
  const own = new Map([...tensors].filter(([k]) => !/^(input|expect|grad|teacher)\./.test(k)));
  model.loadStateDict(own);
  if (teacherConfig) {
    const teacher = new VisionTransformer(teacherConfig).to({ dtype: 'float64' });
    teacher.loadStateDict(new Map([...tensors].filter(([k]) => k.startsWith('teacher.')).map(([k, v]) => [k.slice(8), v])));
    model.teacher = teacher;
  }
  return { model, t: tensors };
}

for (const name of ['A', 'B', 'C', 'D', 'E']) {
  test(`golden case ${name}: loss, predictions and gradients match the independent PyTorch reference`, () => {
    const { model, t } = loadCase(name);
    const images = t.get('input.images')!;
    let order = t.get('input.order')!;
    if (t.has('input.noise')) {
      // Semantic order computed by the model from its own similarity map.
      const S = encoderSimilarity(model, images);
      assert.ok(maxRel(S, t.get('expect.similarity')!) < 1e-9, 'similarity map');
      const o = model.config.order as { filter: boolean; lambda: number };
      const r = semanticOrder(S, model.grid, { filter: o.filter, lambda: o.lambda, noise: t.get('input.noise')! });
      assert.deepEqual(r.center.tolist(), t.get('expect.center')!.tolist());
      assert.ok(maxRel(r.order, order) < 1e-12, 'semantic order values');
      const viaConfig = model.makeOrder(images, { noise: t.get('input.noise')! });
      assert.ok(maxRel(viaConfig.order, order) < 1e-12, 'makeOrder');
      order = r.order;
    }
    for (const path of ['fast', 'reference'] as const) {
      model.zeroGrad();
      const out = model.forward(images, order, { path, outputs: 'all' });
      assert.ok(Math.abs(out.loss.item() - t.get('expect.loss')!.item()) < 1e-10 * Math.abs(t.get('expect.loss')!.item()), `${path} loss`);
      assert.ok(maxRel(out.patchLoss, t.get('expect.patch_loss')!) < 1e-9, `${path} patch loss`);
      assert.ok(maxRel(out.pred!, t.get('expect.pred')!) < 1e-9, `${path} predictions`);
      assert.ok(maxRel(out.target!, t.get('expect.target')!) < 1e-9, `${path} targets`);
      out.loss.backward();
      const params = new Map(model.namedParameters());
      for (const [k, v] of t) {
        if (!k.startsWith('grad.')) continue;
        const g = params.get(k.slice(5))!.grad!;
        assert.ok(maxRel(g, v) < 1e-8, `${path} ${k}: rel err ${maxRel(g, v)}`);
      }
    }
    model.teacher?.dispose();
    model.dispose();
  });
}

function tinyConfig(decoderDepth: number, order: OrderConfig): SemAIMConfig {
  return makeConfig('vit_tiny', { imgSize: 24, patchSize: 4, embedDim: 48, depth: 4, numHeads: 3, decoderDepth, order });
}

const orders: OrderConfig[] = [
  { type: 'raster' },
  { type: 'snake' },
  { type: 'stochastic' },
  { type: 'similarity', source: 'online' },
  { type: 'semantic', source: 'online', filter: true, lambda: 0.01 },
  { type: 'multicenter', source: 'online', k: 3, minRelHeight: 0.3, minDistance: 2, filter: true, lambda: 0.01 },
];

for (const dd of [4, 3, 1]) {
  test(`fast path equals the masked reference (float32, L'=${dd}) for every order type: loss and gradients`, () => {
    torch.manualSeed(11);
    const model = new SemAIM(tinyConfig(dd, orders[0])).initWeights();
    const images = torch.randn([3, 3, 24, 24]);
    for (const oc of orders) {
      const m = new SemAIM(tinyConfig(dd, oc));
      m.loadStateDict(model.stateDict());
      const { order } = m.makeOrder(images);
      const grads: Map<string, torch.Tensor>[] = [];
      const losses: number[] = [];
      for (const path of ['fast', 'reference'] as const) {
        m.zeroGrad();
        const out = m.forward(images, order, { path });
        out.loss.backward();
        losses.push(out.loss.item());
        grads.push(new Map([...m.namedParameters()].map(([k, p]) => [k, p.grad!])));
      }
      assert.ok(Math.abs(losses[0] - losses[1]) <= 1e-5 * Math.abs(losses[1]), `${oc.type}: loss ${losses[0]} vs ${losses[1]}`);
      for (const [k, g] of grads[1]) {
        const err = maxRel(grads[0].get(k)!, g);
        assert.ok(err < 1e-5 || g.abs().max().item() < 1e-7, `${oc.type} ${k}: gradient rel err ${err}`);
      }
      m.dispose();
    }
    model.dispose();
  });
}

test('tied order values: the fast path and the masked reference agree, ties taken in patch-index order', () => {
  torch.manualSeed(12);
  const model = new SemAIM(tinyConfig(2, { type: 'raster' })).initWeights().to({ dtype: 'float64' });
  torch.scope(() => {
    const images = torch.randn([2, 3, 24, 24], { dtype: 'float64' });
    // Patches 2k and 2k+1 share an order value: 18 ties per image (float32 orders can tie, rarely).
    const tied = torch.arange(0, 36, 1, { dtype: 'float64' }).div(2).floor().unsqueeze(0).expand(2, 36).contiguous();
    const reversed = torch.arange(35, -1, -1, { dtype: 'float64' }).div(2).floor().unsqueeze(0).expand(2, 36).contiguous();
    for (const order of [tied, reversed]) {
      const fast = model.forward(images, order, { outputs: 'all' });
      const ref = model.forward(images, order, { path: 'reference', outputs: 'all' });
      const strict = model.forward(images, strictOrder(order), { path: 'reference', outputs: 'all' });
      assert.ok(maxRel(fast.patchLoss, ref.patchLoss) < 1e-10, 'fast vs reference with ties');
      assert.ok(maxRel(ref.pred!, strict.pred!) < 1e-12, 'ties are the stable rank');
    }
  });
  model.dispose();
});

test("'gap' pooling is the authors' fc_norm: mean of the patch tokens (not [CLS]) through an untrained LayerNorm of eps 1e-6", () => {
  const tokens = torch.tensor([
    [
      [5, 6, 7],
      [0, 2e-3, 2e-3],
      [0, 0, 2e-3],
    ],
    [
      [100, -100, 0],
      [1, 2, 3],
      [3, 4, 8],
    ],
  ]);
  // torch 1.13: nn.LayerNorm(3, eps=1e-6)(tokens[:, 1:].mean(1)); the first mean has variance 6.7e-7, where eps 1e-5 would give ±0.306
  const want = [-0.7745966911315918, 0, 0.7745967507362366, -1.019049048423767, -0.33968299627304077, 1.3587321043014526];
  const got = globalPool(tokens);
  assert.deepEqual(got.shape, [2, 3]);
  const g = got.toFloat32Array();
  want.forEach((w, i) => assert.ok(Math.abs(g[i] - w) < 1e-5, `${Array.from(g)}`));
  got.dispose();
  tokens.dispose();
});

test('decoder taps are uniform for any decoder depth', () => {
  assert.deepEqual(decoderTaps(12, 12), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.deepEqual(decoderTaps(12, 4), [3, 6, 9, 12]);
  assert.deepEqual(decoderTaps(12, 5), [2, 4, 7, 9, 12]);
  assert.deepEqual(decoderTaps(4, 3), [1, 2, 4]);
  assert.deepEqual(decoderTaps(12, 1), [12]);
  assert.throws(() => decoderTaps(4, 5), /1\.\.4/);
  // a fraction gave taps for a whole number of blocks ([1, 3] for 2.5), NaN none at all ([])
  assert.throws(() => decoderTaps(4, 2.5), { name: 'RangeError', message: /decoder depth must be an integer in 1\.\.4, got 2\.5/ });
  assert.throws(() => decoderTaps(4, NaN), /decoder depth must be an integer in 1\.\.4, got NaN/);
  assert.throws(() => decoderTaps(2.5, 1), { name: 'RangeError', message: /encoder depth must be a positive integer, got 2\.5/ });
});

test("stochastic depth reaches the decoder as in the authors' query_blocks: block k gets the encoder's rate dpr[k]", () => {
  const model = new SemAIM(makeConfig('vit_tiny', { imgSize: 16, patchSize: 4, embedDim: 24, depth: 4, numHeads: 2, decoderDepth: 2, dropPath: 0.3 }));
  const rate = (m: { dropPath: object }) => (m.dropPath instanceof DropPath ? m.dropPath.p : 0);
  const close = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) < 1e-12);
  assert.ok(close([...model.blocks].map(rate), [0, 0.1, 0.2, 0.3]));
  assert.ok(close([...model.query_blocks].map(rate), [0, 0.1]));
  // A decoder block whose paths are (almost surely) all dropped hands its query stream on unchanged.
  torch.scope(() => {
    torch.manualSeed(0);
    const block = new DecoderBlock(24, 2, 4, 1 - 1e-9);
    const g = torch.randn([3, 5, 24]);
    const h = torch.randn([3, 6, 24]);
    assert.equal(block.forward(g, h).sub(g).abs().max().item(), 0);
    block.eval();
    assert.ok(block.forward(g, h).sub(g).abs().max().item() > 0.1, 'in eval mode nothing is dropped');
  });
});

test('the first patch of the order is predicted from [CLS] and its own position only', () => {
  torch.manualSeed(5);
  const model = new SemAIM(tinyConfig(4, { type: 'raster' })).initWeights();
  torch.noGrad(() =>
    torch.scope(() => {
      const a = torch.randn([1, 3, 24, 24]);
      const b = torch.randn([1, 3, 24, 24]);
      const order = torch.rand([1, 36]);
      const first = (order.argmin(1).tolist() as number[])[0];
      const pa = model.forward(a, order, { outputs: 'all' }).pred!.select(1, first);
      const pb = model.forward(b, order, { outputs: 'all' }).pred!.select(1, first);
      assert.ok(pa.sub(pb).abs().max().item() < 1e-6);
    }),
  );
  model.dispose();
});

test('sin-cos position embedding: MAE layout, zero [CLS] row', () => {
  const pe = sincosPosEmbed2d(8, 2, 3);
  const v = pe.tolist() as number[][][];
  assert.deepEqual(v[0][0], [0, 0, 0, 0, 0, 0, 0, 0]);
  // patch (row 1, col 2): first half encodes column 2, second half row 1; omega = [1, 1/100].
  const p = v[0][1 + 1 * 3 + 2];
  const expect = [Math.sin(2), Math.sin(0.02), Math.cos(2), Math.cos(0.02), Math.sin(1), Math.sin(0.01), Math.cos(1), Math.cos(0.01)];
  p.forEach((x, i) => assert.ok(Math.abs(x - expect[i]) < 1e-6, `channel ${i}`));
});

test('config round-trips through JSON and bad values are refused naming the key', () => {
  const c = makeConfig('vit_small', { imgSize: 32, patchSize: 4, decoderDepth: 6 });
  assert.deepEqual(configFromJSON(configToJSON(c)), c);
  assert.throws(
    () => makeConfig('vit_tiny', { imgSize: 30, patchSize: 4 }),
    (e: unknown) => e instanceof ConfigError && e.code === 'ERR_CONFIG' && e.key === 'imgSize',
  );
  assert.throws(
    () => makeConfig('vit_tiny', { decoderDepth: 13 }),
    (e: unknown) => e instanceof ConfigError && e.key === 'decoderDepth',
  );
  assert.throws(
    () => makeConfig('vit_giant'),
    (e: unknown) => e instanceof ConfigError && e.key === 'preset',
  );
  assert.throws(() => makeConfig('vit_tiny', { order: { type: 'semantic', source: 'teacher', filter: true, lambda: 0.01 } }), /order.source/);
  for (const [name, dims] of [
    ['vit_tiny', [192, 12, 3]],
    ['vit_base', [768, 12, 12]],
    ['vit_large', [1024, 24, 16]],
    ['vit_huge', [1280, 32, 16]],
  ] as const) {
    const p = makeConfig(name);
    assert.deepEqual([p.embedDim, p.depth, p.numHeads], dims);
  }
});

const TINY_VIT = { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 4 };
/** The sizes of the similarity-pass tests' SemAIM (32², patch 8, 2 blocks of 32, one decoder block). */
const SMALL_SEMAIM = { imgSize: 32, patchSize: 8, depth: 2, embedDim: 32, numHeads: 2, decoderDepth: 1 };

/** Runs fn on a tiny encoder (TINY_VIT, seed 0) in eval mode, without gradients, in a scope. */
function withTinyVit(fn: (vit: VisionTransformer) => void): void {
  const vit = new VisionTransformer(TINY_VIT).initWeights(0);
  vit.eval();
  try {
    torch.noGrad(() => torch.scope(() => fn(vit)));
  } finally {
    vit.dispose();
  }
}

test('initWeights(seed) draws from a generator of its own: the global stream goes on as without it, and a seed gives the weights manualSeed(seed) then initWeights() gives', () => {
  const cfg = makeConfig('vit_tiny', SMALL_SEMAIM);
  const [a, b, c] = [new SemAIM(cfg), new SemAIM(cfg), new SemAIM(cfg)];
  try {
    torch.manualSeed(1);
    const without = torch.rand([5]).toFloat32Array();
    torch.manualSeed(1);
    a.initWeights(7);
    assert.deepEqual(torch.rand([5]).toFloat32Array(), without, 'the global stream is untouched');
    b.initWeights(7);
    torch.manualSeed(7);
    c.initWeights();
    const weights = (m: SemAIM) => [...m.stateDict()].map(([name, t]) => [name, [...t.toFloat64Array()]]);
    assert.deepEqual(weights(b), weights(a), 'the same seed, the same weights');
    assert.deepEqual(weights(c), weights(a), "the weights of manualSeed(7) then initWeights(): earlier releases' for seed 7");
  } finally {
    for (const m of [a, b, c]) m.dispose();
  }
});

test('a config missing a field its target or order needs, with a value of the wrong type or with an unknown field is refused, naming the field', () => {
  const base = { imgSize: 32, patchSize: 8, depth: 2, embedDim: 32, numHeads: 2, decoderDepth: 1 };
  const px = { type: 'pixels', normPix: true, blur: true, blurKernel: 9, blurSigma: 1 };
  const sem = { type: 'semantic', source: 'online', filter: true, lambda: 0.01 };
  const mc = { type: 'multicenter', source: 'online', k: 2, minRelHeight: 0.5, minDistance: 2, filter: true, lambda: 0.01 };
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ order: { type: 'semantic' } }, 'order.source', /missing: a 'semantic' order needs type, source, filter, lambda/],
    [{ order: { type: 'similarity' } }, 'order.source', /missing: a 'similarity' order needs type, source/],
    [{ order: { type: 'multicenter', source: 'online' } }, 'order.k', /missing: a 'multicenter' order needs/],
    [{ target: { type: 'pixels' } }, 'target.normPix', /missing: a 'pixels' target needs type, normPix, blur, blurKernel, blurSigma/],
    [{ target: { ...px, normPix: 'false' } }, 'target.normPix', /must be true or false, got "false"/],
    [{ target: { ...px, blur: 1 } }, 'target.blur', /must be true or false, got 1/],
    [{ target: { ...px, blur: false, blurSigma: '1' } }, 'target.blurSigma', /must be a finite number, got "1"/],
    [{ order: { ...sem, filter: 'no' } }, 'order.filter', /must be true or false, got "no"/],
    [{ order: { ...sem, lambda: '0.01' } }, 'order.lambda', /must be in \[0, 1e6\], got "0.01"/],
    [{ order: { ...mc, minDistance: Infinity } }, 'order.minDistance', /must be a finite number >= 0, got Infinity/],
    [{ dropPath: '0.1' }, 'dropPath', /must be in \[0, 1\), got "0.1"/],
    [{ imgsize: 32 }, 'imgsize', /unknown field; did you mean 'imgSize'\?/],
    [{ order: { ...sem, lamda: 0.1 } }, 'order.lamda', /unknown field; did you mean 'order.lambda'\?/],
    [{ order: { type: 'raster', source: 'online' } }, 'order.source', /unknown field \(known: type\)/],
    [{ target: { ...px, teacher: 't.safetensors' } }, 'target.teacher', /unknown field/],
  ];
  for (const [change, key, message] of cases) {
    const c = { ...base, ...change } as never;
    assert.throws(
      () => makeConfig('vit_tiny', c),
      (e: unknown) => e instanceof ConfigError && e.key === key && message.test(e.message),
      JSON.stringify(change),
    );
    const json = JSON.stringify({ ...makeConfig('vit_tiny', base), ...change });
    if (!json.includes('Infinity'))
      assert.throws(
        () => configFromJSON(json),
        (e: unknown) => e instanceof ConfigError && e.key === key,
        json,
      );
  }
  assert.throws(() => makeConfig('vit_tiny', null as never), /config 'overrides': must be an object, got null/);
  assert.throws(
    () => new VisionTransformer({ ...TINY_VIT, depht: 2 } as never),
    (e: unknown) => e instanceof ConfigError && e.key === 'depht' && /did you mean 'depth'\?/.test(e.message),
  );
  // the optional fields may be left out; an encoder takes a whole SemAIM config too
  makeConfig('vit_tiny', { ...base, order: { ...sem, tokens: 'gap' } as OrderConfig });
  const whole = makeConfig('vit_tiny', base);
  new VisionTransformer(whole).dispose();
  const { inChans, mlpRatio, dropPath, ...bare } = whole;
  assert.deepEqual([inChans, mlpRatio, dropPath], [3, 4, 0]);
  assert.deepEqual(configFromJSON(JSON.stringify(bare)), bare);
});

test('features and pool refuse an unknown pooling instead of returning every token', () => {
  withTinyVit((vit) => {
    const x = torch.randn([1, 3, 16, 16]);
    assert.throws(() => vit.features(x, 'max' as never), /features: pooling must be one of cls, mean, gap, all, got max/);
    assert.throws(() => vit.pool(vit.forwardFeatures(x), 'max' as never), /pool: pooling must be one of cls, mean, gap, all, got max/);
  });
});

test('SemAIM.forward and makeOrder refuse unknown option values: path, outputs, generator, ema, noise of another size', () => {
  torch.manualSeed(0);
  const model = new SemAIM(makeConfig('vit_tiny', { ...SMALL_SEMAIM, order: { type: 'raster' } })).initWeights();
  torch.noGrad(() =>
    torch.scope(() => {
      const x = torch.randn([2, 3, 32, 32]);
      const { order } = model.makeOrder(x);
      assert.throws(() => model.forward(x, order, { path: 'slow' as never }), /forward: path must be 'fast' or 'reference', got slow/);
      assert.throws(() => model.forward(x, order, { outputs: 'everything' as never }), /forward: outputs must be 'loss' or 'all', got everything/);
      assert.throws(() => model.makeOrder(x, { generator: 5 as never }), /makeOrder: generator must be a torch\.Generator, got 5/);
      assert.throws(() => model.makeOrder(x, { ema: {} as never }), /makeOrder: ema must be a VisionTransformer/);
      assert.throws(() => model.makeOrder(x, { noise: torch.rand([2, 5]) }), /makeOrder: noise must be a tensor \[2, 16\] \(batch × patches\), got \[2, 5\]/);
      model.makeOrder(x, { generator: new torch.Generator(1), noise: torch.rand([2, 16]) });
    }),
  );
  model.dispose();
});

test('SemAIM.forward and makeOrder refuse a bool order and integer noise with a TypeError naming the argument, its dtype and shape; integer order values are ranks', () => {
  torch.manualSeed(0);
  const model = new SemAIM(makeConfig('vit_tiny', { ...SMALL_SEMAIM, order: { type: 'stochastic' } })).initWeights();
  torch.noGrad(() =>
    torch.scope(() => {
      const x = torch.randn([2, 3, 32, 32]);
      const noise = torch.rand([2, 16]);
      const { order } = model.makeOrder(x, { noise });
      // U(0,1) noise cast to int64 is all 0: the stochastic order was silently the raster order
      assert.throws(
        () => model.makeOrder(x, { noise: noise.to({ dtype: 'int64' }) }),
        (e) => e instanceof TypeError && /^makeOrder: noise must be a floating-point tensor, got int64 \[2, 16\]$/.test(e.message),
      );
      assert.throws(
        () => model.forward(x, order.lt(0.5)),
        (e) => e instanceof TypeError && /^forward: order values must be a floating-point or integer tensor, got bool \[2, 16\]$/.test(e.message),
      );
      const ranks = strictOrder(order).to({ dtype: 'int64' });
      for (const path of ['fast', 'reference'] as const)
        assert.equal(model.forward(x, ranks, { path }).loss.item(), model.forward(x, order, { path }).loss.item(), path);
    }),
  );
  model.dispose();
});

test('SemAIM.forward and makeOrder refuse an unknown option key, naming the key it is a typo of', () => {
  torch.manualSeed(0);
  const model = new SemAIM(makeConfig('vit_tiny', { ...SMALL_SEMAIM, order: { type: 'stochastic' } })).initWeights();
  torch.noGrad(() =>
    torch.scope(() => {
      const x = torch.randn([2, 3, 32, 32]);
      const { order } = model.makeOrder(x);
      // ignored before: no predictions came back, and fresh noise was drawn instead of the one given
      assert.throws(
        () => model.forward(x, order, { output: 'all' } as never),
        (e) => e instanceof RangeError && e.message === "forward: unknown option 'output'; did you mean 'outputs'? (known: path, outputs)",
      );
      assert.throws(
        () => model.makeOrder(x, { Noise: torch.rand([2, 16]) } as never),
        (e) => e instanceof RangeError && e.message === "makeOrder: unknown option 'Noise'; did you mean 'noise'? (known: ema, generator, noise)",
      );
      assert.ok(model.forward(x, order, { path: 'reference', outputs: 'all' }).pred);
    }),
  );
  model.dispose();
});

test('backbone features: [CLS], mean-pooled and all tokens; timm names', () => {
  const vit = new VisionTransformer(TINY_VIT).initWeights(0);
  const x = torch.randn([2, 3, 16, 16]);
  assert.deepEqual(vit.features(x, 'cls').shape, [2, 32]);
  assert.deepEqual(vit.features(x, 'mean').shape, [2, 32]);
  assert.deepEqual(vit.features(x, 'all').shape, [2, 17, 32]);
  assert.deepEqual(vit.clsAttention(x).shape, [2, 16]);
  const names = [...vit.stateDict().keys()];
  for (const n of ['patch_embed.proj.weight', 'cls_token', 'pos_embed', 'blocks.1.attn.qkv.weight', 'blocks.0.mlp.fc2.bias', 'norm.weight']) {
    assert.ok(names.includes(n), n);
  }
  vit.dispose();
});

test("similarity tokens (authors' attention_type): 'cls' by default, 'gap' and 'self' on request, refused when unknown", () => {
  torch.manualSeed(6);
  const semantic = (tokens?: 'cls' | 'gap' | 'self'): OrderConfig => ({
    type: 'semantic',
    source: 'online',
    filter: true,
    lambda: 0,
    ...(tokens ? { tokens } : {}),
  });
  const x = torch.randn([2, 3, 24, 24]);
  const noise = torch.zeros([2, 36]);
  const model = new SemAIM(tinyConfig(4, semantic())).initWeights();
  const self = new SemAIM(tinyConfig(4, semantic('self')));
  self.loadStateDict(model.stateDict(), { strict: true });
  torch.noGrad(() =>
    torch.scope(() => {
      const own = model.makeOrder(x, { noise });
      assert.ok(own.similarity!.sub(encoderSimilarity(model, x)).abs().max().item() === 0, "default = the paper's [CLS] map");
      const s = self.makeOrder(x, { noise });
      const att = model.clsAttention(x);
      assert.ok(s.similarity!.sub(att).abs().max().item() < 1e-6, "'self' = last block's [CLS] attention");
      assert.ok(encoderSimilarity(model, x, 'softmax', 'gap').sub(own.similarity!).abs().max().item() > 1e-6, "'gap' differs from 'cls'");
    }),
  );
  const bad = { type: 'semantic', source: 'online', filter: true, lambda: 0, tokens: 'mean' } as unknown as OrderConfig;
  assert.throws(() => makeConfig('vit_tiny', { order: bad }), /order.tokens/);
  // a teacher's map is its [CLS] one: other tokens were ignored by training (the CLI refuses them too)
  const target = { type: 'features', teacher: 'x.safetensors', teacherConfig: { imgSize: 224, patchSize: 16, depth: 1, embedDim: 16, numHeads: 2 } } as const;
  for (const tokens of ['gap', 'self'] as const)
    assert.throws(
      () => makeConfig('vit_tiny', { target, order: { type: 'semantic', source: 'teacher', filter: true, lambda: 0, tokens } }),
      /order.tokens.*with source 'teacher': a teacher's similarity map is always its \[CLS\]/,
    );
  makeConfig('vit_tiny', { target, order: { type: 'semantic', source: 'teacher', filter: true, lambda: 0, tokens: 'cls' } });
  model.dispose();
  self.dispose();
});

test('the similarity pass under bf16 autocast: S stays float32 and close to the fp32 map, the order stays strict', () => {
  torch.manualSeed(11);
  for (const tokens of ['cls', 'gap', 'self'] as const) {
    const model = new SemAIM(
      makeConfig('vit_tiny', {
        imgSize: 24,
        patchSize: 4,
        embedDim: 48,
        depth: 4,
        numHeads: 3,
        decoderDepth: 2,
        order: { type: 'semantic', source: 'online', filter: true, lambda: 0.01, tokens },
      }),
    ).initWeights();
    torch.scope(() => {
      const images = torch.randn([4, 3, 24, 24]);
      const fp32 = model.makeOrder(images, { noise: torch.rand([4, 36]) });
      const bf16 = torch.autocast({ device: torch.deviceType(torch.getDefaultDevice()), dtype: 'bfloat16' }, () =>
        model.makeOrder(images, { noise: torch.rand([4, 36]) }),
      );
      assert.equal(bf16.similarity!.dtype, 'float32', tokens);
      assert.equal(bf16.order.dtype, 'float32', tokens);
      const rel = bf16.similarity!.sub(fp32.similarity!).abs().max().item() / fp32.similarity!.abs().max().item();
      assert.ok(rel < 0.05, `${tokens}: S under bf16 differs from fp32 by ${rel} of its range`);
      assert.ok(rel > 0, `${tokens}: the pass did run in bf16`);
      const [sorted] = bf16.order.sort(1);
      assert.ok(
        sorted
          .narrow(1, 1, 35)
          .sub(sorted.narrow(1, 0, 35))
          .min()
          .item() > 0,
        `${tokens}: order values are strict`,
      );
    });
    model.dispose();
  }
});

test('under bf16 autocast the targets and the loss stay float32, and the loss is close to the fp32 one', () => {
  torch.manualSeed(12);
  const dev = torch.deviceType(torch.getDefaultDevice());
  const model = new SemAIM(makeConfig('vit_tiny', { imgSize: 24, patchSize: 4, embedDim: 48, depth: 4, numHeads: 3, decoderDepth: 2 })).initWeights();
  torch.scope(() => {
    const images = torch.randn([4, 3, 24, 24]);
    const { order } = model.makeOrder(images, { noise: torch.rand([4, 36]) });
    const ref = model.forward(images, order);
    const targets = model.targets(images);
    const low = torch.autocast({ device: dev, dtype: 'bfloat16' }, () => ({ t: model.targets(images), out: model.forward(images, order) }));
    assert.equal(low.t.dtype, 'float32');
    assert.equal(low.t.sub(targets).abs().max().item(), 0, 'pixel targets are computed with autocast off');
    assert.equal(low.out.loss.dtype, 'float32');
    assert.equal(low.out.patchLoss.dtype, 'float32');
    const rel = Math.abs(low.out.loss.item() - ref.loss.item()) / ref.loss.item();
    assert.ok(rel < 0.02, `bf16 loss differs from fp32 by ${rel}`);
  });
  model.dispose();
});

test('under bf16 autocast a feature-target loss is taken on the predictions cast to float32, not on bf16 unit vectors', () => {
  torch.manualSeed(13);
  const dev = torch.deviceType(torch.getDefaultDevice());
  const tcfg = { imgSize: 32, patchSize: 8, depth: 1, embedDim: 16, numHeads: 2 };
  const cfg = makeConfig('vit_tiny', { ...SMALL_SEMAIM, target: { type: 'features', teacher: 'x.safetensors', teacherConfig: tcfg } });
  const model = new SemAIM(cfg).initWeights(1);
  model.teacher = new VisionTransformer(tcfg).initWeights(3);
  torch.scope(() => {
    const images = torch.randn([2, 3, 32, 32]);
    const { order } = model.makeOrder(images, { noise: torch.rand([2, 16]) });
    const out = torch.autocast({ device: dev, dtype: 'bfloat16' }, () => model.forward(images, order, { outputs: 'all' }));
    assert.equal(out.pred!.dtype, 'bfloat16');
    const want = featurePatchLoss(out.pred!.float(), out.target!);
    const err = out.patchLoss.sub(want).abs().max().item();
    assert.ok(err < 1e-6, `patch loss differs from the float32 one by ${err}`);
  });
  model.teacher.dispose();
  model.dispose();
});

test("pixel targets: normPix false gives the raw patches, MAE's (row, col, channel) layout; unpatchify inverts patchify", () => {
  torch.manualSeed(0);
  const img = torch.rand([1, 3, 8, 8]);
  const raw = pixelTargets(img, { patchSize: 4, normPix: false, blur: false, blurKernel: 9, blurSigma: 1 });
  const x = img.tolist() as number[][][][];
  // patch 1 = (row 0, col 1); element (i, j, c) at (i·4 + j)·3 + c is pixel x[c][i][4 + j]
  const p1 = (raw.tolist() as number[][][])[0][1];
  for (const [i, j, c] of [
    [0, 0, 0],
    [1, 2, 1],
    [3, 3, 2],
  ])
    assert.equal(p1[(i * 4 + j) * 3 + c], x[0][c][i][4 + j]);
  assert.equal(raw.sub(patchify(img, 4)).abs().max().item(), 0);
  const norm = pixelTargets(img, { patchSize: 4, normPix: true, blur: false, blurKernel: 9, blurSigma: 1 });
  assert.ok(norm.mean(-1).abs().max().item() < 1e-5, 'normPix true: every patch has mean 0');
  // a non-symmetric image (values 0..191) of a 4×4 grid of 2×2 patches comes back unchanged
  const ramp = torch.arange(0, 3 * 8 * 8, 1, { dtype: 'float32' }).reshape(1, 3, 8, 8);
  assert.equal(unpatchify(patchify(ramp, 2), 2, 3).sub(ramp).abs().max().item(), 0);
});

test('the blur kernel is exp(−(dy² + dx²) / (2σ²)) about the centre, summing to 1, for any σ (not only the headline σ 1)', () => {
  torch.scope(() => {
    for (const [size, sigma] of [
      [5, 0.7],
      [3, 2],
    ]) {
      const k = gaussianKernel(size, sigma, 2);
      assert.deepEqual(k.shape, [2, 1, size, size]);
      const c = (size - 1) / 2;
      const w = Array.from({ length: size * size }, (_, i) => Math.exp(-((Math.floor(i / size) - c) ** 2 + ((i % size) - c) ** 2) / (2 * sigma * sigma)));
      const sum = w.reduce((a, b) => a + b, 0);
      const got = k.reshape(2, size * size).tolist() as number[][];
      for (const ch of got) ch.forEach((v, i) => assert.ok(Math.abs(v - w[i] / sum) < 1e-6, `size ${size}, σ ${sigma}, tap ${i}: ${v} vs ${w[i] / sum}`));
    }
  });
});

test('pixel targets blur with the given σ, and only with blur on, in TypeScript and through the targets kernel', () => {
  const before = { kinds: torch.fused.fusedKinds(), onCpu: torch.fused.fusedOnCpu() };
  try {
    for (const kernel of [false, true]) {
      torch.fused.setFused(kernel ? ['targets'] : 'none', { onCpu: true });
      torch.scope(() => {
        torch.manualSeed(3);
        const img = torch.rand([1, 3, 8, 8]);
        const o = { patchSize: 4, normPix: false, blur: true, blurKernel: 5, blurSigma: 0.5 };
        const blurred = pixelTargets(img, o);
        const diff = (a: torch.Tensor, b: torch.Tensor) => a.sub(b).abs().max().item();
        assert.ok(diff(blurred, patchify(gaussianBlur(img, 5, 0.5), 4)) < 1e-5, `kernel ${kernel}: σ 0.5`);
        assert.ok(diff(blurred, patchify(gaussianBlur(img, 5, 1), 4)) > 1e-3, `kernel ${kernel}: not σ 1`);
        assert.ok(diff(pixelTargets(img, { ...o, blur: false }), patchify(img, 4)) < 1e-6, `kernel ${kernel}: blur false leaves the pixels`);
      });
    }
  } finally {
    torch.fused.setFused(before.kinds, { onCpu: before.onCpu });
  }
});

test("makeOrder with order source 'ema' reads the EMA encoder's map, not the online model's", () => {
  torch.manualSeed(0);
  const cfg = makeConfig('vit_tiny', { ...SMALL_SEMAIM, order: { type: 'similarity', source: 'ema' } });
  const model = new SemAIM(cfg).initWeights(1);
  const ema = new VisionTransformer(cfg).initWeights(2);
  torch.scope(() => {
    const images = torch.randn([2, 3, 32, 32]);
    const S = model.makeOrder(images, { ema, noise: torch.zeros([2, 16]) }).similarity!;
    // the same map from a SemAIM holding the EMA weights, reading itself (source 'online')
    const holder = new SemAIM({ ...cfg, order: { type: 'similarity', source: 'online' } });
    holder.loadStateDict(new Map([...model.stateDict()].map(([k, v]) => [k, ema.stateDict().get(k) ?? v])));
    assert.ok(S.sub(holder.makeOrder(images).similarity!).abs().max().item() < 1e-6);
    assert.ok(S.sub(encoderSimilarity(model, images)).abs().max().item() > 1e-3, 'the online map differs');
    holder.dispose();
  });
  model.dispose();
  ema.dispose();
});

test('the similarity pass runs in eval mode (no stochastic depth) and leaves the model in the mode it was in (training or eval)', () => {
  torch.manualSeed(0);
  const cfg = makeConfig('vit_tiny', {
    ...SMALL_SEMAIM,
    dropPath: 0.5,
    order: { type: 'similarity', source: 'online' },
  });
  const model = new SemAIM(cfg).initWeights(1);
  model.train();
  torch.scope(() => {
    const images = torch.randn([2, 3, 32, 32]);
    const s1 = model.makeOrder(images).similarity!;
    const s2 = model.makeOrder(images).similarity!;
    assert.equal(s1.sub(s2).abs().max().item(), 0, 'no path dropped: two passes agree');
    assert.equal(model.training, true);
    assert.ok(
      [...model.blocks].every((b) => b.training && b.dropPath.training),
      'every block is back in training mode',
    );
    model.eval();
    assert.ok(s1.sub(model.makeOrder(images).similarity!).abs().max().item() < 1e-6, 'the map of the model in eval mode');
    assert.equal(model.training, false, 'a model in eval mode is left in eval mode');
  });
  model.dispose();
});

test("feature targets are the teacher's patch tokens in eval mode (no stochastic depth), even when it was left training", () => {
  torch.manualSeed(0);
  const tcfg = { imgSize: 32, patchSize: 8, depth: 2, embedDim: 16, numHeads: 2, dropPath: 0.5 };
  const cfg = makeConfig('vit_tiny', { ...SMALL_SEMAIM, target: { type: 'features', teacher: 'x.safetensors', teacherConfig: tcfg } });
  const model = new SemAIM(cfg).initWeights(1);
  const teacher = new VisionTransformer(tcfg).initWeights(3);
  model.teacher = teacher;
  torch.scope(() => {
    const images = torch.randn([2, 3, 32, 32]);
    const want = torch.noGrad(() => teacher.eval().forwardFeatures(images).narrow(1, 1, 16));
    teacher.train();
    assert.ok(model.targets(images).sub(want).abs().max().item() < 1e-6);
  });
  teacher.dispose();
  model.dispose();
});

test("the teacher's similarity map is min-max normalised: 0 to 1 in every image", () => {
  torch.manualSeed(0);
  const tcfg = { imgSize: 32, patchSize: 8, depth: 1, embedDim: 16, numHeads: 2 };
  const cfg = makeConfig('vit_tiny', {
    ...SMALL_SEMAIM,
    target: { type: 'features', teacher: 'x.safetensors', teacherConfig: tcfg },
    order: { type: 'similarity', source: 'teacher' },
  });
  const model = new SemAIM(cfg).initWeights(1);
  model.teacher = new VisionTransformer(tcfg).initWeights(3);
  torch.scope(() => {
    const S = model.makeOrder(torch.randn([2, 3, 32, 32])).similarity!;
    for (const v of S.amin(1).tolist() as number[]) assert.ok(Math.abs(v) < 1e-6, `min ${v}`);
    for (const v of S.amax(1).tolist() as number[]) assert.ok(Math.abs(v - 1) < 1e-6, `max ${v}`);
  });
  model.teacher.dispose();
  model.dispose();
});

test("encoder maths by hand: 'mean' pooling is the mean of the patch tokens, clsAttention is the last block's [CLS]→patch softmax(q·kᵀ/√d_head) averaged over heads", () => {
  withTinyVit((vit) => {
    torch.manualSeed(0);
    const x = torch.randn([2, 3, 16, 16]).mul(3);
    const z = vit.forwardFeatures(x);
    assert.ok(
      vit
        .features(x, 'mean')
        .sub(z.narrow(1, 1, 16).mean(1))
        .abs()
        .max()
        .item() < 1e-6,
      "'mean' leaves [CLS] out",
    );
    const blocks = [...vit.blocks];
    const h = blocks[0].forward(torch.cat([vit.clsTokens(2), vit.embedPatches(x)], 1));
    // timm's qkv layout: [B, T, 3, heads, d_head]
    const qkv = blocks[1].attn.qkv.forward(blocks[1].norm1.forward(h)).reshape(2, 17, 3, 4, 8).permute(2, 0, 3, 1, 4);
    const scores = qkv
      .select(0, 0)
      .matmul(qkv.select(0, 1).transpose(-2, -1))
      .mul(1 / Math.sqrt(8));
    const want = scores.softmax(-1).mean(1).select(1, 0).narrow(1, 1, 16);
    assert.ok(vit.clsAttention(x).sub(want).abs().max().item() < 1e-6);
  });
});

test("[CLS] gets the position embedding's row 0 (an outside encoder's learned row is not zero)", () => {
  withTinyVit((vit) => {
    torch.manualSeed(1);
    const x = torch.randn([2, 3, 16, 16]);
    const before = vit.features(x, 'cls');
    const row = torch.randn([1, 1, 32]);
    vit.pos_embed.narrow(1, 0, 1).copy_(row);
    assert.ok(vit.clsTokens(2).sub(vit.cls_token.add(row)).abs().max().item() < 1e-6);
    assert.ok(vit.features(x, 'cls').sub(before).abs().max().item() > 1e-3, '[CLS] features change');
  });
});

test('MAE initialisation: cls_token ~ N(0, 0.02), patch-embed bias 0, patch-embed weight xavier-uniform over [D, C·P·P]', () => {
  const vit = new VisionTransformer({ imgSize: 32, patchSize: 4, embedDim: 256, depth: 1, numHeads: 4 }).initWeights(0);
  const std = vit.cls_token.std().item();
  assert.ok(std > 0.015 && std < 0.025, `cls_token std ${std}`);
  assert.equal(vit.patch_embed.proj.bias!.abs().max().item(), 0);
  // fan_in C·P·P = 48, fan_out D = 256: bound √(6 / 304) ≈ 0.140 (the 4-D conv fans, 48 and 256·16, give 0.034)
  const bound = Math.sqrt(6 / (48 + 256));
  const w = vit.patch_embed.proj.weight;
  const max = w.abs().max().item();
  assert.ok(max <= bound + 1e-6 && max > 0.95 * bound, `max |w| ${max}, bound ${bound}`);
  const wstd = w.std().item();
  assert.ok(Math.abs(wstd - bound / Math.sqrt(3)) < 0.05 * bound, `weight std ${wstd}`);
  vit.dispose();
});

test("the decoder's CrossAttention refuses a width its heads do not divide when built, as Attention does, not with a view error at the first forward", () => {
  assert.throws(() => new CrossAttention(10, 3), /width 10 is not divisible by 3 heads/);
  assert.throws(() => new CrossAttention(12, 0), /heads must be a positive integer, got 0/);
  assert.throws(() => new DecoderBlock(10, 3), /width 10 is not divisible by 3 heads/);
  // and Attention refuses a fractional head count (10 % 2.5 is 0)
  assert.throws(() => new Attention(10, 2.5), /heads must be a positive integer, got 2.5/);
  new CrossAttention(12, 3).dispose();
});

test('Attention.probabilities honours causal as forward does: token i puts no weight on tokens after it', () => {
  torch.manualSeed(0);
  const attn = new Attention(8, 2);
  const x = torch.randn([2, 5, 8]);
  const p = attn.probabilities(x, { causal: true }); // [2, 2, 5, 5]
  assert.equal(p.triu(1).abs().max().item(), 0, 'weight above the diagonal');
  assert.ok(p.sum(-1).sub(1).abs().max().item() < 1e-6, 'rows sum to 1');
  // the same weights forward applies: proj(p · v) is forward's output
  const [, , v] = attn.heads(x);
  const o = attn.proj.forward(p.matmul(v).transpose(1, 2).reshape(2, 5, 8));
  assert.ok(
    o
      .sub(attn.forward(x, { causal: true }))
      .abs()
      .max()
      .item() < 1e-5,
  );
  attn.dispose();
});

test('per-patch normalisation of a patch of one value is refused naming target.normPix: its unbiased variance is NaN, and so was the loss', () => {
  const one = { imgSize: 8, patchSize: 1, inChans: 1, embedDim: 8, depth: 1, numHeads: 2, decoderDepth: 1, order: { type: 'raster' as const } };
  const target = { type: 'pixels' as const, normPix: true, blur: false, blurKernel: 9, blurSigma: 1 };
  assert.throws(
    () => makeConfig('vit_tiny', { ...one, target }),
    (e) => e instanceof ConfigError && e.key === 'target.normPix' && /at least 2 values per patch, a 1² patch of 1 channel\(s\) has 1/.test(e.message),
  );
  // without the normalisation, or with two values per patch, the loss is a number
  for (const c of [
    { ...one, target: { ...target, normPix: false } },
    { ...one, inChans: 2, target },
  ]) {
    const model = new SemAIM(makeConfig('vit_tiny', c)).initWeights();
    torch.scope(() => {
      const images = torch.randn([2, c.inChans, 8, 8]);
      assert.ok(Number.isFinite(model.forward(images, model.makeOrder(images).order).loss.item()));
    });
    model.dispose();
  }
});

test("encoderSimilarity refuses mode 'minmax' with tokens 'self' (attention probabilities, not cosines) instead of ignoring the mode", () => {
  torch.manualSeed(21);
  const model = new SemAIM(tinyConfig(1, { type: 'raster' })).initWeights();
  torch.scope(() => {
    const images = torch.randn([2, 3, 24, 24]);
    // it returned the softmax attention map, whose values do not span [0, 1] as 'minmax' says
    assert.throws(
      () => encoderSimilarity(model, images, 'minmax', 'self'),
      (e) =>
        e instanceof RangeError &&
        /^encoderSimilarity: mode 'minmax' normalises \[CLS\]- or mean-vs-patch cosines; tokens 'self' give attention probabilities/.test(e.message),
    );
    assert.equal(model.training, true, 'the model is left training');
    encoderSimilarity(model, images, 'softmax', 'self').dispose();
  });
  model.dispose();
});

test('a feature-target config whose teacher takes another number of image channels is refused naming target.teacherConfig, not at the first step', () => {
  // The teacher sees the model's images: a 1-channel teacher under a 3-channel model was accepted, and the
  // first forward failed with "expected images [B, 1, 16, 16], got [2, 3, 16, 16]" (the images fit the model).
  const teacherConfig = { imgSize: 16, patchSize: 4, inChans: 1, embedDim: 16, depth: 1, numHeads: 2 };
  const sizes = { imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2, decoderDepth: 1, order: { type: 'raster' } } as const;
  for (const inChans of [3, undefined]) {
    assert.throws(
      () => makeConfig('vit_tiny', { ...sizes, inChans, target: { type: 'features', teacher: 'x.safetensors', teacherConfig } }),
      (e: unknown) => e instanceof ConfigError && e.key === 'target.teacherConfig' && /takes 1 channel\(s\), the model 3/.test(e.message),
    );
  }
  // the same channels (given or by default) are fine, as is a teacher config that leaves its inChans at the default 3
  makeConfig('vit_tiny', { ...sizes, inChans: 1, target: { type: 'features', teacher: 'x.safetensors', teacherConfig } });
  makeConfig('vit_tiny', {
    ...sizes,
    inChans: 3,
    target: { type: 'features', teacher: 'x.safetensors', teacherConfig: { ...teacherConfig, inChans: undefined } },
  });
});

test('SemAIM.forward refuses a batch of no images, whose loss was the mean over no patches: NaN, with no error', () => {
  const model = new SemAIM(makeConfig('vit_tiny', { ...SMALL_SEMAIM, order: { type: 'raster' } })).initWeights(0);
  torch.scope(() => {
    const images = torch.zeros([0, 3, 32, 32]);
    const { order } = model.makeOrder(images); // no images, no orders: an empty [0, N] is fine
    assert.deepEqual(order.shape, [0, model.numPatches]);
    for (const path of ['fast', 'reference'] as const)
      assert.throws(() => model.forward(images, order, { path }), { name: 'RangeError', message: /forward: a batch of 0 images has no loss/ });
  });
  model.dispose();
});

test("a teacher set on the model with other patches or another width than the config's is refused, not sliced to fit", () => {
  // The fast path gathered the targets with the head's width and the model's patches: a teacher of 16
  // patches under a model of 4 gave the first 4 patches' features, one of width 32 under a head of 16 its
  // first 16 features, each trained on silently (the config's teacher, checked by validateConfig, differs).
  const tcfg = { imgSize: 16, patchSize: 8, embedDim: 16, depth: 1, numHeads: 2 };
  const cfg = makeConfig('vit_tiny', {
    imgSize: 16,
    patchSize: 8,
    embedDim: 16,
    depth: 2,
    numHeads: 2,
    decoderDepth: 1,
    order: { type: 'raster' },
    target: { type: 'features', teacher: 'x.safetensors', teacherConfig: tcfg },
  });
  const model = new SemAIM(cfg).initWeights(0);
  torch.scope(() => {
    const images = torch.randn([2, 3, 16, 16]);
    const { order } = model.makeOrder(images);
    for (const [other, what] of [
      [{ ...tcfg, patchSize: 4 }, /model\.teacher gives 16 patch tokens of width 16; the model predicts 4 patches of width 16/],
      [{ ...tcfg, embedDim: 32, numHeads: 2 }, /model\.teacher gives 4 patch tokens of width 32; the model predicts 4 patches of width 16/],
    ] as const) {
      model.teacher = new VisionTransformer(other).initWeights(1);
      for (const path of ['fast', 'reference'] as const) assert.throws(() => model.forward(images, order, { path }), what);
      model.teacher.dispose();
    }
    // a teacher of the config's sizes (another depth changes neither) is used as before
    model.teacher = new VisionTransformer({ ...tcfg, depth: 2 }).initWeights(1);
    assert.ok(Number.isFinite(model.forward(images, order).loss.item()));
    model.teacher.dispose();
  });
  model.dispose();
});
