import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { evaluateProbe, linprobeOnFeatures, linprobeOnline, makeProbeOptimizer } from '../../src/eval/linprobe';
import { LinearProbe } from '../../src/eval/classifier';
import { extractFeatures, FeatureSet } from '../../src/eval/features';
import { loadEncoder } from '../../src/semaim';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { countingLoopTurns, toyImages, writeEncoder } from './helpers';
import { captureTerminal } from '../output';
import { formatNumber } from '../../src/run/progress';
import type { ProcessGroup } from '../../src/dist';

/** Linearly separable features: class means far apart along random directions, small noise, a large offset and scale (BatchNorm's job). */
function separable(n: number, C: number, D: number, seed: number): FeatureSet {
  return torch.scope(() => {
    const g = new torch.Generator(seed);
    const means = torch.randn([C, D], { generator: new torch.Generator(99) }).mul(2);
    const labels = Int32Array.from({ length: n }, (_, i) => i % C);
    const idx = torch.tensor(labels, { dtype: 'int64' });
    const x = means
      .indexSelect(0, idx)
      .add(torch.randn([n, D], { generator: g }).mul(0.5))
      .mul(40)
      .add(7);
    return { features: torch.keep(x), labels };
  });
}

test('the linear probe reaches >= 95% on linearly separable features (SGD and LARS)', async () => {
  const train = separable(600, 5, 24, 1);
  const testSet = separable(300, 5, 24, 2);
  const sgd = await linprobeOnFeatures(train, testSet, 5, { epochs: 8, batchSize: 64, blr: 0.1, seed: 0, label: null, evalEvery: 4 });
  assert.ok(sgd.accuracy.top1 >= 0.95, `SGD top-1 ${sgd.accuracy.top1}`);
  assert.equal(sgd.accuracy.n, 300);
  assert.equal(sgd.history.length, 8);
  assert.ok(sgd.history[0].loss > sgd.history[7].loss, 'loss falls');
  assert.equal(typeof sgd.history[3].top1, 'number');
  assert.ok(Math.abs(sgd.lr - (0.1 * 64) / 256) < 1e-12, 'lr = blr × batch / 256');
  assert.ok(sgd.history[7].lr < sgd.lr * 0.1, 'cosine to ~0');
  // MAE's head: BatchNorm without affine (head.0) then Linear (head.1).
  assert.deepEqual([...sgd.probe.stateDict().keys()].sort(), [
    'head.0.num_batches_tracked',
    'head.0.running_mean',
    'head.0.running_var',
    'head.1.bias',
    'head.1.weight',
  ]);
  sgd.probe.dispose();
  // LARS's trust ratio (η = 0.001) makes the step lr·η·‖w‖: it needs MAE's large lr (0.1 × 16384 / 256).
  const lars = await linprobeOnFeatures(train, testSet, 5, { epochs: 8, batchSize: 64, blr: 0.1, lr: 6.4, optimizer: 'lars', seed: 0, label: null });
  assert.ok(lars.accuracy.top1 >= 0.95, `LARS top-1 ${lars.accuracy.top1}`);
  lars.probe.dispose();
  // A batch larger than the training set: every step is the whole set, and the lr is scaled by that.
  const whole = await linprobeOnFeatures(train, testSet, 5, { epochs: 1, batchSize: 1024, blr: 0.1, seed: 0, label: null });
  assert.ok(Math.abs(whole.lr - (0.1 * 600) / 256) < 1e-12, `lr ${whole.lr} for batches of 600`);
  whole.probe.dispose();
  train.features.dispose();
  testSet.features.dispose();
});

test('the probe starts as MAE: trunc-normal(0.01) weight, zero bias', () => {
  torch.manualSeed(0);
  const p = new LinearProbe(256, 100);
  const w = p.linear.weight.toFloat64Array();
  const std = Math.sqrt(w.reduce((a, v) => a + v * v, 0) / w.length);
  assert.ok(Math.abs(std - 0.01) < 0.001, `std ${std}`);
  assert.ok(p.linear.bias!.toFloat64Array().every((v) => v === 0));
  p.dispose();
});

test("the probe's BatchNorm divides by sqrt(var + 1e-6) (MAE's eps, not torch's default 1e-5)", () => {
  // running variance 0 (a feature that never varied): a feature of 1e-3 becomes 1e-3 / sqrt(1e-6) = 1
  const p = new LinearProbe(1, 1);
  torch.noGrad(() => {
    p.bn.runningVar.zero_();
    p.linear.weight.fill_(1);
  });
  p.eval();
  const out = torch.scope(() => p.forward(torch.tensor([[1e-3]])).item());
  assert.ok(Math.abs(out - 1) < 1e-5, `${out}`);
  p.dispose();
});

test('the online path trains through a frozen encoder and leaves it unchanged', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-lp-'));
  const { encoder } = loadEncoder(writeEncoder(dir));
  const before = encoder.blocks.at(0).attn.qkv.weight.toFloat64Array();
  const train = toyImages(48, 3, 8, 1);
  const testData = toyImages(24, 3, 8, 2);
  encoder.train(true);
  const te = await extractFeatures(encoder, testData, { batchSize: 16, pooling: 'mean', label: null });
  assert.equal(encoder.training, true, 'extractFeatures gives the encoder back in the mode it was in');
  assert.deepEqual(te.features.shape, [24, 16]);
  assert.deepEqual([...te.labels], [...testData.labels]);
  const r = await linprobeOnline(encoder, train, te, 3, { epochs: 3, batchSize: 16, blr: 0.4, pooling: 'mean', seed: 0, label: null });
  assert.equal(r.history.length, 3);
  assert.ok(r.accuracy.top1 > 0.5, `top-1 ${r.accuracy.top1}`);
  assert.deepEqual(encoder.blocks.at(0).attn.qkv.weight.toFloat64Array(), before);
  assert.equal(encoder.training, true, 'linprobeOnline gives the encoder back in the mode it was in');
  r.probe.dispose();
  te.features.dispose();
  encoder.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test("the online probe's progress line moves at every batch (an epoch through the encoder is long), with the last epoch's loss and a rate", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-lp-'));
  const { encoder } = loadEncoder(writeEncoder(dir));
  const te = await extractFeatures(encoder, toyImages(24, 3, 8, 2), { batchSize: 16, pooling: 'mean', label: null });
  const { result: r, stderr } = await captureTerminal(() =>
    linprobeOnline(encoder, toyImages(48, 3, 8, 1), te, 3, { epochs: 2, batchSize: 16, blr: 0.4, pooling: 'mean', seed: 0, label: 'linprobe' }),
  );
  const lines = stderr.split('\r\x1b[K').filter((l) => l.startsWith('linprobe ['));
  const at = (step: number) => lines.find((l) => l.includes(`] ${step}/6 |`)) ?? `no line at step ${step} in:\n${stderr}`;
  assert.match(at(1), /^linprobe \[[#.]{20}\] 1\/6 \| epoch 1 \| lr \S+ \| (img\/s [\d.]+ \| )?elapsed/);
  assert.match(at(2), /^linprobe \[[#.]{20}\] 2\/6 \| epoch 1 \| lr \S+ \| (img\/s [\d.]+ \| )?elapsed/);
  assert.match(at(4), /^linprobe \[[#.]{20}\] 4\/6 \| epoch 2 \| loss \S+ \| lr \S+ \| (img\/s [\d.]+ \| )?elapsed/);
  assert.ok(at(4).includes(`| loss ${formatNumber(r.history[0].loss)} |`), `the first epoch's loss in: ${at(4)}`);
  assert.ok(lines.at(-1)!.includes(`6/6 | epoch 2 | loss ${formatNumber(r.history[1].loss)} |`), `the last epoch's loss at the end: ${lines.at(-1)}`);
  r.probe.dispose();
  te.features.dispose();
  encoder.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test('a probe that fails frees its tensors: stopped mid-training, a batch larger than the data', async () => {
  const train = separable(64, 4, 8, 1);
  const testSet = separable(16, 4, 8, 2);
  const dir = mkdtempSync(join(tmpdir(), 'semaim-lp-fail-'));
  const { encoder } = loadEncoder(writeEncoder(dir));
  const images = toyImages(16, 3, 8, 1);
  const te = await extractFeatures(encoder, images, { batchSize: 16, pooling: 'mean', label: null });
  try {
    const start = torch.memoryStats().liveTensors;
    for (let i = 0; i < 3; i++) {
      // a signal that reads as aborted from its third look on: the probe stops after its first steps
      let looks = 0;
      const signal = {
        get aborted() {
          return ++looks > 2;
        },
        reason: new Error('stopped mid-training'),
      } as AbortSignal;
      await assert.rejects(linprobeOnFeatures(train, testSet, 4, { epochs: 2, batchSize: 16, blr: 0.1, label: null, signal }), /stopped mid-training/);
      assert.ok(looks > 3, `the probe looked at the signal ${looks} times`);
      await assert.rejects(linprobeOnline(encoder, images, te, 3, { epochs: 1, batchSize: 64, blr: 0.1, pooling: 'mean', label: null }), /no full batch/);
    }
    assert.equal(torch.memoryStats().liveTensors, start, 'each failed probe freed its batch and its head');
  } finally {
    train.features.dispose();
    testSet.features.dispose();
    te.features.dispose();
    encoder.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('labels outside the classes are refused before any step, naming the first (a libtorch index error mid-training before)', async () => {
  const train = separable(64, 4, 8, 1);
  const testSet = separable(16, 4, 8, 2);
  try {
    const start = torch.memoryStats().liveTensors;
    await assert.rejects(linprobeOnFeatures(train, testSet, 3, { epochs: 1, batchSize: 16, blr: 0.1, label: null }), {
      name: 'RangeError',
      message: 'linprobe: training label 3 (row 3) is outside 0..2',
    });
    const wrong = { features: testSet.features, labels: testSet.labels.map((l, i) => (i === 5 ? -1 : l)) };
    await assert.rejects(
      linprobeOnFeatures(train, wrong, 4, { epochs: 1, batchSize: 16, blr: 0.1, label: null }),
      /linprobe: test label -1 \(row 5\) is outside 0\.\.3/,
    );
    assert.equal(torch.memoryStats().liveTensors, start, 'nothing allocated');
  } finally {
    train.features.dispose();
    testSet.features.dispose();
  }
});

test('feature sets whose labels are more or fewer than their rows are refused before any step, naming the split (as knnClassify does)', async () => {
  // (before: extra labels were dropped silently, the probe trained and scored on the first rows' labels;
  // fewer training labels failed mid-training with libtorch's "index out of range in self")
  const train = separable(16, 2, 4, 1);
  const testSet = separable(8, 2, 4, 2);
  const o = { epochs: 1, batchSize: 8, blr: 0.1, label: null };
  const relabel = (s: FeatureSet, n: number): FeatureSet => ({ features: s.features, labels: Int32Array.from({ length: n }, (_, i) => i % 2) });
  try {
    const start = torch.memoryStats().liveTensors;
    for (const n of [18, 12])
      await assert.rejects(linprobeOnFeatures(relabel(train, n), testSet, 2, o), {
        message: `linprobe: the training features have 16 rows, their labels ${n}`,
      });
    for (const n of [9, 5])
      await assert.rejects(linprobeOnFeatures(train, relabel(testSet, n), 2, o), { message: `linprobe: the test features have 8 rows, their labels ${n}` });
    const probe = new LinearProbe(4, 2);
    assert.throws(() => evaluateProbe(probe, relabel(testSet, 9), 2), { message: 'linprobe: the test features have 8 rows, their labels 9' });
    probe.dispose();
    assert.equal(torch.memoryStats().liveTensors, start, 'nothing allocated');
  } finally {
    train.features.dispose();
    testSet.features.dispose();
  }
});

test('features of another dtype (float16, bfloat16, float64) train the probe that their float32 values train, as knnClassify takes them', async () => {
  // (before: the first step failed in libtorch: "batch_norm" not implemented for 'Half', mat1 and mat2 must have the
  // same dtype, mixed dtype (CPU): expect input to have scalar type of BFloat16)
  const train = separable(32, 2, 4, 1);
  const testSet = separable(16, 2, 4, 2);
  const o = { epochs: 2, batchSize: 8, blr: 1, seed: 3, label: null };
  try {
    for (const dtype of ['float16', 'bfloat16', 'float64'] as const) {
      // the set in `dtype`, or its values in float32
      const as = (s: FeatureSet, f32: boolean): FeatureSet => {
        const t = s.features.to({ dtype });
        return { features: f32 ? t.float() : t, labels: s.labels };
      };
      const want = await linprobeOnFeatures(as(train, true), as(testSet, true), 2, o);
      const got = await linprobeOnFeatures(as(train, false), as(testSet, false), 2, o);
      assert.deepEqual(got.history, want.history, dtype);
      assert.deepEqual(got.accuracy, want.accuracy, dtype);
      assert.deepEqual(got.probe.linear.weight.toFloat64Array(), want.probe.linear.weight.toFloat64Array(), dtype);
      assert.deepEqual(evaluateProbe(got.probe, as(testSet, false), 2), want.accuracy, `${dtype}: evaluateProbe`);
      got.probe.dispose();
      want.probe.dispose();
    }
  } finally {
    train.features.dispose();
    testSet.features.dispose();
  }
});

test('the online probe refuses test labels outside the classes and test features of another width before training, as the cached probe does', async () => {
  // (before: it trained every epoch, then tallied label 3 of 3 classes as a fourth class, perClassCount [.., NaN],
  // or failed in libtorch at the end on features of the wrong width)
  const dir = mkdtempSync(join(tmpdir(), 'semaim-lp-online-check-'));
  const { encoder } = loadEncoder(writeEncoder(dir));
  const te = await extractFeatures(encoder, toyImages(24, 3, 8, 2), { batchSize: 16, pooling: 'mean', label: null });
  const narrow = separable(24, 3, 8, 2);
  const o = { epochs: 1, batchSize: 16, blr: 0.4, pooling: 'mean' as const, seed: 0, label: null };
  try {
    const wrong = { features: te.features, labels: te.labels.map((l, i) => (i === 2 ? 3 : l)) };
    await assert.rejects(linprobeOnline(encoder, toyImages(48, 3, 8, 1), wrong, 3, o), {
      name: 'RangeError',
      message: 'linprobe: test label 3 (row 2) is outside 0..2',
    });
    await assert.rejects(linprobeOnline(encoder, toyImages(48, 3, 8, 1), narrow, 3, o), /linprobe: the encoder's features have width 16, test features 8/);
  } finally {
    te.features.dispose();
    narrow.features.dispose();
    encoder.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a probe whose loss turns NaN/Inf stops with an error naming its lr option, instead of a chance-level result', async () => {
  const train = separable(64, 4, 8, 1);
  const testSet = separable(16, 4, 8, 2);
  try {
    const start = torch.memoryStats().liveTensors;
    await assert.rejects(linprobeOnFeatures(train, testSet, 4, { epochs: 3, batchSize: 16, blr: 0.1, lr: 1e38, seed: 0, label: null }), {
      name: 'OptionError',
      key: 'lr',
      message: /linprobe loss became NaN\/Inf in epoch \d \(peak lr 1e\+38\)/,
    });
    await assert.rejects(linprobeOnFeatures(train, testSet, 4, { epochs: 3, batchSize: 16, blr: 1.6e39, seed: 0, label: null }), { key: 'blr' });
    await assert.rejects(linprobeOnFeatures(train, testSet, 4, { epochs: 2, batchSize: 16, blr: 0.1, minLr: 10, seed: 0, label: null }), {
      key: 'minLr',
      message: /is above the peak lr \(0\.00625\)/,
    });
    assert.equal(torch.memoryStats().liveTensors, start, 'the stopped probes freed their heads');
    // a finite loss at an ordinary lr runs through (the check does not fire on a healthy probe)
    const ok = await linprobeOnFeatures(train, testSet, 4, { epochs: 3, batchSize: 16, blr: 0.1, seed: 0, label: null });
    assert.ok(ok.history.every((h) => Number.isFinite(h.loss)));
    ok.probe.dispose();
  } finally {
    train.features.dispose();
    testSet.features.dispose();
  }
});

test('the probe on cached features lets the event loop turn between its steps', async () => {
  const train = separable(256, 4, 8, 1);
  const testSet = separable(64, 4, 8, 2);
  // 2 epochs × 8 steps, all of whose batches are at hand at once
  const { result: r, turns } = await countingLoopTurns(() =>
    linprobeOnFeatures(train, testSet, 4, { epochs: 2, batchSize: 32, blr: 0.1, seed: 0, label: null }),
  );
  assert.ok(turns >= 15, `the event loop turned ${turns} times during 16 steps`);
  r.probe.dispose();
  for (const s of [train, testSet]) s.features.dispose();
});

test('both probes leave the caller’s global random stream where it was (they seed it for the probe’s init), and give the same probe whatever the stream was', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-lp-rng-'));
  const { encoder } = loadEncoder(writeEncoder(dir));
  const train = separable(32, 4, 16, 1);
  const testSet = separable(16, 4, 16, 2);
  const o = { epochs: 1, batchSize: 8, blr: 0.1, seed: 0, label: null };
  const probes = [
    () => linprobeOnFeatures(train, testSet, 4, o),
    () => linprobeOnline(encoder, toyImages(16, 4, 8, 1), testSet, 4, { ...o, pooling: 'mean' as const }),
  ];
  try {
    for (const probe of probes) {
      const weights: number[][] = [];
      const next: number[][] = [];
      for (const callerSeed of [5, 6]) {
        torch.manualSeed(callerSeed);
        const r = await probe();
        weights.push(Array.from(r.probe.linear.weight.toFloat32Array()));
        r.probe.dispose();
        next.push(torch.scope(() => Array.from(torch.rand([4]).toFloat32Array())));
      }
      assert.deepEqual(weights[1], weights[0], 'the same probe');
      torch.manualSeed(5);
      assert.deepEqual(
        next[0],
        torch.scope(() => Array.from(torch.rand([4]).toFloat32Array())),
        'the caller’s stream goes on',
      );
    }
  } finally {
    for (const s of [train, testSet]) s.features.dispose();
    encoder.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('evaluateProbe scores each chunk of test rows against its own labels (hand-counted hits, any chunk size)', () => {
  // logits = features (identity weight, zero bias; BatchNorm at its initial running mean 0, variance 1)
  const probe = new LinearProbe(3, 3);
  torch.noGrad(() => {
    probe.linear.weight.copy_(torch.tensor([1, 0, 0, 0, 1, 0, 0, 0, 1], { shape: [3, 3] }));
    probe.linear.bias!.zero_();
  });
  const predicted = [0, 1, 2, 2, 1, 0, 1, 2];
  const labels = Int32Array.from([0, 1, 2, 0, 1, 0, 2, 2]); // right on rows 0, 1, 2, 4, 5, 7
  const features = torch.tensor(
    predicted.flatMap((p) => [0, 1, 2].map((c) => (c === p ? 5 : 0))),
    { shape: [8, 3] },
  );
  try {
    for (const chunk of [3, 5, 1024]) {
      const acc = evaluateProbe(probe, { features, labels }, 3, chunk);
      assert.equal(probe.training, true, 'the probe given back in training mode');
      assert.equal(acc.n, 8, `chunk ${chunk}`);
      assert.equal(acc.top1, 6 / 8, `chunk ${chunk}`);
      assert.deepEqual(acc.perClass, [2 / 3, 1, 2 / 3], `chunk ${chunk}`);
      assert.deepEqual(acc.perClassCount, [3, 2, 3], `chunk ${chunk}`);
    }
    // a chunk of 0 looped forever on the first row; -1 or 2.5 failed inside libtorch's narrow
    for (const chunk of [0, -1, 2.5, NaN])
      assert.throws(() => evaluateProbe(probe, { features, labels }, 3, chunk), /evaluateProbe: chunk must be a positive integer/, `chunk ${chunk}`);
    assert.equal(probe.training, true, 'a refused chunk leaves the probe in training mode');
  } finally {
    features.dispose();
    probe.dispose();
  }
});

test('the probe refuses a warm-up as long as its epochs and fewer than 2 training features, naming itself, before allocating anything', async () => {
  const train = separable(16, 4, 8, 1);
  const testSet = separable(8, 4, 8, 2);
  const one = { features: train.features.narrow(0, 0, 1), labels: train.labels.subarray(0, 1) };
  try {
    const start = torch.memoryStats().liveTensors;
    await assert.rejects(linprobeOnFeatures(train, testSet, 4, { epochs: 2, warmupEpochs: 2, batchSize: 8, blr: 0.1, label: null }), {
      name: 'RangeError',
      message: /^linprobe: warmupEpochs \(2\) must be below epochs \(2\)/,
    });
    await assert.rejects(linprobeOnFeatures(one, testSet, 4, { epochs: 1, batchSize: 8, blr: 0.1, label: null }), {
      code: 'ERR_DATA', // (a plain Error before: runLinprobe on a folder with one readable training image)
      message: /^linprobe: need at least 2 training features \(images\), got 1/,
    });
    assert.equal(torch.memoryStats().liveTensors, start, 'nothing allocated');
  } finally {
    one.features.dispose();
    train.features.dispose();
    testSet.features.dispose();
  }
});

test("the probe's optimiser: SGD (or LARS) with the options' weight decay and momentum (default 0.9, no decay)", () => {
  const probe = new LinearProbe(3, 2);
  try {
    const base = { epochs: 1, batchSize: 4 };
    const hyper = (o: Record<string, unknown>) => {
      const opt = makeProbeOptimizer(probe, { ...base, ...o } as Parameters<typeof makeProbeOptimizer>[1], 0.1);
      const g = opt.paramGroups[0] as unknown as { lr: number; weightDecay: number; momentum: number };
      const r = [opt.constructor.name, g.lr, g.weightDecay, g.momentum];
      opt.dispose();
      return r;
    };
    assert.deepEqual(hyper({}), ['SGD', 0.1, 0, 0.9]);
    assert.deepEqual(hyper({ weightDecay: 0.05, momentum: 0.5 }), ['SGD', 0.1, 0.05, 0.5]);
    assert.deepEqual(hyper({ optimizer: 'lars', weightDecay: 0.05 }), ['LARS', 0.1, 0.05, 0.9]);
  } finally {
    probe.dispose();
  }
});

test('the online probe refuses a batch that the ranks cannot split evenly, before any work', async () => {
  // (each rank reads batchSize / ranks images of every batch: 3 over 2 ranks would not be the batch asked for)
  const group = { rank: 0, worldSize: 2 } as unknown as ProcessGroup;
  await assert.rejects(
    linprobeOnline(null as never, null as never, null as never, 3, { epochs: 1, batchSize: 3, blr: 0.1, pooling: 'mean', label: null, group }),
    (e: Error) => e instanceof RangeError && e.message === 'linprobe: batchSize 3 is not divisible by the 2 ranks',
  );
});
