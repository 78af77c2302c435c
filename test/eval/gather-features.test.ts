// Putting features extracted data-parallel back in dataset order (src/eval/gather-features.ts): each
// simulated rank holds the rows of its slices as the loader plans them (src/data/sharding.ts), each row
// carrying its dataset position; the interleaving must give positions 0..n-1 exactly once, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { rankPlan } from '../../src/data';
import { sliceWrapped } from '../../src/data/sharding';
import { interleaveRankLabels, interleaveRankRows, rowsPerRankBatch } from '../../src/eval/gather-features';

/** Rank r's dataset positions, its batches one after the other, as the loader yields them without shuffling. */
function rankPositions(n: number, batch: number, worldSize: number, rank: number): Int32Array {
  const plan = rankPlan({ length: n, batchSize: batch, worldSize, rank, dropLast: false });
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const parts = Array.from({ length: plan.count }, (_, j) => sliceWrapped(order, ...plan.range(j)));
  return Int32Array.from(parts.flatMap((p) => Array.from(p)));
}

test('every rank slice, interleaved, gives each image once in dataset order (padding dropped)', () => {
  for (const n of [1, 2, 7, 31, 203, 256])
    for (const W of [1, 2, 3, 4])
      for (const b of [1, 4, 16]) {
        const perBatch = rowsPerRankBatch(n, b, W);
        const positions = Array.from({ length: W }, (_, r) => rankPositions(n, b, W, r));
        positions.forEach((p) =>
          assert.equal(
            p.length,
            perBatch.reduce((s, x) => s + x, 0),
            `n ${n} W ${W} b ${b}: rows per rank`,
          ),
        );
        const labels = interleaveRankLabels(positions, perBatch, n);
        assert.deepEqual(
          Array.from(labels),
          Array.from({ length: n }, (_, i) => i),
          `labels, n ${n} W ${W} b ${b}`,
        );
        torch.scope(() => {
          // two columns: the position and 1000 + position, so rows must move whole
          const parts = positions.map((p) => torch.tensor(Float32Array.from(Array.from(p).flatMap((i) => [i, 1000 + i])), { shape: [p.length, 2] }));
          const rows = interleaveRankRows(parts, perBatch, n);
          assert.deepEqual(rows.shape, [n, 2]);
          assert.deepEqual(Array.from(rows.toFloat32Array()), Array.from({ length: n }, (_, i) => [i, 1000 + i]).flat(), `rows, n ${n} W ${W} b ${b}`);
        });
      }
});

test('interleaving refuses ranks with the wrong number of rows', () => {
  torch.scope(() => {
    const perBatch = rowsPerRankBatch(10, 4, 2); // [4, 1]
    assert.deepEqual(perBatch, [4, 1]);
    assert.throws(() => interleaveRankRows([torch.zeros([5, 1]), torch.zeros([4, 1])], perBatch, 10), /rank 1 has 4 rows, expected 5/);
    assert.throws(() => interleaveRankRows([torch.zeros([5, 1]), torch.zeros([5, 1])], perBatch, 11), /fewer than the 11 images/);
  });
});
