// The shuffle buffers' memory budget (src/data/shards/memory.ts): a loader whose buffers would not fit
// is refused before its first batch, with the numbers and a --shuffle-buffer that fits; a buffer that
// outgrows its share on images larger than the shards' mean stops the epoch with a DataError naming
// the sample (through the worker threads too); below the budget the batches are those the draws over
// positions alone give.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ShardLoader, packImageFolder, shardDataset, type ShardDataset, type ShardLoaderOptions } from '../../src/data/shards';
import { estimateShuffleMemory, SHUFFLE_MEMORY_ENV } from '../../src/data/shards/memory';
import { imageMemberCap } from '../../src/data/shards/tar-samples';
import { resize, normalize } from '../../src/data/transforms';
import { OptionError } from '../../src/util/options';
import { tempDir, write, picture, encode } from './helpers';

let cleanup: () => void;
let ds: ShardDataset;

before(async () => {
  const t = tempDir('semaim-shard-memory-');
  cleanup = t.cleanup;
  for (let i = 0; i < 40; i++) write(join(t.dir, 'imgs', 'a', `${String(i).padStart(2, '0')}.jpg`), await encode(picture(16, 16, i), 16, 16, 3, 'jpeg'));
  // one image far above the mean (noise does not compress), packed last (class b)
  const big = await encode(randomBytes(160 * 160 * 3), 160, 160, 3, 'png');
  write(join(t.dir, 'imgs', 'b', 'big.png'), big);
  await packImageFolder({ input: join(t.dir, 'imgs'), output: join(t.dir, 'shards'), shardSize: 8 });
  ds = shardDataset(join(t.dir, 'shards'), { onWarning: () => {} });
});

after(() => cleanup());

const loader = (o: Partial<ShardLoaderOptions>) =>
  new ShardLoader(ds, { batchSize: 4, workers: 0, transforms: [resize([8, 8]), normalize()], seed: 3, shuffleBuffer: 8, ...o });

/** Bytes the buffers of `workers` workers of 8 samples hold at the shards' mean sample size. */
const estimate = (workers: number) => estimateShuffleMemory(ds.table.entries, 8, Math.max(1, workers), imageMemberCap(undefined)).bytes;

test('buffers that would not fit their budget are refused before the first batch, naming the numbers and a --shuffle-buffer that fits', async () => {
  const budget = Math.floor(estimate(2) / 3);
  assert.throws(
    () => loader({ workers: 2, shuffleMemory: budget }),
    (e: Error) => {
      assert.ok(e instanceof OptionError && e.key === 'shuffleBuffer', e.message);
      assert.match(
        e.message,
        /would hold about .* \(2 workers × 8 samples × .*, the shards' mean sample size\), more than their budget of .* \(the shuffleMemory option\)/,
      );
      const fit = Number(/--shuffle-buffer (\d+) or less \(8 now\)/.exec(e.message)?.[1]);
      assert.ok(fit >= 1 && fit < 8, e.message);
      // the value it names fits
      return loader({ workers: 2, shuffleMemory: budget, shuffleBuffer: fit }) instanceof ShardLoader;
    },
  );
  // the same through the environment; an unreadable value is named; unshuffled streams hold nothing
  const saved = process.env[SHUFFLE_MEMORY_ENV];
  try {
    process.env[SHUFFLE_MEMORY_ENV] = '1K';
    assert.throws(() => loader({}), /budget of 1\.0 KiB \(SEMAIM_SHUFFLE_MEMORY\)\. Use --shuffle-buffer 1 or less/);
    assert.ok(loader({ shuffle: false }));
    process.env[SHUFFLE_MEMORY_ENV] = '12 apples';
    assert.throws(() => loader({}), /SEMAIM_SHUFFLE_MEMORY=12 apples: give a number of bytes/);
    delete process.env[SHUFFLE_MEMORY_ENV];
    assert.ok(loader({ workers: 2 }), "the default budget (half of this machine's memory) holds these shards");
  } finally {
    if (saved === undefined) delete process.env[SHUFFLE_MEMORY_ENV];
    else process.env[SHUFFLE_MEMORY_ENV] = saved;
  }
});
