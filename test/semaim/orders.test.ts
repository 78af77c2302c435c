import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import {
  rasterOrder,
  snakeOrder,
  stochasticOrder,
  similarityOrder,
  semanticOrder,
  multicenterOrder,
  meanFilter3x3,
  strictOrder,
  similarityMap,
  orderFromConfig,
  OrderConfig,
  checkOrder,
  ConfigError,
  needsSimilarity,
  orderUsesNoise,
} from '../../src/semaim';

const grid = { gridH: 6, gridW: 6 };
const N = 36;

function rows(t: torch.Tensor): number[][] {
  return t.tolist() as number[][];
}

function isStrict(p: number[]): boolean {
  return new Set(p).size === p.length;
}

/** A similarity map with one bump centred on (r, c). */
function bump(B: number, r: number, c: number): torch.Tensor {
  const vals: number[] = [];
  for (let b = 0; b < B; b++)
    for (let i = 0; i < N; i++) {
      const y = Math.floor(i / 6);
      const x = i % 6;
      vals.push(Math.exp(-((y - r) ** 2 + (x - c) ** 2) / 2));
    }
  return torch.tensor(vals, { shape: [B, N] }).softmax(1);
}

test('raster and snake match their definitions', () => {
  assert.deepEqual(
    rows(rasterOrder(2, grid))[1],
    Array.from({ length: N }, (_, i) => i),
  );
  const s = rows(snakeOrder(1, grid))[0];
  for (let r = 0; r < 6; r++)
    for (let c = 0; c < 6; c++) {
      assert.equal(s[r * 6 + c], r % 2 === 0 ? r * 6 + c : r * 6 + (5 - c));
    }
});

test('every order type gives finite order values; strictOrder ranks them, ties in patch-index order', () => {
  torch.manualSeed(1);
  const S = torch.rand([3, N]).softmax(1);
  const configs: OrderConfig[] = [
    { type: 'raster' },
    { type: 'snake' },
    { type: 'stochastic' },
    { type: 'similarity', source: 'online' },
    { type: 'semantic', source: 'online', filter: true, lambda: 0.01 },
    { type: 'semantic', source: 'online', filter: false, lambda: 1e-3 },
    { type: 'multicenter', source: 'online', k: 3, minRelHeight: 0.5, minDistance: 2, filter: true, lambda: 0.01 },
  ];
  for (const c of configs) {
    const p = orderFromConfig(c, 3, grid, S);
    assert.deepEqual(p.shape, [3, N], c.type);
    const vals = rows(p);
    const ranks = rows(strictOrder(p));
    vals.forEach((v, b) => {
      assert.ok(v.every(Number.isFinite), c.type);
      assert.deepEqual(
        [...ranks[b]].sort((x, y) => x - y),
        Array.from({ length: N }, (_, i) => i),
        `${c.type}: ranks are a permutation`,
      );
      for (let i = 0; i < N; i++)
        for (let j = 0; j < N; j++) {
          if (v[i] < v[j] || (v[i] === v[j] && i < j)) assert.ok(ranks[b][i] < ranks[b][j], `${c.type}: rank order`);
        }
    });
    // Raster and snake are strict by construction.
    if (c.type === 'raster' || c.type === 'snake') vals.forEach((v) => assert.ok(isStrict(v), c.type));
  }
  const tied = torch.tensor([[0, 0, 1, 1, 0]]);
  assert.deepEqual(rows(strictOrder(tied))[0], [0, 1, 3, 4, 2]);
});

test('seeded orders repeat with the same seed and differ with another', () => {
  const run = (seed: number) => {
    const g = new torch.Generator(seed);
    const S = torch.rand([2, N], { generator: g }).softmax(1);
    return [
      rows(stochasticOrder(2, grid, { generator: g })),
      rows(semanticOrder(S, grid, { filter: true, lambda: 0.01, generator: g }).order),
      rows(multicenterOrder(S, grid, { k: 2, minRelHeight: 0.3, minDistance: 2, filter: true, lambda: 0.01, generator: g }).order),
    ];
  };
  assert.deepEqual(run(7), run(7));
  assert.notDeepEqual(run(7), run(8));
  torch.manualSeed(3);
  const a = rows(stochasticOrder(2, grid));
  torch.manualSeed(3);
  assert.deepEqual(rows(stochasticOrder(2, grid)), a);
});

test('semantic order starts at the argmax of the filtered map and never skips to a farther ring', () => {
  torch.manualSeed(2);
  const S = torch.rand([4, N]).softmax(1);
  const filtered = meanFilter3x3(S, grid);
  const { order, center } = semanticOrder(S, grid, { filter: true, lambda: 0.01 });
  const f = rows(filtered);
  const p = rows(order);
  const centers = center.tolist() as number[];
  for (let b = 0; b < 4; b++) {
    const argmax = f[b].indexOf(Math.max(...f[b]));
    assert.equal(centers[b], argmax);
    const first = p[b].indexOf(Math.min(...p[b]));
    assert.equal(first, argmax, 'the centre is predicted first');
    const cy = Math.floor(argmax / 6);
    const cx = argmax % 6;
    const dist = (i: number) => Math.hypot(Math.floor(i / 6) - cy, (i % 6) - cx);
    const seq = p[b]
      .map((v, i) => [v, i])
      .sort((x, y) => x[0] - y[0])
      .map(([, i]) => dist(i));
    for (let i = 1; i < seq.length; i++) assert.ok(seq[i] >= seq[i - 1] - 1e-9, `ring order broken at step ${i}`);
  }
});

test('mean filter averages the 3×3 neighbourhood inside the grid', () => {
  const S = torch.arange(0, N, 1, { dtype: 'float32' }).unsqueeze(0);
  const f = rows(meanFilter3x3(S, grid))[0];
  assert.ok(Math.abs(f[0] - (0 + 1 + 6 + 7) / 4) < 1e-5);
  assert.ok(Math.abs(f[7] - (0 + 1 + 2 + 6 + 7 + 8 + 12 + 13 + 14) / 9) < 1e-5);
});

test('the paper filter and the authors variant can pick different centres', () => {
  // A single sharp spike at (0,0) beside a broad bump at (4,4): argmax of S is the spike; the
  // filtered map prefers the bump.
  const v: number[] = [];
  for (let i = 0; i < N; i++) v.push(Math.exp(-((Math.floor(i / 6) - 3) ** 2 + ((i % 6) - 3) ** 2) / 2));
  v[0] = 1.2;
  const S = torch.tensor([v]);
  assert.equal((semanticOrder(S, grid, { filter: false, lambda: 0 }).center.tolist() as number[])[0], 0);
  assert.equal((semanticOrder(S, grid, { filter: true, lambda: 0 }).center.tolist() as number[])[0], 3 * 6 + 3);
});

test('multicenter finds separated peaks and orders by distance to the nearest', () => {
  const a = rows(bump(1, 1, 1))[0];
  const b = rows(bump(1, 4, 4))[0];
  const S = torch.tensor([a.map((x, i) => x + 0.8 * b[i])]);
  const r = multicenterOrder(S, grid, { k: 3, minRelHeight: 0.5, minDistance: 2, filter: false, lambda: 0.001 });
  const centers = (r.centers.tolist() as number[][])[0];
  const valid = (r.valid.tolist() as number[][])[0];
  assert.equal(centers[0], 7);
  assert.equal(centers[1], 28);
  assert.equal(valid[0], 1);
  assert.equal(valid[1], 1);
  const p = rows(r.order)[0];
  const firstTwo = p
    .map((v, i) => [v, i])
    .sort((x, y) => x[0] - y[0])
    .slice(0, 2)
    .map(([, i]) => i)
    .sort((x, y) => x - y);
  assert.deepEqual(firstTwo, [7, 28]);
  const single = multicenterOrder(S, grid, { k: 3, minRelHeight: 0.99, minDistance: 2, filter: false, lambda: 0 });
  assert.deepEqual((single.valid.tolist() as number[][])[0].slice(0, 2), [1, 0]);
});

/** A flat 6×6 map (0.01) with peaks {patch index: height}. */
function peaks(at: Record<number, number>): torch.Tensor {
  const v = new Array<number>(N).fill(0.01);
  for (const [i, h] of Object.entries(at)) v[Number(i)] = h;
  return torch.tensor([v], { shape: [1, N] });
}

/** Euclidean distance (in patches) from every patch of the 6×6 grid to the nearest of the given centres. */
function nearestDistance(centres: number[]): number[] {
  return Array.from({ length: N }, (_, i) => Math.min(...centres.map((c) => Math.hypot(Math.floor(i / 6) - Math.floor(c / 6), (i % 6) - (c % 6)))));
}

function assertClose(got: number[], want: number[], what: string): void {
  want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) < 1e-5, `${what}: patch ${i} has ${got[i]}, expected ${w}`));
}

test('multicenter suppression: strictly closer than minDistance, only by a kept centre; dropped centres give no distance', () => {
  const flat = { filter: false, lambda: 0 };
  // Two peaks exactly minDistance = 3 apart ((1,0) and (1,3)): 3 < 3 is false, both are centres.
  const exact = multicenterOrder(peaks({ 6: 1, 9: 0.9 }), grid, { ...flat, k: 2, minRelHeight: 0, minDistance: 3 });
  assert.deepEqual(rows(exact.centers)[0], [6, 9]);
  assert.deepEqual(rows(exact.valid)[0].map(Number), [1, 1]);
  // With k = 2 too: peaks 2 apart, minDistance 3, the lower one is dropped.
  const pair = multicenterOrder(peaks({ 6: 1, 8: 0.9 }), grid, { ...flat, k: 2, minRelHeight: 0, minDistance: 3 });
  assert.deepEqual(rows(pair.valid)[0].map(Number), [1, 0]);
  assertClose(rows(pair.order)[0], nearestDistance([6]), 'k 2');
  // A chain A (0,0) > B (0,2) > C (0,4) with minDistance 2.5: A suppresses B; B, suppressed, does not
  // suppress C (4 from A), so the centres are A and C.
  const chain = multicenterOrder(peaks({ 0: 1, 2: 0.9, 4: 0.8 }), grid, { ...flat, k: 3, minRelHeight: 0, minDistance: 2.5 });
  assert.deepEqual(rows(chain.centers)[0], [0, 2, 4]);
  assert.deepEqual(rows(chain.valid)[0].map(Number), [1, 0, 1]);
  assertClose(rows(chain.order)[0], nearestDistance([0, 4]), 'chain');
  // A third peak below minRelHeight (0.2 < 0.5 × 1) is no centre: patch 35 is √8 from (3,3), not 0.
  const low = multicenterOrder(peaks({ 0: 1, 21: 0.9, 35: 0.2 }), grid, { ...flat, k: 3, minRelHeight: 0.5, minDistance: 0 });
  assert.deepEqual(rows(low.valid)[0].map(Number), [1, 1, 0]);
  assertClose(rows(low.order)[0], nearestDistance([0, 21]), 'low peak');
  // A peak exactly at minRelHeight × the highest counts ("at least this fraction").
  const atFraction = multicenterOrder(peaks({ 0: 1, 21: 0.5 }), grid, { ...flat, k: 2, minRelHeight: 0.5, minDistance: 0 });
  assert.deepEqual(rows(atFraction.valid)[0].map(Number), [1, 1]);
});

test('multicenterOrder takes a k above the number of patches (it looks at N candidates at most)', () => {
  const manyK = multicenterOrder(peaks({ 0: 1, 21: 0.9 }), grid, { filter: false, lambda: 0, k: N + 5, minRelHeight: 0.5, minDistance: 0 });
  assert.deepEqual(manyK.centers.shape, [1, N]);
  assertClose(rows(manyK.order)[0], nearestDistance([0, 21]), 'k > N');
});

test("orderFromConfig's multicenter order honours k and minDistance (what pre-training uses)", () => {
  const S = peaks({ 0: 1, 2: 0.9, 35: 0.8 });
  const o = (k: number, minDistance: number): OrderConfig => ({
    type: 'multicenter',
    source: 'online',
    k,
    minRelHeight: 0,
    minDistance,
    filter: false,
    lambda: 0,
  });
  // k 3, minDistance 3: (0,2) is 2 from (0,0) and suppressed; the centres are patches 0 and 35.
  assertClose(rows(orderFromConfig(o(3, 3), 1, grid, S))[0], nearestDistance([0, 35]), 'k 3, minDistance 3');
  assertClose(rows(orderFromConfig(o(3, 1), 1, grid, S))[0], nearestDistance([0, 2, 35]), 'k 3, minDistance 1');
  assertClose(rows(orderFromConfig(o(1, 3), 1, grid, S))[0], nearestDistance([0]), 'k 1');
  // minRelHeight 0.85: patch 35 (0.8 of the highest) is no centre
  const tall: OrderConfig = { ...o(3, 1), minRelHeight: 0.85 } as OrderConfig;
  assertClose(rows(orderFromConfig(tall, 1, grid, S))[0], nearestDistance([0, 2]), 'minRelHeight 0.85');
});

test('orders on a grid that is not square: snake rows and semantic distances follow gridW', () => {
  torch.scope(() => {
    assert.deepEqual(rows(snakeOrder(1, { gridH: 2, gridW: 3 })), [[0, 1, 2, 5, 4, 3]]);
    const g = { gridH: 3, gridW: 4 };
    const v = new Array<number>(12).fill(0);
    v[6] = 1; // row 1, column 2
    const { order, center } = semanticOrder(torch.tensor([v], { shape: [1, 12] }), g, { filter: false, lambda: 0 });
    assert.deepEqual(center.tolist(), [6]);
    const want = Array.from({ length: 12 }, (_, i) => Math.hypot(Math.floor(i / 4) - 1, (i % 4) - 2));
    assertClose(rows(order)[0], want, '3×4 grid');
  });
});

test('the stochastic order is a copy of the noise it is given: disposing it leaves the noise', () => {
  torch.scope(() => {
    const noise = torch.rand([2, 9]);
    const p = stochasticOrder(2, { gridH: 3, gridW: 3 }, { noise });
    assert.deepEqual(rows(p), rows(noise));
    p.dispose();
    assert.equal(noise.isDisposed, false);
    assert.equal(rows(noise).length, 2);
  });
});

test('which orders read a similarity map and which draw noise', () => {
  const base = { source: 'online' as const, filter: false, lambda: 0 };
  const cases: [OrderConfig, boolean, boolean][] = [
    [{ type: 'raster' }, false, false],
    [{ type: 'snake' }, false, false],
    [{ type: 'stochastic' }, false, true],
    [{ type: 'similarity', source: 'online' }, true, false],
    [{ type: 'semantic', ...base }, true, true],
    [{ type: 'multicenter', ...base, k: 2, minRelHeight: 0, minDistance: 0 }, true, true],
  ];
  for (const [o, similarity, noise] of cases) {
    assert.equal(needsSimilarity(o), similarity, `${o.type}: needsSimilarity`);
    assert.equal(orderUsesNoise(o), noise, `${o.type}: orderUsesNoise`);
  }
});

test('similarity order is 1 − S and similarity maps are normalised', () => {
  torch.manualSeed(4);
  const tokens = torch.randn([2, 1 + N, 8]);
  const S = similarityMap(tokens);
  const sums = S.sum(1).tolist() as number[];
  for (const s of sums) assert.ok(Math.abs(s - 1) < 1e-5);
  const mm = similarityMap(tokens, 'minmax');
  assert.ok(Math.abs(mm.max().item() - 1) < 1e-6 && Math.abs(mm.min().item()) < 1e-6);
  assert.ok(similarityOrder(S).add(S).sub(1).abs().max().item() < 1e-7);
});

test("similarity map from the authors' 'gap' tokens compares patches with their mean", () => {
  torch.manualSeed(5);
  const tokens = torch.randn([2, 1 + N, 8]);
  const gap = similarityMap(tokens, 'softmax', 'gap');
  // Reference: replace [CLS] by the mean patch token and use the paper's map.
  const withMean = torch.cat([tokens.narrow(1, 1, N).mean(1, true), tokens.narrow(1, 1, N)], 1);
  assert.ok(gap.sub(similarityMap(withMean)).abs().max().item() < 1e-6);
  assert.ok(gap.sub(similarityMap(tokens)).abs().max().item() > 1e-4, 'differs from the [CLS] map');
});

test('checkOrder refuses a wrong shape and, on the CPU, non-finite values', () => {
  torch.scope(() => {
    assert.throws(() => checkOrder(torch.zeros([2, 5]), 2, 4), /shape \[2, 4\]/);
    assert.throws(() => checkOrder(torch.zeros([3, 4]), 2, 4), /shape \[2, 4\], got \[3, 4\]/);
    assert.throws(() => checkOrder(torch.tensor([[0, 1, NaN, 3]], { device: 'cpu' }), 1, 4), /finite/);
    checkOrder(torch.tensor([[0, 1, 2, 3]]), 1, 4);
  });
});

test('order functions refuse a bad batch, grid, noise, generator, λ, k, minRelHeight or mode with a RangeError naming it', () => {
  torch.scope(() => {
    const g = { gridH: 3, gridW: 3 };
    const S = torch.rand([1, 9]);
    const sem = { filter: true, lambda: 0.01 };
    const mc = { ...sem, k: 2, minRelHeight: 0.5, minDistance: 1 };
    const cases: [() => unknown, RegExp][] = [
      [() => rasterOrder(-1, g), /rasterOrder: the batch size B must be an integer >= 0, got -1/],
      [() => rasterOrder(1, {} as never), /rasterOrder: grid\.gridH must be a positive integer, got undefined/],
      [() => snakeOrder(1, { gridH: 3, gridW: 0 }), /snakeOrder: grid\.gridW must be a positive integer, got 0/],
      [() => stochasticOrder(1, g, { noise: torch.rand([1, 4]) }), /stochasticOrder: noise must be a tensor \[1, 9\] \(batch × patches\), got \[1, 4\]/],
      [() => stochasticOrder(1, g, { generator: 5 as never }), /stochasticOrder: generator must be a torch\.Generator, got 5/],
      [() => semanticOrder(S, g, { ...sem, lambda: NaN }), /semanticOrder: lambda must be in \[0, 1e6\], got NaN/],
      [() => semanticOrder(S, g, { ...sem, lambda: -1 }), /semanticOrder: lambda must be in \[0, 1e6\], got -1/],
      [() => semanticOrder(S, g, undefined as never), /semanticOrder: options \{ filter, lambda \} are required, got undefined/],
      [() => semanticOrder(S, g, { ...sem, filter: 'no' as never }), /semanticOrder: filter must be true or false, got no/],
      [() => semanticOrder(torch.rand([1, 8]), g, sem), /semanticOrder: the similarity map S must be \[B, 9\] for a 3×3 grid, got \[1, 8\]/],
      [() => semanticOrder(S, g, { ...sem, noise: torch.rand([2, 9]) }), /semanticOrder: noise must be a tensor \[1, 9\]/],
      [() => multicenterOrder(S, g, { ...mc, k: 0 }), /multicenterOrder: k must be a positive integer, got 0/],
      [() => multicenterOrder(S, g, { ...mc, minRelHeight: 2 }), /multicenterOrder: minRelHeight must be in \[0, 1\], got 2/],
      [() => multicenterOrder(S, g, { ...mc, minDistance: -1 }), /multicenterOrder: minDistance must be a finite number >= 0, got -1/],
      [() => similarityMap(torch.randn([1, 10, 8]), 'max' as never), /similarityMap: mode must be 'softmax' or 'minmax', got max/],
      [() => similarityMap(torch.randn([1, 10, 8]), 'softmax', 'mean' as never), /similarityMap: reference must be 'cls' or 'gap', got mean/],
      [() => similarityMap(torch.randn([10, 8])), /similarityMap: tokens must be a tensor \[B, 1 \+ N, D\], got \[10, 8\]/],
      // [CLS] alone: no patch to compare it with
      [() => similarityMap(torch.randn([1, 1, 8])), /similarityMap: tokens must be a tensor \[B, 1 \+ N, D\], got \[1, 1, 8\]/],
    ];
    for (const [call, message] of cases) assert.throws(call, (e) => e instanceof RangeError && message.test(e.message), message.source);
    // an unknown type is not taken for one that needs a similarity map
    assert.throws(
      () => orderFromConfig({ type: 'spiral' } as never, 1, g, null),
      (e) => e instanceof ConfigError && /config 'order\.type': must be one of raster, .*, got "spiral"/.test(e.message),
    );
    // the edges are accepted
    assert.deepEqual(rasterOrder(0, g).shape, [0, 9]);
    semanticOrder(S, g, { filter: false, lambda: 0 }).order.dispose();
    multicenterOrder(S, g, { ...mc, k: 1, minRelHeight: 1, minDistance: 0 }).order.dispose();
    stochasticOrder(2, g, { noise: torch.rand([2, 9]), generator: new torch.Generator(0) });
  });
});

test('similarity maps, tokens and noise must be floating-point and order values floating-point or integer: a TypeError names the argument, its dtype and shape', () => {
  torch.scope(() => {
    const g = { gridH: 3, gridW: 3 };
    const S = torch.rand([1, 9]);
    const intS = torch.arange(0, 9, 1, { dtype: 'int64' }).unsqueeze(0);
    const intNoise = torch.zeros([1, 9], { dtype: 'int64' });
    const mask = torch.ones([1, 9], { dtype: 'bool' });
    const sem = { filter: true, lambda: 0.01 };
    const mc = { ...sem, k: 2, minRelHeight: 0.5, minDistance: 1 };
    const cases: [() => unknown, RegExp][] = [
      // U(0,1) noise in an int64 tensor is all 0: the stochastic order was raster order, silently
      [() => stochasticOrder(1, g, { noise: intNoise }), /^stochasticOrder: noise must be a floating-point tensor, got int64 \[1, 9\]$/],
      [() => stochasticOrder(1, g, { noise: mask }), /^stochasticOrder: noise must be a floating-point tensor, got bool \[1, 9\]$/],
      [() => semanticOrder(S, g, { ...sem, noise: intNoise }), /^semanticOrder: noise must be a floating-point tensor, got int64 \[1, 9\]$/],
      [() => semanticOrder(intS, g, sem), /^semanticOrder: the similarity map S must be a floating-point tensor, got int64 \[1, 9\]$/],
      [() => multicenterOrder(intS, g, mc), /^multicenterOrder: the similarity map S must be a floating-point tensor, got int64 \[1, 9\]$/],
      [() => similarityOrder(intS), /^similarityOrder: the similarity map S must be a floating-point tensor, got int64 \[1, 9\]$/],
      [() => meanFilter3x3(intS, g), /^meanFilter3x3: the similarity map S must be a floating-point tensor, got int64 \[1, 9\]$/],
      [() => similarityMap(torch.ones([1, 10, 4], { dtype: 'int32' })), /^similarityMap: tokens must be a floating-point tensor, got int32 \[1, 10, 4\]$/],
      [() => strictOrder(mask), /^strictOrder: order values must be a floating-point or integer tensor, got bool \[1, 9\]$/],
      [() => checkOrder(mask, 1, 9), /^checkOrder: order values must be a floating-point or integer tensor, got bool \[1, 9\]$/],
      [
        () => orderFromConfig({ type: 'stochastic' }, 1, g, null, { noise: intNoise }),
        /^orderFromConfig: noise must be a floating-point tensor, got int64 \[1, 9\]$/,
      ],
      [() => orderFromConfig({ type: 'similarity', source: 'online' }, 1, g, intS), /the similarity map S must be a floating-point tensor, got int64 \[1, 9\]/],
    ];
    for (const [call, message] of cases) assert.throws(call, (e) => e instanceof TypeError && message.test(e.message), message.source);
    // other floating dtypes are similarity maps and noise (float16 too, where libtorch has its ops: not floor
    // on the CPU); integer order values (ranks) are order values
    for (const dtype of ['bfloat16', 'float64'] as const) {
      semanticOrder(S.to({ dtype }), g, { filter: false, lambda: 0.01, noise: torch.rand([1, 9], { dtype }) }).order.dispose();
      similarityOrder(S.to({ dtype }));
    }
    checkOrder(intS, 1, 9);
    assert.deepEqual(rows(strictOrder(intS.flip([1]))), [[8, 7, 6, 5, 4, 3, 2, 1, 0]]);
  });
});

test('meanFilter3x3 and strictOrder refuse input of another shape with a RangeError naming it', () => {
  torch.scope(() => {
    const g = { gridH: 3, gridW: 3 };
    const cases: [() => unknown, RegExp][] = [
      // [B, H, W] reshapes to [B, 1, H, W] as [B, H·W] does: it came back filtered, as [B, 9]
      [() => meanFilter3x3(torch.rand([2, 3, 3]), g), /^meanFilter3x3: the similarity map S must be \[B, 9\] for a 3×3 grid, got \[2, 3, 3\]$/],
      [() => meanFilter3x3(torch.rand([2, 8]), g), /^meanFilter3x3: the similarity map S must be \[B, 9\] for a 3×3 grid, got \[2, 8\]$/],
      [() => meanFilter3x3(torch.rand([9]), g), /^meanFilter3x3: the similarity map S must be \[B, 9\] for a 3×3 grid, got \[9\]$/],
      [() => meanFilter3x3(torch.rand([1, 9]), { gridH: 3, gridW: 0 }), /^meanFilter3x3: grid\.gridW must be a positive integer, got 0$/],
      // [B, H, W] order values were ranked within each grid column
      [() => strictOrder(torch.rand([1, 3, 3])), /^strictOrder: order values p must be a tensor \[B, N\], got \[1, 3, 3\]$/],
      [() => strictOrder(torch.rand([9])), /^strictOrder: order values p must be a tensor \[B, N\], got \[9\]$/],
      [() => strictOrder([3, 1, 2] as never), /^strictOrder: order values p must be a tensor \[B, N\], got 3,1,2$/],
    ];
    for (const [call, message] of cases) assert.throws(call, (e) => e instanceof RangeError && message.test(e.message), message.source);
    assert.deepEqual(rows(strictOrder(torch.tensor([[0.5, 0.1, 0.9]]))), [[1, 0, 2]]);
  });
});

test('similarityOrder takes S [B, N] and orderFromConfig a map of B rows: another shape is a RangeError naming S', () => {
  torch.scope(() => {
    const g = { gridH: 3, gridW: 3 };
    const similarity: OrderConfig = { type: 'similarity', source: 'online' };
    const cases: [() => unknown, RegExp][] = [
      [() => similarityOrder(torch.rand([9])), /^similarityOrder: the similarity map S must be a tensor \[B, N\], got \[9\]$/],
      // the similarity order did not compare B with S: it returned [1, 9] for a batch of 2
      [() => orderFromConfig(similarity, 2, g, torch.rand([1, 9])), /^orderFromConfig: the similarity map S must be \[2, 9\] for a 3×3 grid, got \[1, 9\]$/],
      [() => orderFromConfig(similarity, 1, g, torch.rand([1, 8])), /^orderFromConfig: the similarity map S must be \[1, 9\] for a 3×3 grid, got \[1, 8\]$/],
      [
        () => orderFromConfig({ type: 'semantic', source: 'online', filter: false, lambda: 0 }, 3, g, torch.rand([2, 9])),
        /^orderFromConfig: the similarity map S must be \[3, 9\] for a 3×3 grid, got \[2, 9\]$/,
      ],
      [() => orderFromConfig(similarity, 1.5, g, torch.rand([1, 9])), /^orderFromConfig: the batch size B must be an integer >= 0, got 1\.5$/],
    ];
    for (const [call, message] of cases) assert.throws(call, (e) => e instanceof RangeError && message.test(e.message), message.source);
    assert.deepEqual(orderFromConfig(similarity, 2, g, torch.rand([2, 9])).shape, [2, 9]);
  });
});

test('semanticOrder and multicenterOrder of a bfloat16 map: distances as from its float32 copy (bf16 holds integers only to 256)', () => {
  torch.scope(() => {
    // a 20×20 grid: patch indices up to 399 and their coordinates were rounded in bf16 (the corner 399 was 400,
    // its neighbour at distance 4 came out at 16)
    const g = { gridH: 20, gridW: 20 };
    const v = new Float32Array(400);
    v[399] = 1;
    v[7 * 20 + 3] = 0.9;
    const S = torch.tensor(v, { shape: [1, 400] });
    const bf = S.to({ dtype: 'bfloat16' });
    const sem = { filter: false, lambda: 0 };
    assert.deepEqual(rows(semanticOrder(bf, g, sem).order), rows(semanticOrder(S, g, sem).order));
    const mc = { ...sem, k: 2, minRelHeight: 0.5, minDistance: 1 };
    assert.deepEqual(rows(multicenterOrder(bf, g, mc).order), rows(multicenterOrder(S, g, mc).order));
  });
});

test('multicenterOrder keeps the highest peak of a map of negative values (it fell below its own relative height: p was all Infinity)', () => {
  torch.scope(() => {
    const g = { gridH: 3, gridW: 3 };
    const S = torch.tensor([[-3, -3, -3, -3, -1, -3, -3, -3, -3]]); // e.g. raw cosines, one peak at the centre
    const r = multicenterOrder(S, g, { k: 2, minRelHeight: 0.5, minDistance: 0, filter: false, lambda: 0 });
    assert.equal(Boolean(rows(r.valid)[0][0]), true);
    const s2 = Math.SQRT2;
    const want = [s2, 1, s2, 1, 0, 1, s2, 1, s2];
    rows(r.order)[0].forEach((p, i) => assert.ok(Math.abs(p - want[i]) < 1e-6, `patch ${i}: ${p}`));
  });
});

test('similarityOrder of a bfloat16 map ranks the patches as its float32 copy does (1 − S in bf16 rounded near-equal values to ties)', () => {
  torch.scope(() => {
    // softmax values near 1/N: distinct in bf16, but 1 − S has a step of 2⁻⁸ there and all three tied
    const S = torch.tensor([[0.005, 0.0052, 0.0049]]).to({ dtype: 'bfloat16' });
    assert.deepEqual(rows(strictOrder(similarityOrder(S))), [[1, 0, 2]]);
  });
});
