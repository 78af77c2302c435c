// Evaluation sets over tar shards are in dataset order whatever the number of loader workers: with K > 1
// workers the shard loader gives batch j from worker j mod K's contiguous part, and a linear probe, which
// shuffles rows by position, trained on other rows for another --num-workers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { VisionTransformer } from '../../src/semaim';
import { MemoryLabelledData, makeEvalData, packImageFolder } from '../../src/data';
import { extractFeatures, disposeFeatures } from '../../src/eval/features';
import { tempDir, write, picture, encode } from '../data/helpers';
import { TINY } from './helpers';

test('shard features and images decoded into memory are in dataset order for any --num-workers, as the same folder gives them', async () => {
  const { dir, cleanup } = tempDir('semaim-shard-features-');
  torch.manualSeed(2);
  const enc = new VisionTransformer(TINY).initWeights();
  try {
    for (let i = 0; i < 17; i++) {
      write(join(dir, 'imgs', 'train', `class${i % 3}`, `${String(i).padStart(2, '0')}.png`), await encode(picture(12, 10, i), 12, 10, 3, 'png'));
    }
    const { pattern } = await packImageFolder({ input: join(dir, 'imgs', 'train'), output: join(dir, 'shards', 'train'), shardSize: 4 });
    const open = (dataset: string, dataPath: string, numWorkers: number) =>
      makeEvalData({ split: 'train', dataset, dataPath, imgSize: 8, seed: 0, numWorkers });
    const rows = async (dataset: string, dataPath: string, numWorkers: number) => {
      const data = open(dataset, dataPath, numWorkers);
      try {
        const set = await extractFeatures(enc, data, { batchSize: 3, pooling: 'cls', label: null });
        const out = { features: Array.from(set.features.toFloat32Array()), labels: Array.from(set.labels) };
        disposeFeatures(set);
        const memory = await MemoryLabelledData.load(data, 3);
        return { ...out, images: Array.from(memory.images), memoryLabels: Array.from(memory.labels) };
      } finally {
        await data.close();
      }
    };
    const folder = await rows('folder', join(dir, 'imgs'), 0);
    assert.equal(folder.labels.length, 17);
    for (const workers of [0, 2, 3]) {
      const shards = await rows('shards', pattern, workers);
      assert.deepEqual(shards.labels, folder.labels, `${workers} workers: labels`);
      assert.deepEqual(shards.features, folder.features, `${workers} workers: features`);
      assert.deepEqual(shards.memoryLabels, folder.memoryLabels, `${workers} workers: labels in memory`);
      assert.deepEqual(shards.images, folder.images, `${workers} workers: images in memory`);
    }
  } finally {
    enc.dispose();
    cleanup();
  }
});
