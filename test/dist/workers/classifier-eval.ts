// A worker of test/dist/evaluation.test.ts: a seeded classifier scores this rank's slices of the
// synthetic test images (the last global batch padded) and prints the accuracy summed over the ranks.
//   node classifier-eval.js <images> <batch>
import * as torch from '../../../src/torch';
import * as dist from '../../../src/dist';
import { makeEvalData } from '../../../src/data';
import { evaluateClassifier } from '../../../src/eval/finetune';
import { FEATURE_ENCODER, featureClassifier } from './features-case';

async function main(): Promise<void> {
  const [images, batch] = process.argv.slice(2).map(Number);
  torch.setNumThreads(1);
  const g = await dist.initProcessGroup({ timeoutMs: 60_000 });
  const model = featureClassifier();
  const data = makeEvalData({ split: 'test', dataset: 'synthetic', imgSize: FEATURE_ENCODER.imgSize, limit: images, seed: 0, numWorkers: 0 }, dist.rankSlice(g));
  const accuracy = await evaluateClassifier(model, data, { batchSize: batch, group: g });
  await data.close();
  process.stdout.write(`${JSON.stringify({ rank: g.rank, accuracy })}\n`);
  dist.destroyProcessGroup();
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
