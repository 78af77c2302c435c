// The pre-training loop: the authors' recipe (AdamW, warm-up + cosine per iteration, gradient
// clipping, optional EMA and mixed precision), checkpoints that resume exactly, metrics as JSON lines,
// and a progress line. Read it top to bottom like nanoGPT's train.py.
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { AdamW, GradScaler, paramGroupsWeightDecay, warmupCosine, fractionalEpoch, scaleLr } from '../optim';
import { SemAIM, SemAIMConfig, VisionTransformer } from '../semaim';
import { loadTensors, disposeAll } from '../io';
import { OptionValues } from '../util/options';
import { CheckpointManager } from './checkpoint';
import { EMA } from './ema';
import { MetricsLog } from './metrics';
import { Progress } from './progress';
import { StopReason, afterStep, catchStopSignals } from './step-control';
import { optimizerStep } from './optimizer-step';
import { withPrecision } from './precision';
import { cudnnAutotune } from './cudnn-autotune';
import { globalRngStates, restoreGlobalRngStates } from './rng-state';
import { DeviceImages, Normalization } from './device-images';
import { modelConfigFrom, validatePretrain } from './pretrain-config';

export interface TrainBatch {
  /** NCHW: float32 already normalised, or uint8 that the trainer normalises on the device with `TrainData.normalize`. */
  images: Float32Array | Uint8Array;
  shape: number[];
  labels?: Int32Array;
}

/** Seeded data: the same seed, epoch and batch index always give the same batch. */
export interface TrainData {
  batchesPerEpoch: number;
  /** Mean/std for uint8 batches (absent when batches are normalised float32). */
  normalize?: Normalization | null;
  /** Batches of `epoch` from batch index `start` on. */
  epoch(epoch: number, start: number): AsyncIterable<TrainBatch>;
  close(): Promise<void> | void;
}

export interface PretrainResult {
  outDir: string;
  steps: number;
  firstLoss: number;
  lastLoss: number;
  stoppedBy: StopReason;
  checkpoint: string | null;
}

export interface PretrainHooks {
  /** Called after every optimiser step with the step number (tests use it to interrupt runs). */
  onStep?: (step: number) => void;
  /** Set to true to stop at the next step boundary (a checkpoint is written first). */
  stop?: { requested: boolean };
  log?: (line: string) => void;
}

/** Loads a frozen teacher encoder (feature targets / teacher similarity source). */
export function loadTeacher(cfg: SemAIMConfig, device: torch.Device): VisionTransformer | null {
  if (cfg.target.type !== 'features') return null;
  const teacher = new VisionTransformer(cfg.target.teacherConfig);
  const { tensors } = loadTensors(cfg.target.teacher);
  teacher.loadStateDict(tensors, { strict: true });
  disposeAll(tensors);
  for (const p of teacher.parameters()) p.requiresGrad = false;
  return teacher.to({ device }).eval();
}

export async function pretrain(o: OptionValues, data: TrainData, hooks: PretrainHooks = {}): Promise<PretrainResult> {
  const log = hooks.log ?? ((l: string) => process.stderr.write(l + '\n'));
  validatePretrain(o);
  const cfg = modelConfigFrom(o);
  const device = o.device as torch.Device;
  const outDir = o.outDir as string;
  mkdirSync(outDir, { recursive: true });
  torch.setNumThreads((o.threads as number | undefined) ?? availableParallelism());
  torch.manualSeed(o.seed as number);

  // ---- model, teacher, EMA
  const model = new SemAIM(cfg).initWeights();
  model.to({ device });
  model.teacher = loadTeacher(cfg, device);
  const ema = o.ema ? new EMA(new VisionTransformer(cfg).to({ device }), model, o.emaDecay as number) : null;
  writeFileSync(join(outDir, 'config.json'), JSON.stringify({ options: o, model: cfg }, null, 2));

  // ---- optimiser and schedule (docs/METHOD.md §6.1)
  const accum = o.accumIter as number;
  const effectiveBatch = (o.batchSize as number) * accum;
  const lr = (o.lr as number | undefined) ?? scaleLr(o.blr as number, effectiveBatch);
  const groups = paramGroupsWeightDecay(model.namedParameters(), { weightDecay: o.weightDecay as number, noWeightDecay: ['cls_token', 'pos_embed'] });
  const optimizer = new AdamW(groups, { lr, betas: [o.beta1 as number, o.beta2 as number], weightDecay: o.weightDecay as number });
  const epochs = o.epochs as number;
  const schedule = warmupCosine({ lr, minLr: o.minLr as number, warmupEpochs: o.warmupEpochs as number, epochs: Math.max(epochs, (o.warmupEpochs as number) + 1e-9) });
  const scaler = o.precision === 'fp16' ? new GradScaler() : null;
  const orderGen = new torch.Generator((o.seed as number) + 7919);

  // ---- resume
  const ckpt = new CheckpointManager(outDir, o.keepLast as number, (m) => log(m));
  let step = 0;
  let startEpoch = 0;
  let startBatch = 0;
  let bestLoss = Infinity;
  const latest = o.resume ? ckpt.loadLatest() : null;
  if (latest) {
    model.loadStateDict(latest.model);
    const s = latest.state as { step: number; epoch: number; batch: number; bestLoss: number; optimizer: unknown; scaler?: unknown };
    const optTensors = new Map([...latest.extra].filter(([k]) => !k.startsWith('ema.') && !k.startsWith('rng.')).map(([k, v]) => [k.slice(4), v]));
    optimizer.loadStateDict({ tensors: optTensors, meta: s.optimizer as never });
    ema?.loadStateTensors(latest.extra);
    if (scaler && s.scaler) scaler.loadStateDict(s.scaler as never);
    restoreGlobalRngStates(latest.extra, device);
    orderGen.setState(latest.extra.get('rng.order')!);
    ({ step, epoch: startEpoch, batch: startBatch, bestLoss } = s);
    disposeAll(latest.model);
    disposeAll(latest.extra);
    log(`resumed from ${latest.dir} (step ${step}, epoch ${startEpoch}, batch ${startBatch})`);
  }

  const metrics = new MetricsLog(join(outDir, 'metrics.jsonl'));
  const perEpoch = Math.floor(data.batchesPerEpoch / accum);
  if (perEpoch < 1) throw new Error(`the dataset gives ${data.batchesPerEpoch} batches per epoch, fewer than --accum-iter ${accum}`);
  const totalSteps = Math.min(Math.ceil(epochs * perEpoch), (o.maxSteps as number | undefined) ?? Infinity);
  const progress = new Progress('pretrain', totalSteps);

  // Device-side accumulators: read (and synchronised) only every logEvery steps.
  let lossSum = torch.zeros([], { device });
  let allFinite = torch.ones([], { dtype: 'bool', device });
  torch.keep([lossSum, allFinite]);
  let lossCount = 0;
  let firstLoss = NaN;
  let lastLoss = NaN;
  let lastGradNorm = NaN;
  let windowStart = Date.now();
  let windowImages = 0;
  let stoppedBy: PretrainResult['stoppedBy'] = 'finished';
  let lastCheckpoint: string | null = latest?.dir ?? null;

  const upload = new DeviceImages(data.normalize ?? null);
  const stop = hooks.stop ?? { requested: false };
  const releaseSignals = catchStopSignals(stop);
  const restoreCudnn = cudnnAutotune(device);
  const orderPrecision = o.orderPrecision === 'fp32' ? 'fp32' : (o.precision as string);

  const saveCheckpoint = (epoch: number, batch: number) => {
    // Never checkpoint weights after a non-finite loss.
    if (!allFinite.item()) return false;
    const optState = optimizer.stateDict();
    const extra = new Map<string, Tensor>([...[...optState.tensors].map(([k, v]) => [`opt.${k}`, v] as [string, Tensor])]);
    if (ema) for (const [k, v] of ema.stateTensors()) extra.set(k, v);
    const rngStates = globalRngStates(device);
    const rngOrder = orderGen.getState();
    for (const [k, v] of rngStates) extra.set(k, v);
    extra.set('rng.order', rngOrder);
    const best = Number.isFinite(lastLoss) && lastLoss < bestLoss;
    if (best) bestLoss = lastLoss;
    lastCheckpoint = ckpt.save(step, {
      model: model.stateDict(),
      extra,
      state: { step, epoch, batch, bestLoss, optimizer: optState.meta, scaler: scaler?.stateDict(), config: cfg, options: o },
      modelMetadata: { config: JSON.stringify(cfg), format: 'semaim.pretrain/1' },
    }, { best });
    disposeAll(optState.tensors);
    disposeAll(rngStates);
    rngOrder.dispose();
    return true;
  };

  const flushMetrics = (epoch: number) => {
    const finite = allFinite.item() as unknown as boolean;
    const mean = lossCount ? lossSum.item() / lossCount : NaN;
    const seconds = (Date.now() - windowStart) / 1000;
    const rate = windowImages / Math.max(seconds, 1e-9);
    if (Number.isNaN(firstLoss)) firstLoss = mean;
    lastLoss = mean;
    const rec = { step, epoch: Number(epoch.toFixed(4)), loss: mean, lr: optimizer.paramGroups[0].lr, gradNorm: lastGradNorm, imgPerSec: rate };
    metrics.write(rec);
    progress.update(step, { epoch: epoch.toFixed(2), loss: mean, lr: rec.lr, gnorm: lastGradNorm, 'img/s': rate.toFixed(1) }, true);
    lossSum.zero_();
    lossCount = 0;
    windowStart = Date.now();
    windowImages = 0;
    return finite && Number.isFinite(mean);
  };

  try {
    outer: for (let epoch = startEpoch; step < totalSteps; epoch++) {
      let micro = 0;
      let batchIndex = epoch === startEpoch ? startBatch : 0;
      for await (const batch of data.epoch(epoch, batchIndex)) {
        const images = upload.upload(batch.images, batch.shape, device);
        torch.scope(() => {
          if (micro === 0) optimizer.setLr(schedule(fractionalEpoch(epoch, batchIndex / accum, perEpoch)));
          const { order } = withPrecision(orderPrecision, device, () => model.makeOrder(images, { ema: ema?.shadow, generator: orderGen }));
          const out = withPrecision(o.precision as string, device, () => model.forward(images, order));
          const loss = out.loss.div(accum);
          (scaler ? scaler.scale(loss) : loss).backward();
          lossSum.add_(out.loss.detach().float());
          allFinite.copy_(allFinite.logicalAnd(out.loss.isfinite()));
        });
        images.dispose();
        lossCount++;
        windowImages += batch.shape[0];
        micro++;
        batchIndex++;
        if (micro < accum) continue;
        micro = 0;

        // Optimiser step: clip, update, EMA.
        torch.scope(() => {
          const norm = optimizerStep({ optimizer, scaler, params: model.namedParameters(), clipGrad: o.clipGrad as number, ema, measureNorm: true })!;
          if ((step + 1) % (o.logEvery as number) === 0 || step + 1 === totalSteps) lastGradNorm = norm.item();
        });
        step++;
        hooks.onStep?.(step);
        // Let the event loop turn once per step: Node runs the finalizers of collected handles there,
        // and a loader that always has the next batch ready would otherwise never yield.
        await new Promise((resolve) => setImmediate(resolve));

        const next = await afterStep(
          { step, epoch, batchIndex, perEpoch, accum, totalSteps, plannedSteps: Math.ceil(epochs * perEpoch), logEvery: o.logEvery as number, checkpointEvery: o.checkpointEvery as number },
          { flushMetrics, saveCheckpoint, stopRequested: () => stop.requested, lr: () => optimizer.paramGroups[0].lr, lastCheckpoint: () => lastCheckpoint, log },
        );
        if (next === 'epochEnd') break;
        if (next !== null) {
          stoppedBy = next;
          break outer;
        }
      }
    }
    if (stoppedBy !== 'nonfinite') {
      if (lossCount) flushMetrics(step / perEpoch);
      const epochNow = Math.floor(step / perEpoch);
      saveCheckpoint(epochNow, (step % perEpoch) * accum);
    }
  } finally {
    releaseSignals();
    restoreCudnn();
    progress.done();
    await data.close();
    lossSum.dispose();
    allFinite.dispose();
    upload.dispose();
    optimizer.dispose();
    scaler?.dispose();
    ema?.shadow.dispose();
    model.teacher?.dispose();
    model.dispose();
  }
  return { outDir, steps: step, firstLoss, lastLoss, stoppedBy, checkpoint: lastCheckpoint };
}
