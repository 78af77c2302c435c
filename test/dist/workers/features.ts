// A worker of test/dist/evaluation.test.ts: extracts [CLS] and mean features of the synthetic objects
// data-parallel (each rank its slices of the batches, src/data/factories.ts's makeEvalData) and, on
// rank 0, writes what every rank gathered to a safetensors file; with 'shard', every rank writes its own
// rows and their dataset positions to <out>.rank<r>.
// A dataset and data path (e.g. tar shards) and its loader workers may follow, instead of the synthetic images.
//   node features.js <out.safetensors> <images> <batch> <all|rank0|shard> [<dataset> <data path> <workers>]
import * as torch from '../../../src/torch';
import * as dist from '../../../src/dist';
import { saveTensors } from '../../../src/io';
import { makeEvalData } from '../../../src/data';
import { extractPooledFeatures } from '../../../src/eval/features';
import { FEATURE_ENCODER, featureEncoder } from './features-case';

async function main(): Promise<void> {
  const [outPath, images, batch, gatherTo, dataset, dataPath, workers] = process.argv.slice(2);
  torch.setNumThreads(1);
  const g = await dist.initProcessGroup({ timeoutMs: 60_000 });
  const encoder = featureEncoder();
  const data = makeEvalData(
    dataset
      ? { split: 'train', dataset, dataPath, imgSize: FEATURE_ENCODER.imgSize, seed: 0, numWorkers: Number(workers) }
      : { split: 'train', dataset: 'synthetic', imgSize: FEATURE_ENCODER.imgSize, limit: Number(images), seed: 0, numWorkers: 0 },
    dist.rankSlice(g),
  );
  const sets = await extractPooledFeatures(encoder, data, ['cls', 'mean'], { batchSize: Number(batch), label: null, group: g, gatherTo: gatherTo as 'all' | 'rank0' | 'shard' });
  await data.close();
  const cls = sets.get('cls')!;
  const mean = sets.get('mean')!;
  if (gatherTo === 'shard') {
    const positions = torch.tensor(cls.shard!.positions, { dtype: 'int32' });
    saveTensors(`${outPath}.rank${g.rank}`, new Map([['cls', cls.features], ['mean', mean.features], ['labels', torch.tensor(cls.labels, { dtype: 'int32' })], ['positions', positions]]));
  } else if (g.rank === 0) {
    saveTensors(outPath, new Map([['cls', cls.features], ['mean', mean.features], ['labels', torch.tensor(cls.labels, { dtype: 'int32' })]]));
  }
  process.stdout.write(`${JSON.stringify({ rank: g.rank, rows: cls.features.shape[0], sameLabels: cls.labels.join() === mean.labels.join() })}\n`);
  dist.destroyProcessGroup();
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
