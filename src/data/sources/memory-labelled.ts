// Labelled images held in memory (tests, cached arrays), as a LabelledData stream.
import * as torch from '../../torch';
import { BatchOptions, LabelledBatch, LabelledData, batchesPerEpoch, indexOrder } from '../streams';

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

  /**
   * Every image of `data` read once in its natural order without augmentation (decoded, resized and
   * normalised as its evaluation transform does), so that many evaluations of one dataset decode it
   * once. Memory: 4 bytes per value (CIFAR-10 at 32²: 12 KiB per image, 0.6 GB for 50,000).
   */
  static async load(data: LabelledData, batchSize = 512): Promise<MemoryLabelledData> {
    if (!data.imageShape) throw new Error('MemoryLabelledData.load: the data does not declare its image shape');
    const [C, H, W] = data.imageShape;
    const per = C * H * W;
    const images = new Float32Array(data.size * per);
    const labels = new Int32Array(data.size);
    let indices: Int32Array | null = new Int32Array(data.size); // the rows' dataset indices, while every batch gives them
    const leftOut: number[] = [];
    let n = 0;
    for await (const b of data.batches({ batchSize, shuffle: false, epoch: 0, augment: 'none' })) {
      const B = b.shape[0];
      if (n + B > data.size) throw new Error(`MemoryLabelledData.load: the data gave more than its size (${data.size}) images`);
      if (b.shape[1] !== C || b.shape[2] !== H || b.shape[3] !== W)
        throw new Error(`MemoryLabelledData.load: a batch of [${b.shape}], expected [B, ${C}, ${H}, ${W}]`);
      images.set(b.images, n * per);
      labels.set(b.labels, n);
      if (b.indices && indices) indices.set(b.indices, n);
      else indices = null;
      for (const r of b.standIns ?? []) leftOut.push(n + r);
      n += B;
    }
    if (n !== data.size) throw new Error(`MemoryLabelledData.load: the data gave ${n} images, its size is ${data.size}`);
    const order = indexOrder(indices); // in dataset order (tar shards read by several workers give batch order)
    if (!order && !leftOut.length) return new MemoryLabelledData(images, [n, C, H, W], labels, data.numClasses, data.classNames);
    // every image once: a row in place of an unusable image (another image, or a blank row) is left out
    const skip = new Set(leftOut);
    const rows = (order ?? [...Array(n).keys()]).filter((r) => !skip.has(r));
    const kept = new Float32Array(rows.length * per);
    rows.forEach((src, i) => kept.set(images.subarray(src * per, (src + 1) * per), i * per));
    return new MemoryLabelledData(
      kept,
      [rows.length, C, H, W],
      Int32Array.from(rows, (i) => labels[i]),
      data.numClasses,
      data.classNames,
    );
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
    return new MemoryLabelledData(
      images,
      [pick.length, ...this.imageShape],
      Int32Array.from(pick, (i) => this.labels[i]),
      this.numClasses,
      this.classNames,
    );
  }

  async *batches(o: BatchOptions): AsyncGenerator<LabelledBatch> {
    const seed = o.seed ?? 0;
    const order = o.shuffle ? permutation(this.size, seed, o.epoch) : Int32Array.from({ length: this.size }, (_, i) => i);
    const count = Math.min(batchesPerEpoch(this.size, o.batchSize, !!o.dropLast), o.end ?? Infinity);
    const [C, H, W] = this.imageShape;
    for (let b = o.start ?? 0; b < count; b++) {
      const idx = order.subarray(b * o.batchSize, Math.min((b + 1) * o.batchSize, this.size));
      const images = new Float32Array(idx.length * this.per);
      const labels = new Int32Array(idx.length);
      idx.forEach((src, i) => {
        const img = this.images.subarray(src * this.per, (src + 1) * this.per);
        if (o.augment !== 'none' && flipHash(seed, o.epoch, b * o.batchSize + i)) {
          const out = images.subarray(i * this.per, (i + 1) * this.per);
          for (let c = 0; c < C; c++)
            for (let y = 0; y < H; y++) {
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
