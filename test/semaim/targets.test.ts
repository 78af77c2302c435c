import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { gaussianBlur, gaussianKernel, pixelTargets } from '../../src/semaim/targets';

test('gaussianKernel and gaussianBlur refuse an even or non-integer size and a sigma that is not > 0, as the config does', () => {
  torch.scope(() => {
    const images = torch.ones([1, 3, 8, 8]);
    // an even kernel with padding size/2 gave [1, 3, 9, 9] for 8×8 images; σ 0 gave a kernel of NaN (0/0 at its centre)
    assert.throws(() => gaussianBlur(images, 4), { name: 'RangeError', message: /gaussianKernel: size must be an odd positive integer, got 4/ });
    assert.throws(() => gaussianKernel(2.5, 1), /size must be an odd positive integer, got 2\.5/);
    assert.throws(() => gaussianKernel(0, 1), /size must be an odd positive integer, got 0/);
    assert.throws(() => gaussianBlur(images, 3, 0), /gaussianKernel: sigma must be a finite number > 0, got 0/);
    assert.throws(() => gaussianKernel(3, NaN), /sigma must be a finite number > 0, got NaN/);
    const out = gaussianBlur(images, 3, 1);
    assert.deepEqual(out.shape, [1, 3, 8, 8]);
    assert.ok(Math.abs(out.select(3, 4).select(2, 4).sum().item() - 3) < 1e-6, 'an inner pixel of a constant image keeps its value');
    const k = gaussianKernel(1, 1, 1);
    assert.deepEqual(k.tolist(), [[[[1]]]]);
  });
});

test('a σ so small that 2σ² underflows to 0 blurs as the limit (the identity), not into a kernel of NaN, in TypeScript and through the targets kernel', () => {
  // σ 1e-200 passed every check (> 0, finite), but −d²/(2σ²) was 0/0 at the centre: every tap, every
  // target and so the loss came out NaN, on the CPU and on a GPU alike.
  torch.scope(() => {
    for (const sigma of [1e-200, 5e-324, 1e-3]) {
      const k = gaussianKernel(3, sigma, 1).flatten().tolist() as number[];
      assert.deepEqual(k, [0, 0, 0, 0, 1, 0, 0, 0, 0], `σ ${sigma}: the kernel is the centre tap`);
    }
  });
  const before = { kinds: torch.fused.fusedKinds(), onCpu: torch.fused.fusedOnCpu() };
  try {
    for (const kernel of [false, true]) {
      torch.fused.setFused(kernel ? ['targets'] : 'none', { onCpu: true });
      torch.scope(() => {
        torch.manualSeed(4);
        const img = torch.rand([2, 3, 8, 8]);
        for (const normPix of [false, true]) {
          const o = { patchSize: 4, normPix, blur: true, blurKernel: 5, blurSigma: 1e-200 };
          const got = pixelTargets(img, o);
          const want = pixelTargets(img, { ...o, blur: false });
          assert.ok(got.isfinite().all().item(), `kernel ${kernel}, normPix ${normPix}: finite targets`);
          assert.ok(got.sub(want).abs().max().item() < 1e-6, `kernel ${kernel}, normPix ${normPix}: the unblurred targets`);
        }
      });
    }
  } finally {
    torch.fused.setFused(before.kinds, { onCpu: before.onCpu });
  }
});
