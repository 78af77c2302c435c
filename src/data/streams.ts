// What training and evaluation consume from the data pipeline: seeded, resumable streams of batches.
// The real datasets (CIFAR-10, synthetic objects, ImageFolder) are adapted to these interfaces in
// factories.ts; training and evaluation never decode images themselves.

import type { RankSlice } from './sharding';
import { printable } from '../util/printable';
import type { ImageInputOptions } from './options';
import type { SegDataRequest } from './seg-loader';
import type { SegData } from './seg-streams';

/** One pre-training batch, as `TrainData.epoch` yields it: NCHW images and, for labelled data, their labels. */
export interface TrainBatch {
  /** NCHW: float32 already normalised, or uint8 that the trainer normalises on the device with `TrainData.normalize`. */
  images: Float32Array | Uint8Array;
  shape: number[];
  labels?: Int32Array;
}

/** Per-channel mean/std of the normalisation, as fractions of the full 0..255 range. */
export interface Normalization {
  mean: readonly number[];
  std: readonly number[];
}

/** Seeded pre-training data: the same seed, epoch and batch index always give the same batch. */
export interface TrainData {
  batchesPerEpoch: number;
  /** Mean/std for uint8 batches (absent when batches are normalised float32). */
  normalize?: Normalization | null;
  /** Batches of `epoch` from batch index `start` on, up to batch `end` (exclusive; default: the epoch's end). */
  epoch(epoch: number, start: number, end?: number): AsyncIterable<TrainBatch>;
  close(): Promise<void> | void;
}

/** What a pre-training run asks of the data pipeline. */
export interface TrainDataRequest {
  dataset: string;
  dataPath?: string;
  /** Square crop size. */
  imgSize: number;
  /** Synthetic objects: images in the training split. */
  syntheticSize: number;
  seed: number;
  /** RandomResizedCrop's minimum scale. */
  minScale: number;
  hflip: boolean;
  batchSize: number;
  /** Loader worker threads (undefined: the loader's default). */
  numWorkers?: number;
  /** Hand out uint8 batches (normalised later, on the device) instead of normalised float32. */
  uint8: boolean;
  /** Pixel limit and EXIF policy for image files (undefined: the defaults). */
  imageInput?: ImageInputOptions;
  /** Tar shards: samples each loader worker shuffles among. */
  shuffleBuffer?: number;
}

/**
 * Pre-training data of one data-parallel rank. Each rank reads its slice of every global batch
 * (worldSize × batchSize images): for indexed datasets exactly the images one process with the
 * global batch would read, for shards disjoint parts of the epoch's shard stream.
 */
export interface RankedTrainData extends TrainData {
  rank: number;
  worldSize: number;
  /** Images per micro-step over all ranks (worldSize × batchSize). */
  globalBatchSize: number;
  /**
   * Batches of `epoch` after `sample` images of it were consumed, counted over all ranks (= batch ×
   * global batch size of the run that stopped): resumes at another world size or batch size.
   * Exact for indexed datasets (the rest of the same image order); for shards the nearest batch
   * boundary of this run's plan.
   */
  epochFromSample(epoch: number, sample: number): AsyncIterable<TrainBatch>;
  /** What must be the same on every rank (see datasetIdentity); absent: only batchesPerEpoch is compared. */
  identity?(): Record<string, unknown>;
}

/**
 * The augmentation a batch stream applies, by name. The names:
 * - 'none': the evaluation transform (resize/centre crop to the model's size, normalise);
 * - 'crop-flip': RandomResizedCrop + horizontal flip (MAE's linear-probe training transform, with its
 *   util/crop.py crop: one draw clipped to the image);
 * - 'resize-crop-flip': Resize (short side, bicubic) + RandomCrop + horizontal flip (the SemAIM
 *   authors' linear-probe training transform);
 * - 'finetune': the fine-tuning transform (RandomResizedCrop, flip, RandAugment m9-mstd0.5, random
 *   erasing 0.25). Mixup/cutmix and label smoothing are applied later, on tensors (src/eval/mix.ts).
 */
export type Augment = 'none' | 'crop-flip' | 'resize-crop-flip' | 'finetune';

/** One batch of labelled images, as `LabelledData.batches` yields it to the evaluations and fine-tuning. */
export interface LabelledBatch {
  /** NCHW float32, already normalised. */
  images: Float32Array;
  shape: number[];
  /** Class indices in 0..numClasses-1. */
  labels: Int32Array;
  /**
   * Rows in place of an unusable image: another image of the data in a shuffled (training) pass, which
   * keeps them so batches keep their size; a blank row (index -1) in an unshuffled (evaluation) pass.
   * Evaluation leaves them out, so no image counts twice and no blank one counts.
   */
  standIns?: Int32Array;
  /**
   * The dataset index of each row (a stand-in row: that of the image it holds, -1 when blank). Rows need not come in
   * index order: over tar shards with several loader workers, batch j comes from worker j mod K's part.
   */
  indices?: Int32Array;
}

/**
 * How `LabelledData.batches` iterates: batch size, shuffle, epoch, augmentation, seed, and where the epoch
 * starts and stops.
 */
export interface BatchOptions {
  batchSize: number;
  /** Shuffle with a permutation that depends only on (seed, epoch). */
  shuffle: boolean;
  epoch: number;
  augment: Augment;
  /** Seed of the shuffle and of the augmentation (default 0). */
  seed?: number;
  /** Drop the last incomplete batch (training). Default false. */
  dropLast?: boolean;
  /**
   * Start at this batch index of the epoch (resume). The batches from `start` on must be exactly
   * those an uninterrupted epoch gives (same images, same augmentation draws).
   */
  start?: number;
  /** Stop before this batch index of the epoch (default: at its end): the batches from there on are not built. */
  end?: number;
}

/** A pass over the data: the batch options but the epoch and where it starts and ends. */
export type PassOptions = Omit<BatchOptions, 'epoch' | 'start' | 'end'>;

/**
 * A labelled image set that the evaluations (k-NN, linear probe, fine-tuning) read as seeded batch streams;
 * `makeEvalData` builds it from a dataset name, MemoryLabelledData from arrays.
 */
export interface LabelledData {
  /** Number of images. */
  size: number;
  numClasses: number;
  classNames?: string[];
  /** Image shape [C, H, W] when known (checked against the encoder before any work). */
  imageShape?: number[];
  batches(o: BatchOptions): AsyncIterable<LabelledBatch>;
  close(): Promise<void> | void;
  /** What must be the same on every rank of a data-parallel evaluation (see datasetIdentity); absent: only the size is compared. */
  identity?(): Record<string, unknown>;
}

/**
 * Which classes one list of class names has and the other lacks, for a message about their counts:
 * "'eel' only in the train split; 'fox' only in the test split" (up to 5 of each named); '' when neither has any.
 */
export function classesOnlyIn(a: readonly string[], b: readonly string[], inA: string, inB: string): string {
  const some = (names: string[]) =>
    names
      .slice(0, 5)
      .map((n) => printable(`'${n}'`))
      .join(', ') + (names.length > 5 ? `, ... (${names.length})` : '');
  const [setA, setB] = [new Set(a), new Set(b)];
  const [onlyA, onlyB] = [a.filter((n) => !setB.has(n)), b.filter((n) => !setA.has(n))];
  return [onlyA.length ? `${some(onlyA)} only in ${inA}` : '', onlyB.length ? `${some(onlyB)} only in ${inB}` : ''].filter(Boolean).join('; ');
}

/**
 * Why a test split cannot be scored against a train split, or null: label k must mean the same class
 * in both (a folder dataset numbers its class folders per split, so a renamed or missing folder on one
 * side shifts every label after it).
 */
export function splitClassMismatch(train: { numClasses: number; classNames?: string[] }, test: { numClasses: number; classNames?: string[] }): string | null {
  const [a, b] = [train.classNames, test.classNames];
  if (train.numClasses !== test.numClasses) {
    const which = a && b ? classesOnlyIn(a, b, 'the train split', 'the test split') : '';
    return `the train split has ${train.numClasses} classes, the test split ${test.numClasses}${which ? `: ${which}` : ''}`;
  }
  if (!a || !b) return null;
  const k = a.findIndex((name, i) => name !== b[i]);
  return k < 0 ? null : `class ${k} is '${a[k]}' in the train split but '${b[k]}' in the test split: both splits need the same class names`;
}

/**
 * The row positions that put rows in the order of their dataset indices (stable), or null when they
 * already are (or the indices are unknown). Evaluation sets promise dataset order; tar shards read by
 * several loader workers give their rows in batch order instead.
 */
export function indexOrder(indices: Int32Array | null): number[] | null {
  if (!indices || indices.every((v, i) => i === 0 || indices[i - 1] <= v)) return null;
  return Array.from(indices.keys()).sort((a, b) => indices[a] - indices[b] || a - b);
}

/** Number of batches one epoch gives. */
export function batchesPerEpoch(size: number, batchSize: number, dropLast: boolean): number {
  return dropLast ? Math.floor(size / batchSize) : Math.ceil(size / batchSize);
}

/** Which labelled split a command asks for: 'train' (fit k-NN bank / heads) or 'test' (measure). */
export type Split = 'train' | 'test';

/** What the evaluation commands tell the data adapter. */
export interface EvalDataRequest {
  split: Split;
  dataset: string;
  dataPath?: string;
  /** Square image size the encoder expects. */
  imgSize: number;
  /** Use at most this many images (a seeded, class-balanced subset when smaller than the split; synthetic objects: the first N). */
  limit?: number;
  seed: number;
  /** Loader worker threads (undefined: the loader's default). */
  numWorkers?: number;
  /** Pixel limit and EXIF policy for image files (undefined: the defaults). */
  imageInput?: ImageInputOptions;
  /** The training pass the job will read (train split): its loader is made, and checked, with the data. */
  trainPass?: PassOptions;
}

/**
 * The data factories that evaluations and experiments are given: the real datasets
 * (src/data/factories.ts) from the command line, in-memory data in tests.
 */
export interface DataFactories {
  /** Labelled data; with `dist`, each rank's batches are its slices of the global batches. */
  makeEvalData(request: EvalDataRequest, dist?: RankSlice): Promise<LabelledData> | LabelledData;
  /** Pre-training data (the order ablation pre-trains). */
  makeTrainData(request: TrainDataRequest, dist?: RankSlice): Promise<TrainData> | TrainData;
  /** Data with per-pixel labels, for `ablate --eval segprobe` (src/data/seg-loader.ts's makeSegData). */
  makeSegData?(request: SegDataRequest): Promise<SegData> | SegData;
}
