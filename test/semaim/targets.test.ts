import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { gaussianBlur, gaussianKernel } from '../../src/semaim/targets';

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
