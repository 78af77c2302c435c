import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { Mixup, cutmixBox, mixTargets, sampleBeta, smoothOneHot, softTargetCrossEntropy } from '../../src/eval/mix';

const labels = () => torch.tensor([0, 2, 1, 2, 3, 0], { dtype: 'int64' });

test('label smoothing and mixed targets: rows sum to 1 with the right weights', () => {
  torch.scope(() => {
    const y = labels();
    const s = smoothOneHot(y, 4, 0.1).tolist() as number[][];
    assert.ok(Math.abs(s[0][0] - (0.9 + 0.025)) < 1e-6 && Math.abs(s[0][1] - 0.025) < 1e-6);
    const m = mixTargets(y, 4, 0.7, 0.1).tolist() as number[][];
    for (const row of m) assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-6);
    // Row 1 (class 2) is mixed with the flipped row 4 (class 3).
    assert.ok(Math.abs(m[1][2] - (0.7 * 0.925 + 0.3 * 0.025)) < 1e-6);
    assert.ok(Math.abs(m[1][3] - (0.7 * 0.025 + 0.3 * 0.925)) < 1e-6);
    // Row 0 (class 0) is mixed with row 5 (class 0 too): all weight on class 0.
    assert.ok(Math.abs(m[0][0] - 0.925) < 1e-6);
  });
});

test('mixup mixes images with the flipped batch by lambda, cutmix pastes a box and corrects lambda', () => {
  const gen = new torch.Generator(3);
  const mix = new Mixup({ numClasses: 4, mixupAlpha: 0.8, cutmixAlpha: 1.0, labelSmoothing: 0.1 }, gen);
  const seen = new Set<string>();
  for (let trial = 0; trial < 12; trial++) {
    torch.scope(() => {
      const x = torch.randn([6, 3, 8, 8], { generator: new torch.Generator(trial) });
      const y = labels();
      const r = mix.apply(x, y);
      seen.add(r.mode);
      assert.ok(r.lam > 0 && r.lam <= 1, `lam ${r.lam}`);
      const t = r.targets.tolist() as number[][];
      for (const row of t) assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-5);
      // The target weight of row 1's own class (2) vs the flipped row's class (3) is lam / 1 − lam.
      assert.ok(Math.abs(t[1][2] - (r.lam * 0.925 + (1 - r.lam) * 0.025)) < 1e-5);
      if (r.mode === 'mixup') {
        const want = x.mul(r.lam).add(x.flip(0).mul(1 - r.lam));
        assert.ok(r.images.sub(want).abs().max().item() < 1e-5);
      } else if (r.mode === 'cutmix') {
        const { y0, y1, x0, x1 } = r.box!;
        assert.ok(Math.abs(r.lam - (1 - ((y1 - y0) * (x1 - x0)) / 64)) < 1e-12, 'lambda = 1 − box area / image area');
        const inside = r.images.narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0);
        const flippedInside = x
          .flip(0)
          .narrow(2, y0, y1 - y0)
          .narrow(3, x0, x1 - x0);
        assert.ok(inside.numel === 0 || inside.sub(flippedInside).abs().max().item() === 0);
        const changed = r.images.ne(x).any(1).to({ dtype: 'float32' }).sum().item();
        assert.ok(changed <= 6 * (y1 - y0) * (x1 - x0));
      }
    });
  }
  assert.ok(seen.has('mixup') && seen.has('cutmix'), `modes seen: ${[...seen]}`);
  // The same seed draws the same stream.
  const a = new Mixup({ numClasses: 4, mixupAlpha: 0.8, cutmixAlpha: 1 }, new torch.Generator(11));
  const b = new Mixup({ numClasses: 4, mixupAlpha: 0.8, cutmixAlpha: 1 }, new torch.Generator(11));
  for (let i = 0; i < 5; i++) assert.deepEqual(a.params(8, 8), b.params(8, 8));
  // Disabled: no mixing, smoothing only.
  const off = new Mixup({ numClasses: 4, mixupAlpha: 0, cutmixAlpha: 0, labelSmoothing: 0 }, new torch.Generator(1));
  torch.scope(() => {
    const x = torch.randn([6, 3, 8, 8]);
    const r = off.apply(x, labels());
    assert.equal(r.mode, 'none');
    assert.equal(r.lam, 1);
    assert.equal(r.images.sub(x).abs().max().item(), 0);
  });
});

test('cutmix box as timm: side √(1−λ), clipped at the border', () => {
  assert.deepEqual(cutmixBox(32, 32, 0.75, 16, 16), { box: { y0: 8, y1: 24, x0: 8, x1: 24 }, lam: 0.75 });
  const edge = cutmixBox(32, 32, 0.75, 0, 31);
  assert.deepEqual(edge.box, { y0: 0, y1: 8, x0: 23, x1: 32 });
  assert.equal(edge.lam, 1 - (8 * 9) / 1024);
  // the side rounded down, as timm's int(): ⌊11·√0.5⌋ = 7 (7.78), half of it 3 on each side of the centre
  assert.deepEqual(cutmixBox(11, 11, 0.5, 5, 5), { box: { y0: 2, y1: 8, x0: 2, x1: 8 }, lam: 1 - 36 / 121 });
});

test('Beta samples have the right mean and variance', () => {
  const g = new torch.Generator(7);
  const xs = Array.from({ length: 4000 }, () => sampleBeta(0.8, 0.8, g));
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.02, `mean ${mean}`);
  assert.ok(Math.abs(v - 0.64 / (2.56 * 2.6)) < 0.01, `var ${v}`);
  assert.ok(xs.every((x) => x > 0 && x < 1));
});

test('tiny mixup / cutmix alphas give a finite lambda, images, targets and loss (both Gamma draws underflow to 0)', () => {
  for (const alpha of [1e-6, 1e-3]) {
    for (const [mixupAlpha, cutmixAlpha] of [
      [alpha, 0],
      [0, alpha],
    ]) {
      const mix = new Mixup({ numClasses: 4, mixupAlpha, cutmixAlpha, labelSmoothing: 0.1 }, new torch.Generator(1));
      for (let trial = 0; trial < 20; trial++) {
        torch.scope(() => {
          const r = mix.apply(torch.randn([6, 3, 8, 8], { generator: new torch.Generator(trial) }), labels());
          assert.ok(r.lam >= 0 && r.lam <= 1, `alpha ${alpha}: lambda ${r.lam}`);
          const loss = softTargetCrossEntropy(torch.randn([6, 4]), r.targets).item();
          assert.ok(Number.isFinite(loss) && r.images.isfinite().all().item(), `alpha ${alpha} (${r.mode}): loss ${loss}`);
        });
      }
    }
  }
});

test('the Beta stream of a generator is the one fine-tuning has drawn so far (resumed runs and recorded results repeat)', () => {
  const g = new torch.Generator(7);
  const got = [0.8, 1, 0.2, 2].map((a) => sampleBeta(a, a, g));
  assert.deepEqual(got, [0.21940481476524426, 0.3709100262470708, 0.28393648003928923, 0.6853413375718035]);
});

test('soft-target cross entropy equals cross entropy with label smoothing', () => {
  torch.scope(() => {
    const logits = torch.randn([6, 4], { generator: new torch.Generator(2) });
    const y = labels();
    const a = softTargetCrossEntropy(logits, smoothOneHot(y, 4, 0.1)).item();
    const b = torch.F.crossEntropy(logits, y, { labelSmoothing: 0.1 }).item();
    assert.ok(Math.abs(a - b) < 1e-5, `${a} vs ${b}`);
    // bf16 logits (autocast) are taken to float32 before the log-softmax: the loss of the same bf16 values
    // in float32 to float32's precision, not bf16's (~0.4 %)
    const half = logits.mul(7).to({ dtype: 'bfloat16' });
    const c = softTargetCrossEntropy(half, smoothOneHot(y, 4, 0.1)).item();
    const d = softTargetCrossEntropy(half.float(), smoothOneHot(y, 4, 0.1)).item();
    assert.ok(Math.abs(c - d) < 1e-5, `${c} vs ${d}`);
  });
});

test("Mixup's defaults are timm's (switch prob 0.5, label smoothing 0.1, prob 1, corrected λ), and a label smoothing outside [0, 1) is refused", () => {
  const gen = new torch.Generator(1);
  const mix = new Mixup({ numClasses: 4, mixupAlpha: 0.8, cutmixAlpha: 1.0 }, gen);
  assert.deepEqual(
    { switchProb: mix.o.switchProb, labelSmoothing: mix.o.labelSmoothing, prob: mix.o.prob, correctLam: mix.o.correctLam },
    { switchProb: 0.5, labelSmoothing: 0.1, prob: 1, correctLam: true },
  );
  // mixing off: the targets are the labels smoothed by the default 0.1 (0.9 + 0.1/4 on the label, 0.1/4 elsewhere)
  const off = new Mixup({ numClasses: 4, mixupAlpha: 0, cutmixAlpha: 0 }, gen);
  torch.scope(() => {
    const t = off.apply(torch.zeros([2, 3, 4, 4]), torch.tensor([2, 0], { dtype: 'int64' })).targets.tolist() as number[][];
    const want = [
      [0.025, 0.025, 0.925, 0.025],
      [0.925, 0.025, 0.025, 0.025],
    ];
    t.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - want[i][j]) < 1e-6, `target [${i}][${j}] ${v}`)));
  });
  // unmixed, the images given back are a copy: the caller disposes them, not its own batch with them
  const x = torch.keep(torch.ones([2, 3, 4, 4]));
  const r = off.apply(x, torch.tensor([2, 0], { dtype: 'int64' }));
  assert.notEqual(r.images, x);
  r.images.dispose();
  r.targets.dispose();
  assert.equal(x.sum().item(), 96);
  x.dispose();
  for (const labelSmoothing of [1, -0.1, NaN])
    assert.throws(() => new Mixup({ numClasses: 4, mixupAlpha: 0.8, cutmixAlpha: 1.0, labelSmoothing }, gen), /labelSmoothing must be in \[0, 1\)/);
  assert.throws(() => new Mixup({ numClasses: 1, mixupAlpha: 0.8, cutmixAlpha: 1.0 }, gen), /numClasses must be an integer > 1, got 1/);
  for (const prob of [1.5, -0.1]) assert.throws(() => new Mixup({ numClasses: 4, mixupAlpha: 0.8, cutmixAlpha: 1.0, prob }, gen), /prob must be in \[0, 1\]/);
});

test('Mixup.apply refuses labels that are not one per image, before drawing: the targets would pair other images than the mixing did', () => {
  // (before: one label was broadcast over the batch by the loss, silently; six labels for four images gave six
  // targets, each mixed with another flipped partner than its image)
  const gen = new torch.Generator(5);
  const mix = new Mixup({ numClasses: 3, mixupAlpha: 0.8, cutmixAlpha: 1.0 }, gen);
  torch.scope(() => {
    const x = torch.randn([4, 3, 4, 4]);
    for (const n of [1, 6])
      assert.throws(() => mix.apply(x, torch.zeros([n], { dtype: 'int64' })), { name: 'RangeError', message: `Mixup: ${n} labels for a batch of 4 images` });
    assert.throws(() => mix.apply(x, torch.zeros([4, 1], { dtype: 'int64' })), { name: 'RangeError', message: 'Mixup: labels must be [4], got [4, 1]' });
    // nothing was drawn: the next batch mixes as a fresh Mixup's first
    const fresh = new Mixup({ numClasses: 3, mixupAlpha: 0.8, cutmixAlpha: 1.0 }, new torch.Generator(5));
    assert.deepEqual(mix.params(4, 4), fresh.params(4, 4));
  });
});
