import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { firstPatches, formatObjectStart, objectStartFraction, patchesInside, scoreFirstPatches } from '../../src/viz';
import { tinyModel } from './helpers';

test('patchesInside: a patch is object when at least half of its pixels are', () => {
  // 8×8 image, 4×4 patches: patch 0 full, patch 1 exactly 8/16, patch 2 has 7/16, patch 3 empty.
  const m = new Uint8Array(64);
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) m[y * 8 + x] = 1;
  for (let y = 0; y < 2; y++) for (let x = 4; x < 8; x++) m[y * 8 + x] = 255;
  for (let k = 0; k < 7; k++) m[(4 + Math.floor(k / 4)) * 8 + (k % 4)] = 1;
  assert.deepEqual(patchesInside(m, 8, 4), [true, true, false, false]);
  assert.deepEqual(patchesInside(m, 8, 4, 0.4), [true, true, true, false]);
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
  model.dispose();
});
