// RandAugment with timm's op set, level mappings and magnitude noise (`rand-m9-mstd0.5[-inc1]`),
// on planar RGB bytes (3×H×W in one buffer). Geometric ops also move an optional object mask
// (nearest neighbour, filled with 0). Pixel ops follow PIL's ImageOps/ImageEnhance definitions.

import type { Rng } from './rng';
import type { RandAugmentSpec } from './transforms';

const LEVEL_DENOM = 10;

export type OpName =
  | 'AutoContrast'
  | 'Equalize'
  | 'Invert'
  | 'Rotate'
  | 'Posterize'
  | 'Solarize'
  | 'SolarizeAdd'
  | 'Color'
  | 'Contrast'
  | 'Brightness'
  | 'Sharpness'
  | 'ShearX'
  | 'ShearY'
  | 'TranslateXRel'
  | 'TranslateYRel'
  | 'PosterizeIncreasing'
  | 'SolarizeIncreasing'
  | 'ColorIncreasing'
  | 'ContrastIncreasing'
  | 'BrightnessIncreasing'
  | 'SharpnessIncreasing';

export const RAND_TRANSFORMS: readonly OpName[] = [
  'AutoContrast',
  'Equalize',
  'Invert',
  'Rotate',
  'Posterize',
  'Solarize',
  'SolarizeAdd',
  'Color',
  'Contrast',
  'Brightness',
  'Sharpness',
  'ShearX',
  'ShearY',
  'TranslateXRel',
  'TranslateYRel',
];

export const RAND_INCREASING_TRANSFORMS: readonly OpName[] = [
  'AutoContrast',
  'Equalize',
  'Invert',
  'Rotate',
  'PosterizeIncreasing',
  'SolarizeIncreasing',
  'SolarizeAdd',
  'ColorIncreasing',
  'ContrastIncreasing',
  'BrightnessIncreasing',
  'SharpnessIncreasing',
  'ShearX',
  'ShearY',
  'TranslateXRel',
  'TranslateYRel',
];

/** A planar RGB image being augmented in place (buffers may be replaced). */
export interface AugImage {
  rgb: Uint8Array;
  mask: Uint8Array | null;
  width: number;
  height: number;
}

export interface AugOptions {
  fill: readonly [number, number, number];
  interpolation: 'bilinear' | 'bicubic';
}

function negate(v: number, rng: Rng): number {
  return rng.float() > 0.5 ? -v : v;
}

/** Applies one RandAugment op at magnitude `level` (0..10). */
export function applyOp(img: AugImage, op: OpName, level: number, rng: Rng, o: AugOptions): void {
  const L = level / LEVEL_DENOM;
  switch (op) {
    case 'AutoContrast':
      return lutPerChannel(img, autoContrastLut);
    case 'Equalize':
      return lutPerChannel(img, equalizeLut);
    case 'Invert':
      return lut(img, (v) => 255 - v);
    case 'Rotate':
      return rotate(img, negate(L * 30, rng), o);
    case 'Posterize':
      return posterize(img, Math.trunc(L * 4));
    case 'PosterizeIncreasing':
      return posterize(img, 4 - Math.trunc(L * 4));
    case 'Solarize':
      return solarize(img, Math.trunc(L * 256));
    case 'SolarizeIncreasing':
      return solarize(img, 256 - Math.trunc(L * 256));
    case 'SolarizeAdd': {
      const add = Math.trunc(L * 110);
      return lut(img, (v) => (v < 128 ? Math.min(255, v + add) : v));
    }
    case 'Color':
      return color(img, L * 1.8 + 0.1);
    case 'ColorIncreasing':
      return color(img, Math.max(0.1, 1 + negate(L * 0.9, rng)));
    case 'Contrast':
      return contrast(img, L * 1.8 + 0.1);
    case 'ContrastIncreasing':
      return contrast(img, Math.max(0.1, 1 + negate(L * 0.9, rng)));
    case 'Brightness':
      return brightness(img, L * 1.8 + 0.1);
    case 'BrightnessIncreasing':
      return brightness(img, Math.max(0.1, 1 + negate(L * 0.9, rng)));
    case 'Sharpness':
      return sharpness(img, L * 1.8 + 0.1);
    case 'SharpnessIncreasing':
      return sharpness(img, Math.max(0.1, 1 + negate(L * 0.9, rng)));
    case 'ShearX':
      return affine(img, [1, negate(L * 0.3, rng), 0, 0, 1, 0], o);
    case 'ShearY':
      return affine(img, [1, 0, 0, negate(L * 0.3, rng), 1, 0], o);
    case 'TranslateXRel':
      return affine(img, [1, 0, negate(L * 0.45, rng) * img.width, 0, 1, 0], o);
    case 'TranslateYRel':
      return affine(img, [1, 0, 0, 0, 1, negate(L * 0.45, rng) * img.height], o);
    default:
      throw new Error(`unknown RandAugment op ${String(op)}`);
  }
}

/** Runs RandAugment: `n` ops drawn with replacement, each applied with probability `prob`. */
export function applyRandAugment(img: AugImage, spec: RandAugmentSpec, rng: Rng): OpName[] {
  const ops = spec.increasing ? RAND_INCREASING_TRANSFORMS : RAND_TRANSFORMS;
  const applied: OpName[] = [];
  const chosen: OpName[] = [];
  for (let i = 0; i < spec.n; i++) chosen.push(ops[rng.int(ops.length)]);
  const o: AugOptions = { fill: spec.fill, interpolation: spec.interpolation };
  for (const op of chosen) {
    if (spec.prob < 1 && rng.float() > spec.prob) continue;
    let m = spec.m;
    if (spec.mstd === Infinity) m = rng.uniform(0, m);
    else if (spec.mstd > 0) m = rng.normal(m, spec.mstd);
    m = Math.max(0, Math.min(m, LEVEL_DENOM));
    applyOp(img, op, m, rng, o);
    applied.push(op);
  }
  return applied;
}

// ------------------------------------------------------------------ pixel ops

function lut(img: AugImage, f: (v: number) => number): void {
  const t = new Uint8Array(256);
  for (let i = 0; i < 256; i++) t[i] = Math.max(0, Math.min(255, f(i)));
  const d = img.rgb;
  for (let i = 0; i < d.length; i++) d[i] = t[d[i]];
}

function lutPerChannel(img: AugImage, make: (hist: Int32Array) => Uint8Array | null): void {
  const hw = img.width * img.height;
  const d = img.rgb;
  for (let c = 0; c < 3; c++) {
    const hist = new Int32Array(256);
    const o = c * hw;
    for (let i = 0; i < hw; i++) hist[d[o + i]]++;
    const t = make(hist);
    if (!t) continue;
    for (let i = 0; i < hw; i++) d[o + i] = t[d[o + i]];
  }
}

function autoContrastLut(hist: Int32Array): Uint8Array | null {
  let lo = 0;
  while (lo < 256 && hist[lo] === 0) lo++;
  let hi = 255;
  while (hi >= 0 && hist[hi] === 0) hi--;
  if (hi <= lo) return null;
  const scale = 255 / (hi - lo);
  const offset = -lo * scale;
  const t = new Uint8Array(256);
  for (let i = 0; i < 256; i++) {
    const v = Math.trunc(i * scale + offset);
    t[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return t;
}

function equalizeLut(hist: Int32Array): Uint8Array | null {
  let total = 0;
  let lastNonZero = 0;
  let nonZero = 0;
  for (let i = 0; i < 256; i++) {
    if (hist[i]) {
      total += hist[i];
      lastNonZero = hist[i];
      nonZero++;
    }
  }
  if (nonZero <= 1) return null;
  const step = Math.floor((total - lastNonZero) / 255);
  if (!step) return null;
  const t = new Uint8Array(256);
  let n = Math.floor(step / 2);
  for (let i = 0; i < 256; i++) {
    t[i] = Math.min(255, Math.floor(n / step));
    n += hist[i];
  }
  return t;
}

function posterize(img: AugImage, bits: number): void {
  if (bits >= 8) return;
  const mask = ~((1 << (8 - Math.max(0, bits))) - 1) & 255;
  lut(img, (v) => v & mask);
}

function solarize(img: AugImage, thresh: number): void {
  lut(img, (v) => (v < thresh ? v : 255 - v));
}

/**
 * out = degenerate + f * (img - degenerate), per byte, as PIL's Image.blend: in single precision (its
 * alpha is a C float), truncated, clipped only when f is outside [0, 1].
 */
function blendInto(d: Uint8Array, degenerate: (i: number) => number, f: number): void {
  const alpha = Math.fround(f);
  for (let i = 0; i < d.length; i++) {
    const g = degenerate(i);
    const v = Math.fround(g + Math.fround(alpha * (d[i] - g)));
    d[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
  }
}

function grayOf(img: AugImage): Uint8Array {
  const hw = img.width * img.height;
  const d = img.rgb;
  const g = new Uint8Array(hw);
  for (let i = 0; i < hw; i++) g[i] = (d[i] * 19595 + d[hw + i] * 38470 + d[2 * hw + i] * 7471 + 0x8000) >> 16;
  return g;
}

function color(img: AugImage, f: number): void {
  const hw = img.width * img.height;
  const g = grayOf(img);
  blendInto(img.rgb, (i) => g[i % hw], f);
}

function contrast(img: AugImage, f: number): void {
  const g = grayOf(img);
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i];
  const mean = Math.trunc(s / g.length + 0.5);
  blendInto(img.rgb, () => mean, f);
}

function brightness(img: AugImage, f: number): void {
  blendInto(img.rgb, () => 0, f);
}

function sharpness(img: AugImage, f: number): void {
  const { width: w, height: h } = img;
  const hw = w * h;
  const d = img.rgb;
  const smooth = new Uint8Array(d);
  if (w >= 3 && h >= 3) {
    for (let c = 0; c < 3; c++) {
      const o = c * hw;
      for (let y = 1; y < h - 1; y++) {
        for (let x = 1; x < w - 1; x++) {
          const i = o + y * w + x;
          const s = d[i - w - 1] + d[i - w] + d[i - w + 1] + d[i - 1] + 5 * d[i] + d[i + 1] + d[i + w - 1] + d[i + w] + d[i + w + 1];
          smooth[i] = Math.min(255, Math.round(s / 13));
        }
      }
    }
  }
  blendInto(d, (i) => smooth[i], f);
}

// ------------------------------------------------------------------ geometric ops

/** PIL's Image.rotate(degrees) about the centre (its matrix, computed in the same order). */
function rotate(img: AugImage, degrees: number, o: AugOptions): void {
  const rad = -((((degrees % 360) + 360) % 360) * (Math.PI / 180));
  const round15 = (v: number) => Number(v.toFixed(15)); // Python's round(v, 15)
  const [a, b, d, e] = [round15(Math.cos(rad)), round15(Math.sin(rad)), round15(-Math.sin(rad)), round15(Math.cos(rad))];
  const cx = img.width / 2;
  const cy = img.height / 2;
  affine(img, [a, b, a * -cx + b * -cy + 0 + cx, d, e, d * -cx + e * -cy + 0 + cy], o);
}

function clamp(i: number, n: number): number {
  return i < 0 ? 0 : i >= n ? n - 1 : i;
}

/** PIL's cubic through v1..v4 at d ∈ [0, 1) (Keys' kernel with a = −1, as its affine filter). */
function cubic(v1: number, v2: number, v3: number, v4: number, d: number): number {
  return v2 + d * (-v1 + v3 + d * (2 * (v1 - v2) + v3 - v4 + d * (-v1 + v2 - v3 + v4)));
}

/**
 * PIL-style affine transform: output pixel (x, y) samples the input at
 * (a·(x+½) + b·(y+½) + c, d·(x+½) + e·(y+½) + f); points outside the image take the fill colour.
 */
export function affine(img: AugImage, m: readonly number[], o: AugOptions): void {
  const { width: w, height: h } = img;
  const hw = w * h;
  const src = img.rgb;
  const dst = new Uint8Array(3 * hw);
  const msrc = img.mask;
  const mdst = msrc ? new Uint8Array(hw) : null;
  const [a, b, c, d, e, f] = m;
  const bic = o.interpolation === 'bicubic';
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const xin = a * (x + 0.5) + b * (y + 0.5) + c;
      const yin = d * (x + 0.5) + e * (y + 0.5) + f;
      const oi = y * w + x;
      if (xin < 0 || xin >= w || yin < 0 || yin >= h) {
        dst[oi] = o.fill[0];
        dst[hw + oi] = o.fill[1];
        dst[2 * hw + oi] = o.fill[2];
        continue;
      }
      if (mdst) mdst[oi] = msrc![Math.floor(yin) * w + Math.floor(xin)];
      const u = xin - 0.5;
      const v = yin - 0.5;
      const x0 = Math.floor(u);
      const y0 = Math.floor(v);
      const fx = u - x0;
      const fy = v - y0;
      // As PIL's affine filters: rows (clamped at the edges) first, then the column; truncated to bytes.
      const c0 = clamp(x0 - 1, w);
      const c1 = clamp(x0, w);
      const c2 = clamp(x0 + 1, w);
      const c3 = clamp(x0 + 2, w);
      const r0 = clamp(y0 - 1, h) * w;
      const r1 = clamp(y0, h) * w;
      const r2 = clamp(y0 + 1, h) * w;
      const r3 = clamp(y0 + 2, h) * w;
      for (let ch = 0; ch < 3; ch++) {
        const p = ch * hw;
        let out: number;
        if (bic) {
          out = cubic(
            cubic(src[p + r0 + c0], src[p + r0 + c1], src[p + r0 + c2], src[p + r0 + c3], fx),
            cubic(src[p + r1 + c0], src[p + r1 + c1], src[p + r1 + c2], src[p + r1 + c3], fx),
            cubic(src[p + r2 + c0], src[p + r2 + c1], src[p + r2 + c2], src[p + r2 + c3], fx),
            cubic(src[p + r3 + c0], src[p + r3 + c1], src[p + r3 + c2], src[p + r3 + c3], fx),
            fy,
          );
        } else {
          const top = src[p + r1 + c1] + (src[p + r1 + c2] - src[p + r1 + c1]) * fx;
          const bottom = src[p + r2 + c1] + (src[p + r2 + c2] - src[p + r2 + c1]) * fx;
          out = top + (bottom - top) * fy;
        }
        dst[p + oi] = out <= 0 ? 0 : out >= 255 ? 255 : Math.trunc(out);
      }
    }
  }
  img.rgb.set(dst);
  if (mdst) img.mask!.set(mdst);
}
