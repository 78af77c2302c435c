// Batches of images and label masks for the segmentation probe. Samples go through the same
// transform pipeline as the classification data (one geometric plan per sample; the mask plane is
// resampled nearest-neighbour, so labels are never blended), on the calling thread.
//
// Unusable samples follow the loader's bad-input rule with one difference: they are left out, not
// replaced (a metric over a test set must not count an image twice), named once on stderr and
// counted by reason in `skipped()`. A batch is its positions of the epoch's order minus those
// (segBatchPlan), so several ranks reading their slices see the batches one process reads.
import { Rng, permutation } from './rng';
import { dataError, withErrorKind } from '../util/errors';
import { checkJobHooks, type HookKind } from '../util/options';
import { Pipeline, SizeMismatchError } from './pipeline';
import { DecodeError } from './codecs/errors';
import { centerCrop, evalTransforms, horizontalFlip, normalize, randomResizedCrop, resize, type TransformSpec } from './transforms';
import { SegSkipError, type SegSource } from './sources/seg-source';
import { syntheticSegSource, type SyntheticSegClasses } from './sources/seg-synthetic';
import { segFolder } from './sources/seg-folder';
import type { ImageInputOptions } from './options';
import {
  IGNORE_INDEX,
  SkipTally,
  segBatchPlan,
  type SegAugment,
  type SegBatch,
  type SegBatchOptions,
  type SegData,
  type SegSkip,
  type SkipSummary,
} from './seg-streams';
import { quotedPath } from '../util/printable';

/** The transforms of a segmentation batch stream at a square size. */
export function segTransforms(augment: SegAugment, size: number, fixedSize: readonly [number, number] | null): TransformSpec[] {
  if (augment === 'crop-flip') return [randomResizedCrop(size, { scale: [0.5, 1], interpolation: 'bicubic' }), horizontalFlip(0.5), normalize()];
  const native = fixedSize && fixedSize[0] === size && fixedSize[1] === size;
  // As the classification data: images at the model's size are only normalised; others resize + centre-crop.
  return native ? [normalize()] : fixedSize ? [resize(size, { interpolation: 'bicubic' }), centerCrop(size), normalize()] : evalTransforms(size);
}

export class SegLoader implements SegData {
  readonly size: number;
  readonly numClasses: number;
  readonly classNames: string[];
  readonly ignoreIndex = IGNORE_INDEX;
  readonly imageShape: number[];
  readonly name: string;
  private readonly tally: SkipTally;
  private readonly pipelines = new Map<SegAugment, Pipeline>();

  constructor(
    readonly source: SegSource,
    readonly imgSize: number,
    warn?: (line: string) => void,
  ) {
    if (source.length === 0 && source.listingSkips.length === 0) throw new Error(`${quotedPath(source.root)} holds no image`);
    this.size = source.length;
    this.numClasses = source.classes.length;
    this.classNames = [...source.classes];
    this.imageShape = [3, imgSize, imgSize];
    this.name = source.root;
    this.tally = new SkipTally(`data ${source.root}`, warn);
    for (const s of source.listingSkips) this.tally.add(s);
    if (source.length === 0) {
      const skips = source.listingSkips;
      const byReason = new Map<string, number>();
      for (const s of skips) byReason.set(s.reason, (byReason.get(s.reason) ?? 0) + 1);
      const counts = [...byReason].map(([reason, n]) => `${n} ${reason}`).join(', ');
      throw new Error(
        `${quotedPath(source.root)}: no usable sample: ${skips.length} image(s) left out (${counts}); first: ${skips[0].name}: ${skips[0].message}`,
      );
    }
  }

  private pipeline(augment: SegAugment): Pipeline {
    let p = this.pipelines.get(augment);
    if (!p) {
      p = new Pipeline(segTransforms(augment, this.imgSize, this.source.fixedSize));
      this.pipelines.set(augment, p);
    }
    return p;
  }

  async *batches(o: SegBatchOptions): AsyncGenerator<SegBatch> {
    const n = this.size;
    const seed = o.seed ?? 0;
    const order = o.shuffle ? permutation(n, seed, 'shuffle', o.epoch) : Int32Array.from({ length: n }, (_, i) => i);
    const pipeline = this.pipeline(o.augment);
    const plan = segBatchPlan(n, o);
    const S = this.imgSize;
    const per = 3 * S * S;
    const hw = S * S;
    let used = 0;
    for (let j = 0; j < plan.count; j++) {
      const { start, globalSize, from, to } = plan.batch(j);
      const images = new Float32Array((to - from) * per);
      const masks = new Uint8Array((to - from) * hw);
      const indices = new Int32Array(to - from);
      const slots = new Int32Array(to - from);
      let k = 0;
      for (let slot = from; slot < to; slot++) {
        const i = order[start + slot];
        const name = this.source.name(i);
        if (this.tally.has(name)) continue;
        try {
          const opened = this.source.open(i);
          const handle = opened instanceof Promise ? await opened : opened;
          pipeline.run(handle, new Rng(seed, o.epoch, i, 0), images, k * per, S, S, masks, k * hw);
        } catch (e) {
          if (e instanceof SizeMismatchError) throw new Error(`${name}: ${e.message}`, { cause: e });
          const reason = e instanceof SegSkipError || e instanceof DecodeError ? e.reason : 'corrupt';
          this.tally.add({ name, reason, message: (e as Error).message });
          continue;
        }
        indices[k] = i;
        slots[k++] = slot;
      }
      used += k;
      if (k === 0 && !o.slice) continue;
      yield {
        images: images.subarray(0, k * per),
        shape: [k, 3, S, S],
        masks: masks.subarray(0, k * hw),
        indices: indices.subarray(0, k),
        slots: slots.subarray(0, k),
        globalSize,
      };
    }
    // With a rank slice, a rank may hold no usable sample; the caller counts over all ranks.
    if (used === 0 && !o.slice && plan.count > 0)
      throw new Error(`${quotedPath(this.source.root)}: none of its ${n} samples could be used (${describe(this.tally.summary())})`);
  }

  skipped(): SkipSummary {
    return this.tally.summary();
  }

  skippedSamples(): SegSkip[] {
    return this.tally.samples();
  }

  close(): void {}
}

function describe(s: SkipSummary): string {
  return Object.entries(s.byReason)
    .map(([r, c]) => `${r} ${c}`)
    .join(', ');
}

/** What the segmentation probe asks the data adapter for. */
export interface SegDataRequest {
  split: 'train' | 'test';
  /** 'synthetic' or 'seg-folder'. */
  dataset: string;
  dataPath?: string;
  imgSize: number;
  /** At most this many samples (synthetic: the first N; folder: a seeded subset). */
  limit?: number;
  seed: number;
  /** Synthetic objects: 'shapes' (background + 10 shapes) or 'object' (background + object). */
  segClasses?: SyntheticSegClasses;
  /** Folder without classes.txt: the number of classes. */
  numClasses?: number;
  reduceZeroLabel?: boolean;
  /** seg-folder: --max-image-pixels and --exif-orientation. */
  imageInput?: ImageInputOptions;
  warn?: (line: string) => void;
}

export const SEG_DATASETS = ['synthetic', 'seg-folder'] as const;

/**
 * The keys of a SegDataRequest (tsc wants every one listed) and the kind of each value: any other key is refused,
 * never ignored, and so is a value of another kind (`reduceZeroLabel: 'false'`, a truthy string, made label 0 ignored).
 */
const SEG_REQUEST_KEYS: Record<keyof SegDataRequest, HookKind> = {
  split: 'string',
  dataset: 'string',
  dataPath: 'string',
  imgSize: 'number',
  limit: 'number',
  seed: 'number',
  segClasses: 'string',
  numClasses: 'number',
  reduceZeroLabel: 'boolean',
  imageInput: 'object',
  warn: 'function',
};

/** Segmentation data by name. Synthetic splits are the generator's disjoint train and 'val' streams (5000 / 1000 images unless limited). */
export function makeSegData(r: SegDataRequest): SegData {
  checkJobHooks(r, SEG_REQUEST_KEYS, 'request');
  return withErrorKind(() => new SegLoader(segSource(r), r.imgSize, r.warn), dataError); // DataError (ERR_DATA) unless already coded
}

function segSource(r: SegDataRequest): SegSource {
  let source: SegSource;
  if (r.dataset === 'synthetic') {
    source = syntheticSegSource({
      size: r.imgSize,
      count: r.limit ?? (r.split === 'train' ? 5000 : 1000),
      seed: r.seed,
      split: r.split === 'train' ? 'train' : 'val',
      segClasses: r.segClasses ?? 'shapes',
    });
  } else if (r.dataset === 'seg-folder') {
    if (!r.dataPath) throw new Error("dataset 'seg-folder' needs --data-path (a folder with train/ and test/, each holding images/ and masks/)");
    source = segFolder(r.dataPath, {
      split: r.split,
      numClasses: r.numClasses,
      reduceZeroLabel: r.reduceZeroLabel,
      limit: r.limit,
      seed: r.seed,
      imageInput: r.imageInput,
    });
  } else {
    throw new Error(`dataset '${r.dataset}' has no segmentation masks (known: ${SEG_DATASETS.join(', ')})`);
  }
  return source;
}
