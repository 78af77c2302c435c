// mIoU against confusion matrices computed by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { ConfusionMatrix, metricsFromConfusion } from '../../src/eval/miou';
import { constantPredictionMetrics } from '../../src/eval/segprobe';

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

// 4 classes, 255 = ignore. Labelled pixels (truth → prediction):
//   truth 0: 0 0 0 1      truth 1: 1 1 0      truth 2: 2 1
// two ignored pixels predicted 3 and 2 (they count nowhere); class 3 is in neither the truth nor a
// labelled pixel's prediction. Confusion (row truth, column prediction):
//   [3 1 0 0]
//   [1 2 0 0]
//   [0 1 1 0]
//   [0 0 0 0]
// IoU0 = 3 / (4 + 4 − 3) = 3/5, IoU1 = 2 / (3 + 4 − 2) = 2/5, IoU2 = 1 / (2 + 1 − 1) = 1/2, IoU3 = 0/0 → left out.
const truth = [0, 0, 0, 0, 1, 1, 1, 2, 2, 255, 255];
const pred = [0, 0, 0, 1, 1, 1, 0, 2, 1, 3, 2];

test('mIoU of a hand-computed confusion: ignored pixels count nowhere, a class absent from truth and prediction is left out', () => {
  const c = new ConfusionMatrix(4).addArrays(truth, pred);
  assert.deepEqual([...c.counts], [3, 1, 0, 0, 1, 2, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
  const m = c.metrics();
  assert.deepEqual(
    m.perClassIoU.map((v) => (v === null ? null : Number(v.toFixed(12)))),
    [0.6, 0.4, 0.5, null],
  );
  close(m.mIoU, (0.6 + 0.4 + 0.5) / 3, 'mIoU (mean over the 3 classes present)');
  close(m.pixelAccuracy, 6 / 9, 'pixel accuracy');
  close(m.meanAccuracy, (3 / 4 + 2 / 3 + 1 / 2) / 3, 'mean accuracy');
  assert.deepEqual(
    m.perClassAccuracy.map((v) => (v === null ? null : Number(v.toFixed(12)))),
    [0.75, Number((2 / 3).toFixed(12)), 0.5, null],
  );
  assert.equal(m.pixels, 9);
  assert.equal(m.classesScored, 3);
});

test('a class predicted but absent from the truth counts with IoU 0', () => {
  // As above with 5 classes and one more truth-0 pixel predicted as class 4.
  const m = new ConfusionMatrix(5).addArrays([...truth, 0], [...pred, 4]).metrics();
  // IoU0 = 3 / (5 + 4 − 3) = 1/2; IoU4 = 0 / 1 = 0; class 3 still left out.
  assert.deepEqual(
    m.perClassIoU.map((v) => (v === null ? null : Number(v.toFixed(12)))),
    [0.5, 0.4, 0.5, null, 0],
  );
  close(m.mIoU, (0.5 + 0.4 + 0.5 + 0) / 4, 'mIoU over 4 classes');
  assert.equal(m.perClassAccuracy[4], null, 'no truth pixel of class 4: no accuracy');
});

test('counting on tensors gives the same matrix as counting on arrays, and bad labels are refused', () => {
  const c = new ConfusionMatrix(4);
  torch.scope(() =>
    c.addTensors(torch.tensor(Uint8Array.from(truth), { shape: [1, 11] }), torch.tensor(BigInt64Array.from(pred.map(BigInt)), { shape: [1, 11] })),
  );
  assert.deepEqual([...c.counts], [...new ConfusionMatrix(4).addArrays(truth, pred).counts]);
  assert.throws(() => new ConfusionMatrix(3).addArrays([3], [0]), /truth label 3 is outside 0..2/);
  assert.throws(() => new ConfusionMatrix(3).addArrays([0], [5]), /predicted label 5/);
  assert.throws(() => new ConfusionMatrix(3).addArrays([0], [3]), /predicted label 3 is outside 0..2/);
  assert.throws(
    () => torch.scope(() => new ConfusionMatrix(3).addTensors(torch.tensor(Uint8Array.from([0, 7])), torch.tensor(Uint8Array.from([0, 1])))),
    /outside 0..2/,
  );
  // a prediction beyond the classes (a head with more outputs than classes) would be counted in another class's row
  assert.throws(
    () => torch.scope(() => new ConfusionMatrix(3).addTensors(torch.tensor(Uint8Array.from([0, 1])), torch.tensor(Uint8Array.from([0, 3])))),
    /outside 0..2/,
  );
  // as many pixels, another shape: not paired pixel by pixel in their flattened order
  assert.throws(
    () => torch.scope(() => new ConfusionMatrix(3).addTensors(torch.zeros([2, 3], { dtype: 'int64' }), torch.zeros([3, 2], { dtype: 'int64' }))),
    /truth \[2,3\] and prediction \[3,2\] differ/,
  );
  const empty = metricsFromConfusion(new Float64Array(4), 2);
  for (const k of ['mIoU', 'pixelAccuracy', 'meanAccuracy'] as const) assert.ok(Number.isNaN(empty[k]), `nothing labelled: ${k} NaN, not 0`);
});

test('a label that is not a whole number is refused, not dropped (arrays) or truncated to a class (tensors)', () => {
  // addArrays wrote counts[1.5], a no-op on a typed array: the pixel vanished and the mIoU was of the rest
  assert.throws(() => new ConfusionMatrix(3).addArrays([0, 1.5, 2], [0, 1, 2]), /truth label 1.5 is not a class index/);
  assert.throws(() => new ConfusionMatrix(3).addArrays([0, 1, 2], [0, 1, 2.5]), /predicted label 2.5 is not a class index/);
  // addTensors cast floating labels to int64: 1.5 counted as class 1, a hit
  assert.throws(
    () => torch.scope(() => new ConfusionMatrix(3).addTensors(torch.tensor(Float32Array.from([0, 1.5])), torch.tensor(Float32Array.from([0, 1])))),
    /not a whole number/,
  );
  assert.throws(
    () => torch.scope(() => new ConfusionMatrix(3).addTensors(torch.tensor(Float32Array.from([0, 1])), torch.tensor(Float32Array.from([0, 0.7])))),
    /not a whole number/,
  );
  // whole numbers in a floating tensor are class indices as ever
  const c = new ConfusionMatrix(3);
  torch.scope(() => c.addTensors(torch.tensor(Float32Array.from([0, 1, 255])), torch.tensor(Float32Array.from([0, 2, 1]))));
  assert.deepEqual([...c.counts], [1, 0, 0, 0, 0, 1, 0, 0, 0]);
});

test('the constant-prediction baseline: all background scores IoU_bg = background share, 0 for every other class present', () => {
  // 10 pixels: 7 background, 2 of class 1, 1 of class 2, class 3 absent; one ignored pixel.
  const masks = Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 255]);
  const m = constantPredictionMetrics(masks, 4, 0);
  assert.deepEqual(m.perClassIoU, [0.7, 0, 0, null]);
  close(m.mIoU, 0.7 / 3, 'mIoU');
  close(m.pixelAccuracy, 0.7, 'pixel accuracy');
});
