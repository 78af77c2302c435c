// Synthetic objects: a deterministic, seeded dataset generated in code. Each image shows one
// salient object — one of ten shape classes, random colour, size, rotation and position — on a
// textured background (stripes, checks, smooth blobs or a noisy gradient; its contrast is an option). The label is the shape
// class and a per-pixel object mask comes with every image, so tests can measure whether a
// generation order starts on the object. It is the built-in default dataset for the demo.

import { refuseUnknownKeys } from '../../util/options';
import { Rng } from '../rng';
import type { Image } from '../image';
import type { Dataset, SyntheticSpec } from '../dataset';
import { checkSampleIndex } from '../sample-index';

/** The ten shape classes of synthetic objects in label order; a dataset of k `classes` uses the first k. */
export const SHAPES = ['circle', 'square', 'triangle', 'cross', 'ring', 'diamond', 'star', 'hexagon', 'heart', 'crescent'] as const;
/** A synthetic-objects shape class ('circle' … 'crescent'), as `SyntheticSample.shape` names it. */
export type ShapeName = (typeof SHAPES)[number];

/**
 * Options of {@link syntheticObjects} and {@link syntheticConfig}: image size, count, seed (default 0), split
 * (default 'train'), number of classes, object size and background contrast.
 */
export interface SyntheticOptions {
  /** Image size: one number for square images or [height, width] (default 32). */
  size?: number | readonly [number, number];
  /** Number of images (default 10 000 for train, 2 000 for val). */
  count?: number;
  seed?: number;
  split?: 'train' | 'val';
  /** Number of shape classes used, 2–10 (default 10). */
  classes?: number;
  /** Object radius as a fraction of the shorter side, [min, max] (default OBJECT_SCALE). */
  objectScale?: readonly [number, number];
  /** Contrast of the background texture: 1 = two independent colours in 40..200, 0 = one colour plus noise (default BACKGROUND_CONTRAST). */
  backgroundContrast?: number;
}

/** The keys of SyntheticOptions (tsc wants every one listed): any other is refused, never ignored. */
const SYNTHETIC_OPTION_KEYS: Record<keyof SyntheticOptions, true> = {
  size: true,
  count: true,
  seed: true,
  split: true,
  classes: true,
  objectScale: true,
  backgroundContrast: true,
};

/**
 * Defaults of the generator. Objects cover about a third of the image (a quarter to two thirds of
 * the patches) and the texture's two colours lie 30% of the way between two random colours, so the
 * object is the salient thing and its shape, not the background, dominates the pixels. (Before
 * 2026-11-26: radius 0.2–0.34 and full contrast; pass those to get the old, harder images.)
 */
export const OBJECT_SCALE: readonly [number, number] = [0.3, 0.45];
export const BACKGROUND_CONTRAST = 0.3;

/**
 * The resolved generator settings ({@link syntheticConfig}), carried in the dataset's spec to the workers, which
 * render any sample from them and its index.
 */
export interface SyntheticConfig {
  height: number;
  width: number;
  count: number;
  seed: number;
  split: 'train' | 'val';
  classes: number;
  objectScale: readonly [number, number];
  backgroundContrast: number;
}

/**
 * Resolves {@link SyntheticOptions} with their defaults into a {@link SyntheticConfig}. Throws a RangeError for
 * a split other than 'train' or 'val', a size under 8, classes outside 2–10, a count under 1 (each an integer, as the seed), or an invalid objectScale or backgroundContrast.
 */
export function syntheticConfig(opts: SyntheticOptions = {}): SyntheticConfig {
  refuseUnknownKeys(opts, Object.keys(SYNTHETIC_OPTION_KEYS));
  const size = opts.size ?? 32;
  const [height, width] = typeof size === 'number' ? [size, size] : [size[0], size[1]];
  const split = opts.split ?? 'train';
  // (a caller in plain JS: 'test', as openDataset names it, or 'Train' drew a third stream, neither split)
  if (split !== 'train' && split !== 'val') throw new RangeError(`synthetic objects: split must be 'train' or 'val', got ${JSON.stringify(split)}`);
  const classes = opts.classes ?? SHAPES.length;
  // fractions were taken: count 10.5 gave a dataset of length 10.5, classes 2.5 labels of 1.5, seed 0.5 the images of seed 0
  if (!(Number.isInteger(height) && Number.isInteger(width) && height >= 8 && width >= 8))
    throw new RangeError(`synthetic objects: size must be integers of at least 8, got ${height}x${width}`);
  if (!(Number.isInteger(classes) && classes >= 2 && classes <= SHAPES.length))
    throw new RangeError(`synthetic objects: classes must be an integer in 2..${SHAPES.length}, got ${classes}`);
  const count = opts.count ?? (split === 'train' ? 10000 : 2000);
  if (!(Number.isInteger(count) && count >= 1)) throw new RangeError(`synthetic objects: count must be an integer >= 1, got ${count}`);
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed)) throw new RangeError(`synthetic objects: seed must be an integer, got ${seed}`);
  const [smin, smax] = opts.objectScale ?? OBJECT_SCALE;
  if (!(smin > 0 && smin <= smax && smax < 0.5)) throw new RangeError(`synthetic objects: objectScale [${smin}, ${smax}] must satisfy 0 < min <= max < 0.5`);
  const backgroundContrast = opts.backgroundContrast ?? BACKGROUND_CONTRAST;
  if (!(backgroundContrast >= 0 && backgroundContrast <= 1)) throw new RangeError('synthetic objects: backgroundContrast must be in [0, 1]');
  return { height, width, count, seed, split, classes, objectScale: [smin, smax], backgroundContrast };
}

function sampleRng(c: SyntheticConfig, i: number): Rng {
  return new Rng(c.seed, 'synthetic-objects', c.split, i);
}

/** Label of sample i without rendering it. */
export function syntheticLabel(c: SyntheticConfig, i: number): number {
  return sampleRng(c, i).int(c.classes);
}

const STAR: number[] = [];
for (let k = 0; k < 10; k++) {
  const a = -Math.PI / 2 + (k * Math.PI) / 5;
  const r = k % 2 === 0 ? 1 : 0.42;
  STAR.push(r * Math.cos(a), r * Math.sin(a));
}

function inPolygon(u: number, v: number, pts: number[]): boolean {
  let inside = false;
  const n = pts.length / 2;
  for (let i = 0, j = n - 1; i < n; j = i++) {
    const xi = pts[2 * i];
    const yi = pts[2 * i + 1];
    const xj = pts[2 * j];
    const yj = pts[2 * j + 1];
    if (yi > v !== yj > v && u < ((xj - xi) * (v - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Whether shape-local point (u, v) ∈ [-1, 1]² (y down) is inside the shape. */
export function insideShape(shape: number, u: number, v: number): boolean {
  switch (shape) {
    case 0:
      return u * u + v * v <= 1;
    case 1:
      return Math.abs(u) <= 0.8 && Math.abs(v) <= 0.8;
    case 2:
      return v <= 0.6 && v >= -0.95 + 1.722 * Math.abs(u);
    case 3:
      return (Math.abs(u) <= 0.3 && Math.abs(v) <= 0.95) || (Math.abs(v) <= 0.3 && Math.abs(u) <= 0.95);
    case 4: {
      const r2 = u * u + v * v;
      return r2 <= 1 && r2 >= 0.3025;
    }
    case 5:
      return Math.abs(u) + Math.abs(v) <= 1;
    case 6:
      return inPolygon(u, v, STAR);
    case 7: {
      const au = Math.abs(u);
      const av = Math.abs(v);
      return av <= 0.82 && av * 0.577 + au <= 0.95;
    }
    case 8: {
      const x = u * 1.25;
      const y = -v * 1.25 + 0.25;
      const a = x * x + y * y - 1;
      return a * a * a - x * x * y * y * y <= 0;
    }
    case 9:
      return u * u + v * v <= 1 && (u - 0.4) * (u - 0.4) + (v + 0.1) * (v + 0.1) > 0.64;
    default:
      return false;
  }
}

function hsv(h: number, s: number, v: number): [number, number, number] {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  const [r, g, b] = [
    [v, t, p],
    [q, v, p],
    [p, v, t],
    [p, q, v],
    [t, p, v],
    [v, p, q],
  ][((i % 6) + 6) % 6];
  return [r * 255, g * 255, b * 255];
}

/**
 * One rendered synthetic image ({@link renderSynthetic}, `SyntheticObjects.sample`): the RGB image with its
 * object mask (pixels at least half covered), label, shape name, and where the object is.
 */
export interface SyntheticSample {
  image: Image;
  label: number;
  shape: ShapeName;
  /** Object centre and radius in pixels. */
  cx: number;
  cy: number;
  radius: number;
}

/** Renders sample i (deterministic in config and i). */
export function renderSynthetic(c: SyntheticConfig, i: number): SyntheticSample {
  const rng = sampleRng(c, i);
  const label = rng.int(c.classes); // first draw: see syntheticLabel
  const W = c.width;
  const H = c.height;
  const hw = W * H;
  const buf = new Uint8Array(hw * 3);
  const mask = new Uint8Array(hw);

  // --- background
  const c1 = [rng.uniform(40, 200), rng.uniform(40, 200), rng.uniform(40, 200)];
  const c2 = [rng.uniform(40, 200), rng.uniform(40, 200), rng.uniform(40, 200)];
  for (let ch = 0; ch < 3; ch++) c2[ch] = c1[ch] + (c2[ch] - c1[ch]) * c.backgroundContrast;
  const pattern = rng.int(4);
  const ang = rng.uniform(0, Math.PI);
  const freq = rng.uniform(2, 6) / Math.min(W, H);
  const cells = rng.intRange(3, 8);
  const blobs: number[] = [];
  for (let k = 0; k < 3; k++) blobs.push(rng.uniform(0.5, 3), rng.uniform(0.5, 3), rng.uniform(0, 2 * Math.PI), rng.uniform(0, 2 * Math.PI));
  const ca = Math.cos(ang);
  const sa = Math.sin(ang);
  const bgMean = [0, 0, 0];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let t: number;
      if (pattern === 0) t = 0.5 + 0.5 * Math.sin(2 * Math.PI * freq * (x * ca + y * sa));
      else if (pattern === 1) t = (Math.floor((x * cells) / W) + Math.floor((y * cells) / H)) % 2;
      else if (pattern === 2) {
        let s = 0;
        for (let k = 0; k < 3; k++) {
          s += Math.cos((2 * Math.PI * blobs[4 * k] * x) / W + blobs[4 * k + 2]) * Math.cos((2 * Math.PI * blobs[4 * k + 1] * y) / H + blobs[4 * k + 3]);
        }
        t = 0.5 + s / 6;
      } else t = (x * ca + y * sa) / Math.hypot(W, H) + 0.5;
      const o = y * W + x;
      for (let ch = 0; ch < 3; ch++) {
        const v = c1[ch] + (c2[ch] - c1[ch]) * t + rng.uniform(-6, 6);
        buf[ch * hw + o] = v < 0 ? 0 : v > 255 ? 255 : v;
        bgMean[ch] += v;
      }
    }
  }
  for (let ch = 0; ch < 3; ch++) bgMean[ch] /= hw;

  // --- object
  let col = hsv(rng.float(), rng.uniform(0.6, 1), rng.uniform(0.7, 1));
  for (let tries = 0; tries < 10; tries++) {
    const d = Math.hypot(col[0] - bgMean[0], col[1] - bgMean[1], col[2] - bgMean[2]);
    if (d >= 90) break;
    col = hsv(rng.float(), rng.uniform(0.6, 1), rng.uniform(0.7, 1));
  }
  const minSide = Math.min(W, H);
  // Radii are capped so that the object fits with a 1-pixel margin (only matters for tiny images).
  const radius = Math.min(minSide * rng.uniform(c.objectScale[0], c.objectScale[1]), minSide / 2 - 1.01);
  const cx = rng.uniform(radius + 1, W - radius - 1);
  const cy = rng.uniform(radius + 1, H - radius - 1);
  const phi = rng.uniform(0, 2 * Math.PI);
  const cp = Math.cos(phi);
  const sp = Math.sin(phi);
  const shade = rng.uniform(-0.15, 0.15);
  const S = 4; // supersamples per axis
  const x0 = Math.max(0, Math.floor(cx - radius * 1.45));
  const x1 = Math.min(W, Math.ceil(cx + radius * 1.45));
  const y0 = Math.max(0, Math.floor(cy - radius * 1.45));
  const y1 = Math.min(H, Math.ceil(cy + radius * 1.45));
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      let hit = 0;
      for (let sy = 0; sy < S; sy++) {
        for (let sx = 0; sx < S; sx++) {
          const px = x + (sx + 0.5) / S - cx;
          const py = y + (sy + 0.5) / S - cy;
          const u = (px * cp + py * sp) / radius;
          const v = (-px * sp + py * cp) / radius;
          if (insideShape(label, u, v)) hit++;
        }
      }
      if (hit === 0) continue;
      const cov = hit / (S * S);
      const o = y * W + x;
      if (cov >= 0.5) mask[o] = 1;
      const light = 1 + shade * ((y - cy) / radius);
      for (let ch = 0; ch < 3; ch++) {
        const obj = Math.min(255, col[ch] * light);
        const bg = buf[ch * hw + o];
        buf[ch * hw + o] = Math.round(bg + (obj - bg) * cov);
      }
    }
  }
  const plane = (off: number) => ({ data: buf, width: W, height: H, stride: W, offset: off, x0: 0, y0: 0, sx: 1, sy: 1 });
  const image: Image = {
    width: W,
    height: H,
    space: 'rgb',
    planes: [plane(0), plane(hw), plane(2 * hw)],
    mask: { data: mask, width: W, height: H, stride: W, offset: 0, x0: 0, y0: 0, sx: 1, sy: 1 },
  };
  return { image, label, shape: SHAPES[label], cx, cy, radius };
}

/** The synthetic-objects dataset (train and val splits are disjoint streams of the same seed). */
export class SyntheticObjects implements Dataset {
  readonly spec: SyntheticSpec;
  readonly length: number;
  readonly classes: readonly string[];
  readonly root: string;
  readonly fixedSize: readonly [number, number];
  readonly hasMasks = true;

  constructor(opts: SyntheticOptions = {}) {
    const config = syntheticConfig(opts);
    this.spec = { kind: 'synthetic', config };
    this.length = config.count;
    this.classes = SHAPES.slice(0, config.classes);
    this.root = `synthetic-objects(${config.split}, seed ${config.seed}, ${config.height}x${config.width})`;
    this.fixedSize = [config.height, config.width];
  }

  label(i: number): number {
    checkSampleIndex(i, this);
    return syntheticLabel(this.spec.config, i);
  }

  name(i: number): string {
    checkSampleIndex(i, this);
    return `${this.root}#${i}`;
  }

  /** Renders sample i on the calling thread (a RangeError for an index outside [0, length)). */
  sample(i: number): SyntheticSample {
    checkSampleIndex(i, this);
    return renderSynthetic(this.spec.config, i);
  }
}

/**
 * The synthetic-objects dataset: seeded images of one shape on a textured background, with labels and object
 * masks, rendered on demand by the loader's workers. Throws a RangeError for invalid options.
 */
export function syntheticObjects(opts: SyntheticOptions = {}): SyntheticObjects {
  return new SyntheticObjects(opts);
}
