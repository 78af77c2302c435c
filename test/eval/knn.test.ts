import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { knnClassify, knnClassifyAsync, knnVotes, parseKs } from '../../src/eval/knn';
import { FeatureSet } from '../../src/eval/features';
import { accuracyOf } from '../../src/eval/accuracy';
import { countingLoopTurns } from './helpers';
import type { ProcessGroup } from '../../src/dist';

function set(rows: number[][], labels: number[]): FeatureSet {
  return { features: torch.keep(torch.tensor(rows)), labels: Int32Array.from(labels) };
}

function angle(deg: number, r = 1): number[] {
  return [r * Math.cos((deg * Math.PI) / 180), r * Math.sin((deg * Math.PI) / 180)];
}

test('weighted vote: two very close neighbours outvote three farther ones (hand-computed)', () => {
  // Query at 0°. Class 1: two points at 0° (cos 1; lengths differ: features are L2-normalised).
  // Class 0: three points at ±25.84° and 25.84° (cos 0.9). Class 2: one point at 90° (cos 0).
  const c09 = (Math.acos(0.9) * 180) / Math.PI;
  const train = set([angle(0, 3), angle(0, 0.5), angle(c09), angle(-c09, 2), angle(c09, 7), angle(90)], [1, 1, 0, 0, 0, 2]);
  const q = set([angle(0, 10)], [0]);
  const [k3, k5, k6] = knnClassify(train, q, { ks: [5, 3, 6], numClasses: 3, label: null });
  assert.deepEqual([k3.k, k5.k, k6.k], [3, 5, 6]);
  // k=5 (more than class 1's 2 images): votes class1 = 2·e^(1/0.07) ≈ 3.24e6, class0 = 3·e^(0.9/0.07) ≈ 1.15e6:
  // the weighted vote says class 1 although the majority (3 of 5) is class 0. The label is 0, so top-1 is 0.
  assert.equal(k5.accuracy.top1, 0);
  assert.equal(k5.accuracy.top5, 1, 'top-5 covers all 3 classes');
  assert.equal(k3.accuracy.top1, 0);
  // With T large the weights flatten and the majority (class 0) wins.
  const [flat] = knnClassify(train, q, { ks: [5], numClasses: 3, temperature: 1000, label: null });
  assert.equal(flat.accuracy.top1, 1);
  // The votes themselves.
  torch.scope(() => {
    const w = torch.tensor([[Math.exp(1 / 0.07), Math.exp(1 / 0.07), Math.exp(0.9 / 0.07), Math.exp(0.9 / 0.07), Math.exp(0.9 / 0.07)]]);
    const l = torch.tensor([[1, 1, 0, 0, 0]], { dtype: 'int64' });
    const v = knnVotes(w, l, 5, 3).toFloat64Array();
    assert.ok(Math.abs(v[0] / (3 * Math.exp(0.9 / 0.07)) - 1) < 1e-5);
    assert.ok(Math.abs(v[1] / (2 * Math.exp(1 / 0.07)) - 1) < 1e-5);
    assert.equal(v[2], 0);
    const v3 = knnVotes(w, l, 3, 3).toFloat64Array();
    assert.ok(v3[1] > v3[0] && v3[2] === 0);
  });
  for (const s of [train, q]) s.features.dispose();
});

test("the default temperature is 0.07 (DINO's k-NN): a vote that a temperature of 0.1 turns the other way (hand-computed)", () => {
  // Query at 0° of class 1. Class 1: two points at 0° (cos 1); class 0: three at cos 0.965. Class 1 wins iff
  // 2·e^(1/T) > 3·e^(0.965/T), i.e. T < 0.035 / ln 1.5 = 0.0863: at T = 0.07 (ratio (2/3)·e^0.5 = 1.10) class 1,
  // at T = 0.1 (ratio (2/3)·e^0.35 = 0.95) class 0.
  const c = (Math.acos(0.965) * 180) / Math.PI;
  const train = set([angle(0), angle(0, 2), angle(c), angle(-c), angle(c, 3)], [1, 1, 0, 0, 0]);
  const q = set([angle(0)], [1]);
  const top1 = (temperature?: number) => knnClassify(train, q, { ks: [5], numClasses: 2, temperature, label: null })[0].accuracy.top1;
  assert.equal(top1(), 1, 'default temperature: class 1');
  assert.equal(top1(0.07), 1);
  assert.equal(top1(0.1), 0, 'T = 0.1: class 0');
  for (const s of [train, q]) s.features.dispose();
});

test('per-class accuracy, k larger than a class, and k larger than the bank', () => {
  // Class 0 has 4 images near 0°, class 1 has 2 images near 90°, class 2 has 4 images near 180°.
  const train = set(
    [angle(0), angle(5), angle(-5), angle(10), angle(88), angle(92), angle(180), angle(175), angle(185), angle(170)],
    [0, 0, 0, 0, 1, 1, 2, 2, 2, 2],
  );
  // Queries: at 2° (class 0), at 90° (class 1), at 178° (class 2), at 60° labelled 1.
  const q = set([angle(2), angle(90), angle(178), angle(60)], [0, 1, 2, 1]);
  const res = knnClassify(train, q, { ks: [1, 2, 6], numClasses: 3, label: null, chunkSize: 3 });
  const byK = new Map(res.map((r) => [r.k, r.accuracy]));
  // k = 1 and 2: every query is right (the 60° query's nearest are the 88°/92° class-1 points).
  assert.equal(byK.get(1)!.top1, 1);
  assert.equal(byK.get(2)!.top1, 1);
  // k = 6 > the 2 images of class 1: at 90° the neighbours are 88°, 92° (cos ≈ 1) then 4 points at
  // cos ≤ 0.17: class 1 still wins by weight. At 60°: 88° (cos 0.883) and 92° (cos 0.848) for class 1
  // vs 10°, 5°, 0°, -5° (cos 0.643, 0.574, 0.5, 0.423) for class 0:
  const w = (deg: number) => Math.exp(Math.cos((deg * Math.PI) / 180) / 0.07);
  const class1 = w(28) + w(32);
  const class0 = w(50) + w(55) + w(60) + w(65);
  assert.ok(class1 > class0);
  const a6 = byK.get(6)!;
  assert.equal(a6.top1, 1);
  assert.deepEqual(a6.perClass, [1, 1, 1]);
  assert.deepEqual(a6.perClassCount, [1, 2, 1]);
  assert.throws(() => knnClassify(train, q, { ks: [11], numClasses: 3, label: null }), /k = 11 exceeds the 10 training features/);
  // labels outside the classes: a training one would vote for no class, a test one was counted in a hole
  assert.throws(() => knnClassify(train, q, { ks: [1], numClasses: 2, label: null }), /knnClassify: training label 2 \(row 6\) is outside 0\.\.1/);
  const badQuery = { features: q.features, labels: Int32Array.of(0, 1, 3, 1) };
  assert.throws(() => knnClassify(train, badQuery, { ks: [1], numClasses: 3, label: null }), /knnClassify: test label 3 \(row 2\) is outside 0\.\.2/);
  // a test label per test row, and a block of test rows that is a whole number of rows
  const shortLabels = { features: q.features, labels: Int32Array.of(0, 1, 2) };
  assert.throws(() => knnClassify(train, shortLabels, { ks: [1], numClasses: 3, label: null }), /knnClassify: features and labels differ in count/);
  assert.throws(
    () => knnClassify(train, q, { ks: [1], numClasses: 3, label: null, chunkSize: 1.5 }),
    /knnClassify: chunkSize must be a positive integer, got 1\.5/,
  );
  for (const s of [train, q]) s.features.dispose();
});

test('chunked k-NN equals a brute-force reference for every k from one top-max(k) pass', () => {
  const g = new torch.Generator(5);
  const nTrain = 120;
  const nTest = 37;
  const C = 4;
  const trainX = torch.keep(torch.randn([nTrain, 8], { generator: g }));
  const testX = torch.keep(torch.randn([nTest, 8], { generator: g }));
  const trainY = Int32Array.from({ length: nTrain }, (_, i) => (i * 7) % C);
  const testY = Int32Array.from({ length: nTest }, (_, i) => (i * 3) % C);
  const ks = [1, 5, 20];
  const a = knnClassify({ features: trainX, labels: trainY }, { features: testX, labels: testY }, { ks, numClasses: C, chunkSize: 5, label: null });
  const b = knnClassify({ features: trainX, labels: trainY }, { features: testX, labels: testY }, { ks, numClasses: C, chunkSize: 1000, label: null });
  assert.deepEqual(a, b);
  // Reference in plain JS (float64).
  const tr = trainX.toFloat64Array();
  const te = testX.toFloat64Array();
  const norm = (v: Float64Array, i: number) => Math.hypot(...v.subarray(i * 8, i * 8 + 8));
  for (const [ki, k] of ks.entries()) {
    const scores: number[][] = [];
    for (let i = 0; i < nTest; i++) {
      const sims = Array.from({ length: nTrain }, (_, j) => {
        let d = 0;
        for (let c = 0; c < 8; c++) d += te[i * 8 + c] * tr[j * 8 + c];
        return [d / (norm(te, i) * norm(tr, j)), j];
      }).sort((x, y) => y[0] - x[0]);
      const votes = new Array(C).fill(0);
      for (const [s, j] of sims.slice(0, k)) votes[trainY[j]] += Math.exp(s / 0.07);
      scores.push(votes);
    }
    const ref = torch.scope(() => accuracyOf(torch.tensor(scores, { dtype: 'float64' }), testY, C));
    assert.equal(a[ki].accuracy.top1, ref.top1, `k=${k} top-1`);
    assert.equal(a[ki].accuracy.top5, 1);
    assert.deepEqual(a[ki].accuracy.perClass, ref.perClass, `k=${k} per class`);
  }
  trainX.dispose();
  testX.dispose();
});

test('k lists parse and bad ones are refused', () => {
  assert.deepEqual(parseKs('20, 10,30,10'), [10, 20, 30]);
  assert.deepEqual(parseKs('100,9,20'), [9, 20, 100], 'in numeric order, not as text');
  assert.throws(() => parseKs('10,x'), /positive integers/);
  assert.throws(() => parseKs('0'), /positive integers/);
  // decimal digits only, as the number options take them ('0x10' was k = 16, '0b11' k = 3)
  for (const text of ['0x10', '0b11', '0o7', '1e1', '10,+20', '1.0']) assert.throws(() => parseKs(text), /positive integers/, text);
});

test('a small temperature keeps the weighted vote (exp(cos / T) overflowed to inf above cos 88.7·T: all votes tied, the lowest class won)', () => {
  // Query at 0°: one class-1 neighbour at cos 0.999, three class-0 neighbours at cos 0.9.
  const c = (cos: number) => (Math.acos(cos) * 180) / Math.PI;
  const train = set([angle(c(0.999)), angle(c(0.9)), angle(-c(0.9)), angle(c(0.9))], [1, 0, 0, 0]);
  const q = set([angle(0)], [1]);
  for (const temperature of [0.001, 0.005, 0.01, 0.02, 0.07]) {
    const [r] = knnClassify(train, q, { ks: [4], numClasses: 2, temperature, label: null });
    assert.equal(r.accuracy.top1, 1, `T = ${temperature}`);
  }
  const [flat] = knnClassify(train, q, { ks: [4], numClasses: 2, temperature: 1, label: null });
  assert.equal(flat.accuracy.top1, 0, 'with T = 1 the three class-0 votes win');
});

test('knnClassifyAsync gives knnClassify’s results and lets the event loop turn after every block of test rows', async () => {
  const g = new torch.Generator(4);
  const train: FeatureSet = { features: torch.keep(torch.randn([40, 8], { generator: g })), labels: Int32Array.from({ length: 40 }, (_, i) => i % 4) };
  const test: FeatureSet = { features: torch.keep(torch.randn([12, 8], { generator: g })), labels: Int32Array.from({ length: 12 }, (_, i) => i % 4) };
  const o = { ks: [1, 5], numClasses: 4, chunkSize: 3, label: null };
  const want = knnClassify(train, test, o);
  const { result: got, turns } = await countingLoopTurns(() => knnClassifyAsync(train, test, o));
  assert.deepEqual(got, want);
  assert.ok(turns >= 3, `the event loop turned ${turns} times during 4 blocks`);
  await assert.rejects(knnClassifyAsync(train, test, { ...o, ks: [41] }), /k = 41 exceeds the 40 training features/);
  for (const s of [train, test]) s.features.dispose();
});

test('a rank whose shard holds fewer rows than k pads its nearest with similarity -inf: the padding never outranks a real neighbour', () => {
  // Rank 0 of 2 holds one training row (95°, class 1); the other rank's two nearest (220°, 150°, class 2)
  // come through the group. Every real similarity to the 0° query is negative: padding at similarity 0
  // (label 0) would be the nearest neighbour and win the vote for class 0.
  const train: FeatureSet = { ...set([angle(95)], [1]), shard: { positions: Int32Array.of(0), size: 4 } };
  const query = set([angle(0)], [1]);
  const cos = (deg: number) => Math.cos((deg * Math.PI) / 180);
  const other = [torch.keep(torch.tensor([[cos(220), cos(150)]])), torch.keep(torch.tensor([[2, 2]], { dtype: 'int64' }))];
  let call = 0;
  const group = { rank: 0, worldSize: 2, allGatherSync: (t: torch.Tensor) => [t, other[call++ % 2]] } as unknown as ProcessGroup;
  const [r] = knnClassify(train, query, { ks: [2], numClasses: 3, label: null, group });
  assert.equal(call, 2, 'one exchange of similarities and labels');
  assert.deepEqual(r.accuracy.perClass, [null, 1, null], 'the 95° row (class 1) is the nearest, then 220° (class 2)');
  for (const t of [train.features, query.features, ...other]) t.dispose();
});
