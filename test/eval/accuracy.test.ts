// Top-1 / top-5 tallies against hits counted by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { AccuracyTally } from '../../src/eval/accuracy';

test('tied scores go to the lower class index (a stable sort): with 100 tied classes the top-1 is class 0 and the top-5 classes 0..4', () => {
  const t = new AccuracyTally(100);
  // rows 0-3: all 100 scores tied; row 4: class 50 above 99 tied others, so its top-5 is 50, 0, 1, 2, 3
  const labels = Int32Array.from([0, 4, 5, 99, 3]);
  const rowOf50 = new Float32Array(100);
  rowOf50[50] = 1;
  const scores = () => torch.cat([torch.zeros([4, 100]), torch.tensor(rowOf50, { shape: [1, 100] })], 0);
  const hits = torch.scope(() => t.hits(scores(), labels));
  assert.deepEqual([...hits.top1], [1, 0, 0, 0, 0]);
  assert.deepEqual([...hits.top5], [1, 1, 0, 0, 1]);
  torch.scope(() => t.add(scores(), labels));
  const r = t.result();
  assert.equal(r.n, 5);
  assert.equal(r.top1, 1 / 5);
  assert.equal(r.top5, 3 / 5);
});

test('the hits are those of a stable descending sort of the scores, with ties, NaN, ±Inf and labels outside the classes', () => {
  const C = 7;
  const B = 400;
  torch.manualSeed(3);
  // few distinct values (many ties), some NaN and ±Inf; labels include -1 and C (never a hit)
  const values = [0, 1, -1, 2, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0];
  const picks = torch.scope(() => torch.randint(0, values.length, [B, C]).to({ dtype: 'int32' }).data() as Int32Array);
  const scores = Float32Array.from(picks, (i) => values[i]);
  const labels = Int32Array.from({ length: B }, (_, i) => (i % 50 === 0 ? -1 : i % 50 === 1 ? C : i % C));
  for (const k of [5, 1]) {
    const classes = k === 5 ? C : 1; // top-5 of 7 classes, and of a single class (min(5, C) = 1)
    const s = (): torch.Tensor =>
      torch
        .tensor(scores, { shape: [B, C] })
        .narrow(1, 0, classes)
        .contiguous();
    const y = classes === 1 ? Int32Array.from(labels, (l) => (l === 0 || l < 0 || l >= C ? l : l % 2 ? 1 : 0)) : labels;
    const got = torch.scope(() => new AccuracyTally(classes).hits(s(), y));
    // the reference: the first min(5, classes) places of argsort(descending, stable) hold the label
    const order = torch.scope(() => s().argsort(1, true, true).to({ dtype: 'int32' }).data() as Int32Array);
    const top = Math.min(5, classes);
    const want1 = Uint8Array.from(y, (l, r) => (order[r * classes] === l ? 1 : 0));
    const want5 = Uint8Array.from(y, (l, r) => (order.subarray(r * classes, r * classes + top).includes(l) ? 1 : 0));
    assert.deepEqual([...got.top1], [...want1], `top-1, ${classes} classes`);
    assert.deepEqual([...got.top5], [...want5], `top-5, ${classes} classes`);
  }
});

test('a label outside the classes counts as a miss in n, in no class: perClass and counts() keep one entry per class', () => {
  // (hits() gives such a row no hit; add() then counted it at count[3] (NaN) and count[-1], one class too many)
  const t = new AccuracyTally(3);
  const scores = () => torch.tensor([0, 1, 0, 0, 1, 0, 1, 0, 0], { shape: [3, 3] });
  torch.scope(() => t.add(scores(), Int32Array.from([1, 3, -1])));
  const r = t.result();
  assert.equal(r.n, 3);
  assert.equal(r.top1, 1 / 3);
  assert.deepEqual(r.perClassCount, [0, 1, 0]);
  assert.deepEqual(r.perClass, [null, 1, null]);
  assert.equal(t.counts().length, 3 + 2 * 3);
  assert.deepEqual(AccuracyTally.fromCounts(3, t.counts()).result(), r);
});

test('tallies summed through counts() and fromCounts() give the accuracy of all their rows at once; an empty tally has no accuracy', () => {
  // (data-parallel ranks add their tallies up this way: each class's hits and rows must come back as such)
  const scores = () => torch.tensor([1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1], { shape: [6, 3] });
  const labels = Int32Array.from([0, 1, 2, 1, 0, 0]); // hits: rows 0, 1, 2, 4; class 0: 2 of 3, class 1: 1 of 2, class 2: 1 of 1
  const all = new AccuracyTally(3);
  torch.scope(() => all.add(scores(), labels));
  const halves = [0, 3].map((start) => {
    const t = new AccuracyTally(3);
    torch.scope(() => t.add(scores().narrow(0, start, 3), labels.subarray(start, start + 3)));
    return t.counts();
  });
  const summed = AccuracyTally.fromCounts(
    3,
    halves[0].map((v, i) => v + halves[1][i]),
  ).result();
  assert.deepEqual(summed, all.result());
  assert.deepEqual(summed.perClass, [2 / 3, 1 / 2, 1]);
  assert.deepEqual(summed.perClassCount, [3, 2, 1]);
  assert.throws(() => AccuracyTally.fromCounts(3, halves[0].slice(1)), /AccuracyTally: 8 counts for 3 classes/);
  // one label per score row, both ways
  assert.throws(() => torch.scope(() => all.add(scores(), labels.subarray(0, 5))), /AccuracyTally: 6 score rows for 5 labels/);
  assert.throws(() => torch.scope(() => all.add(scores().narrow(0, 0, 5), labels)), /AccuracyTally: 5 score rows for 6 labels/);
  const none = new AccuracyTally(3).result();
  assert.ok(Number.isNaN(none.top1) && Number.isNaN(none.top5), 'no rows: no accuracy, not 0');
  assert.deepEqual([none.n, none.perClass], [0, [null, null, null]]);
});

test('float64 scores are ranked in float64: a class ahead by less than float32 resolves is still the top-1 (rounded to float32 it tied, and the lower class won)', () => {
  // (a float64 classifier, as fine-tuning's float64 path builds, had its logits cast to float32 before the ranking)
  const scores = () => torch.tensor(Float64Array.from([1, 1 + 1e-12, 0.5, 0.25, 0.5, 0.5 - 1e-12]), { shape: [2, 3], dtype: 'float64' });
  const want = torch.scope(() => scores().argmax(1).to({ dtype: 'int32' }).data() as Int32Array);
  assert.deepEqual([...want], [1, 1]);
  const t = new AccuracyTally(3);
  const hits = torch.scope(() => t.hits(scores(), Int32Array.from([1, 1])));
  assert.deepEqual([...hits.top1], [1, 1]);
  // lower precisions are ranked exactly as before (their float32 values are exact)
  const half = torch.scope(() => t.hits(scores().to({ dtype: 'float16' }), Int32Array.from([1, 1])));
  assert.deepEqual([...half.top1], [0, 1], 'float16: 1 and 1 + 1e-12 tie (class 0 first); 0.5 and 0.5 − 1e-12 tie (class 1 first)');
});
