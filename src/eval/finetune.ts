// Full fine-tuning (MAE's main_finetune.py with the settings of docs/METHOD.md §6.2): the pre-trained encoder with
// global average pooling → fc_norm → head, AdamW with layer-wise lr decay, warm-up + cosine per
// iteration down to min lr, drop-path, mixup/cutmix with label smoothing (soft-target cross
// entropy), optional EMA and mixed precision; checkpoints that resume exactly (same semantics as
// pre-training: atomic, verified, the global and mixing RNG states saved with them).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { AdamW, GradScaler, fractionalEpoch, paramGroupsLayerDecay, scaleLr, warmupCosine } from '../optim';
import { disposeAll } from '../io';
import { CheckpointManager } from '../train/checkpoint';
import { EMA } from '../train/ema';
import { MetricsLog } from '../train/metrics';
import { Progress } from '../train/progress';
import { OptionValues } from '../util/options';
import { Accuracy, AccuracyTally } from './accuracy';
import { ClassifierConfig, ClassifierPool, ViTClassifier } from './classifier';
import { Augment, LabelledData, batchesPerEpoch } from './data';
import { EncoderSource, loadEncoderTensors, resolveEncoder } from './encoder';
import { Mixup, softTargetCrossEntropy } from './mix';
import { validateEval } from './options';
import { StopReason, afterStep, catchStopSignals } from '../train/step-control';
import { optimizerStep } from '../train/optimizer-step';
import { withPrecision } from '../train/precision';
import { cudnnAutotune } from '../train/cudnn-autotune';
import { globalRngStates, restoreGlobalRngStates } from '../train/rng-state';

export interface FinetuneData {
  train: LabelledData;
  test: LabelledData;
}

export interface FinetuneHooks {
  /** Called after every optimiser step (tests use it to interrupt runs). */
  onStep?: (step: number) => void;
  /** Set to true to stop at the next step boundary (a checkpoint is written first). */
  stop?: { requested: boolean };
  log?: (line: string) => void;
}

export interface FinetuneResult {
  outDir: string;
  steps: number;
  stoppedBy: StopReason;
  /** Test accuracy of the final model (null when stopped before the end). */
  accuracy: Accuracy | null;
  /** Test accuracy of the EMA model (with --ema). */
  emaAccuracy: Accuracy | null;
  bestTop1: number;
  lastLoss: number;
  checkpoint: string | null;
  encoder: EncoderSource;
  config: ClassifierConfig;
}

/** Test accuracy of a classifier over a dataset (eval mode, no gradients, no augmentation). */
export async function evaluateClassifier(
  model: ViTClassifier, data: LabelledData, o: { batchSize: number; precision?: string; label?: string | null },
): Promise<Accuracy> {
  const wasTraining = model.training;
  model.eval();
  const device = model.cls_token.device;
  const tally = new AccuracyTally(model.cfg.numClasses);
  const progress = o.label ? new Progress(o.label, data.size) : null;
  try {
    for await (const b of data.batches({ batchSize: o.batchSize, shuffle: false, epoch: 0, augment: 'none' })) {
      torch.noGrad(() => torch.scope(() => {
        const images = torch.tensor(b.images, { shape: b.shape, device });
        const logits = withPrecision(o.precision ?? 'fp32', device, () => model.forward(images));
        tally.add(logits, b.labels);
      }));
      progress?.update(tally.result().n);
    }
  } finally {
    progress?.done();
    model.train(wasTraining);
  }
  return tally.result();
}

/** The classifier config of a fine-tuning run. */
export function classifierConfigFrom(o: OptionValues, source: EncoderSource, numClasses: number): ClassifierConfig {
  return { ...source.config, dropPath: o.dropPath as number, numClasses, pool: o.pool as ClassifierPool };
}

/**
 * AdamW over MAE's layer-wise decay groups: cls_token and patch_embed are layer 0, blocks.i layer
 * i + 1, fc_norm/norm/head layer depth + 1; optimizer.setLr(lr) gives each group
 * lr × layerDecay^(depth + 1 − layer). No weight decay on biases, norms, 1-D parameters, cls_token.
 */
export function makeFinetuneOptimizer(model: ViTClassifier, o: OptionValues, lr: number): AdamW {
  const groups = paramGroupsLayerDecay(model.namedParameters(), {
    numLayers: model.cfg.depth, layerDecay: o.layerDecay as number, weightDecay: o.weightDecay as number, noWeightDecay: ['cls_token', 'pos_embed'],
  });
  return new AdamW(groups, { lr, betas: [o.beta1 as number, o.beta2 as number], weightDecay: o.weightDecay as number });
}

/**
 * Fine-tunes the encoder named by o.checkpoint (FINETUNE_OPTIONS values) on data.train, evaluating on
 * data.test. `source` skips resolving (and hashing) the checkpoint again. The caller closes the data.
 */
export async function finetune(o: OptionValues, data: FinetuneData, hooks: FinetuneHooks = {}, source?: EncoderSource): Promise<FinetuneResult> {
  const log = hooks.log ?? ((l: string) => process.stderr.write(l + '\n'));
  validateEval(o);
  source ??= resolveEncoder(String(o.checkpoint));
  const numClasses = data.train.numClasses;
  if (data.test.numClasses !== numClasses) throw new Error(`train data has ${numClasses} classes, test data ${data.test.numClasses}`);
  const cfg = classifierConfigFrom(o, source, numClasses);
  const want = [cfg.inChans ?? 3, cfg.imgSize, cfg.imgSize];
  for (const [name, d] of [['train', data.train], ['test', data.test]] as const) {
    if (d.imageShape && d.imageShape.some((v, i) => v !== want[i])) throw new Error(`${name} images are [${d.imageShape}], the encoder expects [${want}]`);
  }
  const device = o.device as torch.Device;
  const outDir = o.outDir as string;
  const seed = o.seed as number;
  const accum = o.accumIter as number;
  const batchSize = o.batchSize as number;
  const perEpoch = Math.floor(batchesPerEpoch(data.train.size, batchSize, true) / accum);
  if (perEpoch < 1) throw new Error(`the training set (${data.train.size} images) gives no full step of ${batchSize} × ${accum} images`);
  mkdirSync(outDir, { recursive: true });
  torch.setNumThreads((o.threads as number | undefined) ?? require('node:os').availableParallelism());
  torch.manualSeed(seed);

  // ---- model (MAE: init, load the encoder, head trunc_normal 2e-5), EMA
  const model = new ViTClassifier(cfg).initWeights();
  if (o.init === 'pretrained') {
    const tensors = loadEncoderTensors(source);
    try {
      model.loadEncoder(tensors);
    } finally {
      disposeAll(tensors);
    }
  }
  model.to({ device });
  const ema = o.ema ? new EMA(new ViTClassifier(cfg).to({ device }), model, o.emaDecay as number) : null;
  writeFileSync(join(outDir, 'config.json'), JSON.stringify({ options: o, model: cfg, encoder: source }, null, 2));

  // ---- optimiser, schedule, mixing
  const effectiveBatch = batchSize * accum;
  const lr = (o.lr as number | undefined) ?? scaleLr(o.blr as number, effectiveBatch);
  const optimizer = makeFinetuneOptimizer(model, o, lr);
  const epochs = o.epochs as number;
  const schedule = warmupCosine({ lr, minLr: o.minLr as number, warmupEpochs: o.warmupEpochs as number, epochs });
  const scaler = o.precision === 'fp16' ? new GradScaler() : null;
  const mixGen = new torch.Generator(seed + 104729);
  const mixup = new Mixup({
    numClasses, mixupAlpha: o.mixup as number, cutmixAlpha: o.cutmix as number, prob: o.mixupProb as number,
    switchProb: o.mixupSwitchProb as number, labelSmoothing: o.smoothing as number,
  }, mixGen);

  // ---- resume
  const ckpt = new CheckpointManager(outDir, o.keepLast as number, (m) => log(m));
  let step = 0;
  let startEpoch = 0;
  let startBatch = 0;
  let bestTop1 = -1;
  const latest = o.resume ? ckpt.loadLatest() : null;
  if (latest) {
    try {
      const s = latest.state as { step: number; epoch: number; batch: number; bestTop1: number; optimizer: unknown; scaler?: unknown; config: ClassifierConfig };
      if (JSON.stringify(s.config) !== JSON.stringify(cfg)) {
        throw new Error(`the checkpoint in ${latest.dir} was made for another model (${JSON.stringify(s.config)}); use a new --out-dir or --no-resume`);
      }
      model.loadStateDict(latest.model);
      const optTensors = new Map([...latest.extra].filter(([k]) => k.startsWith('opt.')).map(([k, v]) => [k.slice(4), v]));
      optimizer.loadStateDict({ tensors: optTensors, meta: s.optimizer as never });
      ema?.loadStateTensors(latest.extra);
      if (scaler && s.scaler) scaler.loadStateDict(s.scaler as never);
      restoreGlobalRngStates(latest.extra, device);
      mixGen.setState(latest.extra.get('rng.mix')!);
      ({ step, epoch: startEpoch, batch: startBatch, bestTop1 } = s);
      log(`resumed from ${latest.dir} (step ${step}, epoch ${startEpoch}, batch ${startBatch})`);
    } finally {
      disposeAll(latest.model);
      disposeAll(latest.extra);
    }
  }

  const metrics = new MetricsLog(join(outDir, 'metrics.jsonl'));
  const totalSteps = Math.min(Math.ceil(epochs * perEpoch), (o.maxSteps as number | undefined) ?? Infinity);
  const progress = new Progress('finetune', totalSteps);
  const lossSum = torch.keep(torch.zeros([], { device }));
  const allFinite = torch.keep(torch.ones([], { dtype: 'bool', device }));
  let lossCount = 0;
  let lastLoss = NaN;
  let windowStart = Date.now();
  let windowImages = 0;
  let stoppedBy: FinetuneResult['stoppedBy'] = 'finished';
  let lastCheckpoint: string | null = latest?.dir ?? null;
  let lastTop1: number | null = null;

  const stop = hooks.stop ?? { requested: false };
  const releaseSignals = catchStopSignals(stop);
  const restoreCudnn = cudnnAutotune(device);

  const saveCheckpoint = (epoch: number, batch: number) => {
    if (!allFinite.item()) return;
    const optState = optimizer.stateDict();
    const extra = new Map<string, Tensor>([...optState.tensors].map(([k, v]) => [`opt.${k}`, v] as [string, Tensor]));
    if (ema) for (const [k, v] of ema.stateTensors()) extra.set(k, v);
    const rngStates = globalRngStates(device);
    const rngMix = mixGen.getState();
    for (const [k, v] of rngStates) extra.set(k, v);
    extra.set('rng.mix', rngMix);
    const best = lastTop1 !== null && lastTop1 > bestTop1;
    if (best) bestTop1 = lastTop1!;
    lastCheckpoint = ckpt.save(step, {
      model: model.stateDict(),
      extra,
      state: { step, epoch, batch, bestTop1, optimizer: optState.meta, scaler: scaler?.stateDict(), config: cfg, options: o, encoder: source },
      modelMetadata: { config: JSON.stringify(cfg), format: 'semaim.finetune/1' },
    }, { best });
    disposeAll(optState.tensors);
    disposeAll(rngStates);
    rngMix.dispose();
  };

  const flushMetrics = (epoch: number) => {
    const finite = allFinite.item() as unknown as boolean;
    const mean = lossCount ? lossSum.item() / lossCount : NaN;
    const rate = windowImages / Math.max((Date.now() - windowStart) / 1000, 1e-9);
    lastLoss = mean;
    const rec = { step, epoch: Number(epoch.toFixed(4)), loss: mean, lr: optimizer.paramGroups[optimizer.paramGroups.length - 1].lr, imgPerSec: rate };
    metrics.write(rec);
    progress.update(step, { epoch: epoch.toFixed(2), loss: mean, lr: rec.lr, 'img/s': rate.toFixed(1) }, true);
    lossSum.zero_();
    lossCount = 0;
    windowStart = Date.now();
    windowImages = 0;
    return finite && Number.isFinite(mean);
  };

  const evaluate = async (epoch: number) => {
    const acc = await evaluateClassifier(model, data.test, { batchSize: o.evalBatchSize as number, precision: o.precision as string });
    const emaAcc = ema ? await evaluateClassifier(ema.shadow, data.test, { batchSize: o.evalBatchSize as number, precision: o.precision as string }) : null;
    lastTop1 = acc.top1;
    metrics.write({ step, epoch, testTop1: acc.top1, testTop5: acc.top5, ...(emaAcc ? { emaTop1: emaAcc.top1, emaTop5: emaAcc.top5 } : {}) });
    log(`\nepoch ${epoch}: test top-1 ${(100 * acc.top1).toFixed(2)}%, top-5 ${(100 * acc.top5).toFixed(2)}%` +
      (emaAcc ? ` (EMA top-1 ${(100 * emaAcc.top1).toFixed(2)}%)` : ''));
    return { acc, emaAcc };
  };

  let final: { acc: Accuracy; emaAcc: Accuracy | null } | null = null;
  model.train();
  try {
    outer: for (let epoch = startEpoch; step < totalSteps; epoch++) {
      let micro = 0;
      let batchIndex = epoch === startEpoch ? startBatch : 0;
      const stream = data.train.batches({
        batchSize, shuffle: true, epoch, augment: o.augment as Augment, seed, dropLast: true, start: batchIndex,
      });
      for await (const batch of stream) {
        const images = torch.tensor(batch.images, { shape: batch.shape, device });
        const labels = torch.tensor(batch.labels, { dtype: 'int64', device });
        torch.scope(() => {
          if (micro === 0) optimizer.setLr(schedule(fractionalEpoch(epoch, batchIndex / accum, perEpoch)));
          const mixed = mixup.apply(images, labels);
          const logits = withPrecision(o.precision as string, device, () => model.forward(mixed.images));
          const loss = softTargetCrossEntropy(logits, mixed.targets);
          const scaled = loss.div(accum);
          (scaler ? scaler.scale(scaled) : scaled).backward();
          lossSum.add_(loss.detach());
          allFinite.copy_(allFinite.logicalAnd(loss.isfinite()));
        });
        images.dispose();
        labels.dispose();
        lossCount++;
        windowImages += batch.shape[0];
        micro++;
        batchIndex++;
        if (micro < accum) continue;
        micro = 0;

        torch.scope(() => { optimizerStep({ optimizer, scaler, params: model.namedParameters(), clipGrad: o.clipGrad as number, ema }); });
        step++;
        hooks.onStep?.(step);

        const evalEvery = o.evalEvery as number;
        const next = await afterStep(
          { step, epoch, batchIndex, perEpoch, accum, totalSteps, plannedSteps: Math.ceil(epochs * perEpoch), logEvery: o.logEvery as number, checkpointEvery: o.checkpointEvery as number },
          {
            flushMetrics, saveCheckpoint, stopRequested: () => stop.requested, lastCheckpoint: () => lastCheckpoint, log,
            lr: () => optimizer.paramGroups[optimizer.paramGroups.length - 1].lr,
            onEpochEnd: async (done) => { if (evalEvery > 0 && done % evalEvery === 0) await evaluate(done); },
          },
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
      if (stoppedBy !== 'signal') final = await evaluate(Number((step / perEpoch).toFixed(4)));
      saveCheckpoint(Math.floor(step / perEpoch), (step % perEpoch) * accum);
    }
  } finally {
    releaseSignals();
    restoreCudnn();
    progress.done();
    lossSum.dispose();
    allFinite.dispose();
    optimizer.dispose();
    scaler?.dispose();
    ema?.shadow.dispose();
    model.dispose();
  }
  return {
    outDir, steps: step, stoppedBy, accuracy: final?.acc ?? null, emaAccuracy: final?.emaAcc ?? null,
    bestTop1: Math.max(bestTop1, final?.acc.top1 ?? -1), lastLoss, checkpoint: lastCheckpoint, encoder: source, config: cfg,
  };
}
