// A worker of test/dist/ddp.test.ts: one synchronised backward of a small float32 MLP with the
// gradients all-reduced in fp16 (and bf16 where the backend sums it), through c10d's Reducer and after
// backward; each rank compares the result with the compress hook's arithmetic applied to every rank's
// local gradients: Σ_r half(half(g_r) / W), summed in the half type, cast back to float32.
//   node ddp-compress.js
import * as torch from '../../../src/torch';
import type { Tensor } from '../../../src/torch';
import * as dist from '../../../src/dist';
import { Linear, Module } from '../../../src/nn';

class Net extends Module {
  readonly fc1 = this.module('fc1', new Linear(12, 32));
  readonly fc2 = this.module('fc2', new Linear(32, 5));
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.fc1.forward(x).tanh());
  }
}

function grads(m: Module): Tensor[] {
  return [...m.namedParameters()].map(([, p]) => torch.keep(p.grad!.clone()));
}

async function main(): Promise<void> {
  torch.setNumThreads(1);
  const g = await dist.initProcessGroup({ timeoutMs: 60_000 });
  const cases: [dist.GradSyncMode, dist.GradCompression][] = [];
  for (const mode of ['overlap', 'after-backward'] as const) for (const c of ['fp16', 'bf16'] as const) cases.push([mode, c]);
  for (const [mode, compress] of cases) {
    torch.manualSeed(3);
    const m = new Net();
    let ddp: dist.DistributedDataParallel;
    try {
      ddp = new dist.DistributedDataParallel(m, g, { mode, compress, bucketCapMb: 0.001, firstBucketCapMb: 0.0005 });
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ mode, compress, refused: (e as Error).message })}\n`);
      m.dispose();
      continue;
    }
    torch.manualSeed(100 + g.rank);
    const x = torch.keep(torch.randn([6, 12]).mul(3));
    const y = torch.keep(torch.randint(0, 5, [6]));
    const loss = () => torch.F.crossEntropy(m.forward(x), y);
    ddp.noSync(() => ddp.backward(loss()));
    const local = grads(m);
    for (const [, p] of m.namedParameters()) p.grad = null;
    ddp.backward(loss());
    const synced = grads(m);
    const half = compress === 'fp16' ? 'float16' : 'bfloat16';
    let exact = true;
    let differsFromFloatMean = false;
    let maxRel = 0;
    torch.noGrad(() =>
      local.forEach((l, i) =>
        torch.scope(() => {
          const all = g.allGatherSync(l);
          const want = all.map((t) => t.to({ dtype: half }).div(g.worldSize)).reduce((a, b) => a.add(b)).float();
          const mean = torch.stack(all, 0).mean(0);
          exact &&= synced[i].sub(want).abs().max().item() === 0;
          differsFromFloatMean ||= synced[i].sub(mean).abs().max().item() > 0;
          maxRel = Math.max(maxRel, synced[i].sub(mean).abs().max().item() / Math.max(mean.abs().max().item(), 1e-12));
        }),
      ),
    );
    process.stdout.write(`${JSON.stringify({ mode, compress, modeUsed: ddp.mode, exact, differsFromFloatMean, maxRel })}\n`);
    ddp.dispose();
    for (const t of [...local, ...synced, x, y]) t.dispose();
    m.dispose();
  }
  dist.destroyProcessGroup();
}

main().catch((e) => { process.stderr.write(`worker failed: ${(e as Error).stack}\n`); process.exit(1); });
