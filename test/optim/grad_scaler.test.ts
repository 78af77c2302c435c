import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { GradScaler, SGD, clipGradNorm } from '../../src/optim';
import { Nested, TOL, assertClose, disposeAll, golden, makeParams, setGrad, t64 } from './helpers';

interface Rec {
  scale_before: number;
  clip: boolean;
  found_inf: boolean;
  scale_after: number;
  growth_tracker: number;
  params: Record<string, Nested>;
}
const G = golden<{
  defaults: { scale: number; growth_factor: number; backoff_factor: number; growth_interval: number; _growth_tracker: number };
  options: { init_scale: number; growth_factor: number; backoff_factor: number; growth_interval: number };
  lr: number;
  momentum: number;
  initial: Record<string, Nested>;
  coefs: Array<Record<string, Nested>>;
  inject: Record<string, { param: string; index: number; value: string }>;
  records: Rec[];
  final_state: { scale: number; growth_tracker?: number; _growth_tracker: number };
}>('grad_scaler.json');

test("GradScaler defaults are PyTorch's", () => {
  const s = new GradScaler();
  assert.deepEqual(s.stateDict(), {
    scale: G.defaults.scale,
    growthFactor: G.defaults.growth_factor,
    backoffFactor: G.defaults.backoff_factor,
    growthInterval: G.defaults.growth_interval,
    growthTracker: G.defaults._growth_tracker,
  });
});

function coefTensor(k: number, name: string): torch.Tensor {
  const t = t64(G.coefs[k][name]);
  const inj = G.inject[String(k)];
  if (!inj || inj.param !== name) return t;
  const data = t.toFloat64Array();
  data[inj.index] = Number(inj.value.replace('inf', 'Infinity').replace('nan', 'NaN'));
  const shape = t.shape;
  t.dispose();
  return torch.tensor(data, { shape });
}

test('GradScaler reproduces torch.cuda.amp.GradScaler with SGD, clipping and injected inf/nan', () => {
  const o = G.options;
  const params = makeParams(G.initial);
  const opt = new SGD(params, { lr: G.lr, momentum: G.momentum });
  const scaler = new GradScaler({ initScale: o.init_scale, growthFactor: o.growth_factor, backoffFactor: o.backoff_factor, growthInterval: o.growth_interval });
  G.records.forEach((r, k) => {
    opt.zeroGrad();
    assert.equal(scaler.getScale(), r.scale_before, `scale before step ${k}`);
    let stepped = false;
    torch.scope(() => {
      const terms = [...params].map(([n, p]) => p.mul(coefTensor(k, n)).sum());
      const loss = terms.reduce((a, b) => a.add(b));
      scaler.scale(loss).backward();
      if (r.clip) {
        scaler.unscale_(opt);
        clipGradNorm(opt.parameters(), 1.0);
      }
      stepped = scaler.step(opt);
      scaler.update();
    });
    assert.equal(stepped, !r.found_inf, `stepped at ${k}`);
    assert.equal(scaler.getScale(), r.scale_after, `scale after step ${k}`);
    assert.equal(scaler.getGrowthTracker(), r.growth_tracker, `growth tracker after step ${k}`);
    for (const [n, p] of params) assertClose(p, r.params[n], TOL, `step ${k} ${n}`);
  });
  assert.equal(scaler.stateDict().scale, G.final_state.scale);
  assert.equal(scaler.stateDict().growthTracker, G.final_state._growth_tracker);
  opt.dispose();
  scaler.dispose();
  disposeAll(params.values());
});

test('GradScaler: misuse errors, disabled mode, state dict round trip', () => {
  const w = torch.keep(t64([1, 2], true));
  const opt = new SGD([['w', w]], { lr: 0.1 });
  const s = new GradScaler({ initScale: 8, growthInterval: 1 });
  setGrad(w, [8, 16]);
  s.unscale_(opt);
  assert.throws(() => s.unscale_(opt), /already been called/);
  assert.equal(s.step(opt), true);
  assertClose(w, [0.9, 1.8], 1e-12, 'w after unscaled step');
  assert.throws(() => s.step(opt), /step\(\) has already been called/);
  s.update();
  assert.equal(s.getScale(), 16); // growthInterval 1: grows after each clean step
  assert.throws(() => s.update(), /no inf checks/);
  s.update(3); // explicit new scale
  assert.equal(s.getScale(), 3);

  const t = new GradScaler({ growthInterval: 1 });
  t.loadStateDict(JSON.parse(JSON.stringify(s.stateDict())));
  assert.deepEqual(t.stateDict(), s.stateDict());
  assert.throws(() => new GradScaler().loadStateDict(s.stateDict()), /growthInterval 1 \(state dict\) vs 2000/);

  const off = new GradScaler({ enabled: false });
  const loss = t64(2);
  assert.equal(off.scale(loss), loss);
  assert.equal(off.getScale(), 1);
  setGrad(w, [1, 1]);
  assert.equal(off.step(opt), true);
  off.update();
  loss.dispose();

  // float16 gradients are refused (PyTorch: "Attempting to unscale FP16 gradients.")
  const h = torch.keep(torch.ones([2], { dtype: 'float16', requiresGrad: true }));
  const hg = torch.ones([2], { dtype: 'float16' });
  h.grad = hg;
  hg.dispose();
  const hopt = new SGD([['h', h]], { lr: 0.1 });
  assert.throws(() => new GradScaler().step(hopt), /FP16 gradients/);
  hopt.dispose();
  h.dispose();
  opt.dispose();
  w.dispose();
});

test('GradScaler.step refuses an optimiser none of whose parameters has a gradient, as PyTorch ("No inf checks were recorded for this optimizer")', () => {
  // It stepped nothing and update() counted the iteration as a clean one: a forgotten backward() (or the
  // wrong optimiser) went unnoticed, and growthInterval such iterations doubled the scale.
  const w = torch.keep(t64([1, 2], true));
  const opt = new SGD([['w', w]], { lr: 0.1 });
  const s = new GradScaler({ initScale: 8, growthInterval: 1 });
  assert.throws(() => s.step(opt), /GradScaler: no inf checks were recorded for this optimizer/);
  assert.throws(() => s.update(), /no inf checks were recorded prior to update/);
  assert.equal(s.getScale(), 8);
  assert.equal(s.getGrowthTracker(), 0);
  // unscale_ first (to clip): the same at step()
  s.unscale_(opt);
  assert.throws(() => s.step(opt), /no inf checks were recorded for this optimizer/);
  s.update(8); // (an explicit scale needs no check, as PyTorch's update(new_scale))
  // with a gradient it steps as before
  setGrad(w, [8, 16]);
  assert.equal(s.step(opt), true);
  s.update();
  assertClose(w, [0.9, 1.8], 1e-12, 'w after the step');
  assert.equal(s.getScale(), 16);
  opt.dispose();
  s.dispose();
  w.dispose();
});

test('GradScaler.loadStateDict refuses a growth tracker at or past growthInterval (the scale never grew again after it)', () => {
  const s = new GradScaler({ initScale: 8, growthInterval: 3 });
  const state = { ...s.stateDict(), growthTracker: 5 };
  assert.throws(() => s.loadStateDict(state), /GradScaler\.loadStateDict: invalid growthTracker 5 \(must be an integer in 0\.\.2\)/);
  assert.throws(() => s.loadStateDict({ ...state, growthTracker: 3 }), /invalid growthTracker 3/);
  s.loadStateDict({ ...state, growthTracker: 2, scale: 4 });
  assert.equal(s.getGrowthTracker(), 2);
  assert.equal(s.getScale(), 4);
});

test('GradScaler scales a float16 loss in float32', () => {
  const s = new GradScaler();
  const loss = torch.full([], 2, { dtype: 'float16' });
  const scaled = s.scale(loss);
  assert.equal(scaled.dtype, 'float32');
  assert.equal(scaled.item(), 131072);
  loss.dispose();
  scaled.dispose();
});
