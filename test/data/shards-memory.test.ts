// The shuffle buffers' memory budget (src/data/shards/memory.ts): a loader whose buffers would not fit
// is refused before its first batch, with the numbers and a --shuffle-buffer that fits; a buffer that
// outgrows its share on images larger than the shards' mean stops the epoch with a DataError naming
// the sample (through the worker threads too); below the budget the batches are those the draws over
// positions alone give.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { pack as tarPack } from 'tar-stream';
import { ShardLoader, ShuffleBuffer, packImageFolder, shardDataset, type ShardDataset, type ShardLoaderOptions } from '../../src/data/shards';
import { estimateShuffleMemory, shuffleMemoryProblem, SHUFFLE_MEMORY_ENV } from '../../src/data/shards/memory';
import { PieceStream, type StreamContext } from '../../src/data/shards/stream';
import { imageMemberCap } from '../../src/data/shards/tar-samples';
import { resize, normalize } from '../../src/data/transforms';
import { Rng } from '../../src/data/rng';
import { DataError } from '../../src/util/errors';
import { OptionError } from '../../src/util/options';
import { tempDir, write, picture, encode } from './helpers';

let cleanup: () => void;
let ds: ShardDataset;
let bigBytes: number;

before(async () => {
  const t = tempDir('semaim-shard-memory-');
  cleanup = t.cleanup;
  for (let i = 0; i < 40; i++) write(join(t.dir, 'imgs', 'a', `${String(i).padStart(2, '0')}.jpg`), await encode(picture(16, 16, i), 16, 16, 3, 'jpeg'));
  // one image far above the mean (noise does not compress), packed last (class b)
  const big = await encode(randomBytes(160 * 160 * 3), 160, 160, 3, 'png');
  bigBytes = big.length;
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
    // a loader of a command without --shuffle-buffer (evaluations: the default buffer) names what it has
    assert.throws(
      () => loader({ workers: 2, shuffleBuffer: undefined }),
      (e: Error) =>
        e instanceof OptionError && e.key === 'numWorkers' && !/--shuffle-buffer/.test(e.message) && /Use a larger SEMAIM_SHUFFLE_MEMORY/.test(e.message),
    );
    process.env[SHUFFLE_MEMORY_ENV] = '12 apples';
    assert.throws(() => loader({}), /SEMAIM_SHUFFLE_MEMORY=12 apples: give a number of bytes/);
    delete process.env[SHUFFLE_MEMORY_ENV];
    assert.ok(loader({ workers: 2 }), "the default budget (half of this machine's memory) holds these shards");
  } finally {
    if (saved === undefined) delete process.env[SHUFFLE_MEMORY_ENV];
    else process.env[SHUFFLE_MEMORY_ENV] = saved;
  }
});

test('a buffer over its share (one image far above the mean) stops the epoch with a DataError naming the sample, from a worker thread too', async () => {
  for (const workers of [0, 2]) {
    const share = Math.ceil((estimate(workers) / Math.max(1, workers)) * 1.2);
    assert.ok(bigBytes > share, `the big image (${bigBytes} bytes) is over a share (${share})`);
    const l = loader({ workers, shuffleMemory: share * Math.max(1, workers) });
    try {
      await assert.rejects(
        (async () => {
          for await (const b of l.iterate(0)) void b;
        })(),
        (e: Error) => {
          assert.ok(e instanceof DataError && e.code === 'ERR_DATA', `${e.name}: ${e.message}`);
          const last = basename(ds.table.paths[ds.table.paths.length - 1]);
          assert.match(
            e.message,
            new RegExp(`holds .* of encoded images in \\d+ samples after ${last}:\\S+ \\(.*\\), over its share of .* of the shuffle-buffer budget`),
          );
          assert.match(
            e.message,
            workers
              ? /Use a smaller --shuffle-buffer \(about \d+; .*\), or fewer --num-workers, or a larger SEMAIM_SHUFFLE_MEMORY/
              : /Use a smaller --shuffle-buffer \(about 1; .*\), or a larger SEMAIM_SHUFFLE_MEMORY/,
          );
          return true;
        },
        `workers ${workers}`,
      );
    } finally {
      await l.close();
    }
  }
});

test('below the budget the batches are exactly those of the draws over positions alone (the guard never changes the order)', async () => {
  for (const workers of [0, 2]) {
    const l = loader({ workers, shuffleMemory: 4 * bigBytes * Math.max(1, workers) });
    try {
      const got: number[][] = [];
      for await (const b of l.iterate(1)) got.push([...b.indices]);
      // each worker's piece through a buffer of positions, mapped to global sample indices
      const plan = l.plan(1);
      const streams = plan.pieces.map((piece, w) => {
        const index = piece.segments.flatMap((s) => Array.from({ length: s.to - s.from }, (_, k) => ds.table.bases[s.shard] + s.from + k));
        const buf = ShuffleBuffer.create<number>(8, new Rng(3, 'buffer', 1, 0, w));
        const out: number[] = [];
        for (const i of index) {
          const o = buf.push(i);
          if (o !== undefined) out.push(o);
        }
        for (let o = buf.pop(); o !== undefined; o = buf.pop()) out.push(o);
        return out;
      });
      const want = Array.from({ length: plan.count }, (_, j) => streams[plan.workerOf(j)].splice(0, plan.sizeOf(j)));
      assert.deepEqual(got, want, `workers ${workers}`);
    } finally {
      await l.close();
    }
  }
});

test('the loader refuses buffers one byte over their budget and takes them exactly at it (the budget is what they may hold)', () => {
  const e = { buffers: 2, held: 8, mean: 100, bytes: 1600 };
  assert.equal(shuffleMemoryProblem(e, { bytes: 1600, source: 'test' }, 8), null);
  assert.match(shuffleMemoryProblem(e, { bytes: 1599, source: 'test' }, 8) ?? '', /about 1\.6 KiB .*more than their budget of 1\.6 KiB \(test\)/);
  // the same through a loader: its estimate at the shards' mean size, as the budget, fits; a byte less does not
  assert.ok(loader({ workers: 2, shuffleMemory: estimate(2) }));
  assert.throws(() => loader({ workers: 2, shuffleMemory: estimate(2) - 1 }), OptionError);
});

/** A shard of `n` samples whose images are `size` bytes each (the stream never decodes them). */
async function uniformShard(path: string, n: number, size: number): Promise<void> {
  const p = tarPack();
  const done = new Promise<void>((res) => p.pipe(createWriteStream(path)).on('finish', () => res()));
  for (let i = 0; i < n; i++) p.entry({ name: `${String(i).padStart(3, '0')}.jpg` }, Buffer.alloc(size, i));
  p.finalize();
  await done;
}

/** The sample names a stream of one shard through a buffer of `bufferSize` with a share of `share` bytes emits, after `skip` (resume). */
async function streamNames(path: string, n: number, o: { bufferSize: number; share: number; skip?: number }): Promise<string[]> {
  const ctx: StreamContext = {
    paths: [path],
    bases: [0],
    seed: 5,
    labelled: false,
    maxImageBytes: 1 << 20,
    bufferMemory: { share: o.share, buffers: 1, budget: 'test budget', shuffleOption: true },
  };
  const task = { epoch: 0, segments: [{ shard: 0, from: 0, to: n }], length: n, skip: o.skip ?? 0, bufferSize: o.bufferSize, rngKeys: ['buffer', 0] };
  const s = new PieceStream(ctx, task);
  const names: string[] = [];
  try {
    for (let x = await s.next(); x; x = await s.next()) names.push(x.name);
  } finally {
    await s.close();
  }
  return names;
}

test('a running buffer may hold exactly its share: one byte less stops the stream, and a sample that leaves frees its bytes', async () => {
  const t = tempDir('semaim-shard-share-');
  try {
    const path = join(t.dir, 'uniform.tar');
    // 12 samples of 100 bytes through a buffer of 4: it holds 400 bytes from the 4th input on, never more
    // (each later input replaces the sample it displaces; a count that never freed would pass 400 at the 5th)
    await uniformShard(path, 12, 100);
    const all = await streamNames(path, 12, { bufferSize: 4, share: 400 });
    assert.equal(all.length, 12);
    assert.equal(new Set(all).size, 12);
    await assert.rejects(streamNames(path, 12, { bufferSize: 4, share: 399 }), (e: Error) => {
      assert.ok(e instanceof DataError, e.message);
      assert.match(e.message, /holds 400 B of encoded images in 4 samples after uniform\.tar:003 \(100 B\), over its share of 399 B/);
      return true;
    });
    // resumed after 6 emitted with a full buffer: the samples read back count too, from the first one
    assert.deepEqual(await streamNames(path, 12, { bufferSize: 4, share: 400, skip: 6 }), all.slice(6));
    await assert.rejects(
      streamNames(path, 12, { bufferSize: 4, share: 399, skip: 6 }),
      /holds 400 B of encoded images in 4 samples after uniform\.tar:\d+ \(100 B\)/,
    );
  } finally {
    t.cleanup();
  }
});
