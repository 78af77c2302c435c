// Linear probing (MAE's main_linprobe.py): a frozen encoder's [CLS] (or mean) features →
// BatchNorm1d without affine → Linear, trained with SGD momentum 0.9 (or LARS), lr = blr × batch/256,
// warm-up + cosine per iteration, no weight decay. Two paths: on cached features (extracted once,
// the fast path) or online (the encoder runs on every augmented batch). Data-parallel on cached
// features, each rank holds a shard of the training features: every step the ranks assemble the global
// batch by an all-reduce (each fills the rows it holds, zeros elsewhere) and take the same step, so the
// probe is the one one process trains, while no rank holds the whole training set.
import * as torch from '../torch';
import { F, Tensor } from '../torch';
import { LARS, Optimizer, SGD, BaseHyper, scaleLr } from '../optim';
import { VisionTransformer } from '../semaim';
import { Accuracy, AccuracyTally } from './accuracy';
import { LinearProbe } from './classifier';
import { LabelledData, PassOptions, batchesPerEpoch } from '../data';
import { checkLabelledBatch } from '../data/check-batch';
import { FeaturePooling, FeatureSet, checkLabels, encodeBatch, setSize, shardGroup } from './features';
import { severalRanks, type ProcessGroup } from '../dist';
import type { Precision } from '../run/precision';
import { keepCallerRng } from '../run/caller-rng';
import { checkHeadTraining, trainHead } from './head-training';
import { stderrLine } from '../util/console-line';
import { DataError } from '../util/errors';

/**
 * Options of {@link linprobeOnFeatures} (MAE's linear probe: SGD or LARS, warm-up + cosine, no
 * weight decay by default); {@link linprobeOnline} takes them as {@link OnlineLinprobeOptions}.
 */
export interface LinprobeOptions {
  /** Training epochs (> 0; may be fractional). */
  epochs: number;
  batchSize: number;
  /** Base lr: lr = blr × batchSize / 256 (MAE: 0.1). */
  blr: number;
  /** Absolute lr (overrides blr). */
  lr?: number;
  /** Final lr of the cosine schedule (default 0). */
  minLr?: number;
  /** Linear warm-up epochs (default 0; below `epochs`). */
  warmupEpochs?: number;
  /** Default 0. */
  weightDecay?: number;
  /** SGD/LARS momentum (default 0.9). */
  momentum?: number;
  /** Default 'sgd'. */
  optimizer?: 'sgd' | 'lars';
  /** Seed of the probe's initialisation and of the shuffling (default 0). */
  seed?: number;
  /** Evaluate on the test set every N epochs (0: only at the end). */
  evalEvery?: number;
  /** Progress bar label; null for none, and no note on stderr (a batch below batchSize is in the result's batchSize). */
  label?: string | null;
  /**
   * Data-parallel: every rank trains the same probe; `test` is the whole set on every rank. Cached
   * features: `train` is this rank's shard (gatherTo 'shard'). Online: the training data is this rank's
   * slice of the batches, each rank encodes batchSize / ranks images of every step's batch.
   */
  group?: ProcessGroup | null;
  /** Aborting it stops the probe before its next step: it rejects with an AbortError (code 'ERR_ABORTED'). */
  signal?: AbortSignal;
}

/**
 * One epoch of a probe's training history (LinprobeResult.history): its number (from
 * 1), mean training loss, the lr of its last step, and test top-1 where evaluated.
 */
export interface LinprobeEpoch {
  epoch: number;
  loss: number;
  lr: number;
  /** Test top-1, on the epochs evaluated (every evalEvery epochs, and the last). */
  top1?: number;
}

/**
 * What {@link linprobeOnFeatures} and {@link linprobeOnline} return: the final test
 * accuracy, the lr and batch used, the per-epoch history and the trained probe.
 */
export interface LinprobeResult {
  accuracy: Accuracy;
  /** The peak lr used. */
  lr: number;
  /** The batch it trained with: batchSize, or all the training features when they are fewer (cached features). */
  batchSize: number;
  history: LinprobeEpoch[];
  /** The trained head (caller disposes). */
  probe: LinearProbe;
}

/** One training batch: features [B, D] and int64 labels [B], on the probe's device. */
interface ProbeBatch {
  features: Tensor;
  labels: Tensor;
}

/**
 * The optimiser of a linear probe at lr `lr`: o.optimizer 'sgd' (default) or 'lars',
 * momentum o.momentum (default 0.9), weight decay o.weightDecay (default 0).
 */
export function makeProbeOptimizer(probe: LinearProbe, o: LinprobeOptions, lr: number): Optimizer<BaseHyper> {
  const params = probe.namedParameters();
  const wd = o.weightDecay ?? 0;
  const momentum = o.momentum ?? 0.9;
  return (o.optimizer ?? 'sgd') === 'lars' ? new LARS(params, { lr, weightDecay: wd, momentum }) : new SGD(params, { lr, weightDecay: wd, momentum });
}

/**
 * Refuses a feature set whose labels are more or fewer than its feature rows: extra labels were dropped
 * silently (the probe trained and scored on the first rows' labels), too few failed deep in libtorch.
 */
function checkLabelCount(name: string, set: FeatureSet): void {
  const rows = set.features.shape[0];
  if (set.labels.length !== rows) throw new Error(`linprobe: the ${name} features have ${rows} rows, their labels ${set.labels.length}`);
}

/** Logits of the probe (eval mode) for every feature row (any float dtype, taken as float32), tallied against labels. */
export function evaluateProbe(probe: LinearProbe, test: FeatureSet, numClasses: number, chunk = 1024): Accuracy {
  // (a chunk of 0 never advanced past the first row: the call never returned)
  if (!(Number.isInteger(chunk) && chunk > 0)) throw new RangeError(`evaluateProbe: chunk must be a positive integer, got ${chunk}`);
  checkLabelCount('test', test);
  const wasTraining = probe.training;
  probe.eval();
  const tally = new AccuracyTally(numClasses);
  const n = test.features.shape[0];
  try {
    for (let s = 0; s < n; s += chunk) {
      const len = Math.min(chunk, n - s);
      torch.noGrad(() => torch.scope(() => tally.add(probe.forward(test.features.narrow(0, s, len).float()), test.labels.subarray(s, s + len))));
    }
  } finally {
    probe.train(wasTraining);
  }
  return tally.result();
}

/**
 * The probe's training, the same for both paths. `batches(epoch)` yields this epoch's batches of `batch`
 * samples, which the lr is scaled by (the caller owns nothing it yields: tensors are disposed after each step).
 */
async function trainProbe(
  probe: LinearProbe,
  o: LinprobeOptions,
  batch: number,
  perEpoch: number,
  batches: (epoch: number) => AsyncIterable<ProbeBatch>,
  evaluate: () => Accuracy,
): Promise<LinprobeResult> {
  const lr = o.lr ?? scaleLr(o.blr, batch);
  const history = await trainHead(
    {
      name: 'linprobe',
      head: probe,
      optimizer: makeProbeOptimizer(probe, o, lr),
      lr,
      lrOption: o.lr === undefined ? 'blr' : 'lr',
      perEpoch,
      batches,
      inputs: (b) => b.features,
      loss: (b) => F.crossEntropy(probe.forward(b.features), b.labels),
      release: (b) => {
        b.features.dispose();
        b.labels.dispose();
      },
      metric: 'top1',
      evaluate: () => evaluate().top1,
    },
    o,
  );
  const accuracy = evaluate();
  if (history.length) history[history.length - 1].top1 = accuracy.top1;
  return { accuracy, lr, batchSize: batch, history, probe };
}

/** The fast path: trains on features extracted once (shuffled per epoch by a seeded permutation); features of another float dtype are taken as float32, batch by batch. */
export async function linprobeOnFeatures(train: FeatureSet, test: FeatureSet, numClasses: number, o: LinprobeOptions): Promise<LinprobeResult> {
  // it seeds the global generator for the head's init: the caller's stream is given back after
  return keepCallerRng(() => probeOnFeatures(train, test, numClasses, o));
}

async function probeOnFeatures(train: FeatureSet, test: FeatureSet, numClasses: number, o: LinprobeOptions): Promise<LinprobeResult> {
  checkHeadTraining('linprobe', o);
  const group = shardGroup('linprobe', train, test, o.group);
  const n = setSize(train);
  const D = train.features.shape[1];
  if (test.features.shape[1] !== D) throw new Error(`linprobe: train features have width ${D}, test features ${test.features.shape[1]}`);
  checkLabelCount('training', train);
  checkLabelCount('test', test);
  // (a split with one readable image reaches here from runLinprobe: the data's fault, as an empty split's)
  if (n < 2) throw new DataError(`linprobe: need at least 2 training features (images), got ${n}`);
  checkLabels('linprobe', 'training', train.labels, numClasses);
  checkLabels('linprobe', 'test', test.labels, numClasses);
  const device = train.features.device;
  const seed = o.seed ?? 0;
  torch.manualSeed(seed);
  const probe = new LinearProbe(D, numClasses).to({ device });
  const B = Math.min(o.batchSize, n);
  if (B < o.batchSize && o.label !== null)
    stderrLine(`linprobe: ${n} training features, fewer than a batch of ${o.batchSize}: one batch of ${B} per epoch, lr scaled to it`);
  const perEpoch = Math.floor(n / B); // drop the last incomplete batch (MAE: drop_last=True)
  const labelsAll = torch.keep(torch.tensor(train.labels, { dtype: 'int64', device }));
  const rowOf = train.shard ? rowsByPosition(train.shard.positions, n) : null;
  async function* batches(epoch: number): AsyncGenerator<ProbeBatch> {
    const perm = torch.keep(torch.randperm(n, { generator: new torch.Generator(seed * 1_000_003 + epoch) }));
    // sharded: the positions on the host, to find this rank's rows; else the indices on the device
    const order = group ? Int32Array.from(torch.scope(() => perm.to({ dtype: 'int32' }).data() as Int32Array)) : null;
    const onDevice = group ? null : torch.keep(perm.to({ device }));
    try {
      for (let i = 0; i < perEpoch; i++) {
        yield torch.scope(() => {
          if (group) return assembleBatch(group, train.features, labelsAll, rowOf!, order!.subarray(i * B, (i + 1) * B));
          const idx = onDevice!.narrow(0, i * B, B);
          return { features: train.features.indexSelect(0, idx).float(), labels: labelsAll.indexSelect(0, idx) };
        });
      }
    } finally {
      perm.dispose();
      onDevice?.dispose();
    }
  }
  try {
    return await trainProbe(probe, o, B, perEpoch, batches, () => evaluateProbe(probe, test, numClasses));
  } catch (e) {
    probe.dispose();
    throw e;
  } finally {
    labelsAll.dispose();
  }
}

/** rowOf[p]: the row holding dataset position p in this shard, or -1. */
function rowsByPosition(positions: Int32Array, size: number): Int32Array {
  const rowOf = new Int32Array(size).fill(-1);
  positions.forEach((p, row) => (rowOf[p] = row));
  return rowOf;
}

/**
 * The global batch of dataset positions `batch` on every rank: each rank puts the rows it holds in their
 * slots, zeros in the others, and a sum all-reduce fills every slot (x + 0 is exact, so the batch is the
 * one a single process selects).
 */
function assembleBatch(group: ProcessGroup, features: Tensor, labels: Tensor, rowOf: Int32Array, batch: Int32Array): ProbeBatch {
  const slots: number[] = [];
  const rows: number[] = [];
  batch.forEach((p, slot) => {
    if (rowOf[p] >= 0) {
      slots.push(slot);
      rows.push(rowOf[p]);
    }
  });
  const device = features.device;
  const at = torch.tensor(Int32Array.from(slots), { dtype: 'int64', device });
  const from = torch.tensor(Int32Array.from(rows), { dtype: 'int64', device });
  const x = torch.zeros([batch.length, features.shape[1]], { device }).indexPut([at], features.indexSelect(0, from).float());
  const y = torch.zeros([batch.length], { dtype: 'int64', device }).indexPut([at], labels.indexSelect(0, from));
  const works = [group.startAllReduce(x), group.startAllReduce(y)];
  for (const w of works) w.wait();
  return { features: x, labels: y };
}

/** Options of {@link linprobeOnline}: {@link LinprobeOptions} plus the feature pooling, the training augmentation and the encoder's autocast precision. */
export interface OnlineLinprobeOptions extends LinprobeOptions {
  pooling: FeaturePooling;
  /** Training augmentation: the SemAIM authors' 'resize-crop-flip' (default) or MAE's 'crop-flip'. */
  augment?: 'resize-crop-flip' | 'crop-flip';
  /** Autocast precision of the encoder (default 'fp32'); the features and the probe are float32. */
  precision?: Precision;
}

/** The pass over the training images the online probe reads every epoch, on each of `ranks` processes (its slice of every batch). */
export function onlinePass(o: Pick<OnlineLinprobeOptions, 'batchSize' | 'augment' | 'seed'>, ranks: number): PassOptions {
  return { batchSize: o.batchSize / ranks, shuffle: true, augment: o.augment ?? 'resize-crop-flip', seed: o.seed ?? 0, dropLast: true };
}

/**
 * The online path: every training batch goes through the frozen encoder with the linear-probe
 * augmentation (o.augment); `test` holds the test features (extracted once, no augmentation).
 */
export async function linprobeOnline(
  encoder: VisionTransformer,
  trainData: LabelledData,
  test: FeatureSet,
  numClasses: number,
  o: OnlineLinprobeOptions,
): Promise<LinprobeResult> {
  // it seeds the global generator for the head's init: the caller's stream is given back after
  return keepCallerRng(() => probeOnline(encoder, trainData, test, numClasses, o));
}

async function probeOnline(
  encoder: VisionTransformer,
  trainData: LabelledData,
  test: FeatureSet,
  numClasses: number,
  o: OnlineLinprobeOptions,
): Promise<LinprobeResult> {
  checkHeadTraining('linprobe', o);
  const group = severalRanks(o.group);
  const ranks = group?.worldSize ?? 1;
  if (o.batchSize % ranks !== 0) throw new RangeError(`linprobe: batchSize ${o.batchSize} is not divisible by the ${ranks} ranks`);
  // (the test set is scored only after the last epoch: refused now, as probeOnFeatures does)
  const D = encoder.cfg.embedDim;
  if (test.features.shape[1] !== D) throw new Error(`linprobe: the encoder's features have width ${D}, test features ${test.features.shape[1]}`);
  checkLabelCount('test', test);
  checkLabels('linprobe', 'test', test.labels, numClasses);
  const device = encoder.cls_token.device;
  const seed = o.seed ?? 0;
  torch.manualSeed(seed);
  const perEpoch = batchesPerEpoch(trainData.size, o.batchSize, true);
  if (perEpoch < 1) throw new Error(`linprobe: ${trainData.size} training images give no full batch of ${o.batchSize}`);
  const probe = new LinearProbe(D, numClasses).to({ device });
  async function* batches(epoch: number): AsyncGenerator<ProbeBatch> {
    for await (const b of trainData.batches({ ...onlinePass(o, ranks), epoch })) {
      checkLabelledBatch(b, { chans: encoder.cfg.inChans ?? 3, size: encoder.cfg.imgSize }, numClasses);
      yield torch.scope(() => {
        const images = torch.tensor(b.images, { shape: b.shape, device });
        const features = encodeBatch(encoder, images, o.pooling, o.precision);
        const labels = torch.tensor(b.labels, { dtype: 'int64', device });
        if (!group) return { features, labels };
        // the slices in rank order are the batch one process reads
        return { features: torch.cat(group.allGatherSync(features), 0), labels: torch.cat(group.allGatherSync(labels), 0) };
      });
    }
  }
  // the caller's encoder runs in eval mode (no dropout or drop-path) and is given back in the mode it was in
  const wasTraining = encoder.training;
  encoder.eval();
  try {
    return await trainProbe(probe, o, o.batchSize, perEpoch, batches, () => evaluateProbe(probe, test, numClasses));
  } catch (e) {
    probe.dispose();
    throw e;
  } finally {
    encoder.train(wasTraining);
  }
}
