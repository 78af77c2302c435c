// An epoch whose last batch was handed out is complete, also when the consumer breaks right after
// it (the training loop stops after its last step without asking for more): its summary does not say
// "stopped early", which an epoch left before its last batch still does.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DataLoader, ShardLoader, imageFolder, packImageFolder, shardDataset, resize, normalize, type Batch } from '../../src/data';
import { tempDir, write, picture, encode } from './helpers';

/** Iterates an epoch, breaking after `take` batches; how many it got. */
async function take(it: AsyncIterable<Batch>, n: number): Promise<number> {
  let k = 0;
  for await (const b of it) {
    void b;
    if (++k === n) break;
  }
  return k;
}

test('an epoch is complete once its last batch is handed out, stopped early before (DataLoader, ShardLoader)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    for (let i = 0; i < 8; i++) write(join(dir, 'imgs', `c${i % 2}`, `${i}.png`), await encode(picture(12, 10, i), 12, 10, 3, 'png'));
    write(join(dir, 'imgs', 'c0', 'broken.png'), 'not a png');
    const shards = (await packImageFolder({ input: join(dir, 'imgs'), output: join(dir, 'shards'), shardSize: 4, onWarning: () => {} })).pattern;
    const opts = { batchSize: 3, transforms: [resize([8, 8]), normalize()], seed: 1 };
    for (const workers of [0, 2]) {
      const warnings: string[] = [];
      const loader = new DataLoader(imageFolder(join(dir, 'imgs')), { ...opts, workers, onWarning: (l) => warnings.push(l) });
      const shardLoader = new ShardLoader(shardDataset(shards, { onWarning: () => {} }), { ...opts, workers, shuffleBuffer: 2 });
      try {
        for (const l of [loader, shardLoader]) {
          assert.equal(await take(l, l.length), l.length);
          assert.equal(l.lastSummary!.complete, true, `workers ${workers}, ${l.constructor.name}`);
          assert.equal(await take(l, 1), 1);
          assert.equal(l.lastSummary!.complete, false, `workers ${workers}, ${l.constructor.name}`);
        }
        const summary = warnings.find((w) => /^data: epoch 0/.test(w));
        assert.match(summary ?? '', /^data: epoch 0: skipped 1 unusable file/, warnings.join('\n'));
      } finally {
        await loader.close();
        await shardLoader.close();
      }
    }
  } finally {
    cleanup();
  }
});

test('an epoch given an end batch builds only the batches before it, the same ones, and counts as complete (DataLoader, ShardLoader)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    for (let i = 0; i < 12; i++) write(join(dir, 'imgs', `c${i % 2}`, `${i}.png`), await encode(picture(12, 10, i), 12, 10, 3, 'png'));
    const shards = (await packImageFolder({ input: join(dir, 'imgs'), output: join(dir, 'shards'), shardSize: 4, onWarning: () => {} })).pattern;
    const opts = { batchSize: 2, transforms: [resize([8, 8]), normalize()], seed: 1 };
    for (const workers of [0, 2]) {
      const loader = new DataLoader(imageFolder(join(dir, 'imgs')), { ...opts, workers });
      const shardLoader = new ShardLoader(shardDataset(shards, { onWarning: () => {} }), { ...opts, workers, shuffleBuffer: 2 });
      try {
        for (const l of [loader, shardLoader]) {
          const what = `workers ${workers}, ${l.constructor.name}`;
          const whole: number[][] = [];
          for await (const b of l.iterate(3)) whole.push([...b.indices]);
          const ended: number[][] = [];
          for await (const b of l.iterate(3, { end: 4 })) ended.push([...b.indices]);
          assert.deepEqual(ended, whole.slice(0, 4), what);
          assert.equal(l.lastSummary!.complete, true, what);
          assert.equal(l.lastSummary!.batches, 4, what);
          const resumed: number[][] = [];
          for await (const b of l.iterate(3, { batch: 1, end: 3 })) resumed.push([...b.indices]);
          assert.deepEqual(resumed, whole.slice(1, 3), what);
          // the epoch after one that ended early is whole again
          const again: number[][] = [];
          for await (const b of l.iterate(3)) again.push([...b.indices]);
          assert.deepEqual(again, whole, what);
          await assert.rejects(async () => {
            for await (const b of l.iterate(3, { end: -1 })) void b;
          }, /end batch must be an integer >= 0, got -1/);
        }
      } finally {
        await loader.close();
        await shardLoader.close();
      }
    }
  } finally {
    cleanup();
  }
});
