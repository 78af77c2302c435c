// Run by progress-switch.test.ts in a child process (whose whole stdout and stderr it reads): runKnn,
// runLinprobe (cached: fewer training features than a batch; online) and runSegprobe (cached, online) on toy data into argv[3], with
// `progress: null` when argv[2] is 'off'. Writes nothing itself.
import { join } from 'node:path';
import {
  KNN_OPTIONS,
  LINPROBE_OPTIONS,
  SEGPROBE_OPTIONS,
  readSegprobeConfig,
  resolveOptions,
  runKnn,
  runLinprobe,
  runSegprobe,
  torch,
  type data,
} from '../../src';
import { toyImages, writeEncoder } from './helpers';
import { squares } from './seg-helpers';

async function main(): Promise<void> {
  torch.setNumThreads(1);
  const [mode, dir] = process.argv.slice(2);
  const job = mode === 'off' ? { progress: null } : {};
  const enc = writeEncoder(dir);
  const f: data.DataFactories = {
    makeEvalData: (r) => (r.split === 'train' ? toyImages(32, 2, 8, 1) : toyImages(16, 2, 8, 2)),
    makeTrainData: () => {
      throw new Error('not used');
    },
  };
  await runKnn(resolveOptions(KNN_OPTIONS, { checkpoint: enc, outDir: join(dir, 'knn'), k: '5', threads: 1, evalBatchSize: 8 }), f, job);
  const lo = { checkpoint: enc, outDir: join(dir, 'lp'), epochs: 1, batchSize: 64, threads: 1, evalBatchSize: 8 };
  await runLinprobe(resolveOptions(LINPROBE_OPTIONS, lo), f, job);
  await runLinprobe(resolveOptions(LINPROBE_OPTIONS, { ...lo, outDir: join(dir, 'lp-online'), batchSize: 8, cacheFeatures: false }), f, job);
  const so = resolveOptions(
    SEGPROBE_OPTIONS,
    {},
    { checkpoint: enc, epochs: 1, batchSize: 8, evalBatchSize: 8, outDir: join(dir, 'sp'), figureImages: 2, threads: 1 },
  );
  const seg = (r: { split: string }) => (r.split === 'train' ? squares(16, 1) : squares(8, 2));
  await runSegprobe(readSegprobeConfig(so), so, seg, job);
  const online = { ...so, outDir: join(dir, 'sp-online'), augment: 'crop-flip' as const };
  await runSegprobe(readSegprobeConfig(online), online, seg, job);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
