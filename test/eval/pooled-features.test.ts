// One encoder pass for several poolings gives exactly the features of one pass per pooling, and
// evaluation images decoded once into memory are the images the data gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { native } from '../../src/torch/native';
import { VisionTransformer } from '../../src/semaim';
import { LabelledData, MemoryLabelledData } from '../../src/data';
import { checkImageShape, extractFeatures, extractPooledFeatures, disposeFeatures } from '../../src/eval/features';
import { TINY, countingLoopTurns, toyImages } from './helpers';

test('extractPooledFeatures: [CLS] and mean from one pass equal extractFeatures of each pooling', async () => {
  torch.manualSeed(4);
  const enc = new VisionTransformer(TINY).initWeights();
  const data = toyImages(21, 3, 8, 5);
  const both = await extractPooledFeatures(enc, data, ['cls', 'mean'], { batchSize: 8, label: null });
  try {
    for (const pooling of ['cls', 'mean'] as const) {
      const one = await extractFeatures(enc, data, { batchSize: 8, pooling, label: null });
      const got = both.get(pooling)!;
      assert.deepEqual(got.features.shape, [21, TINY.embedDim]);
      assert.deepEqual(Array.from(got.features.toFloat32Array()), Array.from(one.features.toFloat32Array()), pooling);
      assert.deepEqual(got.labels, one.labels);
      disposeFeatures(one);
    }
    assert.notDeepEqual(Array.from(both.get('cls')!.features.toFloat32Array()), Array.from(both.get('mean')!.features.toFloat32Array()));
  } finally {
    disposeFeatures(...both.values());
    enc.dispose();
  }
});

test('MemoryLabelledData.load reads every image once, in order, with labels and classes', async () => {
  const data = toyImages(19, 3, 8, 6);
  const cached = await MemoryLabelledData.load(data, 4);
  assert.equal(cached.size, 19);
  assert.deepEqual(cached.imageShape, [3, 8, 8]);
  assert.deepEqual(Array.from(cached.images), Array.from(data.images));
  assert.deepEqual(cached.labels, data.labels);
  assert.equal(cached.numClasses, 3);
  assert.deepEqual(cached.classNames, data.classNames);
});

const storage = (t: torch.Tensor): number => native.storageId(t.h);

test('pooled [CLS] features own their storage: a kept [CLS] of every batch does not keep every token', () => {
  torch.manualSeed(5);
  const enc = new VisionTransformer(TINY).initWeights();
  try {
    torch.scope(() => {
      const images = torch.randn([3, 3, TINY.imgSize, TINY.imgSize]);
      const z = enc.forwardFeatures(images);
      const cls = enc.pool(z, 'cls');
      assert.notEqual(storage(cls), storage(z), 'a copy, not a view of the [B, 1 + N, D] tokens');
      assert.deepEqual(Array.from(cls.toFloat32Array()), Array.from(z.select(1, 0).contiguous().toFloat32Array()));
      assert.notEqual(storage(enc.features(images, 'cls')), storage(z));
    });
  } finally {
    enc.dispose();
  }
});

test('feature extraction refuses data that gives fewer or more images than its size (rows never written were kept as features)', async () => {
  torch.manualSeed(4);
  const enc = new VisionTransformer(TINY).initWeights();
  const images = toyImages(6, 3, 8, 5);
  const claiming = (size: number): LabelledData => ({ size, numClasses: 3, imageShape: [3, 8, 8], batches: (o) => images.batches(o), close() {} });
  try {
    const start = torch.memoryStats().liveTensors;
    // a caller's data at fault: a DataError (code ERR_DATA), as README's error table says
    await assert.rejects(extractFeatures(enc, claiming(8), { batchSize: 4, pooling: 'cls', label: null }), {
      code: 'ERR_DATA',
      message: /gave 6 images, its size is 8/,
    });
    await assert.rejects(extractFeatures(enc, claiming(5), { batchSize: 4, pooling: 'cls', label: null }), {
      code: 'ERR_DATA',
      message: /gave more than its size \(5\)/,
    });
    const wrongSize: LabelledData = { size: 6, numClasses: 3, imageShape: [3, 16, 16], batches: (o) => images.batches(o), close() {} };
    assert.throws(() => checkImageShape(enc, wrongSize, 'train data'), {
      code: 'ERR_DATA',
      message: /train data: images are \[3,16,16\], the encoder expects \[3,8,8\]/,
    });
    // a one-channel encoder (timm in_chans=1) on RGB data of its size: the remedy was "set the image size of the data to 8"
    const grey = new VisionTransformer({ ...TINY, inChans: 1 });
    try {
      const rgb: LabelledData = { size: 6, numClasses: 3, imageShape: [3, 8, 8], batches: (o) => images.batches(o), close() {} };
      assert.throws(
        () => checkImageShape(grey, rgb, 'test data'),
        (e: Error) =>
          /^test data: images are \[3,8,8\], the encoder expects \[1,8,8\] \(it takes 1 channel\(s\), the data gives 3\)$/.test(e.message) &&
          !/image size/.test(e.message),
      );
    } finally {
      grey.dispose();
    }
    assert.equal(torch.memoryStats().liveTensors, start, 'the refused extractions freed their features');
  } finally {
    enc.dispose();
  }
});

test("feature extraction refuses a pooling that is not one vector per image ('all', or unknown), or a batch size that is no positive integer, before any batch", async () => {
  const enc = new VisionTransformer(TINY).initWeights(0);
  const data = toyImages(4, 3, 8, 5);
  try {
    for (const pooling of ['all', 'max', undefined]) {
      await assert.rejects(
        extractFeatures(enc, data, { batchSize: 2, pooling: pooling as never, label: null }),
        (e) => e instanceof RangeError && e.message === `features: pooling must be one of cls, mean, gap, got ${pooling}`,
        String(pooling),
      );
    }
    // nor a batch size that is not a whole number of images
    for (const batchSize of [1.5, 0])
      await assert.rejects(
        extractFeatures(enc, data, { batchSize, pooling: 'cls', label: null }),
        (e) => e instanceof RangeError && e.message === `features: batchSize must be a positive integer, got ${batchSize}`,
      );
  } finally {
    enc.dispose();
  }
});

test('extractFeatures lets the event loop turn after every batch of images, also of data at hand at once (in memory)', async () => {
  torch.manualSeed(4);
  const enc = new VisionTransformer(TINY).initWeights();
  try {
    // 10 batches whose images are all in memory: every await of the loop resolved at once, and timers waited for the whole pass
    const { result: f, turns } = await countingLoopTurns(() => extractFeatures(enc, toyImages(40, 2, 8, 1), { batchSize: 4, pooling: 'cls', label: null }));
    disposeFeatures(f);
    assert.ok(turns >= 9, `the event loop turned ${turns} times during 10 batches`);
  } finally {
    enc.dispose();
  }
});
