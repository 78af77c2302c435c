import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import {
  BatchNorm1d,
  Conv2d,
  DropPath,
  Dropout,
  LayerNorm,
  Linear,
  Mlp,
  Module,
  ModuleList,
  Sequential,
  StateDictError,
  GELU,
  init,
  batchSlice,
  setBatchSlice,
  useDropPathGenerator,
  dropPathStream,
} from '../../src/nn';

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

test('strict loadStateDict refuses a dict with only unexpected keys, naming them, as PyTorch; strict: false reports them', () => {
  const a = new Net();
  const b = new Net();
  const extra = torch.zeros([1]);
  const sd = new Map([...a.stateDict(), ['head.weight', extra]]);
  const before = b.blocks.at(0).norm.bias!.toFloat32Array();
  assert.throws(
    () => b.loadStateDict(sd),
    (e: unknown) => {
      assert.ok(e instanceof StateDictError);
      assert.deepEqual(e.missing, []);
      assert.deepEqual(e.unexpected, ['head.weight']);
      assert.match(e.message, /unexpected: +head\.weight/);
      return true;
    },
  );
  assert.deepEqual(b.blocks.at(0).norm.bias!.toFloat32Array(), before, 'nothing copied');
  assert.deepEqual(b.loadStateDict(sd, { strict: false }), { missing: [], unexpected: ['head.weight'] });
  extra.dispose();
  a.dispose();
  b.dispose();
});

test('loadStateDict gives a 0-d tensor the value of a one-element 1-d one, as PyTorch; two elements are a shape mismatch', () => {
  class Scaled extends Module {
    readonly scale = this.param('logit_scale', torch.tensor(0));
  }
  const m = new Scaled();
  const one = torch.tensor([2.5]);
  m.loadStateDict({ logit_scale: one });
  assert.deepEqual(m.scale.shape, []);
  assert.equal(m.scale.item(), 2.5);
  const two = torch.tensor([1, 2]);
  assert.throws(
    () => m.loadStateDict({ logit_scale: two }),
    (e: unknown) => e instanceof StateDictError && /shape: +logit_scale: expected \[\], got \[2\]/.test(e.message),
  );
  assert.equal(m.scale.item(), 2.5);
  one.dispose();
  two.dispose();
  m.dispose();
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

test("train()/eval() call each child's own train(), as PyTorch's Module.train: a sub-module that overrides it (a frozen backbone kept in eval mode) is obeyed", () => {
  class FrozenBackbone extends Module {
    readonly norm = this.module('norm', new BatchNorm1d(2));
    readonly drop = this.module('drop', new Dropout(0.5));
    override train(_mode = true): this {
      return super.train(false); // always in eval mode: its BatchNorm statistics stay fixed
    }
  }
  class Model extends Module {
    readonly backbone = this.module('backbone', new FrozenBackbone());
    readonly head = this.module('head', new Linear(2, 2));
  }
  const m = new Model();
  m.train();
  assert.equal(m.training, true);
  assert.equal(m.head.training, true);
  assert.equal(m.backbone.training, false);
  assert.equal(m.backbone.norm.training, false, "the override's own children follow it");
  assert.equal(m.backbone.drop.training, false);
  m.eval();
  assert.equal(m.head.training, false);
  m.dispose();
});

test("to() casts the gradients a module holds with its parameters, as PyTorch's Module._apply: a float32 grad left on a float64 weight took the next backward's float64 gradient rounded to float32", () => {
  const lin = new Linear(3, 2);
  const x = torch.full([1, 3], 1 / 3);
  torch.scope(() => lin.forward(x).sum()).backward();
  lin.to({ dtype: 'float64' });
  const g = lin.weight.grad!;
  assert.equal(g.dtype, 'float64');
  assert.equal(lin.bias!.grad!.dtype, 'float64');
  g.dispose();
  const x64 = torch.full([1, 3], 1 / 3, { dtype: 'float64' });
  torch.scope(() => lin.forward(x64).sum()).backward();
  const after = lin.weight.grad!;
  assert.equal(after.dtype, 'float64');
  // the float32 1/3 cast up, plus the float64 1/3 (PyTorch: the same sum in float64)
  assert.equal(after.toFloat64Array()[0], Math.fround(1 / 3) + 1 / 3);
  after.dispose();
  lin.dispose();
});

test('loadStateDict refuses a non-dict or a value that is not a Tensor, and to() an integer dtype, with messages that say so', () => {
  const net = new Net();
  const w = net.blocks.at(0).mlp.fc1.weight;
  // were "Cannot convert undefined or null to object", "Cannot read properties of undefined (reading 'length')"
  assert.throws(() => net.loadStateDict(null as unknown as Map<string, torch.Tensor>), {
    name: 'TypeError',
    message: 'loadStateDict(Net): expected a Map or a record of tensors by name, got null',
  });
  const sd = new Map<string, unknown>(net.stateDict());
  sd.set('cls_token', [1, 2]);
  assert.throws(() => net.loadStateDict(sd as Map<string, torch.Tensor>), {
    name: 'TypeError',
    message: "loadStateDict(Net): 'cls_token' is an Array, not a Tensor",
  });
  // was libtorch's "setData: data set to a tensor that requires gradients must be floating point"
  assert.throws(
    () => net.to({ dtype: 'int64' }),
    /Net\.to: dtype must be a floating-point dtype \(integer dtypes are not allowed for parameters\), got 'int64'/,
  );
  assert.equal(w.dtype, 'float32');
  net.dispose();
});

test("strict loadStateDict does not pass over a name whose value is undefined (a record built from a Map's get of a misspelt key): it is no Tensor", () => {
  const lin = new Linear(3, 2);
  const before = lin.weight.toFloat32Array();
  const other = new Linear(3, 2);
  const given = { weight: undefined as unknown as torch.Tensor, bias: other.bias! };
  assert.throws(() => lin.loadStateDict(given), { name: 'TypeError', message: "loadStateDict(Linear): 'weight' is undefined, not a Tensor" });
  assert.deepEqual(lin.weight.toFloat32Array(), before);
  lin.dispose();
  other.dispose();
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
  assert.equal(bn.numBatchesTracked.item(), 1, 'a forward in eval counts no batch, as PyTorch');
});

test('BatchNorm1d in training refuses one value per channel, as PyTorch, before its running statistics become NaN', () => {
  const bn = new BatchNorm1d(3, { affine: false, eps: 1e-6 });
  // [1, C] and [1, C, 1]: the unbiased batch variance 0/0 made running_var NaN, and every later eval output NaN
  for (const x of [torch.tensor([[1, 2, 3]]), torch.tensor([[[1], [2], [3]]])]) {
    assert.throws(() => bn.forward(x), {
      name: 'RangeError',
      message: /BatchNorm1d: expected more than 1 value per channel when training, got input size \[1, 3(, 1)?\]/,
    });
    assert.throws(() => torch.F.batchNorm(x, null, null, { training: true }), /batchNorm: expected more than 1 value per channel when training/);
  }
  assert.deepEqual(Array.from(bn.runningVar.toFloat32Array()), [1, 1, 1]);
  assert.deepEqual(Array.from(bn.runningMean.toFloat32Array()), [0, 0, 0]);
  assert.equal(bn.numBatchesTracked.item(), 0);
  // two values per channel (a batch of 2, or 1 sample of length 2) train; one sample in eval is fine
  bn.forward(
    torch.tensor([
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
    ]),
  );
  bn.forward(
    torch.tensor([
      [1, 2, 3],
      [3, 4, 5],
    ]),
  );
  assert.equal(bn.numBatchesTracked.item(), 2);
  bn.eval();
  assert.ok(
    bn
      .forward(torch.tensor([[1, 2, 3]]))
      .isfinite()
      .all()
      .item(),
  );
  bn.dispose();
});

test('BatchNorm1d refuses input that is not [N, C] or [N, C, L], as PyTorch (a 4-D batch was normalised as BatchNorm2d and counted as tracked)', () => {
  const bn = new BatchNorm1d(3, { affine: false });
  for (const training of [true, false]) {
    bn.train(training);
    assert.throws(() => bn.forward(torch.ones([2, 3, 2, 2])), { name: 'RangeError', message: 'BatchNorm1d: expected 2D or 3D input (got 4D input)' });
    assert.throws(() => bn.forward(torch.ones([3])), { name: 'RangeError', message: 'BatchNorm1d: expected 2D or 3D input (got 1D input)' });
  }
  assert.equal(bn.numBatchesTracked.item(), 0);
  assert.deepEqual(Array.from(bn.runningMean.toFloat32Array()), [0, 0, 0]);
  bn.dispose();
});

test("BatchNorm1d's defaults are PyTorch's: momentum 0.1, eps 1e-5", () => {
  const bn = new BatchNorm1d(2, { affine: false });
  const x = torch.tensor([
    [1, 10],
    [3, 30],
  ]);
  bn.forward(x);
  // torch 1.13: bn = nn.BatchNorm1d(2, affine=False); bn(x) -> running_mean [0.2, 2], running_var [1.1, 20.9]
  // (0.9·init + 0.1·batch statistic; the running variance takes the unbiased batch variance 2 and 200)
  const near = (got: Float32Array, want: number[], what: string) =>
    want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) < 1e-5 * Math.max(1, w), `${what}: ${got}`));
  near(bn.runningMean.toFloat32Array(), [0.2, 2], 'running mean');
  near(bn.runningVar.toFloat32Array(), [1.1, 20.9], 'running var');
  // a batch of biased variance 1e-6: the eps 1e-5 decides the scale; torch 1.13 gives ±0.30151137
  const tiny = new BatchNorm1d(1, { affine: false });
  const y = tiny.forward(torch.tensor([[0], [2e-3]])).toFloat32Array();
  near(Float32Array.from(y, Math.abs), [0.30151137, 0.30151137], 'normalised');
  assert.ok(y[0] < 0 && y[1] > 0);
});

test("BatchNorm1d with momentum null keeps a cumulative average of the batch statistics, as PyTorch's momentum=None (it was taken as the default 0.1)", () => {
  const bn = new BatchNorm1d(2, { affine: false, momentum: null });
  // torch 1.13: nn.BatchNorm1d(2, affine=False, momentum=None) after each batch (factor 1/num_batches_tracked)
  const want = [
    [
      [2, 20],
      [2, 200],
    ],
    [
      [4.5, 11],
      [3, 102],
    ],
    [
      [10 / 3, 23 / 3],
      [8 / 3, 68],
    ],
  ];
  const batches = [
    [
      [1, 10],
      [3, 30],
    ],
    [
      [5, 0],
      [9, 4],
      [7, 2],
    ],
    [
      [0, 1],
      [2, 1],
    ],
  ];
  const near = (got: Float32Array, w: number[], what: string) =>
    w.forEach((v, i) => assert.ok(Math.abs(got[i] - v) < 1e-5 * Math.max(1, v), `${what}: ${got}`));
  batches.forEach((b, i) => {
    bn.forward(torch.tensor(b));
    near(bn.runningMean.toFloat32Array(), want[i][0], `running mean after batch ${i + 1}`);
    near(bn.runningVar.toFloat32Array(), want[i][1], `running var after batch ${i + 1}`);
  });
  bn.dispose();
});

test('Dropout zeroes and rescales in training and is the identity in eval', () => {
  torch.manualSeed(0);
  const d = new Dropout(0.5);
  const x = torch.ones([1000]);
  const y = d.forward(x).toFloat32Array();
  const zeros = y.filter((v) => v === 0).length;
  assert.ok(zeros > 400 && zeros < 600, `${zeros} zeros`);
  assert.ok(y.every((v) => v === 0 || v === 2));
  d.eval();
  assert.deepEqual(d.forward(x).toFloat32Array(), x.toFloat32Array());
});

test('Dropout and DropPath refuse a drop probability outside [0, 1] when built (as PyTorch), not at the first training step', () => {
  for (const p of [-0.1, 1.5, NaN]) {
    assert.throws(() => new Dropout(p), new RegExp(`Dropout: p must be a probability in \\[0, 1\\], got ${p}`));
    assert.throws(() => new DropPath(p), /DropPath: p must be a probability in \[0, 1\]/);
  }
  for (const p of [0, 1]) {
    assert.equal(new Dropout(p).p, p);
    assert.equal(new DropPath(p).p, p);
  }
});

test("GELU refuses an approximation other than 'none' or 'tanh' when built, not at the first forward", () => {
  assert.throws(() => new GELU('foo' as 'none'), /GELU: approximate must be 'none' or 'tanh', got "foo"/);
  assert.equal(new GELU().approximate, 'none');
  assert.equal(new GELU('tanh').approximate, 'tanh');
});

test("LayerNorm's default eps is PyTorch's 1e-5", () => {
  // a row of biased variance 6.7e-7, where the eps decides the scale; torch 1.13: nn.LayerNorm(3)(x)
  const y = new LayerNorm(3).forward(torch.tensor([[0, 1e-3, 2e-3]])).toFloat32Array();
  const want = [-0.30618623, 0, 0.30618623];
  want.forEach((w, i) => assert.ok(Math.abs(y[i] - w) < 1e-5, `${y}`));
});

test("Linear and Conv2d default init: weights and biases uniform within ±1/√fan_in, fan_in being the input side, as PyTorch's", () => {
  torch.manualSeed(0);
  const within = (t: torch.Tensor, bound: number, what: string) => {
    const m = t.abs().max().item();
    assert.ok(m <= bound && m > 0.95 * bound, `${what}: max |w| ${m}, bound ${bound}`);
  };
  // more inputs than outputs and the other way round, so that a fan_in/fan_out swap shows
  const wide = new Linear(400, 25);
  within(wide.weight, 1 / 20, 'Linear(400, 25) weight');
  const narrow = new Linear(25, 400);
  within(narrow.weight, 1 / 5, 'Linear(25, 400) weight');
  within(narrow.bias!, 1 / 5, 'Linear(25, 400) bias');
  // fan_in of a conv weight [out, in, k, k] is in·k²: 16·9 = 144 here (fan_out 4·9 = 36)
  const conv = new Conv2d(16, 4, 3);
  within(conv.weight, 1 / 12, 'Conv2d(16, 4, 3) weight');
  // 1·9 = 9 (fan_out 64·9 = 576)
  const up = new Conv2d(1, 64, 3);
  within(up.weight, 1 / 3, 'Conv2d(1, 64, 3) weight');
  const b = up.bias!.abs().max().item();
  assert.ok(b <= 1 / 3 && b > 0.7 / 3, `Conv2d(1, 64, 3) bias: max |b| ${b}, bound 1/3`);
  for (const m of [wide, narrow, conv, up]) m.dispose();
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

test('DropPath(1) drops every sample to zeros (as timm, which scales by 1/keep only when keep > 0), not to NaN from 0/0', () => {
  const dp = new DropPath(1);
  const y = dp.forward(torch.ones([4, 3, 2])).toFloat32Array();
  assert.ok(
    y.every((v) => v === 0),
    `${y}`,
  );
  const d = new Dropout(1);
  assert.ok(
    d
      .forward(torch.ones([4, 3]))
      .toFloat32Array()
      .every((v) => v === 0),
    'Dropout(1), its sibling, gives zeros',
  );
});

test('DropPath in a data-parallel slice: rank r of W keeps rows r·B … r·B + B − 1 of the global batch’s masks (what one process with batch W·B draws)', () => {
  const dp = new DropPath(0.5);
  const kept = (y: torch.Tensor) => Array.from(y.sum([1, 2]).toFloat32Array(), (v) => (v > 0 ? 1 : 0));
  torch.manualSeed(5);
  const whole = kept(dp.forward(torch.ones([16, 3, 2])));
  assert.ok(whole.includes(0) && whole.includes(1));
  for (let rank = 0; rank < 4; rank++) {
    const restore = setBatchSlice({ rank, worldSize: 4 });
    try {
      torch.manualSeed(5);
      assert.deepEqual(kept(dp.forward(torch.ones([4, 3, 2]))), whole.slice(4 * rank, 4 * rank + 4), `rank ${rank}`);
    } finally {
      restore();
    }
  }
  dp.dispose();
});

test('two runs of one process set their batch slices and end in either order: the slice left is that of the run still going, then the caller’s', () => {
  const caller = batchSlice();
  for (const firstEnds of [true, false]) {
    const endRank = setBatchSlice({ rank: 1, worldSize: 2 }); // a data-parallel rank
    const endOther = setBatchSlice({ rank: 2, worldSize: 3 }); // another run's, started meanwhile
    assert.deepEqual(batchSlice(), { rank: 2, worldSize: 3 });
    if (firstEnds) {
      endRank();
      assert.deepEqual(batchSlice(), { rank: 2, worldSize: 3 }, 'the other run keeps its slice');
      endOther();
    } else {
      endOther();
      assert.deepEqual(batchSlice(), { rank: 1, worldSize: 2 }, 'the rank keeps its slice');
      endRank();
    }
    assert.deepEqual(batchSlice(), caller, 'the caller’s slice once both ended');
  }
  // ranks are 0 … worldSize − 1
  assert.throws(() => setBatchSlice({ rank: 2, worldSize: 2 }), /rank 2 of 2 is not a place in a world/);
  assert.deepEqual(batchSlice(), caller);
});

test("dropPathStream gives every DropPath the job's stream, seeded at seed + 1299709 as pretrain and finetune always seeded it", () => {
  const net = new Sequential(new DropPath(0.5), new Sequential(new DropPath(0.5)));
  const stream = dropPathStream(net, 5);
  for (const [, m] of net.namedModules()) if (m instanceof DropPath) assert.equal(m.generator, stream);
  // the stream a stored run continues: the same draws as a generator seeded at 5 + 1299709
  const draws = (g: torch.Generator) => Array.from(torch.rand([8], { generator: g }).toFloat32Array());
  assert.deepEqual(draws(stream), draws(new torch.Generator(1299714)));
});

test('DropPath given a generator (useDropPathGenerator) draws its masks from it, whatever the program draws from the global one meanwhile; null gives the global one back', () => {
  const net = new Sequential(new DropPath(0.5), new Sequential(new DropPath(0.5)));
  const kept = (y: torch.Tensor) => Array.from(y.sum([1, 2]).toFloat32Array(), (v) => (v > 0 ? 1 : 0));
  const masks = (between: () => void) => {
    const got: number[][] = [];
    for (let i = 0; i < 3; i++) {
      got.push(kept(net.forward(torch.ones([32, 2, 2]))));
      between();
    }
    return got;
  };
  useDropPathGenerator(net, new torch.Generator(3));
  const alone = masks(() => {});
  useDropPathGenerator(net, new torch.Generator(3));
  assert.deepEqual(
    masks(() => torch.rand([7])),
    alone,
    'the same masks with global draws between the passes',
  );
  assert.ok(alone.flat().includes(0) && alone.flat().includes(1));
  for (const dtype of ['float16', 'bfloat16', 'float64'] as const) {
    // the host has no float16 bernoulli: the masks are drawn as float32, then given x's dtype
    useDropPathGenerator(net, new torch.Generator(3));
    const y = net.forward(torch.ones([32, 2, 2], { dtype }));
    assert.equal(y.dtype, dtype);
    assert.deepEqual(kept(y), alone[0], dtype);
  }
  useDropPathGenerator(net, null);
  torch.manualSeed(3);
  const global = masks(() => {});
  torch.manualSeed(3);
  assert.notDeepEqual(
    masks(() => torch.rand([7])),
    global,
    'without a generator the masks come from the global stream',
  );
  net.dispose();
});

test('Sequential frees only the results it made: a module that returns a kept tensor (its own parameter or buffer) keeps it', () => {
  class LearnedInput extends Module {
    readonly value = this.param('value', torch.ones([2, 4]));
    forward(): torch.Tensor {
      return this.value; // the input is ignored: a learned constant
    }
  }
  const first = new LearnedInput();
  const s = new Sequential(first, new Linear(4, 3));
  for (let i = 0; i < 2; i++) {
    const y = s.forward(torch.zeros([2, 4]));
    assert.deepEqual(y.shape, [2, 3]);
    y.dispose();
    assert.equal(first.value.isDisposed, false, `pass ${i}: the parameter is the module's, not the chain's to free`);
  }
  s.dispose();
});

test('Sequential frees the result it holds when a later module throws (as it frees each one consumed)', () => {
  class Refuses extends Module {
    forward(): torch.Tensor {
      throw new Error('refused');
    }
  }
  const s = new Sequential(new Linear(4, 6), new GELU(), new Refuses());
  const x = torch.ones([2, 4]);
  const live = torch.memoryStats().liveTensors;
  assert.throws(() => s.forward(x), /refused/);
  assert.equal(torch.memoryStats().liveTensors, live);
  // the caller's input is the caller's: a first module that throws leaves it alive
  assert.throws(() => new Sequential(new Refuses()).forward(x), /refused/);
  assert.equal(x.isDisposed, false);
  s.dispose();
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

test('members: a dotted or repeated name is refused, whatever kind registered it first; non-persistent buffers stay out of stateDict', () => {
  class Holder extends Module {
    constructor(register: (m: Holder) => void) {
      super();
      register(this);
    }
    add(kind: 'param' | 'buffer' | 'module', name: string, persistent = true): void {
      if (kind === 'param') this.param(name, torch.zeros([1]));
      else if (kind === 'buffer') this.buffer(name, torch.zeros([1]), persistent);
      else this.module(name, new Linear(1, 1));
    }
  }
  assert.throws(() => new Holder((m) => m.add('param', 'a.b')), /invalid module member name 'a\.b'/);
  for (const first of ['param', 'buffer', 'module'] as const)
    for (const second of ['param', 'buffer', 'module'] as const)
      assert.throws(
        () =>
          new Holder((m) => {
            m.add(first, 'x');
            m.add(second, 'x');
          }),
        /'x' is already registered in Holder/,
        `${first} then ${second}`,
      );
  const h = new Holder((m) => {
    m.add('buffer', 'kept');
    m.add('buffer', 'scratch', false);
  });
  assert.deepEqual([...h.stateDict().keys()], ['kept']);
  assert.deepEqual(
    [...h.namedBuffers('', true)].map(([n]) => n),
    ['kept'],
  );
  assert.deepEqual(
    [...h.namedBuffers()].map(([n]) => n),
    ['kept', 'scratch'],
  );
  h.dispose();
});

test("a parameter registered from a computed tensor (a clone of another module's weight) is a leaf of its own, as nn.Parameter: it gets gradients and trains, and backward stops at it", () => {
  const source = new Linear(3, 2);
  class Copy extends Module {
    readonly weight = this.param('weight', source.weight.clone()); // a non-leaf: clone() of a tensor that requires grad
    forward(x: torch.Tensor): torch.Tensor {
      return torch.F.linear(x, this.weight);
    }
  }
  const m = new Copy();
  assert.equal(m.weight.isLeaf, true);
  assert.equal(m.weight.requiresGrad, true);
  const before = m.weight.toFloat32Array();
  assert.deepEqual(before, source.weight.toFloat32Array());
  torch.scope(() =>
    m
      .forward(torch.ones([1, 3]))
      .sum()
      .backward(),
  );
  const grad = m.weight.grad;
  assert.ok(grad, 'the parameter has a gradient (a non-leaf never had one: an optimiser skipped it every step)');
  assert.deepEqual(Array.from(grad.toFloat32Array()), [1, 1, 1, 1, 1, 1]);
  grad.dispose();
  assert.equal(source.weight.grad, null, "the copy's gradient does not flow back into the module it was copied from");
  m.dispose();
  source.dispose();
});

test('a parameter registered with requiresGrad false does not require grad, even from a tensor that did, as nn.Parameter(t, requires_grad=False): it is frozen', () => {
  class Frozen extends Module {
    readonly scale: torch.Tensor;
    constructor(t: torch.Tensor) {
      super();
      this.scale = this.param('scale', t, false);
    }
  }
  const t = torch.ones([2]);
  t.requiresGrad = true; // a leaf that requires grad (a user's tensor, a loaded weight)
  const m = new Frozen(t);
  assert.equal(m.scale.requiresGrad, false, 'registered frozen, it took gradients and an optimiser trained it');
  assert.equal(new Frozen(torch.ones([2])).scale.requiresGrad, false);
  m.dispose();
});

test('loadStateDict refuses a tensor of another rank even when its sizes start alike ([4] for [4, 1])', () => {
  const lin = new Linear(1, 4);
  const sd = new Map([...lin.stateDict()].map(([k, v]) => [k, v.clone()]));
  sd.set('weight', torch.zeros([4]));
  assert.throws(
    () => lin.loadStateDict(sd),
    (e) => e instanceof StateDictError && /shape: {6}weight: expected \[4,1\], got \[4\]/.test(e.message),
  );
  lin.dispose();
});

test('Conv2d honours padding; ModuleList.at counts negative indices from the end', () => {
  torch.scope(() => {
    const c = new Conv2d(1, 2, 3, { padding: 1 });
    assert.deepEqual(c.forward(torch.randn([1, 1, 5, 5])).shape, [1, 2, 5, 5]);
    const list = new ModuleList([c, new GELU()]);
    assert.equal(list.at(-2), c);
    assert.ok(list.at(-1) instanceof GELU);
    assert.throws(() => list.at(-3), /index -3 out of range/);
    list.dispose();
  });
});

test('Mlp drops after the activation and after fc2 (timm): fc1 → GELU → drop → fc2 → drop', () => {
  const mlp = new Mlp(4, 8, 4, { drop: 0.5 });
  torch.scope(() => {
    const x = torch.randn([3, 4]);
    torch.manualSeed(21);
    const got = mlp.forward(x);
    torch.manualSeed(21);
    const hidden = torch.F.dropout(torch.F.gelu(mlp.fc1.forward(x), 'none'), 0.5, true);
    const want = torch.F.dropout(mlp.fc2.forward(hidden), 0.5, true);
    assert.ok(got.sub(want).abs().max().item() < 1e-6);
  });
  mlp.dispose();
});

test('truncNormal_ redraws the values outside [a, b] (none piles up on a bound) and clamps what 100 redraws leave outside', () => {
  torch.manualSeed(0);
  torch.scope(() => {
    // a third of N(0, 1) lies outside [-1, 1]: clamped instead of redrawn, it would sit on ±1
    const t = init.truncNormal_(torch.empty([20000]), 1, 0, -1, 1);
    assert.ok(t.abs().max().item() <= 1);
    assert.equal(t.abs().eq(1).sum().item(), 0, 'values on a bound');
    // [5, 6] is ~3e-7 of N(0, 1): after 100 redraws nearly every value is still outside, and is clamped
    const tail = init.truncNormal_(torch.empty([100]), 1, 0, 5, 6);
    assert.ok(tail.min().item() >= 5 && tail.max().item() <= 6, `${tail.min().item()}..${tail.max().item()}`);
  });
});

test("truncNormal_ refuses bounds that are no interval (a > b, NaN), as timm's trunc_normal_ fails on them, instead of filling a constant or not truncating", () => {
  torch.scope(() => {
    const t = torch.zeros([8]);
    for (const [a, b] of [
      [2, -2],
      [NaN, 2],
      [-2, NaN],
    ])
      assert.throws(
        () => init.truncNormal_(t, 1, 0, a, b),
        { name: 'RangeError', message: /truncNormal_: the bounds \[.*\] are not an interval/ },
        `[${a}, ${b}]`,
      );
    assert.deepEqual(Array.from(t.toFloat32Array()), new Array(8).fill(0), 'nothing drawn');
    // a = b is an interval of one point (timm fills it too)
    assert.deepEqual(Array.from(init.truncNormal_(t, 1, 0, 1, 1).toFloat32Array()), new Array(8).fill(1));
  });
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

test('a module used twice or a tied weight is one parameter (and one child) under its first name, as PyTorch; stateDict keeps every name', () => {
  const lin = new Linear(2, 2);
  const s = new Sequential(lin, lin);
  // torch: l = nn.Linear(2, 2); s = nn.Sequential(l, l); sum(p.numel() for p in s.parameters()) == 6
  assert.equal(s.numParameters(), 6);
  assert.deepEqual(
    [...s.namedParameters()].map(([n]) => n),
    ['0.weight', '0.bias'],
  );
  assert.deepEqual(
    [...s.namedModules()].map(([n]) => n),
    ['', '0'],
  );
  // torch: [n for n, _ in s.named_children()] == ['0']
  assert.deepEqual(
    [...s.namedChildren()].map(([n]) => n),
    ['0'],
  );
  // torch: list(s.state_dict()) == ['0.weight', '0.bias', '1.weight', '1.bias']
  assert.deepEqual([...s.stateDict().keys()], ['0.weight', '0.bias', '1.weight', '1.bias']);
  const copy = new Sequential(new Linear(2, 2), new Linear(2, 2));
  copy.loadStateDict(s.stateDict());
  assert.deepEqual(Array.from((copy.at(1) as Linear).weight.toFloat32Array()), Array.from(lin.weight.toFloat32Array()));
  class Tied extends Module {
    readonly a = this.module('a', new BatchNorm1d(2));
    readonly w = this.param('w', this.a.weight!);
    readonly m = this.buffer('m', this.a.runningMean);
  }
  const tied = new Tied();
  assert.deepEqual(
    [...tied.namedParameters()].map(([n]) => n),
    ['w', 'a.bias'],
  );
  assert.deepEqual(
    [...tied.namedBuffers()].map(([n]) => n),
    ['m', 'a.running_var', 'a.num_batches_tracked'],
  );
  assert.ok([...tied.stateDict().keys()].includes('a.weight'));
  copy.dispose();
  s.dispose();
  tied.dispose();
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
  // kernel size 0 built a [4, 3, 0, 0] weight; PyTorch fails at the first forward ('non-positive kernel size')
  assert.throws(() => new Conv2d(3, 4, 0), /Conv2d: kernelSize must be a positive integer, got 0/);
  assert.throws(() => new Conv2d(3, 4, 1.5), /kernelSize must be a positive integer/);
  const g = new Conv2d(4, 6, 3, { groups: 2 });
  assert.deepEqual(g.weight.shape, [6, 2, 3, 3]);
  assert.deepEqual(g.forward(torch.zeros([1, 4, 5, 5])).shape, [1, 6, 3, 3]);
});
