import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { BatchNorm1d, Conv2d, DropPath, LayerNorm, Linear, Mlp, Module, ModuleList, Sequential, StateDictError, GELU, init } from '../../src/nn';

class Block extends Module {
  readonly norm = this.module('norm', new LayerNorm(4, 1e-6));
  readonly mlp = this.module('mlp', new Mlp(4, 8));
  forward(x: torch.Tensor): torch.Tensor {
    return torch.scope(() => x.add(this.mlp.forward(this.norm.forward(x))));
  }
}

class Net extends Module {
  readonly token = this.param('cls_token', torch.zeros([1, 1, 4]));
  readonly blocks = this.module('blocks', new ModuleList([new Block(), new Block()]));
  readonly bn = this.module('bn', new BatchNorm1d(4, { affine: false }));
}

test('named parameters and state dict use PyTorch dotted names', () => {
  const net = new Net();
  const names = [...net.namedParameters()].map(([n]) => n);
  assert.deepEqual(names.slice(0, 7), [
    'cls_token',
    'blocks.0.norm.weight',
    'blocks.0.norm.bias',
    'blocks.0.mlp.fc1.weight',
    'blocks.0.mlp.fc1.bias',
    'blocks.0.mlp.fc2.weight',
    'blocks.0.mlp.fc2.bias',
  ]);
  const sd = net.stateDict();
  assert.ok(sd.has('bn.running_mean') && sd.has('bn.running_var') && sd.has('bn.num_batches_tracked'));
  assert.equal(sd.has('bn.weight'), false);
  assert.equal(net.numParameters(), 4 + 2 * (8 + 4 * 8 + 8 + 8 * 4 + 4));
  net.dispose();
});

test('loadStateDict copies values and reports every mismatch before copying', () => {
  const a = new Net();
  const b = new Net();
  b.loadStateDict(a.stateDict());
  for (const [k, t] of a.stateDict()) {
    assert.deepEqual(Array.from(b.stateDict().get(k)!.toFloat64Array()), Array.from(t.toFloat64Array()), k);
  }
  const bad = new Map(a.stateDict());
  bad.delete('cls_token');
  bad.set('extra.weight', torch.zeros([1]));
  bad.set('blocks.0.norm.weight', torch.zeros([5]));
  const before = b.blocks.at(1).norm.weight!.toFloat32Array();
  assert.throws(
    () => b.loadStateDict(bad),
    (e: unknown) => {
      assert.ok(e instanceof StateDictError);
      assert.deepEqual(e.missing, ['cls_token']);
      assert.deepEqual(e.unexpected, ['extra.weight']);
      assert.equal(e.shapeMismatch[0].name, 'blocks.0.norm.weight');
      assert.match(e.message, /missing: +cls_token/);
      assert.match(e.message, /expected \[4\], got \[5\]/);
      return true;
    },
  );
  assert.deepEqual(b.blocks.at(1).norm.weight!.toFloat32Array(), before);
  bad.delete('blocks.0.norm.weight');
  const r = b.loadStateDict(bad, { strict: false });
  assert.deepEqual(r.missing, ['cls_token', 'blocks.0.norm.weight']);
  a.dispose();
  b.dispose();
});

test('loadStateDict casts other float dtypes but refuses integer values for a floating-point tensor', () => {
  const a = new Net();
  const b = new Net();
  const sd = new Map([...a.stateDict()].map(([k, t]) => [k, t.to({ dtype: 'float64' })]));
  b.loadStateDict(sd);
  assert.deepEqual(b.stateDict().get('cls_token')!.toFloat32Array(), a.stateDict().get('cls_token')!.toFloat32Array());
  const before = b.blocks.at(0).norm.weight!.toFloat32Array();
  const int = sd.get('blocks.0.norm.weight')!;
  sd.set('blocks.0.norm.weight', int.to({ dtype: 'int32' }));
  assert.throws(
    () => b.loadStateDict(sd),
    (e: unknown) => {
      assert.ok(e instanceof StateDictError);
      assert.deepEqual(e.dtypeMismatch, [{ name: 'blocks.0.norm.weight', expected: 'float32', got: 'int32' }]);
      assert.match(e.message, /dtype: +blocks\.0\.norm\.weight: expected floating-point values \(float32\), got int32/);
      return true;
    },
  );
  assert.deepEqual(b.blocks.at(0).norm.weight!.toFloat32Array(), before);
  for (const t of sd.values()) t.dispose();
  int.dispose();
  a.dispose();
  b.dispose();
});

test('train/eval reach every sub-module; to() casts in place keeping identity', () => {
  const net = new Net();
  net.eval();
  for (const [, m] of net.namedModules()) assert.equal(m.training, false);
  net.train();
  assert.equal(net.blocks.at(1).mlp.fc2.training, true);
  const w = net.blocks.at(0).mlp.fc1.weight;
  net.to({ dtype: 'float64' });
  assert.equal(w.dtype, 'float64');
  assert.equal(w.requiresGrad, true);
  assert.equal(net.bn.numBatchesTracked.dtype, 'int64');
  const y = torch.scope(() =>
    net.blocks
      .at(0)
      .forward(torch.randn([2, 3, 4], { dtype: 'float64' }))
      .sum(),
  );
  y.backward();
  assert.equal(w.grad!.dtype, 'float64');
  net.zeroGrad();
  assert.equal(w.grad, null);
  net.dispose();
});

test('Linear and LayerNorm match their formulas', () => {
  const lin = new Linear(3, 2);
  const x = torch.randn([5, 3]);
  const y = lin.forward(x);
  const ref = x.matmul(lin.weight.T).add(lin.bias!);
  assert.ok(y.sub(ref).abs().max().item() < 1e-6);
  const ln = new LayerNorm(3, 1e-6);
  const z = ln.forward(x);
  const mu = x.mean(-1, true);
  const v = x.var(-1, false, true);
  const zr = x.sub(mu).div(v.add(1e-6).sqrt());
  assert.ok(z.sub(zr).abs().max().item() < 1e-5);
});

test('Conv2d shapes and default init bounds', () => {
  const c = new Conv2d(3, 8, 4, { stride: 4 });
  const y = c.forward(torch.randn([2, 3, 16, 16]));
  assert.deepEqual(y.shape, [2, 8, 4, 4]);
  const bound = 1 / Math.sqrt(3 * 16);
  assert.ok(c.weight.abs().max().item() <= bound + 1e-7);
  c.dispose();
});

test('BatchNorm1d tracks running statistics in training and uses them in eval', () => {
  const bn = new BatchNorm1d(2, { affine: false, momentum: 0.5 });
  const x = torch.tensor([
    [1, 10],
    [3, 30],
  ]);
  bn.forward(x);
  assert.deepEqual(Array.from(bn.runningMean.toFloat32Array()), [1, 10]);
  assert.equal(bn.numBatchesTracked.item(), 1);
  bn.eval();
  const y = bn.forward(x);
  const rv = bn.runningVar.toFloat32Array();
  assert.ok(Math.abs(y.toFloat32Array()[0] - (1 - 1) / Math.sqrt(rv[0] + 1e-5)) < 1e-5);
});

test('DropPath drops whole samples and rescales the kept ones; identity in eval', () => {
  torch.manualSeed(0);
  const dp = new DropPath(0.5);
  const x = torch.ones([64, 3, 2]);
  const y = dp.forward(x);
  const perSample = y.sum([1, 2]).toFloat32Array();
  for (const v of perSample) assert.ok(v === 0 || Math.abs(v - 12) < 1e-5);
  const kept = Array.from(perSample).filter((v) => v > 0).length;
  assert.ok(kept > 16 && kept < 48);
  dp.eval();
  assert.equal(dp.forward(x), x);
});

test('Sequential chains modules; init helpers respect their bounds', () => {
  const s = new Sequential(new Linear(4, 6), new GELU('tanh'), new Linear(6, 2));
  assert.deepEqual(s.forward(torch.randn([3, 4])).shape, [3, 2]);
  assert.deepEqual(
    [...s.namedParameters()].map(([n]) => n),
    ['0.weight', '0.bias', '2.weight', '2.bias'],
  );
  const t = torch.empty([200, 300]);
  init.xavierUniform_(t);
  const a = Math.sqrt(6 / 500);
  assert.ok(t.abs().max().item() <= a && t.abs().max().item() > 0.9 * a);
  init.truncNormal_(t, 0.02, 0, -0.04, 0.04);
  assert.ok(t.abs().max().item() <= 0.04);
  assert.ok(Math.abs(t.std().item() - 0.0176) < 0.002);
});

test('stateDict lists module by module (own parameters, own buffers, then children), as PyTorch; parameters() order is unchanged', () => {
  const s = new Sequential(new BatchNorm1d(2), new Linear(2, 2));
  // torch: list(nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 2)).state_dict())
  assert.deepEqual([...s.stateDict().keys()], ['0.weight', '0.bias', '0.running_mean', '0.running_var', '0.num_batches_tracked', '1.weight', '1.bias']);
  assert.deepEqual(
    [...s.namedParameters()].map(([n]) => n),
    ['0.weight', '0.bias', '1.weight', '1.bias'],
  );
  const net = new Net();
  const keys = [...net.stateDict().keys()];
  assert.deepEqual(keys.slice(0, 2), ['cls_token', 'blocks.0.norm.weight']);
  assert.deepEqual(keys.slice(-3), ['bn.running_mean', 'bn.running_var', 'bn.num_batches_tracked']);
  s.dispose();
  net.dispose();
});

test('Linear and Conv2d build with zero input features, and Conv2d checks groups, as PyTorch', () => {
  const lin = new Linear(0, 3);
  assert.deepEqual(lin.weight.shape, [3, 0]);
  assert.deepEqual(Array.from(lin.bias!.toFloat32Array()), [0, 0, 0]); // bound 0 when fan_in is 0
  assert.deepEqual(lin.forward(torch.zeros([2, 0])).shape, [2, 3]);
  assert.deepEqual(new Linear(3, 0).weight.shape, [0, 3]);
  assert.deepEqual(new Conv2d(0, 4, 3).weight.shape, [4, 0, 3, 3]);
  assert.throws(() => new Conv2d(3, 4, 3, { groups: 2 }), /in_channels must be divisible by groups/);
  assert.throws(() => new Conv2d(4, 3, 3, { groups: 2 }), /out_channels must be divisible by groups/);
  assert.throws(() => new Conv2d(4, 4, 3, { groups: 0 }), /groups must be a positive integer/);
  const g = new Conv2d(4, 6, 3, { groups: 2 });
  assert.deepEqual(g.weight.shape, [6, 2, 3, 3]);
  assert.deepEqual(g.forward(torch.zeros([1, 4, 5, 5])).shape, [1, 6, 3, 3]);
});
