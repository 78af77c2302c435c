// One rank of `npm run bench:distributed` (bench/distributed.ts starts it with torchrun's variables, or
// alone for the 1-process run): the SemAIM pre-training step of bench/pretrain_worker.ts (semantic
// order, fast-path forward, backward, clip 3, AdamW, zeroGrad), data-parallel with
// DistributedDataParallel when WORLD_SIZE > 1. After --warmup steps, times --steps synchronised steps
// and --nosync-steps steps without synchronisation (ddp.backward(loss, { sync: false }): no collective
// at all, the same work without the all-reduce), alternating. Prints one JSON line on stdout.
//
//   node dist/bench/distributed_worker.js --preset vit_tiny --img 32 --patch 4 --decoder-depth 12 \
//        --batch 16 --warmup 2 --steps 8 --nosync-steps 8 --threads 1 --mode overlap|after-backward [--compress fp16]
import * as torch from '../src/torch';
import * as dist from '../src/dist';
import { SemAIM, makeConfig } from '../src/semaim';
import { AdamW, paramGroupsWeightDecay, scaleLr } from '../src/optim';
import { optimizerStep } from '../src/run/optimizer-step';

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const now = (): number => Number(process.hrtime.bigint()) / 1e6;
/** CPU time of the whole process (every thread: ATen's, Gloo's, autograd's), ms. */
const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e3;
};
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * Whether step s synchronises: the warm-up steps do; after them synchronised and unsynchronised steps
 * alternate (while both kinds remain), so that both see the same load on a shared machine.
 */
function isSynced(s: number, warmup: number, steps: number, nosync: number): boolean {
  if (s < warmup) return true;
  const k = s - warmup;
  const pairs = Math.min(steps, nosync);
  if (k < 2 * pairs) return k % 2 === 0;
  return steps > nosync;
}

async function main(): Promise<void> {
  const preset = opt('preset', 'vit_tiny');
  const img = Number(opt('img', '32'));
  const patch = Number(opt('patch', '4'));
  const decoderDepth = Number(opt('decoder-depth', '12'));
  const batch = Number(opt('batch', '16'));
  const warmup = Number(opt('warmup', '2'));
  const steps = Number(opt('steps', '8'));
  const nosyncSteps = Number(opt('nosync-steps', '8'));
  const threads = Number(opt('threads', '1'));
  const mode = opt('mode', 'overlap') as dist.GradSyncMode;
  const compress = opt('compress', 'none') as dist.GradCompression;
  torch.setNumThreads(threads);

  const group = dist.isWorkerProcess() ? await dist.initProcessGroup({ timeoutMs: 10 * 60_000 }) : null;
  const rank = group?.rank ?? 0;
  torch.manualSeed(0);
  const cfg = makeConfig(preset, {
    imgSize: img,
    patchSize: patch,
    decoderDepth,
    target: { type: 'pixels', normPix: true, blur: true, blurKernel: 9, blurSigma: 1 },
    order: { type: 'semantic', source: 'online', filter: true, lambda: 0.01 },
  });
  const model = new SemAIM(cfg).initWeights();
  const ddp = group && group.worldSize > 1 ? new dist.DistributedDataParallel(model, group, { mode, compress }) : null;
  const lr = scaleLr(2e-4, batch * (group?.worldSize ?? 1));
  const groups = paramGroupsWeightDecay(model.namedParameters(), { weightDecay: 0.05, noWeightDecay: ['cls_token', 'pos_embed'] });
  const optimizer = new AdamW(groups, { lr, betas: [0.9, 0.95], weightDecay: 0.05 });
  const orderGen = new torch.Generator(7919 + rank);
  const images = torch.keep(torch.randn([batch, 3, img, img], { generator: new torch.Generator(1 + rank) }));

  interface Row {
    total: number;
    cpu: number;
    order: number;
    forward: number;
    backward: number;
    sync: number;
    optimizer: number;
  }
  const synced: Row[] = [];
  const local: Row[] = [];
  let firstLoss = NaN;
  for (let s = 0; s < warmup + steps + nosyncSteps; s++) {
    await new Promise((r) => setImmediate(r)); // a trainer awaiting its loader yields once per step
    const sync = isSynced(s, warmup, steps, nosyncSteps);
    const c0 = cpuNow();
    const t0 = now();
    let tf = 0;
    let tb = 0;
    let te = 0;
    torch.scope(() => {
      const { order } = model.makeOrder(images, { generator: orderGen });
      tf = now();
      const out = model.forward(images, order);
      if (s === 0) firstLoss = out.loss.item();
      tb = now();
      if (ddp) ddp.backward(out.loss, { sync });
      else out.loss.backward();
      te = now();
    });
    torch.scope(() => {
      optimizerStep({ optimizer, scaler: null, params: model.namedParameters(), clipGrad: 3 });
    });
    const t1 = now();
    const sy = ddp && sync && ddp.mode === 'after-backward' ? ddp.lastSyncMs : 0;
    const row = { total: t1 - t0, cpu: cpuNow() - c0, order: tf - t0, forward: tb - tf, backward: te - tb - sy, sync: sy, optimizer: t1 - te };
    if (s >= warmup) (sync ? synced : local).push(row);
  }
  const result = {
    side: 'ts',
    rank,
    worldSize: group?.worldSize ?? 1,
    mode: ddp ? ddp.mode : 'none',
    threads: torch.getNumThreads(),
    batch,
    params: model.parameters().reduce((a, p) => a + p.numel, 0),
    buckets: ddp ? ddp.buckets.length : 0,
    msPerStep: median(synced.map((r) => r.total)),
    phasesMs: Object.fromEntries((['order', 'forward', 'backward', 'sync', 'optimizer'] as const).map((k) => [k, median(synced.map((r) => r[k]))])),
    nosyncPhasesMs: Object.fromEntries((['order', 'forward', 'backward', 'optimizer'] as const).map((k) => [k, median(local.map((r) => r[k]))])),
    backwardMs: median(synced.map((r) => r.backward + r.sync)),
    syncAfterBackwardMs: median(synced.map((r) => r.sync)),
    nosyncMsPerStep: median(local.map((r) => r.total)),
    cpuMsPerStep: median(synced.map((r) => r.cpu)),
    nosyncCpuMsPerStep: median(local.map((r) => r.cpu)),
    nosyncBackwardMs: median(local.map((r) => r.backward)),
    stepsMs: synced.map((r) => Number(r.total.toFixed(1))),
    nosyncStepsMs: local.map((r) => Number(r.total.toFixed(1))),
    firstLoss,
    libtorch: torch.version().torch,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  images.dispose();
  optimizer.dispose();
  ddp?.dispose();
  if (group) {
    await group.barrier();
    dist.destroyProcessGroup();
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
