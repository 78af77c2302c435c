// Data-parallel sharding of index-based datasets: every rank takes its slice of each global batch
// of one seeded order, so N ranks × batch b see what 1 rank × batch N·b sees; resume by sample
// position works across world sizes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataLoader, syntheticObjects, normalize, rankPlan, randomResizedCrop, horizontalFlip, type Batch } from '../../src/data';

async function collect(it: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

test('rank plans: equal batch counts, global batch = concatenated rank slices, padded like DistributedSampler', () => {
  for (let n = 1; n <= 30; n++) {
    for (const W of [1, 2, 3, 4]) {
      for (const b of [1, 2, 3, 5]) {
        for (const dropLast of [false, true]) {
          const plans = Array.from({ length: W }, (_, r) => rankPlan({ length: n, batchSize: b, dropLast, rank: r, worldSize: W }));
          const count = plans[0].count;
          for (const p of plans) assert.equal(p.count, count, `n=${n} W=${W} b=${b}`);
          const one = rankPlan({ length: n, batchSize: W * b, dropLast, rank: 0, worldSize: 1 });
          const used: number[] = [];
          for (let j = 0; j < count; j++) {
            const parts = plans.map((p) => p.range(j));
            for (let r = 1; r < W; r++) assert.equal(parts[r][0], parts[r - 1][1], 'rank slices are contiguous in rank order');
            assert.equal(parts[W - 1][1] - parts[0][0], W * (parts[0][1] - parts[0][0]), 'every rank gets as many samples');
            for (const [a, e] of parts) for (let t = a; t < e; t++) used.push(t);
            if (dropLast) assert.deepEqual([parts[0][0], parts[W - 1][1]], one.range(j), 'the same global batch as one rank with batch W·b');
          }
          if (dropLast) {
            assert.equal(count, one.count);
            assert.deepEqual(
              used,
              Array.from({ length: count * W * b }, (_, t) => t),
            );
          } else {
            // every position once, padded up to a multiple of W (at most W - 1 repeats of the start)
            const padded = Math.ceil(n / W) * W;
            assert.deepEqual(
              used,
              Array.from({ length: padded }, (_, t) => t),
            );
          }
        }
      }
    }
  }
});

test('2 ranks × batch 4 (2 workers each) give exactly the batches of 1 rank × batch 8: images, labels, indices', async () => {
  const ds = syntheticObjects({ size: 16, count: 45, seed: 2 });
  const opts = { shuffle: true, dropLast: true, seed: 7, transforms: [normalize()] };
  const one = new DataLoader(ds, { ...opts, batchSize: 8, workers: 0 });
  const ranks = [0, 1].map((rank) => new DataLoader(ds, { ...opts, batchSize: 4, workers: 2, rank, worldSize: 2 }));
  try {
    for (const epoch of [0, 1]) {
      const ref = await collect(one.iterate(epoch));
      const got = await Promise.all(ranks.map((l) => collect(l.iterate(epoch))));
      assert.equal(ref.length, 5);
      assert.equal(got[0].length, 5);
      assert.equal(got[1].length, 5);
      for (let j = 0; j < ref.length; j++) {
        assert.deepEqual([...got[0][j].indices, ...got[1][j].indices], [...ref[j].indices]);
        assert.deepEqual([...got[0][j].labels, ...got[1][j].labels], [...ref[j].labels]);
        const cat = new Float32Array(ref[j].images.length);
        cat.set(got[0][j].images as Float32Array, 0);
        cat.set(got[1][j].images as Float32Array, got[0][j].images.length);
        assert.deepEqual(cat, ref[j].images);
        assert.equal(got[1][j].index, j);
      }
    }
  } finally {
    await one.close();
    for (const l of ranks) await l.close();
  }
});

test('without dropLast every image is used at least once and each rank gets the same number of batches', async () => {
  const ds = syntheticObjects({ size: 8, count: 11 });
  const ranks = [0, 1, 2].map((rank) => new DataLoader(ds, { batchSize: 2, workers: 0, rank, worldSize: 3, seed: 1, transforms: [normalize()] }));
  const got = await Promise.all(ranks.map((l) => collect(l.iterate(0))));
  assert.deepEqual(
    got.map((g) => g.length),
    [2, 2, 2],
  );
  const all = got.flatMap((g) => g.flatMap((b) => [...b.indices]));
  assert.equal(all.length, 12);
  assert.deepEqual(
    [...new Set(all)].sort((a, b) => a - b),
    Array.from({ length: 11 }, (_, i) => i),
  );
  const order = ranks[0].order(0);
  const dup = all.filter((x, i) => all.indexOf(x) !== i);
  assert.deepEqual(dup, [order[0]], 'the padding repeats the start of the order');
});

test("a padded repeat gets its own augmentation draw, as in PyTorch (a rank's worker RNG), not its first copy's; the single-process draws are unchanged", async () => {
  const ds = syntheticObjects({ size: 32, count: 11 });
  const transforms = [randomResizedCrop(16), horizontalFlip(), normalize()];
  const ranks = [0, 1, 2].map((rank) => new DataLoader(ds, { batchSize: 2, workers: 0, rank, worldSize: 3, seed: 1, transforms }));
  const one = new DataLoader(ds, { batchSize: 6, workers: 0, seed: 1, transforms });
  try {
    const got = await Promise.all(ranks.map((l) => collect(l.iterate(0))));
    const rows = got.flatMap((g) => g.flatMap((b) => Array.from(b.indices, (index, k) => ({ index, image: b.images.slice(k * 768, (k + 1) * 768) }))));
    const repeated = ranks[0].order(0)[0];
    const copies = rows.filter((r) => r.index === repeated);
    assert.equal(copies.length, 2, 'the padding repeats the start of the order once');
    assert.notDeepEqual(copies[1].image, copies[0].image, 'the repeat is another view of the image');
    // every other row is the image one process draws for that index
    const single = (await collect(one.iterate(0))).flatMap((b) =>
      Array.from(b.indices, (index, k) => ({ index, image: b.images.slice(k * 768, (k + 1) * 768) })),
    );
    assert.equal(single.length, 11);
    for (const r of single) assert.deepEqual(rows.find((x) => x.index === r.index)!.image, r.image, `index ${r.index}`);
  } finally {
    await one.close();
    for (const l of ranks) await l.close();
  }
});

test('an epoch resumes at a batch, and at a sample position with another world size', async () => {
  const ds = syntheticObjects({ size: 8, count: 40, seed: 5 });
  const opts = { dropLast: true, seed: 3, transforms: [normalize()], workers: 0 };
  const one = new DataLoader(ds, { ...opts, batchSize: 4 });
  const full = await collect(one.iterate(2));
  const resumed = await collect(one.iterate(2, { batch: 3 }));
  assert.deepEqual(
    resumed.map((b) => [...b.indices]),
    full.slice(3).map((b) => [...b.indices]),
  );
  assert.deepEqual(resumed[0].images, full[3].images);
  assert.equal(resumed[0].index, 3);
  // 3 batches of 4 consumed at world size 1 → 12 samples; go on at world size 2 with batch 3 (global 6)
  const order = one.order(2);
  const two = [0, 1].map((rank) => new DataLoader(ds, { ...opts, batchSize: 3, rank, worldSize: 2 }));
  const got = await Promise.all(two.map((l) => collect(l.iterate(2, { sample: 12 }))));
  assert.equal(got[0].length, Math.floor((40 - 12) / 6));
  const stream = got[0].flatMap((b, j) => [...b.indices, ...got[1][j].indices]);
  assert.deepEqual(stream, [...order.slice(12, 12 + got[0].length * 6)], 'the rest of the same order, nothing repeated or skipped');
  // the same images as the uninterrupted world-size-1 run gives for those samples
  const ref = new Map<number, Float32Array>();
  for (const b of full) b.indices.forEach((ix, k) => ref.set(ix, (b.images as Float32Array).subarray(k * 192, (k + 1) * 192)));
  for (const b of got[1]) b.indices.forEach((ix, k) => assert.deepEqual((b.images as Float32Array).subarray(k * 192, (k + 1) * 192), ref.get(ix)));
});

test('a rank plan that starts at sample s covers positions s.. of the epoch once, with dropLast or padded without it', () => {
  for (const dropLast of [false, true]) {
    // (s = n: an epoch resumed at its very end has no batch left, and is no error)
    for (const s of [0, 5, 12, 30]) {
      const n = 30;
      const plans = [0, 1].map((rank) => rankPlan({ length: n, batchSize: 4, dropLast, rank, worldSize: 2, startSample: s }));
      const used: number[] = [];
      for (let j = 0; j < plans[0].count; j++)
        for (const p of plans) {
          const [a, e] = p.range(j);
          for (let t = a; t < e; t++) used.push(t);
        }
      const end = dropLast ? s + Math.floor((n - s) / 8) * 8 : s + Math.ceil((n - s) / 2) * 2;
      assert.deepEqual(
        used,
        Array.from({ length: end - s }, (_, t) => s + t),
        `dropLast ${dropLast}, start ${s}`,
      );
    }
    assert.throws(
      () => rankPlan({ length: 30, batchSize: 4, dropLast, rank: 0, worldSize: 2, startSample: 31 }),
      /start sample 31 is outside the epoch \(0\.\.30\)/,
    );
  }
});

test('rank and world size are checked', () => {
  const ds = syntheticObjects({ size: 8, count: 10 });
  assert.throws(() => new DataLoader(ds, { batchSize: 2, rank: 2, worldSize: 2, workers: 0 }), /rank must be an integer in \[0, 1\]/);
  assert.throws(() => new DataLoader(ds, { batchSize: 2, rank: 0, worldSize: 0, workers: 0 }), /worldSize must be an integer >= 1/);
  assert.throws(() => new DataLoader(ds, { batchSize: 4, dropLast: true, rank: 0, worldSize: 3, workers: 0 }), /fewer than one global batch of 3×4/);
});

test('with two ranks an epoch resumed at batch b gives each rank its batches b.. of the uninterrupted epoch', async () => {
  // batch b starts at sample b × the global batch (2 × 3), not b × the rank's batch
  const ds = syntheticObjects({ size: 8, count: 40, seed: 2 });
  const opts = { dropLast: true, seed: 6, transforms: [normalize()], workers: 0, batchSize: 3, worldSize: 2 };
  for (const rank of [0, 1]) {
    const loader = new DataLoader(ds, { ...opts, rank });
    const full = await collect(loader.iterate(1));
    assert.equal(full.length, 6);
    for (const batch of [1, 4]) {
      const resumed = await collect(loader.iterate(1, { batch }));
      assert.deepEqual(
        resumed.map((b) => [b.index, ...b.indices]),
        full.slice(batch).map((b) => [b.index, ...b.indices]),
        `rank ${rank} from batch ${batch}`,
      );
      assert.deepEqual(resumed[0].images, full[batch].images);
    }
  }
});

test('with mixup each rank mixes its slice with draws of its own, as each process of a DDP run has its own random state', async () => {
  const ds = syntheticObjects({ size: 8, count: 16, seed: 1 });
  const opts = { batchSize: 2, workers: 0, worldSize: 2, seed: 5, dropLast: true, transforms: [normalize()], mixup: { mixupAlpha: 0.8, cutmixAlpha: 0 } };
  const loaders = [0, 1].map((rank) => new DataLoader(ds, { ...opts, rank }));
  try {
    const got = await Promise.all(loaders.map((l) => collect(l.iterate(0))));
    assert.equal(got[0].length, 4);
    for (let j = 0; j < 4; j++) assert.notEqual(got[0][j].lam, got[1][j].lam, `batch ${j}: the ranks' λ`);
  } finally {
    for (const l of loaders) await l.close();
  }
});
