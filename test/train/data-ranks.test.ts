// The training/evaluation data adapter with an explicit data-parallel place (rank, world size):
// the API the distributed loop calls, for indexed datasets and for tar shards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { makeTrainData, makeEvalData } from '../../src/data';
import { PRETRAIN_OPTIONS, trainDataRequest } from '../../src/train/pretrain-options';
import { resolveOptions } from '../../src/util/options';
import { packImageFolder } from '../../src/data';
import type { TrainBatch } from '../../src/train/pretrain';
import { tempDir, write, picture, encode } from '../data/helpers';
import { TINY_SEMAIM } from './helpers';

function options(extra: Record<string, unknown> = {}) {
  return resolveOptions(PRETRAIN_OPTIONS, {
    ...TINY_SEMAIM,
    decoderDepth: 2,
    blur: false,
    dataset: 'synthetic',
    syntheticSize: 40,
    numWorkers: 0,
    batchSize: 4,
    epochs: 1,
    warmupEpochs: 0,
    threads: 1,
    seed: 5,
    ...extra,
  });
}

async function collect(it: AsyncIterable<TrainBatch>): Promise<TrainBatch[]> {
  const out: TrainBatch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

test('makeTrainData(o, {rank, worldSize}): 2 ranks × batch 2 concatenate to 1 rank × batch 4; resume by sample at another world size', async () => {
  const one = makeTrainData(trainDataRequest(options()));
  const ranks = [0, 1].map((rank) => makeTrainData(trainDataRequest(options({ batchSize: 2 })), { rank, worldSize: 2 }));
  try {
    assert.equal(one.globalBatchSize, 4);
    assert.equal(ranks[1].globalBatchSize, 4);
    assert.equal(ranks[0].batchesPerEpoch, one.batchesPerEpoch);
    const ref = await collect(one.epoch(1, 0));
    const got = await Promise.all(ranks.map((d) => collect(d.epoch(1, 0))));
    const per = 3 * 16 * 16;
    ref.forEach((b, j) => {
      assert.deepEqual(b.images.subarray(0, 2 * per), got[0][j].images);
      assert.deepEqual(b.images.subarray(2 * per), got[1][j].images);
    });
    // 3 steps of the world-size-1 run consumed 12 images: the 2-rank run goes on with the 13th
    const rest = await Promise.all(ranks.map((d) => collect(d.epochFromSample(1, 12))));
    assert.equal(rest[0].length, ref.length - 3);
    assert.deepEqual(rest[0][0].images, ref[3].images.subarray(0, 2 * per));
    assert.deepEqual(rest[1][0].images, ref[3].images.subarray(2 * per));
  } finally {
    await one.close();
    for (const d of ranks) await d.close();
  }
});

test('--dataset shards trains and evaluates from packed shards on each rank', async () => {
  const { dir, cleanup } = tempDir('semaim-shard-data-');
  try {
    for (let i = 0; i < 18; i++) write(join(dir, 'imgs', `k${i % 2}`, `${i}.jpg`), await encode(picture(20, 20, i), 20, 20, 3, 'jpeg'));
    const packed = await packImageFolder({ input: join(dir, 'imgs'), output: join(dir, 'train'), shardSize: 4 });
    await packImageFolder({ input: join(dir, 'imgs'), output: join(dir, 'test'), shardSize: 7 });
    const o = options({ dataset: 'shards', dataPath: packed.pattern, shuffleBuffer: 3 });
    const ranks = [0, 1].map((rank) => makeTrainData(trainDataRequest(o), { rank, worldSize: 2 }));
    try {
      assert.equal(ranks[0].batchesPerEpoch, 2); // floor(18 / (2 × 4))
      const got = await Promise.all(ranks.map((d) => collect(d.epoch(0, 0))));
      assert.deepEqual(
        got.map((g) => g.map((b) => b.shape)),
        [0, 1].map(() => [
          [4, 3, 16, 16],
          [4, 3, 16, 16],
        ]),
      );
    } finally {
      for (const d of ranks) await d.close();
    }
    const ev = makeEvalData(
      { split: 'test', dataset: 'shards', dataPath: join(dir, '{split}'), imgSize: 16, seed: 0, numWorkers: 0 },
      { rank: 1, worldSize: 2 },
    );
    try {
      assert.equal(ev.size, 18);
      assert.deepEqual(ev.classNames, ['k0', 'k1']);
      const batches = [];
      for await (const b of ev.batches({ batchSize: 4, shuffle: false, epoch: 0, augment: 'none' })) batches.push(b);
      assert.deepEqual(
        batches.map((b) => b.shape[0]),
        [4, 4, 1],
      ); // 9 of the 18 on rank 1
    } finally {
      await ev.close();
    }
  } finally {
    cleanup();
  }
});
