// The fused ops (src/torch/fused.ts, native/fused.cc) against the unfused libtorch composition, forward
// and backward. On the CPU the fused functions run the kernels' arithmetic with libtorch ops (so their
// custom backward is what is checked); on a GPU (scripts/gpu-check.sh, SEMAIM_TEST_DEVICE=cuda) the same
// tests compare the CUDA kernels with the unfused ops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { F, Tensor, fused } from '../../src/torch';
import { gradcheck } from '../../src/torch/gradcheck';
import { gaussianBlur, normalizePatches, patchify } from '../../src/semaim/targets';
import { rnd, assertClose } from '../torch/helpers';
import { native } from '../../src/torch/native';
import { PatchEmbed } from '../../src/semaim/vit';

type Low = 'bfloat16' | 'float16';
/** Tolerance of a dtype's rounding (a couple of units in the last place, relative). */
const tol = (dtype: torch.DType): number => (dtype === 'bfloat16' ? 2 ** -7 : dtype === 'float16' ? 2 ** -10 : dtype === 'float32' ? 1e-5 : 1e-12);

function unfusedAddLayerNorm(x: Tensor, r: Tensor | null, w: Tensor, b: Tensor, eps: number): { h: Tensor | null; y: Tensor } {
  const h = r ? x.add(r) : null;
  return { h, y: F.layerNorm(h ?? x, [x.shape[x.shape.length - 1]], w, b, eps) };
}

/** Gradients of sum(outs · projections) with respect to the inputs. */
function grads(inputs: Tensor[], outs: Tensor[], seed: number): Tensor[] {
  const loss = outs
    .map((o, i) =>
      o
        .float()
        .mul(rnd(o.shape, { seed: seed + i, dtype: 'float32' }).to({ device: o.device }))
        .sum(),
    )
    .reduce((a, c) => a.add(c));
  loss.backward();
  return inputs.map((t) => t.grad!.clone());
}

function leaf(t: Tensor): Tensor {
  return t.detach().requiresGrad_();
}

test('fused=false is the unfused composition, op for op', () => {
  torch.scope(() => {
    const x = rnd([2, 5, 12], { dtype: 'float32' });
    const r = rnd([2, 5, 12], { dtype: 'float32', seed: 2 });
    const w = rnd([12], { dtype: 'float32', seed: 3 });
    const b = rnd([12], { dtype: 'float32', seed: 4 });
    const want = unfusedAddLayerNorm(x, r, w, b, 1e-6);
    const got = fused.addLayerNorm(x, r, w, b, 1e-6, { fused: false });
    assert.equal(got.sum.sub(want.h!).abs().max().item(), 0);
    assert.equal(got.normed.sub(want.y).abs().max().item(), 0);
    assert.equal(
      fused
        .layerNorm(x, w, b, 1e-6, { fused: false })
        .sub(F.layerNorm(x, [12], w, b, 1e-6))
        .abs()
        .max()
        .item(),
      0,
    );
    assert.equal(fused.geluAfterBias(x, b, { fused: false }).sub(F.gelu(x)).abs().max().item(), 0);
  });
});

test('fused LayerNorm (+ residual) equals the unfused ops, forward and backward, float32 and float64', () => {
  torch.scope(() => {
    for (const dtype of ['float32', 'float64'] as const) {
      for (const residual of [false, true]) {
        const x0 = rnd([3, 7, 40], { dtype, lo: -3, hi: 3 });
        const r0 = rnd([3, 7, 40], { dtype, seed: 11 });
        const w0 = rnd([40], { dtype, seed: 12 });
        const b0 = rnd([40], { dtype, seed: 13 });
        const inputs = (): Tensor[] => [leaf(x0), leaf(r0), leaf(w0), leaf(b0)];
        const [x, r, w, b] = inputs();
        const want = unfusedAddLayerNorm(x, residual ? r : null, w, b, 1e-6);
        const wantGrads = grads(residual ? [x, r, w, b] : [x, w, b], want.h ? [want.h, want.y] : [want.y], 100);
        const [x2, r2, w2, b2] = inputs();
        let outs: Tensor[];
        if (residual) {
          const got = fused.addLayerNorm(x2, r2, w2, b2, 1e-6, { fused: true });
          assertClose(got.sum, want.h!, 0, 0, `${dtype} sum`);
          outs = [got.sum, got.normed];
        } else {
          outs = [fused.layerNorm(x2, w2, b2, 1e-6, { fused: true })];
        }
        assertClose(outs[outs.length - 1], want.y, tol(dtype), tol(dtype), `${dtype} residual=${residual} y`);
        const gotGrads = grads(residual ? [x2, r2, w2, b2] : [x2, w2, b2], outs, 100);
        gotGrads.forEach((g, i) => assertClose(g, wantGrads[i], 10 * tol(dtype), 10 * tol(dtype), `${dtype} residual=${residual} grad ${i}`));
      }
    }
  });
});

test('fused LayerNorm in 16-bit storage, with a 16-bit branch added to a float32 stream, and a narrowed input', () => {
  torch.scope(() => {
    for (const low of ['bfloat16', 'float16'] as Low[]) {
      // A 16-bit model: x, r and the weights in the same dtype; the output rounded once.
      const x = rnd([2, 6, 64], { dtype: low, lo: -2, hi: 2 });
      const r = rnd([2, 6, 64], { dtype: low, seed: 21 });
      const w = rnd([64], { dtype: 'float32', seed: 22 });
      const b = rnd([64], { dtype: 'float32', seed: 23 });
      const got = fused.addLayerNorm(x, r, w, b, 1e-6, { fused: true });
      assert.equal(got.sum.dtype, low);
      assertClose(got.sum, x.add(r), 0, 0, `${low} sum rounded as x.add(r)`);
      assertClose(got.normed, F.layerNorm(x.add(r).float(), [64], w, b, 1e-6), tol(low), tol(low), `${low} y`);
      // Autocast's residual stream: float32 x plus a 16-bit branch, the result written in 16 bits for a Linear
      // (CPU autocast in libtorch 1.13 knows only bfloat16).
      if (low === 'float16' && torch.deviceType(x.device) === 'cpu') continue;
      const xs = rnd([2, 6, 64], { dtype: 'float32', lo: -2, hi: 2, seed: 24 });
      const mixed = torch.autocast({ device: torch.deviceType(xs.device), dtype: low }, () =>
        fused.addLayerNorm(xs, r, w, b, 1e-6, { fused: true, forLinear: true }),
      );
      assert.equal(mixed.sum.dtype, 'float32');
      assert.equal(mixed.normed.dtype, low);
      assertClose(mixed.sum, xs.add(r), 0, 0, `${low} mixed sum`);
      assertClose(mixed.normed, F.layerNorm(xs.add(r), [64], w, b, 1e-6).to({ dtype: low }), tol(low), tol(low), `${low} mixed y`);
      // Without forLinear under autocast, or with it outside autocast, the result stays in the input's dtype.
      const notForLinear = torch.autocast({ device: torch.deviceType(xs.device), dtype: low }, () => fused.addLayerNorm(xs, r, w, b, 1e-6, { fused: true }));
      assert.equal(notForLinear.normed.dtype, 'float32', `${low} without forLinear`);
      assert.equal(fused.addLayerNorm(xs, r, w, b, 1e-6, { fused: true, forLinear: true }).normed.dtype, 'float32', `${low} forLinear outside autocast`);
    }
    // A sequence narrowed from a longer one (the decoder's keys): no contiguous copy needed, same values.
    const full = rnd([2, 9, 32], { dtype: 'float32' });
    const w = rnd([32], { dtype: 'float32', seed: 31 });
    const narrowed = full.narrow(1, 0, 8);
    assert.equal(narrowed.isContiguous, false);
    assertClose(fused.layerNorm(narrowed, w, null, 1e-6, { fused: true }), F.layerNorm(narrowed, [32], w, null, 1e-6), 1e-5, 1e-5, 'narrowed');
  });
});

test('fused LayerNorm: float64 gradcheck of x, residual, weight and bias', () => {
  torch.scope(() => {
    const x = rnd([2, 3, 6], { lo: -2, hi: 2 }).requiresGrad_();
    const r = rnd([2, 3, 6], { seed: 41 }).requiresGrad_();
    const w = rnd([6], { seed: 42 }).requiresGrad_();
    const b = rnd([6], { seed: 43 }).requiresGrad_();
    gradcheck(
      (a, c, d, e) => {
        const o = fused.addLayerNorm(a, c, d, e, 1e-5, { fused: true });
        return o.normed.add(o.sum.mul(0.5));
      },
      [x, r, w, b],
    );
    gradcheck((a, d, e) => fused.layerNorm(a, d, e, 1e-5, { fused: true }), [x, w, b]);
  });
});

test('fused LayerNorm backward (the layernorm-backward kind) equals the unfused backward: residual, 16-bit branch, weights or none', () => {
  torch.scope(() => {
    const cases = [
      { dtype: 'float32', low: null, residual: true, w: true, b: true },
      { dtype: 'float32', low: null, residual: false, w: true, b: false },
      { dtype: 'float64', low: null, residual: true, w: false, b: true },
      { dtype: 'bfloat16', low: null, residual: true, w: true, b: true },
      // Autocast's float32 residual stream plus a bfloat16 branch: the branch's gradient comes back in bfloat16.
      { dtype: 'float32', low: 'bfloat16', residual: true, w: true, b: true },
    ] as const;
    for (const c of cases) {
      const what = `${c.dtype}${c.low ? `+${c.low}` : ''} residual=${c.residual} w=${c.w} b=${c.b}`;
      const x0 = rnd([3, 5, 40], { dtype: c.dtype, lo: -3, hi: 3 });
      const r0 = rnd([3, 5, 40], { dtype: c.low ?? c.dtype, seed: 71 });
      const wdt = c.dtype === 'float32' ? 'float32' : c.dtype; // the unfused CPU LayerNorm wants x's dtype otherwise
      const w0 = rnd([40], { dtype: wdt, seed: 72 });
      const b0 = rnd([40], { dtype: wdt, seed: 73 });
      const run = (o: fused.FusedOptions | null): Tensor[] => {
        const [x, r, w, b] = [leaf(x0), leaf(r0), leaf(w0), leaf(b0)];
        const wo = c.w ? w : null;
        const bo = c.b ? b : null;
        const inputs = [x, ...(c.residual ? [r] : []), ...(c.w ? [w] : []), ...(c.b ? [b] : [])];
        if (!o) {
          const want = unfusedAddLayerNorm(x, c.residual ? r : null, w, b, 1e-6);
          const y = F.layerNorm(want.h ?? x, [40], wo, bo, 1e-6);
          return grads(inputs, want.h ? [want.h, y] : [y], 300);
        }
        const outs = c.residual ? Object.values(fused.addLayerNorm(x, r, wo, bo, 1e-6, o)) : [fused.layerNorm(x, wo, bo, 1e-6, o)];
        return grads(inputs, outs, 300);
      };
      const want = run(null);
      // Through the options, and through the switch (setFused with the kind, onCpu) as the model takes it.
      const viaOptions = run({ fused: true, fusedBackward: true });
      fused.setFused(['layernorm', 'layernorm-backward'], { onCpu: true });
      let viaSwitch: Tensor[];
      try {
        viaSwitch = run({});
      } finally {
        fused.setFused('none');
      }
      const t = tol(c.low ?? c.dtype);
      for (const got of [viaOptions, viaSwitch]) {
        got.forEach((g, i) => {
          assert.equal(g.dtype, want[i].dtype, `${what} grad ${i} dtype`);
          assertClose(g, want[i], 10 * t, 10 * t, `${what} grad ${i}`);
        });
      }
    }
    // float64 gradcheck of the fused backward's arithmetic.
    const x = rnd([2, 3, 6], { lo: -2, hi: 2, seed: 74 }).requiresGrad_();
    const r = rnd([2, 3, 6], { seed: 75 }).requiresGrad_();
    const w = rnd([6], { seed: 76 }).requiresGrad_();
    const b = rnd([6], { seed: 77 }).requiresGrad_();
    const o = { fused: true, fusedBackward: true };
    gradcheck(
      (a, c, d, e) => {
        const s = fused.addLayerNorm(a, c, d, e, 1e-5, o);
        return s.normed.add(s.sum.mul(0.5));
      },
      [x, r, w, b],
    );
    gradcheck((a, d) => fused.layerNorm(a, d, null, 1e-5, o), [x, w]);
  });
});

test('fused LayerNorm backward of bfloat16 tensors: float arithmetic, rounded once to bfloat16', () => {
  torch.scope(() => {
    const gy = rnd([4, 6, 40], { dtype: 'bfloat16', seed: 83 });
    const inputs = (): Tensor[] => [
      leaf(rnd([4, 6, 40], { dtype: 'bfloat16', lo: -3, hi: 3, seed: 80 })),
      leaf(rnd([40], { dtype: 'bfloat16', seed: 81 })),
      leaf(rnd([40], { dtype: 'bfloat16', seed: 82 })),
    ];
    const exact = inputs().map((t) => leaf(t.detach().double()));
    F.layerNorm(exact[0], [40], exact[1], exact[2], 1e-6).mul(gy.double()).sum().backward();
    // the backward kernel's arithmetic (fusedBackward) and libtorch's LayerNorm backward from the saved statistics
    for (const fusedBackward of [true, false]) {
      const [x, w, b] = inputs();
      fused.layerNorm(x, w, b, 1e-6, { fused: true, fusedBackward }).float().mul(gy.float()).sum().backward();
      [x, w, b].forEach((t, i) => {
        assert.equal(t.grad!.dtype, 'bfloat16');
        assertClose(t.grad!, exact[i].grad!, 1e-4, 2 ** -7, `fusedBackward ${fusedBackward} grad ${'xwb'[i]}: within an ulp of the exact one`);
      });
    }
  });
});

test("GELU after a bias: GELU's forward; the backward gives the Linear's input, weight and bias the unfused gradients; float64 gradcheck", () => {
  torch.scope(() => {
    const cpu = torch.deviceType(torch.zeros([1]).device) === 'cpu';
    for (const dtype of ['float32', 'float64', 'bfloat16', ...(cpu ? [] : ['float16' as const])] as const) {
      // no float16 GELU on the CPU; a 24-wide hidden layer: the kernel's vector path on a GPU
      const x0 = rnd([3, 5, 16], { dtype, lo: -2, hi: 2 });
      const w0 = rnd([24, 16], { dtype, seed: 50 });
      const b0 = rnd([24], { dtype: 'float32', seed: 51 });
      const [x, w, b] = [leaf(x0), leaf(w0), leaf(b0)];
      const want = F.gelu(F.linear(x, w, b.to({ dtype })));
      const wantGrads = grads([x, w, b], [want], 200);
      for (const fusedBackward of [false, true]) {
        const [x2, w2, b2] = [leaf(x0), leaf(w0), leaf(b0)];
        const got = fused.geluAfterBias(F.linear(x2, w2, b2.detach().to({ dtype })), b2, { fused: fusedBackward });
        const what = `${dtype} fused ${fusedBackward}`;
        assert.equal(got.dtype, dtype);
        assert.equal(got.sub(want).abs().max().item(), 0, `${what} forward: GELU's`);
        const gotGrads = grads([x2, w2, b2], [got], 200);
        assert.equal(gotGrads[2].dtype, 'float32', `${what}: the bias's gradient in its dtype`);
        assertClose(gotGrads[0], wantGrads[0], 4 * tol(dtype), 4 * tol(dtype), `${what} grad x`);
        assertClose(gotGrads[1], wantGrads[1], 4 * tol(dtype), 4 * tol(dtype), `${what} grad w`);
        assertClose(gotGrads[2], wantGrads[2], 40 * tol(dtype), 4 * tol(dtype), `${what} grad b`);
      }
    }
    // A bfloat16 pre-activation's gradient is summed over rows in float32 for a float32 bias (autocast's
    // case), not rounded to bfloat16 first.
    for (const fusedBackward of [false, true]) {
      const pre = leaf(rnd([6, 7, 16], { dtype: 'bfloat16', lo: -2, hi: 2, seed: 55 }));
      const bias = leaf(rnd([16], { dtype: 'float32', seed: 56 }));
      grads([pre, bias], [fused.geluAfterBias(pre, bias, { fused: fusedBackward })], 210);
      const want = pre.grad!.float().reshape([-1, 16]).sum(0);
      assertClose(bias.grad!, want, 1e-5, 1e-5, `bfloat16 fused ${fusedBackward}: the bias's gradient summed in float32`);
    }
    const x = rnd([2, 4, 5], { lo: -3, hi: 3, seed: 52 }).requiresGrad_();
    const w = rnd([6, 5], { seed: 54 }).requiresGrad_();
    const b = rnd([6], { seed: 53 }).requiresGrad_();
    gradcheck((a, v, c) => fused.geluAfterBias(F.linear(a, v, c.detach()), c, { fused: true }), [x, w, b]);
  });
});

test("q, k, v from qkv: the same views; the backward gives the Linear's input, weight and bias the unfused gradients; float64 gradcheck", () => {
  torch.scope(() => {
    const [B, T, D, H] = [2, 5, 24, 3];
    const heads = (t: Tensor): Tensor[] =>
      t
        .view(B, T, 3, H, D / H)
        .chunk(3, 2)
        .map((c) => c.squeeze(2).transpose(1, 2));
    const cpu = torch.deviceType(torch.zeros([1]).device) === 'cpu';
    for (const dtype of ['float32', 'float64', 'bfloat16', ...(cpu ? [] : ['float16' as const])] as const) {
      const x0 = rnd([B, T, D], { dtype, lo: -2, hi: 2 });
      const w0 = rnd([3 * D, D], { dtype, seed: 60 });
      const b0 = rnd([3 * D], { dtype: 'float32', seed: 61 });
      const [x, w, b] = [leaf(x0), leaf(w0), leaf(b0)];
      const want = heads(F.linear(x, w, b.to({ dtype })));
      const wantGrads = grads([x, w, b], want, 300);
      for (const fusedBackward of [false, true]) {
        const [x2, w2, b2] = [leaf(x0), leaf(w0), leaf(b0)];
        const got = fused.qkvHeads(F.linear(x2, w2, b2.detach().to({ dtype })), b2, H, { fused: fusedBackward });
        const what = `${dtype} fused ${fusedBackward}`;
        got.forEach((t, i) => {
          assert.deepEqual(t.strides, want[i].strides, `${what} ${'qkv'[i]}: the packed views`);
          assert.equal(t.sub(want[i]).abs().max().item(), 0, `${what} ${'qkv'[i]}`);
        });
        const gotGrads = grads([x2, w2, b2], got, 300);
        assert.equal(gotGrads[2].dtype, 'float32', `${what}: the bias's gradient in its dtype`);
        assertClose(gotGrads[0], wantGrads[0], 4 * tol(dtype), 4 * tol(dtype), `${what} grad x`);
        assertClose(gotGrads[1], wantGrads[1], 4 * tol(dtype), 4 * tol(dtype), `${what} grad w`);
        assertClose(gotGrads[2], wantGrads[2], 40 * tol(dtype), 4 * tol(dtype), `${what} grad b`);
      }
    }
    // only k used: q's and v's gradients are zeros
    const [xk, wk, bk] = [
      leaf(rnd([B, T, D], { dtype: 'float64', seed: 62 })),
      leaf(rnd([3 * D, D], { dtype: 'float64', seed: 63 })),
      leaf(rnd([3 * D], { dtype: 'float64', seed: 64 })),
    ];
    fused
      .qkvHeads(F.linear(xk, wk, bk.detach()), bk, H, { fused: true })[1]
      .sum()
      .backward();
    assert.equal(bk.grad!.narrow(0, 0, D).abs().max().item(), 0, "q's part of the bias gradient");
    assert.equal(
      bk
        .grad!.narrow(0, D, D)
        .sub(B * T)
        .abs()
        .max()
        .item(),
      0,
      "k's part: one per row",
    );
    const x = rnd([1, 3, 6], { lo: -3, hi: 3, seed: 65 }).requiresGrad_();
    const w = rnd([18, 6], { seed: 66 }).requiresGrad_();
    const b = rnd([18], { seed: 67 }).requiresGrad_();
    gradcheck(
      (a, v, c) => {
        const [q, k, vv] = fused.qkvHeads(F.linear(a, v, c.detach()), c, 2, { fused: true });
        return q.mul(k.add(1)).add(vv.mul(2));
      },
      [x, w, b],
    );
  });
});

test('pixel targets: the addon composition is the TypeScript one bit for bit; the fused path agrees', () => {
  torch.scope(() => {
    const images = rnd([2, 3, 32, 32], { dtype: 'float32', lo: -2, hi: 2 });
    for (const [blur, norm] of [
      [9, true],
      [9, false],
      [0, true],
      [3, true],
    ] as const) {
      const ts = torch.scope(() => {
        const src = blur ? gaussianBlur(images, blur, 1) : images;
        const t = patchify(src, 8);
        return norm ? normalizePatches(t) : t;
      });
      const spec = { patchSize: 8, blurKernel: blur, blurSigma: 1, normPix: norm };
      const composite = fused.pixelTargets(images, spec, { fused: false });
      assert.deepEqual(composite.shape, [2, 16, 192]);
      if (torch.deviceType(images.device) === 'cpu') assert.equal(composite.sub(ts).abs().max().item(), 0, `blur ${blur} norm ${norm}: exact on the CPU`);
      else assertClose(composite, ts, 1e-5, 1e-5, `blur ${blur} norm ${norm}`);
      assertClose(fused.pixelTargets(images, spec, { fused: true }), ts, 2e-5, 2e-5, `blur ${blur} norm ${norm} fused`);
    }
  });
});

test("pixel targets: the blur's cached weights are kept apart by dtype and by channel count", () => {
  torch.scope(() => {
    const spec = { patchSize: 4, blurKernel: 5, blurSigma: 0.8, normPix: false };
    for (const [C, dtype] of [
      [3, 'float32'],
      [3, 'float64'],
      [1, 'float64'],
      [1, 'float32'],
    ] as const) {
      const images = rnd([1, C, 8, 8], { dtype, seed: C });
      const want = patchify(gaussianBlur(images, spec.blurKernel, spec.blurSigma), spec.patchSize);
      const got = fused.pixelTargets(images, spec, { fused: false });
      assert.equal(got.dtype, dtype);
      assertClose(got, want, tol(dtype), tol(dtype), `${C} channels ${dtype}`);
    }
  });
});

test('fused ops refuse bad shapes with clear errors; the kind list is validated', () => {
  torch.scope(() => {
    const x = rnd([2, 3, 8], { dtype: 'float32' });
    assert.throws(() => fused.addLayerNorm(x, rnd([2, 3, 7], { dtype: 'float32' }), null, null, 1e-6, { fused: true }), /residual's shape/);
    assert.throws(() => fused.layerNorm(x, rnd([7], { dtype: 'float32' }), null, 1e-6, { fused: true }), /weight and bias/);
    assert.throws(() => fused.geluAfterBias(x, rnd([7], { dtype: 'float32' })), /bias needs/);
    assert.throws(() => fused.qkvHeads(rnd([2, 3, 24], { dtype: 'float32' }), rnd([23], { dtype: 'float32' }), 2), /bias needs/);
    assert.throws(() => fused.qkvHeads(rnd([2, 3, 24], { dtype: 'float32' }), rnd([24], { dtype: 'float32' }), 5), /multiple of the heads/);
    // each argument check on its own: the bias's length, the residual's dtype, 2-D biases, 0 heads
    assert.throws(() => fused.layerNorm(x, null, rnd([7], { dtype: 'float32' }), 1e-6, { fused: true }), /weight and bias/);
    assert.throws(() => fused.addLayerNorm(x.to({ dtype: 'bfloat16' }), x, null, null, 1e-6, { fused: true }), /residual's dtype must not be wider/);
    assert.throws(() => fused.geluAfterBias(x, rnd([1, 8], { dtype: 'float32' })), /bias needs/);
    assert.throws(() => fused.qkvHeads(rnd([2, 3, 24], { dtype: 'float32' }), rnd([1, 24], { dtype: 'float32' }), 2), /bias needs/);
    assert.throws(() => fused.qkvHeads(rnd([2, 3, 24], { dtype: 'float32' }), rnd([24], { dtype: 'float32' }), 0), /multiple of the heads/);
    const targets = (shape: number[], spec: Partial<fused.PixelTargetSpec>) => () =>
      fused.pixelTargets(rnd(shape, { dtype: 'float32' }), { patchSize: 4, blurKernel: 3, blurSigma: 1, normPix: true, ...spec });
    assert.throws(targets([1, 3, 10, 10], { blurKernel: 9 }), /multiples of the patch/);
    assert.throws(targets([1, 3, 8, 10], {}), /H and W multiples of the patch/, 'W alone not a multiple');
    assert.throws(targets([3, 8, 8], {}), /expects \[B, C, H, W\] images/);
    assert.throws(targets([1, 3, 8, 8], { patchSize: 0 }), /patchSize must be a positive integer, got 0/);
    assert.throws(targets([1, 3, 8, 8], { blurKernel: -1 }), /must be odd \(0: no blur\)/);
    assert.throws(targets([1, 3, 8, 8], { blurSigma: 0 }), /blurSigma must be a positive finite number when blurKernel > 0, got 0/);
    assert.throws(targets([1, 3, 8, 8], { blurSigma: Infinity }), /blurSigma must be a positive finite number/);
    assert.throws(targets([1, 3, 8, 8], { blurKernel: 4 }), /must be odd/);
  });
  assert.deepEqual(fused.parseFusedKinds('all'), ['layernorm', 'layernorm-backward', 'gelu', 'qkv', 'targets', 'patch-embed']);
  assert.deepEqual(fused.parseFusedKinds('targets, layernorm'), ['targets', 'layernorm']);
  assert.deepEqual(fused.parseFusedKinds('none'), []);
  assert.deepEqual(fused.parseFusedKinds(''), [], 'an empty --fused is none');
  assert.deepEqual(fused.parseFusedKinds('  '), []);
  assert.deepEqual(fused.parseFusedKinds('gelu,qkv,gelu'), ['gelu', 'qkv'], 'a kind named twice is listed once');
  assert.deepEqual(fused.FUSED_KINDS.filter(fused.needsKernels), ['layernorm', 'layernorm-backward', 'gelu', 'qkv', 'targets']);
  assert.throws(() => fused.parseFusedKinds('layernorm,softmax'), /unknown fused kernel kind\(s\) softmax/);
  assert.throws(() => fused.parseFusedKinds('layernorm,'), /'layernorm,' have an empty entry/);
});

test('fused ops refuse a weight, bias or residual on another device than their input, in the forward pass', () => {
  torch.scope(() => {
    // On a GPU the kernels read every tensor's data pointer as memory of x's device: a CPU weight would be a
    // host address. With x on the CPU, libtorch's meta device (no data) stands for the other device.
    const x = rnd([2, 3, 8], { dtype: 'float32' });
    const dev = x.device;
    const other = (dev === 'cpu' ? 'meta' : 'cpu') as torch.Device;
    const elsewhere = (shape: number[]) => torch.zeros(shape, { device: other });
    for (const fusedOn of [true, false]) {
      const o = { fused: fusedOn };
      const what = `fused=${fusedOn}`;
      assert.throws(
        () => fused.layerNorm(x, elsewhere([8]), null, 1e-6, o),
        new RegExp(`fusedLayerNorm: weight is on ${other}, x on ${dev}: every tensor must be on x's device`),
        what,
      );
      assert.throws(() => fused.layerNorm(x, null, elsewhere([8]), 1e-6, o), new RegExp(`fusedLayerNorm: bias is on ${other}`), what);
      assert.throws(() => fused.addLayerNorm(x, elsewhere([2, 3, 8]), null, null, 1e-6, o), new RegExp(`fusedLayerNorm: residual is on ${other}`), what);
      // GELU's and q/k/v's forward never read the bias: without the check they ran, and the backward failed
      // with an autograd error about the gradient's device
      assert.throws(
        () => fused.geluAfterBias(leaf(x), elsewhere([8]).requiresGrad_(), o),
        new RegExp(`fusedGeluAfterBias: bias is on ${other}, pre on ${dev}`),
        what,
      );
      const qkv = leaf(rnd([2, 3, 24], { dtype: 'float32' }));
      assert.throws(() => fused.qkvHeads(qkv, elsewhere([24]).requiresGrad_(), 2, o), new RegExp(`fusedQkvHeads: bias is on ${other}, qkv on ${dev}`), what);
    }
  });
});

test('the switch is off by default and sends CPU tensors to the unfused ops', () => {
  torch.scope(() => {
    assert.deepEqual(fused.fusedKinds(), []);
    const cpu = torch.zeros([2, 2], { device: 'cpu' });
    fused.setFused('all');
    try {
      assert.deepEqual(fused.fusedKinds(), ['layernorm', 'layernorm-backward', 'gelu', 'qkv', 'targets', 'patch-embed']);
      assert.equal(fused.useFused('layernorm', cpu), false);
      // onCpu (tests) takes the fused paths for CPU tensors too, for the kinds that are on
      fused.setFused(['gelu'], { onCpu: true });
      assert.equal(fused.fusedOnCpu(), true);
      assert.equal(fused.useFused('gelu', cpu), true);
      assert.equal(fused.useFused('layernorm', cpu), false);
      fused.setFused(['gelu']);
      assert.equal(fused.fusedOnCpu(), false, 'each setFused sets onCpu anew');
      assert.equal(fused.useFused('gelu', cpu), false);
    } finally {
      fused.setFused('none');
    }
    // From JavaScript: a kind as a bare string, or misspelt, switched nothing on without a word
    fused.setFused(['gelu']);
    assert.throws(() => fused.setFused('layernorm' as never), /setFused: kinds must be 'all', 'none' or an array of layernorm, .*got "layernorm"/);
    assert.throws(() => fused.setFused(['layernorm', 'layernorms' as never]), /setFused: unknown fused kernel kind\(s\) "layernorms"/);
    assert.deepEqual(fused.fusedKinds(), ['gelu'], 'a refused call changes nothing');
    fused.setFused('none');
    const st = fused.kernelStatus();
    assert.equal(typeof st.message, 'string');
    assert.equal(st.cudaBuild, native.cudaBuild, "the status names the addon's build");
    assert.equal(st.loaded, false, 'nothing loaded without load');
    if (!st.cudaBuild) assert.match(st.message, /no CUDA/);
  });
});

test('the patch embedding as a matmul over patchified images (the patch-embed kind) equals the strided convolution: values and gradients', () => {
  torch.scope(() => {
    torch.manualSeed(7);
    // Not square, three channels, a bias away from zero: a wrong order of (C, P, P) or of the patch grid shows.
    const embed = new PatchEmbed(4, 3, 10).to({ dtype: 'float64' });
    torch.noGrad(() => embed.proj.bias!.copy_(rnd([10], { dtype: 'float64', seed: 2 })));
    const images = rnd([2, 3, 8, 12], { dtype: 'float64', seed: 3 }).requiresGrad_();
    const run = (kinds: 'none' | ['patch-embed']): Tensor[] => {
      fused.setFused(kinds, { onCpu: true });
      try {
        embed.zeroGrad();
        images.grad?.zero_();
        const out = embed.forward(images);
        const g = grads([images, embed.proj.weight, embed.proj.bias!], [out], 11);
        return [out, ...g];
      } finally {
        fused.setFused('none');
      }
    };
    const conv = run('none');
    const matmul = run(['patch-embed']);
    assert.deepEqual(matmul[0].shape, [2, 6, 10]);
    for (let i = 0; i < conv.length; i++) assertClose(matmul[i], conv[i], 1e-12, 0, `output and gradients [${i}]`);
  });
});

test("LayerNorm of a sequence's first tokens (the decoder's keys) reads them in place and gives the whole sequence its gradient", () => {
  torch.scope(() => {
    // float64 checks the arithmetic; float32 also runs the kernels on a GPU (rows of 16: the vector path).
    for (const [dtype, tolerance] of [
      ['float64', 1e-12],
      ['float32', 1e-5],
    ] as const) {
      const x = rnd([3, 7, 16], { dtype, lo: -2, hi: 2, seed: 21 });
      const w = rnd([16], { dtype, lo: 0.5, hi: 1.5, seed: 22 });
      const b = rnd([16], { dtype, seed: 23 });
      const want = (() => {
        const [xl, wl, bl] = [x, w, b].map(leaf);
        const y = F.layerNorm(xl.narrow(1, 0, 6), [16], wl, bl, 1e-6);
        return [y, ...grads([xl, wl, bl], [y], 31)];
      })();
      for (const [fusedOn, backward] of [
        [false, false],
        [true, false],
        [true, true],
      ] as const) {
        const [xl, wl, bl] = [x, w, b].map(leaf);
        const y = fused.layerNorm(xl, wl, bl, 1e-6, { fused: fusedOn, fusedBackward: backward, tokens: 6 });
        const got = [y, ...grads([xl, wl, bl], [y], 31)];
        const what = `${dtype} fused=${fusedOn} backward kernel=${backward}`;
        assert.deepEqual(y.shape, [3, 6, 16], what);
        for (let i = 0; i < got.length; i++) assertClose(got[i], want[i], tolerance, tolerance, `${what} [${i}]`);
        assert.equal(got[1].narrow(1, 6, 1).abs().max().item(), 0, `${what}: the token left out has no gradient`);
      }
    }
    const x = rnd([3, 7, 16], { dtype: 'float64', seed: 21 });
    const [w, b] = [rnd([16], { dtype: 'float64', seed: 22 }), rnd([16], { dtype: 'float64', seed: 23 })];
    assert.throws(() => fused.layerNorm(x.reshape([21, 16]), w, b, 1e-6, { fused: true, tokens: 6 }), /tokens .* needs a 3-D input/);
    assert.throws(() => fused.layerNorm(x, w, b, 1e-6, { fused: true, tokens: 8 }), /at least that many positions/);
    // -1 is the addon's "no tokens": a negative count normalised every position and returned [B, T, D] unasked
    for (const fusedOn of [true, false])
      for (const tokens of [-1, -2]) {
        assert.throws(() => fused.layerNorm(x, w, b, 1e-6, { fused: fusedOn, tokens }), new RegExp(`tokens must be a non-negative integer, got ${tokens}`));
      }
    assert.throws(() => fused.layerNorm(x, w, b, 1e-6, { tokens: 2.5 }), /tokens must be a non-negative integer, got 2.5/);
    // addLayerNorm shares the options: tokens there is refused, not ignored (its result would be [B, T, D])
    assert.throws(() => fused.addLayerNorm(x, x, w, b, 1e-6, { tokens: 6 }), /and no residual/);
  });
});
