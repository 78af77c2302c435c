// A worker of test/dist/ddp.test.ts: for each case, trains the case model on its rows of every global
// batch with DistributedDataParallel and prints the result as one JSON line.
//   node ddp.js <globalBatch> <steps> <model:mode:accum>...   (model mlp|semaim, mode overlap|after-backward)
import * as dist from '../../../src/dist';
import { buildModel, CaseModel, train } from './ddp-case';

async function main(): Promise<void> {
  const [globalBatch, steps, ...cases] = process.argv.slice(2);
  const g = await dist.initProcessGroup({ timeoutMs: 60_000 });
  const B = Number(globalBatch);
  const b = B / g.worldSize;
  for (const c of cases) {
    const [kind, mode, accum] = c.split(':');
    const m = buildModel(kind as CaseModel, 17 + 1000 * g.rank, B); // different initial weights per rank
    const ddp = new dist.DistributedDataParallel(m.module, g, { mode: mode as dist.GradSyncMode, bucketCapMb: 0.001, firstBucketCapMb: 0.0005 });
    const r = train(m, {
      steps: Number(steps), from: g.rank * b, to: (g.rank + 1) * b, accum: Number(accum),
      backward: (loss, last) => { if (last) ddp.backward(loss); else ddp.noSync(() => ddp.backward(loss)); },
    });
    process.stdout.write(`${JSON.stringify({ case: c, rank: g.rank, mode: ddp.mode, buckets: ddp.buckets, ...r })}\n`);
    ddp.dispose();
  }
  dist.destroyProcessGroup();
}

main().catch((e) => { process.stderr.write(`worker failed: ${(e as Error).stack}\n`); process.exit(1); });
