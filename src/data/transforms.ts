// Transform specifications: plain, serialisable objects (they are sent to worker threads) built by
// small constructor functions that mirror torchvision/timm names. `pipeline.ts` executes them.
//
// Order rules (checked by `validateTransforms`): geometric transforms (resize, centerCrop, randomCrop,
// randomResizedCrop, horizontalFlip) first, then randAugment, then normalize, then randomErasing.

import type { Interpolation } from './resample';
import { IMAGENET_MEAN, IMAGENET_STD } from './color';
import { shortSideResize } from './geometry';

/** A transform size: one number (a square side; for `resize`, the short side) or [height, width]. */
export type Size = number | readonly [number, number];

/** What {@link resize} builds: the short side resized to a number, or the image to exactly [height, width]. */
export interface ResizeSpec {
  op: 'resize';
  /** Short side (number) or exact [height, width]. */
  size: Size;
  interpolation: Interpolation;
  /** With a number size: cap for the long side (torchvision's max_size). */
  maxSize?: number;
}
/** What {@link centerCrop} builds: the central [height, width] crop. */
export interface CenterCropSpec {
  op: 'centerCrop';
  size: readonly [number, number];
}
/** What {@link randomCrop} builds: a [height, width] crop at a random position, without padding. */
export interface RandomCropSpec {
  op: 'randomCrop';
  size: readonly [number, number];
}
/**
 * What {@link randomResizedCrop} builds: a crop of random area (`scale`, a fraction of the image's) and aspect
 * ratio (`ratio`, width/height), resized to `size`.
 */
export interface RandomResizedCropSpec {
  op: 'randomResizedCrop';
  size: readonly [number, number];
  scale: readonly [number, number];
  ratio: readonly [number, number];
  interpolation: Interpolation;
  /**
   * MAE's util/crop.py RandomResizedCrop (BYOL's TF/TPU crop, MAE's linear-probe transform): one
   * draw of area and aspect ratio, the width and height clipped to the image, no retries and no
   * central fallback. Otherwise torchvision's (up to 10 draws, then a central crop).
   */
  singleDraw?: boolean;
}
/** What {@link horizontalFlip} builds: a left-right mirror with probability `p`. */
export interface HorizontalFlipSpec {
  op: 'horizontalFlip';
  p: number;
}
/** What {@link randAugment} builds: timm's RandAugment settings (`n` ops per image at magnitude `m`). */
export interface RandAugmentSpec {
  op: 'randAugment';
  /** Number of ops per image. */
  n: number;
  /** Magnitude 0..10. */
  m: number;
  /** Std-dev of the per-op magnitude noise (0 = fixed, Infinity = uniform in [0, m]). */
  mstd: number;
  /** Use timm's "increasing" op set (`-inc1`). */
  increasing: boolean;
  /** Probability each chosen op is applied. */
  prob: number;
  /** Fill colour for geometric ops (RGB 0..255). */
  fill: readonly [number, number, number];
  interpolation: 'bilinear' | 'bicubic';
}
/** What {@link normalize} builds: per channel (v/255 − mean) / std, with mean and std on the 0–1 scale. */
export interface NormalizeSpec {
  op: 'normalize';
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}
/** What {@link randomErasing} builds: timm's RandomErasing settings, applied last, after normalisation. */
export interface RandomErasingSpec {
  op: 'randomErasing';
  p: number;
  /** Fraction of the image area erased. */
  scale: readonly [number, number];
  ratio: readonly [number, number];
  /** 'pixel': per-pixel normal noise; 'rand': one normal value per channel; 'const': zeros. */
  mode: 'pixel' | 'rand' | 'const';
  /** Regions to erase (each with 1/count of the drawn area); one that does not fit in 10 draws is skipped. */
  count: number;
}

/**
 * One step of a transform list: a plain, serialisable object from {@link resize}, {@link centerCrop} and the
 * other constructors. A list gives the geometric steps first, then randAugment, normalize and randomErasing,
 * in that order (the loaders and Pipeline throw otherwise).
 */
export type TransformSpec =
  ResizeSpec | CenterCropSpec | RandomCropSpec | RandomResizedCropSpec | HorizontalFlipSpec | RandAugmentSpec | NormalizeSpec | RandomErasingSpec;

function pair(size: Size): [number, number] {
  const s: [number, number] = typeof size === 'number' ? [size, size] : [size[0], size[1]];
  if (!(s[0] >= 1 && s[1] >= 1) || !Number.isInteger(s[0]) || !Number.isInteger(s[1])) {
    throw new RangeError(`transform size must be positive integers, got ${JSON.stringify(size)}`);
  }
  return s;
}

/**
 * Resize: a number resizes the short side (keeping aspect), [h, w] resizes exactly. Throws a RangeError for a size that
 * is not a positive integer, or a maxSize (a number size's long-side cap) that is not an integer above it, as torchvision.
 */
export function resize(size: Size, opts: { interpolation?: Interpolation; maxSize?: number } = {}): ResizeSpec {
  if (typeof size !== 'number') pair(size);
  else if (!(size >= 1 && Number.isInteger(size))) throw new RangeError(`resize: size must be >= 1 and an integer, got ${size}`);
  if (opts.maxSize !== undefined) {
    // as torchvision's resize refuses them
    if (typeof size !== 'number') throw new RangeError('resize: maxSize caps the long side of a short-side resize: give the size as one number');
    if (!(Number.isInteger(opts.maxSize) && opts.maxSize > size))
      throw new RangeError(`resize: maxSize must be an integer above the size ${size}, got ${opts.maxSize}`);
  }
  return { op: 'resize', size, interpolation: opts.interpolation ?? 'bilinear', maxSize: opts.maxSize };
}

/** Center crop; an image smaller than the crop is first upscaled so that the crop fits. */
export function centerCrop(size: Size): CenterCropSpec {
  return { op: 'centerCrop', size: pair(size) };
}

/** torchvision RandomCrop without padding (an image smaller than the crop is first upscaled so that it fits). */
export function randomCrop(size: Size): RandomCropSpec {
  return { op: 'randomCrop', size: pair(size) };
}

/** torchvision RandomResizedCrop (defaults scale 0.08–1, ratio 3/4–4/3, bilinear); `singleDraw`: MAE's util/crop.py variant. */
export function randomResizedCrop(
  size: Size,
  opts: { scale?: readonly [number, number]; ratio?: readonly [number, number]; interpolation?: Interpolation; singleDraw?: boolean } = {},
): RandomResizedCropSpec {
  const scale = opts.scale ?? [0.08, 1];
  const ratio = opts.ratio ?? [3 / 4, 4 / 3];
  if (!(scale[0] > 0 && scale[0] <= scale[1])) throw new RangeError(`randomResizedCrop: bad scale ${JSON.stringify(scale)}`);
  if (!(ratio[0] > 0 && ratio[0] <= ratio[1])) throw new RangeError(`randomResizedCrop: bad ratio ${JSON.stringify(ratio)}`);
  return {
    op: 'randomResizedCrop',
    size: pair(size),
    scale,
    ratio,
    interpolation: opts.interpolation ?? 'bilinear',
    ...(opts.singleDraw ? { singleDraw: true } : {}),
  };
}

/**
 * Mirrors the image (and its mask) left-right with probability `p` (default 0.5); like torchvision's
 * RandomHorizontalFlip.
 */
export function horizontalFlip(p = 0.5): HorizontalFlipSpec {
  return { op: 'horizontalFlip', p };
}

/**
 * RandAugment. Accepts timm's config string (e.g. 'rand-m9-mstd0.5-inc1', 'rand-m9-n2-mstd0.5'; without 'm', as timm,
 * magnitude 10) or options (m 9 unless given). Defaults follow timm: n=2, prob 0.5 per op, fill = ImageNet mean, bicubic. Throws a RangeError
 * for an n that is not an integer >= 0.
 */
export function randAugment(config: string | Partial<Omit<RandAugmentSpec, 'op'>> = 'rand-m9-mstd0.5-inc1'): RandAugmentSpec {
  const spec: RandAugmentSpec = {
    op: 'randAugment',
    n: 2,
    m: 9,
    mstd: 0,
    increasing: false,
    prob: 0.5,
    fill: [124, 116, 104],
    interpolation: 'bicubic',
  };
  if (typeof config === 'string') {
    const parts = config.split('-');
    if (parts[0] !== 'rand') throw new Error(`randAugment: config must start with 'rand', got '${config}'`);
    spec.m = 10; // timm's rand_augment_transform: a config without 'm' has magnitude 10
    for (const p of parts.slice(1)) {
      const m = /^([a-z]+)([0-9.]+|inf)$/.exec(p);
      if (!m) throw new Error(`randAugment: cannot parse '${p}' in '${config}'`);
      const v = m[2] === 'inf' ? Infinity : Number(m[2]);
      if (m[1] === 'm') spec.m = v;
      else if (m[1] === 'n') spec.n = v;
      else if (m[1] === 'mstd')
        spec.mstd = v > 100 ? Infinity : v; // as timm: above 100 means uniform in [0, m]
      else if (m[1] === 'inc') spec.increasing = v !== 0;
      else if (m[1] === 'p') spec.prob = v;
      else throw new Error(`randAugment: unknown option '${m[1]}' in '${config}'`);
    }
  } else {
    Object.assign(spec, config);
  }
  // `for (i < n)` would apply ⌈n⌉ ops; timm refuses it (int(n))
  if (!(Number.isInteger(spec.n) && spec.n >= 0)) throw new RangeError(`randAugment: n (ops per image) must be an integer >= 0, got ${spec.n}`);
  return spec;
}

/**
 * Normalises each channel to (v/255 − mean) / std, by default with ImageNet's mean and std; like torchvision's
 * ToTensor + Normalize. Without it, float batches hold v/255. Throws a RangeError for a std of 0 (as torchvision)
 * or a mean or std that is not 3 finite numbers.
 */
export function normalize(mean: readonly [number, number, number] = IMAGENET_MEAN, std: readonly [number, number, number] = IMAGENET_STD): NormalizeSpec {
  // as torchvision's Normalize ('std evaluated to zero'): a std of 0 made that channel NaN and ±Infinity
  const finite3 = (v: readonly number[]) => v.length === 3 && v.every((x) => Number.isFinite(x));
  if (!finite3(mean) || !finite3(std) || std.includes(0)) {
    throw new RangeError(`normalize: mean and std must be 3 finite numbers each, std none 0, got ${JSON.stringify(mean)} and ${JSON.stringify(std)}`);
  }
  return { op: 'normalize', mean, std };
}

/**
 * timm RandomErasing (defaults: p 0.25, area 2–33%, mode 'pixel', one region). Throws a RangeError for a mode other
 * than 'pixel', 'rand' and 'const', a count that is not an integer >= 1, a p outside [0, 1], or a bad scale or ratio.
 */
export function randomErasing(opts: Partial<Omit<RandomErasingSpec, 'op'>> = {}): RandomErasingSpec {
  const spec: RandomErasingSpec = {
    op: 'randomErasing',
    p: opts.p ?? 0.25,
    scale: opts.scale ?? [0.02, 1 / 3],
    ratio: opts.ratio ?? [0.3, 1 / 0.3],
    mode: opts.mode ?? 'pixel',
    count: opts.count ?? 1,
  };
  // an unknown mode erased to zeros (timm asserts), count 2.5 erased 3 regions, p NaN erased every image
  if (!['pixel', 'rand', 'const'].includes(spec.mode))
    throw new RangeError(`randomErasing: mode must be 'pixel', 'rand' or 'const', got '${String(spec.mode)}'`);
  if (!(Number.isInteger(spec.count) && spec.count >= 1)) throw new RangeError(`randomErasing: count must be an integer >= 1, got ${spec.count}`);
  if (!(spec.p >= 0 && spec.p <= 1)) throw new RangeError(`randomErasing: p must be in [0, 1], got ${spec.p}`);
  if (!(spec.scale[0] >= 0 && spec.scale[0] <= spec.scale[1])) throw new RangeError(`randomErasing: bad scale ${JSON.stringify(spec.scale)}`);
  if (!(spec.ratio[0] > 0 && spec.ratio[0] <= spec.ratio[1])) throw new RangeError(`randomErasing: bad ratio ${JSON.stringify(spec.ratio)}`);
  return spec;
}

const GEOMETRIC = new Set(['resize', 'centerCrop', 'randomCrop', 'randomResizedCrop', 'horizontalFlip']);
const STAGE: Record<TransformSpec['op'], number> = {
  resize: 0,
  centerCrop: 0,
  randomCrop: 0,
  randomResizedCrop: 0,
  horizontalFlip: 0,
  randAugment: 1,
  normalize: 2,
  randomErasing: 3,
};

export function isGeometric(t: TransformSpec): boolean {
  return GEOMETRIC.has(t.op);
}

/** Throws when transforms are out of order or repeated where that is not meaningful. */
export function validateTransforms(ts: readonly TransformSpec[]): void {
  let stage = 0;
  const seen = new Set<string>();
  for (const t of ts) {
    if (!Object.hasOwn(STAGE, t.op)) throw new Error(`unknown transform op '${(t as { op: string }).op}'`);
    const s = STAGE[t.op];
    if (s < stage) {
      throw new Error(`transform '${t.op}' is out of order: use geometric transforms, then randAugment, then normalize, then randomErasing`);
    }
    if (s > 0 && seen.has(t.op)) throw new Error(`transform '${t.op}' appears twice`);
    seen.add(t.op);
    stage = s;
  }
}

/** Output size [h, w] fixed by the transforms regardless of the input, or null. */
export function staticOutputSize(ts: readonly TransformSpec[]): [number, number] | null {
  let size: [number, number] | null = null;
  for (const t of ts) {
    if (t.op === 'randomResizedCrop' || t.op === 'centerCrop' || t.op === 'randomCrop') size = [t.size[0], t.size[1]];
    else if (t.op === 'resize') {
      if (typeof t.size !== 'number') size = [t.size[0], t.size[1]];
      else if (size) {
        // after a fixed size (a crop), the short-side resize gives one size as well (as buildPlan computes it)
        const [w, h] = shortSideResize(size[1], size[0], t.size, t.maxSize);
        size = [Math.max(1, h), Math.max(1, w)];
      }
    }
  }
  return size;
}

/** The usual pre-training augmentation: RandomResizedCrop + flip + normalise. */
export function pretrainTransforms(size = 224, opts: { scale?: readonly [number, number]; interpolation?: Interpolation } = {}): TransformSpec[] {
  return [randomResizedCrop(size, { scale: opts.scale ?? [0.2, 1], interpolation: opts.interpolation ?? 'bicubic' }), horizontalFlip(0.5), normalize()];
}

/** Fine-tuning augmentation (MAE/SemAIM recipe): RRC + flip + RandAugment + normalise + erasing. */
export function finetuneTransforms(size = 224, opts: { randAugment?: string; reprob?: number } = {}): TransformSpec[] {
  return [
    randomResizedCrop(size, { scale: [0.08, 1], interpolation: 'bicubic' }),
    horizontalFlip(0.5),
    randAugment(opts.randAugment ?? 'rand-m9-mstd0.5-inc1'),
    normalize(),
    randomErasing({ p: opts.reprob ?? 0.25, mode: 'pixel' }),
  ];
}

/** Evaluation: resize to size/0.875 (short side, bicubic) then center crop. */
export function evalTransforms(size = 224, cropPct = 0.875): TransformSpec[] {
  return [resize(Math.floor(size / cropPct), { interpolation: 'bicubic' }), centerCrop(size), normalize()];
}
