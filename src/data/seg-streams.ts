// What the segmentation probe needs from a dataset with per-pixel labels, a tally of the samples
// that could not be used, and an in-memory implementation (tests). The real datasets (synthetic
// objects, the images/ + masks/ folder layout) are adapted to this interface in src/data/seg-loader.ts.
/** The mask value of pixels without a label (VOC, ADE20K). */
export const IGNORE_INDEX = 255;

/** 'none': the evaluation transform; 'crop-flip': random resized crop (scale 0.5–1) + horizontal flip, masks nearest-neighbour. */
export type SegAugment = 'none' | 'crop-flip';

export interface SegBatch {
  /** NCHW float32, normalised. */
  images: Float32Array;
  shape: number[];
  /** N×H×W class indices (IGNORE_INDEX = not labelled). */
  masks: Uint8Array;
  /** Dataset index of each sample. */
  indices: Int32Array;
}

export interface SegBatchOptions {
  batchSize: number;
  shuffle: boolean;
  epoch: number;
  augment: SegAugment;
  seed?: number;
  /** Drop the last incomplete batch. Default false. */
  dropLast?: boolean;
}

/** One sample that was left out, and why. */
export interface SegSkip {
  name: string;
  /** 'no-mask', 'mask-size', 'mask-labels', 'mask-unreadable', or an image decode reason ('corrupt', 'truncated', ...). */
  reason: string;
  message: string;
}

export interface SkipSummary {
  /** Distinct samples left out. */
  count: number;
  byReason: Record<string, number>;
  /** The first few, by name. */
  samples: SegSkip[];
}

export interface SegData {
  /** Samples listed (those skipped while reading are not removed from this count). */
  size: number;
  numClasses: number;
  classNames: string[];
  ignoreIndex: number;
  /** [C, H, W] of every batch image. */
  imageShape: number[];
  /** Where the data came from, for messages. */
  name: string;
  /** Unusable samples are left out of the batches (not replaced), so a batch may be shorter. */
  batches(o: SegBatchOptions): AsyncIterable<SegBatch>;
  /** Every sample left out so far (listing and reading). */
  skipped(): SkipSummary;
  close(): Promise<void> | void;
}

/** Distinct skipped samples, reported on stderr once each (the first `report`, then a count). */
export class SkipTally {
  private readonly seen = new Map<string, SegSkip>();

  constructor(
    private readonly what: string,
    private readonly warn: (line: string) => void = (l) => process.stderr.write(l + '\n'),
    private readonly report = 20,
  ) {}

  add(s: SegSkip): void {
    if (this.seen.has(s.name)) return;
    this.seen.set(s.name, s);
    if (this.seen.size <= this.report) this.warn(`${this.what}: skipping ${s.name}: ${s.message}`);
    else if (this.seen.size === this.report + 1) this.warn(`${this.what}: more samples skipped; the count is in the result file`);
  }

  has(name: string): boolean {
    return this.seen.has(name);
  }

  summary(): SkipSummary {
    const byReason: Record<string, number> = {};
    for (const s of this.seen.values()) byReason[s.reason] = (byReason[s.reason] ?? 0) + 1;
    return { count: this.seen.size, byReason, samples: [...this.seen.values()].slice(0, this.report) };
  }
}

/** "3 skipped (mask-size 2, no-mask 1)" or "none skipped". */
export function describeSkips(s: SkipSummary): string {
  if (!s.count) return 'none skipped';
  return `${s.count} skipped (${Object.entries(s.byReason)
    .map(([r, n]) => `${r} ${n}`)
    .join(', ')})`;
}

function permutation(n: number, seed: number, epoch: number): Int32Array {
  // A seeded Fisher–Yates shuffle (mulberry32): tests only need determinism.
  let a = (seed * 1_000_003 + epoch * 7919 + 12345) >>> 0;
  const rand = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/**
 * Images and masks held in memory. Augmentation 'crop-flip' flips every other sample (by index and
 * epoch) horizontally, images and masks together; no crops (tests need exact answers).
 */
export class MemorySegData implements SegData {
  readonly size: number;
  readonly imageShape: number[];
  readonly ignoreIndex = IGNORE_INDEX;
  readonly name = 'memory';

  constructor(
    readonly images: Float32Array,
    shape: number[],
    readonly masks: Uint8Array,
    readonly numClasses: number,
    readonly classNames: string[] = Array.from({ length: numClasses }, (_, i) => `class${i}`),
  ) {
    if (shape.length !== 4) throw new Error(`MemorySegData: expected an NCHW shape, got [${shape}]`);
    this.size = shape[0];
    this.imageShape = shape.slice(1);
    const [C, H, W] = this.imageShape;
    if (images.length !== this.size * C * H * W) throw new Error(`MemorySegData: ${images.length} values for shape [${shape}]`);
    if (masks.length !== this.size * H * W) throw new Error(`MemorySegData: ${masks.length} mask values for ${this.size} masks of ${H}×${W}`);
  }

  async *batches(o: SegBatchOptions): AsyncGenerator<SegBatch> {
    const [C, H, W] = this.imageShape;
    const per = C * H * W;
    const hw = H * W;
    const order = o.shuffle ? permutation(this.size, o.seed ?? 0, o.epoch) : Int32Array.from({ length: this.size }, (_, i) => i);
    const count = o.dropLast ? Math.floor(this.size / o.batchSize) : Math.ceil(this.size / o.batchSize);
    for (let b = 0; b < count; b++) {
      const idx = order.subarray(b * o.batchSize, Math.min((b + 1) * o.batchSize, this.size));
      const images = new Float32Array(idx.length * per);
      const masks = new Uint8Array(idx.length * hw);
      idx.forEach((src, i) => {
        const flip = o.augment !== 'none' && (src + o.epoch) % 2 === 1;
        for (let c = 0; c <= C; c++) {
          // c === C: the mask plane
          const from = c < C ? this.images.subarray(src * per + c * hw, src * per + (c + 1) * hw) : this.masks.subarray(src * hw, (src + 1) * hw);
          const to = c < C ? images.subarray(i * per + c * hw, i * per + (c + 1) * hw) : masks.subarray(i * hw, (i + 1) * hw);
          for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) to[y * W + x] = from[y * W + (flip ? W - 1 - x : x)];
        }
      });
      yield { images, shape: [idx.length, C, H, W], masks, indices: Int32Array.from(idx) };
    }
  }

  skipped(): SkipSummary {
    return { count: 0, byReason: {}, samples: [] };
  }

  close(): void {}
}
