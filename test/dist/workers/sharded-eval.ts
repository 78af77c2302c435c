// A worker of test/dist/evaluation.test.ts: k-NN and the linear probe on this rank's shard of the
// training features (the whole test set on every rank); prints the accuracies and the probe's tensors.
//   node sharded-eval.js
import * as torch from '../../../src/torch';
import * as dist from '../../../src/dist';
import { knnClassify } from '../../../src/eval/knn';
import { linprobeOnFeatures } from '../../../src/eval/linprobe';
import { CASE, PROBE, shardOf, shardedCase } from './sharded-case';

async function main(): Promise<void> {
  torch.setNumThreads(1);
  const g = await dist.initProcessGroup({ timeoutMs: 60_000 });
  const { train, test } = shardedCase();
  const mine = shardOf(train, g.rank, g.worldSize);
  train.features.dispose();
  const knn = knnClassify(mine, test, { ks: CASE.ks, numClasses: CASE.classes, chunkSize: 16, label: null, group: g });
  const r = await linprobeOnFeatures(mine, test, CASE.classes, { ...PROBE, group: g });
  const probe = Object.fromEntries([...r.probe.stateDict()].map(([k, t]) => [k, Array.from(t.toFloat32Array())]));
  process.stdout.write(`${JSON.stringify({ rank: g.rank, rows: mine.features.shape[0], knn, probe: { top1: r.accuracy.top1, history: r.history, tensors: probe } })}\n`);
  dist.destroyProcessGroup();
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
