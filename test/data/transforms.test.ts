// Transforms: shapes and values of resize / crops / flip / normalise, the geometric plan, the
// fused pipeline against a reference path, RandAugment ops, random erasing, mixup/cutmix, PRNG.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, hashKeys, permutation } from '../../src/data/rng';
import { resampleImage, resampleToOutput, type ResampleSpec } from '../../src/data/resample';
import { allocImage, fullPlane, type Image } from '../../src/data/image';
import { buildPlan, reductionFor, rrcParams } from '../../src/data/geometry';
import { Pipeline } from '../../src/data/pipeline';
import { transformsFor } from '../../src/data/factories';
import { handleFromImage } from '../../src/data/codecs/decode';
import { JpegImage } from '../../src/data/codecs/jpeg';
import {
  resize,
  centerCrop,
  randomCrop,
  randomResizedCrop,
  horizontalFlip,
  normalize,
  randAugment,
  randomErasing,
  validateTransforms,
  staticOutputSize,
  finetuneTransforms,
  pretrainTransforms,
  evalTransforms,
  type TransformSpec,
} from '../../src/data/transforms';
import { applyOp, applyRandAugment, RAND_INCREASING_TRANSFORMS, RAND_TRANSFORMS, type AugImage, type OpName } from '../../src/data/randaugment';
import { randomErase } from '../../src/data/erasing';
import { mixBatch, softTargets } from '../../src/data/mix';
import { IMAGENET_MEAN, IMAGENET_STD, floatFormat } from '../../src/data/color';
import { simdAvailable, simdResampleToOutput, wasmIdct, arenaAlloc, arenaBuffer, arenaReset } from '../../src/data/simd';
import { idct8, aanScaledQuant } from '../../src/data/codecs/idct';
import { renderSynthetic, syntheticConfig } from '../../src/data/sources/synthetic';
import { encode, picture } from './helpers';

function rgbImage(w: number, h: number, f: (x: number, y: number, c: number) => number): Image {
  const img = allocImage(w, h, 'rgb');
  for (let c = 0; c < 3; c++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) img.planes[c].data[c * w * h + y * w + x] = f(x, y, c);
  return img;
}

function full(w: number, h: number): ResampleSpec {
  const r = { x0: 0, y0: 0, x1: w, y1: h };
  return { sample: r, clip: r, outW: w, outH: h, flip: false, interp: 'bicubic' };
}

test('rng: deterministic per seed and key, sensible distributions', () => {
  const a = new Rng(7, 'x', 3);
  const b = new Rng(7, 'x', 3);
  const c = new Rng(7, 'x', 4);
  const sa = Array.from({ length: 5 }, () => a.nextU32());
  assert.deepEqual(
    sa,
    Array.from({ length: 5 }, () => b.nextU32()),
  );
  assert.notDeepEqual(
    sa,
    Array.from({ length: 5 }, () => c.nextU32()),
  );
  const r = new Rng(1);
  let sum = 0;
  let sq = 0;
  let betaSum = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) {
    const f = r.float();
    assert.ok(f >= 0 && f < 1);
    const k = r.int(7);
    assert.ok(Number.isInteger(k) && k >= 0 && k < 7);
    const z = r.normal();
    sum += z;
    sq += z * z;
  }
  for (let i = 0; i < 4000; i++) betaSum += r.beta(0.8, 0.8);
  assert.ok(Math.abs(sum / n) < 0.05);
  assert.ok(Math.abs(sq / n - 1) < 0.05);
  assert.ok(Math.abs(betaSum / 4000 - 0.5) < 0.03);
  const p = permutation(100, 3, 'e', 0);
  assert.deepEqual(
    [...p].sort((x, y) => x - y),
    Array.from({ length: 100 }, (_, i) => i),
  );
  assert.deepEqual(p, permutation(100, 3, 'e', 0));
  assert.notDeepEqual(p, permutation(100, 3, 'e', 1));
});

test('rng: its streams are pinned (shuffles, augmentations and synthetic images of recorded and resumed runs depend on them), bad arguments refused', () => {
  const a = new Rng(7, 'x', 3);
  assert.deepEqual([a.nextU32(), a.nextU32(), a.nextU32()], [3516340921, 2257146726, 1662744661]);
  const r = new Rng(1);
  assert.deepEqual([r.float(), r.int(7), r.normal(), r.normal()], [0.44987446262285036, 6, -0.6365955199828855, 0.7303282555071887]);
  assert.deepEqual([...permutation(10, 3, 'e', 0)], [9, 4, 2, 6, 7, 5, 3, 0, 1, 8], 'Fisher–Yates: any permutation, fixed points included');
  // every key counts whole: both halves of an integer above 2^32, where one string ends and the next begins
  assert.notEqual(hashKeys(2 ** 40 + 5), hashKeys(5));
  assert.notEqual(hashKeys('ab', 'c'), hashKeys('a', 'bc'));
  const s = new Rng(2);
  const seen = new Set<number>();
  for (let i = 0; i < 100; i++) seen.add(s.intRange(3, 4));
  assert.deepEqual([...seen].sort(), [3, 4], 'intRange includes both ends');
  assert.throws(() => new Rng(0).int(0), /Rng\.int: n must be >= 1, got 0/);
});

test('resize keeps constant images constant and preserves the mean of a checkerboard', () => {
  const flat = rgbImage(37, 23, (_x, _y, c) => 40 + 50 * c);
  for (const interp of ['bilinear', 'bicubic'] as const) {
    for (const [ow, oh] of [
      [16, 10],
      [100, 77],
      [37, 23],
    ]) {
      const out = resampleImage(flat, { ...full(37, 23), outW: ow, outH: oh, interp });
      for (let c = 0; c < 3; c++) {
        const p = out.planes[c];
        for (let i = 0; i < ow * oh; i++) assert.equal(p.data[p.offset + i], 40 + 50 * c);
      }
    }
  }
  const checker = rgbImage(64, 64, (x, y) => ((x + y) % 2 ? 255 : 0));
  const small = resampleImage(checker, { ...full(64, 64), outW: 8, outH: 8, interp: 'bilinear' });
  for (let i = 0; i < 64; i++) assert.ok(Math.abs(small.planes[0].data[i] - 127.5) <= 1, `antialiased: ${small.planes[0].data[i]}`);
});

test('identity, crop and flip resampling are exact copies', () => {
  const img = rgbImage(20, 10, (x, y, c) => (x * 7 + y * 13 + c * 50) & 255);
  const same = resampleImage(img, full(20, 10));
  assert.deepEqual(same.planes[0].data.subarray(0, 200), img.planes[0].data.subarray(0, 200));
  const crop = resampleImage(img, {
    sample: { x0: 5, y0: 2, x1: 15, y1: 8 },
    clip: { x0: 5, y0: 2, x1: 15, y1: 8 },
    outW: 10,
    outH: 6,
    flip: true,
    interp: 'bicubic',
  });
  for (let y = 0; y < 6; y++)
    for (let x = 0; x < 10; x++) assert.equal(crop.planes[1].data[crop.planes[1].offset + y * 10 + x], img.planes[1].data[200 + (y + 2) * 20 + (5 + 9 - x)]);
});

test('normalize: float output is (v/255 - mean)/std, uint8 output is raw', () => {
  const img = rgbImage(4, 4, (_x, _y, c) => [255, 128, 0][c]);
  const p = new Pipeline([normalize()]);
  const out = new Float32Array(48);
  p.run(handleFromImage(img), new Rng(0), out, 0, 4, 4, null, 0);
  for (let c = 0; c < 3; c++) {
    const want = ([255, 128, 0][c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
    assert.ok(Math.abs(out[c * 16 + 5] - want) < 1e-5);
  }
  const bytes = new Uint8Array(48);
  new Pipeline([normalize()], { uint8: true }).run(handleFromImage(img), new Rng(0), bytes, 0, 4, 4, null, 0);
  assert.deepEqual([bytes[0], bytes[16], bytes[32]], [255, 128, 0]);
  // no normalize: v/255
  new Pipeline([]).run(handleFromImage(img), new Rng(0), out, 0, 4, 4, null, 0);
  assert.ok(Math.abs(out[16] - 128 / 255) < 1e-6);
});

test('gray images become RGB', () => {
  const g: Image = { width: 3, height: 2, space: 'gray', planes: [fullPlane(Uint8Array.from([0, 50, 100, 150, 200, 250]), 3, 2)] };
  const out = new Uint8Array(18);
  new Pipeline([], { uint8: true }).run(handleFromImage(g), new Rng(0), out, 0, 2, 3, null, 0);
  assert.deepEqual([...out.subarray(0, 6)], [...out.subarray(6, 12)]);
  assert.deepEqual([...out.subarray(12, 18)], [0, 50, 100, 150, 200, 250]);
});

test('RandomResizedCrop parameters follow torchvision and crops stay inside the image', () => {
  const rng = new Rng(5);
  let areaSum = 0;
  for (let i = 0; i < 500; i++) {
    const [top, left, h, w] = rrcParams(200, 100, [0.08, 1], [3 / 4, 4 / 3], rng);
    assert.ok(top >= 0 && left >= 0 && top + h <= 100 && left + w <= 200 && h > 0 && w > 0);
    areaSum += (h * w) / 20000;
  }
  assert.ok(areaSum / 500 > 0.3 && areaSum / 500 < 0.7);
  // impossible scale → central fallback with clamped ratio
  const [t, l, h, w] = rrcParams(100, 10, [1, 1], [1, 1], new Rng(0));
  assert.deepEqual([t, l, h, w], [0, 45, 10, 10]);
  // the fallback rounds as torchvision's int(round(...)), halves to even: 1 / 0.4 = 2.5 → 2, 1 × 2.5 → 2 (not 3)
  assert.deepEqual(rrcParams(1, 100, [1, 1], [0.4, 0.4], new Rng(0)), [49, 0, 2, 1]);
  assert.deepEqual(rrcParams(100, 1, [1, 1], [2.5, 2.5], new Rng(0)), [0, 49, 1, 2]);
});

test("MAE's linear-probe crop (util/crop.py): one draw clipped to the image, where torchvision's falls back to a central crop", () => {
  // values of MAE's get_params (scale 1, ratio 2 on 40×40: w = round(√3200) = 57 → 40, h = round(√800) = 28;
  // ratio 0.5 on 30×40 (w×h): w = 24, h = 49 → 40), the offsets drawn in [0, 40 − h] and [0, 30 − w]
  const tops = new Set<number>();
  const rng = new Rng(1);
  for (let i = 0; i < 200; i++) {
    const [top, left, h, w] = rrcParams(40, 40, [1, 1], [2, 2], rng, true);
    assert.deepEqual([left, h, w], [0, 28, 40]);
    assert.ok(top >= 0 && top <= 12);
    tops.add(top);
    const [t2, l2, h2, w2] = rrcParams(30, 40, [1, 1], [0.5, 0.5], rng, true);
    assert.deepEqual([t2, h2, w2], [0, 40, 24]);
    assert.ok(l2 >= 0 && l2 <= 6);
  }
  assert.equal(tops.size, 13);
  // torchvision: ten draws that do not fit, then the central crop with the ratio clamped
  assert.deepEqual(rrcParams(40, 40, [1, 1], [2, 2], new Rng(1)), [10, 0, 20, 40]);
  // torchvision's draw may span the whole width (w <= width): a random top, not the central fallback's
  const fullWidthTops = new Set(
    Array.from({ length: 10 }, (_, s) => rrcParams(10, 20, [0.5, 0.5], [1, 1], new Rng(s))).map(
      ([top, left, h, w]) => (assert.deepEqual([left, h, w], [0, 10, 10]), top),
    ),
  );
  assert.ok(fullWidthTops.size > 1, `tops ${[...fullWidthTops]}`);
  // the fallback centres with the offset rounded down, as torchvision's (21 - 10) // 2 = 5
  assert.deepEqual(rrcParams(10, 21, [1, 1], [1, 1], new Rng(0)), [5, 0, 10, 10]);
  // the 'crop-flip' augmentation (MAE's linear-probe transform) uses MAE's crop; the plan carries it
  const [crop] = transformsFor('crop-flip', 16, { fixedSize: null });
  assert.deepEqual(crop, { op: 'randomResizedCrop', size: [16, 16], scale: [0.08, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic', singleDraw: true });
  const plan = buildPlan(40, 40, [randomResizedCrop(8, { scale: [1, 1], ratio: [2, 2], singleDraw: true })], new Rng(3));
  assert.deepEqual([plan.sample.x1 - plan.sample.x0, plan.sample.y1 - plan.sample.y0], [40, 28]);
  // the fine-tuning and pre-training crops stay torchvision's
  assert.equal('singleDraw' in transformsFor('finetune', 16, { fixedSize: null })[0], false);
  assert.equal('singleDraw' in transformsFor('pretrain', 16, { fixedSize: null })[0], false);
});

test('geometric plans: resize short side, center crop, small images upscaled, flip before crop', () => {
  const p = buildPlan(400, 300, [resize(256), centerCrop(224)], new Rng(0));
  assert.equal(p.outW, 224);
  assert.equal(p.outH, 224);
  // torchvision rounds the crop offset half-to-even: round(58.5) = 58
  assert.ok(Math.abs(p.sample.x0 - 58 * (400 / 341)) < 1e-9);
  assert.deepEqual(p.clip, { x0: 0, y0: 0, x1: 400, y1: 300 });
  const tiny = buildPlan(5, 3, [centerCrop(32)], new Rng(0));
  assert.equal(tiny.outW, 32);
  assert.equal(tiny.outH, 32);
  assert.ok(tiny.sample.x1 - tiny.sample.x0 <= 5 + 1e-9 && tiny.sample.y1 - tiny.sample.y0 <= 3 + 1e-9);
  const one = buildPlan(1, 1, [randomResizedCrop(24)], new Rng(0));
  assert.deepEqual([one.outW, one.outH], [24, 24]);
  // flip then crop on the left of the flipped image = right of the source
  const f = buildPlan(100, 10, [horizontalFlip(1), resize([10, 100]), centerCrop([10, 20])], new Rng(0));
  assert.equal(f.flip, true);
  assert.deepEqual([f.sample.x0, f.sample.x1], [40, 60]);
  // (a centred crop is its own mirror image: a random one shows the side; both plans draw the same offset)
  const [flipped, kept] = [1, 0].map((p) => buildPlan(100, 10, [horizontalFlip(p), randomCrop([10, 20])], new Rng(0)));
  assert.notEqual(kept.sample.x0, 40);
  assert.deepEqual([flipped.flip, flipped.sample.x0, flipped.sample.x1], [true, 100 - kept.sample.x1, 100 - kept.sample.x0]);
  assert.equal(buildPlan(100, 10, [horizontalFlip(1), horizontalFlip(1)], new Rng(0)).flip, false, 'flipped twice: as it was');
  // torchvision's centre offset int(round((11 - 8) / 2)) = round(1.5) = 2
  assert.deepEqual(buildPlan(8, 11, [centerCrop(8)], new Rng(0)).sample, { x0: 0, y0: 2, x1: 8, y1: 10 });
  // the decoder's DCT reduction: the largest of 8, 4, 2 that keeps the region at least output-sized
  assert.deepEqual(
    [8, 16, 32, 64].map((out) => reductionFor(buildPlan(64, 64, [resize([out, out])], new Rng(0)))),
    [8, 4, 2, 1],
  );
  assert.deepEqual(staticOutputSize([randomResizedCrop([20, 30])]), [20, 30]);
  assert.equal(staticOutputSize([resize(64)]), null);
  assert.throws(() => validateTransforms([normalize(), randomResizedCrop(8)]), /out of order/);
  // an op named like an Object.prototype member (from a spec read back from a file) is unknown, not a stage
  assert.throws(() => validateTransforms([{ op: 'constructor' } as unknown as TransformSpec]), /unknown transform op 'constructor'/);
});

test("RandomResizedCrop crops, then resizes the crop as torchvision's resized_crop: no pixel outside the crop box is read", () => {
  // a noisy 64×48 image: a filter tap that reaches past the crop border would change the output
  const W = 64;
  const H = 48;
  const img = rgbImage(W, H, (x, y, c) => ((c * W * H + y * W + x) * 2654435761) >>> 24);
  for (const [oh, ow] of [
    [16, 16],
    [12, 20],
  ] as const) {
    for (let s = 0; s < 4; s++) {
      const rrc = randomResizedCrop([oh, ow], { scale: [0.1, 0.5], interpolation: 'bicubic' });
      // the box torchvision's get_params draws (the plan draws it first from the same stream)
      const [top, left, h, w] = rrcParams(W, H, rrc.scale, rrc.ratio, new Rng(s));
      const crop = rgbImage(w, h, (x, y, c) => img.planes[c].data[c * W * H + (top + y) * W + left + x]);
      const ref = resampleImage(crop, { ...full(w, h), outW: ow, outH: oh });
      const out = new Uint8Array(3 * oh * ow);
      new Pipeline([rrc], { uint8: true }).run(handleFromImage(img), new Rng(s), out, 0, oh, ow, null, 0);
      for (let c = 0; c < 3; c++) {
        const p = ref.planes[c];
        assert.deepEqual(out.subarray(c * oh * ow, (c + 1) * oh * ow), p.data.subarray(p.offset, p.offset + oh * ow), `${oh}×${ow} seed ${s} channel ${c}`);
      }
    }
  }
});

test('RandomResizedCrop: an [h, w] size gives h rows and w columns; ten draws before the central fallback', () => {
  const p = buildPlan(64, 48, [randomResizedCrop([12, 20])], new Rng(0));
  assert.deepEqual([p.outH, p.outW], [12, 20]);
  // scale 0.5–1 and ratio 1/2–2 on a square: one draw fits with probability ≈ 0.44, so torchvision's
  // ten draws all miss ≈ 0.3% of the time (the fallback: the whole image), one draw would miss 56%
  const rng = new Rng(11);
  let fallback = 0;
  const n = 2000;
  for (let i = 0; i < n; i++) {
    const [top, left, h, w] = rrcParams(100, 100, [0.5, 1], [1 / 2, 2], rng);
    if (top === 0 && left === 0 && h === 100 && w === 100) fallback++;
  }
  assert.ok(fallback / n < 0.015, `central fallback in ${fallback} of ${n} crops`);
});

test("resize: torchvision's max_size caps the long side and shrinks the short side with it", () => {
  // 400×300 → short side 64 → long ⌊64·400/300⌋ = 85 > 80: long 80, short ⌊80·64/85⌋ = 60
  const p = buildPlan(400, 300, [resize(64, { maxSize: 80 })], new Rng(0));
  assert.deepEqual([p.outW, p.outH], [80, 60]);
  const q = buildPlan(300, 400, [resize(64, { maxSize: 80 })], new Rng(0));
  assert.deepEqual([q.outW, q.outH], [60, 80]);
  assert.deepEqual([buildPlan(400, 300, [resize(64, { maxSize: 100 })], new Rng(0)).outW], [85]);
  // an exact [h, w] resize fixes the output size as [h, w]
  assert.deepEqual(staticOutputSize([resize([20, 30])]), [20, 30]);
});

test('transform lists and sizes that make no sense are refused', () => {
  // geometric transforms may repeat (resize then crop then resize); the later stages may not
  validateTransforms([resize(64), centerCrop(56), resize(32), normalize()]);
  assert.throws(() => validateTransforms([centerCrop(8), normalize(), normalize()]), /transform 'normalize' appears twice/);
  assert.throws(() => validateTransforms([randAugment(), randAugment()]), /transform 'randAugment' appears twice/);
  assert.throws(() => validateTransforms([normalize(), randomErasing(), randomErasing()]), /transform 'randomErasing' appears twice/);
  for (const bad of [0, 2.5, [8, 0], [8, 1.5], [-1, 8]] as const) {
    assert.throws(() => centerCrop(bad as never), /transform size must be positive integers/, JSON.stringify(bad));
    assert.throws(() => randomCrop(bad as never), /transform size must be positive integers/, JSON.stringify(bad));
    assert.throws(() => randomResizedCrop(bad as never), /transform size must be positive integers/, JSON.stringify(bad));
  }
  assert.throws(() => resize([8, 0]), /transform size must be positive integers/);
  assert.throws(() => resize(0), /resize: size must be >= 1/);
  // as the crops' sizes: a fractional short side gave a plan of 2.5 columns
  assert.throws(() => resize(2.5), /resize: size must be >= 1 and an integer, got 2\.5/);
  // torchvision refuses these max_size values: one not above the short side (64 → 64 shrank the short side), one with [h, w]
  assert.throws(() => resize(64, { maxSize: 64 }), /resize: maxSize must be an integer above the size 64, got 64/);
  assert.throws(() => resize(64, { maxSize: 80.5 }), /resize: maxSize must be an integer above the size 64, got 80\.5/);
  assert.throws(() => resize([8, 8], { maxSize: 80 }), /resize: maxSize caps the long side of a short-side resize: give the size as one number/);
  assert.equal(resize(64, { maxSize: 65 }).maxSize, 65);
  for (const scale of [
    [0, 1],
    [0.5, 0.2],
    [-0.1, 1],
  ] as const) {
    assert.throws(() => randomResizedCrop(8, { scale }), /randomResizedCrop: bad scale/, JSON.stringify(scale));
  }
  assert.throws(() => randomResizedCrop(8, { ratio: [2, 1] }), /randomResizedCrop: bad ratio/);
});

test("the recipes: MAE's pre-training crop, the MAE/timm fine-tuning augmentation, evaluation's resize to ⌊size/0.875⌋", () => {
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  // MAE main_pretrain.py: RandomResizedCrop(224, scale=(0.2, 1.0), interpolation=3), RandomHorizontalFlip(), Normalize
  assert.deepEqual(pretrainTransforms(224), [
    { op: 'randomResizedCrop', size: [224, 224], scale: [0.2, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic' },
    { op: 'horizontalFlip', p: 0.5 },
    { op: 'normalize', mean, std },
  ]);
  // MAE main_finetune.py → timm create_transform(224, is_training=True, auto_augment='rand-m9-mstd0.5-inc1',
  // interpolation='bicubic', re_prob=0.25, re_mode='pixel', re_count=1): RandomResizedCrop scale (0.08, 1),
  // ratio (3/4, 4/3); flip 0.5; RandAugment 2 ops, magnitude 9 ± 0.5, the 'increasing' set, each op with
  // probability 0.5, fill = the mean in bytes (round(255·mean)); RandomErasing area 0.02–1/3, aspect 0.3–1/0.3
  assert.deepEqual(finetuneTransforms(224), [
    { op: 'randomResizedCrop', size: [224, 224], scale: [0.08, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic' },
    { op: 'horizontalFlip', p: 0.5 },
    { op: 'randAugment', n: 2, m: 9, mstd: 0.5, increasing: true, prob: 0.5, fill: [124, 116, 104], interpolation: 'bicubic' },
    { op: 'normalize', mean, std },
    { op: 'randomErasing', p: 0.25, scale: [0.02, 1 / 3], ratio: [0.3, 1 / 0.3], mode: 'pixel', count: 1 },
  ]);
  // the evaluation resize: int(size / crop_pct) with crop_pct 0.875 (32 → 36, not 36.57 rounded to 37)
  for (const [size, side] of [
    [32, 36],
    [64, 73],
    [224, 256],
  ] as const) {
    assert.deepEqual(evalTransforms(size), [
      { op: 'resize', size: side, interpolation: 'bicubic', maxSize: undefined },
      { op: 'centerCrop', size: [size, size] },
      { op: 'normalize', mean, std },
    ]);
  }
});

test("random crop plans (the authors' linear-probe Resize + RandomCrop): every offset of torchvision's range, uniformly", () => {
  // 400×300 → short side 64: 85×64; RandomCrop(64) keeps the rows and picks left in 0..21
  const counts = new Array<number>(22).fill(0);
  const rng = new Rng(7);
  const scale = 400 / 85;
  for (let k = 0; k < 4400; k++) {
    const p = buildPlan(400, 300, [resize(64, { interpolation: 'bicubic' }), randomCrop(64), horizontalFlip(0.5)], rng);
    assert.deepEqual([p.outW, p.outH, p.interp], [64, 64, 'bicubic']);
    assert.ok(Math.abs(p.sample.y0) < 1e-9 && Math.abs(p.sample.y1 - 300) < 1e-9, 'all rows kept');
    const left = p.sample.x0 / scale;
    assert.ok(Math.abs(left - Math.round(left)) < 1e-9 && Math.abs(p.sample.x1 - p.sample.x0 - 64 * scale) < 1e-9, `offset ${left}`);
    counts[Math.round(left)]++;
  }
  for (const c of counts) assert.ok(c > 200 - 4 * 14 && c < 200 + 4 * 14, `offset counts ${counts}`);
  // smaller than the crop: upscaled to fit, as centerCrop
  const small = buildPlan(20, 10, [randomCrop(16)], new Rng(0));
  assert.deepEqual([small.outW, small.outH], [16, 16]);
  assert.deepEqual(staticOutputSize([resize(64), randomCrop([20, 30])]), [20, 30]);
});

test('pipeline: fused JPEG path matches the reference decode → crop → resize path', async () => {
  const raw = picture(120, 90, 1);
  const jpeg = await encode(raw, 120, 90, 3, 'jpeg', { quality: 95 });
  const ts = [randomResizedCrop(48, { scale: [0.3, 1], interpolation: 'bicubic' }), horizontalFlip(), normalize()];
  const fast = new Pipeline(ts, { dctScaling: false });
  const jimg = new JpegImage(jpeg);
  const handle = { width: 120, height: 90, scalable: true, decode: (r?: { region?: object }) => jimg.decode(r as never) };
  for (let s = 0; s < 6; s++) {
    const a = new Float32Array(3 * 48 * 48);
    fast.run(handle as never, new Rng(9, s), a, 0, 48, 48, null, 0);
    // reference: full decode, same plan, planar resample then normalise
    const plan = fast.plan(120, 90, new Rng(9, s));
    const fullImg = jimg.decode();
    const rgb = new Uint8Array(3 * 120 * 90);
    const r = { x0: 0, y0: 0, x1: 120, y1: 90 };
    resampleToOutput(fullImg, { sample: r, clip: r, outW: 120, outH: 90, flip: false, interp: 'bilinear' }, rgb, 0, { kind: 'uint8' });
    const rgbImg: Image = { width: 120, height: 90, space: 'rgb', planes: [0, 1, 2].map((c) => fullPlane(rgb, 120, 90, c * 10800)) };
    const ref = resampleImage(rgbImg, { sample: plan.sample, clip: plan.clip, outW: 48, outH: 48, flip: plan.flip, interp: plan.interp });
    let worst = 0;
    let mean = 0;
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 48 * 48; i++) {
        const v = (ref.planes[c].data[ref.planes[c].offset + i] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        const d = Math.abs(v - a[c * 2304 + i]) * 255 * IMAGENET_STD[c];
        worst = Math.max(worst, d);
        mean += d;
      }
    }
    mean /= 3 * 2304;
    assert.ok(mean < 1.5, `sample ${s}: mean diff ${mean}`);
    assert.ok(worst < 24, `sample ${s}: worst diff ${worst}`);
  }
});

test('masks follow crops and flips; RandAugment keeps shapes', () => {
  const cfg = syntheticConfig({ size: 40, count: 10 });
  const s = renderSynthetic(cfg, 3);
  const p = new Pipeline([horizontalFlip(1)], { uint8: true });
  const out = new Uint8Array(3 * 1600);
  const masks = new Uint8Array(1600);
  p.run(handleFromImage(s.image), new Rng(0), out, 0, 40, 40, masks, 0);
  for (let y = 0; y < 40; y++) for (let x = 0; x < 40; x++) assert.equal(masks[y * 40 + x], s.image.mask!.data[y * 40 + 39 - x]);
  const ft = new Pipeline(finetuneTransforms(32));
  const f = new Float32Array(3 * 1024);
  const m = new Uint8Array(1024);
  for (let k = 0; k < 5; k++) {
    ft.run(handleFromImage(s.image), new Rng(k), f, 0, 32, 32, m, 0);
    assert.ok(f.every((v) => Number.isFinite(v)));
  }
});

test('RandAugment ops follow PIL semantics', () => {
  const mk = (vals: number[]): AugImage => ({ rgb: Uint8Array.from([...vals, ...vals, ...vals]), mask: null, width: vals.length, height: 1 });
  const o = { fill: [1, 2, 3] as [number, number, number], interpolation: 'bilinear' as const };
  const r = new Rng(0);
  let im = mk([0, 100, 200, 255]);
  applyOp(im, 'Invert', 9, r, o);
  assert.deepEqual([...im.rgb.subarray(0, 4)], [255, 155, 55, 0]);
  im = mk([0, 100, 200, 255]);
  applyOp(im, 'Solarize', 5, r, o); // threshold 128
  assert.deepEqual([...im.rgb.subarray(0, 4)], [0, 100, 55, 0]);
  im = mk([0, 100, 200, 255]);
  applyOp(im, 'PosterizeIncreasing', 9, r, o); // keep 4 - 3 = 1 bit
  assert.deepEqual([...im.rgb.subarray(0, 4)], [0, 0, 128, 128]);
  im = mk([50, 100, 150]);
  applyOp(im, 'AutoContrast', 0, r, o);
  assert.deepEqual([...im.rgb.subarray(0, 3)], [0, 127, 255]);
  im = mk([10, 20, 30, 40]);
  applyOp(im, 'SolarizeAdd', 10, r, o); // +110 below 128
  assert.deepEqual([...im.rgb.subarray(0, 4)], [120, 130, 140, 150]);
  im = mk([10, 20, 30, 40]);
  applyOp(im, 'Brightness', 0, r, o); // factor 0.1
  assert.deepEqual([...im.rgb.subarray(0, 4)], [1, 2, 3, 4]);
  // translate by 45% of the width at level 10: the vacated part takes the fill colour
  const t: AugImage = { rgb: new Uint8Array(3 * 20 * 4).fill(200), mask: new Uint8Array(80).fill(1), width: 20, height: 4 };
  applyOp(t, 'TranslateXRel', 10, new Rng(1), o);
  const filled = [...t.rgb.subarray(0, 20)].filter((v) => v === 1).length;
  assert.ok(filled >= 8 && filled <= 10, `filled ${filled}`);
  assert.equal([...t.mask!.subarray(0, 20)].filter((v) => v === 0).length, filled);
  // rotate 90° (level 10 → ±30°; use the affine directly through Rotate at a fixed sign)
  const sq: AugImage = { rgb: new Uint8Array(3 * 9 * 9), mask: null, width: 9, height: 9 };
  for (let i = 0; i < 81; i++) sq.rgb[i] = sq.rgb[81 + i] = sq.rgb[162 + i] = 255;
  applyOp(sq, 'Rotate', 10, new Rng(2), o);
  assert.equal(sq.rgb[0], 1, 'corner filled after a 30° rotation');
  assert.equal(sq.rgb[40], 255, 'centre kept');
  // full RandAugment with the timm config
  const spec = randAugment('rand-m9-mstd0.5-inc1');
  assert.deepEqual([spec.n, spec.m, spec.mstd, spec.increasing], [2, 9, 0.5, true]);
  const img: AugImage = { rgb: Uint8Array.from({ length: 3 * 256 }, (_, i) => i & 255), mask: null, width: 16, height: 16 };
  const seen = new Set<OpName>();
  for (let k = 0; k < 200; k++) for (const op of applyRandAugment({ ...img, rgb: img.rgb.slice() }, spec, new Rng(k))) seen.add(op);
  for (const op of seen) assert.ok(RAND_INCREASING_TRANSFORMS.includes(op));
  assert.ok(seen.size >= 12, `ops seen: ${seen.size}`);
});

test('the RandAugment path (fine-tuning) writes each channel from its own plane', () => {
  // a coloured image through fine-tuning's transforms, RandAugment's ops drawn but not applied (prob 0):
  // the sample still goes through RandAugment's RGB bytes, and must keep its colour
  const rgb = [200, 20, 90];
  const img = rgbImage(24, 20, (_x, _y, c) => rgb[c]);
  const ts = [
    randomResizedCrop(16, { interpolation: 'bicubic' }),
    horizontalFlip(0.5),
    randAugment({ n: 2, m: 9, prob: 0 }),
    normalize(),
    randomErasing({ p: 0 }),
  ];
  const out = new Float32Array(3 * 256);
  for (let s = 0; s < 3; s++) {
    new Pipeline(ts).run(handleFromImage(img), new Rng(s), out, 0, 16, 16, null, 0);
    for (let c = 0; c < 3; c++) {
      const want = (rgb[c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
      for (let i = 0; i < 256; i++) assert.ok(Math.abs(out[c * 256 + i] - want) < 1e-5, `seed ${s} channel ${c}: ${out[c * 256 + i]}, not ${want}`);
    }
  }
});

test("RandAugment clips each op's drawn magnitude to 0..10, as timm does", () => {
  // an rng that picks SolarizeAdd (add ⌊L·110⌋ below 128) and draws the given magnitude
  const pick = (m: number) => ({ int: () => RAND_TRANSFORMS.indexOf('SolarizeAdd'), float: () => 0, normal: () => m, uniform: () => m }) as unknown as Rng;
  const run = (m: number, spec: ReturnType<typeof randAugment>) => {
    const im: AugImage = { rgb: Uint8Array.from([10, 20, 30, 40, 10, 20, 30, 40, 10, 20, 30, 40]), mask: null, width: 4, height: 1 };
    assert.deepEqual(applyRandAugment(im, spec, pick(m)), ['SolarizeAdd']);
    return [...im.rgb.subarray(0, 4)];
  };
  const noisy = randAugment({ n: 1, m: 9, mstd: 0.5, prob: 1 });
  assert.deepEqual(run(12.4, noisy), [120, 130, 140, 150], 'a draw above 10 acts as 10 (+110)');
  assert.deepEqual(run(-0.7, noisy), [10, 20, 30, 40], 'a draw below 0 acts as 0');
  assert.deepEqual(run(5, noisy), [65, 75, 85, 95]);
  assert.deepEqual(run(0, randAugment({ n: 1, m: 13, prob: 1 })), [120, 130, 140, 150], 'a configured magnitude above 10 too');
});

test("random erasing: timm's defaults; a region may touch the last row; 'rand' colours span every byte", () => {
  assert.deepEqual(randomErasing(), { op: 'randomErasing', p: 0.25, scale: [0.02, 1 / 3], ratio: [0.3, 1 / 0.3], mode: 'pixel', count: 1 });
  let lastRow = false;
  const colours = new Set<number>();
  for (let s = 0; s < 2000; s++) {
    const b = new Uint8Array(3 * 64).fill(7);
    randomErase(b, 0, 8, 8, randomErasing({ p: 1, scale: [0.25, 0.25], ratio: [1, 1], mode: 'rand' }), new Rng(s)); // 4×4 regions
    lastRow ||= b.subarray(56, 64).some((v, x) => v !== 7 || b[64 + 56 + x] !== 7);
    for (let c = 0; c < 3; c++) for (let i = 0; i < 64; i++) if (b[c * 64 + i] !== 7 || b[((c + 1) % 3) * 64 + i] !== 7) colours.add(b[c * 64 + i]);
  }
  assert.ok(lastRow, 'a 4×4 region at the bottom (top = 4 of 0..4)');
  assert.ok(colours.has(255) && colours.has(0), 'colours 0..255');
});

test('random erasing writes one rectangle of noise', () => {
  const out = new Float32Array(3 * 32 * 32).fill(5);
  const n = randomErase(out, 0, 32, 32, randomErasing({ p: 1 }), new Rng(3));
  assert.equal(n, 1);
  const changed = out.filter((v) => v !== 5).length;
  assert.ok(changed >= 3 * 0.02 * 1024 * 0.9 && changed <= (3 * 1024) / 3 + 3 * 32, `changed ${changed}`);
  const none = new Float32Array(12).fill(5);
  assert.equal(randomErase(none, 0, 2, 2, randomErasing({ p: 0 }), new Rng(3)), 0);
});

test("random erasing as timm's: an area divided among `count` regions, regions strictly smaller than the image, 'rand' one colour per channel", () => {
  const zeros = (b: Float32Array, c: number) => b.subarray(c * 256, (c + 1) * 256).filter((v) => v === 0).length;
  // count 2 of half the 16×16 area: two 8×8 squares of zeros (a quarter each), not two of half the area
  for (let s = 0; s < 5; s++) {
    const b = new Float32Array(3 * 256).fill(5);
    assert.equal(randomErase(b, 0, 16, 16, randomErasing({ p: 1, scale: [0.5, 0.5], ratio: [1, 1], mode: 'const', count: 2 }), new Rng(s)), 2);
    const z = zeros(b, 0);
    assert.ok(z >= 64 && z <= 128, `seed ${s}: ${z} zeros`);
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 16; x++) {
        // every erased pixel lies in an 8×8 block of erased pixels
        if (b[y * 16 + x] !== 0) continue;
        let inSquare = false;
        for (let t = Math.max(0, y - 7); t <= Math.min(8, y) && !inSquare; t++) {
          for (let l = Math.max(0, x - 7); l <= Math.min(8, x) && !inSquare; l++) {
            let all = true;
            for (let yy = t; yy < t + 8 && all; yy++) for (let xx = l; xx < l + 8 && all; xx++) all = b[yy * 16 + xx] === 0;
            inSquare = all;
          }
        }
        assert.ok(inSquare, `seed ${s}: pixel ${x},${y}`);
      }
    }
  }
  // the whole image (8×8 of 8×8) never fits timm's `w < img_w and h < img_h`: nothing erased
  const whole = new Float32Array(3 * 64).fill(5);
  assert.equal(randomErase(whole, 0, 8, 8, randomErasing({ p: 1, scale: [1, 1], ratio: [1, 1] }), new Rng(0)), 0);
  assert.ok(whole.every((v) => v === 5));
  // sides rounded as timm's int(round(...)), halves to even: √(0.0625 · 10 · 10) = 2.5 → a 2×2 region, not 3×3
  const half = new Float32Array(3 * 100).fill(5);
  assert.equal(randomErase(half, 0, 10, 10, randomErasing({ p: 1, scale: [0.0625, 0.0625], ratio: [1, 1], mode: 'const' }), new Rng(0)), 1);
  assert.equal(half.subarray(0, 100).filter((v) => v === 0).length, 4);
  // 'rand': one normal value per channel over the region (timm's _get_pixels with rand_color)
  const r = new Float32Array(3 * 256).fill(5);
  assert.equal(randomErase(r, 0, 16, 16, randomErasing({ p: 1, scale: [0.25, 0.25], ratio: [1, 1], mode: 'rand' }), new Rng(1)), 1);
  const colours = [0, 1, 2].map((c) => [...new Set(r.subarray(c * 256, (c + 1) * 256).filter((v) => v !== 5))]);
  for (const c of colours) assert.equal(c.length, 1, `one colour per channel: ${c.length}`);
  assert.equal(new Set(colours.flat()).size, 3, `three different channel colours: ${colours}`);
  assert.ok(!colours.flat().includes(0));
});

test("random erasing: the region's height is √(area·ratio), its width √(area/ratio); erased when the draw is at most p", () => {
  // ratio 4 of 64 pixels on 32×32: 16 rows × 4 columns
  const b = new Float32Array(3 * 1024).fill(5);
  assert.equal(randomErase(b, 0, 32, 32, randomErasing({ p: 1, scale: [1 / 16, 1 / 16], ratio: [4, 4], mode: 'const' }), new Rng(2)), 1);
  const rows = new Set<number>();
  const cols = new Set<number>();
  for (let i = 0; i < 1024; i++) {
    if (b[i] !== 0) continue;
    rows.add(i >> 5);
    cols.add(i & 31);
  }
  assert.deepEqual([rows.size, cols.size], [16, 4]);
  // timm: `if random.random() > self.probability: return`, so a draw equal to p erases
  const fake = { float: () => 0.5, uniform: (lo: number) => lo, int: () => 0, normal: () => 1 } as unknown as Rng;
  assert.equal(randomErase(new Float32Array(3 * 64), 0, 8, 8, randomErasing({ p: 0.5 }), fake), 1);
});

test('mixup and cutmix mix pairs (i, n-1-i) and produce matching soft targets', () => {
  const n = 4;
  const shape: [number, number, number, number] = [n, 3, 8, 8];
  const per = 192;
  const base = () => {
    const x = new Float32Array(n * per);
    for (let i = 0; i < n; i++) x.fill(i, i * per, (i + 1) * per);
    return x;
  };
  const labels = Int32Array.from([0, 1, 2, 3]);
  const x = base();
  const m = mixBatch(x, shape, null, { mixupAlpha: 0.8, cutmixAlpha: 0 }, new Rng(1));
  assert.equal(m.cutmix, false);
  assert.ok(Math.abs(x[0] - (0 * m.lam + 3 * (1 - m.lam))) < 1e-5);
  assert.ok(Math.abs(x[per] - (1 * m.lam + 2 * (1 - m.lam))) < 1e-5);
  const t = softTargets(labels, 5, m.lam, 0.1);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let c = 0; c < 5; c++) s += t[i * 5 + c];
    assert.ok(Math.abs(s - 1) < 1e-5);
  }
  assert.ok(Math.abs(t[0] - (0.02 + 0.9 * m.lam)) < 1e-5);
  assert.ok(Math.abs(t[3] - (0.02 + 0.9 * (1 - m.lam))) < 1e-5);
  const y = base();
  const masks = new Uint8Array(n * 64);
  masks.fill(1, 0, 64);
  const c = mixBatch(y, shape, masks, { mixupAlpha: 0, cutmixAlpha: 1 }, new Rng(4));
  assert.equal(c.cutmix, true);
  const [y0, y1, x0, x1] = c.box!;
  const area = (y1 - y0) * (x1 - x0);
  assert.ok(Math.abs(c.lam - (1 - area / 64)) < 1e-9);
  let swapped = 0;
  for (let k = 0; k < per; k++) if (y[k] === 3) swapped++;
  assert.equal(swapped, 3 * area);
  assert.equal(
    masks.subarray(192, 256).reduce((a, b) => a + b, 0),
    area,
  );
  const off = mixBatch(base(), shape, null, { prob: 0 }, new Rng(0));
  assert.equal(off.lam, 1);
});

test('soft targets: a label at or past numClasses is a RangeError naming it (it was left out of its row); a negative one gets no target', () => {
  assert.throws(() => softTargets(Int32Array.from([0, 1]), 1, 1, 0.1), {
    name: 'RangeError',
    message: 'softTargets: label 1 is outside the 1 classes of the targets (numClasses)',
  });
  assert.throws(() => softTargets(Int32Array.from([7, 0]), 3, 0.5), /label 7 is outside the 3 classes/);
  assert.deepEqual([...softTargets(Int32Array.from([-1, 1]), 2)], [0, 0, 0, 1]);
});

test("mixup and cutmix as timm's Mixup: both images of a pair mixed, the default alphas, cutmix's box", () => {
  // a stand-in rng: float() for the mix / switch draws, beta() records its alphas and returns λ, int() the box centre
  const fake = (f: number, lam: number, ints: number[] = []) => {
    const alphas: number[][] = [];
    const rng = { float: () => f, beta: (a: number, b: number) => (alphas.push([a, b]), lam), int: () => ints.shift()! } as unknown as Rng;
    return { rng, alphas };
  };
  const shape: [number, number, number, number] = [2, 3, 8, 8];
  const pair = () => {
    const x = new Float32Array(2 * 192);
    x.fill(10, 0, 192);
    x.fill(50, 192);
    return x;
  };
  // mixup with λ = 0.25: image 0 = 0.25·10 + 0.75·50 = 40, image 1 = 0.25·50 + 0.75·10 = 20
  const x = pair();
  let r = fake(0.9, 0.25); // 0.9 < prob 1: mixed; 0.9 ≥ switchProb 0.5: mixup
  assert.deepEqual(mixBatch(x, shape, null, {}, r.rng), { lam: 0.25, cutmix: false });
  assert.deepEqual(r.alphas, [[0.8, 0.8]], "timm/MAE fine-tuning's mixup alpha 0.8 by default");
  assert.ok(x.subarray(0, 192).every((v) => v === 40));
  assert.ok(x.subarray(192).every((v) => v === 20));
  // bytes: rounded
  const bytes = Uint8Array.from({ length: 2 * 192 }, (_, i) => (i < 192 ? 0 : 255));
  mixBatch(bytes, shape, null, {}, fake(0.9, 0.25).rng);
  assert.deepEqual([bytes[0], bytes[192]], [191, 64], '0.75·255 = 191.25, 0.25·255 = 63.75');
  const flipped = Uint8Array.from({ length: 2 * 192 }, (_, i) => (i < 192 ? 255 : 0));
  mixBatch(flipped, shape, null, {}, fake(0.9, 0.25).rng);
  assert.deepEqual([flipped[0], flipped[192]], [64, 191], 'to the nearest byte in both images of the pair');
  // the mix probability: mixed only when the draw is below it
  assert.deepEqual(mixBatch(pair(), shape, null, { prob: 0.5 }, fake(0.5, 0.25).rng), { lam: 1, cutmix: false });
  // cutmix (0.1 < switchProb) with λ = 0.5: cut = ⌊8·√0.5⌋ = 5 rows and columns, the box centre (4, 3)
  // spans cy − 5//2 .. cy + 5//2 (4 wide, as timm's rand_bbox), λ corrected to 1 − 16/64
  const y = pair();
  r = fake(0.1, 0.5, [4, 3]);
  assert.deepEqual(mixBatch(y, shape, null, {}, r.rng), { lam: 0.75, cutmix: true, box: [2, 6, 1, 5] });
  assert.deepEqual(r.alphas, [[1, 1]], 'cutmix alpha 1.0 by default');
  for (let c = 0; c < 3; c++) {
    for (let yy = 0; yy < 8; yy++) {
      for (let xx = 0; xx < 8; xx++) {
        const inBox = yy >= 2 && yy < 6 && xx >= 1 && xx < 5;
        assert.equal(y[c * 64 + yy * 8 + xx], inBox ? 50 : 10);
        assert.equal(y[192 + c * 64 + yy * 8 + xx], inBox ? 10 : 50);
      }
    }
  }
  // a box centred at the corner is clipped to the image: rows 0..2, columns 0..2
  assert.deepEqual(mixBatch(pair(), shape, null, {}, fake(0.1, 0.5, [0, 0]).rng), { lam: 1 - 4 / 64, cutmix: true, box: [0, 2, 0, 2] });
});

test('WebAssembly SIMD kernels match the TypeScript kernels', { skip: !simdAvailable() && 'no WebAssembly SIMD' }, () => {
  // IDCT: bit-exact on random sparse blocks
  const idct = wasmIdct()!;
  arenaReset();
  const coef = arenaAlloc(256)!;
  const out = arenaAlloc(8 * 24)!;
  const qa = aanScaledQuant(new Uint16Array(64).fill(3));
  const rng = new Rng(2);
  for (let trial = 0; trial < 100; trial++) {
    const blk = new Float32Array(64);
    for (let i = 0; i < 64; i++) blk[i] = (rng.float() < 0.4 ? Math.round(rng.normal(0, 30)) : 0) * qa[i];
    const ref = new Uint8ClampedArray(64);
    idct8(blk, ref, 0, 8);
    new Float32Array(arenaBuffer()).set(blk, coef >> 2);
    idct(coef, out, 24);
    const u8 = new Uint8Array(arenaBuffer());
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) assert.ok(Math.abs(u8[out + y * 24 + x] - ref[y * 8 + x]) <= 1);
    assert.ok(
      new Float32Array(arenaBuffer(), coef, 64).every((v) => v === 0),
      'block zeroed',
    );
  }
  // resampling + normalisation: identical to the TypeScript path for RGB and gray planes
  const fmt = floatFormat(IMAGENET_MEAN, IMAGENET_STD);
  const img = rgbImage(45, 33, (x, y, c) => (x * 5 + y * 11 + c * 70 + ((x * y) % 7) * 9) & 255);
  for (const interp of ['bilinear', 'bicubic'] as const) {
    for (const [ow, oh, flip] of [
      [224, 160, false],
      [20, 13, true],
      [45, 33, false],
    ] as const) {
      const spec: ResampleSpec = { sample: { x0: 1.5, y0: 2, x1: 41, y1: 32 }, clip: { x0: 1, y0: 2, x1: 42, y1: 33 }, outW: ow, outH: oh, flip, interp };
      const a = new Float32Array(3 * ow * oh + 4);
      const b = new Float32Array(3 * ow * oh + 4);
      resampleToOutput(img, spec, a, 4 - 2, fmt);
      assert.equal(simdResampleToOutput(img, spec, b, 2, fmt), true);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-4, `${interp} ${ow}x${oh} @${i}: ${a[i]} vs ${b[i]}`);
    }
  }
});

test("4:2:0 chroma is upsampled with libjpeg's triangle filter on every output row, the bottom edge included", () => {
  const [W, H, cw, ch] = [64, 48, 32, 24];
  const plane = (w: number, h: number, s: number, v: (x: number, y: number) => number) => ({
    ...fullPlane(
      Uint8Array.from({ length: w * h }, (_, i) => v(i % w, Math.floor(i / w)) & 255),
      w,
      h,
    ),
    sx: s,
    sy: s,
  });
  // chroma that jumps from row to row, so that a row of the wrong height anywhere shows
  const cb = (x: number, y: number) => (y * 37 + x * 5) & 255;
  const cr = (x: number, y: number) => (200 - y * 23 + x * 3) & 255;
  const img: Image = {
    width: W,
    height: H,
    space: 'ycbcr',
    planes: [plane(W, H, 1, (x, y) => x * 3 + y * 7), plane(cw, ch, 2, cb), plane(cw, ch, 2, cr)],
  };
  const r = { x0: 0, y0: 0, x1: W, y1: H };
  const out = new Uint8Array(3 * W * H);
  resampleToOutput(img, { sample: r, clip: r, outW: W, outH: H, flip: false, interp: 'bilinear' }, out, 0, { kind: 'uint8' });
  // output pixel u sits at (u + 0.5) / 2 - 0.5 in chroma pixels, clamped to the plane
  const tap = (u: number, m: number) => {
    const pos = (u + 0.5) / 2 - 0.5;
    const a = Math.max(0, Math.floor(pos));
    return { a: Math.min(a, m - 1), b: Math.min(a + 1, m - 1), t: pos < 0 ? 0 : pos - Math.floor(pos) };
  };
  const up = (c: (x: number, y: number) => number, x: number, y: number) => {
    const [tx, ty] = [tap(x, cw), tap(y, ch)];
    const row = (j: number) => (1 - tx.t) * c(tx.a, j) + tx.t * c(tx.b, j);
    return (1 - ty.t) * row(ty.a) + ty.t * row(ty.b);
  };
  let worst = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const Y = (x * 3 + y * 7) & 255;
      const [u, v] = [up(cb, x, y) - 128, up(cr, x, y) - 128];
      const rgb = [Y + 1.402 * v, Y - 0.344136286 * u - 0.714136286 * v, Y + 1.772 * u].map((c) => Math.min(255, Math.max(0, c)));
      for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(out[c * W * H + y * W + x] - rgb[c]));
    }
  }
  assert.ok(worst <= 0.51, `the output is ${worst} grey levels from the triangle filter's`);
});

test("randAugment's config string: inc0 and inc1 turn the increasing ops off and on", () => {
  assert.equal(randAugment('rand-m9-inc0').increasing, false);
  assert.equal(randAugment('rand-m9-inc1').increasing, true);
});

test("randAugment's config string: an mstd above 100 draws the magnitude uniformly in [0, m], as timm reads it", () => {
  // timm's rand_augment_transform: `if mstd > 100: mstd = float('inf')` (uniform sampling in 0..magnitude)
  assert.equal(randAugment('rand-m9-mstd101').mstd, Infinity);
  assert.equal(randAugment('rand-m9-mstd1000-inc1').mstd, Infinity);
  assert.equal(randAugment('rand-m9-mstdinf').mstd, Infinity);
  assert.equal(randAugment('rand-m9-mstd100').mstd, 100, '100 itself is a standard deviation');
  assert.equal(randAugment('rand-m9-mstd0.5').mstd, 0.5);
});

test("randAugment's config string: without an m the magnitude is timm's default, 10 (rand_augment_transform: magnitude = _LEVEL_DENOM)", () => {
  assert.equal(randAugment('rand-n2-mstd0.5').m, 10);
  assert.equal(randAugment('rand-mstd1-inc1').m, 10);
  assert.equal(randAugment('rand').m, 10);
  assert.equal(randAugment('rand-m9-mstd0.5-inc1').m, 9);
  assert.equal(randAugment('rand-m0').m, 0);
  // (the options object and the default config keep MAE's 9)
  assert.equal(randAugment({ n: 1 }).m, 9);
  assert.equal(randAugment().m, 9);
});

test('randomErasing refuses what it cannot honour: an unknown mode (it erased to zeros; timm asserts), a region count that is not a whole number >= 1, p outside [0, 1], a bad scale or ratio', () => {
  for (const mode of ['pixels', 'random', 'Const']) {
    assert.throws(() => randomErasing({ mode: mode as 'pixel' }), RangeError, `mode '${mode}'`);
  }
  for (const count of [2.5, 0, -1, NaN]) assert.throws(() => randomErasing({ count }), RangeError, `count ${count}`);
  for (const p of [-0.1, 1.5, NaN]) assert.throws(() => randomErasing({ p }), RangeError, `p ${p}`);
  assert.throws(() => randomErasing({ ratio: [0, 2] }), RangeError, 'ratio 0');
  assert.throws(() => randomErasing({ scale: [0.5, 0.1] }), RangeError, 'scale reversed');
  for (const mode of ['pixel', 'rand', 'const'] as const) assert.equal(randomErasing({ mode, count: 3, p: 1 }).mode, mode);
  assert.equal(randomErasing({ p: 0, scale: [0, 1] }).p, 0);
});

test("normalize refuses a std of 0 (torchvision's Normalize: 'std evaluated to zero'), where every value of that channel became NaN or ±Infinity", () => {
  for (const std of [
    [0, 0.224, 0.225],
    [0.229, 0.224, 0],
  ] as const) {
    assert.throws(() => normalize(IMAGENET_MEAN, std), RangeError, JSON.stringify(std));
  }
  assert.throws(() => normalize([NaN, 0.5, 0.5], [1, 1, 1]), RangeError, 'a NaN mean');
  assert.throws(() => normalize([0.5, 0.5, 0.5], [1, Infinity, 1]), RangeError, 'an infinite std');
  assert.throws(() => normalize([0.5, 0.5] as unknown as [number, number, number], [1, 1, 1]), RangeError, 'two means');
  // (torchvision accepts a negative std: so does normalize)
  assert.deepEqual(normalize([0.5, 0.5, 0.5], [-1, 1, 2]).std, [-1, 1, 2]);
});

test("a crop followed by a resize resizes the crop, as torchvision's Compose does: no pixel outside the crop is read", () => {
  // a noisy 40×32 image: a filter tap that reaches past the crop border would change the output
  const W = 40;
  const H = 32;
  const img = rgbImage(W, H, (x, y, c) => ((c * W * H + y * W + x) * 2654435761) >>> 24);
  for (const crop of [centerCrop([20, 24]), randomCrop([20, 24])]) {
    for (const size of [[10, 8] as const, 9]) {
      const ts = [crop, resize(size, { interpolation: 'bicubic' })];
      const seed = 5;
      const [oh, ow] = staticOutputSize(ts) ?? [9, Math.floor((9 * 24) / 20)];
      // reference: the crop alone (an exact copy), then the resize of that image
      const cropped = new Uint8Array(3 * 20 * 24);
      new Pipeline([crop], { uint8: true }).run(handleFromImage(img), new Rng(seed), cropped, 0, 20, 24, null, 0);
      const cropImg = rgbImage(24, 20, (x, y, c) => cropped[c * 480 + y * 24 + x]);
      const ref = new Uint8Array(3 * oh * ow);
      new Pipeline([resize(size, { interpolation: 'bicubic' })], { uint8: true }).run(handleFromImage(cropImg), new Rng(0), ref, 0, oh, ow, null, 0);
      const out = new Uint8Array(3 * oh * ow);
      new Pipeline(ts, { uint8: true }).run(handleFromImage(img), new Rng(seed), out, 0, oh, ow, null, 0);
      assert.deepEqual(out, ref, `${crop.op} then resize(${JSON.stringify(size)})`);
    }
  }
});

test("random erasing as timm's: a draw whose side rounds to 0 ends that region's attempts (it erases nothing), no retry", () => {
  // timm: `if w < img_w and h < img_h:` takes an empty region and breaks; a retry would erase a later, larger draw
  const draws = [0.001, 0, 0.25, 0]; // area 0.001·64 → sides round to 0; then a quarter of the image, 4×4
  const fake = { float: () => 0, uniform: () => draws.shift()!, int: () => 0, normal: () => 9 } as unknown as Rng;
  const b = new Float32Array(3 * 64).fill(5);
  assert.equal(randomErase(b, 0, 8, 8, randomErasing({ p: 1, scale: [0.001, 0.5], ratio: [1, 1] }), fake), 0, 'no region counted');
  assert.equal(b.filter((v) => v !== 5).length, 0, 'nothing erased');
  assert.equal(draws.length, 2, 'one attempt drawn');
});

test('staticOutputSize: a short-side resize after a fixed-size crop gives a fixed size too', () => {
  // every image leaves the crop at one size, so the resize that follows gives one size (the loaders refused these lists)
  assert.deepEqual(staticOutputSize([randomResizedCrop(224), resize(112)]), [112, 112]);
  assert.deepEqual(staticOutputSize([centerCrop([20, 30]), resize(10)]), [10, 15]);
  assert.deepEqual(staticOutputSize([centerCrop([30, 20]), horizontalFlip(), resize(10, { maxSize: 12 })]), [12, 8]);
  assert.equal(staticOutputSize([resize(64), horizontalFlip()]), null);
  // the size the plan gives any image
  for (const ts of [
    [randomResizedCrop(224), resize(112)],
    [centerCrop([20, 30]), resize(10)],
    [centerCrop([30, 20]), resize(10, { maxSize: 12 })],
  ]) {
    const p = buildPlan(57, 41, ts, new Rng(1));
    assert.deepEqual([p.outH, p.outW], staticOutputSize(ts));
  }
});

test('randAugment refuses an op count that is not a whole number (timm: int(n)), not rounding it up to n ops per image', () => {
  assert.throws(() => randAugment('rand-m9-n2.5'), RangeError);
  assert.throws(() => randAugment({ n: 1.5 }), RangeError);
  assert.throws(() => randAugment({ n: -1 }), RangeError);
  assert.equal(randAugment('rand-m9-n3').n, 3);
  assert.equal(randAugment({ n: 0 }).n, 0);
});
