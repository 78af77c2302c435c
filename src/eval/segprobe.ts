// The segmentation probe: a linear head (seg-head.ts) trained on a frozen encoder's patch tokens
// with per-pixel cross-entropy (ignore index 255), AdamW or SGD with momentum, linear warm-up then
// cosine per iteration. Two paths, as the linear probe: on cached features (extracted once, the
// default) or online (the encoder runs on every augmented batch). Scored by mIoU (miou.ts).
// Data-parallel, the ranks hold shards of the features (or encode slices of every batch), assemble
// each global batch with one sum all-reduce and take the same step, so every rank trains the head one
// process trains; the test shards' confusion counts are summed.
import * as torch from '../torch';
import { F, Tensor } from '../torch';
import { AdamW, BaseHyper, Optimizer, SGD } from '../optim';
import { VisionTransformer } from '../semaim';
import type { Precision } from '../run/precision';
import { ConfusionMatrix, IGNORE_INDEX, SegMetrics } from './miou';
import { SegLinearHead } from './seg-head';
import { SegFeatureSet, patchTokens, segSetSize } from './seg-features';
import type { SegAugment, SegData } from '../data/seg-streams';
import { checkSegBatch } from '../data/check-batch';
import { severalRanks, type ProcessGroup } from '../dist';
import { checkHeadTraining, trainHead } from './head-training';
import { DataError } from '../util/errors';

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
  /** Test images the head predicts at once (their logits at the image size are C × H × W each); default 64. */
  evalBatchSize?: number;
  /** Test images whose predictions are returned (for the figure). Default 0. */
  keepPredictions?: number;
  /** Progress bar label; null for none. */
  label?: string | null;
  /**
   * Data-parallel (several ranks): cached, `train` and `test` are this rank's shards (extractSegFeatures
   * with the group); online, every rank reads its slice of each batch (`batchSize` divisible by the ranks).
   */
  group?: ProcessGroup | null;
  /** Aborting it stops the probe before its next step: it rejects with an AbortError (code 'ERR_ABORTED'). */
  signal?: AbortSignal;
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
  /** Per-class pixel counts of the training masks, for the majority baseline: cached, of every training image; online, of the first epoch's (augmented) batches. */
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

/** The group a probe on these sets runs with: several ranks exactly when the sets are shards. */
function shardGroup(train: SegFeatureSet | null, test: SegFeatureSet, group: ProcessGroup | null | undefined): ProcessGroup | null {
  const g = severalRanks(group);
  for (const [what, set] of [
    ['training', train],
    ['test', test],
  ] as const) {
    if (!set) continue;
    if (g && !set.shard) throw new Error(`segprobe: with a group of several ranks, the ${what} features must be this rank’s shard`);
    if (set.shard && !g) throw new Error(`segprobe: the ${what} features are one rank’s shard: pass its group`);
  }
  return g;
}

function makeOptimizer(head: SegLinearHead, o: SegprobeOptions, lr: number): Optimizer<BaseHyper> {
  const params = head.namedParameters();
  const weightDecay = o.weightDecay ?? 0;
  return (o.optimizer ?? 'adamw') === 'sgd'
    ? new SGD(params, { lr, weightDecay, momentum: o.momentum ?? 0.9 })
    : new AdamW(params, { lr, weightDecay, betas: [0.9, 0.999] });
}

/**
 * Scores the head on cached test features; also returns the predictions of the set's first `keep`
 * images. With a group, `test` is this rank's shard: the counts and predictions are summed over the ranks.
 */
export function evaluateSegHead(
  head: SegLinearHead,
  test: SegFeatureSet,
  numClasses: number,
  o: { chunk?: number; keep?: number; group?: ProcessGroup | null } = {},
): { metrics: SegMetrics; predictions: Uint8Array } {
  const chunk = o.chunk ?? 64;
  // (a chunk of 0 never advanced past the first image: the call never returned)
  if (!(Number.isInteger(chunk) && chunk > 0)) throw new RangeError(`evaluateSegHead: chunk must be a positive integer, got ${chunk}`);
  const group = severalRanks(o.group);
  const wasTraining = head.training;
  head.eval();
  const conf = new ConfusionMatrix(numClasses, IGNORE_INDEX);
  const n = test.features.shape[0];
  const [H, W] = test.size;
  const hw = H * W;
  const keep = Math.min(o.keep ?? 0, segSetSize(test));
  const rowOf = (r: number): number => (test.shard ? test.shard.rows[r] : r);
  const predictions = new Uint8Array(keep * hw);
  const device = test.features.device;
  try {
    for (let s = 0; s < n; s += chunk) {
      const len = Math.min(chunk, n - s);
      torch.noGrad(() =>
        torch.scope(() => {
          const pred = head.forward(test.features.narrow(0, s, len), test.grid, test.size).argmax(1);
          const truth = torch.tensor(test.masks.subarray(s * hw, (s + len) * hw), { shape: [len, H, W], device });
          conf.addTensors(truth, pred);
          for (let k = 0; k < len && rowOf(s + k) < keep; k++) predictions.set(Uint8Array.from(pred.select(0, k).toFloat64Array()), rowOf(s + k) * hw);
        }),
      );
    }
  } finally {
    head.train(wasTraining);
  }
  if (!group) return { metrics: conf.metrics(), predictions };
  // each prediction comes from one rank, zeros from the others
  const all = group.sumNumbers(Float64Array.from([...conf.counts, ...predictions]));
  conf.counts.set(all.subarray(0, conf.counts.length));
  return { metrics: conf.metrics(), predictions: Uint8Array.from(all.subarray(conf.counts.length)) };
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

async function trainSegHead(
  head: SegLinearHead,
  o: SegprobeOptions,
  perEpoch: number,
  grid: [number, number],
  size: [number, number],
  batches: (epoch: number) => AsyncIterable<SegTrainBatch | null>,
  evaluate: () => SegMetrics,
): Promise<{ lr: number; history: SegprobeEpoch[] }> {
  const lr = o.lr ?? defaultSegLr(o.optimizer ?? 'adamw');
  // whether any step had a labelled pixel to train on (a null batch has none; the ranks agree on which are null)
  let labelled = false;
  async function* counted(epoch: number): AsyncGenerator<SegTrainBatch | null> {
    for await (const b of batches(epoch)) {
      if (b) labelled = true;
      yield b;
    }
  }
  const history = await trainHead(
    {
      name: 'segprobe',
      head,
      optimizer: makeOptimizer(head, o, lr),
      lr,
      lrOption: 'lr',
      perEpoch,
      batches: counted,
      inputs: (b) => b.tokens,
      loss: (b) => F.crossEntropy(head.forward(b.tokens, grid, size), b.masks, { ignoreIndex: IGNORE_INDEX }),
      release: (b) => {
        b.tokens.dispose();
        b.masks.dispose();
      },
      metric: 'mIoU',
      evaluate: () => evaluate().mIoU,
    },
    o,
  );
  // every step was passed over: the head kept its initial weights, and its scores were reported as a probe's
  if (!labelled)
    throw new DataError(
      `train data: no labelled pixel in the masks of its training batches (every pixel is the ignore index ${IGNORE_INDEX}): the head was never trained`,
    );
  return { lr, history };
}

/** Whether a stretch of masks holds at least one labelled pixel. */
export function anyLabelled(masks: Uint8Array): boolean {
  for (const v of masks) if (v !== IGNORE_INDEX) return true;
  return false;
}

/** The fast path: trains on cached patch features, shuffled per epoch by a seeded permutation. */
export async function segprobeOnFeatures(train: SegFeatureSet, test: SegFeatureSet, numClasses: number, o: SegprobeOptions): Promise<SegprobeResult> {
  checkHeadTraining('segprobe', o);
  const group = shardGroup(train, test, o.group);
  const n = segSetSize(train);
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
  // sharded: the shard's row holding each row of the whole set (-1: another rank's)
  const mine = train.shard ? new Int32Array(n).fill(-1) : null;
  train.shard?.rows.forEach((row, r) => (mine![row] = r));
  async function* batches(epoch: number): AsyncGenerator<SegTrainBatch | null> {
    const perm = torch.randperm(n, { generator: new torch.Generator(seed * 1_000_003 + epoch) });
    const order = Int32Array.from(perm.data() as BigInt64Array, Number);
    perm.dispose();
    for (let i = 0; i < perEpoch; i++) {
      const idx = order.subarray(i * B, (i + 1) * B);
      if (group) {
        const slots = Int32Array.from(idx.keys()).filter((k) => mine![idx[k]] >= 0);
        const rows = Int32Array.from(slots, (k) => mine![idx[k]]);
        const b = torch.scope(() =>
          assembleSegBatch(
            group,
            B,
            slots,
            train.features.indexSelect(0, torch.tensor(rows, { dtype: 'int64', device })),
            hostMasks(train.masks, rows, hw),
            train.size,
          ),
        );
        yield b;
        continue;
      }
      const masks = hostMasks(train.masks, idx, hw);
      if (!anyLabelled(masks)) {
        yield null;
        continue;
      }
      yield torch.scope(() => ({
        tokens: train.features.indexSelect(0, torch.tensor(idx, { dtype: 'int64', device })),
        masks: torch.tensor(masks, { shape: [B, H, W], device }).long(),
      }));
    }
  }
  try {
    const evaluate = (keep?: number) => evaluateSegHead(sameHead(head, group), test, numClasses, { chunk: o.evalBatchSize, keep, group });
    const r = await trainSegHead(head, { ...o, group }, perEpoch, train.grid, train.size, batches, () => evaluate().metrics);
    const { metrics, predictions } = evaluate(o.keepPredictions);
    if (r.history.length) r.history[r.history.length - 1].mIoU = metrics.mIoU;
    const trainHistogram = classHistogram(train.masks, numClasses);
    if (group) trainHistogram.set(group.sumNumbers(trainHistogram));
    return { ...r, metrics, predictions, head, trainHistogram };
  } catch (e) {
    head.dispose();
    throw e;
  }
}

/**
 * Rank 0's head on every rank. The ranks take the same steps on the same batches, so their heads agree
 * where the kernels are deterministic (the CPU); on a GPU the upsampling's backward sums with atomics and
 * the heads may drift apart in the last bits: each shard is scored with one head.
 */
function sameHead(head: SegLinearHead, group: ProcessGroup | null): SegLinearHead {
  if (group) torch.noGrad(() => group.broadcastCoalesced([...head.parameters(), ...[...head.namedBuffers()].map(([, b]) => b)], 0));
  return head;
}

/** The masks of `rows` (n × H × W on the host) one after the other. */
function hostMasks(masks: Uint8Array, rows: Int32Array, hw: number): Uint8Array {
  const out = new Uint8Array(rows.length * hw);
  rows.forEach((r, k) => out.set(masks.subarray(r * hw, (r + 1) * hw), k * hw));
  return out;
}

/**
 * The global batch of `globalSize` slots on every rank, from the rows this rank holds (`tokens` [k, N, D]
 * and host `masks`, in `slots`): each rank packs its rows (tokens, mask values, a 1) into their slots of one
 * float tensor, zeros elsewhere, and a sum all-reduce fills the batch (x + 0 is exact; mask values
 * 0–255 are exact in float32). Slots no rank filled (skipped samples) are dropped; null when the batch
 * has no sample or no labelled pixel, the same on every rank.
 */
function assembleSegBatch(
  group: ProcessGroup,
  globalSize: number,
  slots: Int32Array,
  tokens: Tensor,
  masks: Uint8Array,
  size: [number, number],
): SegTrainBatch | null {
  const [, N, D] = tokens.shape;
  const hw = size[0] * size[1];
  const width = N * D + hw + 1;
  const device = tokens.device;
  const k = slots.length;
  let packed = torch.zeros([globalSize, width], { device });
  if (k) {
    const rows = torch.cat([tokens.reshape(k, N * D), torch.tensor(masks, { shape: [k, hw], device }).float(), torch.ones([k, 1], { device })], 1);
    packed = packed.indexPut([torch.tensor(slots, { dtype: 'int64', device })], rows);
  }
  group.allReduceSync(packed);
  const filled = packed
    .select(1, width - 1)
    .gt(0.5)
    .nonzero()
    .flatten();
  const count = filled.shape[0];
  if (count === 0) return null;
  const batch = packed.indexSelect(0, filled);
  const m = batch
    .narrow(1, N * D, hw)
    .round()
    .long()
    .reshape(count, size[0], size[1]);
  if (m.ne(IGNORE_INDEX).sum().item() === 0) return null;
  return { tokens: batch.narrow(1, 0, N * D).reshape(count, N, D), masks: m };
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
  checkHeadTraining('segprobe', o);
  const group = shardGroup(null, test, o.group);
  const ranks = group?.worldSize ?? 1;
  if (o.batchSize % ranks !== 0) throw new RangeError(`segprobe: batchSize ${o.batchSize} is not divisible by the ${ranks} ranks`);
  const device = encoder.cls_token.device;
  const seed = o.seed ?? 0;
  torch.manualSeed(seed);
  encoder.eval();
  const perEpoch = Math.floor(trainData.size / o.batchSize);
  if (perEpoch < 1) throw new Error(`segprobe: ${trainData.size} training images give no full batch of ${o.batchSize}`);
  const head = new SegLinearHead(test.features.shape[2], numClasses).to({ device });
  const trainHistogram = new Float64Array(numClasses);
  const slice = group ? { rank: group.rank, worldSize: ranks } : undefined;
  async function* batches(epoch: number): AsyncGenerator<SegTrainBatch | null> {
    const batchSize = o.batchSize / ranks; // this rank's slice of every batch
    for await (const b of trainData.batches({ batchSize, shuffle: true, epoch, augment: o.augment, seed, dropLast: true, slice })) {
      if (b.shape[0]) checkSegBatch(b, trainData.imageShape, numClasses, trainData.ignoreIndex);
      if (epoch === 0) classHistogram(b.masks, numClasses, trainHistogram);
      if (group) {
        const tokens = (): Tensor =>
          b.shape[0]
            ? patchTokens(encoder, torch.tensor(b.images, { shape: b.shape, device }), o.blocks, o.precision)
            : torch.zeros([0, test.features.shape[1], test.features.shape[2]], { device });
        const t = torch.scope(() => assembleSegBatch(group, b.globalSize, b.slots, tokens(), b.masks, test.size));
        yield t;
        continue;
      }
      if (!anyLabelled(b.masks)) {
        yield null;
        continue;
      }
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
    const evaluate = (keep?: number) => evaluateSegHead(sameHead(head, group), test, numClasses, { chunk: o.evalBatchSize, keep, group });
    const r = await trainSegHead(head, { ...o, group }, perEpoch, test.grid, test.size, batches, () => evaluate().metrics);
    const { metrics, predictions } = evaluate(o.keepPredictions);
    if (r.history.length) r.history[r.history.length - 1].mIoU = metrics.mIoU;
    if (group) trainHistogram.set(group.sumNumbers(trainHistogram));
    return { ...r, metrics, predictions, head, trainHistogram };
  } catch (e) {
    head.dispose();
    throw e;
  }
}

/** The metrics of predicting one class everywhere (the majority-class baseline); with a group, over every rank's masks. */
export function constantPredictionMetrics(masks: Uint8Array, numClasses: number, cls: number, group: ProcessGroup | null = null): SegMetrics {
  const conf = new ConfusionMatrix(numClasses, IGNORE_INDEX);
  const C = numClasses;
  for (const v of masks) if (v !== IGNORE_INDEX) conf.counts[v * C + cls]++;
  const g = severalRanks(group);
  if (g) conf.counts.set(g.sumNumbers(conf.counts));
  return conf.metrics();
}
