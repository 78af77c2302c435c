// A worker of test/dist/evaluation.test.ts: a seeded classifier scores this rank's slices of the
// synthetic test images (the last global batch padded) and prints the accuracy summed over the ranks.
// A dataset and data path (e.g. tar shards) and its loader workers may follow, instead of the synthetic images.
//   node classifier-eval.js <images> <batch> [<dataset> <data path> <workers>]
import * as torch from '../../../src/torch';
import * as dist from '../../../src/dist';
import { makeEvalData } from '../../../src/data';
import { evaluateClassifier } from '../../../src/eval/finetune';
import { FEATURE_ENCODER, featureClassifier } from './features-case';

async function main(): Promise<void> {
  const [images, batch] = process.argv.slice(2, 4).map(Number);
  const [dataset, dataPath, workers] = process.argv.slice(4);
  torch.setNumThreads(1);
  const g = await dist.initProcessGroup({ timeoutMs: 60_000 });
  const model = featureClassifier();
  const data = makeEvalData(
    dataset
      ? { split: 'test', dataset, dataPath, imgSize: FEATURE_ENCODER.imgSize, seed: 0, numWorkers: Number(workers) }
      : { split: 'test', dataset: 'synthetic', imgSize: FEATURE_ENCODER.imgSize, limit: images, seed: 0, numWorkers: 0 },
    dist.rankSlice(g),
  );
  const accuracy = await evaluateClassifier(model, data, { batchSize: batch, group: g });
  await data.close();
  process.stdout.write(`${JSON.stringify({ rank: g.rank, accuracy })}\n`);
  dist.destroyProcessGroup();
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
