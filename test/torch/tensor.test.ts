// Tensor basics: creation, random streams, dtypes, JS data in and out, errors, lifetimes (dispose,
// using, scope), grad mode, autograd basics and in-place ops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import * as torch from '../../src/torch';
import { Tensor, DType, F } from '../../src/torch';
import { addonPath } from '../../src/torch/native';
import { sparingGlobalRng } from '../../src/torch/global-rng';
import { assertClose, cpuOnly, noLeak, values } from './helpers';

torch.setNumThreads(1);

const live = (): number => torch.memoryStats().liveTensors;

function throwsTorch(fn: () => unknown, o: { code?: string | RegExp; op?: string; message?: RegExp }): Error {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof Error, 'expected a JS Error');
  const e = err as Error & { code?: string; op?: string };
  if (o.code instanceof RegExp) assert.match(String(e.code), o.code);
  else if (o.code) assert.equal(e.code, o.code);
  if (o.op) assert.equal(e.op, o.op);
  if (o.message) assert.match(e.message, o.message);
  return e;
}

// ---------------------------------------------------------------- creation

test('default device: creation without a device uses it; a bad or absent device is refused and changes nothing', () => {
  const was = torch.getDefaultDevice();
  try {
    torch.setDefaultDevice('cpu');
    assert.equal(torch.getDefaultDevice(), 'cpu');
    torch.scope(() => assert.equal(torch.tensor([1, 2]).device, 'cpu'));
    assert.throws(() => torch.setDefaultDevice('tpu' as never));
    if (!torch.cuda.isAvailable()) assert.throws(() => torch.setDefaultDevice('cuda'));
    assert.equal(torch.getDefaultDevice(), 'cpu');
  } finally {
    torch.setDefaultDevice(was);
  }
});

test('creation: zeros, ones, full, empty, eye, *Like', () => {
  noLeak(() => {
    const z = torch.zeros([2, 3]);
    assert.deepEqual(z.shape, [2, 3]);
    assert.equal(z.dtype, 'float32');
    assert.ok(z.device.startsWith(torch.getDefaultDevice()), z.device);
    assert.deepEqual(values(z), [0, 0, 0, 0, 0, 0]);
    const o = torch.ones([4], { dtype: 'int64' });
    assert.equal(o.dtype, 'int64');
    assert.deepEqual(values(o), [1, 1, 1, 1]);
    const f = torch.full([2, 2], 2.5, { dtype: 'float64' });
    assert.deepEqual(values(f), [2.5, 2.5, 2.5, 2.5]);
    const fb = torch.full([3], true, { dtype: 'bool' });
    assert.equal(fb.dtype, 'bool');
    assert.deepEqual(values(fb), [1, 1, 1]);
    assert.deepEqual(torch.empty([3, 0, 2]).shape, [3, 0, 2]);
    assert.equal(torch.zeros([]).ndim, 0);
    assert.equal(torch.zeros([]).numel, 1);
    assert.deepEqual(values(torch.eye(3)), [1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const like = torch.onesLike(f);
    assert.equal(like.dtype, 'float64');
    assert.deepEqual(like.shape, [2, 2]);
    assert.deepEqual(values(torch.zerosLike(f, { dtype: 'int32' })), [0, 0, 0, 0]);
    assert.equal(torch.zerosLike(f, { dtype: 'int32' }).dtype, 'int32');
    assert.deepEqual(values(torch.fullLike(o, 7)), [7, 7, 7, 7]);
    const rg = torch.zeros([2], { requiresGrad: true });
    assert.equal(rg.requiresGrad, true);
  });
});

test('creation: zerosLike/onesLike/fullLike with an option given as undefined keep the input dtype and device, as dtype=None', () => {
  noLeak(() => {
    // { dtype: undefined } (an option passed on as `{ dtype: o.dtype }`) overrode the input's dtype: float32 came back
    const f = torch.tensor([1, 2], { dtype: 'float64' });
    const i = torch.tensor([1, 2], { dtype: 'int64' });
    assert.equal(torch.zerosLike(f, { dtype: undefined }).dtype, 'float64');
    assert.equal(torch.onesLike(f, { dtype: undefined, device: undefined }).dtype, 'float64');
    assert.equal(torch.onesLike(f, { device: undefined }).device, f.device);
    const full = torch.fullLike(i, 3, { dtype: undefined });
    assert.equal(full.dtype, 'int64');
    assert.deepEqual(values(full), [3, 3]);
    assert.equal(torch.zerosLike(f, { dtype: undefined, requiresGrad: true }).requiresGrad, true);
  });
});

test('creation: arange and linspace', () => {
  noLeak(() => {
    const a = torch.arange(5);
    assert.equal(a.dtype, 'int64');
    assert.deepEqual(values(a), [0, 1, 2, 3, 4]);
    assert.deepEqual(values(torch.arange(2, 11, 3)), [2, 5, 8]);
    assert.deepEqual(values(torch.arange(5, 0, -2)), [5, 3, 1]);
    const fa = torch.arange(0, 1, 0.25);
    assert.equal(fa.dtype, 'float32');
    assert.deepEqual(values(fa), [0, 0.25, 0.5, 0.75]);
    // int64 only when start, end and step are all integers
    const fe = torch.arange(0, 2.5);
    assert.equal(fe.dtype, 'float32');
    assert.deepEqual(values(fe), [0, 1, 2]);
    assert.equal(torch.arange(0.5, 3).dtype, 'float32');
    const da = torch.arange(0, 3, 1, { dtype: 'float64' });
    assert.equal(da.dtype, 'float64');
    assert.deepEqual(values(da), [0, 1, 2]);
    const l = torch.linspace(-1, 1, 5, { dtype: 'float64' });
    assert.deepEqual(values(l), [-1, -0.5, 0, 0.5, 1]);
    assert.equal(torch.linspace(0, 1, 3).dtype, 'float32');
    assert.deepEqual(torch.linspace(0, 1, 1).shape, [1]);
  });
});

test('creation: tensor() from nested arrays and typed arrays', () => {
  noLeak(() => {
    const t = torch.tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    assert.equal(t.dtype, 'float32');
    assert.deepEqual(t.shape, [2, 3]);
    assert.deepEqual(t.tolist(), [
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const b = torch.tensor([
      [true, false],
      [false, true],
    ]);
    assert.equal(b.dtype, 'bool');
    assert.deepEqual(b.tolist(), [
      [1, 0],
      [0, 1],
    ]);
    const i = torch.tensor([1, -2, 3], { dtype: 'int64' });
    assert.equal(i.dtype, 'int64');
    assert.deepEqual(Array.from(i.data() as BigInt64Array), [1n, -2n, 3n]);
    const h = torch.tensor([0.5, -2], { dtype: 'float16' });
    assert.equal(h.dtype, 'float16');
    assert.deepEqual(Array.from(h.toFloat32Array()), [0.5, -2]);
    const bh = torch.tensor([[1.5], [-2]], { dtype: 'bfloat16' });
    assert.equal(bh.dtype, 'bfloat16');
    assert.deepEqual(bh.tolist(), [[1.5], [-2]]);
    const none = torch.tensor([]);
    assert.equal(none.dtype, 'float32', 'no values: float32, not bool');
    assert.deepEqual(none.shape, [0]);
    assert.throws(() => torch.tensor([1, 2, 3], { shape: [2, 2] }), /^RangeError: tensor\(\): ragged or mismatched data: 3 values for shape \[2,2\]$/);
    assert.equal(torch.tensor(3.5).ndim, 0);
    assert.equal(torch.tensor(3.5).item(), 3.5);
    // A typed array converted to another dtype on the way in.
    const c = torch.tensor(new Float64Array([1.5, 2.5]), { dtype: 'float32' });
    assert.equal(c.dtype, 'float32');
    assert.deepEqual(values(c), [1.5, 2.5]);
    const shaped = torch.tensor(new Int32Array([1, 2, 3, 4, 5, 6]), { shape: [3, 2] });
    assert.equal(shaped.dtype, 'int32');
    assert.deepEqual(shaped.tolist(), [
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    assert.throws(() => torch.tensor([[1, 2], [3]]), RangeError);
    assert.throws(() => torch.tensor(new Uint16Array(2)), /float16 or bfloat16/);
    assert.throws(() => torch.tensor(new Float32Array(5), { shape: [2, 2] }), /bytes/);
  });
});

// ---------------------------------------------------------------- random streams

test('random: manualSeed makes rand/randn/randint/randperm/bernoulli repeat', () => {
  noLeak(() => {
    const draw = (): number[][] => [
      values(torch.rand([50])),
      values(torch.randn([3, 7], { dtype: 'float64' })),
      values(torch.randint(0, 100, [20])),
      values(torch.randperm(12)),
      values(torch.bernoulli(torch.zeros([30]), 0.3)),
    ];
    torch.manualSeed(2024);
    const a = draw();
    torch.manualSeed(2024);
    const b = draw();
    assert.deepEqual(a, b);
    torch.manualSeed(2025);
    assert.notDeepEqual(draw()[0], a[0]);
    assert.ok(
      a[0].every((v) => v >= 0 && v < 1),
      'rand in [0, 1)',
    );
    assert.ok(
      a[2].every((v) => Number.isInteger(v) && v >= 0 && v < 100),
      'randint in [low, high)',
    );
    assert.deepEqual(
      [...a[3]].sort((x, y) => x - y),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
      'randperm is a permutation',
    );
    // Moments of a large randn draw.
    const n = values(torch.randn([20000]));
    const mean = n.reduce((s, v) => s + v, 0) / n.length;
    const sd = Math.sqrt(n.reduce((s, v) => s + (v - mean) ** 2, 0) / n.length);
    assert.ok(Math.abs(mean) < 0.05 && Math.abs(sd - 1) < 0.05, `randn moments ${mean} ${sd}`);
    // In-place initialisers follow the global seed too.
    torch.manualSeed(5);
    const u1 = values(torch.empty([10]).uniform_(-2, 3));
    const n1 = values(torch.empty([10]).normal_(1, 0.5));
    torch.manualSeed(5);
    assert.deepEqual(values(torch.empty([10]).uniform_(-2, 3)), u1);
    assert.deepEqual(values(torch.empty([10]).normal_(1, 0.5)), n1);
    assert.ok(u1.every((v) => v >= -2 && v < 3));
    // The defaults: uniform_() on [0, 1), normal_() N(0, 1).
    const u0 = values(torch.empty([2000]).uniform_());
    assert.ok(u0.every((v) => v >= 0 && v < 1) && Math.max(...u0) > 0.9, 'uniform_() is on [0, 1)');
    const n0 = values(torch.empty([20000]).normal_());
    const mean0 = n0.reduce((a, v) => a + v, 0) / n0.length;
    const sd0 = Math.sqrt(n0.reduce((a, v) => a + (v - mean0) ** 2, 0) / n0.length);
    assert.ok(Math.abs(mean0) < 0.05 && Math.abs(sd0 - 1) < 0.05, `normal_() moments ${mean0} ${sd0}`);
  });
});

test('random: every factory honours requiresGrad, randint, randperm and bernoulli as rand and randn', () => {
  torch.scope(() => {
    const o = { dtype: 'float32' as const, requiresGrad: true };
    const made = [torch.rand([3], o), torch.randn([3], o), torch.randint(0, 9, [3], o), torch.randperm(3, o), torch.bernoulli(torch.zeros([3]), 0.5, o)];
    assert.deepEqual(
      made.map((t) => t.requiresGrad),
      [true, true, true, true, true],
    );
  });
});

test('random: sparingGlobalRng gives the global stream back and frees the states it saved, also when build throws', () => {
  const draw = (): unknown => torch.scope(() => torch.rand([4]).tolist());
  torch.manualSeed(11);
  const want = draw();
  torch.manualSeed(11);
  const before = live();
  assert.equal(
    sparingGlobalRng(() => torch.scope(() => torch.rand([100]).sum().item()) > 0),
    true,
  );
  assert.throws(
    () =>
      sparingGlobalRng(() => {
        torch.scope(() => {
          torch.randn([7]);
        });
        throw new Error('build failed');
      }),
    /build failed/,
  );
  // (<=: a finalizer may free an older, forgotten tensor meanwhile)
  assert.ok(live() <= before, `live tensors before ${before}, after ${live()}: the saved generator states were not freed`);
  assert.deepEqual(draw(), want, 'the draws inside did not use up the stream');
});

test('random: Generators are independent streams with savable state', () => {
  noLeak(() => {
    const g1 = new torch.Generator(42);
    const g2 = new torch.Generator(42);
    const a1 = values(torch.randn([8], { generator: g1 }));
    const a2 = values(torch.randn([8], { generator: g1 }));
    assert.notDeepEqual(a1, a2, 'a generator advances');
    assert.deepEqual(values(torch.randn([8], { generator: g2 })), a1, 'same seed, same stream');
    assert.deepEqual(values(torch.randn([8], { generator: g2 })), a2);
    assert.notDeepEqual(values(torch.randn([8], { generator: new torch.Generator(43) })), a1, 'different seed, different stream');
    // Drawing from a generator leaves the global stream alone (and vice versa).
    torch.manualSeed(9);
    const globalRef = values(torch.rand([6]));
    torch.manualSeed(9);
    const g3 = new torch.Generator(1);
    const fromG3 = values(torch.rand([6], { generator: g3 }));
    torch.randperm(5, { generator: g3 });
    torch.randint(0, 3, [4], { generator: g3 });
    torch.empty([3]).normal_(0, 1, g3);
    assert.deepEqual(values(torch.rand([6])), globalRef, 'generator draws must not advance the global stream');
    torch.manualSeed(77);
    torch.rand([100]);
    assert.deepEqual(values(torch.rand([6], { generator: new torch.Generator(1) })), fromG3, 'global draws must not touch a generator');
    // manualSeed on a generator restarts it.
    g1.manualSeed(42);
    assert.deepEqual(values(torch.randn([8], { generator: g1 })), a1);
    // State save/restore.
    const state = g1.getState();
    assert.equal(state.dtype, 'uint8');
    const next = values(torch.randn([5], { generator: g1 }));
    const after = values(torch.rand([5], { generator: g1 }));
    g1.setState(state);
    assert.deepEqual(values(torch.randn([5], { generator: g1 })), next);
    assert.deepEqual(values(torch.rand([5], { generator: g1 })), after);
    // In-place initialisers and bernoulli with a generator.
    const gA = new torch.Generator(3);
    const gB = new torch.Generator(3);
    assert.deepEqual(values(torch.empty([6]).uniform_(0, 1, gA)), values(torch.empty([6]).uniform_(0, 1, gB)));
    assert.deepEqual(values(torch.bernoulli(torch.zeros([20]), 0.5, { generator: gA })), values(torch.bernoulli(torch.zeros([20]), 0.5, { generator: gB })));
  });
});

// torch.getRngState is the CPU generator's state (as in PyTorch); with a CUDA default device these
// draws would come from the CUDA generator, whose state cuda.test round-trips.
test('random: getRngState/setRngState replay the global stream', { skip: cpuOnly }, () => {
  noLeak(() => {
    torch.manualSeed(11);
    torch.randn([3]);
    const s = torch.getRngState();
    assert.equal(s.dtype, 'uint8');
    assert.equal(s.ndim, 1);
    const x = values(torch.randn([16], { dtype: 'float64' }));
    const y = values(torch.rand([4]));
    const d = values(F.dropout(torch.ones([32]), 0.5));
    torch.setRngState(s);
    assert.deepEqual(values(torch.randn([16], { dtype: 'float64' })), x);
    assert.deepEqual(values(torch.rand([4])), y);
    assert.deepEqual(values(F.dropout(torch.ones([32]), 0.5)), d);
    // The saved state is a snapshot: drawing more does not change it.
    torch.setRngState(s);
    assert.deepEqual(values(torch.randn([16], { dtype: 'float64' })), x);
    assert.throws(() => torch.setRngState(torch.zeros([3], { dtype: 'uint8' })));
  });
});

// ---------------------------------------------------------------- dtypes and data

const ALL: DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

test('dtypes: all ten round-trip through data() with the right typed array', () => {
  noLeak(() => {
    const cases: Record<DType, { arr: ArrayBufferView; ctor: abstract new (...args: never[]) => unknown; asNumbers: number[] }> = {
      float32: { arr: new Float32Array([1.5, -2.25, 3e30, 0]), ctor: Float32Array, asNumbers: [1.5, -2.25, Math.fround(3e30), 0] },
      float64: { arr: new Float64Array([1.5, -2.25, 1e300, Math.PI]), ctor: Float64Array, asNumbers: [1.5, -2.25, 1e300, Math.PI] },
      // half types travel as raw bits: 1, -2, 0.5, 65504 (float16) / 1, -2, 0.5, 3.140625 (bfloat16)
      float16: { arr: new Uint16Array([0x3c00, 0xc000, 0x3800, 0x7bff]), ctor: Uint16Array, asNumbers: [1, -2, 0.5, 65504] },
      bfloat16: { arr: new Uint16Array([0x3f80, 0xc000, 0x3f00, 0x4049]), ctor: Uint16Array, asNumbers: [1, -2, 0.5, 3.140625] },
      int64: { arr: new BigInt64Array([1n, -2n, 2n ** 40n, -(2n ** 62n)]), ctor: BigInt64Array, asNumbers: [1, -2, 2 ** 40, -(2 ** 62)] },
      int32: { arr: new Int32Array([1, -2, 2 ** 31 - 1, -(2 ** 31)]), ctor: Int32Array, asNumbers: [1, -2, 2 ** 31 - 1, -(2 ** 31)] },
      int16: { arr: new Int16Array([1, -2, 32767, -32768]), ctor: Int16Array, asNumbers: [1, -2, 32767, -32768] },
      int8: { arr: new Int8Array([1, -2, 127, -128]), ctor: Int8Array, asNumbers: [1, -2, 127, -128] },
      uint8: { arr: new Uint8Array([1, 2, 255, 0]), ctor: Uint8Array, asNumbers: [1, 2, 255, 0] },
      bool: { arr: new Uint8Array([1, 0, 1, 1]), ctor: Uint8Array, asNumbers: [1, 0, 1, 1] },
    };
    for (const dt of ALL) {
      const c = cases[dt];
      const t = torch.tensor(c.arr as never, { dtype: dt, shape: [2, 2] });
      assert.equal(t.dtype, dt);
      assert.deepEqual(t.shape, [2, 2]);
      const d = t.data();
      assert.ok(d instanceof c.ctor, `${dt}: data() is a ${d.constructor.name}`);
      assert.deepEqual(Array.from(d as ArrayLike<number | bigint>), Array.from(c.arr as unknown as ArrayLike<number | bigint>), `${dt} bits`);
      assert.deepEqual(values(t), c.asNumbers, `${dt} values`);
      // Conversions between every pair of dtypes agree with the values (small integers are exact everywhere).
      const small = torch.tensor(new Float64Array([0, 1, 3, 7]), { dtype: 'float64' });
      const conv = small.to({ dtype: dt });
      assert.equal(conv.dtype, dt);
      assert.deepEqual(values(conv), dt === 'bool' ? [0, 1, 1, 1] : [0, 1, 3, 7], `float64 -> ${dt}`);
      for (const dt2 of ALL) {
        const back = conv.to({ dtype: dt2 });
        assert.equal(back.dtype, dt2);
        assert.deepEqual(values(back), dt === 'bool' || dt2 === 'bool' ? [0, 1, 1, 1] : [0, 1, 3, 7], `${dt} -> ${dt2}`);
      }
      assert.equal(torch.zeros([3], { dtype: dt }).dtype, dt);
    }
    assert.deepEqual(torch.dtypeBytes('bfloat16'), 2);
    assert.deepEqual(
      ALL.map((d) => torch.dtypeBytes(d)),
      ALL.map((d) => torch.zeros([1], { dtype: d }).data().BYTES_PER_ELEMENT),
    );
    // was 1, while io.dtypeByteSize threw: a byte count from a misspelt dtype was silently wrong
    assert.throws(() => torch.dtypeBytes('foo' as torch.DType), { name: 'TypeError', message: "dtypeBytes: unknown dtype 'foo'" });
    assert.deepEqual(
      ALL.filter((d) => torch.isFloating(d)),
      ['float32', 'float64', 'float16', 'bfloat16'],
    );
    // every dtype as a string is a dtype for to(), never a device
    for (const d of ALL) assert.equal(torch.zeros([1]).to(d).dtype, d);
    assert.deepEqual(
      ['cpu', 'cuda', 'cuda:0', 'cuda:3'].map((d) => torch.deviceType(d)),
      ['cpu', 'cuda', 'cuda', 'cuda'],
    );
  });
});

test('typed arrays: copies in, copies out, offsets respected, float conversions', () => {
  noLeak(() => {
    const src = new Float32Array([1, 2, 3, 4]);
    const t = torch.tensor(src, { shape: [2, 2] });
    src[0] = 100;
    assert.equal(values(t)[0], 1, 'tensor() copies its input');
    const out = t.data() as Float32Array;
    out[1] = 200;
    assert.equal(values(t)[1], 2, 'data() returns a copy');
    // A view into a larger buffer at an offset.
    const bigBuf = new Float64Array([9, 9, 1.25, 2.5, 3.75, 9]);
    const sub = bigBuf.subarray(2, 5);
    assert.deepEqual(values(torch.tensor(sub)), [1.25, 2.5, 3.75]);
    // Non-contiguous tensors come out in logical order.
    const m = torch.tensor(new Float32Array([1, 2, 3, 4, 5, 6]), { shape: [2, 3] });
    assert.deepEqual(Array.from(m.T.data() as Float32Array), [1, 4, 2, 5, 3, 6]);
    assert.deepEqual(Array.from(m.T.toFloat64Array()), [1, 4, 2, 5, 3, 6]);
    assert.deepEqual(Array.from(m.slice(1, 0, undefined, 2).toFloat32Array()), [1, 3, 4, 6]);
    // Exact int64 beyond 2^53.
    const huge = torch.tensor(new BigInt64Array([2n ** 60n + 1n]));
    assert.equal((huge.data() as BigInt64Array)[0], 2n ** 60n + 1n);
    // Empty tensors.
    assert.equal(torch.zeros([0, 3]).data().length, 0);
    assert.deepEqual(torch.zeros([0]).tolist(), []);
  });
});

test('sharedData: zero-copy view of a contiguous CPU tensor, valid after dispose', { skip: cpuOnly }, () => {
  noLeak(() => {
    const t = torch.zeros([2, 3]);
    const d = t.sharedData() as Float32Array;
    assert.ok(d instanceof Float32Array);
    assert.equal(d.length, 6);
    t.fill_(3);
    assert.equal(d[0], 3, 'in-place writes to the tensor show in the shared view');
    d[4] = -7;
    assert.equal(values(t)[4], -7, 'writes to the shared view show in the tensor');
    // A contiguous view of part of a tensor shares from the right offset.
    const row = t.select(0, 1);
    const rd = row.sharedData() as Float32Array;
    assert.equal(rd.length, 3);
    assert.equal(rd[1], -7);
    t.dispose();
    row.dispose();
    assert.equal(d[4], -7, 'the shared view keeps the storage alive after dispose');
    d[0] = 1;
    assert.equal(d[0], 1);
    const nc = torch.ones([2, 3]).T;
    throwsTorch(() => nc.sharedData(), { code: 'ERR_ARG', message: /contiguous/ });
    assert.equal(torch.zeros([0]).sharedData().length, 0);
  });
});

test('tolist, item, toString, print, properties', () => {
  noLeak(() => {
    const t = torch.arange(0, 6, 1, { dtype: 'float64' }).reshape(2, 3);
    assert.deepEqual(t.tolist(), [
      [0, 1, 2],
      [3, 4, 5],
    ]);
    assert.deepEqual(torch.zeros([2, 1, 2]).tolist(), [[[0, 0]], [[0, 0]]]);
    assert.equal(t.sum().tolist(), 15);
    assert.equal(t.sum().item(), 15);
    assert.equal(torch.tensor([7], { dtype: 'int64' }).item(), 7);
    assert.equal(torch.tensor([true]).item(), 1);
    assert.equal(torch.tensor([[2.5]]).item(), 2.5);
    throwsTorch(() => t.item(), { code: 'ERR_ARG', op: 'item', message: /6 elements/ });
    assert.equal(t.toString(), `Tensor(shape=[2, 3], dtype=float64, device=${t.device})`);
    assert.equal(JSON.stringify({ t }), `{"t":"Tensor(shape=[2, 3], dtype=float64, device=${t.device})"}`);
    assert.equal(t.cpu().toString(), 'Tensor(shape=[2, 3], dtype=float64, device=cpu)');
    const g = torch.zeros([1], { requiresGrad: true });
    assert.match(g.toString(), /requiresGrad/);
    assert.match(t.print(), /5/);
    assert.equal(t.ndim, 2);
    assert.equal(t.numel, 6);
    assert.equal(t.size(-1), 3);
    assert.throws(() => t.size(2), RangeError);
    assert.throws(() => t.size(-3), /^RangeError: size\(-3\): tensor has 2 dimensions$/, 'a dim below -ndim is refused, not read as undefined');
    assert.deepEqual(t.strides, [3, 1]);
    assert.equal(t.isContiguous, true);
    assert.equal(t.T.isContiguous, false);
    assert.equal(t.T.contiguous().isContiguous, true);
    assert.ok(typeof torch.version().torch === 'string');
  });
});

// ---------------------------------------------------------------- errors

test('errors: libtorch errors become JS Errors with .code, .op and the libtorch message, without crashing', () => {
  noLeak(() => {
    const a = torch.ones([3, 4]);
    const e = throwsTorch(() => a.add(torch.ones([5])), {
      code: 'ERR_TORCH',
      op: 'add',
      message: /^add: The size of tensor a \(4\) must match the size of tensor b \(5\) at non-singleton dimension 1$/,
    });
    assert.ok(!/Exception raised from/.test(e.message), 'no C++ backtrace in the message');
    throwsTorch(() => a.matmul(torch.ones([3, 2])), { code: 'ERR_TORCH', op: 'matmul', message: /mat1 and mat2 shapes cannot be multiplied \(3x4 and 3x2\)/ });
    // Out-of-range indices on the CPU: on a GPU they trip a device-side assert that ends the process's
    // CUDA context (as in PyTorch), so these two run on the CPU whatever the default device.
    const ac = torch.ones([3, 4], { device: 'cpu' });
    throwsTorch(() => ac.indexSelect(0, torch.tensor(new BigInt64Array([9n]), { device: 'cpu' })), {
      code: 'ERR_TORCH_INDEX',
      op: 'indexSelect',
      message: /index out of range/,
    });
    throwsTorch(() => F.softmax(a, 5), { code: 'ERR_TORCH_INDEX', op: 'softmax', message: /Dimension out of range/ });
    throwsTorch(() => torch.cat([a, torch.ones([3, 5])], 0), { op: 'cat', message: /Sizes of tensors must match/ });
    throwsTorch(() => a.view(5, -1), { op: 'view', message: /invalid for input of size 12/ });
    throwsTorch(() => a.mul(2).sum(0).backward(), { code: 'ERR_TORCH', op: 'backward' });
    throwsTorch(() => a.requiresGrad_(true).mul(2).backward(), { code: 'ERR_TORCH', op: 'backward', message: /only for scalar outputs/ });
    a.requiresGrad = false;
    throwsTorch(() => F.crossEntropy(torch.ones([2, 3], { device: 'cpu' }), torch.tensor(new BigInt64Array([0n, 5n]), { device: 'cpu' })), {
      op: 'crossEntropy',
      message: /out of bounds|Target 5/,
    });
    // Argument errors from the binding: still JS errors with a code.
    throwsTorch(() => (a as unknown as { add(x: unknown): Tensor }).add('x'), { code: 'ERR_ARG', op: 'add', message: /expected a tensor/ });
    throwsTorch(() => torch.zeros([2], { dtype: 'complex64' as DType }), { code: 'ERR_ARG', message: /unknown dtype/ });
    throwsTorch(() => torch.ones([2]).to({ device: 'cuda:7' }), { code: /^ERR_/ });
    assert.throws(() => torch.setNumThreads(0), RangeError);
    // The engine keeps working after all of this.
    assert.deepEqual(values(torch.ones([2]).add(1)), [2, 2]);
  });
});

// ---------------------------------------------------------------- lifetimes

test('dispose: idempotent, disposed tensors throw on use, live count drops once', () => {
  const before = live();
  const t = torch.ones([4]);
  const v = t.narrow(0, 0, 2);
  assert.equal(live(), before + 2);
  assert.equal(t.isDisposed, false);
  t.dispose();
  assert.equal(t.isDisposed, true);
  assert.equal(live(), before + 1);
  t.dispose();
  t.dispose();
  assert.equal(live(), before + 1, 'dispose is idempotent');
  assert.equal(t.toString(), 'Tensor(disposed)');
  throwsTorch(() => t.add(1), { code: 'ERR_ARG', op: 'add', message: /disposed/ });
  throwsTorch(() => v.add(t), { code: 'ERR_ARG', message: /disposed/ });
  throwsTorch(() => torch.cat([v, t]), { message: /disposed/ });
  assert.throws(() => t.shape, /disposed/);
  assert.throws(() => t.data(), /disposed/);
  // A view keeps the storage alive after its base is disposed.
  assert.deepEqual(values(v), [1, 1]);
  v.dispose();
  assert.equal(live(), before);
});

test('toFloat32Array / toFloat64Array of another dtype free their converted copy at once, outside any scope too', () => {
  const x = torch.tensor([1, 2, 3], { dtype: 'int32' });
  const before = live();
  assert.deepEqual(Array.from(x.toFloat32Array()), [1, 2, 3]);
  assert.equal(live(), before, 'toFloat32Array left its float32 copy alive');
  assert.deepEqual(Array.from(x.toFloat64Array()), [1, 2, 3]);
  assert.equal(live(), before, 'toFloat64Array left its float64 copy alive');
  x.dispose();
});

test('using / Symbol.dispose frees at block end', () => {
  const before = live();
  let outer: Tensor | undefined;
  {
    using t = torch.ones([3]);
    outer = t;
    assert.equal(live(), before + 1);
    assert.equal(t.isDisposed, false);
  }
  assert.equal(outer!.isDisposed, true);
  assert.equal(live(), before);
  const t2 = torch.zeros([1]);
  t2[Symbol.dispose]();
  assert.equal(t2.isDisposed, true);
  // An exception inside the block still disposes.
  let inner: Tensor | undefined;
  assert.throws(() => {
    using x = torch.ones([2]);
    inner = x;
    throw new Error('boom');
  }, /boom/);
  assert.equal(inner!.isDisposed, true);
  assert.equal(live(), before);
});

test('scope: frees inner tensors, keeps returned ones (tensor, array, object, Map), nests', () => {
  const before = live();
  const outside = torch.ones([2]);
  let inner: Tensor[] = [];
  const r = torch.scope(() => {
    const a = outside.add(1);
    const b = a.mul(2);
    inner = [a, b];
    return b.sum();
  });
  assert.equal(inner[0].isDisposed, true);
  assert.equal(inner[1].isDisposed, true);
  assert.equal(outside.isDisposed, false, 'tensors created before the scope are not its own');
  assert.equal(r.isDisposed, false);
  assert.equal(r.item(), 8);
  assert.equal(live(), before + 2);
  r.dispose();

  // Arrays, plain objects and Maps (nested) are searched.
  const res = torch.scope(() => {
    const x = torch.ones([1]);
    const y = torch.zeros([1]);
    const z = torch.full([1], 3);
    const w = torch.full([1], 4);
    torch.full([1], 5); // dropped
    return { list: [x, { deep: y }], map: new Map([['z', z]]), n: 1, w };
  });
  assert.equal(live(), before + 1 + 4);
  assert.deepEqual(
    [res.list[0] as Tensor, (res.list[1] as { deep: Tensor }).deep, res.map.get('z')!, res.w].map((t) => t.item()),
    [1, 0, 3, 4],
  );
  for (const t of [res.list[0] as Tensor, (res.list[1] as { deep: Tensor }).deep, res.map.get('z')!, res.w]) t.dispose();

  // A value that refers to itself (a parent link, a cache) is searched once, not forever.
  const cyclic = torch.scope(() => {
    const node: { t: Tensor; self?: unknown; list: unknown[] } = { t: torch.ones([1]), list: [] };
    node.self = node;
    node.list.push(node, node.list);
    return node;
  });
  assert.equal(cyclic.t.isDisposed, false);
  cyclic.t.dispose();

  // Nested: what the inner scope returns moves to the outer scope, which frees it unless returned.
  let movedUp: Tensor | undefined;
  let innerOnly: Tensor | undefined;
  const depth0 = torch.scopeDepth();
  const out = torch.scope(() => {
    assert.equal(torch.scopeDepth(), depth0 + 1);
    movedUp = torch.scope(() => {
      assert.equal(torch.scopeDepth(), depth0 + 2);
      innerOnly = torch.ones([1]);
      return torch.zeros([1]);
    });
    assert.equal(innerOnly!.isDisposed, true);
    assert.equal(movedUp.isDisposed, false);
    return movedUp.add(1);
  });
  assert.equal(torch.scopeDepth(), depth0);
  assert.equal(movedUp!.isDisposed, true, 'the outer scope frees what the inner one returned');
  assert.equal(out.item(), 1);
  out.dispose();

  // keep() exempts a tensor from every scope.
  let kept: Tensor | undefined;
  torch.scope(() => {
    kept = torch.keep(torch.ones([1]));
    torch.scope(() => {
      kept!.add(1);
    });
  });
  assert.equal(kept!.isDisposed, false, 'a kept tensor outlives its scopes');
  assert.equal(live(), before + 2);
  kept!.dispose();
  // Exceptions: everything created inside is freed, the depth is restored, the error propagates.
  let created: Tensor | undefined;
  assert.throws(
    () =>
      torch.scope(() => {
        created = torch.ones([1]);
        throw new Error('inside');
      }),
    /inside/,
  );
  assert.equal(created!.isDisposed, true);
  assert.equal(torch.scopeDepth(), depth0);
  outside.dispose();
  assert.equal(live(), before);
});

test('scope: a plain object without a prototype (Object.create(null), a dictionary of names) is searched as any plain object, its tensors kept', () => {
  const before = live();
  const r = torch.scope(() => {
    const byName = Object.create(null) as Record<string, Tensor>;
    byName.weight = torch.ones([2]);
    byName['constructor'] = torch.zeros([1]); // a key that is no trouble in a dictionary without a prototype
    return { byName };
  });
  assert.equal(r.byName.weight.isDisposed, false);
  assert.equal(r.byName['constructor'].isDisposed, false);
  assert.equal(
    torch.scope(() => r.byName.weight.sum().item()),
    2,
  );
  for (const t of Object.values(r.byName)) t.dispose();
  assert.equal(live(), before);
});

test('scope: rejects async functions and frees what they created before the first await', async () => {
  const before = live();
  let made: Tensor | undefined;
  assert.throws(
    () =>
      torch.scope((async () => {
        made = torch.ones([1]);
        await null;
        return made;
      }) as unknown as () => Tensor),
    /Promise|synchronous/,
  );
  assert.equal(made!.isDisposed, true);
  assert.equal(torch.scopeDepth(), 0);
  await new Promise((r) => setImmediate(r));
  assert.equal(live(), before);
});

test('scope: an async function that goes on using its tensors after the refusal rejects quietly, not as an unhandled rejection that ends the process', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => void unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    assert.throws(
      () =>
        torch.scope((async () => {
          const made = torch.ones([1]);
          await null;
          return made.add(1); // disposed by the scope's refusal: "tensor was disposed"
        }) as unknown as () => Tensor),
      /Promise|synchronous/,
    );
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('noGrad / enableGrad: grad mode on and off, restored after exceptions', () => {
  noLeak(() => {
    const w = torch.ones([3], { requiresGrad: true });
    assert.equal(torch.isGradEnabled(), true);
    const y = torch.noGrad(() => {
      assert.equal(torch.isGradEnabled(), false);
      const inner = torch.enableGrad(() => {
        assert.equal(torch.isGradEnabled(), true);
        return w.mul(2);
      });
      assert.equal(inner.requiresGrad, true);
      assert.equal(torch.isGradEnabled(), false);
      return w.mul(2);
    });
    assert.equal(y.requiresGrad, false);
    assert.equal(torch.isGradEnabled(), true);
    assert.throws(
      () =>
        torch.noGrad(() => {
          throw new Error('x');
        }),
      /x/,
    );
    assert.equal(torch.isGradEnabled(), true);
    assert.throws(() => torch.noGrad((async () => 1) as unknown as () => number), /synchronous/);
    assert.equal(torch.isGradEnabled(), true);
    assert.equal(w.mul(2).requiresGrad, true);
  });
});

test('autograd: backward, grad accumulation, detach, leaves, retainGrad, retainGraph, explicit gradient', () => {
  noLeak(() => {
    const x = torch.tensor([1, 2, 3], { dtype: 'float64', requiresGrad: true });
    assert.equal(x.isLeaf, true);
    assert.equal(x.grad, null);
    const y = x.mul(x).sum();
    assert.equal(y.isLeaf, false);
    y.backward(undefined, { retainGraph: true });
    assert.deepEqual(values(x.grad!), [2, 4, 6]);
    y.backward();
    assert.deepEqual(values(x.grad!), [4, 8, 12], 'gradients accumulate');
    throwsTorch(() => y.backward(), { code: 'ERR_TORCH', op: 'backward', message: /second time/ });
    x.grad = null;
    assert.equal(x.grad, null);
    const h = x.mul(3);
    h.retainGrad();
    h.backward(torch.tensor([1, 0, -1], { dtype: 'float64' }));
    assert.deepEqual(values(h.grad!), [1, 0, -1]);
    assert.deepEqual(values(x.grad!), [3, 0, -3]);
    const d = x.detach();
    assert.equal(d.requiresGrad, false);
    d.add_(1);
    assert.deepEqual(values(x), [2, 3, 4], 'detach shares storage');
    x.grad = torch.zeros([3], { dtype: 'float64' });
    assert.deepEqual(values(x.grad!), [0, 0, 0]);
    x.requiresGrad = false;
    assert.equal(x.requiresGrad, false);
    assert.equal(x.requiresGrad_(), x, 'requiresGrad_ returns the tensor');
    assert.equal(x.requiresGrad, true, 'requiresGrad_() with no argument switches it on');
    x.requiresGrad_(false);
    assert.equal(x.requiresGrad, false);
  });
});

// ---------------------------------------------------------------- in-place ops

test('grad: a gradient of another shape or dtype is refused, naming both; null clears it', () => {
  torch.scope(() => {
    const t = torch.zeros([2, 3]);
    throwsTorch(
      () => {
        t.grad = torch.zeros([3, 2]);
      },
      { code: 'ERR_ARG', op: 'setGrad', message: /^setGrad: gradient must match the tensor: tensor \[2, 3\] float32 \S+, gradient \[3, 2\] float32 \S+$/ },
    );
    throwsTorch(
      () => {
        t.grad = torch.zeros([2, 3], { dtype: 'float64' });
      },
      { code: 'ERR_ARG', op: 'setGrad', message: /tensor \[2, 3\] float32 \S+, gradient \[2, 3\] float64/ },
    );
    assert.equal(t.grad, null);
    t.grad = torch.ones([2, 3]);
    assert.deepEqual(t.grad!.tolist(), [
      [1, 1, 1],
      [1, 1, 1],
    ]);
    t.grad = null;
    assert.equal(t.grad, null);
  });
});

test('in-place ops: values, chaining, views, and autograd rules', () => {
  noLeak(() => {
    const t = torch.tensor([1, 2, 3, 4], { dtype: 'float64' });
    const other = torch.tensor([4, 3, 2, 1], { dtype: 'float64' });
    assert.equal(t.add_(1), t, 'in-place ops return this');
    assert.deepEqual(values(t), [2, 3, 4, 5]);
    t.add_(other, 2);
    assert.deepEqual(values(t), [10, 9, 8, 7]);
    t.sub_(other);
    assert.deepEqual(values(t), [6, 6, 6, 6]);
    t.sub_(1, 2).mul_(2);
    assert.deepEqual(values(t), [8, 8, 8, 8]);
    t.mul_(other).div_(2);
    assert.deepEqual(values(t), [16, 12, 8, 4]);
    t.div_(other);
    assert.deepEqual(values(t), [4, 4, 4, 4]);
    t.addcmul_(other, other, 0.5);
    assert.deepEqual(values(t), [12, 8.5, 6, 4.5]);
    t.addcdiv_(other, other, 2);
    assert.deepEqual(values(t), [14, 10.5, 8, 6.5]);
    // value defaults to 1
    const [p, q] = [torch.tensor([3, 4], { dtype: 'float64' }), torch.tensor([2, 8], { dtype: 'float64' })];
    assert.deepEqual(values(torch.tensor([1, 2], { dtype: 'float64' }).addcdiv_(p, q)), [2.5, 2.5]);
    assert.deepEqual(values(torch.tensor([1, 2], { dtype: 'float64' }).addcmul_(p, q)), [7, 34]);
    t.lerp_(other, 0.5);
    assert.deepEqual(values(t), [9, 6.75, 5, 3.75]);
    t.lerp_(other, torch.tensor([1, 0, 1, 0], { dtype: 'float64' }));
    assert.deepEqual(values(t), [4, 6.75, 2, 3.75]);
    t.clamp_(2.5, 5);
    assert.deepEqual(values(t), [4, 5, 2.5, 3.75]);
    t.clamp_(null, 3);
    assert.deepEqual(values(t), [3, 3, 2.5, 3]);
    t.maskedFill_(torch.tensor([true, false, false, true]), -1);
    assert.deepEqual(values(t), [-1, 3, 2.5, -1]);
    t.copy_(other);
    assert.deepEqual(values(t), [4, 3, 2, 1]);
    t.copy_(torch.tensor([7], { dtype: 'float32' }));
    assert.deepEqual(values(t), [7, 7, 7, 7], 'copy_ broadcasts and converts');
    t.fill_(2).zero_();
    assert.deepEqual(values(t), [0, 0, 0, 0]);
    // In-place on a view writes through to the base.
    const m = torch.zeros([2, 3]);
    m.select(0, 1).fill_(5);
    m.narrow(1, 0, 1).add_(1);
    assert.deepEqual(m.tolist(), [
      [1, 0, 0],
      [6, 5, 5],
    ]);
    m.T.mul_(2);
    assert.deepEqual(m.tolist(), [
      [2, 0, 0],
      [12, 10, 10],
    ]);
    // Autograd: in-place on a leaf that requires grad is refused outside noGrad, allowed inside (optimisers).
    const w = torch.ones([3], { requiresGrad: true });
    throwsTorch(() => w.sub_(0.1), { code: 'ERR_TORCH', op: 'sub_', message: /leaf Variable that requires grad/ });
    w.mul(w).sum().backward();
    torch.noGrad(() => {
      w.sub_(w.grad!, 0.5);
    });
    assert.deepEqual(values(w), [0, 0, 0]);
    assert.equal(w.requiresGrad, true);
    assert.equal(w.isLeaf, true);
    // Modifying a tensor needed by backward is detected by libtorch's version counter.
    const a = torch.ones([2], { requiresGrad: true });
    const b = a.mul(2);
    const c = b.sin(); // sin saves its input b for backward
    b.add_(1);
    throwsTorch(() => c.sum().backward(), { code: 'ERR_TORCH', op: 'backward', message: /modified by an inplace operation/ });
  });
});

test('conversion: to(), clone, contiguous, memoryStats bytes are counted once per storage', { skip: cpuOnly }, () => {
  noLeak(() => {
    const t = torch.ones([256], { dtype: 'float32' });
    const base = torch.memoryStats().liveBytes;
    const view = t.narrow(0, 0, 10).reshape(2, 5);
    assert.equal(torch.memoryStats().liveBytes, base, 'views add no bytes');
    const c = t.clone();
    assert.equal(torch.memoryStats().liveBytes, base + 1024);
    c.add_(1);
    assert.equal(values(t)[0], 1, 'clone is independent');
    const d = t.to({ dtype: 'float64' });
    assert.equal(d.dtype, 'float64');
    assert.equal(torch.memoryStats().liveBytes, base + 1024 + 2048);
    const forced = t.to({ dtype: 'float32', copy: true });
    forced.fill_(0);
    assert.equal(values(t)[0], 1, 'copy: true copies');
    torch.scope(() => {
      assert.equal(t.cpu().device, 'cpu');
      assert.equal(t.double().dtype, 'float64');
      assert.equal(t.long().dtype, 'int64');
      assert.equal(t.bool().dtype, 'bool');
      assert.equal(d.float().dtype, 'float32');
    });
    assert.deepEqual(view.shape, [2, 5]);
    forced.dispose();
    view.dispose();
    c.dispose();
    d.dispose();
    assert.equal(torch.memoryStats().liveBytes, base);
  });
});

// Found while writing these tests: liveBytes counts bytes per handle for aliases that are not
// libtorch "views" (detach(), a no-op to()/contiguous(), each .grad wrapper), so one storage is
// counted (and reported to V8 as external memory) several times.
test('memoryStats: aliases of one storage (detach, no-op to/contiguous, .grad) add no bytes', () => {
  noLeak(() => {
    const t = torch.ones([256], { requiresGrad: true });
    t.mul(t).sum().backward();
    const grad = t.grad!; // the gradient is a storage of its own: counted once, here
    const base = torch.memoryStats().liveBytes;
    const aliases = [grad, t.detach(), t.to({ dtype: 'float32' }), t.contiguous(), t.grad!, t.grad!];
    assert.equal(torch.memoryStats().liveBytes - base, 0, `aliases added ${torch.memoryStats().liveBytes - base} bytes (expected 0)`);
    for (const a of aliases) a.dispose();
  });
});

test('memoryStats: setData (Module.to) counts the storage the tensor has now, for it and its aliases', () => {
  noLeak(() => {
    const base = torch.memoryStats().liveBytes;
    const x = torch.zeros([1 << 16]); // 256 KiB of float32
    const alias = x.contiguous(); // the same tensor: its handle counts x's storage too
    const moved = x.to({ dtype: 'float64' });
    x.setData(moved);
    moved.dispose();
    // x and its alias hold the 512 KiB float64 storage; the float32 one is gone (it was still counted, the new one not)
    assert.equal(torch.memoryStats().liveBytes - base, 8 << 16);
    x.dispose();
    assert.equal(torch.memoryStats().liveBytes - base, 8 << 16);
    const small = torch.zeros([128]); // 512 bytes: not counted, until setData gives it 1 KiB
    const wide = small.to({ dtype: 'float64' });
    small.setData(wide);
    wide.dispose();
    assert.equal(torch.memoryStats().liveBytes - base, (8 << 16) + 1024);
    alias.dispose();
    small.dispose();
    assert.equal(torch.memoryStats().liveBytes - base, 0);
  });
});

// Found while writing these tests: integer lists (shapes, dims) truncate non-integers silently,
// while single integer arguments are checked (argInt). PyTorch raises a TypeError here.
test('errors: a non-integer in a shape or dim list is rejected, not truncated', () => {
  noLeak(() => {
    throwsTorch(() => torch.zeros([2.7]), { code: 'ERR_ARG' });
    throwsTorch(() => torch.ones([12]).reshape(1.5, 8), { code: 'ERR_ARG', op: 'reshape' });
    throwsTorch(() => torch.ones([2, 3]).sum([0.5]), { code: 'ERR_ARG', op: 'sum' });
  });
});

test('backends: cudnn.benchmark, cudnn.allowTF32 and cuda.matmul.allowTF32 read back what is set (PyTorch defaults)', () => {
  const b = torch.backends;
  const was = [b.cudnn.benchmark, b.cudnn.allowTF32, b.cuda.matmul.allowTF32];
  assert.deepEqual(was, [false, true, false], "PyTorch's defaults");
  for (const on of [true, false]) {
    b.cudnn.benchmark = on;
    b.cudnn.allowTF32 = on;
    b.cuda.matmul.allowTF32 = on;
    assert.deepEqual([b.cudnn.benchmark, b.cudnn.allowTF32, b.cuda.matmul.allowTF32], [on, on, on]);
  }
  [b.cudnn.benchmark, b.cudnn.allowTF32, b.cuda.matmul.allowTF32] = was;
});

test('threads: setNumThreads / getNumThreads', () => {
  const prev = torch.getNumThreads();
  torch.setNumThreads(2);
  assert.equal(torch.getNumThreads(), 2);
  torch.setNumThreads(prev);
  assert.equal(torch.getNumThreads(), prev);
  assert.throws(() => torch.setNumThreads(1.5), RangeError);
  // libtorch takes an int: 2^32 + 1 was wrapped to 1 thread
  assert.throws(() => torch.setNumThreads(2 ** 32 + 1), /setNumThreads: expected a thread count in 1\.\.2147483647, got 4294967297/);
  assert.equal(torch.getNumThreads(), prev);
});

/** Runs `script` in a new node process (a fresh addon load) with `env` added, and returns the JSON it printed. */
function printedJson(script: string, env: NodeJS.ProcessEnv): unknown {
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test("SEMAIM_CPU_CACHE_MB: a malformed value fails the addon's load naming it (strtoull read -1 as no cap, abc as 0)", () => {
  // One child per allocator install (once per process): it loads the addon with each value in turn (a
  // failed load installs nothing, so the next value is read again) and reports the cache after a 1 MiB block.
  const loads = (...values: string[]) => {
    const script = `const out = [];
      for (const v of JSON.parse(process.env.CACHE_MB_VALUES)) {
        process.env.SEMAIM_CPU_CACHE_MB = v;
        const m = { exports: {} };
        try {
          process.dlopen(m, ${JSON.stringify(resolve(addonPath))});
          m.exports.dispose(m.exports.zeros([1 << 18]));
          out.push(m.exports.cpuAllocatorStats().cachedBytes);
        } catch (e) { out.push(e.message); }
      }
      console.log(JSON.stringify(out));`;
    return printedJson(script, { SEMAIM_CPU_ALLOCATOR: '', CACHE_MB_VALUES: JSON.stringify(values) }) as (number | string)[];
  };
  const bad = ['-1', 'abc', '4GB', ' 8', '99999999999999999999'];
  assert.deepEqual(loads(...bad, '1'), [...bad.map((v) => `SEMAIM_CPU_CACHE_MB=${v}: expected a whole number of MiB (0 turns the CPU cache off)`), 1 << 20]);
  assert.deepEqual(loads('0'), [0]); // no cache
  assert.deepEqual(loads(''), [1 << 20]); // empty: the default, 4096
});

test('cpuAllocator: large blocks are page-rounded, counted live, cached up to the cap and reused; emptyCache unmaps them; system turns it off', () => {
  // In a child with a 1 MiB cap (a fresh allocator, so the counts are this script's): every step reports the
  // change in each statistic since the step before.
  const script = `const m = { exports: {} };
    process.dlopen(m, ${JSON.stringify(resolve(addonPath))});
    const n = m.exports;
    const out = [n.cpuAllocatorStats().enabled];
    if (out[0]) {
      let last = n.cpuAllocatorStats();
      const step = () => {
        const s = n.cpuAllocatorStats();
        const d = {};
        for (const k of ['liveBytes', 'cachedBytes', 'mappedBytes', 'hits', 'misses']) d[k] = s[k] - last[k];
        d.peakIsLive = s.peakLiveBytes >= s.liveBytes && s.peakLiveBytes > 0;
        last = s;
        out.push(d);
      };
      n.cpuEmptyCache(); step();
      const a = n.zeros([16384], 'float32'); step(); // 64 KiB: the smallest cached block, a page multiple
      const b = n.zeros([16385], 'float32'); step(); // 64 KiB + 4 bytes: rounded up to the next page
      n.dispose(a); step();
      const c = n.zeros([16384], 'float32'); step(); // reuses a's block
      n.dispose(b); n.dispose(c); step();
      n.cpuEmptyCache(); step();
      const whole = n.zeros([262144], 'float32'); step(); // 1 MiB: exactly the cap
      n.dispose(whole); step();
      n.cpuEmptyCache(); step();
    }
    console.log(JSON.stringify(out));`;
  const run = (allocator: string) => printedJson(script, { SEMAIM_CPU_ALLOCATOR: allocator, SEMAIM_CPU_CACHE_MB: '1' }) as unknown[];
  const K = 65536;
  const P = 4096;
  const d = (liveBytes: number, cachedBytes: number, mappedBytes: number, hits: number, misses: number) => ({
    liveBytes,
    cachedBytes,
    mappedBytes,
    hits,
    misses,
    peakIsLive: true,
  });
  const [enabled, empty, ...steps] = run('');
  assert.equal(enabled, true);
  assert.equal((empty as { cachedBytes: number }).cachedBytes, 0);
  assert.deepEqual(steps, [
    d(K, 0, K, 0, 1), // a: mapped, live
    d(K + P, 0, K + P, 0, 1), // b
    d(-K, K, 0, 0, 0), // a freed into the cache
    d(K, -K, 0, 1, 0), // c: a cache hit, nothing mapped
    d(-2 * K - P, 2 * K + P, 0, 0, 0),
    d(0, -2 * K - P, -2 * K - P, 0, 0), // emptyCache unmaps the cached blocks
    d(1 << 20, 0, 1 << 20, 0, 1),
    d(-(1 << 20), 1 << 20, 0, 0, 0), // a block of exactly the cap is cached
    d(0, -(1 << 20), -(1 << 20), 0, 0),
  ]);
  assert.deepEqual(run('system'), [false]);
});

test('worker_threads: the addon loads and runs in workers (context-aware), the main thread is unaffected', async () => {
  const torchPath = JSON.stringify(join(__dirname, '..', '..', 'src', 'torch'));
  const code = `const { parentPort, workerData } = require('node:worker_threads');
    const torch = require(${torchPath});
    torch.setNumThreads(1);
    const r = torch.scope(() => torch.arange(0, workerData, 1, { dtype: 'float64' }).mul(2).sum().item());
    let code = '';
    try { torch.ones([2]).add(torch.ones([3])); } catch (e) { code = e.code; }
    parentPort.postMessage({ r, code, live: torch.memoryStats().liveTensors });`;
  const run = (n: number): Promise<{ r: number; code: string; live: number }> =>
    new Promise((resolve, reject) => {
      // Resolve at exit (not at the message) so the worker's teardown is over before the next test.
      const w = new Worker(code, { eval: true, workerData: n });
      let msg: { r: number; code: string; live: number } | undefined;
      w.once('message', (m) => {
        msg = m;
      });
      w.once('error', reject);
      w.once('exit', (c) => (c === 0 && msg ? resolve(msg) : reject(new Error(`worker exited with ${c}`))));
    });
  const [a, b] = await Promise.all([run(10), run(100)]);
  assert.equal(a.r, 90);
  assert.equal(b.r, 9900);
  assert.equal(a.code, 'ERR_TORCH');
  noLeak(() => assert.deepEqual(values(torch.ones([2]).add(1)), [2, 2]));
});

test('assertClose helper sanity', () => {
  noLeak(() => {
    assertClose(torch.tensor([1, 2]), [1, 2 + 1e-9], 1e-6);
    assert.throws(() => assertClose(torch.tensor([1, 2]), [1, 2.1], 1e-6));
  });
});

test('autocast: regions nest and restore the previous state; enabled: false turns it off inside', () => {
  const dev = torch.deviceType(torch.getDefaultDevice());
  torch.scope(() => {
    const w = torch.randn([8, 8]);
    const x = torch.randn([2, 8]);
    const before = torch.autocastState(dev).enabled;
    const dtypes = torch.autocast({ device: dev, dtype: 'bfloat16' }, () => {
      const outer1 = x.matmul(w).dtype;
      const off = torch.autocast({ device: dev, enabled: false }, () => {
        assert.equal(torch.autocastState(dev).enabled, false);
        return x.matmul(w).dtype;
      });
      const inner = torch.autocast({ device: dev, dtype: 'bfloat16' }, () => x.matmul(w).dtype);
      const outer2 = x.matmul(w).dtype; // still on after both inner regions ended
      return [outer1, off, inner, outer2];
    });
    assert.deepEqual(dtypes, ['bfloat16', 'float32', 'bfloat16', 'bfloat16']);
    assert.equal(torch.autocastState(dev).enabled, before);
    // The dtype given is the one set, and the previous one comes back after the region (libtorch 1.13 refuses
    // float16 on the CPU, which shows that it reached libtorch).
    const prev = torch.autocastState(dev).dtype;
    const other = prev === 'bfloat16' ? 'float16' : 'bfloat16';
    let inside: string | undefined;
    try {
      inside = torch.autocast({ device: dev, dtype: other }, () => torch.autocastState(dev).dtype);
    } catch (e) {
      assert.match((e as Error).message, /only support Bfloat16/);
    }
    if (inside !== undefined) assert.equal(inside, other);
    assert.deepEqual(torch.autocastState(dev), { enabled: before, dtype: prev });
    assert.equal(x.matmul(w).dtype, 'float32');
  });
});

// ---------------------------------------------------------------- PyTorch 1.13 parity (audit findings)

test('a BigInt scalar is a number (exact in the safe integer range), never a tensor handle', () => {
  torch.scope(() => {
    const others = [1, 2, 3, 4, 5, 6].map((v) => torch.full([2], 100 * v)); // live tensors in low handle slots
    const x = torch.tensor([10, 20]);
    const c = torch.tensor([true, false]);
    assert.deepEqual(x.mul(2n).tolist(), [20, 40]);
    for (let k = 0n; k < 40n; k++) assert.deepEqual(x.add(k).tolist(), [10 + Number(k), 20 + Number(k)]);
    assert.deepEqual(x.sub_(3n).tolist(), [7, 17]);
    assert.deepEqual(x.eq(7n).tolist(), [1, 0]);
    const i = torch.tensor(BigInt64Array.from([5n, -6n]));
    assert.equal(i.mul(3n).dtype, 'int64');
    assert.deepEqual(i.mul(-3n).tolist(), [-15, 18]);
    assert.deepEqual(torch.where(c, 1n, 0).tolist(), [1, 0]);
    assert.deepEqual(torch.where(c, x, -1n).tolist(), [7, -1]);
    assert.deepEqual(x.clone().fill_(4n).tolist(), [4, 4]);
    assert.deepEqual(x.maskedFill(c, 9n).tolist(), [9, 17]);
    assert.deepEqual(x.clamp(0n, 10n).tolist(), [7, 10]);
    assert.deepEqual(torch.full([2], 3n).tolist(), [3, 3]);
    // Beyond ±(2^53 - 1) a BigInt is refused, not rounded.
    assert.throws(() => x.mul(2n ** 53n), /safe integer range/);
    assert.throws(() => torch.where(c, -(2n ** 60n), 0), /safe integer range/);
    assert.throws(() => torch.full([1], 2n ** 64n), /safe integer range/);
    assert.deepEqual(others[1].tolist(), [200, 200]);
  });
});

test('sum, mean, norm, any and all with dim omitted and keepdim keep every dimension', () => {
  torch.scope(() => {
    const a = torch.tensor([
      [3, 4],
      [1, 2],
    ]);
    assert.deepEqual(a.sum(undefined, true).tolist(), [[10]]);
    assert.deepEqual(a.mean(undefined, true).tolist(), [[2.5]]);
    const n = a.norm(2, undefined, true);
    assert.deepEqual(n.shape, [1, 1]);
    assert.ok(Math.abs(n.item() - 5.4772257804870605) < 1e-6); // torch: a.norm(2, None, True)
    assert.deepEqual(a.sum().shape, []);
    assert.deepEqual(a.sum(undefined, true, 'float64').dtype, 'float64');
    // every reduction whose dim may be omitted: any and all as well (a bool tensor [[true]])
    const b = a.gt(1);
    assert.deepEqual([b.any(undefined, true).tolist(), b.all(undefined, true).tolist()], [[[1]], [[0]]]);
    assert.deepEqual(
      [a.var(undefined, true, true).shape, a.std(undefined, true, true).shape, a.argmax(undefined, true).shape],
      [
        [1, 1],
        [1, 1],
        [1, 1],
      ],
    );
  });
});

test('any and all with dim omitted and keepdim keep every dimension, as sum and mean do (keepdim was ignored)', () => {
  torch.scope(() => {
    const a = torch.tensor([
      [true, false],
      [true, true],
    ]);
    assert.deepEqual(a.any(undefined, true).shape, [1, 1]);
    assert.deepEqual(a.all(undefined, true).shape, [1, 1]);
    assert.equal(a.any(undefined, true).reshape([]).item(), 1);
    assert.equal(a.all(undefined, true).reshape([]).item(), 0);
    assert.deepEqual(a.any().shape, []);
    assert.deepEqual(torch.tensor(true).all(undefined, true).shape, []);
  });
});

test('clamp keeps integer tensors integral with integral bounds (bool gives int64), as PyTorch', () => {
  torch.scope(() => {
    const i = torch.tensor([-3, 0, 3], { dtype: 'int64' });
    const c = i.clamp(-1, 1);
    assert.equal(c.dtype, 'int64');
    assert.deepEqual(c.tolist(), [-1, 0, 1]);
    const d = i.clone().clamp_(-1, 1);
    assert.equal(d.dtype, 'int64');
    assert.deepEqual(d.tolist(), [-1, 0, 1]);
    assert.deepEqual(i.clamp(null, 2).tolist(), [-3, 0, 2]);
    const f = i.clamp(-1.5, 1.5); // a fractional bound promotes, as in PyTorch
    assert.equal(f.dtype, 'float32');
    assert.deepEqual(f.tolist(), [-1.5, 0, 1.5]);
    const b = torch.tensor([true, false]).clamp(0, 1);
    assert.equal(b.dtype, 'int64');
    assert.deepEqual(b.tolist(), [1, 0]);
    const u = torch.tensor([1, 200], { dtype: 'uint8' }).clamp(0, 100);
    assert.equal(u.dtype, 'uint8');
    assert.deepEqual(u.tolist(), [1, 100]);
    assert.deepEqual(torch.tensor([1.5, 200]).clamp(0, 100).tolist(), [1.5, 100]);
  });
});

test('tensor() from nested arrays: ragged data and out-of-range integers are refused; bool and mixed data as documented', () => {
  assert.throws(() => torch.tensor([[1], [2, 3], []]), /expected sequence of length 1 at dim 1 \(got 2\)/);
  assert.throws(() => torch.tensor([[], [1]]), /expected sequence of length 0 at dim 1 \(got 1\)/);
  assert.throws(() => torch.tensor([[1, 2], 3] as never), /expected a sequence at dim 1/);
  assert.throws(() => torch.tensor([1, [2]]), /expected a number at dim 1/);
  // a shape given for nested data reshapes it: ragged data is still refused, not flattened into it
  assert.throws(() => torch.tensor([[1, 2], [3]], { shape: [3] }), /expected sequence of length 2 at dim 1 \(got 1\)/);
  assert.throws(() => torch.tensor([3e9], { dtype: 'int32' }), /value 3000000000 cannot be converted to type int32 without overflow/);
  assert.throws(() => torch.tensor([300, -1], { dtype: 'uint8' }), /cannot be converted to type uint8/);
  assert.throws(() => torch.tensor([-1], { dtype: 'uint8' }), RangeError);
  assert.throws(() => torch.tensor([128], { dtype: 'int8' }), RangeError);
  // both ends of each range are values of the dtype
  for (const [dtype, lo, hi] of [
    ['int32', -(2 ** 31), 2 ** 31 - 1],
    ['int16', -32768, 32767],
    ['int8', -128, 127],
    ['uint8', 0, 255],
  ] as const) {
    assert.deepEqual(values(torch.tensor([lo, hi], { dtype })), [lo, hi], dtype);
  }
  assert.throws(() => torch.tensor([255.5], { dtype: 'uint8' }), RangeError);
  assert.throws(() => torch.tensor([NaN], { dtype: 'int64' }), RangeError);
  assert.throws(() => torch.tensor([2 ** 63], { dtype: 'int64' }), RangeError);
  torch.scope(() => {
    // Fractions truncate toward zero for integer dtypes, as PyTorch.
    assert.deepEqual(torch.tensor([-2.7, 2.7], { dtype: 'int32' }).tolist(), [-2, 2]);
    assert.deepEqual(torch.tensor([-2.7, 2.7], { dtype: 'int64' }).tolist(), [-2, 2]);
    assert.equal(torch.tensor([-(2 ** 63)], { dtype: 'int64' }).data()[0], -(2n ** 63n));
    assert.deepEqual(Array.from(torch.tensor([NaN, 0, 2, -0.5], { dtype: 'bool' }).data() as Uint8Array), [1, 0, 1, 1]);
    const mixed = torch.tensor([true, 2]);
    assert.equal(mixed.dtype, 'float32'); // numbers give float32 (JS cannot tell 2 from 2.0)
    assert.deepEqual(mixed.tolist(), [1, 2]);
    assert.equal(torch.tensor([[true], [false]]).dtype, 'bool');
    assert.equal(torch.tensor([false, 1]).dtype, 'float32');
    assert.deepEqual(torch.tensor([]).shape, [0]);
    assert.deepEqual(torch.tensor([[], []]).shape, [2, 0]);
  });
});

test('tensor() from nested arrays keeps BigInt values exact as int64, up to 2^63 - 1, instead of rounding them through a number', () => {
  torch.scope(() => {
    const values = [2n ** 60n + 1n, 2n ** 63n - 1n, -(2n ** 63n), 5n];
    assert.deepEqual(Array.from(torch.tensor(values, { dtype: 'int64' }).data() as BigInt64Array), [2n ** 60n + 1n, 2n ** 63n - 1n, -(2n ** 63n), 5n]);
    assert.throws(() => torch.tensor([2n ** 63n], { dtype: 'int64' }), /cannot be converted to type int64 without overflow/);
    // without a dtype, BigInts are integers, as PyTorch's ints: int64, exact (they were float32, rounded)
    const inferred = torch.tensor([[2n ** 60n + 1n], [-3n]]);
    assert.equal(inferred.dtype, 'int64');
    assert.deepEqual(Array.from(inferred.data() as BigInt64Array), [2n ** 60n + 1n, -3n]);
    const filled = torch.full([2], 5n);
    assert.equal(filled.dtype, 'int64');
    assert.deepEqual(Array.from(filled.data() as BigInt64Array), [5n, 5n]);
    // mixed with numbers, as PyTorch's ints mixed with floats: float32
    assert.equal(torch.tensor([1n, 2.5]).dtype, 'float32');
  });
});

test('item() and tolist() refuse int64 values a number cannot hold instead of rounding them', () => {
  torch.scope(() => {
    const big = torch.tensor(BigInt64Array.from([9007199254740993n]));
    assert.throws(
      () => big.item(),
      (e: Error) => e instanceof RangeError && /9007199254740993/.test(e.message) && /\.data\(\)/.test(e.message),
    );
    assert.throws(
      () => big.tolist(),
      (e: Error) => e instanceof RangeError && /\.data\(\)/.test(e.message),
    );
    assert.throws(() => torch.tensor(BigInt64Array.from([1n, -(2n ** 62n)])).tolist(), RangeError);
    assert.equal(big.data()[0], 9007199254740993n);
    assert.equal(torch.tensor(BigInt64Array.from([-9007199254740991n])).item(), -9007199254740991);
    assert.equal(torch.tensor(BigInt64Array.from([9007199254740991n])).item(), 9007199254740991);
    assert.deepEqual(torch.tensor(BigInt64Array.from([9007199254740991n, -5n])).tolist(), [9007199254740991, -5]);
    // 2^53 is a double, but so is what 2^53 + 1 rounds to: the first value beyond the safe range is refused
    assert.throws(() => torch.tensor(BigInt64Array.from([2n ** 53n])).tolist(), RangeError);
    assert.throws(() => torch.tensor(BigInt64Array.from([-(2n ** 53n)])).tolist(), RangeError);
    assert.equal(torch.tensor([2.5]).item(), 2.5);
  });
});

test('T reverses every dimension (0-d and 1-d as they are), mT transposes the last two, as PyTorch', () => {
  torch.scope(() => {
    assert.deepEqual(torch.tensor([1, 2, 3]).T.tolist(), [1, 2, 3]);
    assert.deepEqual(torch.tensor(5).T.shape, []);
    const a = torch.arange(24).reshape(2, 3, 4);
    assert.deepEqual(a.T.shape, [4, 3, 2]);
    assert.deepEqual(a.T.tolist(), a.permute(2, 1, 0).tolist());
    assert.deepEqual(a.mT.shape, [2, 4, 3]);
    assert.deepEqual(a.mT.tolist(), a.transpose(1, 2).tolist());
    const m = torch.arange(6).reshape(2, 3);
    assert.deepEqual(m.T.tolist(), m.mT.tolist());
    assert.throws(() => torch.tensor([1, 2]).mT, /at least 2 dimensions/);
  });
});

test('full() with a boolean value and no dtype gives bool, as PyTorch; numbers stay float32', () => {
  torch.scope(() => {
    const b = torch.full([2], true);
    assert.equal(b.dtype, 'bool');
    assert.deepEqual(Array.from(b.data() as Uint8Array), [1, 1]);
    assert.equal(torch.full([2], false).dtype, 'bool');
    assert.equal(torch.full([2], 1).dtype, 'float32');
    assert.equal(torch.full([2], true, { dtype: 'float32' }).dtype, 'float32');
  });
});

test('index([]) is the whole tensor (a view, as x[()] in PyTorch)', () => {
  torch.scope(() => {
    const x = torch.tensor([1, 2, 3]);
    const y = x.index([]);
    assert.deepEqual(y.shape, [3]);
    y.mul_(2);
    assert.deepEqual(x.tolist(), [2, 4, 6]);
  });
});

test('interpolate refuses alignCorners with nearest and area, as PyTorch', () => {
  torch.scope(() => {
    const x = torch.ones([1, 1, 2, 2]);
    for (const mode of ['nearest', 'area'] as const) {
      assert.throws(() => F.interpolate(x, 3, mode, true), /align_corners\) option can only be set with the interpolating modes/);
      assert.throws(() => F.interpolate(x, 3, mode, false), /can only be set/);
      assert.deepEqual(F.interpolate(x, 3, mode).shape, [1, 1, 3, 3]);
    }
    assert.deepEqual(F.interpolate(x, 3, 'bilinear', true).shape, [1, 1, 3, 3]);
  });
});

test('errors name their op once, and a CUDA tensor on a libtorch without CUDA says so in one line', (t) => {
  assert.throws(
    () => F.interpolate(torch.zeros([1, 1, 4, 4]), [2, 2], 'bogus' as 'nearest'),
    (e: Error & { code?: string }) => e.code === 'ERR_ARG' && /^interpolate: mode must be/.test(e.message),
  );
  if (!/USE_CUDA=OFF/.test(torch.version().config)) return t.skip('this libtorch has CUDA');
  assert.throws(
    () => torch.randn([2], { device: 'cuda' }),
    (e: Error & { code?: string }) =>
      e.code === 'ERR_TORCH_NOT_IMPLEMENTED' &&
      /^randn: this libtorch was built without CUDA, so it has no CUDA tensors/.test(e.message) &&
      e.message.length < 200,
  );
});

test('isTorchError narrows an addon error to its code and op; other errors are not', () => {
  let caught: unknown;
  try {
    torch.zeros([2, 3]).matmul(torch.zeros([2, 3]));
  } catch (e) {
    caught = e;
  }
  assert.ok(torch.isTorchError(caught));
  assert.equal(caught.op, 'matmul');
  assert.ok(torch.TORCH_ERROR_CODES.includes(caught.code));
  assert.equal(torch.isTorchError(new Error('plain')), false);
  assert.equal(torch.isTorchError({ code: 'ERR_TORCH', op: 'x' }), false, 'an object that is not an Error');
  assert.equal(torch.isTorchError(Object.assign(new Error('no op'), { code: 'ERR_TORCH' })), false, 'an Error with a code but no op');
  assert.equal(torch.isTorchError(Object.assign(new Error('no code'), { op: 'matmul' })), false, 'an Error with an op but no code');
});

// ---------------------------------------------------------------- argument checks (audit of the low-level API)

test('fused.pixelTargets refuses patchSize <= 0 with an error instead of killing the process (SIGFPE)', () => {
  // The unchecked call divided by the patch size in C++: run it in a child so that a crash fails this test only.
  const script = `
    const torch = require(${JSON.stringify(join(__dirname, '..', '..', 'src', 'torch'))});
    for (const patchSize of [0, -2]) {
      try {
        torch.fused.pixelTargets(torch.randn([1, 3, 8, 8]), { patchSize, blurKernel: 0, blurSigma: 1, normPix: true });
        console.log('no error');
      } catch (e) {
        console.log(e.code, e.message);
      }
    }`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), [
    'ERR_ARG fusedPixelTargets: patchSize must be a positive integer, got 0',
    'ERR_ARG fusedPixelTargets: patchSize must be a positive integer, got -2',
  ]);
});

test('fused.pixelTargets refuses a blur with sigma <= 0 (it gave all-NaN targets); without a blur sigma is unused', () => {
  noLeak(() => {
    const images = torch.randn([1, 3, 8, 8]);
    for (const blurSigma of [0, -1, NaN]) {
      throwsTorch(() => torch.fused.pixelTargets(images, { patchSize: 4, blurKernel: 3, blurSigma, normPix: true }), {
        code: 'ERR_ARG',
        message: /^fusedPixelTargets: blurSigma must be a positive finite number when blurKernel > 0, got /,
      });
    }
    const t = torch.fused.pixelTargets(images, { patchSize: 4, blurKernel: 0, blurSigma: 0, normPix: true });
    assert.deepEqual(t.shape, [1, 4, 48]);
    assert.equal(t.isnan().any().item(), 0);
  });
});

test('keep() refuses what is not a Tensor or an array of Tensors at the call (the next sweep crashed the process)', async () => {
  const a = torch.ones([2]);
  const notTensors: [unknown, RegExp][] = [
    [{ a }, /got an Object$/],
    [new Map([['a', a]]), /got a Map$/],
    [undefined, /got undefined$/],
    [[a, { a }], /got an Object at index 1$/],
    [[a, 3], /got 3 at index 1$/],
    [() => a, /got a function$/],
  ];
  for (const [x, message] of notTensors) {
    assert.throws(
      () => torch.keep(x as Tensor),
      (e: Error) => e instanceof TypeError && /^keep\(\): expected a Tensor or an array of Tensors, /.test(e.message) && message.test(e.message),
    );
  }
  assert.equal(a.kept, false, 'nothing of a refused array is kept');
  await new Promise((r) => setImmediate(r)); // the nursery sweep runs (it threw on a kept non-tensor)
  assert.equal(torch.keep(a), a);
  assert.deepEqual(torch.keep([a]), [a]);
  a.dispose();
});

test('tensor() refuses values that are not numbers, booleans or bigints (they became NaN or 0)', () => {
  noLeak(() => {
    const refused: [unknown, RegExp][] = [
      [['1', 'x'], /got the string "1" at index \[0\]$/],
      [[null, undefined], /got null at index \[0\]$/],
      [[[1], [undefined]], /got undefined at index \[1\]\[0\]$/],
      [[{}], /got an Object at index \[0\]$/],
      [[new Float32Array(2)], /got a Float32Array at index \[0\]$/],
      [undefined, /got undefined$/],
    ];
    for (const [data, message] of refused) {
      assert.throws(
        () => torch.tensor(data as number[]),
        (e: Error) =>
          e instanceof TypeError && /^tensor\(\): expected numbers, booleans or nested arrays of them, got /.test(e.message) && message.test(e.message),
      );
      assert.throws(() => torch.tensor(data as number[], { shape: [2] }), TypeError, 'with a shape too');
    }
    const t = torch.ones([2, 2]);
    assert.throws(() => torch.tensor(t as unknown as number), /got a Tensor \(copy a tensor with clone\(\)\)$/);
    assert.deepEqual(torch.tensor([1, true, 2n] as unknown as number[]).tolist(), [1, 1, 2]); // a JS caller may pass a bigint
  });
});

test('tensor() from a typed array: Uint16Array only as half-float bits; conversion to an integer dtype is range-checked as for arrays', () => {
  noLeak(() => {
    // The raw bits of [1, 2] read as an int32 gave [131073].
    for (const dtype of ['int32', 'int16', 'float32'] as const) {
      assert.throws(
        () => torch.tensor(new Uint16Array([1, 2]), { dtype }),
        new RegExp(`^TypeError: tensor\\(\\): a Uint16Array holds float16 or bfloat16 bits: pass dtype 'float16' or 'bfloat16' \\(got '${dtype}'\\)$`),
      );
    }
    assert.deepEqual(values(torch.tensor(new Uint16Array([0x3c00]), { dtype: 'float16' })), [1]);
    assert.throws(() => torch.tensor(new Uint32Array([1]) as unknown as Float32Array), /^TypeError: a Uint32Array has no tensor dtype/);
    // A Float64Array to int32 gave the int32 minimum for 1e30 and NaN; the nested-array path refuses them.
    for (const v of [1e30, NaN, -Infinity, 2 ** 31]) {
      assert.throws(
        () => torch.tensor(new Float64Array([1, v]), { dtype: 'int32' }),
        new RegExp(`^RangeError: tensor\\(\\): value ${String(v).replace('+', '\\+')} cannot be converted to type int32 without overflow$`),
      );
      assert.throws(() => torch.tensor([1, v], { dtype: 'int32' }), /cannot be converted to type int32 without overflow/);
    }
    assert.throws(() => torch.tensor(new Int32Array([300]), { dtype: 'uint8' }), /value 300 cannot be converted to type uint8/);
    assert.throws(() => torch.tensor(BigInt64Array.from([2n ** 40n]), { dtype: 'int32' }), /value 1099511627776 cannot be converted to type int32/);
    // In range: truncated toward zero, the same on both paths.
    assert.deepEqual(torch.tensor(new Float64Array([1.7, -2.9, 2 ** 31 - 1]), { dtype: 'int32' }).tolist(), [1, -2, 2 ** 31 - 1]);
    assert.deepEqual(torch.tensor([1.7, -2.9, 2 ** 31 - 1], { dtype: 'int32' }).tolist(), [1, -2, 2 ** 31 - 1]);
    assert.deepEqual(torch.tensor(new Float32Array([NaN, 2]), { dtype: 'bool' }).tolist(), [1, 1], 'bool: any nonzero value (NaN too) is true');
  });
});

test('autocast refuses an async fn (as noGrad does) and a device other than cpu or cuda', async () => {
  const was = torch.autocastState('cpu');
  const a = torch.ones([2, 2]);
  let body: Promise<unknown> | undefined;
  assert.throws(
    () =>
      torch.autocast({ device: 'cpu', dtype: 'bfloat16' }, () => {
        body = (async () => {
          await null;
          return a.matmul(a).dtype;
        })();
        return body;
      }),
    /^Error: autocast: fn must be synchronous$/,
  );
  await body;
  assert.deepEqual(torch.autocastState('cpu'), was, 'the state is restored');
  // {device: 'cuda:0'} turned CPU autocast on.
  for (const device of ['cuda:0', 'CPU', 'mps']) {
    throwsTorch(() => torch.autocast({ device: device as 'cpu', dtype: 'bfloat16' }, () => a.matmul(a)), {
      code: 'ERR_ARG',
      op: 'getAutocast',
      message: new RegExp(`^getAutocast: device must be one of 'cpu', 'cuda', got '${device}'$`),
    });
  }
  assert.deepEqual(torch.autocastState('cpu'), was);
  a.dispose();
});

test('PyTorch-style calls from plain JS that were silently accepted: to(dtype), max(dim), size(), out-of-range integers', () => {
  noLeak(() => {
    const x = torch.tensor([
      [1, 5],
      [7, 2],
    ]);
    // to() with a string: a dtype (it did nothing) or a device.
    const d = x.to('float64');
    assert.equal(d.dtype, 'float64');
    assert.deepEqual(d.tolist(), x.tolist());
    assert.equal(x.to('cpu').device, 'cpu');
    assert.throws(() => x.to(5 as unknown as 'cpu'), /^TypeError: to\(\): expected options \{ dtype, device \}, a dtype or a device, got 5$/);
    assert.throws(() => x.to(null as unknown as 'cpu'), /^TypeError: to\(\): expected options \{ dtype, device \}, a dtype or a device, got null$/);
    // max(dim) / min(dim) returned the global maximum.
    assert.throws(() => (x.max as (d: number) => Tensor)(1), /^TypeError: max\(\) takes no arguments: use maxDim\(dim\)/);
    assert.throws(() => (x.min as (d: number) => Tensor)(1), /^TypeError: min\(\) takes no arguments: use minDim\(dim\)/);
    assert.equal(x.max().item(), 7);
    // size() and size(0.5) returned undefined.
    assert.throws(() => (x.size as () => number)(), /^TypeError: size\(dim\): dim must be an integer, got undefined/);
    assert.throws(() => x.size(0.5), /^TypeError: size\(dim\): dim must be an integer, got 0.5/);
    assert.equal(x.size(-1), 2);
    // split([n]) is a list of sizes (which must sum to the dimension), as PyTorch, not split(n)
    throwsTorch(() => torch.arange(4).split([2]), { op: 'splitWithSizes', message: /sum exactly to 4/ });
    // split and chunk work along dim 0 unless told
    assert.deepEqual(
      torch
        .zeros([2, 4])
        .chunk(2)
        .map((c) => c.shape),
      [
        [1, 4],
        [1, 4],
      ],
    );
    // A BigInt integer argument wrapped modulo 2^64 (index -(2^70) selected row 0).
    const z = torch.zeros([3]);
    throwsTorch(() => z.select(0, -(2n ** 70n) as unknown as number), {
      code: 'ERR_ARG',
      op: 'select',
      message: /the BigInt -1180591620717411303424 is outside the int64 range/,
    });
    throwsTorch(() => x.softmax((2n ** 64n) as unknown as number), { code: 'ERR_ARG', op: 'softmax', message: /outside the int64 range/ });
    assert.deepEqual(z.select(0, 2n as unknown as number).shape, [], 'an int64-range BigInt is still an integer');
    // A shape entry beyond int64 became -9223372036854775808.
    throwsTorch(() => torch.zeros([1e20]), {
      code: 'ERR_ARG',
      op: 'zeros',
      message: /\[0\]: expected an integer in the int64 range, got 100000000000000000000$/,
    });
    throwsTorch(() => z.narrow(0, 1e20, 1), { code: 'ERR_ARG', op: 'narrow', message: /expected an integer in the int64 range, got 100000000000000000000$/ });
  });
});

test('tensor() copies a typed array over a SharedArrayBuffer (it threw a bare "Invalid argument")', () => {
  noLeak(() => {
    const sab = new SharedArrayBuffer(16);
    const f = new Float32Array(sab);
    f.set([1, 2, 3, 4]);
    const t = torch.tensor(f);
    const part = torch.tensor(new Float32Array(sab, 4, 2));
    f[1] = 9;
    assert.deepEqual(t.tolist(), [1, 2, 3, 4]);
    assert.deepEqual(part.tolist(), [2, 3]);
    assert.deepEqual(torch.tensor(new Float64Array(new SharedArrayBuffer(16)), { dtype: 'float32' }).tolist(), [0, 0]);
  });
});

test('an integral number, -0 too, is an integer scalar: an integer tensor stays integer (README; PyTorch has no -0 int, a JS number no int/float)', () => {
  noLeak(() => {
    const i = torch.tensor([3, 4], { dtype: 'int64' });
    for (const s of [0, -0, 0 * -1, 2]) assert.equal(i.add(s).dtype, 'int64', `add(${Object.is(s, -0) ? '-0' : s})`);
    // Up to the largest safe integer; 2^53, which 2^53 + 1 rounds to as well, is a float
    assert.equal(i.add(2 ** 53 - 1).dtype, 'int64');
    assert.equal(i.add(-(2 ** 53 - 1)).dtype, 'int64');
    assert.equal(i.add(2 ** 53).dtype, 'float32');
    assert.equal(i.add(-(2 ** 53)).dtype, 'float32');
    assert.deepEqual(values(torch.tensor([1, 2]).div(-0)), [Infinity, Infinity], 'the integer 0: +Inf');
  });
});

test('remainder by -1 is 0 for every integer, the dtype minimum too (INT64_MIN % -1 killed the process with SIGFPE)', () => {
  // x86 integer division of int64's or int32's minimum by -1 traps, and libtorch divided without a check: run it
  // in a child so that a crash fails this test only.
  const script = `
    const torch = require(${JSON.stringify(join(__dirname, '..', '..', 'src', 'torch'))});
    const out = (t) => Array.from(t.data(), String);
    const i64 = torch.tensor(new BigInt64Array([-(2n ** 63n), -7n, 0n, 5n]));
    const i32 = torch.tensor(new Int32Array([-(2 ** 31), 3]));
    console.log(JSON.stringify([
      out(i64.remainder(-1)),
      out(i64.remainder(-1n)),
      out(i32.remainder(-1)),
      out(i32.remainder(torch.tensor(new Int32Array([-1, -2])))),
      out(i64.remainder(torch.tensor(new BigInt64Array([-1n, 3n, -1n, 3n])))),
      out(torch.tensor(new BigInt64Array([1000n])).remainder(torch.tensor(new Uint8Array([255])))),
      out(torch.tensor([-5.5]).remainder(-1)),
      out(i64.remainder(3)),
    ]));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [
    ['0', '0', '0', '0'],
    ['0', '0', '0', '0'],
    ['0', '0'],
    ['0', '-1'], // Python: 3 % -2 == -1 (the divisor's sign)
    ['0', '2', '0', '2'],
    ['235'], // a uint8 divisor of 255 is not -1
    ['-0.5'],
    ['1', '2', '0', '2'], // Python: (-2**63) % 3 == 1, -7 % 3 == 2
  ]);
});

test('grad: a tensor cannot be its own gradient, as PyTorch refuses it (backward added the gradient into its values)', () => {
  noLeak(() => {
    const a = torch.ones([3], { requiresGrad: true });
    throwsTorch(
      () => {
        a.grad = a;
      },
      { code: 'ERR_ARG', op: 'setGrad', message: /^setGrad: a tensor cannot be its own gradient$/ },
    );
    const alias = a.to('float32'); // a no-op to(): another wrapper of the same tensor
    throwsTorch(
      () => {
        a.grad = alias;
      },
      { code: 'ERR_ARG', op: 'setGrad' },
    );
    assert.equal(a.grad, null);
    a.grad = a.detach().clone(); // another tensor of the same values is a gradient
    a.mul(2).sum().backward();
    assert.deepEqual(a.tolist(), [1, 1, 1]);
    const g = a.grad!;
    assert.deepEqual(g.tolist(), [3, 3, 3]);
  });
});
