// Builds one batch: opens, decodes and transforms each sample into preallocated batch arrays,
// replaces unusable samples, then applies batch-level mixup/cutmix and soft targets. Runs inside
// worker threads (worker.ts) or on the main thread when the loader has no workers.
//
// Bad samples: a file that cannot be used (empty, truncated, corrupt, unsupported, unreadable, or
// over the pixel limit) is recorded and replaced by another sample drawn with a seeded RNG, so every
// batch keeps its size; or, for an evaluation (`replace` off), its row is left blank with index -1.

import { Rng } from './rng';
import { DataError } from '../util/errors';
import { DecodeError, SKIP_REASONS, type SkipReason } from './codecs/errors';
import type { ExifOrientationPolicy } from './codecs/orientation';
import { createSource, packImage, packLayout, packedSize, type DatasetSpec, type SampleSource, type SourceOptions } from './dataset';
import { Pipeline, SizeMismatchError } from './pipeline';
import type { TransformSpec } from './transforms';
import { mixedTargets, type MixupOptions } from './mix';
import { arenaReset } from './simd';

export interface BuilderConfig {
  spec: DatasetSpec;
  transforms: TransformSpec[];
  uint8: boolean;
  dctScaling: boolean;
  /** PIL-exact JPEG decoding (see PipelineOptions.exactDecode); undefined = the pipeline's default. */
  exactDecode?: boolean;
  /** Grey level for alpha compositing. */
  background: number;
  /** Pixel limit checked from each header before decoding (undefined = the default, 0 = none). */
  maxPixels?: number;
  /** Apply or ignore the EXIF orientation of files. */
  exifOrientation?: ExifOrientationPolicy;
  masks: boolean;
  /** Output [h, w]. */
  size: [number, number];
  seed: number;
  mix: MixupOptions | null;
  labelSmoothing: number;
  numClasses: number;
  /** Consecutive replacement attempts before giving up on the dataset. */
  maxReplacements: number;
  /** false: an unusable sample's row is left blank (index -1) instead of replaced. */
  replace: boolean;
}

export interface BatchTask {
  epoch: number;
  batch: number;
  /** Data-parallel rank when the world has more than one (keys the batch-level mixing draws). */
  rank?: number;
  indices: Int32Array;
  /**
   * Per sample, which pass over the epoch's order it comes from: 1 for a repeat of the data-parallel padding
   * (keys its own augmentation draw, as another view of the image); absent when every sample is of pass 0.
   */
  passes?: Int32Array;
}

/**
 * An unusable sample met while building a batch (listed in `Batch.skipped`): its dataset index, its name
 * for messages (the file path for files), why it could not be used, and the decoder's message.
 */
export interface SkipRecord {
  index: number;
  name: string;
  reason: SkipReason;
  message: string;
}

export interface RawBatch {
  epoch: number;
  batch: number;
  images: Float32Array | Uint8Array;
  shape: [number, number, number, number];
  labels: Int32Array;
  indices: Int32Array;
  masks: Uint8Array | null;
  targets: Float32Array | null;
  /** Mixing coefficient applied (1 = none). */
  lam: number;
  skipped: SkipRecord[];
  /** Rows holding another sample in place of an unusable one. */
  standIns: number[];
}

/** One decoded (untransformed) image packed for the in-memory cache. */
export interface PackedChunk {
  start: number;
  data: ArrayBuffer;
  sizes: Int32Array;
  widths: Int32Array;
  heights: Int32Array;
  layout: Uint8Array;
  csx: Uint8Array;
  csy: Uint8Array;
  /** Reason code per failed image (-1 when fine), indexes SKIP_REASONS. */
  failed: Int8Array;
  skipped: SkipRecord[];
}

function sourceOptions(cfg: BuilderConfig): SourceOptions {
  return { background: cfg.background, maxPixels: cfg.maxPixels, exifOrientation: cfg.exifOrientation };
}

export class BatchBuilder {
  private source: SampleSource;
  private readonly pipeline: Pipeline;
  /** Samples known to be unusable (index → reason, message). */
  private readonly bad = new Map<number, { reason: SkipReason; message: string }>();

  constructor(private readonly cfg: BuilderConfig) {
    this.source = createSource(cfg.spec, sourceOptions(cfg));
    this.pipeline = new Pipeline(cfg.transforms, { uint8: cfg.uint8, dctScaling: cfg.dctScaling, exactDecode: cfg.exactDecode });
  }

  /** Switches to another description of the same samples (e.g. the decoded cache). */
  setSpec(spec: DatasetSpec): void {
    this.source = createSource(spec, sourceOptions(this.cfg));
  }

  async build(task: BatchTask): Promise<RawBatch> {
    const { cfg } = this;
    const n = task.indices.length;
    const [h, w] = cfg.size;
    const per = 3 * h * w;
    const images = cfg.uint8 ? new Uint8Array(n * per) : new Float32Array(n * per);
    const masks = cfg.masks ? new Uint8Array(n * h * w) : null;
    const labels = new Int32Array(n);
    const indices = new Int32Array(n);
    const skipped: SkipRecord[] = [];
    const standIns: number[] = [];
    for (let s = 0; s < n; s++) {
      const r = await this.sample(task, task.indices[s], task.passes?.[s] ?? 0, images, s * per, masks, s * h * w, skipped);
      labels[s] = r.label;
      indices[s] = r.index;
      if (r.index !== task.indices[s]) standIns.push(s);
    }
    const shape: [number, number, number, number] = [n, 3, h, w];
    const { lam, targets } = mixedTargets(images, shape, masks, labels, cfg, task);
    return { epoch: task.epoch, batch: task.batch, images, shape, labels, indices, masks, targets, lam, skipped, standIns };
  }

  private async sample(
    task: BatchTask,
    first: number,
    pass: number,
    out: Float32Array | Uint8Array,
    offset: number,
    masks: Uint8Array | null,
    maskOffset: number,
    skipped: SkipRecord[],
  ): Promise<{ index: number; label: number }> {
    const { cfg } = this;
    const N = this.source.length;
    const before = skipped.length;
    let index = first;
    for (let attempt = 0; ; attempt++) {
      const known = this.bad.get(index);
      if (known) {
        skipped.push({ index, name: this.source.name(index), reason: known.reason, message: known.message });
      } else {
        try {
          const opened = this.source.open(index);
          const handle = opened.handle instanceof Promise ? await opened.handle : opened.handle;
          // (the first pass's key is the one every loader since the first has used: single-process draws keep it)
          const rng = pass === 0 ? new Rng(cfg.seed, task.epoch, index, attempt) : new Rng(cfg.seed, task.epoch, index, attempt, 'pass', pass);
          this.pipeline.run(handle, rng, out, offset, cfg.size[0], cfg.size[1], masks, maskOffset);
          return { index, label: opened.label };
        } catch (e) {
          if (e instanceof SizeMismatchError) throw new DataError(`${this.source.name(index)}: ${e.message}`, { cause: e });
          const de = e instanceof DecodeError ? e : new DecodeError('corrupt', `cannot decode (${(e as Error).message})`);
          this.bad.set(index, { reason: de.reason, message: de.message });
          skipped.push({ index, name: this.source.name(index), reason: de.reason, message: de.message });
        }
      }
      if (!cfg.replace) {
        const [h, w] = cfg.size;
        out.fill(0, offset, offset + 3 * h * w); // (a decoder may have written part of it)
        masks?.fill(0, maskOffset, maskOffset + h * w);
        return { index: -1, label: this.source.label(first) };
      }
      if (attempt + 1 >= cfg.maxReplacements) {
        const last = skipped[skipped.length - 1];
        const images = new Set(skipped.slice(before).map((r) => r.index)).size; // (a small set draws the same ones again)
        const which = images === attempt + 1 ? '' : `, ${images} different image${images === 1 ? '' : 's'}`;
        throw new DataError(
          `data: ${attempt + 1} samples in a row could not be used (${N} in the dataset${which}; last: ${last.name}: ${last.message}); is the dataset readable?`,
        );
      }
      index = new Rng(cfg.seed, 'replace', task.epoch, first, attempt).int(N);
    }
  }

  /** Decodes samples [start, end) fully and packs them for the in-memory cache. */
  async decodeRange(start: number, end: number): Promise<PackedChunk> {
    const n = end - start;
    const sizes = new Int32Array(n);
    const widths = new Int32Array(n);
    const heights = new Int32Array(n);
    const layout = new Uint8Array(n);
    const csx = new Uint8Array(n);
    const csy = new Uint8Array(n);
    const failed = new Int8Array(n).fill(-1);
    const skipped: SkipRecord[] = [];
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let k = 0; k < n; k++) {
      const i = start + k;
      try {
        const opened = this.source.open(i);
        const handle = opened.handle instanceof Promise ? await opened.handle : opened.handle;
        // same decoder path as per-sample decoding (scratch memory; packImage copies right away); a
        // PIL-exact pipeline caches RGB bytes (a 4:2:0 JPEG then takes 3 bytes a pixel, not 1.5)
        arenaReset();
        const img = handle.decode({ scratch: true, rgb: this.pipeline.exactDecode });
        const size = packedSize(img);
        const bytes = new Uint8Array(size);
        packImage(img, bytes, 0);
        const l = packLayout(img);
        sizes[k] = size;
        widths[k] = img.width;
        heights[k] = img.height;
        layout[k] = l.layout;
        csx[k] = l.csx;
        csy[k] = l.csy;
        parts.push(bytes);
        total += size;
      } catch (e) {
        const de = e instanceof DecodeError ? e : new DecodeError('corrupt', `cannot decode (${(e as Error).message})`);
        failed[k] = SKIP_REASONS.indexOf(de.reason);
        skipped.push({ index: i, name: this.source.name(i), reason: de.reason, message: de.message });
      }
    }
    const data = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      data.set(p, o);
      o += p.length;
    }
    return { start, data: data.buffer, sizes, widths, heights, layout, csx, csy, failed, skipped };
  }
}
