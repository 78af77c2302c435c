import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { SGD, constantLr, fractionalEpoch, minLrProblem, scaleLr, stepLr, stepsInEpochs, warmupCosine } from '../../src/optim';
import { assertClose, golden, t64 } from './helpers';

interface CosineSpec {
  lr: number;
  min_lr: number;
  warmup_epochs: number;
  epochs: number;
  iters: number;
}
const G = golden<{
  cosine: Array<{ spec: CosineSpec; points: Array<[number, number, number, number]> }>;
  multistep: { lr: number; milestones: number[]; gamma: number; values: number[] };
  steplr: { lr: number; step_size: number; gamma: number; values: number[] };
  blr: Array<{ blr: number; batch: number; lr: number }>;
}>('schedule.json');

test("warmupCosine matches MAE's adjust_learning_rate per iteration", () => {
  for (const { spec, points } of G.cosine) {
    const sched = warmupCosine({ lr: spec.lr, minLr: spec.min_lr, warmupEpochs: spec.warmup_epochs, epochs: spec.epochs });
    for (const [e, i, ep, lr] of points) {
      const x = fractionalEpoch(e, i, spec.iters);
      assert.equal(x, ep);
      assertClose(sched(x), lr, 1e-12, `lr(${e}+${i}/${spec.iters})`);
    }
  }
  const s = warmupCosine({ lr: 1, epochs: 10, warmupEpochs: 2 });
  assert.equal(s(0), 0);
  assert.equal(s(2), 1);
  assertClose(s(10), 0, 1e-15, 'end');
  assert.throws(() => warmupCosine({ lr: 1, epochs: 2, warmupEpochs: 2 }), /must exceed/);
});

test('a minLr above the peak lr is refused: the cosine would raise the lr (pretrain --min-lr 1 --lr 0.001 reached lr 0.85)', () => {
  assert.throws(() => warmupCosine({ lr: 0.001, minLr: 1, epochs: 2 }), /warmupCosine: minLr \(1\) is above the peak lr \(0\.001\)/);
  assert.equal(minLrProblem(0.1, 0.1), null, 'a constant lr is a cosine from lr to lr');
  assert.equal(warmupCosine({ lr: 0.1, minLr: 0.1, epochs: 2 })(1), 0.1);
});

test('a schedule refuses an lr, minLr or gamma that would give setLr a negative or non-finite lr (minLr −1 stopped a run near its end)', () => {
  // the cosine from 1 to −1 crossed 0 halfway: setLr refused the lr there, mid-run
  assert.throws(() => warmupCosine({ lr: 1, minLr: -1, epochs: 10 }), /warmupCosine: minLr must be a finite number ≥ 0, got -1/);
  assert.throws(() => warmupCosine({ lr: NaN, epochs: 10 }), /warmupCosine: lr must be a finite number ≥ 0, got NaN/);
  assert.throws(() => warmupCosine({ lr: Infinity, epochs: 10 }), /warmupCosine: lr must be/);
  assert.throws(() => constantLr({ lr: -1 }), /constantLr: lr must be a finite number ≥ 0, got -1/);
  assert.throws(() => stepLr({ lr: 1, stepSize: 1, gamma: -1 }), /stepLr: gamma must be a finite number ≥ 0, got -1/);
  assert.throws(() => stepLr({ lr: -0.1, stepSize: 1 }), /stepLr: lr must be/);
  assert.throws(() => stepLr({ lr: 1, milestones: [2, NaN] }), /stepLr: milestones must be finite epochs, got \[2, NaN\]/);
  // the edges stay allowed
  assert.equal(warmupCosine({ lr: 0, epochs: 2 })(1), 0);
  assert.equal(stepLr({ lr: 1, stepSize: 1, gamma: 0 })(1), 0);
});

test('stepLr matches torch MultiStepLR and StepLR at integer epochs', () => {
  const m = G.multistep;
  const ms = stepLr({ lr: m.lr, milestones: m.milestones, gamma: m.gamma });
  m.values.forEach((v, e) => assertClose(ms(e), v, 1e-12, `multistep(${e})`));
  const s = G.steplr;
  const ss = stepLr({ lr: s.lr, stepSize: s.step_size, gamma: s.gamma });
  s.values.forEach((v, e) => assertClose(ss(e), v, 1e-12, `steplr(${e})`));
  assert.equal(ms(2.99), m.lr);
  assert.throws(() => stepLr({ lr: 1 }), /exactly one/);
  assert.throws(() => stepLr({ lr: 1, milestones: [2], stepSize: 3 }), /exactly one/);
  // gamma defaults to torch's 0.1
  assertClose(stepLr({ lr: 1, milestones: [2] })(2), 0.1, 1e-15, 'default gamma');
  const w = stepLr({ lr: 1, stepSize: 10, warmupEpochs: 4 });
  assert.equal(w(1), 0.25);
  assert.equal(w(5), 1);
});

test('constantLr, with and without warm-up', () => {
  assert.equal(constantLr({ lr: 0.3 })(0), 0.3);
  const c = constantLr({ lr: 0.4, warmupEpochs: 2 });
  assertClose(c(0.5), 0.1, 1e-15, 'warm-up');
  assert.equal(c(7), 0.4);
});

test('scaleLr is blr × batch / 256', () => {
  for (const b of G.blr) assertClose(scaleLr(b.blr, b.batch), b.lr, 1e-15, `blr ${b.blr} × ${b.batch}`);
  assert.equal(scaleLr(1, 512, 512), 1);
});

test("setLr applies each group's lrScale (layer-wise decay)", () => {
  const a = torch.keep(t64([1], true));
  const b = torch.keep(t64([1], true));
  const opt = new SGD([{ params: [['a', a]], lrScale: 0.25 }, { params: [['b', b]] }]);
  opt.setLr(0.8);
  assert.deepEqual(
    opt.paramGroups.map((g) => g.lr),
    [0.2, 0.8],
  );
  for (const bad of [NaN, -1, Infinity, null as unknown as number])
    assert.throws(() => opt.setLr(bad), { name: 'RangeError', message: `SGD.setLr: invalid learning rate ${bad}` });
  assert.deepEqual(
    opt.paramGroups.map((g) => g.lr),
    [0.2, 0.8],
  );
  opt.dispose();
  a.dispose();
  b.dispose();
});

test('stepsInEpochs: the steps a decimal epoch count names, where the binary product lands just above them; a part step is a step', () => {
  assert.equal(0.28 * 25, 7.000000000000001);
  assert.equal(stepsInEpochs(0.28, 25), 7, 'not 8');
  assert.equal(stepsInEpochs(0.29, 25), 8, '7.25 steps: the part step is trained');
  assert.equal(stepsInEpochs(100, 1251), 125100);
  assert.equal(stepsInEpochs(1e-6, 3), 1);
  // the linear probe's head training and the ablation plan count as the loop does
  for (const [e, n] of [
    [0.07, 100],
    [0.57, 100],
    [1.1, 10],
    [2.3, 30],
  ] as const)
    assert.equal(stepsInEpochs(e, n), Math.round(e * n), `${e} × ${n}`);
});
