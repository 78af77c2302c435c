// The features both sides of test/dist/evaluation.test.ts's sharded k-NN and probe comparison build:
// seeded clusters (no ties in similarity), split over the ranks unevenly so that one shard holds fewer
// rows than the largest k.
import * as torch from '../../../src/torch';
import type { FeatureSet } from '../../../src/eval/features';
import type { LinprobeOptions } from '../../../src/eval/linprobe';

export const CASE = { train: 157, test: 43, dim: 12, classes: 5, ks: [1, 5, 20] };
export const PROBE: LinprobeOptions = { epochs: 3, batchSize: 32, blr: 0.5, warmupEpochs: 1, seed: 3, evalEvery: 1, label: null };

function clusters(n: number, seed: number): FeatureSet {
  torch.manualSeed(seed);
  const centres = torch.randn([CASE.classes, CASE.dim]);
  const labels = Int32Array.from({ length: n }, (_, i) => (i * 7 + seed) % CASE.classes);
  const features = torch.keep(centres.indexSelect(0, torch.tensor(labels, { dtype: 'int64' })).add(torch.randn([n, CASE.dim]).mul(1.5)));
  centres.dispose();
  return { features, labels };
}

export function shardedCase(): { train: FeatureSet; test: FeatureSet } {
  return { train: clusters(CASE.train, 1), test: clusters(CASE.test, 2) };
}

/** Rank r's dataset positions: the first 4 go to the last rank, the rest round-robin over the others. */
export function shardPositions(rank: number, worldSize: number): Int32Array {
  const out: number[] = [];
  for (let p = 0; p < CASE.train; p++) {
    const owner = p < 4 ? worldSize - 1 : (p - 4) % (worldSize - 1);
    if (owner === rank) out.push(p);
  }
  return Int32Array.from(out);
}

/** This rank's shard of `set`. */
export function shardOf(set: FeatureSet, rank: number, worldSize: number): FeatureSet {
  const positions = shardPositions(rank, worldSize);
  return {
    features: torch.keep(set.features.indexSelect(0, torch.tensor(positions, { dtype: 'int64' }))),
    labels: Int32Array.from(positions, (p) => set.labels[p]),
    shard: { positions, size: set.features.shape[0] },
  };
}
