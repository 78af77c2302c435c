// Float64 finite-difference gradient checks for every differentiable op of the engine (issue 2).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { Tensor, F } from '../../src/torch';
import { gradcheck, GradcheckError } from '../../src/torch/gradcheck';
import { rnd, noLeak, assertClose } from './helpers';

torch.setNumThreads(1);

/** gradcheck inside a leak check; `name` is prefixed to a failure. */
function gc(name: string, fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: Parameters<typeof gradcheck>[2] = {}): void {
  try {
    const r = gradcheck(fn, inputs, opts);
    assert.ok(r.ok);
    assert.ok(r.inputs.length > 0 && r.inputs.every((i) => i.checked > 0), `${name}: nothing was checked`);
  } catch (e) {
    if (e instanceof Error) e.message = `${name}: ${e.message}`;
    throw e;
  }
}

function intTensor(vals: number[], shape: number[]): Tensor {
  return torch.tensor(BigInt64Array.from(vals.map((v) => BigInt(v))), { shape });
}

// ---------------------------------------------------------------- the checker itself

test('gradcheck: passes a correct gradient, reports a wrong one precisely, frees everything', () => {
  noLeak(() => {
    const x = rnd([3, 4], { seed: 1 });
    const r = gradcheck((a) => a.mul(a), [x]);
    assert.equal(r.ok, true);
    assert.deepEqual(
      r.inputs.map((i) => [i.input, i.checked]),
      [[0, 12]],
    );
    // d/dx (x * stop_grad(x)) is x, not 2x: the checker must say which input/element and both values.
    let err: unknown;
    try {
      gradcheck((a) => a.mul(a.detach()), [x]);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof GradcheckError, 'a wrong gradient must throw GradcheckError');
    const rep = (err as GradcheckError).report;
    assert.equal(rep.ok, false);
    assert.equal(rep.mismatches.length, 12);
    const m = rep.mismatches[0];
    assert.equal(m.input, 0);
    assert.deepEqual(m.index, [0, 0]);
    // every element's multi-index, row-major
    assert.deepEqual(
      rep.mismatches.map((mm) => [mm.element, mm.index]),
      Array.from({ length: 12 }, (_, e) => [e, [Math.floor(e / 4), e % 4]]),
    );
    assert.ok(Math.abs(m.numeric - 2 * m.analytic) < 1e-6, `numeric ${m.numeric} should be twice analytic ${m.analytic}`);
    assert.match((err as Error).message, /input 0 element 0 \[0, 0\]: analytic .* vs numeric/);
    // raise: false returns the report instead.
    assert.equal(gradcheck((a) => a.mul(a.detach()), [x], { raise: false }).ok, false);
    // Sampling: at most maxElements per input; the caller's tensors are untouched.
    const big = rnd([20, 20], { seed: 2 });
    big.requiresGrad = true;
    const r2 = gradcheck((a) => a.sin(), [big], { maxElements: 7 });
    assert.equal(r2.inputs[0].checked, 7);
    assert.equal(big.grad, null, "gradcheck must not accumulate into the caller's .grad");
    // Only float64 inputs can be differentiated.
    assert.throws(() => gradcheck((a) => a.mul(2), [rnd([2], { dtype: 'float32' })]), /float64/);
    // A maxElements that is not a whole number of at least 1 is refused (-1 checked all elements but one, 0 none)
    for (const bad of [-1, 0, 2.5, NaN])
      assert.throws(() => gradcheck((a) => a.sin(), [big], { maxElements: bad }), /gradcheck: maxElements must be a whole number of at least 1/, String(bad));
  });
});

test('gradcheck: refuses a bad wrt, no floating input or an output it cannot check; rtol is relative to the numeric gradient; the report', () => {
  noLeak(() => {
    const x = rnd([3], { seed: 3 });
    const idx = intTensor([0, 1, 2], [3]);
    // (a fraction passed the range check and failed on inputs[0.5] with a bare TypeError)
    for (const i of [-1, 2, 0.5, NaN])
      assert.throws(
        () => gradcheck((a) => a.mul(2), [x, idx], { wrt: [i] }),
        new RegExp(`^RangeError: gradcheck: wrt index ${i} is not an input's index \\(2 inputs: 0\\.\\.1\\)$`),
        String(i),
      );
    assert.throws(() => gradcheck((a) => a.double(), [idx]), /^Error: gradcheck: no floating-point input to check$/);
    // fn's output: a floating-point tensor that depends on a checked input
    assert.throws(() => gradcheck((a) => a.gt(0), [x]), /^TypeError: gradcheck: fn returned a bool tensor; it must be floating-point$/);
    assert.throws(() => gradcheck((a) => a.detach().mul(2), [x]), /^Error: gradcheck: the output does not depend on any checked input/);
    // analytic 1.8, numeric 1: |1.8 - 1| = 0.8 is beyond rtol 0.5 of the numeric value (though within 0.5 of the analytic one)
    const wrong = (a: Tensor): Tensor => a.add(a.sub(a.detach()).mul(0.8));
    const r = gradcheck(wrong, [x], { atol: 0, rtol: 0.5, raise: false });
    assert.equal(r.mismatches.length, 3);
    assert.equal(gradcheck(wrong, [x], { atol: 0, rtol: 0.9 }).ok, true);
    // the default rtol (1e-4) catches a gradient 0.1% off
    const slightlyOff = (a: Tensor): Tensor => a.add(a.sub(a.detach()).mul(1e-3));
    assert.ok(gradcheck(slightlyOff, [rnd([8], { seed: 4, lo: 1, hi: 2 })], { raise: false }).mismatches.length > 0);
    // the message lists 10 mismatches and counts the rest; the sampled elements are reported in order
    const eleven = gradcheck((a) => a.mul(a.detach()), [rnd([11], { seed: 5 })], { raise: false });
    assert.equal(eleven.mismatches.length, 11);
    assert.match(new GradcheckError(eleven).message, /\n {2}\.\.\. and 1 more$/);
    const sampled = gradcheck((a) => a.mul(a.detach()), [rnd([20, 20], { seed: 6 })], { raise: false, maxElements: 7 });
    const elements = sampled.mismatches.map((m) => m.element);
    assert.equal(elements.length, 7);
    assert.deepEqual(
      elements,
      [...elements].sort((a, b) => a - b),
    );
  });
});

test('gradcheck: a NaN error is the largest error of its input, whatever elements come after it', () => {
  noLeak(() => {
    // sqrt at 0: an infinite analytic gradient, a NaN central difference (sqrt(-eps)); at 4 they agree
    const r = gradcheck((a) => a.sqrt(), [torch.tensor([0, 4], { dtype: 'float64' })], { raise: false });
    assert.deepEqual(
      r.mismatches.map((m) => m.element),
      [0],
    );
    assert.ok(Number.isNaN(r.inputs[0].maxAbsError), `maxAbsError ${r.inputs[0].maxAbsError}`);
  });
});

// ---------------------------------------------------------------- elementwise

test('grad: add/sub/mul/div with broadcasting, scalars and alpha', () => {
  noLeak(() => {
    const a = rnd([3, 4]);
    const row = rnd([4]);
    const col = rnd([3, 1]);
    const den = rnd([3, 4], { lo: 0.5, hi: 2 });
    const denRow = rnd([4], { lo: 0.5, hi: 2 });
    gc('add', (x, y) => x.add(y), [a, rnd([3, 4])]);
    gc('add broadcast row', (x, y) => x.add(y), [a, row]);
    gc('add broadcast col x row', (x, y) => x.add(y), [col, row]);
    gc('add alpha', (x, y) => x.add(y, 2.5), [a, row]);
    gc('add scalar', (x) => x.add(1.5), [a]);
    gc('sub', (x, y) => x.sub(y), [a, col]);
    gc('sub alpha', (x, y) => x.sub(y, -0.5), [col, a]);
    gc('sub scalar', (x) => x.sub(3), [a]);
    gc('rsub', (x) => x.rsub(2), [a]);
    gc('mul', (x, y) => x.mul(y), [a, rnd([3, 4])]);
    gc('mul broadcast', (x, y) => x.mul(y), [col, row]);
    gc('mul scalar', (x) => x.mul(-1.75), [a]);
    gc('div', (x, y) => x.div(y), [a, den]);
    gc('div broadcast', (x, y) => x.div(y), [a, denRow]);
    gc('div scalar', (x) => x.div(0.3), [a]);
    gc('neg', (x) => x.neg(), [a]);
    gc('3-D broadcast', (x, y) => x.mul(y).add(x), [rnd([2, 1, 4]), rnd([3, 1])]);
  });
});

test('grad: matmul (2-D, batched, broadcast, vector), bmm, linear', () => {
  noLeak(() => {
    gc('matmul 2-D', (x, y) => x.matmul(y), [rnd([3, 4]), rnd([4, 5])]);
    gc('matmul batched broadcast', (x, y) => x.matmul(y), [rnd([2, 3, 4]), rnd([4, 2])]);
    gc('matmul 4-D x 3-D', (x, y) => x.matmul(y), [rnd([2, 1, 3, 4]), rnd([3, 4, 2])]);
    gc('matmul vector-matrix', (x, y) => x.matmul(y), [rnd([4]), rnd([4, 3])]);
    gc('matmul matrix-vector', (x, y) => x.matmul(y), [rnd([3, 4]), rnd([4])]);
    gc('mm', (x, y) => x.mm(y), [rnd([2, 3]), rnd([3, 4])]);
    gc('bmm', (x, y) => x.bmm(y), [rnd([2, 3, 4]), rnd([2, 4, 5])]);
    gc('linear with bias', (x, w, b) => F.linear(x, w, b), [rnd([2, 3, 4]), rnd([5, 4]), rnd([5])]);
    gc('linear without bias', (x, w) => F.linear(x, w), [rnd([3, 4]), rnd([2, 4])]);
    gc('outer', (x, y) => torch.outer(x, y), [rnd([3]), rnd([4])]);
  });
});

test('grad: exp, log, sqrt, rsqrt, pow, abs, clamp and other unary ops', () => {
  noLeak(() => {
    const x = rnd([3, 5]);
    const pos = rnd([3, 5], { lo: 0.3, hi: 2 });
    gc('exp', (a) => a.exp(), [x]);
    gc('log', (a) => a.log(), [pos]);
    gc('sqrt', (a) => a.sqrt(), [pos]);
    gc('rsqrt', (a) => a.rsqrt(), [pos]);
    gc('pow scalar 3', (a) => a.pow(3), [x]);
    gc('pow scalar 2.5', (a) => a.pow(2.5), [pos]);
    gc('pow scalar -1.5', (a) => a.pow(-1.5), [pos]);
    gc('pow tensor exponent', (a, b) => a.pow(b), [pos, rnd([3, 5])]);
    gc('pow broadcast exponent', (a, b) => a.pow(b), [pos, rnd([5])]);
    gc('abs', (a) => a.abs(), [rnd([4, 5], { awayFrom: [0] })]);
    const c = rnd([4, 5], { lo: -2, hi: 2, awayFrom: [-0.5, 0.7] });
    gc('clamp min,max', (a) => a.clamp(-0.5, 0.7), [c]);
    gc('clamp min only', (a) => a.clamp(-0.5), [c]);
    gc('clamp max only', (a) => a.clamp(null, 0.7), [c]);
    gc('sigmoid', (a) => a.sigmoid(), [x]);
    gc('tanh', (a) => a.tanh(), [x]);
    gc('relu', (a) => a.relu(), [rnd([4, 5], { awayFrom: [0] })]);
    gc('erf', (a) => a.erf(), [x]);
    gc('sin/cos', (a) => a.sin().mul(a.cos()), [x]);
    gc('log1p/expm1', (a) => a.log1p().add(a.expm1()), [pos]);
    gc('square', (a) => a.square(), [x]);
    gc('reciprocal', (a) => a.reciprocal(), [pos]);
    gc('maximum/minimum', (a, b) => a.maximum(b).add(a.minimum(b).mul(3)), [rnd([3, 4], { seed: 11 }), rnd([3, 4], { seed: 12 })]);
    gc('tril/triu', (a) => a.tril().add(a.triu(1).mul(2)), [rnd([4, 4])]);
  });
});

// ---------------------------------------------------------------- reductions

test('grad: sum/mean/var/std/max/min/norm with dims', () => {
  noLeak(() => {
    const x = rnd([3, 4, 5]);
    gc('sum all', (a) => a.sum(), [x]);
    gc('sum dim', (a) => a.sum(1), [x]);
    gc('sum dims keepdim', (a) => a.sum([0, 2], true), [x]);
    gc('sum negative dim', (a) => a.sum(-1), [x]);
    gc('mean all', (a) => a.mean(), [x]);
    gc('mean dims', (a) => a.mean([1, 2]), [x]);
    gc('mean keepdim', (a) => a.mean(0, true), [x]);
    gc('var all', (a) => a.var(), [x]);
    gc('var dim unbiased', (a) => a.var(1), [x]);
    gc('var dims biased keepdim', (a) => a.var([0, 2], false, true), [x]);
    gc('std all', (a) => a.std(), [x]);
    gc('std dim', (a) => a.std(2), [x]);
    gc('std dims biased', (a) => a.std([0, 1], false), [x]);
    gc('max all', (a) => a.max(), [x]);
    gc('min all', (a) => a.min(), [x]);
    gc('amax dim', (a) => a.amax(1), [x]);
    gc('amax dims keepdim', (a) => a.amax([0, 2], true), [x]);
    gc('amin dim', (a) => a.amin(-1), [x]);
    gc('maxDim values', (a) => a.maxDim(2)[0], [x]);
    gc('minDim values keepdim', (a) => a.minDim(0, true)[0], [x]);
    gc('norm 2 all', (a) => a.norm(), [x]);
    gc('norm 2 dim', (a) => a.norm(2, 1), [x]);
    gc('norm 1 dims', (a) => a.norm(1, [0, 2]), [rnd([3, 4, 5], { awayFrom: [0] })]);
    gc('norm 3 keepdim', (a) => a.norm(3, -1, true), [x]);
    gc('logsumexp', (a) => a.logsumexp(1), [x]);
    gc('cumsum', (a) => a.cumsum(2), [x]);
  });
});

// ---------------------------------------------------------------- nn functions

test('grad: softmax and logSoftmax', () => {
  noLeak(() => {
    const x = rnd([3, 4, 5], { lo: -2, hi: 2 });
    gc('softmax last', (a) => F.softmax(a, -1), [x]);
    gc('softmax dim 0', (a) => F.softmax(a, 0), [x]);
    gc('softmax method', (a) => a.softmax(1), [x]);
    gc('logSoftmax last', (a) => F.logSoftmax(a, -1), [x]);
    gc('logSoftmax dim 1', (a) => a.logSoftmax(1), [x]);
  });
});

test('grad: layerNorm (with and without affine, several normalised dims)', () => {
  noLeak(() => {
    const x = rnd([2, 3, 6], { lo: -2, hi: 2 });
    gc('layerNorm affine', (a, w, b) => F.layerNorm(a, [6], w, b), [x, rnd([6], { lo: 0.5, hi: 1.5 }), rnd([6])]);
    gc('layerNorm plain', (a) => F.layerNorm(a, [6]), [x]);
    gc('layerNorm 2 dims', (a, w) => F.layerNorm(a, [3, 6], w, null, 1e-6), [x, rnd([3, 6])]);
  });
});

test('grad: batchNorm (training with and without running stats, eval)', () => {
  noLeak(() => {
    const x = rnd([4, 3, 2, 2], { lo: -2, hi: 2 });
    const w = rnd([3], { lo: 0.5, hi: 1.5 });
    const b = rnd([3]);
    const rm = torch.zeros([3], { dtype: 'float64' });
    const rv = torch.ones([3], { dtype: 'float64' });
    gc('batchNorm training, running stats', (a, ww, bb) => F.batchNorm(a, rm, rv, { weight: ww, bias: bb, training: true }), [x, w, b]);
    gc('batchNorm training, no running stats', (a, ww, bb) => F.batchNorm(a, null, null, { weight: ww, bias: bb, training: true }), [x, w, b]);
    gc('batchNorm training 2-D (BatchNorm1d)', (a) => F.batchNorm(a, null, null, { training: true }), [rnd([5, 3])]);
    const erm = rnd([3], { lo: -0.5, hi: 0.5 });
    const erv = rnd([3], { lo: 0.5, hi: 2 });
    gc('batchNorm eval', (a, ww, bb) => F.batchNorm(a, erm, erv, { weight: ww, bias: bb, training: false }), [x, w, b]);
  });
});

test('grad: gelu exact and tanh', () => {
  noLeak(() => {
    const x = rnd([4, 6], { lo: -3, hi: 3 });
    gc('gelu exact', (a) => F.gelu(a), [x]);
    gc('gelu none', (a) => F.gelu(a, 'none'), [x]);
    gc('gelu tanh', (a) => F.gelu(a, 'tanh'), [x]);
  });
});

test('grad: dropout (p=0, eval, and a fixed seed is consistent)', () => {
  noLeak(() => {
    const x = rnd([6, 8]);
    gc('dropout p=0', (a) => F.dropout(a, 0), [x]);
    gc('dropout eval', (a) => F.dropout(a, 0.5, false), [x]);
    // Same seed → same mask: forward values repeat and the finite differences see a fixed function.
    const drop = (a: Tensor): Tensor => {
      torch.manualSeed(1234);
      return F.dropout(a, 0.4);
    };
    const y1 = drop(x);
    const y2 = drop(x);
    assertClose(y1, y2, 0, 0, 'dropout with the same seed');
    const vals = y1.toFloat64Array();
    const xs = x.toFloat64Array();
    let zeros = 0;
    for (let i = 0; i < vals.length; i++) {
      if (vals[i] === 0) zeros++;
      else assert.ok(Math.abs(vals[i] - xs[i] / 0.6) < 1e-12, 'kept elements are scaled by 1/(1-p)');
    }
    assert.ok(zeros > 5 && zeros < 40, `about 40% of 48 elements dropped, got ${zeros}`);
    gc('dropout p=0.4 fixed seed', drop, [x]);
    // The gradient is exactly the mask / (1-p).
    const xl = x.detach().clone().requiresGrad_(true);
    drop(xl).sum().backward();
    const g = xl.grad!.toFloat64Array();
    for (let i = 0; i < g.length; i++) assert.equal(g[i], vals[i] === 0 ? 0 : 1 / 0.6);
  });
});

test('grad: conv2d (stride, padding, dilation, groups, bias)', () => {
  noLeak(() => {
    const x = rnd([2, 4, 6, 6]);
    gc('conv2d plain', (a, w) => F.conv2d(a, w), [x, rnd([3, 4, 3, 3])], { maxElements: 30 });
    gc('conv2d stride 2 padding 1 bias', (a, w, b) => F.conv2d(a, w, b, { stride: 2, padding: 1 }), [x, rnd([3, 4, 3, 3]), rnd([3])], { maxElements: 30 });
    gc('conv2d groups 2', (a, w, b) => F.conv2d(a, w, b, { groups: 2, padding: 1 }), [x, rnd([4, 2, 3, 3]), rnd([4])], { maxElements: 30 });
    gc('conv2d depthwise', (a, w) => F.conv2d(a, w, null, { groups: 4 }), [x, rnd([4, 1, 3, 3])], { maxElements: 30 });
    gc(
      'conv2d rectangular stride/padding, dilation',
      (a, w) => F.conv2d(a, w, null, { stride: [2, 1], padding: [0, 2], dilation: 2 }),
      [x, rnd([2, 4, 2, 3])],
      { maxElements: 30 },
    );
    gc('conv2d patchify (kernel = stride)', (a, w, b) => F.conv2d(a, w, b, { stride: 3 }), [x, rnd([5, 4, 3, 3]), rnd([5])], { maxElements: 30 });
  });
});

test('grad: avgPool2d and maxPool2d', () => {
  noLeak(() => {
    const x = rnd([2, 3, 6, 6]);
    gc('avgPool2d 2', (a) => F.avgPool2d(a, 2), [x]);
    gc('avgPool2d 3 stride 2 padding 1', (a) => F.avgPool2d(a, 3, { stride: 2, padding: 1 }), [x]);
    gc('avgPool2d countIncludePad=false ceilMode', (a) => F.avgPool2d(a, 3, { stride: 2, padding: 1, countIncludePad: false, ceilMode: true }), [x]);
    gc('maxPool2d 2', (a) => F.maxPool2d(a, 2), [x]);
    gc('maxPool2d 3 stride 2 padding 1', (a) => F.maxPool2d(a, 3, { stride: 2, padding: 1 }), [x]);
    gc('maxPool2d dilation', (a) => F.maxPool2d(a, 2, { stride: 1, dilation: 2 }), [x]);
    gc('adaptiveAvgPool2d', (a) => F.adaptiveAvgPool2d(a, [4, 3]), [x]);
  });
});

test('grad: interpolate (bilinear, bicubic, nearest, area; up and down; alignCorners)', () => {
  noLeak(() => {
    const x = rnd([1, 2, 4, 5]);
    gc('bilinear up', (a) => F.interpolate(a, [7, 8], 'bilinear'), [x]);
    gc('bilinear down', (a) => F.interpolate(a, [3, 2], 'bilinear'), [x]);
    gc('bilinear alignCorners', (a) => F.interpolate(a, [6, 9], 'bilinear', true), [x]);
    gc('bicubic up', (a) => F.interpolate(a, [7, 8], 'bicubic'), [x]);
    gc('bicubic down alignCorners', (a) => F.interpolate(a, [3, 3], 'bicubic', true), [x]);
    gc('nearest', (a) => F.interpolate(a, [8, 7], 'nearest'), [x]);
    gc('area', (a) => F.interpolate(a, [2, 3], 'area'), [x]);
  });
});

test('grad: crossEntropy (indices, probabilities, label smoothing, weight, ignoreIndex, reductions)', () => {
  noLeak(() => {
    const logits = rnd([5, 4], { lo: -2, hi: 2 });
    const idx = intTensor([0, 3, 1, 1, 2], [5]);
    gc('indices mean', (a, t) => F.crossEntropy(a, t), [logits, idx]);
    gc('indices sum', (a, t) => F.crossEntropy(a, t, { reduction: 'sum' }), [logits, idx]);
    gc('indices none', (a, t) => F.crossEntropy(a, t, { reduction: 'none' }), [logits, idx]);
    gc('indices label smoothing 0.1', (a, t) => F.crossEntropy(a, t, { labelSmoothing: 0.1 }), [logits, idx]);
    const w = rnd([4], { lo: 0.5, hi: 2 });
    gc('indices class weight', (a, t) => F.crossEntropy(a, t, { weight: w }), [logits, idx]);
    gc('indices class weight + smoothing', (a, t) => F.crossEntropy(a, t, { weight: w, labelSmoothing: 0.2 }), [logits, idx]);
    gc('indices ignoreIndex', (a, t) => F.crossEntropy(a, t, { ignoreIndex: 1 }), [logits, idx]);
    gc('indices K-dim [N, C, d]', (a, t) => F.crossEntropy(a, t, { labelSmoothing: 0.1 }), [rnd([2, 4, 3]), intTensor([0, 1, 2, 3, 3, 0], [2, 3])]);
    // Probability targets (soft labels): differentiable in both logits and target.
    const probs = F.softmax(rnd([5, 4], { lo: -1, hi: 1 }), -1);
    gc('probabilities', (a, p) => F.crossEntropy(a, p), [logits, probs]);
    gc('probabilities label smoothing', (a, p) => F.crossEntropy(a, p, { labelSmoothing: 0.1 }), [logits, probs]);
    gc('probabilities sum', (a, p) => F.crossEntropy(a, p, { reduction: 'sum' }), [logits, probs]);
  });
});

test('grad: mseLoss, cosineSimilarity, normalize', () => {
  noLeak(() => {
    const a = rnd([4, 5]);
    const b = rnd([4, 5]);
    gc('mseLoss mean', (x, y) => F.mseLoss(x, y), [a, b]);
    gc('mseLoss sum', (x, y) => F.mseLoss(x, y, 'sum'), [a, b]);
    gc('mseLoss none', (x, y) => F.mseLoss(x, y, 'none'), [a, b]);
    gc('cosineSimilarity dim 1', (x, y) => F.cosineSimilarity(x, y), [a, b]);
    gc('cosineSimilarity dim 0', (x, y) => F.cosineSimilarity(x, y, 0), [a, b]);
    gc('cosineSimilarity broadcast', (x, y) => F.cosineSimilarity(x, y, -1), [rnd([3, 4, 5]), rnd([4, 5])]);
    gc('normalize', (x) => F.normalize(x, 2, -1), [a]);
  });
});

// ---------------------------------------------------------------- joining and indexing

test('grad: cat, stack, split, chunk', () => {
  noLeak(() => {
    gc('cat dim 0', (x, y) => torch.cat([x, y]), [rnd([2, 3]), rnd([4, 3])]);
    gc('cat dim 1 (3 inputs)', (x, y, z) => torch.cat([x, y, z], 1), [rnd([2, 3]), rnd([2, 1]), rnd([2, 2])]);
    gc('stack dim 0', (x, y) => torch.stack([x, y]), [rnd([2, 3]), rnd([2, 3])]);
    gc('stack dim -1', (x, y) => torch.stack([x, y], -1), [rnd([2, 3]), rnd([2, 3])]);
    gc(
      'split by size',
      (x) => {
        const p = x.split(2, 1);
        return torch.cat([p[2].mul(3), p[0], p[1].mul(-2)], 1);
      },
      [rnd([3, 5])],
    );
    gc(
      'split by sizes',
      (x) => {
        const p = x.split([1, 3], 0);
        return p[1].sum(0).add(p[0].mul(5));
      },
      [rnd([4, 3])],
    );
    gc('split one part used', (x) => x.split([2, 2], 1)[1], [rnd([3, 4])]);
    gc(
      'chunk',
      (x) => {
        const c = x.chunk(3, 1);
        return c[0].mul(c[1]).add(c[2]);
      },
      [rnd([2, 6])],
    );
  });
});

test('grad: gather, scatter, scatterAdd, indexSelect, index, maskedFill, where', () => {
  noLeak(() => {
    const x = rnd([3, 5]);
    const idx = intTensor([4, 0, 2, 1, 1, 3, 0, 0, 2, 4, 3, 1], [3, 4]);
    gc('gather dim 1', (a, i) => a.gather(1, i), [x, idx]);
    gc('gather dim 0', (a, i) => a.gather(0, i), [x, intTensor([2, 0, 1, 1, 0, 2, 2, 1, 0, 1], [2, 5])]);
    // scatter: distinct target positions per row (duplicates would make the result order-dependent).
    const sidx = intTensor([4, 0, 2, 1, 3, 1, 0, 2], [2, 4]);
    gc('scatter (self and src)', (a, i, s) => a.scatter(1, i, s), [x, sidx, rnd([2, 4])]);
    gc('scatterAdd with duplicates', (a, i, s) => a.scatterAdd(1, i, s), [x, intTensor([1, 1, 0, 4, 2, 2, 2, 0], [2, 4]), rnd([2, 4])]);
    gc('indexSelect dim 0', (a, i) => a.indexSelect(0, i), [x, intTensor([2, 0, 2], [3])]);
    gc('indexSelect dim 1 (repeats)', (a, i) => a.indexSelect(1, i), [x, intTensor([4, 4, 1, 0], [4])]);
    gc('index (advanced)', (a, i) => a.index([i]), [x, intTensor([1, 1, 0], [3])]);
    const mask = torch.tensor([
      [true, false, false, true, false],
      [false, false, true, false, false],
      [true, true, false, false, true],
    ]);
    gc('maskedFill scalar', (a, m) => a.maskedFill(m, -2.5), [x, mask]);
    gc('maskedFill broadcast mask', (a, m) => a.maskedFill(m, 0), [rnd([2, 3, 5]), mask]);
    gc('where tensors', (c, a, b) => torch.where(c, a, b), [mask, x, rnd([3, 5])]);
    gc('where broadcast', (c, a, b) => torch.where(c, a, b), [mask, rnd([5]), rnd([3, 1])]);
    gc('where scalar', (c, a) => torch.where(c, a, 0.5), [mask, x]);
  });
});

test('grad: views (reshape, view, permute, transpose, expand, slice, narrow, select, squeeze/unsqueeze, flatten, ...)', () => {
  noLeak(() => {
    const x = rnd([2, 3, 4]);
    // Each view is followed by a multiplication with a fixed tensor so position errors show.
    const w24 = rnd([24]);
    const weigh = (t: Tensor): Tensor => t.reshape([-1]).mul(w24.narrow(0, 0, t.numel));
    gc('reshape', (a) => weigh(a.reshape([4, 6])), [x]);
    gc('reshape -1', (a) => a.reshape(3, -1).matmul(rnd([8, 2], { seed: 5 })), [x]);
    gc('view', (a) => weigh(a.view([6, 4])), [x]);
    gc('permute', (a) => weigh(a.permute(2, 0, 1).contiguous()), [x]);
    gc('transpose', (a) => weigh(a.transpose(0, 2).contiguous()), [x]);
    gc('T', (a) => a.T.matmul(rnd([2, 3], { seed: 6 })), [rnd([2, 5])]);
    gc('expand', (a) => a.expand(3, 4, 5).mul(rnd([3, 4, 5], { seed: 7 })), [rnd([4, 1])]);
    gc('expandAs', (a, b) => a.expandAs(b).mul(b), [rnd([1, 5]), rnd([3, 5])]);
    gc('slice', (a) => weigh(a.slice(2, 1, 3).contiguous()), [x]);
    gc('slice step 2', (a) => weigh(a.slice(2, 0, undefined, 2).contiguous()), [x]);
    gc('slice negative', (a) => weigh(a.slice(1, -2).contiguous()), [x]);
    gc('narrow', (a) => weigh(a.narrow(1, 1, 2).contiguous()), [x]);
    gc('select', (a) => weigh(a.select(1, 2).contiguous()), [x]);
    gc('squeeze all', (a) => weigh(a.squeeze()), [rnd([1, 3, 1, 4])]);
    gc('squeeze dim', (a) => weigh(a.squeeze(2)), [rnd([3, 4, 1])]);
    gc('unsqueeze', (a) => a.unsqueeze(1).mul(rnd([3, 2, 4], { seed: 8 })), [rnd([3, 4])]);
    gc('flatten', (a) => weigh(a.flatten(1)), [x]);
    gc('repeat', (a) => a.repeat(2, 3).mul(rnd([4, 6], { seed: 9 })), [rnd([2, 2])]);
    gc('flip', (a) => weigh(a.flip(0, 2)), [x]);
    gc('pad', (a) => F.pad(a, [1, 2, 0, 1], 0.5).mul(rnd([2, 4, 7], { seed: 10 })), [x]);
  });
});

// ---------------------------------------------------------------- attention

test('grad: scaledDotProductAttention (plain, causal, bool mask, float mask, Lq != Lk, scale)', () => {
  noLeak(() => {
    const B = 2,
      H = 2,
      E = 4;
    const q = rnd([B, H, 3, E], { lo: -2, hi: 2 });
    const k = rnd([B, H, 5, E], { lo: -2, hi: 2 });
    const v = rnd([B, H, 5, E]);
    const qs = rnd([B, H, 5, E], { lo: -2, hi: 2 });
    const sdpa = F.scaledDotProductAttention;
    const o = { maxElements: 20 };
    gc('plain', (a, b, c) => sdpa(a, b, c), [qs, k, v], o);
    gc('plain Lq != Lk', (a, b, c) => sdpa(a, b, c), [q, k, v], o);
    gc('causal Lq = Lk', (a, b, c) => sdpa(a, b, c, { causal: true }), [qs, k, v], o);
    gc('causal Lq < Lk', (a, b, c) => sdpa(a, b, c, { causal: true }), [q, k, v], o);
    gc('causal Lq > Lk', (a, b, c) => sdpa(a, b, c, { causal: true }), [qs, q, rnd([B, H, 3, E])], o);
    // A bool mask (true = attend) broadcast over batch and heads; every row keeps at least one key.
    const bmask = torch.tensor([
      [true, false, true, true, false],
      [false, true, false, false, false],
      [true, true, true, false, true],
    ]);
    gc('bool mask', (a, b, c, m) => sdpa(a, b, c, { mask: m }), [q, k, v, bmask], o);
    gc('bool mask per batch', (a, b, c, m) => sdpa(a, b, c, { mask: m }), [q, k, v, bmask.unsqueeze(0).unsqueeze(0).expand(B, 1, 3, 5).contiguous()], o);
    // A float mask is added to the scores: differentiable in the mask too.
    gc('float mask', (a, b, c, m) => sdpa(a, b, c, { mask: m }), [q, k, v, rnd([3, 5], { lo: -1, hi: 1 })], o);
    gc('custom scale', (a, b, c) => sdpa(a, b, c, { scale: 0.3 }), [q, k, v], o);
    gc('3-D inputs', (a, b, c) => sdpa(a, b, c, { causal: true }), [rnd([2, 4, 3]), rnd([2, 4, 3]), rnd([2, 4, 3])], o);
  });
});
