import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { AdamW, ADAMW_DEFAULTS, LARS, ParamsInput, SGD } from '../../src/optim';
import { Linear } from '../../src/nn';
import { GoldenCase, TOL, assertClose, golden, runCase, setGrad, t64 } from './helpers';

const G = golden<{ defaults: Record<string, unknown>; cases: Record<string, GoldenCase> }>('adamw.json');

test("AdamW defaults are PyTorch 1.13's", () => {
  assert.deepEqual({ lr: ADAMW_DEFAULTS.lr, betas: ADAMW_DEFAULTS.betas, eps: ADAMW_DEFAULTS.eps, weight_decay: ADAMW_DEFAULTS.weightDecay }, G.defaults);
});

for (const [name, c] of Object.entries(G.cases)) {
  test(`AdamW matches torch.optim.AdamW: ${name}`, () => {
    runCase(c, (groups) => new AdamW(groups), TOL, `adamw/${name}`);
  });
}

test("an optimiser's constructor refuses an option it does not have, naming it (PyTorch's weight_decay was ignored: the default decay ran)", () => {
  const w = torch.keep(t64([[1, 2]], true));
  const opts = { lr: 0.1, weight_decay: 0 } as unknown as { lr: number };
  assert.throws(() => new AdamW([['w', w]], opts), /AdamW: unknown option 'weight_decay'; did you mean 'weightDecay'\?/);
  assert.throws(() => new SGD([['w', w]], opts), /SGD: unknown option 'weight_decay'; did you mean 'weightDecay'\?/);
  assert.throws(() => new LARS([['w', w]], { trust_coefficient: 0.01 } as unknown as { lr: number }), /LARS: unknown option 'trust_coefficient'/);
  // every documented option (and LARS's exclude) is taken
  new AdamW([['w', w]], { lr: 0.1, betas: [0.9, 0.95], eps: 1e-6, weightDecay: 0 }).dispose();
  new SGD([['w', w]], { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: true }).dispose();
  new LARS([['w', w]], { lr: 0.1, momentum: 0.9, weightDecay: 0, trustCoefficient: 0.001, exclude: ['w'] }).dispose();
  w.dispose();
});

test("a parameter group with a key the optimiser does not have is refused, naming it (PyTorch's weight_decay, MAE's lr_scale were kept unused)", () => {
  const w = torch.keep(t64([1, 2], true));
  // the group trained with the default weight decay 0.01, and lr_scale left setLr giving the group the full lr
  assert.throws(
    () => new AdamW([{ params: [['w', w]], weight_decay: 0 }]),
    /AdamW: parameter group 0: unknown option 'weight_decay'; did you mean 'weightDecay'\?/,
  );
  assert.throws(() => new SGD([{ params: [['w', w]], lr_scale: 0.5 }], { lr: 0.1 }), /SGD: parameter group 0: unknown option 'lr_scale'.*'lrScale'/);
  assert.throws(() => new LARS([{ params: [['w', w]], trust_coefficient: 0.01 }]), /LARS: parameter group 0: unknown option 'trust_coefficient'/);
  const opt = new AdamW([{ params: [['w', w]], lrScale: 0.5, name: 'head', weightDecay: 0, betas: [0.9, 0.95], eps: 1e-6, lr: 1 }]);
  const v = torch.keep(t64([1], true));
  assert.throws(() => opt.addParamGroup({ params: [['v', v]], momentum: 0.9 }), /AdamW: parameter group 1: unknown option 'momentum'/);
  assert.equal(opt.paramGroups.length, 1);
  opt.dispose();
  w.dispose();
  v.dispose();
});

test('AdamW: per-group hyper-parameters come from defaults unless the group sets them', () => {
  const a = torch.keep(t64([1, 2], true));
  const b = torch.keep(t64([[1, 2]], true));
  const opt = new AdamW([{ params: [['a', a]] }, { params: [['b', b]], weightDecay: 0, lr: 5 }], { lr: 0.1, betas: [0.8, 0.9] });
  assert.equal(opt.paramGroups[0].lr, 0.1);
  assert.equal(opt.paramGroups[0].weightDecay, 0.01);
  assert.deepEqual(opt.paramGroups[0].betas, [0.8, 0.9]);
  assert.equal(opt.paramGroups[1].lr, 5);
  assert.equal(opt.paramGroups[1].weightDecay, 0);
  assert.equal(opt.paramGroups[1].lrScale, 1);
  opt.dispose();
  // a key given undefined (an unset option passed through) is left out, not taken as the value
  const unset = new AdamW([{ params: [['a', a]], lr: undefined, weightDecay: undefined, lrScale: undefined }], { lr: 0.1 });
  assert.equal(unset.paramGroups[0].lr, 0.1);
  assert.equal(unset.paramGroups[0].weightDecay, 0.01);
  assert.equal(unset.paramGroups[0].lrScale, 1);
  unset.dispose();
  a.dispose();
  b.dispose();
});

test('AdamW accepts a plain iterable of named parameters (a Map) as one group', () => {
  const params = new Map([['w', torch.keep(t64([[1, -1]], true))]]);
  const opt = new AdamW(params, { lr: 0.1, weightDecay: 0 });
  assert.equal(opt.paramGroups.length, 1);
  setGrad(params.get('w')!, [[1, -1]]);
  opt.step();
  // First Adam step moves each coordinate by lr·sign(g) (up to eps).
  assertClose(params.get('w')!, [[0.9, -0.9]], 1e-6, 'w');
  assert.equal(opt.getState('w')!.step, 1);
  opt.dispose();
  params.get('w')!.dispose();
});

test('AdamW works on float32 parameters (state in float32)', () => {
  const w = torch.keep(torch.ones([3], { requiresGrad: true }));
  const opt = new AdamW([['w', w]], { lr: 0.5, weightDecay: 0 });
  const g = torch.tensor([1, -2, 0.5]);
  w.grad = g;
  g.dispose();
  opt.step();
  assert.equal(opt.getState('w')!.tensors.get('exp_avg')!.dtype, 'float32');
  assertClose(w, [0.5, 1.5, 0.5], 1e-6, 'w');
  opt.dispose();
  w.dispose();
});

test('AdamW rejects bad input clearly', () => {
  const w = torch.keep(t64([1], true));
  assert.throws(() => new AdamW([['w', w]], { betas: [1, 0.9] }), /beta1/);
  // torch 1.13 refuses each beta outside [0, 1): 'Invalid beta parameter at index 1: 1.0'
  assert.throws(() => new AdamW([['w', w]], { betas: [0.9, 1] }), /invalid beta2 1/);
  assert.throws(() => new AdamW([['w', w]], { betas: [0.9, -0.1] }), /invalid beta2 -0\.1/);
  assert.throws(() => new AdamW([['w', w]], { betas: [-0.1, 0.9] }), /invalid beta1 -0\.1/);
  new AdamW([['w', w]], { betas: [0, 0.99999] }).dispose();
  assert.throws(() => new AdamW([['w', w]], { lr: -1 }), /learning rate/);
  assert.throws(() => new AdamW([['w', w]], { lr: NaN }), /invalid learning rate NaN/);
  assert.throws(() => new AdamW([{ params: [['w', w]], lr: null as unknown as number }]), /invalid learning rate null/);
  assert.throws(() => new AdamW([{ params: [['w', w]], eps: null }]), /invalid epsilon null/);
  assert.throws(() => new AdamW([{ params: [['w', w]], lrScale: -0.5 }]), /invalid lrScale -0\.5/);
  assert.throws(() => new AdamW([['w', w]], { betas: [null as unknown as number, 0.9] }), /invalid beta1 null/);
  assert.throws(() => new AdamW([]), /empty parameter list/);
  // a module itself failed with 'spec.params is not iterable'
  assert.throws(() => new AdamW(new Linear(2, 2) as unknown as ParamsInput), {
    name: 'TypeError',
    message: 'AdamW: pass [name, tensor] pairs such as module.namedParameters(), not a Linear',
  });
  assert.throws(() => new AdamW([['w', 5 as unknown as torch.Tensor]]), /parameters must be \[name, tensor\] pairs/);
  assert.throws(() => new AdamW([{ params: [['w', w]] }, { params: [['w', w]] }]), /'w' appears in more than one place/);
  // torch 1.13: 'some parameters appear in more than one parameter group'; one tensor under two names would move twice a step
  assert.throws(
    () =>
      new AdamW([
        ['w', w],
        ['v', w],
      ]),
    /'v' is the same tensor as 'w'/,
  );
  assert.throws(() => new AdamW([{ params: [['w', w]] }, { params: [['v', w]] }]), /'v' is the same tensor as 'w'/);
  w.dispose();
});

test('zeroGrad sets gradients to null, or zeroes them in place', () => {
  const w = torch.keep(t64([1, 2], true));
  const opt = new AdamW([['w', w]]);
  setGrad(w, [3, 4]);
  opt.zeroGrad(false);
  const g = w.grad!;
  assert.deepEqual(Array.from(g.toFloat64Array()), [0, 0]);
  g.dispose();
  opt.zeroGrad();
  assert.equal(w.grad, null);
  opt.step(); // no gradient: nothing happens, no state
  assert.equal(opt.getState('w'), undefined);
  opt.dispose();
  w.dispose();
});

test("AdamW: a group's betas are its own: changing them in place changes neither ADAMW_DEFAULTS nor another group or optimiser", () => {
  const a = torch.keep(t64([1, 2], true));
  const b = torch.keep(t64([3, 4], true));
  const opt = new AdamW([{ params: [['a', a]] }, { params: [['b', b]] }]);
  const other = new AdamW([['a', a]]);
  try {
    opt.paramGroups[0].betas[1] = 0.95;
    assert.deepEqual(ADAMW_DEFAULTS.betas, [0.9, 0.999]);
    assert.deepEqual(opt.paramGroups[1].betas, [0.9, 0.999]);
    assert.deepEqual(other.paramGroups[0].betas, [0.9, 0.999]);
  } finally {
    ADAMW_DEFAULTS.betas[1] = 0.999; // (undo the leak, if any, for the tests after this one)
    opt.dispose();
    other.dispose();
    a.dispose();
    b.dispose();
  }
});
