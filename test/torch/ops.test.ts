// Forward values against PyTorch: scripts/golden_ops.py (Debian's torch 1.13) computed the outputs
// in test/golden/ops/*.json from inputs described by formulas; this test rebuilds the same inputs
// and compares the engine's outputs (1e-6 in float64). Also: attention against its definition.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { Tensor, F, DType } from '../../src/torch';
import { assertClose, cpuOnly, noLeak, rnd } from './helpers';

torch.setNumThreads(1);

const GOLDEN = join(__dirname, '..', '..', '..', 'test', 'golden', 'ops');

interface Spec {
  kind: 'sin' | 'int' | 'bool';
  shape: number[];
  a: number;
  b: number;
  s?: number;
  o?: number;
  m?: number;
  dtype?: DType;
}
interface Encoded {
  shape: number[];
  dtype: DType;
  data: number[];
}
interface Case {
  inputs: Spec[];
  outputs: Encoded[];
  atol: number;
  rtol: number;
}

const ops = JSON.parse(readFileSync(join(GOLDEN, 'ops.json'), 'utf8')) as { torch: string; cases: Record<string, Case> };
const rng = JSON.parse(readFileSync(join(GOLDEN, 'rng.json'), 'utf8')) as { torch: string; input: Spec; values: Record<string, Encoded> };

const Q = 2 ** 20;

/** The input a spec describes, exactly as scripts/golden_ops.py builds it. */
function build(spec: Spec): Tensor {
  const n = spec.shape.reduce((x, y) => x * y, 1);
  if (spec.kind === 'sin') {
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let t = i * spec.a;
      t = t + spec.b;
      v[i] = Math.round(Math.sin(t) * spec.s! * Q) / Q + spec.o!;
    }
    const t = torch.tensor(v, { dtype: 'float64', shape: spec.shape });
    return spec.dtype && spec.dtype !== 'float64' ? t.to({ dtype: spec.dtype }) : t;
  }
  if (spec.kind === 'int') {
    const v = new BigInt64Array(n);
    for (let i = 0; i < n; i++) v[i] = BigInt((spec.a * i + spec.b) % spec.m!);
    return torch.tensor(v, { shape: spec.shape });
  }
  const v = new Uint8Array(n);
  for (let i = 0; i < n; i++) v[i] = (spec.a * i + spec.b) % spec.m! !== 0 ? 1 : 0;
  return torch.tensor(v, { dtype: 'bool', shape: spec.shape });
}

function long(vals: number[], shape?: number[]): Tensor {
  return torch.tensor(BigInt64Array.from(vals.map(BigInt)), { shape: shape ?? [vals.length] });
}

type Impl = (...x: Tensor[]) => Tensor | Tensor[];

function attention(q: Tensor, k: Tensor, v: Tensor, o: F.AttentionOptions = {}): Tensor {
  return F.scaledDotProductAttention(q, k, v, o);
}

function bnTrain(x: Tensor, w: Tensor, b: Tensor): Tensor[] {
  const rm = torch.zeros([3], { dtype: 'float64' });
  const rv = torch.ones([3], { dtype: 'float64' });
  const y = F.batchNorm(x, rm, rv, { weight: w, bias: b, training: true, momentum: 0.1, eps: 1e-5 });
  return [y, rm, rv];
}

/**
 * The gradients of sum(fn(...inputs) * w) with respect to the first nWrt inputs, where w is the last input
 * (as grad_of in scripts/golden_ops.py).
 */
function gradOf(fn: (...x: Tensor[]) => Tensor, nWrt: number): Impl {
  return (...xs) => {
    const ins = xs.slice(0, -1).map((x, k) => (k < nWrt ? x.detach().requiresGrad_(true) : x));
    fn(...ins)
      .mul(xs[xs.length - 1])
      .sum()
      .backward();
    return ins.slice(0, nWrt).map((t) => t.grad!);
  };
}

const IMPL: Record<string, Impl> = {
  // elementwise
  add_broadcast: (a, b) => a.add(b),
  add_alpha: (a, b) => a.add(b, 2.5),
  add_scalar: (a) => a.add(1.5),
  sub_broadcast: (a, b) => a.sub(b),
  sub_alpha: (a, b) => a.sub(b, 0.5),
  sub_scalar: (a) => a.sub(3),
  rsub_scalar: (a) => a.rsub(2),
  mul_broadcast: (a, b) => a.mul(b),
  mul_scalar: (a) => a.mul(-1.75),
  div_broadcast: (a, b) => a.div(b),
  div_scalar: (a) => a.div(0.3),
  pow_scalar: (a) => a.pow(2.5),
  pow_tensor: (a, b) => a.pow(b),
  remainder: (a) => a.remainder(0.7),
  neg: (a) => a.neg(),
  exp: (a) => a.exp(),
  log: (a) => a.log(),
  sqrt: (a) => a.sqrt(),
  rsqrt: (a) => a.rsqrt(),
  abs: (a) => a.abs(),
  sigmoid: (a) => a.sigmoid(),
  tanh: (a) => a.tanh(),
  relu: (a) => F.relu(a),
  erf: (a) => a.erf(),
  sin_cos: (a) => [a.sin(), a.cos()],
  log1p_expm1: (a) => [a.log1p(), a.expm1()],
  floor_ceil_round: (a) => [a.floor(), a.ceil(), a.round()],
  reciprocal_sign_square: (a) => [a.reciprocal(), a.sign(), a.square()],
  clamp_both: (a) => a.clamp(-0.5, 0.7),
  clamp_min: (a) => a.clamp(-0.5),
  clamp_max: (a) => a.clamp(null, 0.7),
  maximum_minimum: (a, b) => [a.maximum(b), a.minimum(b)],
  compare: (a, b) => [a.eq(a), a.ne(b), a.lt(b), a.le(b), a.gt(b), a.ge(0.1)],
  logical: (a, b) => [a.logicalAnd(b), a.logicalOr(b), a.logicalXor(b), a.logicalNot()],
  where: (c, a, b) => torch.where(c, a, b),
  where_scalar: (c, a) => torch.where(c, a, 0.5),
  // linear algebra
  matmul_2d: (a, b) => a.matmul(b),
  matmul_batched_broadcast: (a, b) => torch.matmul(a, b),
  matmul_4d_3d: (a, b) => a.matmul(b),
  matmul_vec_mat: (a, b) => a.matmul(b),
  matmul_mat_vec: (a, b) => a.matmul(b),
  mm: (a, b) => a.mm(b),
  bmm: (a, b) => a.bmm(b),
  linear_bias: (x, w, b) => F.linear(x, w, b),
  linear_nobias: (x, w) => F.linear(x, w),
  outer: (a, b) => torch.outer(a, b),
  matmul_f32: (a, b) => a.matmul(b),
  // reductions
  sum_all: (a) => a.sum(),
  sum_dim: (a) => a.sum(1),
  sum_dims_keepdim: (a) => a.sum([0, 2], true),
  sum_int_dtype: (a) => [a.sum(), a.sum(1, false, 'float64')],
  mean_all: (a) => a.mean(),
  mean_dims: (a) => a.mean([1, 2]),
  mean_keepdim: (a) => a.mean(0, true),
  var_all: (a) => a.var(),
  var_dim: (a) => a.var(1),
  var_dims_biased_keepdim: (a) => a.var([0, 2], false, true),
  std_all: (a) => a.std(),
  std_dim: (a) => a.std(2),
  std_dims_biased: (a) => a.std([0, 1], false),
  max_min_all: (a) => [a.max(), a.min()],
  max_dim: (a) => a.maxDim(2),
  min_dim_keepdim: (a) => a.minDim(0, true),
  amax_amin: (a) => [a.amax([0, 2]), a.amin(1, true)],
  norm_2_all: (a) => a.norm(),
  norm_2_dim: (a) => a.norm(2, 1),
  norm_1_dims: (a) => a.norm(1, [0, 2]),
  norm_3_keepdim: (a) => a.norm(3, -1, true),
  logsumexp: (a) => a.logsumexp(1),
  cumsum: (a) => a.cumsum(2),
  argmax_argmin: (a) => [a.argmax(), a.argmax(1), a.argmin(2, true)],
  sort: (a) => a.sort(-1),
  sort_descending_dim0: (a) => a.sort(0, true),
  argsort: (a) => [a.argsort(-1), a.argsort(0, true)],
  topk: (a) => a.topk(3, -1),
  topk_smallest_dim0: (a) => a.topk(2, 0, false),
  any_all: (a) => [a.any(), a.all(), a.any(1), a.all(0)],
  // nn functions
  softmax_last: (a) => F.softmax(a, -1),
  softmax_dim0: (a) => a.softmax(0),
  log_softmax: (a) => F.logSoftmax(a, 1),
  softmax_f32: (a) => F.softmax(a, -1),
  layer_norm_affine: (x, w, b) => F.layerNorm(x, [6], w, b),
  layer_norm_plain_eps: (x) => F.layerNorm(x, [3, 6], null, null, 1e-6),
  layer_norm_f32: (x, w, b) => F.layerNorm(x, [64], w, b),
  batch_norm_train: bnTrain,
  batch_norm_eval: (x, rm, rv, w, b) => F.batchNorm(x, rm, rv, { weight: w, bias: b, training: false, eps: 1e-5 }),
  batch_norm_1d_train: (x) => F.batchNorm(x, null, null, { training: true }),
  gelu_exact: (x) => F.gelu(x),
  gelu_tanh: (x) => F.gelu(x, 'tanh'),
  gelu_f32: (x) => [F.gelu(x), F.gelu(x, 'tanh')],
  conv2d_plain: (x, w) => F.conv2d(x, w),
  conv2d_stride_pad_bias: (x, w, b) => F.conv2d(x, w, b, { stride: 2, padding: 1 }),
  conv2d_groups: (x, w, b) => F.conv2d(x, w, b, { padding: 1, groups: 2 }),
  conv2d_depthwise: (x, w) => F.conv2d(x, w, null, { groups: 4 }),
  conv2d_rect_dilation: (x, w) => F.conv2d(x, w, null, { stride: [2, 1], padding: [0, 2], dilation: 2 }),
  conv2d_patchify_f32: (x, w, b) => F.conv2d(x, w, b, { stride: 4 }),
  avg_pool2d: (x) => F.avgPool2d(x, 2),
  avg_pool2d_stride_pad: (x) => F.avgPool2d(x, 3, { stride: 2, padding: 1 }),
  avg_pool2d_noinclude_ceil: (x) => F.avgPool2d(x, 3, { stride: 2, padding: 1, ceilMode: true, countIncludePad: false }),
  max_pool2d: (x) => F.maxPool2d(x, 2),
  max_pool2d_stride_pad: (x) => F.maxPool2d(x, 3, { stride: 2, padding: 1 }),
  max_pool2d_dilation_ceil: (x) => F.maxPool2d(x, 2, { stride: 2, dilation: 2, ceilMode: true }),
  adaptive_avg_pool2d: (x) => F.adaptiveAvgPool2d(x, [4, 3]),
  interp_nearest: (x) => F.interpolate(x, [8, 7], 'nearest'),
  interp_bilinear_up: (x) => F.interpolate(x, [7, 8], 'bilinear', false),
  interp_bilinear_down: (x) => F.interpolate(x, [3, 2], 'bilinear'),
  interp_bilinear_align: (x) => F.interpolate(x, [6, 9], 'bilinear', true),
  interp_bicubic_up: (x) => F.interpolate(x, [7, 8], 'bicubic'),
  interp_bicubic_align: (x) => F.interpolate(x, [3, 3], 'bicubic', true),
  interp_area: (x) => F.interpolate(x, [4, 3], 'area'),
  pad_constant: (x) => F.pad(x, [1, 2, 0, 1], 0.5),
  ce_indices: (x, t) => F.crossEntropy(x, t),
  ce_indices_sum: (x, t) => F.crossEntropy(x, t, { reduction: 'sum' }),
  ce_indices_none: (x, t) => F.crossEntropy(x, t, { reduction: 'none' }),
  ce_label_smoothing: (x, t) => F.crossEntropy(x, t, { labelSmoothing: 0.1 }),
  ce_weight_smoothing: (x, t, w) => F.crossEntropy(x, t, { weight: w, labelSmoothing: 0.2 }),
  ce_weight: (x, t, w) => F.crossEntropy(x, t, { weight: w }),
  ce_ignore_index: (x, t) => F.crossEntropy(x, t, { ignoreIndex: 1 }),
  ce_kdim: (x, t) => F.crossEntropy(x, t, { labelSmoothing: 0.1 }),
  ce_probs: (x, p) => F.crossEntropy(x, F.softmax(p, -1)),
  ce_probs_smoothing: (x, p) => F.crossEntropy(x, F.softmax(p, -1), { labelSmoothing: 0.1 }),
  ce_probs_none: (x, p) => F.crossEntropy(x, F.softmax(p, -1), { reduction: 'none' }),
  mse_loss: (a, b) => [F.mseLoss(a, b), F.mseLoss(a, b, 'sum'), F.mseLoss(a, b, 'none')],
  cosine_similarity: (a, b) => [F.cosineSimilarity(a, b), F.cosineSimilarity(a, b, 0)],
  cosine_similarity_broadcast: (a, b) => F.cosineSimilarity(a, b, -1),
  normalize: (a) => F.normalize(a, 2, -1),
  one_hot: (t) => F.oneHot(t, 5),
  // joining, indexing, views
  cat: (a, b, c) => torch.cat([a, b, c], 1),
  stack: (a, b) => [torch.stack([a, b]), torch.stack([a, b], -1)],
  split_size: (a) => a.split(2, 1),
  split_sizes: (a) => a.split([1, 3], 0),
  chunk: (a) => a.chunk(3, 1),
  gather: (a, i) => a.gather(1, i),
  scatter: (a, s) => a.scatter(1, long([4, 0, 2, 1, 3, 1, 0, 2], [2, 4]), s),
  scatter_add: (a, i, s) => a.scatterAdd(1, i, s),
  index_select: (a, i) => a.indexSelect(1, i),
  index_advanced: (a, i) => a.index([i]),
  index_put: (a, v) => [a.indexPut([long([2, 0])], v), a.indexPut([long([1, 1])], v, true)],
  masked_fill: (a, m) => a.maskedFill(m, -2.5),
  masked_fill_broadcast: (a, m) => a.maskedFill(m, 0),
  masked_select_nonzero: (a, m) => [a.maskedSelect(m), m.nonzero()],
  tril_triu: (a) => [a.tril(), a.triu(1), a.tril(-1)],
  flip_repeat: (a) => [a.flip(0, 1), a.repeat(2, 3)],
  views: (a) => [
    a.reshape(4, 6),
    a.view(6, 4),
    a.permute(2, 0, 1),
    a.transpose(0, 2),
    a.slice(2, 1, 3),
    a.slice(2, 0, undefined, 2),
    a.slice(1, -2),
    a.narrow(1, 1, 2),
    a.select(1, 2),
    a.flatten(1),
    a.unsqueeze(1),
    a.mT,
  ],
  expand_squeeze: (a, b) => [a.expand(2, 3, 5), b.squeeze(), b.squeeze(2)],
  // attention (golden: the explicit softmax(q kᵀ · scale + mask) v, causal top-left aligned)
  sdpa_plain: (q, k, v) => attention(q, k, v),
  sdpa_plain_lq_ne_lk: (q, k, v) => attention(q, k, v),
  sdpa_causal: (q, k, v) => attention(q, k, v, { causal: true }),
  sdpa_causal_lq_lt_lk: (q, k, v) => attention(q, k, v, { causal: true }),
  sdpa_causal_lq_gt_lk: (q, k, v) => attention(q, k, v, { causal: true }),
  sdpa_bool_mask: (q, k, v, m) => attention(q, k, v, { mask: m }),
  sdpa_float_mask: (q, k, v, m) => attention(q, k, v, { mask: m }),
  sdpa_scale: (q, k, v) => attention(q, k, v, { scale: 0.3 }),
  sdpa_f32: (q, k, v) => attention(q, k, v, { causal: true }),
  // edge semantics (the outputs' dtypes are compared too)
  promote_int_float: (a, b) => [a.add(b), a.mul(b), a.sub(b)],
  promote_int_true_div: (a, b) => [a.div(b.add(1)), a.div(2), a.remainder(-3)],
  promote_int_scalars: (a) => [a.mul(2), a.add(1.5), a.sub(7), a.rsub(2), a.pow(2), a.clamp(1, 3)],
  promote_bool: (a, b, c) => [a.add(b), a.mul(b), a.mul(c), a.mul(2), a.sum()],
  promote_half: (h, f, bf) => [h.add(f), h.add(bf), h.mul(2.5), bf.sub(1)],
  promote_where_int_scalar: (c, a) => [torch.where(c, a, 7), torch.where(c, a, 0.5)],
  reduce_negative_dims: (a) => [a.sum([-1, 0]), a.mean(-2, true), a.amax([-1, -3]), a.var(-1), a.logsumexp(-1), a.norm(2, [-2, -1], true)],
  reduce_empty: (a) => [a.sum(), a.sum(1), a.sum(0), a.cumsum(1), a.amax(0), a.norm(), a.logsumexp(0)],
  ties_argmax_argmin: (a) => [a.argmax(), a.argmax(1), a.argmin(1), a.maxDim(1)[1], a.minDim(0)[1]],
  ties_argsort_stable: (a) => [a.argsort(-1, false, true), a.argsort(0, true, true)],
  ties_topk: (c, a) => [a.double().topk(3)[0], c.topk(2)[0]],
  index_negative_dims: (a, i, j) => [a.gather(-1, i), a.indexSelect(-2, j), a.select(-1, -2), a.narrow(-1, -3, 2)],
  ce_ignore_smoothing_weight: (x, t, w) =>
    (['mean', 'sum', 'none'] as const).map((reduction) => F.crossEntropy(x, t, { weight: w, ignoreIndex: 2, labelSmoothing: 0.15, reduction })),
  ce_kdim_ignore_smoothing_weight: (x, t, w) => F.crossEntropy(x, t, { weight: w, ignoreIndex: 0, labelSmoothing: 0.25 }),
  clamp_masked_fill_broadcast: (a, m) => [a.clamp(0.3, -0.2), a.maskedFill(m, -2.5)],
  // gradients of sum(out * w) for the last input w, against PyTorch's
  grad_ce_ignore_smoothing_weight: gradOf((x, t, w) => F.crossEntropy(x, t, { weight: w, ignoreIndex: 2, labelSmoothing: 0.15 }), 1),
  grad_ce_probs_smoothing: gradOf((x, p) => F.crossEntropy(x, F.softmax(p, -1), { labelSmoothing: 0.1 }), 1),
  grad_layer_norm: gradOf((x, w, b) => F.layerNorm(x, [6], w, b, 1e-5), 3),
  grad_gelu: gradOf((a, b) => F.gelu(a).add(F.gelu(b, 'tanh')), 2),
  grad_softmax_log_softmax: gradOf((a) => F.softmax(a, 0).add(F.logSoftmax(a, -1)), 1),
  grad_max_ties: gradOf((a) => a.max(), 1),
  grad_amax_ties: gradOf((a) => a.amax(1), 1),
  grad_max_dim_ties: gradOf((a) => a.maxDim(1)[0], 1),
  grad_clamp_bounds_norm: gradOf((a) => a.clamp(-0.5, 0.5).add(a.norm()), 1),
  grad_where_masked_fill_broadcast: gradOf((a, b, c) => torch.where(c, a, b).add(a.maskedFill(c, 1.5)), 2),
  grad_interpolate: gradOf(
    (x) =>
      F.interpolate(x, [5, 7], 'bilinear', true)
        .add(F.interpolate(x, [5, 7], 'bicubic', false))
        .add(F.interpolate(x, [5, 7], 'nearest')),
    1,
  ),
  grad_normalize_cosine: gradOf((a, b) => F.normalize(a, 2, 1).mul(F.cosineSimilarity(a, b, 1).unsqueeze(1)), 2),
  grad_sdpa_mask: gradOf((q, k, v, m) => attention(q, k, v, { mask: m }), 3),
};

function compare(name: string, got: Tensor, want: Encoded, atol: number, rtol: number): void {
  assert.equal(got.dtype, want.dtype, `${name}: dtype`);
  assert.deepEqual(got.shape, want.shape, `${name}: shape`);
  assertClose(got, want.data, atol, rtol, name);
}

test('golden: every case has an implementation and every implementation a case', () => {
  assert.deepEqual(Object.keys(IMPL).sort(), Object.keys(ops.cases).sort());
  assert.ok(Object.keys(ops.cases).length >= 150);
});

for (const [name, c] of Object.entries(ops.cases)) {
  test(`golden op: ${name}`, () => {
    const impl = IMPL[name];
    assert.ok(impl, `no implementation for golden case ${name}`);
    noLeak(() => {
      const inputs = c.inputs.map(build);
      const out = impl(...inputs);
      const outs = Array.isArray(out) ? out : [out];
      assert.equal(outs.length, c.outputs.length, `${name}: number of outputs`);
      outs.forEach((t, i) => compare(`${name} output ${i}`, t, c.outputs[i], c.atol, c.rtol));
    });
  });
}

// ---------------------------------------------------------------- seeded random streams

const sameTorch = (() => {
  const v = torch.version();
  return rng.torch.startsWith(`${v.major}.${v.minor}.`);
})();
const rngSkip = sameTorch ? false : `the rng golden values come from torch ${rng.torch}; this libtorch is ${torch.version().torch}`;

test("golden rng: manualSeed/Generator streams equal PyTorch's (same libtorch version)", { skip: rngSkip }, () => {
  noLeak(() => {
    const r = rng.values;
    const check = (name: string, t: Tensor): void => compare(name, t, r[name], 0, 0);
    torch.manualSeed(0);
    check('randn_seed0_5', torch.randn([5], { dtype: 'float64' }));
    torch.manualSeed(0);
    check('randn_seed0_40_f32', torch.randn([40]));
    torch.manualSeed(123);
    check('rand_seed123_3x4', torch.rand([3, 4], { dtype: 'float64' }));
    const g = new torch.Generator(42);
    check('generator42_randn_6', torch.randn([6], { generator: g, dtype: 'float64' }));
    check('generator42_rand_6_next', torch.rand([6], { generator: g, dtype: 'float64' }));
    torch.manualSeed(7);
    check('randint_seed7', torch.randint(0, 10, [8]));
    torch.manualSeed(7);
    check('randperm_seed7', torch.randperm(10));
    torch.manualSeed(1234);
    check('dropout_seed1234_p04', F.dropout(build(rng.input), 0.4, true));
  });
});

test('a Generator seed is checked as manualSeed checks it, and a generator option that is not a Generator is a TypeError', () => {
  // new Generator('5') used the default seed, NaN seeded 0 and 1.5 seeded 1; generator: {} drew from the global stream
  for (const seed of [NaN, 1.5, '5' as unknown as number, Infinity]) {
    assert.throws(
      () => new torch.Generator(seed),
      (e: Error) => {
        const sameAsManualSeed = (() => {
          try {
            new torch.Generator(1).manualSeed(seed);
          } catch (m) {
            return (m as Error).message;
          }
        })();
        assert.equal(e.message, sameAsManualSeed);
        return /Generator\.seed: argument 0: expected an integer/.test(e.message);
      },
    );
  }
  noLeak(() => {
    const a = torch.rand([3], { generator: new torch.Generator(5), dtype: 'float64' });
    const b = torch.rand([3], { generator: new torch.Generator().manualSeed(5), dtype: 'float64' });
    assert.deepEqual(a.tolist(), b.tolist());
    const notGenerator = { generator: {} as torch.Generator };
    assert.throws(() => torch.rand([2], notGenerator), { name: 'TypeError', message: 'rand: generator must be a torch.Generator, got an Object' });
    assert.throws(() => torch.randn([2], notGenerator), TypeError);
    assert.throws(() => torch.randint(0, 5, [2], notGenerator), TypeError);
    assert.throws(() => torch.randperm(4, notGenerator), TypeError);
    assert.throws(() => torch.zeros([2]).uniform_(0, 1, {} as torch.Generator), /uniform_: generator must be a torch.Generator/);
    // something with a `native` that is not the addon's generator (the addon would draw from the global one)
    const lookalike = { native: { seed() {} } } as unknown as torch.Generator;
    assert.throws(() => torch.rand([2], { generator: lookalike }), /^TypeError: rand: generator must be a torch.Generator, got an Object$/);
    // null, as undefined, is the global generator
    torch.manualSeed(3);
    const global = torch.rand([3], { dtype: 'float64' }).tolist();
    torch.manualSeed(3);
    assert.deepEqual(torch.rand([3], { dtype: 'float64', generator: null as unknown as torch.Generator }).tolist(), global);
  });
});

// ---------------------------------------------------------------- attention against its definition

/** softmax(q kᵀ · scale, masked) v written out with tensor ops. */
function explicitAttention(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | null, scale?: number): Tensor {
  const s = scale ?? 1 / Math.sqrt(q.size(-1));
  let scores = q.matmul(k.transpose(-2, -1)).mul(s);
  if (keep) scores = scores.maskedFill(keep.logicalNot(), -Infinity);
  return F.softmax(scores, -1).matmul(v);
}

/** keep[i][j] = j <= i + offset over [L, S] (offset 0: top-left aligned), built element by element. */
function causalKeep(L: number, S: number, offset = 0): Tensor {
  const m = new Uint8Array(L * S);
  for (let i = 0; i < L; i++) for (let j = 0; j < S; j++) m[i * S + j] = j <= i + offset ? 1 : 0;
  return torch.tensor(m, { dtype: 'bool', shape: [L, S] });
}

test('attention: causal equals an explicit masked softmax within 1e-6 (float64)', () => {
  noLeak(() => {
    for (const [L, S] of [
      [7, 7],
      [4, 9],
      [9, 4],
      [1, 5],
      [16, 16],
    ]) {
      const q = rnd([2, 3, L, 8], { lo: -2, hi: 2, seed: 100 + L });
      const k = rnd([2, 3, S, 8], { lo: -2, hi: 2, seed: 200 + S });
      const v = rnd([2, 3, S, 8], { seed: 300 + S });
      const got = F.scaledDotProductAttention(q, k, v, { causal: true });
      assertClose(got, explicitAttention(q, k, v, causalKeep(L, S)), 1e-6, 0, `causal L=${L} S=${S}`);
      // The causal flag and the same mask given explicitly agree too.
      assertClose(got, F.scaledDotProductAttention(q, k, v, { mask: causalKeep(L, S) }), 1e-12, 0, `causal vs bool mask L=${L} S=${S}`);
      assertClose(got, F.attentionReference(q, k, v, { causal: true }), 1e-12, 0, `fused path vs reference L=${L} S=${S}`);
    }
  });
});

test('attention: Lq != Lk causal is top-left aligned (query i sees keys j <= i)', () => {
  noLeak(() => {
    const L = 3,
      S = 6,
      E = 4;
    const q = rnd([1, L, E], { lo: -2, hi: 2, seed: 7 });
    const k = rnd([1, S, E], { lo: -2, hi: 2, seed: 8 });
    const v = rnd([1, S, E], { seed: 9 });
    const out = F.scaledDotProductAttention(q, k, v, { causal: true });
    // Query 0 sees only key 0: its output is exactly v[0].
    assertClose(out.select(1, 0), v.select(1, 0), 1e-12, 0, 'query 0 output');
    // Changing keys/values after position i must not change query i's output (for all i < L) ...
    for (let i = 0; i < L; i++) {
      const v2 = v.clone();
      const k2 = k.clone();
      v2.narrow(1, i + 1, S - i - 1).fill_(100);
      k2.narrow(1, i + 1, S - i - 1).fill_(-3);
      const out2 = F.scaledDotProductAttention(q, k2, v2, { causal: true });
      assertClose(out2.select(1, i), out.select(1, i), 1e-12, 0, `query ${i} must ignore keys > ${i}`);
      // ... while changing key i itself does (it is visible).
      const v3 = v.clone();
      v3.narrow(1, i, 1).fill_(100);
      const out3 = F.scaledDotProductAttention(q, k, v3, { causal: true });
      assert.ok(Math.abs(out3.select(1, i).sum().item() - out.select(1, i).sum().item()) > 1e-3, `query ${i} must see key ${i}`);
    }
    // Bottom-right alignment (the other convention) would give a different result here.
    const bottomRight = explicitAttention(q, k, v, causalKeep(L, S, S - L));
    assert.ok(Math.abs(bottomRight.sum().item() - out.sum().item()) > 1e-6, 'top-left and bottom-right alignment must differ in this case');
  });
});

test('attention: bool mask (true = attend) and float mask (added) match their definitions; causal with mask is rejected', () => {
  noLeak(() => {
    const q = rnd([2, 2, 4, 8], { seed: 21 });
    const k = rnd([2, 2, 6, 8], { seed: 22 });
    const v = rnd([2, 2, 6, 8], { seed: 23 });
    const keep = rnd([4, 6], { seed: 24 }).gt(-0.5);
    keep.select(1, 0).fill_(1); // every query keeps at least key 0
    assertClose(F.scaledDotProductAttention(q, k, v, { mask: keep }), explicitAttention(q, k, v, keep), 1e-12, 0, 'bool mask');
    const bias = rnd([2, 1, 4, 6], { seed: 25 });
    const s = q
      .matmul(k.transpose(-2, -1))
      .mul(1 / Math.sqrt(8))
      .add(bias);
    assertClose(F.scaledDotProductAttention(q, k, v, { mask: bias }), F.softmax(s, -1).matmul(v), 1e-12, 0, 'float mask');
    assert.throws(() => F.scaledDotProductAttention(q, k, v, { mask: keep, causal: true }), /either causal or mask/);
  });
});

// ---------------------------------------------------------------- audit findings (values from torch 1.13)

test('rsub on uint8/int8 with a float scalar promotes before subtracting (no wrapped negation)', () => {
  noLeak(() => {
    // torch 1.13: torch.rsub(torch.tensor([9, 0], dtype=torch.uint8), 2.5) -> tensor([-6.5, 2.5]) float32
    const u = torch.tensor([9, 0], { dtype: 'uint8' }).rsub(2.5);
    assert.equal(u.dtype, 'float32');
    assert.deepEqual(u.tolist(), [-6.5, 2.5]);
    // torch 1.13: torch.rsub(torch.tensor([-128], dtype=torch.int8), 2.5) -> tensor([130.5])
    assert.deepEqual(torch.tensor([-128], { dtype: 'int8' }).rsub(2.5).tolist(), [130.5]);
    // torch 1.13: torch.rsub(torch.tensor([1, 2, 3]), 10) -> tensor([9, 8, 7]) int64
    const i = torch.tensor([1, 2, 3], { dtype: 'int64' }).rsub(10);
    assert.equal(i.dtype, 'int64');
    assert.deepEqual(i.tolist(), [9, 8, 7]);
  });
});

test("F.normalize takes PyTorch's arguments: (input, p = 2, dim = 1, eps = 1e-12)", () => {
  noLeak(() => {
    const x = torch.tensor([
      [
        [3, 4],
        [1, 0],
      ],
      [
        [0, 2],
        [6, 8],
      ],
    ]);
    // torch 1.13: F.normalize(x) and F.normalize(x, 2, 1) (dim 1)
    const dim1 = [
      [
        [0.9486832618713379, 1],
        [0.3162277638912201, 0],
      ],
      [
        [0, 0.24253563582897186],
        [1, 0.9701425433158875],
      ],
    ];
    assertClose(F.normalize(x), dim1.flat(2), 1e-6);
    assertClose(F.normalize(x, 2, 1), dim1.flat(2), 1e-6);
    // torch 1.13: F.normalize(x, 1, -1) (p = 1 over the last dim)
    assertClose(
      F.normalize(x, 1, -1),
      [
        [
          [0.4285714328289032, 0.5714285969734192],
          [1, 0],
        ],
        [
          [0, 1],
          [0.4285714328289032, 0.5714285969734192],
        ],
      ].flat(2),
      1e-6,
    );
  });
});

test('F.normalize: a zero row gives zeros, not NaN; the default eps is 1e-12 (torch 1.13)', () => {
  noLeak(() => {
    // torch 1.13: F.normalize([[3e-7, 4e-7], [0, 0]]) -> [[0.6, 0.8], [0, 0]]; with eps=1e-6 the first row is [0.3, 0.4]
    const x = torch.tensor([
      [3e-7, 4e-7],
      [0, 0],
    ]);
    assertClose(F.normalize(x), [0.6, 0.8, 0, 0], 1e-6);
    assertClose(F.normalize(x, 2, 1, 1e-6), [0.3, 0.4, 0, 0], 1e-6);
  });
});

test("functional defaults are PyTorch 1.13's: batchNorm (eval, momentum 0.1, eps 1e-5), dropout p in [0, 1], crossEntropy ignoreIndex -100, cosineSimilarity eps 1e-8", () => {
  noLeak(() => {
    const x = torch.tensor([
      [1, 10],
      [3, 30],
    ]);
    const rm = torch.zeros([2]);
    const rv = torch.ones([2]);
    // torch 1.13: F.batch_norm(x, rm, rv) normalises with the running statistics and leaves them alone
    assertClose(F.batchNorm(x, rm, rv), [0.999995, 9.99995, 2.999985, 29.99985], 1e-5);
    assertClose(rm, [0, 0], 0);
    assertClose(rv, [1, 1], 0);
    // torch 1.13: F.batch_norm(x, rm, rv, training=True) -> running mean [0.2, 2], running var [1.1, 20.9]
    F.batchNorm(x, rm, rv, { training: true });
    assertClose(rm, [0.2, 2], 1e-6);
    assertClose(rv, [1.1, 20.9], 1e-5);
    rm.dispose();
    rv.dispose();
    assert.throws(() => F.dropout(x, 1.5), /dropout: p must be in \[0, 1\], got 1\.5/);
    assert.throws(() => F.dropout(x, -0.1), /dropout: p must be in \[0, 1\], got -0\.1/);
    // both ends of [0, 1] are allowed: p = 1 drops everything, p = 0 nothing
    assertClose(F.dropout(x, 1), [0, 0, 0, 0], 0);
    assertClose(F.dropout(x, 0), [1, 10, 3, 30], 0);
    // torch 1.13: F.cross_entropy(l, [-100, 1]) == F.cross_entropy(l[1:], [1]) == 3.2413113117218018
    const logits = torch.tensor([
      [1, 2, 3],
      [0.5, -1, 2],
    ]);
    assertClose(F.crossEntropy(logits, torch.tensor([-100, 1], { dtype: 'int64' })), [3.2413113117218018], 1e-6);
    // torch 1.13: F.cosine_similarity(a, a) = 1 for a = [[1e-5, 0]] (each norm clamped to eps = 1e-8); eps=1e-4 gives 0.01
    const a = torch.tensor([[1e-5, 0]]);
    assertClose(F.cosineSimilarity(a, a), [1], 1e-6);
    assertClose(F.cosineSimilarity(a, a, 1, 1e-4), [0.01], 1e-6);
  });
});

test("randint, randperm and bernoulli honour dtype (and bernoulli device), with PyTorch's seeded streams", { skip: rngSkip || cpuOnly }, () => {
  noLeak(() => {
    // torch 1.13: torch.manual_seed(7); torch.randint(0, 10, (6,), dtype=torch.int32) -> [5, 2, 1, 6, 3, 7] (the int64 draw is the same)
    for (const dtype of ['int32', 'int64'] as const) {
      torch.manualSeed(7);
      const r = torch.randint(0, 10, [6], dtype === 'int32' ? { dtype } : {});
      assert.equal(r.dtype, dtype);
      assert.deepEqual(r.tolist(), [5, 2, 1, 6, 3, 7]);
    }
    // torch 1.13: torch.manual_seed(7); torch.randperm(8, dtype=torch.int32) -> [7, 0, 3, 4, 1, 5, 2, 6]
    torch.manualSeed(7);
    const p = torch.randperm(8, { dtype: 'int32' });
    assert.equal(p.dtype, 'int32');
    assert.deepEqual(p.tolist(), [7, 0, 3, 4, 1, 5, 2, 6]);
    // torch 1.13: torch.randint(0, 100, (5,), generator=torch.Generator().manual_seed(3), dtype=torch.int16) -> [86, 48, 37, 67, 60]
    const g = torch.randint(0, 100, [5], { dtype: 'int16', generator: new torch.Generator(3) });
    assert.equal(g.dtype, 'int16');
    assert.deepEqual(g.tolist(), [86, 48, 37, 67, 60]);
    // torch 1.13: torch.randperm(6, generator=torch.Generator().manual_seed(3), dtype=torch.int32) -> [4, 0, 3, 2, 1, 5]
    assert.deepEqual(torch.randperm(6, { dtype: 'int32', generator: new torch.Generator(3) }).tolist(), [4, 0, 3, 2, 1, 5]);
    // torch 1.13: torch.manual_seed(7); torch.bernoulli(torch.zeros(8, dtype=torch.float64), 0.5) -> [1, 1, 0, 0, 0, 0, 1, 0]
    torch.manualSeed(7);
    const b = torch.bernoulli(torch.zeros([8]), 0.5, { dtype: 'float64' });
    assert.equal(b.dtype, 'float64');
    assert.deepEqual(b.tolist(), [1, 1, 0, 0, 0, 0, 1, 0]);
    assert.equal(torch.bernoulli(torch.zeros([2], { dtype: 'float64' }), 0.5).dtype, 'float64', "like's dtype when none is given");
    // The device option is used, not dropped: an absent device is refused.
    assert.throws(
      () => torch.bernoulli(torch.zeros([2]), 0.5, { device: 'cuda:99' }),
      (e: Error & { code?: string }) => /^ERR_/.test(String(e.code)),
    );
  });
});

test('attention refuses an integer mask (it was added to the scores as numbers); bool and float masks as before', () => {
  noLeak(() => {
    const q = torch.randn([1, 2, 3, 4]);
    const keep = torch.tensor([
      [true, false, false],
      [true, true, false],
      [true, true, true],
    ]);
    for (const dtype of ['int64', 'int32', 'uint8'] as DType[]) {
      for (const [name, fn] of [
        ['scaledDotProductAttention', F.scaledDotProductAttention],
        ['attentionReference', F.attentionReference],
      ] as const) {
        assert.throws(() => fn(q, q, q, { mask: keep.to({ dtype }) }), {
          name: 'TypeError',
          message: `${name}: the mask must be bool (true = may attend) or floating (added to the scores), got ${dtype}`,
        });
      }
    }
    const additive = torch.zeros([3, 3]).maskedFill(keep.logicalNot(), -Infinity);
    assertClose(F.scaledDotProductAttention(q, q, q, { mask: keep }), F.attentionReference(q, q, q, { mask: additive }), 1e-6, 1e-6);
  });
});
