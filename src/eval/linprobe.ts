// Linear probing (MAE's main_linprobe.py): a frozen encoder's [CLS] (or mean) features →
// BatchNorm1d without affine → Linear, trained with SGD momentum 0.9 (or LARS), lr = blr × batch/256,
// warm-up + cosine per iteration, no weight decay. Two paths: on cached features (extracted once,
// the fast path) or online (the encoder runs on every augmented batch).
import * as torch from '../torch';
import { F, Tensor } from '../torch';
import { LARS, Optimizer, SGD, BaseHyper, fractionalEpoch, scaleLr, warmupCosine } from '../optim';
import { VisionTransformer } from '../semaim';
import { Progress } from '../run/progress';
import { Accuracy, AccuracyTally } from './accuracy';
import { LinearProbe } from './classifier';
import { LabelledData, batchesPerEpoch } from '../data';
import { FeaturePooling, FeatureSet, encodeBatch } from './features';
import type { Precision } from '../run/precision';

export interface LinprobeOptions {
  epochs: number;
  batchSize: number;
  /** Base lr: lr = blr × batchSize / 256 (MAE: 0.1). */
  blr: number;
  /** Absolute lr (overrides blr). */
  lr?: number;
  minLr?: number;
  warmupEpochs?: number;
  weightDecay?: number;
  momentum?: number;
  optimizer?: 'sgd' | 'lars';
  seed?: number;
  /** Evaluate on the test set every N epochs (0: only at the end). */
  evalEvery?: number;
  /** Progress bar label; null for none. */
  label?: string | null;
}

export interface LinprobeEpoch {
  epoch: number;
  loss: number;
  lr: number;
  top1?: number;
}

export interface LinprobeResult {
  accuracy: Accuracy;
  /** The peak lr used. */
  lr: number;
  history: LinprobeEpoch[];
  /** The trained head (caller disposes). */
  probe: LinearProbe;
}

/** One training batch: features [B, D] and int64 labels [B], on the probe's device. */
interface ProbeBatch {
  features: Tensor;
  labels: Tensor;
}

function validate(o: LinprobeOptions): void {
  if (!(Number.isInteger(o.batchSize) && o.batchSize > 0)) throw new RangeError(`linprobe: batchSize must be a positive integer, got ${o.batchSize}`);
  if (!(o.epochs > 0)) throw new RangeError(`linprobe: epochs must be > 0, got ${o.epochs}`);
  if (!((o.warmupEpochs ?? 0) < o.epochs)) throw new RangeError(`linprobe: warmupEpochs (${o.warmupEpochs}) must be below epochs (${o.epochs})`);
}

export function makeProbeOptimizer(probe: LinearProbe, o: LinprobeOptions, lr: number): Optimizer<BaseHyper> {
  const params = probe.namedParameters();
  const wd = o.weightDecay ?? 0;
  const momentum = o.momentum ?? 0.9;
  return (o.optimizer ?? 'sgd') === 'lars' ? new LARS(params, { lr, weightDecay: wd, momentum }) : new SGD(params, { lr, weightDecay: wd, momentum });
}

/** Logits of the probe (eval mode) for every feature row, tallied against labels. */
export function evaluateProbe(probe: LinearProbe, test: FeatureSet, numClasses: number, chunk = 1024): Accuracy {
  const wasTraining = probe.training;
  probe.eval();
  const tally = new AccuracyTally(numClasses);
  const n = test.features.shape[0];
  try {
    for (let s = 0; s < n; s += chunk) {
      const len = Math.min(chunk, n - s);
      torch.noGrad(() => torch.scope(() => tally.add(probe.forward(test.features.narrow(0, s, len)), test.labels.subarray(s, s + len))));
    }
  } finally {
    probe.train(wasTraining);
  }
  return tally.result();
}

/**
 * The training loop shared by both paths. `batches(epoch)` yields this epoch's batches (the caller
 * owns nothing it yields: tensors are disposed after each step).
 */
async function trainProbe(
  probe: LinearProbe,
  o: LinprobeOptions,
  perEpoch: number,
  batches: (epoch: number) => AsyncIterable<ProbeBatch>,
  evaluate: () => Accuracy,
): Promise<LinprobeResult> {
  const lr = o.lr ?? scaleLr(o.blr, o.batchSize);
  const schedule = warmupCosine({ lr, minLr: o.minLr ?? 0, warmupEpochs: o.warmupEpochs ?? 0, epochs: o.epochs });
  const optimizer = makeProbeOptimizer(probe, o, lr);
  const epochs = Math.ceil(o.epochs);
  const totalSteps = Math.ceil(o.epochs * perEpoch);
  const label = o.label === undefined ? 'linprobe' : o.label;
  const progress = label === null ? null : new Progress(label, totalSteps);
  const history: LinprobeEpoch[] = [];
  const lossSum = torch.keep(torch.zeros([], { device: probe.linear.weight.device }));
  let step = 0;
  probe.train();
  try {
    for (let epoch = 0; epoch < epochs && step < totalSteps; epoch++) {
      let i = 0;
      lossSum.zero_();
      for await (const b of batches(epoch)) {
        torch.scope(() => {
          optimizer.setLr(schedule(fractionalEpoch(epoch, i, perEpoch)));
          const loss = F.crossEntropy(probe.forward(b.features), b.labels);
          loss.backward();
          optimizer.step();
          optimizer.zeroGrad();
          lossSum.add_(loss.detach());
        });
        b.features.dispose();
        b.labels.dispose();
        i++;
        step++;
        if (step >= totalSteps) break;
      }
      const rec: LinprobeEpoch = { epoch: epoch + 1, loss: lossSum.item() / Math.max(i, 1), lr: optimizer.paramGroups[0].lr };
      if (o.evalEvery && (epoch + 1) % o.evalEvery === 0 && epoch + 1 < epochs) rec.top1 = evaluate().top1;
      history.push(rec);
      progress?.update(step, { epoch: epoch + 1, loss: rec.loss, lr: rec.lr, top1: rec.top1 }, true);
    }
    const accuracy = evaluate();
    if (history.length) history[history.length - 1].top1 = accuracy.top1;
    return { accuracy, lr, history, probe };
  } finally {
    lossSum.dispose();
    optimizer.dispose();
    progress?.done();
  }
}

/** The fast path: trains on features extracted once (shuffled per epoch by a seeded permutation). */
export async function linprobeOnFeatures(train: FeatureSet, test: FeatureSet, numClasses: number, o: LinprobeOptions): Promise<LinprobeResult> {
  validate(o);
  const n = train.features.shape[0];
  const D = train.features.shape[1];
  if (test.features.shape[1] !== D) throw new Error(`linprobe: train features have width ${D}, test features ${test.features.shape[1]}`);
  if (n < 2) throw new Error(`linprobe: need at least 2 training features, got ${n}`);
  const device = train.features.device;
  const seed = o.seed ?? 0;
  torch.manualSeed(seed);
  const probe = new LinearProbe(D, numClasses).to({ device });
  const B = Math.min(o.batchSize, n);
  const perEpoch = Math.floor(n / B); // drop the last incomplete batch (MAE: drop_last=True)
  const labelsAll = torch.keep(torch.tensor(train.labels, { dtype: 'int64', device }));
  async function* batches(epoch: number): AsyncGenerator<ProbeBatch> {
    const perm = torch.scope(() => torch.randperm(n, { generator: new torch.Generator(seed * 1_000_003 + epoch) }).to({ device }));
    try {
      for (let i = 0; i < perEpoch; i++) {
        const b = torch.scope(() => {
          const idx = perm.narrow(0, i * B, B);
          return { features: train.features.indexSelect(0, idx), labels: labelsAll.indexSelect(0, idx) };
        });
        yield b;
      }
    } finally {
      perm.dispose();
    }
  }
  try {
    return await trainProbe(probe, o, perEpoch, batches, () => evaluateProbe(probe, test, numClasses));
  } catch (e) {
    probe.dispose();
    throw e;
  } finally {
    labelsAll.dispose();
  }
}

export interface OnlineLinprobeOptions extends LinprobeOptions {
  pooling: FeaturePooling;
  precision?: Precision;
}

/**
 * The online path: every training batch goes through the frozen encoder with the linear-probe
 * augmentation ('crop-flip'); `test` holds the test features (extracted once, no augmentation).
 */
export async function linprobeOnline(
  encoder: VisionTransformer,
  trainData: LabelledData,
  test: FeatureSet,
  numClasses: number,
  o: OnlineLinprobeOptions,
): Promise<LinprobeResult> {
  validate(o);
  const device = encoder.cls_token.device;
  const seed = o.seed ?? 0;
  torch.manualSeed(seed);
  encoder.eval();
  const probe = new LinearProbe(encoder.cfg.embedDim, numClasses).to({ device });
  const perEpoch = batchesPerEpoch(trainData.size, o.batchSize, true);
  if (perEpoch < 1) throw new Error(`linprobe: ${trainData.size} training images give no full batch of ${o.batchSize}`);
  async function* batches(epoch: number): AsyncGenerator<ProbeBatch> {
    for await (const b of trainData.batches({ batchSize: o.batchSize, shuffle: true, epoch, augment: 'crop-flip', seed, dropLast: true })) {
      yield torch.scope(() => {
        const images = torch.tensor(b.images, { shape: b.shape, device });
        return { features: encodeBatch(encoder, images, o.pooling, o.precision), labels: torch.tensor(b.labels, { dtype: 'int64', device }) };
      });
    }
  }
  try {
    return await trainProbe(probe, o, perEpoch, batches, () => evaluateProbe(probe, test, numClasses));
  } catch (e) {
    probe.dispose();
    throw e;
  }
}
