import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { firstPatches, formatObjectStart, objectStartFraction, patchesInside, scoreFirstPatches } from '../../src/viz';
import { OptionError } from '../../src/util/options';
import { SemAIM, VisionTransformer, makeConfig } from '../../src/semaim';
import { tinyConfig, tinyModel } from './helpers';

test('patchesInside: a patch is object when at least half of its pixels are', () => {
  // 8×8 image, 4×4 patches: patch 0 full, patch 1 exactly 8/16, patch 2 has 7/16, patch 3 empty.
  const m = new Uint8Array(64);
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) m[y * 8 + x] = 1;
  for (let y = 0; y < 2; y++) for (let x = 4; x < 8; x++) m[y * 8 + x] = 255;
  for (let k = 0; k < 7; k++) m[(4 + Math.floor(k / 4)) * 8 + (k % 4)] = 1;
  assert.deepEqual(patchesInside(m, 8, 4), [true, true, false, false]);
  assert.deepEqual(patchesInside(m, 8, 4, 0.4), [true, true, true, false]);
});

test('patchesInside: a patch holding exactly `threshold` of its pixels counts as inside, whatever rounding threshold × pixels has', () => {
  // 0.07 × 100 is 7.000000000000001 in doubles: a patch with exactly 7 of its 100 pixels on the object was outside
  const m = new Uint8Array(100);
  m.fill(1, 0, 7);
  assert.deepEqual(patchesInside(m, 10, 10, 0.07), [true]);
  assert.deepEqual(patchesInside(m, 10, 10, 0.071), [false]);
  m.fill(0).fill(1, 0, 23);
  assert.deepEqual(patchesInside(m, 10, 10, 0.23), [true]);
});

test('scoreFirstPatches: hand-made case and the random-centre baseline', () => {
  const inside = [
    [true, false, false, false],
    [true, true, false, false],
    [false, false, false, true],
    [false, false, false, false],
  ];
  const s = scoreFirstPatches([0, 2, 3, 1], inside, { draws: 4000, seed: 1 });
  assert.deepEqual(s.inside, [true, false, true, false]);
  assert.equal(s.fraction, 0.5);
  assert.equal(s.emptyMasks, 1);
  assert.deepEqual(s.objectPatchFraction, [0.25, 0.5, 0.25, 0]);
  assert.equal(s.baselineExpected, 0.25);
  assert.ok(Math.abs(s.baselineEmpirical - 0.25) < 0.02, `empirical baseline ${s.baselineEmpirical}`);
  assert.throws(() => scoreFirstPatches([4], [[true, false, false, false]]), /outside/);
  assert.equal(formatObjectStart(s), '| semantic order | 4 | 50.0% ± 25.0% | 25.0% / ' + (100 * s.baselineEmpirical).toFixed(1) + '% (4000 draws per image) |');
});

test("objectStartFraction: masks on / off the model's own first patch give 1 / 0", () => {
  const model = tinyModel(5);
  const n = 6;
  const images = torch.scope(() => torch.randn([n, 3, 16, 16], { generator: new torch.Generator(11) }).toFloat32Array());
  const first = firstPatches(model, images);
  assert.equal(first.length, n);
  const on = new Uint8Array(n * 256);
  first.forEach((p, i) => {
    const r = Math.floor(p / 4);
    const c = p % 4;
    for (let y = r * 4; y < r * 4 + 4; y++) for (let x = c * 4; x < c * 4 + 4; x++) on[i * 256 + y * 16 + x] = 1;
  });
  const hit = objectStartFraction(model, { images, masks: on });
  assert.equal(hit.fraction, 1);
  assert.ok(Math.abs(hit.baselineExpected - 1 / 16) < 1e-12);
  const off = on.map((v) => 1 - v);
  assert.equal(objectStartFraction(model, { images, masks: off }).fraction, 0);
  assert.throws(() => objectStartFraction(model, { images, masks: new Uint8Array(5 * 256) }), /6 images but 5 masks/);
  // the first patch is the one with the smallest order value: patch 0 in raster order
  assert.deepEqual(firstPatches(model, images, { order: 'raster' }), new Array(n).fill(0));
  // scoring leaves the model in the mode it was in
  model.eval();
  objectStartFraction(model, { images, masks: on });
  assert.equal(model.training, false);
  model.train();
  objectStartFraction(model, { images, masks: on });
  assert.equal(model.training, true);
  model.dispose();
});

test('object start refuses bad arguments instead of scoring wrongly: options (OptionError naming the key), thresholds, masks and first patches (RangeError)', () => {
  const m = new Uint8Array(64).fill(1);
  const ranges: [() => unknown, RegExp][] = [
    // 50 meant as percent: no patch was ever inside
    [() => patchesInside(m, 8, 4, 50), /^threshold must be a share of a patch's pixels in \(0, 1\], got 50$/],
    [() => patchesInside(m, 8, 4, NaN), /^threshold must be a share of a patch's pixels in \(0, 1\], got NaN$/],
    // every patch reaches a share of 0, the background's too: the statistic and its baseline were both 100 %
    [() => patchesInside(m, 8, 4, 0), /^threshold must be a share of a patch's pixels in \(0, 1\], got 0$/],
    // the bytes past the mask's end were read as background
    [() => patchesInside(m, 8, 4, 0.5, 32), /^a 8×8 mask at offset 32 does not fit in 64 mask bytes$/],
    [() => patchesInside(m.subarray(0, 60), 8, 4), /^a 8×8 mask at offset 0 does not fit in 60 mask bytes$/],
    [() => patchesInside(m, 8, 0), /^image size 8 is not divisible by patch size 0$/],
    [() => patchesInside(m, 8, 3), /^image size 8 is not divisible by patch size 3$/],
    // inside[0][1.5] is undefined: a fractional first patch was scored as outside the object
    [() => scoreFirstPatches([1.5], [[true, true, true, true]]), /^image 0: first patch 1\.5 is outside 0\.\.3$/],
    [() => scoreFirstPatches([1], [[true, true, true, true]], { draws: -1 }), /^draws must be an integer >= 0, got -1$/],
  ];
  for (const [call, message] of ranges) assert.throws(call, (e) => e instanceof RangeError && message.test(e.message), message.source);
  const model = tinyModel(5);
  try {
    const images = new Float32Array(2 * 3 * 16 * 16);
    const data = { images, masks: new Uint8Array(2 * 256) };
    const options: [Record<string, unknown>, string, RegExp][] = [
      [{ treshold: 0.4 }, 'treshold', /unknown option; did you mean 'threshold'\?/],
      [{ threshold: 50 }, 'threshold', /must be <= 1, got 50/],
      [{ threshold: 0 }, 'threshold', /must be > 0, got 0/],
      [{ order: 'spiral' }, 'order', /must be one of raster, snake, stochastic, similarity, semantic, multicenter, got 'spiral'/],
      [{ draws: 2.5 }, 'draws', /expected an integer, got 2\.5/],
      [{ tokens: 'mean' }, 'tokens', /must be one of cls, gap, self, got 'mean'/],
      [{ ema: {} }, 'ema', /expected the EMA encoder \(a VisionTransformer\)/],
      // a batch size of 0 looped forever
      [{ batchSize: 0 }, 'batchSize', /must be >= 1, got 0/],
    ];
    for (const [o, key, message] of options) {
      const refused = (e: unknown) => e instanceof OptionError && e.key === key && message.test(e.message);
      assert.throws(() => objectStartFraction(model, data, o as never), refused, `objectStartFraction ${JSON.stringify(o)}`);
      assert.throws(() => firstPatches(model, images, o as never), refused, `firstPatches ${JSON.stringify(o)}`);
    }
    assert.equal(objectStartFraction(model, data, { threshold: 1, draws: 0, order: 'raster', batchSize: 1 }).firstPatch.length, 2);
  } finally {
    model.dispose();
  }
});

test("object start with tokens other than [CLS] for a model whose S is its teacher's: refused (the teacher's [CLS] map was scored under the tokens' name)", () => {
  const tcfg = { imgSize: 16, patchSize: 4, depth: 1, embedDim: 16, numHeads: 2 };
  const model = new SemAIM(
    makeConfig('vit_tiny', {
      ...tinyConfig(),
      target: { type: 'features', teacher: 'x.safetensors', teacherConfig: tcfg },
      order: { type: 'semantic', source: 'teacher', filter: true, lambda: 0.01 },
    }),
  ).initWeights(1);
  model.teacher = new VisionTransformer(tcfg).initWeights(3);
  try {
    const images = new Float32Array(2 * 3 * 16 * 16).map((_, i) => Math.cos(i / 7));
    const data = { images, masks: new Uint8Array(2 * 256).fill(1) };
    for (const tokens of ['gap', 'self'] as const)
      assert.throws(
        () => objectStartFraction(model, data, { tokens }),
        (e) => e instanceof RangeError && /the teacher's similarity map is always its \[CLS\] \(min-max\); tokens '(gap|self)' cannot be used/.test(e.message),
        tokens,
      );
    // its own tokens ([CLS]) score as before
    assert.deepEqual(firstPatches(model, images, { tokens: 'cls' }), firstPatches(model, images));
  } finally {
    model.teacher.dispose();
    model.dispose();
  }
});
