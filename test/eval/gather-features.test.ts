// Which rows of a data-parallel evaluation pass count (src/eval/gather-features.ts's firstOccurrences):
// each simulated rank holds its rows as the loaders plan them, the slices of global batches for indexed
// datasets (src/data/sharding.ts) and contiguous stream ranges cut among K workers for tar shards
// (src/data/shards/plan.ts), each row carrying its dataset index. Keeping each index where it first
// appears in rank order must keep every image exactly once and drop exactly the padding rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rankPlan } from '../../src/data';
import { shardEpochPlan } from '../../src/data/shards';
import { firstOccurrences, slicedRowIndices } from '../../src/eval/gather-features';

/** Rank r's stream positions under the slices of global batches, its batches one after the other (≥ n: padding). */
function slicedPositions(n: number, b: number, W: number, r: number): number[] {
  const plan = rankPlan({ length: n, batchSize: b, worldSize: W, rank: r, dropLast: false });
  const out: number[] = [];
  for (let j = 0; j < plan.count; j++) for (let p = plan.range(j)[0]; p < plan.range(j)[1]; p++) out.push(p);
  return out;
}

/** Rank r's stream positions over tar shards of `counts` samples, batch j from worker j mod K's piece (≥ n: padding). */
function shardPositions(counts: number[], b: number, W: number, r: number, K: number): number[] {
  const plan = shardEpochPlan({ counts, epoch: 0, seed: 0, shuffle: false, rank: r, worldSize: W, workers: K, batchSize: b, dropLast: false });
  const pieceStart: number[] = [];
  let at = plan.rankStart;
  for (const piece of plan.pieces) {
    pieceStart.push(at);
    at += piece.length;
  }
  const out: number[] = [];
  for (let j = 0; j < plan.count; j++) {
    const w = plan.workerOf(j);
    const from = pieceStart[w] + plan.emittedBefore(w, j);
    for (let i = 0; i < plan.sizeOf(j); i++) out.push(from + i);
  }
  return out;
}

function checkLayout(what: string, n: number, positions: number[][]): void {
  const counted = firstOccurrences(
    positions.map((p) => Int32Array.from(p, (v) => v % n)),
    n,
  );
  const seen = new Int32Array(n);
  positions.forEach((p, r) =>
    p.forEach((pos, i) => {
      assert.equal(counted[r][i], pos < n ? 1 : 0, `${what}: rank ${r} row ${i} (position ${pos})`);
      if (counted[r][i]) seen[pos % n]++;
    }),
  );
  assert.deepEqual(
    [...seen].filter((c) => c !== 1),
    [],
    `${what}: every image once`,
  );
}

test('the first occurrence of each image in rank order is never padding: slices of global batches', () => {
  for (const n of [1, 2, 7, 31, 203, 256])
    for (const W of [1, 2, 3, 4, 5])
      for (const b of [1, 4, 16]) {
        const positions = Array.from({ length: W }, (_, r) => slicedPositions(n, b, W, r));
        positions.forEach((p) => assert.equal(p.length, Math.ceil(n / W), `n ${n} W ${W} b ${b}: rows per rank`));
        checkLayout(`sliced n ${n} W ${W} b ${b}`, n, positions);
        positions.forEach((p, r) =>
          assert.deepEqual(
            Array.from(slicedRowIndices(n, b, W, r)),
            p.map((v) => v % n),
          ),
        );
      }
});

test('the first occurrence of each image in rank order is never padding: tar shards read by K workers', () => {
  for (const counts of [[1], [4, 4, 2], [5, 5, 5, 5, 3], [16, 16, 16, 9], [7]])
    for (const W of [1, 2, 3, 4, 5])
      for (const b of [1, 2, 3, 8])
        for (const K of [1, 2, 3]) {
          const n = counts.reduce((s, c) => s + c, 0);
          const positions = Array.from({ length: W }, (_, r) => shardPositions(counts, b, W, r, K));
          positions.forEach((p) => assert.equal(p.length, Math.ceil(n / W), `shards n ${n} W ${W} b ${b} K ${K}: rows per rank`));
          checkLayout(`shards ${counts} W ${W} b ${b} K ${K}`, n, positions);
        }
});

test('rows without an image do not count; an index past the set is refused', () => {
  const counted = firstOccurrences([Int32Array.of(0, -1, 2), Int32Array.of(1, 0, -1)], 3);
  assert.deepEqual(
    counted.map((c) => Array.from(c)),
    [
      [1, 0, 1],
      [1, 0, 0],
    ],
  );
  assert.throws(() => firstOccurrences([Int32Array.of(0, 3)], 3), /rank 0 has a row of image 3, past the 3 images/);
});
