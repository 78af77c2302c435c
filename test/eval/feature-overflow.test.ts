// An encoder with finite but huge weights (as a diverged pre-training leaves them) overflows float32: its
// features are NaN/Inf. k-NN, linprobe, segprobe and embed refuse it naming the weights file, before any
// result is written, and a probe whose inputs are not finite does not blame its lr.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { saveTensors } from '../../src/io';
import { VisionTransformer } from '../../src/semaim';
import {
  KNN_OPTIONS,
  LINPROBE_OPTIONS,
  SEGPROBE_OPTIONS,
  embed,
  linprobeOnFeatures,
  readSegprobeConfig,
  resolveOptions,
  runKnn,
  runLinprobe,
  runSegprobe,
} from '../../src';
import { FeatureOverflowCheck } from '../../src/eval/feature-overflow';
import { TINY, memoryFactories, toyImages } from './helpers';
import { squares } from './seg-helpers';
import { encode, picture, write } from '../data/helpers';
import { reText } from '../../src/util/regexp-text';

torch.setNumThreads(1);

/** An exported encoder whose weights are all multiplied by 1e30: finite in the file, NaN/Inf once it runs. */
function writeOverflowingEncoder(dir: string): string {
  torch.manualSeed(1);
  const enc = new VisionTransformer(TINY).initWeights();
  torch.noGrad(() => {
    for (const p of enc.parameters()) p.mul_(1e30);
  });
  const path = join(dir, 'huge.safetensors');
  saveTensors(path, enc.stateDict(), { config: JSON.stringify(TINY) });
  writeFileSync(join(dir, 'huge.json'), JSON.stringify(TINY));
  enc.dispose();
  return path;
}

const overflow = (weights: string) => ({
  name: 'CheckpointError',
  message: new RegExp(`^${reText(weights)}: its outputs overflow float32: .*non-finite features`),
});

test('knn, linprobe, segprobe and embed refuse an encoder whose features overflow, naming it, and write no result', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-overflow-'));
  try {
    const enc = writeOverflowingEncoder(dir);
    const f = memoryFactories(toyImages(32, 2, 8, 1), toyImages(16, 2, 8, 2));
    const knn = resolveOptions(KNN_OPTIONS, { checkpoint: enc, outDir: join(dir, 'knn'), k: '5', threads: 1, evalBatchSize: 8 });
    await assert.rejects(runKnn(knn, f), overflow(enc));
    assert.equal(existsSync(join(dir, 'knn')), false, 'no knn.json');
    for (const cacheFeatures of [true, false]) {
      const lp = resolveOptions(LINPROBE_OPTIONS, {
        checkpoint: enc,
        outDir: join(dir, 'lp'),
        epochs: 1,
        batchSize: 8,
        evalBatchSize: 8,
        threads: 1,
        cacheFeatures,
      });
      await assert.rejects(runLinprobe(lp, f), overflow(enc), `cacheFeatures ${cacheFeatures}`);
      assert.equal(existsSync(join(dir, 'lp')), false);
    }
    const sp = resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, epochs: 1, batchSize: 8, evalBatchSize: 8, outDir: join(dir, 'sp'), threads: 1 });
    await assert.rejects(
      runSegprobe(readSegprobeConfig(sp), sp, (r) => (r.split === 'train' ? squares(16, 1) : squares(8, 2))),
      overflow(enc),
    );
    assert.equal(existsSync(join(dir, 'sp')), false);
    const images = join(dir, 'images');
    for (let i = 0; i < 3; i++) write(join(images, `p${i}.png`), await encode(picture(16, 16, i), 16, 16, 3, 'png'));
    const out = join(dir, 'emb.safetensors');
    await assert.rejects(embed({ checkpoint: enc, images, out, numWorkers: 0, progress: null }), overflow(enc));
    assert.equal(existsSync(out), false, 'no all-NaN features file');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a probe trained on NaN/Inf features says they overflowed, not that its lr is too high', async () => {
  const features = (n: number) => torch.keep(torch.full([n, 8], Number.POSITIVE_INFINITY));
  const labels = (n: number) => Int32Array.from({ length: n }, (_, i) => i % 2);
  const train = { features: features(32), labels: labels(32) };
  const testSet = { features: features(8), labels: labels(8) };
  try {
    await assert.rejects(linprobeOnFeatures(train, testSet, 2, { epochs: 1, batchSize: 8, blr: 0.1, seed: 0, label: null }), {
      name: 'CheckpointError',
      message: /^the encoder: its outputs overflow float32: the linprobe head's input features \(epoch 1\) hold NaN\/Inf values/,
    });
  } finally {
    train.features.dispose();
    testSet.features.dispose();
  }
});

test('the overflow check flags exactly the batches with a NaN or ±Inf value, huge finite values and empty batches not, in any float dtype', () => {
  const max = 3e38; // finite in float32 and bfloat16, and their sum overflows
  const batches: [number[], boolean][] = [
    [[1, 2, -3], false],
    [[max, max, -max], false],
    [[], false],
    [[1, Number.NaN], true],
    [[Number.POSITIVE_INFINITY], true],
    [[0, Number.NEGATIVE_INFINITY], true],
  ];
  for (const dtype of ['float32', 'float64', 'bfloat16'] as const)
    for (const [values, overflows] of batches) {
      const check = new FeatureOverflowCheck();
      try {
        for (const v of [[0.5], values, [-0.25]]) torch.scope(() => check.add(torch.tensor(Float32Array.from(v), { shape: [v.length] }).to({ dtype })));
        assert.equal(check.overflowed(), overflows, `${dtype} [${values}]`);
      } finally {
        check.dispose();
      }
    }
  assert.equal(new FeatureOverflowCheck().overflowed(), false, 'no batch');
});
