// A worker of test/dist/collectives.test.ts: joins the group from torchrun's environment variables and
// runs one scenario, printing one JSON line per result on stdout.
//   ok        every collective, sum/avg/max/min/product, coalesced, broadcast, allGather, gather, barrier (async and sync)
//             and the small agreements (maxOf, allGatherJson, sumNumbers)
//   timeout   rank 1 joins an all-reduce too late: rank 0 must fail with ERR_DIST_TIMEOUT naming the op,
//             mark the group failed and exit at once (timeout-sync: the same with a blocking all-reduce)
import * as torch from '../../../src/torch';
import * as dist from '../../../src/dist';

const scenario = process.argv[2] ?? 'ok';
const out = (o: Record<string, unknown>): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };
const values = (t: torch.Tensor): number[] => Array.from(t.toFloat64Array());

async function main(): Promise<void> {
  const g = await dist.initProcessGroup({ timeoutMs: 20_000 });
  const r = g.rank;
  out({ rank: r, worldSize: g.worldSize, backend: g.backend, isDistributed: dist.isDistributed(), rankFn: dist.rank(), worldSizeFn: dist.worldSize() });
  if (scenario === 'ok') {
    const a = torch.tensor([1 + r, 10 * (r + 1)], { dtype: 'float64' });
    await g.allReduce(a, 'sum');
    const b = torch.tensor([1 + r, 3 * r], { dtype: 'float32' });
    await g.allReduce(b, 'avg');
    const c = torch.tensor([r, -r], { dtype: 'int64' });
    g.allReduceSync(c, 'max');
    const d1 = torch.tensor([r + 1, r + 2, r + 3], { dtype: 'float32' });
    const d2 = torch.tensor([[r * 2, 1], [0, r]], { dtype: 'float32' });
    await g.allReduceCoalesced([d1, d2], 'avg');
    const e = torch.tensor([r === 0 ? 7 : -1, r === 0 ? 8 : -1], { dtype: 'float32' });
    await g.broadcast(e, 0);
    const f = torch.tensor([r === 1 ? 5 : 0], { dtype: 'float64' });
    g.broadcastSync(f, 1);
    const gathered = await g.allGather(torch.tensor([r, r * r, 100 + r], { dtype: 'float32' }));
    const gatheredSync = g.allGatherSync(torch.tensor([[r]], { dtype: 'int64' }));
    const toRoot1 = await g.gather(torch.tensor([[r, 2 * r], [10 + r, 20]], { dtype: 'float32' }), 1);
    // a strided view (a column, as a [CLS] feature x[:, 0] is)
    const stridedToRoot0 = await g.gather(torch.tensor([[r, -1], [10 + r, -1], [20 + r, -1]], { dtype: 'float32' }).select(1, 0), 0);
    await g.barrier();
    g.barrierSync();
    const mn = torch.tensor([r, 5 - r], { dtype: 'float64' });
    await g.allReduce(mn, 'min');
    const prod = torch.tensor([r + 2, 3], { dtype: 'float64' });
    await g.allReduce(prod, 'product');
    // from rank 1, in buffers of 8 bytes (one per tensor here)
    const q1 = torch.full([3], r === 1 ? 4 : -1, { dtype: 'float32' });
    const q2 = torch.full([1], r === 1 ? 6 : -1, { dtype: 'float64' });
    g.broadcastCoalesced([q1, q2], 1, 8);
    const p1 = torch.full([4], r === 0 ? 3 : 9, { dtype: 'float32' });
    const p2 = torch.full([2, 2], r === 0 ? 1 : 2, { dtype: 'float64' });
    g.broadcastCoalesced([p1, p2], 0);
    const avg = await g.averageNumbers([r, 10]);
    const anyA = await g.anyTrue(r === 1);
    const anyB = await g.anyTrue(false);
    const maxOf = await g.maxOf(5 * r + 3);
    // JSON of other lengths on each rank: each decoded to its own length
    const json = await g.allGatherJson(r === 0 ? { a: 1 } : { b: 'x'.repeat(40), c: [1, 2] });
    const summed = g.sumNumbers(Float32Array.of(r + 0.5, 2));
    const once = g.startBarrier();
    once.wait();
    let doubleWait = '';
    try { once.wait(); } catch (err) { doubleWait = (err as Error).message; }
    let intAvg = '';
    try { g.allReduceSync(torch.tensor([1], { dtype: 'int64' }), 'avg'); } catch (err) { intAvg = (err as Error).message; }
    out({
      rank: r, sum: values(a), avg: values(b), max: values(c), coalesced: [values(d1), values(d2)], broadcast0: values(e), broadcast1: values(f),
      gathered: gathered.map(values), gatherToRoot1: toRoot1.map((t) => ({ shape: t.shape, v: values(t) })), stridedToRoot0: stridedToRoot0.map(values), gatheredSync: gatheredSync.map((t) => ({ shape: t.shape, dtype: t.dtype, v: values(t) })),
      min: values(mn), product: values(prod), broadcastCoalescedFrom1: [values(q1), values(q2)],
      broadcastCoalesced: [values(p1), values(p2)], averageNumbers: avg, anyTrue: [anyA, anyB], intAvg, pending: g.pending,
      maxOf, json, summed: { float32: summed instanceof Float32Array, v: Array.from(summed) }, doubleWait,
    });
  } else if (scenario === 'timeout' || scenario === 'timeout-sync') {
    // Rank 1 stays alive but joins rank 0's all-reduce far too late: rank 0 times out, gives the group
    // up and must exit at once (destroying a group with a collective still running would wait for it).
    await g.barrier();
    if (r === 0) {
      const t0 = Date.now();
      try {
        if (scenario === 'timeout-sync') g.allReduceSync(torch.ones([3]), 'sum', { timeoutMs: 1500 });
        else await g.allReduce(torch.ones([3]), 'sum', { timeoutMs: 1500 });
        out({ rank: r, error: null });
      } catch (err) {
        const e = err as dist.DistError;
        out({ rank: r, error: { code: e.code, op: e.op, rank: e.rank, worldSize: e.worldSize, message: e.message }, failed: g.failed, ms: Date.now() - t0, exitAt: Date.now() });
      }
      dist.destroyProcessGroup();
      process.exit(3);
    }
    await new Promise((res) => setTimeout(res, 6000));
  }
  dist.destroyProcessGroup();
}

main().catch((e) => { process.stderr.write(`worker failed: ${(e as Error).stack}\n`); process.exit(1); });
