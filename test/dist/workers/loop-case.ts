// A rank of test/dist/stopping.test.ts that runs src/run/loop.ts's trainLoop on a tiny job (a linear
// regression, float64, batches of 4 drawn per global batch and cut in rank order):
//   node loop-case.js <out-dir> <scenario> [maxSteps]
//   plain     trains; prints {rank, steps, stoppedBy, log}
//   scaler    rank 1 starts with another loss scale and growth tracker (both ranks have a GradScaler)
//   rng       rank 1's job stream 'order' and the global generator start elsewhere
//   nan       rank 1's loss is NaN at step 3 only (log every 5 steps); checkpoints every 2
// RANK1_OUT_DIR: rank 1 uses that out-dir instead (a copy of the run on "another machine").
// Prints {rank, steps, stoppedBy, log} or {rank, error, code}.
import * as torch from '../../../src/torch';
import * as dist from '../../../src/dist';
import { Linear } from '../../../src/nn';
import { AdamW, GradScaler } from '../../../src/optim';
import { trainLoop, type TrainJob } from '../../../src/run/loop';

interface Batch {
  x: torch.Tensor;
  y: torch.Tensor;
}

const [outDir, scenario = 'plain', maxStepsText = '6'] = process.argv.slice(2);

async function main(): Promise<void> {
  torch.setNumThreads(1);
  const group = await dist.initProcessGroup({ device: 'cpu', timeoutMs: 60_000 });
  const odd = group.rank === 1;
  torch.manualSeed(1);
  const model = new Linear(3, 1, { dtype: 'float64' });
  const optimizer = new AdamW(model.namedParameters(), { lr: 0.01 });
  const scaler = scenario === 'scaler' ? new GradScaler() : null;
  if (scaler && odd) scaler.loadStateDict({ ...scaler.stateDict(), scale: 1024, growthTracker: 3 });
  const order = new torch.Generator(odd && scenario === 'rng' ? 8 : 7);
  if (odd && scenario === 'rng') torch.manualSeed(2);
  let step = 0;
  const job: TrainJob<Batch> = {
    kind: 'pretrain',
    model,
    optimizer,
    schedule: () => 0.01,
    scaler,
    ema: null,
    generators: { order },
    config: { case: 'linear' },
    options: { case: scenario },
    batchesPerEpoch: 8,
    async *batches(epoch: number, start: number) {
      for (let b = start; b < 8; b++) {
        const g = new torch.Generator(1000 * epoch + b); // the global batch, this rank's rows
        const x = torch.randn([8, 3], { dtype: 'float64', generator: g }).narrow(0, 4 * group.rank, 4);
        yield { x, y: x.sum(1, true) };
      }
    },
    batchSize: (b) => b.x.shape[0],
    loss: (b) => {
      const loss = model.forward(b.x).sub(b.y).square().mean();
      step++;
      return scenario === 'nan' && odd && step === 3 ? loss.mul(NaN) : loss;
    },
    best: { score: () => null, lowerIsBetter: true },
  };
  const log: string[] = [];
  const r = await trainLoop(
    job,
    {
      outDir: odd && process.env.RANK1_OUT_DIR ? process.env.RANK1_OUT_DIR : outDir,
      device: 'cpu',
      accumIter: 1,
      epochs: 2,
      maxSteps: Number(maxStepsText),
      logEvery: scenario === 'nan' ? 5 : 2,
      checkpointEvery: 2,
      keepLast: 3,
      resume: true,
      clipGrad: 0,
      group,
    },
    { progress: false, catchSignals: false, log: (l) => log.push(l) },
  );
  process.stdout.write(`${JSON.stringify({ rank: group.rank, steps: r.steps, stoppedBy: r.stoppedBy, log })}\n`);
  dist.destroyProcessGroup();
}

main().catch((e) => {
  const err = e as Error & { code?: string };
  process.stdout.write(`${JSON.stringify({ rank: Number(process.env.RANK), error: err.message, code: err.code ?? null })}\n`);
  process.exit(1);
});
