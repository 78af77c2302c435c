// One SemAIM pre-training configuration timed in its own process (bench/pretrain.ts spawns it, so
// the peak RSS it reports belongs to this run alone). The step is the one of src/train/pretrain.ts:
// semantic order (no-grad unmasked similarity pass), fast-path forward, backward, clip 3, AdamW,
// zeroGrad, each inside torch.scope. Prints one JSON line on stdout.
//
//   node dist/bench/pretrain_worker.js --preset vit_tiny --img 32 --patch 4 --decoder-depth 12 \
//        --batch 64 --warmup 2 --steps 10 --threads 2 [--device cuda] [--phases] [--count-ops] [--no-yield] [--verbose]
//        [--init-weights FILE.safetensors] [--data-seed S] [--log-losses N] [--order-precision same|fp32]
//        [--embed-dim D] [--depth L] [--heads H] [--order semantic|raster|stochastic] [--no-blur]
//
// --embed-dim/--depth/--heads override the preset (the order ablation's small model: 96 × 4, 3 heads);
// --order raster|stochastic runs no similarity pass (as the trainer: only S-based orders need it);
// --no-blur: pixel targets without the 9×9 blur (the ablation's recipe).
//
// Phases (order / forward / backward / optimizer) are timed on every CPU step (the host waits for
// every op anyway); on CUDA only with --phases, which synchronises between phases.
import * as fs from 'node:fs';
import * as torch from '../src/torch';
import { native } from '../src/torch/native';
import { SemAIM, makeConfig } from '../src/semaim';
import { AdamW, paramGroupsWeightDecay, scaleLr } from '../src/optim';
import { loadTensors } from '../src/io';
import { withPrecision } from '../src/run/precision';
import { optimizerStep } from '../src/run/optimizer-step';
import { cudnnAutotune } from '../src/run/cudnn-autotune';

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);

const preset = opt('preset', 'vit_tiny');
const img = Number(opt('img', '32'));
const patch = Number(opt('patch', '4'));
const decoderDepth = Number(opt('decoder-depth', '12'));
const batch = Number(opt('batch', '64'));
const warmup = Number(opt('warmup', '2'));
const steps = Number(opt('steps', '10'));
const threads = Number(opt('threads', '2'));
const device = opt('device', 'cpu') as torch.Device;
const seed = Number(opt('seed', '0'));
const cuda = device.startsWith('cuda');
const embedDim = opt('embed-dim', '');
const depthOpt = opt('depth', '');
const headsOpt = opt('heads', '');
const orderType = opt('order', 'semantic');
if (!['semantic', 'raster', 'stochastic'].includes(orderType)) throw new Error(`--order must be semantic, raster or stochastic, not ${orderType}`);
const blur = !flag('no-blur');
const phases = !cuda || flag('phases');
const countOps = flag('count-ops');
// Node-API finalizers of disposed tensor handles run from the event loop (Node ≥ 20 defers them), so a
// loop that never yields piles them up and fragments the malloc heap (RSS grows every step). A trainer
// awaiting its data loader yields once per batch; so does this loop, unless --no-yield.
const yieldEachStep = !flag('no-yield');
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const now = (): number => Number(process.hrtime.bigint()) / 1e6; // ms
const cpuNow = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1e3; }; // ms, all threads
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sync = (): void => { if (cuda) torch.cuda.synchronize(); };

function procStatus(key: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`${key}:\\s+(\\d+)\\s+kB`).exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}
const verbose = flag('verbose');
// Same initial weights / images as the PyTorch sides (a safetensors file with our parameter names and
// optionally `data.images`), images from a seeded CPU generator, and the first N step losses.
const initWeights = opt('init-weights', '');
const dataSeed = opt('data-seed', '');
const logLosses = Number(opt('log-losses', '0'));

/** Counts calls into the addon (each is one or a few ATen ops) by wrapping every native function. */
const opCounts = new Map<string, number>();
let counting = false;
if (countOps) {
  const n = native as unknown as Record<string, unknown>;
  for (const key of Object.keys(n)) {
    const f = n[key];
    if (typeof f !== 'function' || /^[A-Z]/.test(key)) continue;
    n[key] = function (this: unknown, ...args: unknown[]) {
      if (counting) opCounts.set(key, (opCounts.get(key) ?? 0) + 1);
      return (f as (...a: unknown[]) => unknown).apply(this, args);
    };
  }
}

async function main(): Promise<void> {
  torch.setNumThreads(threads);
  torch.manualSeed(seed);
  const cfg = makeConfig(preset, {
    imgSize: img, patchSize: patch, decoderDepth,
    ...(embedDim ? { embedDim: Number(embedDim) } : {}), ...(depthOpt ? { depth: Number(depthOpt) } : {}), ...(headsOpt ? { numHeads: Number(headsOpt) } : {}),
    target: { type: 'pixels', normPix: true, blur, blurKernel: 9, blurSigma: 1 },
    order: orderType === 'semantic' ? { type: 'semantic', source: 'online', filter: true, lambda: 0.01 } : { type: orderType as 'raster' | 'stochastic' },
  });
  const model = new SemAIM(cfg).initWeights();
  let fileImages: torch.Tensor | null = null;
  let fileNoise: torch.Tensor | null = null; // [K, B, N] order noise shared with the other sides
  if (initWeights) {
    const { tensors } = loadTensors(initWeights);
    const own = new Map(model.namedParameters());
    for (const k of own.keys()) if (!tensors.has(k)) throw new Error(`${initWeights}: parameter ${k} missing`);
    model.loadStateDict(new Map([...tensors].filter(([k]) => own.has(k))), { strict: false });
    fileImages = tensors.get('data.images') ?? null;
    fileNoise = tensors.get('data.noise') ?? null;
    for (const [k, t] of tensors) if (k !== 'data.images' && k !== 'data.noise') t.dispose();
  }
  model.to({ device });
  if (fileNoise) { // once, not a host-to-device copy per step
    const onDevice = torch.keep(fileNoise.to({ device }));
    if (onDevice !== fileNoise) fileNoise.dispose();
    fileNoise = onDevice;
  }
  const params = model.namedParameters();
  const nParams = [...params].reduce((s, [, p]) => s + p.numel, 0);
  const lr = scaleLr(2e-4, batch);
  const groups = paramGroupsWeightDecay(model.namedParameters(), { weightDecay: 0.05, noWeightDecay: ['cls_token', 'pos_embed'] });
  const optimizer = new AdamW(groups, { lr, betas: [0.9, 0.95], weightDecay: 0.05 });
  const orderGen = new torch.Generator(seed + 7919);
  const images = torch.keep(fileImages ? fileImages.to({ dtype: 'float32', device })
    : dataSeed ? torch.randn([batch, 3, img, img], { generator: new torch.Generator(Number(dataSeed)) }).to({ device })
      : torch.randn([batch, 3, img, img], { device }));
  fileImages?.dispose();
  const lossSum = torch.keep(torch.zeros([], { device }));
  const allFinite = torch.keep(torch.ones([], { dtype: 'bool', device }));
  const precision = cuda ? 'bf16' : 'fp32'; // as `semaim pretrain --precision auto` on a GPU
  const orderPrecision = opt('order-precision', 'same') === 'fp32' ? 'fp32' : precision; // as --order-precision
  if (cuda) torch.cuda.resetPeakMemory();
  cudnnAutotune(device); // as the trainer

  const rows: { cpu: number; total: number; order: number; forward: number; backward: number; optimizer: number }[] = [];
  const losses: number[] = [];
  for (let s = 0; s < Math.max(warmup + steps, logLosses); s++) {
    if (yieldEachStep) await yieldToEventLoop();
    counting = countOps && s === warmup; // one measured step
    sync();
    const c0 = cpuNow();
    const t0 = now();
    let t1 = 0;
    let t2 = 0;
    let t3 = 0;
    torch.scope(() => {
      optimizer.setLr(lr);
      const noise = fileNoise ? fileNoise.select(0, s % fileNoise.shape[0]) : undefined;
      const { order } = withPrecision(orderPrecision, device, () => model.makeOrder(images, { generator: orderGen, noise }));
      if (phases) { sync(); t1 = now(); }
      const out = withPrecision(precision, device, () => model.forward(images, order));
      const loss = out.loss.div(1);
      if (phases) { sync(); t2 = now(); }
      loss.backward();
      lossSum.add_(out.loss.detach().float());
      allFinite.copy_(allFinite.logicalAnd(out.loss.isfinite()));
      if (phases) { sync(); t3 = now(); }
    });
    torch.scope(() => { optimizerStep({ optimizer, scaler: null, params: model.namedParameters(), clipGrad: 3 }); }); // the trainer's update
    sync();
    const t4 = now();
    const c4 = cpuNow();
    counting = false;
    if (s >= warmup && s < warmup + steps) rows.push({ cpu: c4 - c0, total: t4 - t0, order: t1 - t0, forward: t2 - t1, backward: t3 - t2, optimizer: t4 - t3 });
    losses.push(lossSum.item());
    lossSum.zero_();
    if (verbose) {
      const m = torch.memoryStats();
      const r = rows[rows.length - 1];
      process.stderr.write(`step ${s}: ${(t4 - t0).toFixed(0)} ms (cpu ${(c4 - c0).toFixed(0)})` + (r && s >= warmup ? ` (order ${r.order.toFixed(0)}, fwd ${r.forward.toFixed(0)}, bwd ${r.backward.toFixed(0)}, opt ${r.optimizer.toFixed(0)})` : '') +
        `, live tensors ${m.liveTensors} (${(m.liveBytes / 2 ** 20).toFixed(0)} MiB), RSS ${(procStatus('VmRSS') / 2 ** 20).toFixed(0)} MiB, HWM ${(procStatus('VmHWM') / 2 ** 20).toFixed(0)} MiB\n`);
    }
  }
  const ms = median(rows.map((r) => r.total));
  const result: Record<string, unknown> = {
    side: 'ts',
    yieldEachStep,
    preset, embedDim: cfg.embedDim, depth: cfg.depth, numHeads: cfg.numHeads, order: orderType, blur, img, patch, decoderDepth, batch, warmup, steps, threads: torch.getNumThreads(), device,
    params: nParams,
    msPerStep: ms,
    minMs: Math.min(...rows.map((r) => r.total)),
    imgPerSec: (batch * 1000) / ms,
    stepsMs: rows.map((r) => Number(r.total.toFixed(1))),
    cpuMsPerStep: median(rows.map((r) => r.cpu)),
    minCpuMs: Math.min(...rows.map((r) => r.cpu)),
    phasesMs: phases ? {
      order: median(rows.map((r) => r.order)),
      forward: median(rows.map((r) => r.forward)),
      backward: median(rows.map((r) => r.backward)),
      optimizer: median(rows.map((r) => r.optimizer)),
    } : null,
    firstLoss: losses[0],
    lastLoss: losses[warmup + steps - 1],
    ...(logLosses ? { losses: losses.slice(0, logLosses) } : {}),
    allFinite: allFinite.item() as unknown as boolean,
    peakRssBytes: procStatus('VmHWM'),
    libtorch: torch.version().torch,
  };
  if (cuda) result.peakGpuBytes = torch.cuda.memory().peakAllocated;
  // The addon's caching CPU allocator (native/allocator.cc), when this build has it.
  const allocStats = (native as unknown as { cpuAllocatorStats?: () => Record<string, number | boolean> }).cpuAllocatorStats;
  if (!cuda && typeof allocStats === 'function') result.cpuAllocator = allocStats();
  if (countOps) {
    result.nativeCalls = [...opCounts.values()].reduce((a, b) => a + b, 0);
    result.nativeCallsByName = Object.fromEntries([...opCounts].sort((a, b) => b[1] - a[1]));
  }
  images.dispose();
  fileNoise?.dispose();
  lossSum.dispose();
  allFinite.dispose();
  optimizer.dispose();
  model.dispose();
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
