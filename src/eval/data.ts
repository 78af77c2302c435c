// What evaluation needs from a labelled dataset, and an in-memory implementation (tests, cached
// arrays). The real datasets (CIFAR-10, synthetic objects, ImageFolder) are adapted to this
// interface by the data pipeline; evaluation never decodes images itself.
import * as torch from '../torch';
import type { TrainData } from '../train/pretrain';
import type { OptionValues } from '../util/options';
import type { SegDataRequest } from '../data/seg-loader';
import type { SegData } from './seg-data';

/**
 * Augmentation a batch stream applies:
 * - 'none': the evaluation transform (resize/centre crop to the model's size, normalise);
 * - 'crop-flip': RandomResizedCrop + horizontal flip (MAE's linear-probe training transform);
 * - 'finetune': the fine-tuning transform (RandomResizedCrop, flip, RandAugment m9-mstd0.5, random
 *   erasing 0.25). Mixup/cutmix and label smoothing are applied later, on tensors (src/eval/mix.ts).
 */
export type Augment = 'none' | 'crop-flip' | 'finetune';

export interface LabelledBatch {
  /** NCHW float32, already normalised. */
  images: Float32Array;
  shape: number[];
  /** Class indices in 0..numClasses-1. */
  labels: Int32Array;
}

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
}

export interface LabelledData {
  /** Number of images. */
  size: number;
  numClasses: number;
  classNames?: string[];
  /** Image shape [C, H, W] when known (checked against the encoder before any work). */
  imageShape?: number[];
  batches(o: BatchOptions): AsyncIterable<LabelledBatch>;
  close(): Promise<void> | void;
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
  /** Use at most this many images (a seeded, class-balanced subset when smaller than the split). */
  limit?: number;
  seed: number;
  /** Loader worker threads (undefined: the loader's default). */
  numWorkers?: number;
}

/**
 * The two data factories evaluation needs; wired to the real datasets by the CLI
 * (registerEvalData) and to in-memory data in tests.
 */
export interface EvalDataFactories {
  makeEvalData(request: EvalDataRequest): Promise<LabelledData> | LabelledData;
  /** Pre-training data for `ablate`, from resolved PRETRAIN_OPTIONS. */
  makeTrainData(options: OptionValues): Promise<TrainData> | TrainData;
  /** Data with per-pixel labels, for `ablate --eval segprobe` (src/data/seg-loader.ts's makeSegData). */
  makeSegData?(request: SegDataRequest): Promise<SegData> | SegData;
}

let registered: EvalDataFactories | null = null;

/** Installs the dataset adapters used by the evaluation commands. */
export function registerEvalData(f: EvalDataFactories): void {
  registered = f;
}

export function registeredEvalData(): EvalDataFactories {
  if (!registered) {
    throw new Error('no dataset adapter is registered for evaluation: call registerEvalData({ makeEvalData, makeTrainData }) ' +
      'from src/eval/data.ts before running knn/linprobe/finetune/ablate');
  }
  return registered;
}

// ------------------------------------------------------------------------ in memory

function permutation(n: number, seed: number, epoch: number): Int32Array {
  const p = torch.randperm(n, { generator: new torch.Generator(seed * 1_000_003 + epoch), device: 'cpu' });
  try {
    return Int32Array.from(p.data() as BigInt64Array, Number);
  } finally {
    p.dispose();
  }
}

/**
 * Labelled images held in memory (NCHW float32). Shuffling is a seeded permutation per epoch. The
 * augmentations are deliberately simple and deterministic in (seed, epoch, index): 'crop-flip' and
 * 'finetune' flip every image whose hash says so; no crops (tests need exact answers).
 */
export class MemoryLabelledData implements LabelledData {
  readonly size: number;
  readonly imageShape: number[];
  private readonly per: number;

  constructor(
    readonly images: Float32Array,
    shape: number[],
    readonly labels: Int32Array,
    readonly numClasses: number,
    readonly classNames?: string[],
  ) {
    if (shape.length !== 4) throw new Error(`MemoryLabelledData: expected an NCHW shape, got [${shape}]`);
    this.size = shape[0];
    this.imageShape = shape.slice(1);
    this.per = shape[1] * shape[2] * shape[3];
    if (images.length !== this.size * this.per) throw new Error(`MemoryLabelledData: ${images.length} values for shape [${shape}]`);
    if (labels.length !== this.size) throw new Error(`MemoryLabelledData: ${labels.length} labels for ${this.size} images`);
    for (const l of labels) {
      if (!(Number.isInteger(l) && l >= 0 && l < numClasses)) throw new Error(`MemoryLabelledData: label ${l} is outside 0..${numClasses - 1}`);
    }
  }

  /** From an NCHW float tensor and integer labels. */
  static fromTensor(images: torch.Tensor, labels: ArrayLike<number>, numClasses: number, classNames?: string[]): MemoryLabelledData {
    return new MemoryLabelledData(images.toFloat32Array(), images.shape, Int32Array.from(labels), numClasses, classNames);
  }

  /** A class-balanced subset of at most n images, chosen by a seeded permutation. */
  subset(n: number, seed = 0): MemoryLabelledData {
    if (n >= this.size) return this;
    const perm = permutation(this.size, seed, -1);
    const byClass: number[][] = Array.from({ length: this.numClasses }, () => []);
    for (const i of perm) byClass[this.labels[i]].push(i);
    const pick: number[] = [];
    for (let r = 0; pick.length < n; r++) for (const c of byClass) if (r < c.length && pick.length < n) pick.push(c[r]);
    pick.sort((a, b) => a - b);
    const images = new Float32Array(pick.length * this.per);
    pick.forEach((src, i) => images.set(this.images.subarray(src * this.per, (src + 1) * this.per), i * this.per));
    return new MemoryLabelledData(images, [pick.length, ...this.imageShape], Int32Array.from(pick, (i) => this.labels[i]), this.numClasses, this.classNames);
  }

  async *batches(o: BatchOptions): AsyncGenerator<LabelledBatch> {
    const seed = o.seed ?? 0;
    const order = o.shuffle ? permutation(this.size, seed, o.epoch) : Int32Array.from({ length: this.size }, (_, i) => i);
    const count = batchesPerEpoch(this.size, o.batchSize, !!o.dropLast);
    const [C, H, W] = this.imageShape;
    for (let b = o.start ?? 0; b < count; b++) {
      const idx = order.subarray(b * o.batchSize, Math.min((b + 1) * o.batchSize, this.size));
      const images = new Float32Array(idx.length * this.per);
      const labels = new Int32Array(idx.length);
      idx.forEach((src, i) => {
        const img = this.images.subarray(src * this.per, (src + 1) * this.per);
        if (o.augment !== 'none' && flipHash(seed, o.epoch, b * o.batchSize + i)) {
          const out = images.subarray(i * this.per, (i + 1) * this.per);
          for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) {
            const row = (c * H + y) * W;
            for (let x = 0; x < W; x++) out[row + x] = img[row + W - 1 - x];
          }
        } else {
          images.set(img, i * this.per);
        }
        labels[i] = this.labels[src];
      });
      yield { images, shape: [idx.length, C, H, W], labels };
    }
  }

  close(): void {}
}

/** A deterministic coin in (seed, epoch, position). */
function flipHash(seed: number, epoch: number, i: number): boolean {
  let h = (seed * 374761393 + epoch * 668265263 + i * 2246822519) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 2246822519) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 3266489917) >>> 0;
  return ((h ^ (h >>> 16)) & 1) === 1;
}
