// Executes a transform list on one sample and writes it into a batch slot.
//
// Fast path (no RandAugment): geometric plan → decode only the needed region (JPEG: also a
// DCT-domain reduction when downscaling ≥ 2×) → one resampling pass fused with colour conversion
// and normalisation straight into the batch. With RandAugment the resampled sample goes through
// planar RGB bytes first. Random erasing runs last, on the written sample.

import type { Rng } from './rng';
import type { ImageHandle } from './codecs/decode';
import type { OutputFormat } from './resample';
import { resampleToOutput, resamplePlane } from './resample';
import { simdResampleToOutput, arenaReset } from './simd';
import { buildPlan, neededRegion, reductionFor, type Plan } from './geometry';
import { validateTransforms, isGeometric, type TransformSpec, type RandAugmentSpec, type NormalizeSpec, type RandomErasingSpec } from './transforms';
import { floatFormat, writeCHW } from './color';
import { applyRandAugment } from './randaugment';
import { randomErase } from './erasing';
import { fullPlane } from './image';

/**
 * Output and decoding settings of a {@link Pipeline}: float32 unless `uint8`, DCT scaling on by default,
 * PIL-exact decoding unless the transforms crop at random.
 */
export interface PipelineOptions {
  /** Emit bytes (no normalisation) instead of float32. */
  uint8?: boolean;
  /** Allow JPEG DCT-domain downscaling when the plan shrinks by 2× or more (default true). */
  dctScaling?: boolean;
  /**
   * Decode as PIL does (libjpeg's output): a JPEG is decoded at full resolution, its chroma upsampled
   * and converted to RGB bytes per pixel, then resized like a PNG; no DCT-domain reduction. Otherwise
   * (fused) Y, Cb and Cr are resized each from its own grid and converted after. Default: exact unless
   * the transforms crop at random (training augmentation, where the fused path's 2–3× throughput
   * counts; evaluation transforms are deterministic and get PIL's pixels). See docs/METHOD.md §6.5.
   */
  exactDecode?: boolean;
}

export class SizeMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SizeMismatchError';
  }
}

/**
 * Runs a transform list on one opened image and writes the result into a batch slot (3×h×w, CHW): what the
 * loaders' workers do per sample, exported for single-image tools. Without `normalize()` float output is
 * v/255. The constructor throws when the transforms are out of order.
 */
export class Pipeline {
  readonly geometric: TransformSpec[];
  readonly randAug: RandAugmentSpec | null;
  readonly normalize: NormalizeSpec | null;
  readonly erasing: RandomErasingSpec | null;
  readonly format: OutputFormat;
  readonly uint8: boolean;
  private readonly dctScaling: boolean;
  readonly exactDecode: boolean;

  constructor(transforms: readonly TransformSpec[], opts: PipelineOptions = {}) {
    validateTransforms(transforms);
    this.geometric = transforms.filter(isGeometric);
    this.randAug = (transforms.find((t) => t.op === 'randAugment') as RandAugmentSpec | undefined) ?? null;
    this.normalize = (transforms.find((t) => t.op === 'normalize') as NormalizeSpec | undefined) ?? null;
    this.erasing = (transforms.find((t) => t.op === 'randomErasing') as RandomErasingSpec | undefined) ?? null;
    this.uint8 = !!opts.uint8;
    this.dctScaling = opts.dctScaling ?? true;
    this.exactDecode = opts.exactDecode ?? !this.geometric.some((t) => t.op === 'randomResizedCrop' || t.op === 'randomCrop');
    this.format = this.uint8 ? { kind: 'uint8' } : this.normalize ? floatFormat(this.normalize.mean, this.normalize.std) : floatFormat();
  }

  /** The geometric plan for an image of this size (draws from rng). */
  plan(width: number, height: number, rng: Rng): Plan {
    return buildPlan(width, height, this.geometric, rng);
  }

  /**
   * Transforms one sample into `out` at `offset` (3×h×w) and, when `masks` is given, its mask into
   * `masks` at `maskOffset` (h×w; zeros when the image has none). Throws SizeMismatchError when the
   * output is not h×w.
   */
  run(handle: ImageHandle, rng: Rng, out: Float32Array | Uint8Array, offset: number, h: number, w: number, masks: Uint8Array | null, maskOffset: number): void {
    const plan = this.plan(handle.width, handle.height, rng);
    if (plan.outW !== w || plan.outH !== h) {
      throw new SizeMismatchError(
        `transformed size ${plan.outH}x${plan.outW} differs from the batch size ${h}x${w} (image is ${handle.height}x${handle.width}); add a crop or resize to a fixed size`,
      );
    }
    arenaReset(); // per-sample scratch memory of the previous sample is no longer needed
    const reduction = this.dctScaling && !this.exactDecode && handle.scalable ? reductionFor(plan) : 1;
    const img = handle.decode({ region: neededRegion(plan), reduction, scratch: true, rgb: this.exactDecode });
    const hw = w * h;
    if (!this.randAug) {
      const done = !this.uint8 && simdResampleToOutput(img, plan, out as Float32Array, offset, this.format);
      if (!done) resampleToOutput(img, plan, out, offset, this.format);
      if (masks) {
        if (img.mask) resamplePlane(img.mask, plan, 'nearest', masks, maskOffset);
        else masks.fill(0, maskOffset, maskOffset + hw);
      }
    } else {
      const rgb = new Uint8Array(3 * hw);
      resampleToOutput(img, plan, rgb, 0, { kind: 'uint8' });
      let mask: Uint8Array | null = null;
      if (masks && img.mask) {
        mask = new Uint8Array(hw);
        resamplePlane(img.mask, plan, 'nearest', mask, 0);
      }
      const aug = { rgb, mask, width: w, height: h };
      applyRandAugment(aug, this.randAug, rng);
      writeCHW(
        {
          width: w,
          height: h,
          space: 'rgb',
          planes: [fullPlane(aug.rgb, w, h, 0), fullPlane(aug.rgb, w, h, hw), fullPlane(aug.rgb, w, h, 2 * hw)],
        },
        out,
        offset,
        this.format,
      );
      if (masks) {
        if (aug.mask) masks.set(aug.mask, maskOffset);
        else masks.fill(0, maskOffset, maskOffset + hw);
      }
    }
    if (this.erasing) randomErase(out, offset, w, h, this.erasing, rng);
  }
}
