// A rank of test/dist/stopping.test.ts: a data-parallel job whose AbortSignal is aborted on one rank
// only (argv[2] the scenario, argv[3] the rank that aborts, the rest the job's command-line options).
//   pretrain   `semaim pretrain`'s job; the rank aborts its signal after step 3
//   knn        runKnn on synthetic images (the encoder file in args[0], the out-dir args[1]); the rank
//              aborts after its first training batch
//   linprobe   runLinprobe (cached features), the same files; the rank aborts when its features are done
//   segprobe   runSegprobe on memory squares; the rank aborts after its first training batch
//   embed      embed of synthetic images to args[1]/features.safetensors; the rank aborts after its first batch
// Prints {rank, steps, stoppedBy, ms} or {rank, error, name, code, ms}.
import * as dist from '../../../src/dist';
import { pretrain } from '../../../src/train/pretrain';
import { PRETRAIN_OPTIONS, trainDataRequest, validatePretrain } from '../../../src/train/pretrain-options';
import { makeTrainData } from '../../../src/data';
import { parseArgv, resolveOptions } from '../../../src/util/options';
import { DATA_FACTORIES, DataFactories } from '../../../src/data';
import { KNN_OPTIONS, LINPROBE_OPTIONS } from '../../../src/eval/options';
import { runKnn, runLinprobe } from '../../../src/eval/run';
import { SEGPROBE_OPTIONS, readSegprobeConfig } from '../../../src/eval/segprobe-options';
import { runSegprobe } from '../../../src/eval/segprobe-run';
import { embed } from '../../../src/eval/embed';
import { squares } from '../../eval/seg-helpers';
import { join } from 'node:path';

/** `d` whose batches() calls `after(n)` after handing out its n-th batch, and `done()` after the last. */
function watched<T extends object>(d: T, hooks: { after?: (n: number) => void; done?: () => void }): T {
  const w = Object.create(d) as T;
  let n = 0;
  (w as { batches: unknown }).batches = async function* (o: never) {
    for await (const b of (d as unknown as { batches(o: never): AsyncIterable<unknown> }).batches(o)) {
      yield b;
      hooks.after?.(++n);
    }
    hooks.done?.();
  };
  return w;
}

const [scenario, abortRankText, ...args] = process.argv.slice(2);
const abortRank = Number(abortRankText);
const out = (o: Record<string, unknown>): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };

async function main(): Promise<void> {
  const group = await dist.initProcessGroup({ device: 'cpu', timeoutMs: Number(process.env.STOP_CASE_TIMEOUT_MS ?? 60_000) });
  const controller = new AbortController();
  const t0 = Date.now();
  try {
    if (scenario === 'pretrain') {
      const o = resolveOptions(PRETRAIN_OPTIONS, parseArgv(args, PRETRAIN_OPTIONS).options);
      validatePretrain(o);
      const r = await pretrain(o, makeTrainData(trainDataRequest(o), dist.rankSlice(group)), {
        group,
        signal: controller.signal,
        catchSignals: false,
        progress: false,
        log: () => {},
        onStep: (step) => { if (step === 3 && group.rank === abortRank) controller.abort(); },
      });
      out({ rank: group.rank, steps: r.steps, stoppedBy: r.stoppedBy, checkpoint: r.checkpoint, ms: Date.now() - t0 });
    } else if (scenario === 'knn' || scenario === 'linprobe') {
      const [checkpoint, outDir] = args;
      const mine = group.rank === abortRank;
      const f: DataFactories = {
        ...DATA_FACTORIES,
        makeEvalData: (r, slice) => {
          const d = DATA_FACTORIES.makeEvalData(r, slice);
          if (!mine) return d;
          if (scenario === 'knn') return r.split === 'train' ? watched(d, { after: (n) => n === 1 && controller.abort() }) : d;
          return r.split === 'test' ? watched(d, { done: () => controller.abort() }) : d;
        },
      };
      const common = { checkpoint, outDir, dataset: 'synthetic', trainLimit: 48, testLimit: 16, evalBatchSize: 8, threads: 1, numWorkers: 0 };
      const r =
        scenario === 'knn'
          ? await runKnn(resolveOptions(KNN_OPTIONS, {}, { ...common, k: '1' }), f, { group, signal: controller.signal })
          : await runLinprobe(resolveOptions(LINPROBE_OPTIONS, {}, { ...common, epochs: 2, batchSize: 8 }), f, { group, signal: controller.signal });
      out({ rank: group.rank, path: r?.path ?? null, ms: Date.now() - t0 });
    } else if (scenario === 'segprobe') {
      const [checkpoint, outDir] = args;
      const o = resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint, epochs: 2, batchSize: 8, evalBatchSize: 4, outDir, figureImages: 2, threads: 1 });
      const [train, test] = [squares(32, 1), squares(12, 2)];
      const mine = group.rank === abortRank;
      const factory = (r: { split: string }) => (r.split === 'train' ? (mine ? watched(train, { after: (n) => n === 1 && controller.abort() }) : train) : test);
      const r = await runSegprobe(readSegprobeConfig(o), o, factory, { group, signal: controller.signal });
      out({ rank: group.rank, path: r?.path ?? null, ms: Date.now() - t0 });
    } else if (scenario === 'embed') {
      const [checkpoint, outDir] = args;
      const r = await embed({
        checkpoint,
        out: join(outDir, 'features.safetensors'),
        dataset: 'synthetic',
        limit: 48,
        batchSize: 4,
        threads: 1,
        numWorkers: 0,
        progress: null,
        group,
        signal: controller.signal,
        onProgress: () => { if (group.rank === abortRank) controller.abort(); },
      });
      out({ rank: group.rank, path: r?.path ?? null, ms: Date.now() - t0 });
    }
  } catch (e) {
    const err = e as Error & { code?: string };
    out({ rank: group.rank, error: err.message, name: err.name, code: err.code ?? null, ms: Date.now() - t0 });
  }
  // a program that goes on after its job keeps its group: the ranks meet once more before it closes, so
  // that a rank still waiting in the job's collectives learns nothing from this one's sockets closing
  await group.barrier();
  dist.destroyProcessGroup();
}

main().catch((e) => {
  process.stderr.write(`worker failed: ${(e as Error).stack}\n`);
  process.exit(1);
});
