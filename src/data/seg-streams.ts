// What the segmentation probe needs from a dataset with per-pixel labels, a tally of the samples
// that could not be used, and an in-memory implementation (tests). The real datasets (synthetic
// objects, the images/ + masks/ folder layout) are adapted to this interface in src/data/seg-loader.ts.
import { checkRankSlice, type RankSlice } from './sharding';
import { stderrLine } from '../util/console-line';
import { printable, quotedPath } from '../util/printable';
import { mulberry32 } from '../util/prng';

/** The mask value of pixels without a label (VOC, ADE20K). */
export const IGNORE_INDEX = 255;

/** 'none': the evaluation transform; 'crop-flip': random resized crop (scale 0.5–1) + horizontal flip, masks nearest-neighbour. */
export type SegAugment = 'none' | 'crop-flip';

/** One batch of a segmentation stream (`SegData.batches`): normalised NCHW images with their N×H×W label masks. */
export interface SegBatch {
  /** NCHW float32, normalised. */
  images: Float32Array;
  shape: number[];
  /** N×H×W class indices (IGNORE_INDEX = not labelled). */
  masks: Uint8Array;
  /** Dataset index of each sample. */
  indices: Int32Array;
  /** Each sample's place among the positions of the global batch (slots of skipped samples stay empty). */
  slots: Int32Array;
  /** Positions in the global batch (all ranks' slices, usable or not). */
  globalSize: number;
}

/**
 * How `SegData.batches` iterates an epoch: batch size, shuffle, epoch, augmentation, seed (default 0) and an
 * optional data-parallel slice.
 */
export interface SegBatchOptions {
  batchSize: number;
  shuffle: boolean;
  epoch: number;
  augment: SegAugment;
  seed?: number;
  /** Drop the last incomplete batch. Default false. */
  dropLast?: boolean;
  /**
   * Data-parallel: this rank's slice of every global batch of `batchSize × worldSize` positions
   * (segBatchPlan). Every global batch is yielded, an empty one included, so that all ranks take the
   * same number of steps; without it a batch with no usable sample is not yielded.
   */
  slice?: RankSlice;
}

/**
 * The batches of an epoch over `order` (positions → dataset indices): global batch j is positions
 * [j·G, min((j+1)·G, n)) with G = batchSize × worldSize, and rank r reads the contiguous part
 * [⌊len·r/W⌋, ⌊len·(r+1)/W⌋) of it. A batch is those positions minus the unusable samples, so its
 * content never depends on what an earlier batch skipped, and the ranks' parts in rank order are
 * the batch one process reads.
 */
export function segBatchPlan(
  n: number,
  o: SegBatchOptions,
): { count: number; batch(j: number): { start: number; globalSize: number; from: number; to: number } } {
  const { rank: r, worldSize: W } = o.slice ?? { rank: 0, worldSize: 1 };
  checkRankSlice({ rank: r, worldSize: W });
  if (!(Number.isInteger(o.batchSize) && o.batchSize >= 1)) throw new RangeError(`data: batchSize must be a positive integer, got ${o.batchSize}`);
  const G = o.batchSize * W;
  return {
    count: o.dropLast ? Math.floor(n / G) : Math.ceil(n / G),
    batch(j) {
      const start = j * G;
      const globalSize = Math.min(G, n - start);
      return { start, globalSize, from: Math.floor((globalSize * r) / W), to: Math.floor((globalSize * (r + 1)) / W) };
    },
  };
}

/** One sample that was left out, and why. */
export interface SegSkip {
  name: string;
  /** 'no-mask', 'mask-ambiguous', 'mask-size', 'mask-labels', 'mask-unreadable', or an image decode reason ('corrupt', 'truncated', ...). */
  reason: string;
  message: string;
}

/**
 * What `SegData.skipped()` returns: how many distinct samples were left out, the count by reason, and the
 * first 20 by name.
 */
export interface SkipSummary {
  /** Distinct samples left out. */
  count: number;
  byReason: Record<string, number>;
  /** The first few, by name. */
  samples: SegSkip[];
}

/**
 * Images with per-pixel class labels for the segmentation probe, as `makeSegData` (or MemorySegData, in
 * tests) gives them. Unusable samples are left out of the batches (a batch may be shorter, never refilled)
 * and counted in `skipped()`.
 */
export interface SegData {
  /** Samples listed (those skipped while reading are not removed from this count). */
  size: number;
  numClasses: number;
  classNames: string[];
  /** The mask value of unlabelled pixels: the probe takes IGNORE_INDEX (255) only, and refuses data with another (a DataError). */
  ignoreIndex: number;
  /** [C, H, W] of every batch image. */
  imageShape: number[];
  /** Where the data came from, for messages. */
  name: string;
  /** Batches by segBatchPlan; unusable samples are left out (not replaced), so a batch may be shorter. */
  batches(o: SegBatchOptions): AsyncIterable<SegBatch>;
  /** Every sample left out so far (listing and reading). */
  skipped(): SkipSummary;
  /** The same, each sample named (to merge what several ranks skipped: mergeSkips). */
  skippedSamples(): SegSkip[];
  close(): Promise<void> | void;
}

/** Distinct skipped samples, reported on stderr once each (the first `report`, then a count). */
export class SkipTally {
  private readonly seen = new Map<string, SegSkip>();

  constructor(
    private readonly what: string,
    private readonly warn: (line: string) => void = stderrLine,
    private readonly report = 20,
  ) {}

  add(s: SegSkip): void {
    if (this.seen.has(s.name)) return;
    this.seen.set(s.name, s);
    if (this.seen.size <= this.report) this.warn(`${this.what}: skipping ${quotedPath(s.name)}: ${printable(s.message)}`);
    else if (this.seen.size === this.report + 1) this.warn(`${this.what}: more samples skipped; the count is in the result file`);
  }

  has(name: string): boolean {
    return this.seen.has(name);
  }

  summary(): SkipSummary {
    return summarizeSkips([...this.seen.values()], this.report);
  }

  samples(): SegSkip[] {
    return [...this.seen.values()];
  }
}

/**
 * Counts by reason and the first `report` samples by name of a list of distinct skipped samples (by
 * name, not in the order met: the same summary from one process and from several ranks).
 */
export function summarizeSkips(skips: SegSkip[], report = 20): SkipSummary {
  const byReason: Record<string, number> = {};
  for (const s of skips) byReason[s.reason] = (byReason[s.reason] ?? 0) + 1;
  const byName = [...skips].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { count: skips.length, byReason, samples: byName.slice(0, report) };
}

/** Several ranks' skipped samples as one list, each sample once (every rank lists the listing's skips). */
export function mergeSkips(lists: SegSkip[][]): SegSkip[] {
  const byName = new Map<string, SegSkip>();
  for (const list of lists) for (const s of list) if (!byName.has(s.name)) byName.set(s.name, s);
  return [...byName.values()];
}

/** "3 skipped (mask-size 2, no-mask 1)" or "none skipped". */
export function describeSkips(s: SkipSummary): string {
  if (!s.count) return 'none skipped';
  return `${s.count} skipped (${Object.entries(s.byReason)
    .map(([r, n]) => `${r} ${n}`)
    .join(', ')})`;
}

function permutation(n: number, seed: number, epoch: number): Int32Array {
  // A seeded Fisher–Yates shuffle: tests only need determinism.
  const rand = mulberry32(seed * 1_000_003 + epoch * 7919 + 12345);
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
    const plan = segBatchPlan(this.size, o);
    for (let j = 0; j < plan.count; j++) {
      const { start, globalSize, from, to } = plan.batch(j);
      const idx = order.subarray(start + from, start + to);
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
      if (!idx.length && !o.slice) continue;
      const slots = Int32Array.from(idx, (_, i) => from + i);
      yield { images, shape: [idx.length, C, H, W], masks, indices: Int32Array.from(idx), slots, globalSize };
    }
  }

  skipped(): SkipSummary {
    return { count: 0, byReason: {}, samples: [] };
  }

  skippedSamples(): SegSkip[] {
    return [];
  }

  close(): void {}
}
