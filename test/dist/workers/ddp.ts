// A worker of test/dist/ddp.test.ts: for each case, trains the case model on its rows of every global
// batch with DistributedDataParallel and prints the result as one JSON line.
//   node ddp.js <globalBatch> <steps> <model:mode:accum>... [dead-peer]   (model mlp|semaim, mode overlap|after-backward)
// dead-peer (last): rank 1 then exits and rank 0 reports how its next synchronised backward failed.
import * as dist from '../../../src/dist';
import { buildModel, CaseModel, train } from './ddp-case';

async function main(): Promise<void> {
  const [globalBatch, steps, ...cases] = process.argv.slice(2);
  const g = await dist.initProcessGroup({ timeoutMs: 60_000 });
  const B = Number(globalBatch);
  const b = B / g.worldSize;
  for (const c of cases.filter((x) => x !== 'dead-peer')) {
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
  if (cases.includes('dead-peer')) await deadPeer(g, B);
  dist.destroyProcessGroup();
}

/** Rank 1 exits once DDP is set up; rank 0's next synchronised backward must fail clearly, not hang. */
async function deadPeer(g: dist.ProcessGroup, B: number): Promise<void> {
  const m = buildModel('mlp', 17, B);
  const ddp = new dist.DistributedDataParallel(m.module, g);
  await g.barrier();
  if (g.rank === 1) {
    // exit once stdout (a pipe: written asynchronously) has taken the earlier results
    await new Promise<void>((r) => process.stdout.write('', () => r()));
    process.exit(0);
  }
  await new Promise((r) => setTimeout(r, 300));
  const loss = m.loss(0, 0, B / 2);
  const t0 = Date.now();
  try {
    ddp.backward(loss);
    process.stdout.write(`${JSON.stringify({ deadPeer: null })}\n`);
  } catch (err) {
    const e = err as dist.DistError;
    process.stdout.write(`${JSON.stringify({ deadPeer: { code: e.code, op: e.op, rank: e.rank, message: e.message, mode: ddp.mode }, ms: Date.now() - t0, failed: g.failed })}\n`);
  }
}

main().catch((e) => { process.stderr.write(`worker failed: ${(e as Error).stack}\n`); process.exit(1); });
