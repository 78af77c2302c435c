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
//        [--phase-timer [--upload-input]] [--fused all|none|layernorm,layernorm-backward,gelu,qkv,targets,patch-embed] [--sdpa cudnn,flash,...]
//        [--cuda-graphs] [--kernel-profile STEPS [--kernel-profile-out FILE.md]]
//
// Phases (order / forward / backward / optimizer) are timed on every CPU step (the host waits for
// every op anyway); on CUDA only with --phases, which synchronises between phases.
// --phase-timer: finer phases (input, similarity pass, order, targets, encoder, decoder, head, loss,
//   backward, optimizer) from the model's phase marks: CUDA events on a GPU (no synchronisation between
//   phases), wall time on the CPU; --upload-input adds the trainer's uint8 upload + normalisation of a
//   batch to each step (timed as 'input'; the step still trains on the fixed images).
// --fused: the fused kernels of src/torch/fused.ts (CUDA; elsewhere the unfused ops run).
// --sdpa: the attention backends' priority order (libtorch >= 2.6); the result names the backend chosen.
// --cuda-graphs: the order pass, forward and backward captured once as a CUDA graph and replayed, as
//   `semaim pretrain --cuda-graphs` does it (src/train/pretrain-step.ts); clip and AdamW run eagerly
//   after each replay. Refused off CUDA.
// --kernel-profile: STEPS more steps after the measured ones under libtorch's profiler (bench/kernel-profile.ts):
//   GPU time by kernel and kernel family of this step, fused kernels included (CPU ops on the CPU); the
//   families go into the JSON line, the tables to --kernel-profile-out (and stderr). The measured steps
//   run without the profiler.
import * as fs from 'node:fs';
import * as torch from '../src/torch';
import { native } from '../src/torch/native';
import { SemAIM, makeConfig } from '../src/semaim';
import { AdamW, paramGroupsWeightDecay, scaleLr } from '../src/optim';
import { loadTensors } from '../src/io';
import { withPrecision, type Precision } from '../src/run/precision';
import { optimizerStep } from '../src/run/optimizer-step';
import { cudnnAutotune } from '../src/run/cudnn-autotune';
import { clipGradNorm } from '../src/optim';
import { cudaGraphRefusal } from '../src/run/cuda-graph-step';
import { PhaseTimer, medianPhases, type PhaseTimes } from '../src/run/phase-timer';
import { setPhaseProbe, markPhase } from '../src/semaim/phases';
import { DeviceImages } from '../src/run/device-images';
import { StaticPretrainStep } from '../src/train/pretrain-step';
import { startKernelProfile, stopKernelProfile, profileMarkdown, type KernelProfile } from './kernel-profile';

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
const phaseTimerOn = flag('phase-timer');
const uploadInput = phaseTimerOn && flag('upload-input');
const fusedKinds = torch.fused.parseFusedKinds(opt('fused', 'none'));
const sdpaOrder = opt('sdpa', '');
const cudaGraphs = flag('cuda-graphs');
const kernelProfileSteps = Number(opt('kernel-profile', '0'));
const kernelProfileOut = opt('kernel-profile-out', '');
if (!Number.isInteger(kernelProfileSteps) || kernelProfileSteps < 0)
  throw new Error(`--kernel-profile takes a number of steps, not ${opt('kernel-profile', '')}`);
// Node-API finalizers of disposed tensor handles run from the event loop (Node ≥ 20 defers them), so a
// loop that never yields piles them up and fragments the malloc heap (RSS grows every step). A trainer
// awaiting its data loader yields once per batch; so does this loop, unless --no-yield.
const yieldEachStep = !flag('no-yield');
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const now = (): number => Number(process.hrtime.bigint()) / 1e6; // ms
const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e3;
}; // ms, all threads
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sync = (): void => {
  if (cuda) torch.cuda.synchronize();
};

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

/** The attention backend libtorch picks for the encoder's packed q/k/v and the decoder's separate ones (bf16 on CUDA). */
function sdpaChoices(b: number, tokens: number, dim: number, heads: number): { encoder: string; decoder: string } {
  return torch.scope(() => {
    const dtype = cuda ? 'bfloat16' : 'float32';
    const hd = dim / heads;
    const [q, k, v] = torch
      .zeros([b, tokens, 3, heads, hd], { dtype, device })
      .permute(2, 0, 3, 1, 4)
      .chunk(3, 0)
      .map((t) => t.squeeze(0));
    const n = tokens - 1;
    const sep = torch.zeros([b, n, dim], { dtype, device }).view(b, n, heads, hd).transpose(1, 2);
    return { encoder: torch.F.sdpaBackend(q, k, v, { causal: true }), decoder: torch.F.sdpaBackend(sep, sep, sep, { causal: true }) };
  });
}

async function main(): Promise<void> {
  torch.setNumThreads(threads);
  torch.manualSeed(seed);
  const refusal = cudaGraphs ? cudaGraphRefusal({ device, precision: cuda ? 'bf16' : 'fp32', cudaBuild: native.cudaBuild, phaseTimer: phaseTimerOn }) : null;
  if (refusal || (cudaGraphs && warmup < 2)) {
    process.stderr.write(`--cuda-graphs refused: ${refusal ?? 'it needs --warmup 2 or more (eager warm-up, then the capture, before the measured steps)'}\n`);
    process.exit(2);
  }
  torch.fused.setFused(fusedKinds);
  let fusedStatus: string | null = null;
  if (fusedKinds.some(torch.fused.needsKernels) && cuda) {
    const st = torch.fused.kernelStatus(true);
    if (!st.loaded) throw new Error(`--fused ${fusedKinds.join(',')}: the kernels cannot run: ${st.message}`);
    fusedStatus = st.message;
  }
  const sdpaPriority = sdpaOrder ? torch.F.sdpaPriority(sdpaOrder) : torch.F.sdpaPriority();
  const cfg = makeConfig(preset, {
    imgSize: img,
    patchSize: patch,
    decoderDepth,
    ...(embedDim ? { embedDim: Number(embedDim) } : {}),
    ...(depthOpt ? { depth: Number(depthOpt) } : {}),
    ...(headsOpt ? { numHeads: Number(headsOpt) } : {}),
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
  if (fileNoise) {
    // once, not a host-to-device copy per step
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
  const images = torch.keep(
    fileImages
      ? fileImages.to({ dtype: 'float32', device })
      : dataSeed
        ? torch.randn([batch, 3, img, img], { generator: new torch.Generator(Number(dataSeed)) }).to({ device })
        : torch.randn([batch, 3, img, img], { device }),
  );
  fileImages?.dispose();
  const lossSum = torch.keep(torch.zeros([], { device }));
  const allFinite = torch.keep(torch.ones([], { dtype: 'bool', device }));
  const precision: Precision = cuda ? 'bf16' : 'fp32'; // as `semaim pretrain --precision auto` on a GPU
  const orderPrecision: Precision = opt('order-precision', 'same') === 'fp32' ? 'fp32' : precision; // as --order-precision
  // The backend choice does not depend on the batch size: ask with 2 images (before the peak-memory count).
  const attention = { priority: sdpaPriority, ...sdpaChoices(2, model.numPatches + 1, model.config.embedDim, model.config.numHeads) };
  if (cuda) torch.cuda.resetPeakMemory();
  cudnnAutotune(device); // as the trainer
  const timer = phaseTimerOn ? new PhaseTimer(cuda) : null;
  setPhaseProbe(timer);
  const phaseRows: { gpu: PhaseTimes | null; host: PhaseTimes }[] = [];
  // --upload-input: a uint8 host batch uploaded and normalised each step, as the trainer's loader path.
  const hostBatch = uploadInput ? Uint8Array.from({ length: batch * 3 * img * img }, (_, i) => (i * 2654435761) >>> 24) : null;
  const uploader = uploadInput ? new DeviceImages({ mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }) : null;
  // --cuda-graphs: the trainer's captured step (src/train/pretrain-step.ts), eager for the warm-up steps
  // but the last, which captures the graph.
  const N = model.numPatches;
  const graphStep = cudaGraphs
    ? new StaticPretrainStep(model, { precision, orderPrecision, device, warmup: warmup - 1, clearGrads: () => optimizer.zeroGrad(), capture: true })
    : null;

  const rows: { cpu: number; total: number; order: number; forward: number; backward: number; optimizer: number }[] = [];
  const losses: number[] = [];
  const profileFrom = Math.max(warmup + steps, logLosses); // the profiled steps come after every other
  let profiling = false;
  let kernelProfileError: string | null = null;
  for (let s = 0; s < profileFrom + kernelProfileSteps; s++) {
    if (yieldEachStep) await yieldToEventLoop();
    if (s === profileFrom) {
      sync();
      // a profiler that cannot start (no CUPTI, say) costs the profile, not the measured steps before it
      try {
        startKernelProfile(cuda);
        profiling = true;
      } catch (e) {
        kernelProfileError = (e as Error).message;
        break;
      }
    }
    counting = countOps && s === warmup; // one measured step
    sync();
    const c0 = cpuNow();
    const t0 = now();
    let t1 = 0;
    let t2 = 0;
    let t3 = 0;
    timer?.beginStep();
    if (uploader) {
      markPhase('input');
      uploader.upload(hostBatch!, [batch, 3, img, img], device).dispose();
    }
    if (graphStep) {
      torch.scope(() => {
        optimizer.setLr(lr);
        const lossOut = graphStep.run(images, fileNoise ? fileNoise.select(0, s % fileNoise.shape[0]) : torch.rand([batch, N], { generator: orderGen }));
        lossSum.add_(lossOut);
        allFinite.copy_(allFinite.logicalAnd(lossOut.isfinite()));
        // The optimiser outside the graph; the gradients are not cleared (the next replay rewrites them).
        clipGradNorm(model.namedParameters(), 3);
        optimizer.step();
      });
    } else
      torch.scope(() => {
        optimizer.setLr(lr);
        const noise = fileNoise ? fileNoise.select(0, s % fileNoise.shape[0]) : undefined;
        const { order } = withPrecision(orderPrecision, device, () => model.makeOrder(images, { generator: orderGen, noise }));
        if (phases) {
          sync();
          t1 = now();
        }
        const out = withPrecision(precision, device, () => model.forward(images, order));
        const loss = out.loss.div(1);
        if (phases) {
          sync();
          t2 = now();
        }
        markPhase('backward');
        loss.backward();
        lossSum.add_(out.loss.detach().float());
        allFinite.copy_(allFinite.logicalAnd(out.loss.isfinite()));
        if (phases) {
          sync();
          t3 = now();
        }
      });
    if (!graphStep) {
      markPhase('optimizer');
      torch.scope(() => {
        optimizerStep({ optimizer, scaler: null, params: model.namedParameters(), clipGrad: 3 });
      }); // the trainer's update
    }
    const stepPhases = timer ? timer.endStep() : null;
    sync();
    const t4 = now();
    const c4 = cpuNow();
    counting = false;
    if (s >= warmup && s < warmup + steps) {
      rows.push({ cpu: c4 - c0, total: t4 - t0, order: t1 - t0, forward: t2 - t1, backward: t3 - t2, optimizer: t4 - t3 });
      if (stepPhases) phaseRows.push(stepPhases);
    }
    losses.push(lossSum.item());
    lossSum.zero_();
    if (verbose) {
      const m = torch.memoryStats();
      const r = rows[rows.length - 1];
      process.stderr.write(
        `step ${s}: ${(t4 - t0).toFixed(0)} ms (cpu ${(c4 - c0).toFixed(0)})` +
          (r && s >= warmup ? ` (order ${r.order.toFixed(0)}, fwd ${r.forward.toFixed(0)}, bwd ${r.backward.toFixed(0)}, opt ${r.optimizer.toFixed(0)})` : '') +
          `, live tensors ${m.liveTensors} (${(m.liveBytes / 2 ** 20).toFixed(0)} MiB), RSS ${(procStatus('VmRSS') / 2 ** 20).toFixed(0)} MiB, HWM ${(procStatus('VmHWM') / 2 ** 20).toFixed(0)} MiB\n`,
      );
    }
  }
  let kernelProfile: KernelProfile | null = null;
  if (profiling) {
    sync();
    try {
      kernelProfile = stopKernelProfile(kernelProfileSteps, cuda);
    } catch (e) {
      kernelProfileError = (e as Error).message;
    }
  }
  if (kernelProfile) {
    const title = `Kernel profile: ${preset} ${img}² batch ${batch}${fusedKinds.length ? `, --fused ${fusedKinds.join(',')}` : ''}${cudaGraphs ? ', CUDA graphs' : ''}`;
    const text = profileMarkdown(kernelProfile, title);
    if (kernelProfileOut) fs.writeFileSync(kernelProfileOut, text);
    process.stderr.write(text);
  }
  const ms = median(rows.map((r) => r.total));
  const result: Record<string, unknown> = {
    side: 'ts',
    yieldEachStep,
    preset,
    embedDim: cfg.embedDim,
    depth: cfg.depth,
    numHeads: cfg.numHeads,
    order: orderType,
    blur,
    img,
    patch,
    decoderDepth,
    batch,
    warmup,
    steps,
    threads: torch.getNumThreads(),
    device,
    params: nParams,
    msPerStep: ms,
    minMs: Math.min(...rows.map((r) => r.total)),
    imgPerSec: (batch * 1000) / ms,
    stepsMs: rows.map((r) => Number(r.total.toFixed(1))),
    cpuMsPerStep: median(rows.map((r) => r.cpu)),
    minCpuMs: Math.min(...rows.map((r) => r.cpu)),
    ...(phaseRows.length
      ? {
          phaseTimer: {
            gpuMs: cuda ? medianPhases(phaseRows.map((r) => r.gpu ?? {})) : null,
            hostMs: medianPhases(phaseRows.map((r) => r.host)),
          },
        }
      : {}),
    fused: fusedKinds,
    ...(fusedStatus ? { fusedKernels: fusedStatus } : {}),
    attention,
    cudaGraphs,
    phasesMs:
      phases && !graphStep
        ? {
            order: median(rows.map((r) => r.order)),
            forward: median(rows.map((r) => r.forward)),
            backward: median(rows.map((r) => r.backward)),
            optimizer: median(rows.map((r) => r.optimizer)),
          }
        : null,
    firstLoss: losses[0],
    lastLoss: losses[warmup + steps - 1],
    ...(logLosses ? { losses: losses.slice(0, logLosses) } : {}),
    allFinite: allFinite.item() as unknown as boolean,
    ...(kernelProfileError ? { kernelProfileError } : {}),
    ...(kernelProfile
      ? {
          kernelProfile: {
            steps: kernelProfile.steps,
            gpu: kernelProfile.gpu,
            msPerStep: kernelProfile.msPerStep,
            families: Object.fromEntries(kernelProfile.families.map((f) => [f.family, Number(f.msPerStep.toFixed(3))])),
          },
        }
      : {}),
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
  setPhaseProbe(null);
  graphStep?.dispose();
  uploader?.dispose();
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
