import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { SGD } from '../../src/optim';
import { native } from '../../src/torch/native';
import { GoldenCase, TOL, assertClose, golden, runCase, setGrad, t64 } from './helpers';

const G = golden<{ cases: Record<string, GoldenCase> }>('sgd.json');

for (const [name, c] of Object.entries(G.cases)) {
  test(`SGD matches torch.optim.SGD: ${name}`, () => {
    runCase(c, (groups) => new SGD(groups), TOL, `sgd/${name}`);
  });
}

test('SGD: no momentum keeps no state tensors; Nesterov needs momentum and no dampening', () => {
  const w = torch.keep(t64([1, 2], true));
  const opt = new SGD([['w', w]], { lr: 0.5 });
  setGrad(w, [1, 1]);
  opt.step();
  assertClose(w, [0.5, 1.5], 1e-12, 'w');
  assert.equal(opt.getState('w')!.tensors.size, 0);
  assert.equal(opt.stateDict().tensors.size, 0);
  assert.throws(() => new SGD([['w', w]], { nesterov: true }), /Nesterov/);
  assert.throws(() => new SGD([['w', w]], { nesterov: true, momentum: 0.9, dampening: 0.1 }), /Nesterov/);
  assert.throws(() => new SGD([{ params: [['w', w]], momentum: null }]), /invalid momentum null/);
  assert.throws(() => new SGD([{ params: [['w', w]], dampening: null }]), /invalid dampening null/);
  opt.dispose();
  w.dispose();
});

test('SGD: a momentum buffer starts as the first update direction even when momentum is switched on later', () => {
  const w = torch.keep(t64([0, 0], true));
  const opt = new SGD([['w', w]], { lr: 1 });
  setGrad(w, [1, 1]);
  opt.step(); // plain step: w = -1
  opt.paramGroups[0].momentum = 0.5;
  opt.paramGroups[0].dampening = 0.5;
  opt.step(); // buf = g (dampening ignored on the first buffered update), w = -2
  opt.step(); // buf = 0.5·1 + 0.5·1 = 1, w = -3
  assertClose(w, [-3, -3], 1e-12, 'w');
  opt.dispose();
  w.dispose();
});

test('SGD: a state dict taken after momentum is switched off loads back (the buffers it still holds go with it)', () => {
  const w = torch.keep(t64([0, 0], true));
  const opt = new SGD([['w', w]], { lr: 1, momentum: 0.5 });
  setGrad(w, [1, 1]);
  opt.step();
  opt.paramGroups[0].momentum = 0;
  opt.step();
  const sd = opt.stateDict({ clone: true });
  const w2 = torch.keep(t64([0, 0], true));
  const other = new SGD([['w', w2]], { lr: 1, momentum: 0.5 });
  try {
    other.loadStateDict(sd);
    assert.equal(other.paramGroups[0].momentum, 0);
    assert.equal(other.getState('w')!.step, 2);
    assertClose(other.getState('w')!.tensors.get('momentum_buffer')!, [1, 1], 1e-12, 'the kept buffer');
  } finally {
    for (const t of sd.tensors.values()) t.dispose();
    other.dispose();
    opt.dispose();
    w.dispose();
    w2.dispose();
  }
});

test('SGD: a state dict taken after momentum is switched on, before the next update, loads back and continues alike', () => {
  const make = () => {
    const w = torch.keep(t64([0, 0], true));
    return { w, opt: new SGD([['w', w]], { lr: 1 }) };
  };
  const a = make();
  setGrad(a.w, [1, 1]);
  a.opt.step(); // no momentum: no buffer
  a.opt.paramGroups[0].momentum = 0.5;
  const sd = a.opt.stateDict({ clone: true });
  const b = make();
  try {
    b.opt.loadStateDict(sd);
    torch.noGrad(() => b.w.copy_(a.w));
    for (const { w, opt } of [a, b]) {
      setGrad(w, [1, 1]);
      opt.step(); // the buffer starts as this update direction
      opt.step();
    }
    assertClose(b.w, Array.from(a.w.toFloat64Array()), 1e-12, 'w after the same steps');
  } finally {
    for (const t of sd.tensors.values()) t.dispose();
    for (const { w, opt } of [a, b]) {
      opt.dispose();
      w.dispose();
    }
  }
});

test('sgdStep refuses fewer grads than params, as adamwStep does (with momentum and no weight decay it read past the list: a segfault)', () => {
  torch.scope(() => {
    const p = [torch.zeros([3]), torch.zeros([3])];
    const bufs = [torch.zeros([3]), torch.zeros([3])];
    const g = [torch.ones([3])];
    const h = (ts: torch.Tensor[]) => ts.map((t) => t.h);
    assert.throws(() => native.sgdStep(h(p), h(g), h(bufs), 0.1, 0.9, 0, 0, false, true), /sgdStep: params and grads differ in length/);
    assert.throws(() => native.sgdStep(h(p), h(g), null, 0.1, 0, 0, 0, false, true), /sgdStep: params and grads differ in length/);
    // Momentum takes one buffer per parameter: none, or fewer, are refused before anything changes
    const g2 = [torch.ones([3]), torch.ones([3])];
    for (const first of [true, false]) {
      assert.throws(() => native.sgdStep(h(p), h(g2), h(bufs.slice(1)), 0.1, 0.9, 0, 0, false, first), {
        code: 'ERR_ARG',
        message: 'sgdStep: momentum needs one buffer per parameter',
      });
      assert.throws(() => native.sgdStep(h(p), h(g2), null, 0.1, 0.9, 0, 0, false, first), {
        code: 'ERR_ARG',
        message: 'sgdStep: momentum needs one buffer per parameter',
      });
    }
    assert.deepEqual(bufs[1].tolist(), [0, 0, 0]);
    // adamwStep too, before its weight decay touches a parameter
    const ones = [torch.ones([3]), torch.ones([3])];
    assert.throws(() => native.adamwStep(h(ones), h(g), h(bufs), h(bufs), 0.1, 0.9, 0.999, 1e-8, 0.5, 1), {
      code: 'ERR_ARG',
      message: 'adamwStep: params, grads and states differ in length',
    });
    assert.deepEqual(ones[0].tolist(), [1, 1, 1]);
    assert.deepEqual(p[0].tolist(), [0, 0, 0]);
  });
});
