// A worker of test/dist/nccl-cuda.test.ts: one process (world size 1: NCCL takes one GPU per rank, and the
// GPU sessions have one) joins an NCCL group on cuda:0 and prints one JSON line per scenario:
//   collectives  every collective on CUDA tensors (values, dtype, device), the number and JSON helpers the
//                trainer's agreement checks use, and the refusal of a CPU tensor
//   ddp          one step of a small float32 model on the GPU through DistributedDataParallel for each mode
//                (overlap where the addon has c10d's Reducer) and compression, with the gradients of the
//                same step without it
import * as torch from '../../../src/torch';
import type { Tensor } from '../../../src/torch';
import * as dist from '../../../src/dist';
import { Module, Linear, LayerNorm } from '../../../src/nn';

const out = (o: Record<string, unknown>): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };
const values = (t: Tensor): number[] => torch.scope(() => Array.from(t.cpu().to({ dtype: 'float64' }).toFloat64Array()));

class SmallNet extends Module {
  readonly fc1 = this.module('fc1', new Linear(8, 64));
  readonly norm = this.module('norm', new LayerNorm(64));
  readonly fc2 = this.module('fc2', new Linear(64, 4));
  forward(x: Tensor): Tensor {
    return torch.scope(() => this.fc2.forward(this.norm.forward(this.fc1.forward(x)).tanh()));
  }
}

async function collectives(g: dist.ProcessGroup): Promise<void> {
  const cuda = (v: number[], dtype: torch.DType): Tensor => torch.tensor(Float64Array.from(v), { shape: [v.length] }).to({ dtype, device: g.device });
  const a = cuda([1, 10], 'float32');
  await g.allReduce(a, 'sum');
  const b = cuda([3, 5], 'bfloat16');
  await g.allReduce(b, 'avg');
  const c = cuda([-4, 7], 'int64');
  g.allReduceSync(c, 'max');
  const d1 = cuda([1, 2, 3], 'float32');
  const d2 = cuda([0.5, -1], 'float32');
  await g.allReduceCoalesced([d1, d2], 'avg');
  const e = cuda([7, 8], 'float32');
  await g.broadcast(e, 0);
  const gathered = await g.allGather(cuda([2, 4, 6], 'float32'));
  const toRoot = await g.gather(cuda([9], 'float32'), 0);
  await g.barrier();
  g.barrierSync();
  const p = cuda([1, 1], 'float32');
  g.broadcastCoalesced([p], 0);
  const averageNumbers = await g.averageNumbers([0.25, 10]);
  const anyTrue = [await g.anyTrue(true), await g.anyTrue(false)];
  const json = await g.allGatherJson({ rank: g.rank, name: 'shard-0' });
  const pending = g.pending;
  let cpuRefused = '';
  try {
    await g.allReduce(torch.ones([2], { device: 'cpu' }), 'sum');
  } catch (err) {
    cpuRefused = (err as Error).message;
  }
  out({
    collectives: true,
    devices: [a, b, c, d1, d2, e, ...gathered, ...toRoot].map((t) => t.device),
    dtypes: [a, b, c, d1, d2].map((t) => t.dtype),
    sum: values(a), avg: values(b), max: values(c), coalesced: [values(d1), values(d2)], broadcast: values(e),
    gathered: gathered.map(values), toRoot: toRoot.map(values), broadcastCoalesced: values(p),
    averageNumbers, anyTrue, json, pending, cpuRefused,
  });
}

/** The first-step gradients with and without DDP (world size 1: the average is the rank's own). */
function ddpStep(g: dist.ProcessGroup, mode: dist.GradSyncMode, compress: dist.GradCompression): Record<string, unknown> {
  const build = (): SmallNet => {
    torch.manualSeed(5);
    const m = new SmallNet();
    m.to({ device: g.device });
    return m;
  };
  torch.manualSeed(6);
  const x = torch.randn([32, 8]).to({ device: g.device });
  const y = torch.randn([32, 4]).to({ device: g.device });
  const lossOf = (m: SmallNet): Tensor => torch.scope(() => m.forward(x).sub(y).square().mean());
  const plain = build();
  lossOf(plain).backward();
  const wrapped = build();
  const ddp = new dist.DistributedDataParallel(wrapped, g, { mode, compress, bucketCapMb: 0.001, firstBucketCapMb: 0.0005 });
  ddp.backward(lossOf(wrapped));
  let maxDiff = 0;
  let maxGrad = 0;
  const devices = new Set<string>();
  for (const [[name, p], [, q]] of [...plain.namedParameters()].map((e, i) => [e, [...wrapped.namedParameters()][i]] as const)) {
    const [gp, gq] = [p.grad as Tensor, q.grad as Tensor];
    if (!gq) throw new Error(`${name}: no gradient after ddp.backward`);
    devices.add(gq.device);
    const [u, v] = [values(gp), values(gq)];
    for (let i = 0; i < u.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(u[i] - v[i]));
      maxGrad = Math.max(maxGrad, Math.abs(u[i]));
    }
  }
  const r = { ddp: `${mode}:${compress}`, mode: ddp.mode, buckets: ddp.buckets, maxDiff, maxGrad, gradDevices: [...devices] };
  ddp.dispose();
  return r;
}

async function main(): Promise<void> {
  const g = await dist.initProcessGroup({ device: 'cuda', timeoutMs: 60_000 });
  out({ backend: g.backend, device: g.device, worldSize: g.worldSize });
  const scenario = process.argv[2];
  if (scenario === 'collectives') await collectives(g);
  if (scenario === 'ddp') {
    const modes: dist.GradSyncMode[] = dist.distBuildInfo().reducer ? ['overlap', 'after-backward'] : ['after-backward'];
    for (const mode of modes) for (const compress of ['none', 'bf16', 'fp16'] as const) out(ddpStep(g, mode, compress));
  }
  dist.destroyProcessGroup();
}

main().catch((e) => { process.stderr.write(`worker failed: ${(e as Error).stack}\n`); process.exit(1); });
