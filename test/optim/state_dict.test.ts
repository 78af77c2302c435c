import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { AdamW, BaseHyper, LARS, Optimizer, OptimizerStateDict, ParamGroupSpec, SGD } from '../../src/optim';
import { GoldenCase, TOL, disposeAll, golden, groupSpecs, makeParams, runSteps, t64 } from './helpers';

type Make = (groups: ParamGroupSpec[]) => Optimizer<BaseHyper>;
const CASES: Array<[string, GoldenCase, Make]> = [
  ['AdamW', golden('adamw.json').cases.wd_two_groups, (g) => new AdamW(g)],
  ['SGD', golden('sgd.json').cases.nesterov_wd, (g) => new SGD(g)],
  ['LARS', golden('lars.json').cases.two_groups, (g) => new LARS(g)],
];

for (const [label, c, make] of CASES) {
  test(`${label}: a state dict restored into a new optimiser continues identically`, () => {
    const paramsA = makeParams(c.initial);
    const a = make(groupSpecs(c, paramsA));
    runSteps(c, paramsA, a, 0, 3, TOL, `${label} A`);
    const sd = a.stateDict({ clone: true });
    const meta = JSON.parse(JSON.stringify(sd.meta)); // as if saved to JSON
    // A fresh model with the trained weights and a fresh optimiser with other hyper-parameters.
    const paramsB = new Map([...paramsA].map(([n, p]) => [n, torch.keep(torch.noGrad(() => p.detach().clone()).requiresGrad_())]));
    const b = make(groupSpecs(c, paramsB));
    b.paramGroups[0].weightDecay = 0.123;
    b.loadStateDict({ tensors: sd.tensors, meta });
    assert.deepEqual(
      b.paramGroups.map(({ params: _p, ...h }) => h),
      a.paramGroups.map(({ params: _p, ...h }) => h),
    );
    // the optimiser copied them: a change to the dict does not reach its state
    const [key, first] = [...sd.tensors][0];
    const [stateKey, ...name] = key.split('.');
    const loaded = Array.from(b.getState(name.join('.'))!.tensors.get(stateKey)!.toFloat64Array());
    torch.noGrad(() => first.fill_(7));
    assert.deepEqual(Array.from(b.getState(name.join('.'))!.tensors.get(stateKey)!.toFloat64Array()), loaded, `${key} is a copy`);
    disposeAll(sd.tensors.values());
    runSteps(c, paramsB, b, 3, c.steps.length, TOL, `${label} B`);
    runSteps(c, paramsA, a, 3, c.steps.length, TOL, `${label} A`);
    a.dispose();
    b.dispose();
    disposeAll([...paramsA.values(), ...paramsB.values()]);
  });
}

test('state dict layout: tensors keyed "<state>.<param name>", JSON meta with steps and hyper-parameters', () => {
  const c = golden('adamw.json').cases.wd_two_groups as GoldenCase;
  const params = makeParams(c.initial);
  const opt = new AdamW(groupSpecs(c, params));
  runSteps(c, params, opt, 0, 2, TOL, 'adamw');
  const sd = opt.stateDict();
  // 'cls_token' has no gradient at step 0 and 'blocks.0.attn.qkv.bias' none at step 1
  assert.deepEqual(sd.meta.state, {
    'blocks.0.attn.qkv.weight': { step: 2 },
    'head.weight': { step: 2 },
    'blocks.0.attn.qkv.bias': { step: 1 },
    cls_token: { step: 1 },
  });
  assert.deepEqual([...sd.tensors.keys()].sort(), [
    'exp_avg.blocks.0.attn.qkv.bias',
    'exp_avg.blocks.0.attn.qkv.weight',
    'exp_avg.cls_token',
    'exp_avg.head.weight',
    'exp_avg_sq.blocks.0.attn.qkv.bias',
    'exp_avg_sq.blocks.0.attn.qkv.weight',
    'exp_avg_sq.cls_token',
    'exp_avg_sq.head.weight',
  ]);
  assert.equal(sd.meta.type, 'AdamW');
  assert.deepEqual(sd.meta.groups[1], {
    lr: c.steps[1].lrs[1],
    betas: [0.9, 0.95],
    eps: 1e-8,
    weightDecay: 0,
    lrScale: 1,
    params: ['blocks.0.attn.qkv.bias', 'cls_token'],
  });
  // Without clone the tensors share storage with the live state; disposing them leaves the state intact.
  const live = opt.getState('head.weight')!.tensors.get('exp_avg')!;
  assert.deepEqual(Array.from(sd.tensors.get('exp_avg.head.weight')!.toFloat64Array()), Array.from(live.toFloat64Array()));
  disposeAll(sd.tensors.values());
  assert.ok(!live.isDisposed);
  opt.dispose();
  assert.ok(live.isDisposed, 'dispose() frees the state');
  disposeAll(params.values());
});

test('stateDict({ clone: true }) is a snapshot: later steps do not change it, and changing it does not change the live state', () => {
  const c = golden('adamw.json').cases.wd_two_groups as GoldenCase;
  const params = makeParams(c.initial);
  const opt = new AdamW(groupSpecs(c, params));
  runSteps(c, params, opt, 0, 2, TOL, 'adamw');
  const snap = opt.stateDict({ clone: true });
  const key = 'exp_avg.head.weight';
  const live = opt.getState('head.weight')!.tensors.get('exp_avg')!;
  const at2 = Array.from(live.toFloat64Array());
  assert.deepEqual(Array.from(snap.tensors.get(key)!.toFloat64Array()), at2);
  torch.noGrad(() => snap.tensors.get(key)!.fill_(7));
  assert.deepEqual(Array.from(live.toFloat64Array()), at2, 'the live state is untouched by a change to the snapshot');
  runSteps(c, params, opt, 2, 3, TOL, 'adamw');
  assert.notDeepEqual(Array.from(live.toFloat64Array()), at2, 'the step moved the live state');
  assert.ok(
    Array.from(snap.tensors.get(key)!.toFloat64Array()).every((v) => v === 7),
    'the step left the snapshot alone',
  );
  disposeAll(snap.tensors.values());
  opt.dispose();
  disposeAll(params.values());
});

test('loadStateDict rejects mismatches clearly and changes nothing', () => {
  const w = torch.keep(
    t64(
      [
        [1, 2],
        [3, 4],
      ],
      true,
    ),
  );
  const b = torch.keep(t64([1, 2], true));
  const opt = new AdamW([
    ['w', w],
    ['b', b],
  ]);
  const g = t64([
    [1, 1],
    [1, 1],
  ]);
  w.grad = g;
  g.dispose();
  const gb = t64([1, 1]);
  b.grad = gb;
  gb.dispose();
  opt.step();
  const good = opt.stateDict({ clone: true });
  const before = Array.from(opt.getState('w')!.tensors.get('exp_avg')!.toFloat64Array());
  const with_ = (f: (sd: OptimizerStateDict) => void): OptimizerStateDict => {
    const sd: OptimizerStateDict = { tensors: new Map(good.tensors), meta: JSON.parse(JSON.stringify(good.meta)) };
    f(sd);
    return sd;
  };
  const renamed = with_((sd) => {
    sd.meta.groups[0].params = ['w', 'bias'];
  });
  assert.throws(() => opt.loadStateDict(renamed), /parameter group 0 differs: missing in the state dict: b; not in the optimiser: bias/);
  const bad = torch.zeros([2, 3], { dtype: 'float64' });
  assert.throws(() => opt.loadStateDict(with_((sd) => sd.tensors.set('exp_avg.w', bad))), /tensor 'exp_avg.w' has shape \[2,3\], parameter has \[2,2\]/);
  assert.throws(() => opt.loadStateDict(with_((sd) => sd.tensors.delete('exp_avg_sq.b'))), /missing tensor 'exp_avg_sq.b'/);
  assert.throws(() => opt.loadStateDict(with_((sd) => sd.tensors.set('momentum_buffer.w', bad))), /unexpected tensor 'momentum_buffer.w'/);
  assert.throws(
    () =>
      opt.loadStateDict(
        with_((sd) => {
          sd.meta.state.nope = { step: 1 };
        }),
      ),
    /state for unknown parameter 'nope'/,
  );
  assert.throws(
    () =>
      opt.loadStateDict(
        with_((sd) => {
          sd.meta.groups.push({ ...sd.meta.groups[0], params: ['c'] });
        }),
      ),
    /the state dict has 2 parameter groups, the optimiser has 1/,
  );
  assert.throws(
    () =>
      opt.loadStateDict(
        with_((sd) => {
          sd.meta.state.w.step = -1;
        }),
      ),
    /'w': invalid step -1/,
  );
  assert.throws(
    () =>
      opt.loadStateDict(
        with_((sd) => {
          sd.meta.type = 'SGD';
        }),
      ),
    /for SGD, not AdamW/,
  );
  // null passed `!(lr >= 0)` (null >= 0 is true) and step() then failed in the kernel ('expected a number')
  const badHypers: Array<[string, number | null | Array<number | null>]> = [
    ['lr', null],
    ['weightDecay', null],
    ['eps', null],
    ['lr', Infinity],
    ['betas', [null, 0.999]],
  ];
  for (const [key, value] of badHypers) {
    assert.throws(() => opt.loadStateDict(with_((sd) => (sd.meta.groups[0][key] = value))), RangeError, `${key}: ${JSON.stringify(value)}`);
  }
  assert.throws(
    () =>
      new SGD([
        ['w', w],
        ['b', b],
      ]).loadStateDict(good),
    /for AdamW, not SGD/,
  );
  assert.deepEqual(Array.from(opt.getState('w')!.tensors.get('exp_avg')!.toFloat64Array()), before);
  assert.equal(opt.getState('w')!.step, 1);
  bad.dispose();
  disposeAll(good.tensors.values());
  opt.dispose();
  w.dispose();
  b.dispose();
});

test('loadStateDict refuses a damaged meta with a message that says what it lacks, changing nothing (it threw bare TypeErrors)', () => {
  const w = torch.keep(t64([1, 2], true));
  const opt = new AdamW([['w', w]]);
  const g = t64([1, 1]);
  w.grad = g;
  g.dispose();
  opt.step();
  const good = opt.stateDict({ clone: true });
  const before = Array.from(opt.getState('w')!.tensors.get('exp_avg')!.toFloat64Array());
  const broken = (f: (meta: Record<string, unknown>) => void, tensors: unknown = good.tensors): OptimizerStateDict => {
    const meta = JSON.parse(JSON.stringify(good.meta)) as Record<string, unknown>;
    f(meta);
    return { tensors, meta } as unknown as OptimizerStateDict;
  };
  const cases: Array<[string, OptimizerStateDict, RegExp]> = [
    ['no meta.state', broken((m) => delete m.state), /AdamW\.loadStateDict: its meta\.state is not an object of per-parameter steps/],
    ['meta.state an array', broken((m) => (m.state = [])), /its meta\.state is not an object/],
    ['a null state entry', broken((m) => ((m.state as Record<string, unknown>).w = null)), /AdamW\.loadStateDict: 'w': its state is null, not \{ step \}/],
    ['meta.groups not a list', broken((m) => (m.groups = {})), /AdamW\.loadStateDict: its meta\.groups is not a list of parameter groups/],
    ['a null group', broken((m) => (m.groups = [null])), /its meta\.groups is not a list of parameter groups/],
    ['betas a number', broken((m) => ((m.groups as Array<Record<string, unknown>>)[0].betas = 0.9)), /AdamW: betas must be a pair \[beta1, beta2\], got 0\.9/],
    ['no tensors', broken(() => {}, null), /AdamW\.loadStateDict: its tensors are not a Map of state tensors/],
  ];
  for (const [label, sd, message] of cases) {
    assert.throws(
      () => opt.loadStateDict(sd),
      (e: unknown) => !(e instanceof TypeError) && message.test((e as Error).message),
      label,
    );
  }
  assert.deepEqual(Array.from(opt.getState('w')!.tensors.get('exp_avg')!.toFloat64Array()), before);
  disposeAll(good.tensors.values());
  opt.dispose();
  w.dispose();
});

test('loadStateDict replaces the whole state: a parameter the dict has no state for starts again from zero', () => {
  const w = torch.keep(t64([1, 2], true));
  const opt = new AdamW([['w', w]]);
  const fresh = opt.stateDict(); // taken before any step: no state
  const g = t64([1, 1]);
  w.grad = g;
  g.dispose();
  opt.step();
  assert.equal(opt.getState('w')!.step, 1);
  opt.loadStateDict(fresh);
  assert.equal(opt.getState('w'), undefined);
  opt.dispose();
  w.dispose();
});

test('stateBytes is what the state tensors take once every parameter has had an update', () => {
  const w = torch.keep(t64([[1, 2, 3]], true));
  const b = torch.keep(torch.ones([2], { dtype: 'float32', requiresGrad: true }));
  const opt = new AdamW([
    ['w', w],
    ['b', b],
  ]);
  // exp_avg and exp_avg_sq: 2 × (3 float64 + 2 float32)
  assert.equal(opt.stateBytes(), 2 * (3 * 8 + 2 * 4));
  opt.dispose();
  disposeAll([w, b]);
});
