// The segmentation probe: a linear head (seg-head.ts) trained on a frozen encoder's patch tokens
// with per-pixel cross-entropy (ignore index 255), AdamW or SGD with momentum, linear warm-up then
// cosine per iteration. Two paths, as the linear probe: on cached features (extracted once, the
// default) or online (the encoder runs on every augmented batch). Scored by mIoU (miou.ts).
import * as torch from '../torch';
import { F, Tensor } from '../torch';
import { AdamW, BaseHyper, Optimizer, SGD, fractionalEpoch, warmupCosine } from '../optim';
import { VisionTransformer } from '../semaim';
import { Progress } from '../run/progress';
import type { Precision } from '../run/precision';
import { ConfusionMatrix, IGNORE_INDEX, SegMetrics } from './miou';
import { SegLinearHead } from './seg-head';
import { SegFeatureSet, patchTokens } from './seg-features';
import type { SegAugment, SegData } from '../data/seg-streams';

export type SegOptimizer = 'adamw' | 'sgd';

export interface SegprobeOptions {
  epochs: number;
  /** Images per step. */
  batchSize: number;
  /** Peak lr (default: defaultSegLr). */
  lr?: number;
  minLr?: number;
  warmupEpochs?: number;
  weightDecay?: number;
  momentum?: number;
  optimizer?: SegOptimizer;
  seed?: number;
  /** Evaluate every N epochs (0: only at the end). */
  evalEvery?: number;
  /** Test images whose predictions are returned (for the figure). Default 0. */
  keepPredictions?: number;
  /** Progress bar label; null for none. */
  label?: string | null;
}

export interface SegprobeEpoch {
  epoch: number;
  loss: number;
  lr: number;
  mIoU?: number;
}

export interface SegprobeResult {
  metrics: SegMetrics;
  /** The peak lr used. */
  lr: number;
  history: SegprobeEpoch[];
  /** The trained head (caller disposes). */
  head: SegLinearHead;
  /** Predicted class maps of the first `keepPredictions` test images (n × H × W). */
  predictions: Uint8Array;
  /** Per-class pixel counts of the training masks the head saw (the first epoch), for the majority baseline. */
  trainHistogram: Float64Array;
}

/**
 * Default peak lr: 0.1 for AdamW, 1 for SGD. A linear head on batch-normalised patch tokens wants
 * large steps: on a validation split of the synthetic objects (docs/RESULTS.md) the mIoU rose from
 * lr 1e-3 to a plateau over 0.1–1 (AdamW) and 1–3 (SGD), for a pre-trained and a random encoder.
 */
export function defaultSegLr(optimizer: SegOptimizer): number {
  return optimizer === 'sgd' ? 1 : 0.1;
}

function validate(o: SegprobeOptions): void {
  if (!(Number.isInteger(o.batchSize) && o.batchSize > 0)) throw new RangeError(`segprobe: batchSize must be a positive integer, got ${o.batchSize}`);
  if (!(o.epochs > 0)) throw new RangeError(`segprobe: epochs must be > 0, got ${o.epochs}`);
  if (!((o.warmupEpochs ?? 0) < o.epochs)) throw new RangeError(`segprobe: warmupEpochs (${o.warmupEpochs}) must be below epochs (${o.epochs})`);
}

function makeOptimizer(head: SegLinearHead, o: SegprobeOptions, lr: number): Optimizer<BaseHyper> {
  const params = head.namedParameters();
  const weightDecay = o.weightDecay ?? 0;
  return (o.optimizer ?? 'adamw') === 'sgd'
    ? new SGD(params, { lr, weightDecay, momentum: o.momentum ?? 0.9 })
    : new AdamW(params, { lr, weightDecay, betas: [0.9, 0.999] });
}

/** Scores the head on cached test features; also returns the predictions of the first `keep` images. */
export function evaluateSegHead(
  head: SegLinearHead,
  test: SegFeatureSet,
  numClasses: number,
  o: { chunk?: number; keep?: number } = {},
): { metrics: SegMetrics; predictions: Uint8Array } {
  const wasTraining = head.training;
  head.eval();
  const conf = new ConfusionMatrix(numClasses, IGNORE_INDEX);
  const n = test.features.shape[0];
  const [H, W] = test.size;
  const hw = H * W;
  const keep = Math.min(o.keep ?? 0, n);
  const predictions = new Uint8Array(keep * hw);
  const chunk = o.chunk ?? 64;
  const device = test.features.device;
  try {
    for (let s = 0; s < n; s += chunk) {
      const len = Math.min(chunk, n - s);
      torch.noGrad(() =>
        torch.scope(() => {
          const pred = head.forward(test.features.narrow(0, s, len), test.grid, test.size).argmax(1);
          const truth = torch.tensor(test.masks.subarray(s * hw, (s + len) * hw), { shape: [len, H, W], device });
          conf.addTensors(truth, pred);
          if (s < keep) {
            const k = Math.min(keep - s, len);
            predictions.set(Uint8Array.from(pred.narrow(0, 0, k).toFloat64Array()), s * hw);
          }
        }),
      );
    }
  } finally {
    head.train(wasTraining);
  }
  return { metrics: conf.metrics(), predictions };
}

/** Counts of each class (ignore excluded) in n × H × W masks. */
export function classHistogram(masks: Uint8Array, numClasses: number, into = new Float64Array(numClasses)): Float64Array {
  for (const v of masks) if (v < numClasses) into[v]++;
  return into;
}

/** One training batch on the head's device: patch tokens [B, N, D'] and int64 masks [B, H, W]. */
interface SegTrainBatch {
  tokens: Tensor;
  masks: Tensor;
}

async function trainHead(
  head: SegLinearHead,
  o: SegprobeOptions,
  perEpoch: number,
  grid: [number, number],
  size: [number, number],
  batches: (epoch: number) => AsyncIterable<SegTrainBatch>,
  evaluate: () => SegMetrics,
): Promise<{ lr: number; history: SegprobeEpoch[] }> {
  const lr = o.lr ?? defaultSegLr(o.optimizer ?? 'adamw');
  const schedule = warmupCosine({ lr, minLr: o.minLr ?? 0, warmupEpochs: o.warmupEpochs ?? 0, epochs: o.epochs });
  const optimizer = makeOptimizer(head, o, lr);
  const epochs = Math.ceil(o.epochs);
  const totalSteps = Math.max(1, Math.ceil(o.epochs * perEpoch));
  const label = o.label === undefined ? 'segprobe' : o.label;
  const progress = label === null ? null : new Progress(label, totalSteps);
  const history: SegprobeEpoch[] = [];
  const lossSum = torch.keep(torch.zeros([], { device: head.linear.weight.device }));
  let step = 0;
  head.train();
  try {
    for (let epoch = 0; epoch < epochs && step < totalSteps; epoch++) {
      let i = 0;
      lossSum.zero_();
      for await (const b of batches(epoch)) {
        torch.scope(() => {
          optimizer.setLr(schedule(fractionalEpoch(epoch, i, perEpoch)));
          const loss = F.crossEntropy(head.forward(b.tokens, grid, size), b.masks, { ignoreIndex: IGNORE_INDEX });
          loss.backward();
          optimizer.step();
          optimizer.zeroGrad();
          lossSum.add_(loss.detach());
        });
        b.tokens.dispose();
        b.masks.dispose();
        i++;
        step++;
        if (step >= totalSteps) break;
      }
      const rec: SegprobeEpoch = { epoch: epoch + 1, loss: lossSum.item() / Math.max(i, 1), lr: optimizer.paramGroups[0].lr };
      if (o.evalEvery && (epoch + 1) % o.evalEvery === 0 && epoch + 1 < epochs) rec.mIoU = evaluate().mIoU;
      history.push(rec);
      progress?.update(step, { epoch: epoch + 1, loss: rec.loss, lr: rec.lr, mIoU: rec.mIoU }, true);
    }
    return { lr, history };
  } finally {
    lossSum.dispose();
    optimizer.dispose();
    progress?.done();
  }
}

/** Whether a stretch of masks holds at least one labelled pixel. */
function anyLabelled(masks: Uint8Array): boolean {
  for (const v of masks) if (v !== IGNORE_INDEX) return true;
  return false;
}

/** The fast path: trains on cached patch features, shuffled per epoch by a seeded permutation. */
export async function segprobeOnFeatures(train: SegFeatureSet, test: SegFeatureSet, numClasses: number, o: SegprobeOptions): Promise<SegprobeResult> {
  validate(o);
  const n = train.features.shape[0];
  const D = train.features.shape[2];
  if (test.features.shape[2] !== D) throw new Error(`segprobe: train features have width ${D}, test features ${test.features.shape[2]}`);
  if (n < 2) throw new Error(`segprobe: need at least 2 training images, got ${n}`);
  const device = train.features.device;
  const seed = o.seed ?? 0;
  torch.manualSeed(seed);
  const head = new SegLinearHead(D, numClasses).to({ device });
  const B = Math.min(o.batchSize, n);
  const perEpoch = Math.floor(n / B);
  const [H, W] = train.size;
  const hw = H * W;
  async function* batches(epoch: number): AsyncGenerator<SegTrainBatch> {
    const perm = torch.randperm(n, { generator: new torch.Generator(seed * 1_000_003 + epoch) });
    const order = Int32Array.from(perm.data() as BigInt64Array, Number);
    perm.dispose();
    for (let i = 0; i < perEpoch; i++) {
      const idx = order.subarray(i * B, (i + 1) * B);
      const masks = new Uint8Array(B * hw);
      idx.forEach((r, k) => masks.set(train.masks.subarray(r * hw, (r + 1) * hw), k * hw));
      if (!anyLabelled(masks)) continue;
      yield torch.scope(() => ({
        tokens: train.features.indexSelect(0, torch.tensor(idx, { dtype: 'int64', device })),
        masks: torch.tensor(masks, { shape: [B, H, W], device }).long(),
      }));
    }
  }
  try {
    const r = await trainHead(head, o, perEpoch, train.grid, train.size, batches, () => evaluateSegHead(head, test, numClasses).metrics);
    const { metrics, predictions } = evaluateSegHead(head, test, numClasses, { keep: o.keepPredictions });
    if (r.history.length) r.history[r.history.length - 1].mIoU = metrics.mIoU;
    return { ...r, metrics, predictions, head, trainHistogram: classHistogram(train.masks, numClasses) };
  } catch (e) {
    head.dispose();
    throw e;
  }
}

export interface OnlineSegprobeOptions extends SegprobeOptions {
  blocks: number[];
  augment: SegAugment;
  precision?: Precision;
}

/**
 * The online path: every training batch goes through the frozen encoder with `augment`; `test`
 * holds the test features (extracted once, no augmentation).
 */
export async function segprobeOnline(
  encoder: VisionTransformer,
  trainData: SegData,
  test: SegFeatureSet,
  numClasses: number,
  o: OnlineSegprobeOptions,
): Promise<SegprobeResult> {
  validate(o);
  const device = encoder.cls_token.device;
  const seed = o.seed ?? 0;
  torch.manualSeed(seed);
  encoder.eval();
  const head = new SegLinearHead(test.features.shape[2], numClasses).to({ device });
  const perEpoch = Math.floor(trainData.size / o.batchSize);
  if (perEpoch < 1) throw new Error(`segprobe: ${trainData.size} training images give no full batch of ${o.batchSize}`);
  const trainHistogram = new Float64Array(numClasses);
  async function* batches(epoch: number): AsyncGenerator<SegTrainBatch> {
    for await (const b of trainData.batches({ batchSize: o.batchSize, shuffle: true, epoch, augment: o.augment, seed, dropLast: true })) {
      if (epoch === 0) classHistogram(b.masks, numClasses, trainHistogram);
      if (!anyLabelled(b.masks)) continue;
      yield torch.scope(() => {
        const images = torch.tensor(b.images, { shape: b.shape, device });
        return {
          tokens: patchTokens(encoder, images, o.blocks, o.precision),
          masks: torch.tensor(b.masks, { shape: [b.shape[0], b.shape[2], b.shape[3]], device }).long(),
        };
      });
    }
  }
  try {
    const r = await trainHead(head, o, perEpoch, test.grid, test.size, batches, () => evaluateSegHead(head, test, numClasses).metrics);
    const { metrics, predictions } = evaluateSegHead(head, test, numClasses, { keep: o.keepPredictions });
    if (r.history.length) r.history[r.history.length - 1].mIoU = metrics.mIoU;
    return { ...r, metrics, predictions, head, trainHistogram };
  } catch (e) {
    head.dispose();
    throw e;
  }
}

/** The metrics of predicting one class everywhere (the majority-class baseline). */
export function constantPredictionMetrics(masks: Uint8Array, numClasses: number, cls: number): SegMetrics {
  const conf = new ConfusionMatrix(numClasses, IGNORE_INDEX);
  const C = numClasses;
  for (const v of masks) if (v !== IGNORE_INDEX) conf.counts[v * C + cls]++;
  return conf.metrics();
}
