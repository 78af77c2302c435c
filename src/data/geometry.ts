// The geometric part of a transform list (resize, crops, flip) is folded into one plan: which
// source rectangle maps onto which output size, which source pixels may be read, and whether the
// result is mirrored. It is computed from the image size alone, before decoding, so the decoder
// can skip what the crop leaves out and the resampler runs once.

import type { Rng } from './rng';
import type { Rect, ResampleSpec } from './resample';
import { filterSupport } from './resample';
import type { TransformSpec } from './transforms';

/** A plan is what the resampler executes: source rectangle → output size, readable pixels, mirroring. */
export type Plan = ResampleSpec;

/** Python's round(): halves go to the even neighbour (as torchvision's center_crop and RandomResizedCrop, and timm's RandomErasing, use). */
export function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export function identityPlan(width: number, height: number): Plan {
  const r = { x0: 0, y0: 0, x1: width, y1: height };
  return { sample: { ...r }, clip: { ...r }, outW: width, outH: height, flip: false, interp: 'bilinear' };
}

/** Maps an integer crop [left, left+w) × [top, top+h) of the current output onto the source. */
function cropPlan(p: Plan, left: number, top: number, w: number, h: number, clipToCrop: boolean): void {
  if (p.flip) left = p.outW - left - w;
  const kx = (p.sample.x1 - p.sample.x0) / p.outW;
  const ky = (p.sample.y1 - p.sample.y0) / p.outH;
  const s: Rect = {
    x0: p.sample.x0 + left * kx,
    y0: p.sample.y0 + top * ky,
    x1: p.sample.x0 + (left + w) * kx,
    y1: p.sample.y0 + (top + h) * ky,
  };
  p.sample = s;
  if (clipToCrop) p.clip = clipTo(p.clip, s);
  p.outW = w;
  p.outH = h;
}

/** The part of `clip` inside `r`. */
function clipTo(clip: Rect, r: Rect): Rect {
  return { x0: Math.max(clip.x0, r.x0), y0: Math.max(clip.y0, r.y0), x1: Math.min(clip.x1, r.x1), y1: Math.min(clip.y1, r.y1) };
}

/**
 * torchvision RandomResizedCrop.get_params on a width×height image: [top, left, h, w]; with
 * `singleDraw`, MAE's util/crop.py get_params instead (one draw, width and height clipped to the image).
 */
export function rrcParams(
  width: number,
  height: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
  rng: Rng,
  singleDraw = false,
): [number, number, number, number] {
  const area = width * height;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  if (singleDraw) {
    // MAE's util/crop.py get_params: one draw, clipped to the image
    const target = area * rng.uniform(scale[0], scale[1]);
    const ar = Math.exp(rng.uniform(logLo, logHi));
    const w = Math.max(1, Math.min(roundHalfEven(Math.sqrt(target * ar)), width));
    const h = Math.max(1, Math.min(roundHalfEven(Math.sqrt(target / ar)), height));
    const top = rng.int(height - h + 1);
    const left = rng.int(width - w + 1);
    return [top, left, h, w];
  }
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const ar = Math.exp(rng.uniform(logLo, logHi));
    const w = roundHalfEven(Math.sqrt(target * ar));
    const h = roundHalfEven(Math.sqrt(target / ar));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = rng.int(height - h + 1);
      const left = rng.int(width - w + 1);
      return [top, left, h, w];
    }
  }
  // Fallback to a central crop.
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < Math.min(ratio[0], ratio[1])) {
    w = width;
    h = roundHalfEven(w / Math.min(ratio[0], ratio[1]));
  } else if (inRatio > Math.max(ratio[0], ratio[1])) {
    h = height;
    w = roundHalfEven(h * Math.max(ratio[0], ratio[1]));
  } else {
    w = width;
    h = height;
  }
  h = Math.max(1, Math.min(h, height));
  w = Math.max(1, Math.min(w, width));
  return [Math.floor((height - h) / 2), Math.floor((width - w) / 2), h, w];
}

/** [width, height] of a width×height image whose short side is resized to `size` (long side capped at maxSize), as torchvision. */
export function shortSideResize(width: number, height: number, size: number, maxSize?: number): [number, number] {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  let newShort = size;
  let newLong = Math.floor((size * long) / short);
  if (maxSize !== undefined && newLong > maxSize) {
    newShort = Math.floor((maxSize * newShort) / newLong);
    newLong = maxSize;
  }
  return width <= height ? [newShort, newLong] : [newLong, newShort];
}

/** Applies the leading geometric transforms to a plan for a width×height image. */
export function buildPlan(width: number, height: number, ts: readonly TransformSpec[], rng: Rng): Plan {
  const p = identityPlan(width, height);
  for (const t of ts) {
    switch (t.op) {
      case 'resize': {
        let w: number;
        let h: number;
        if (typeof t.size === 'number') {
          [w, h] = shortSideResize(p.outW, p.outH, t.size, t.maxSize);
        } else {
          h = t.size[0];
          w = t.size[1];
        }
        // it resamples the current image, which is the sample rectangle: after a crop its filter reads
        // no pixel outside the crop (as torchvision, which crops first), edge pixels are extended instead
        p.clip = clipTo(p.clip, p.sample);
        p.outW = Math.max(1, w);
        p.outH = Math.max(1, h);
        p.interp = t.interpolation;
        break;
      }
      case 'centerCrop':
      case 'randomCrop': {
        const [ch, cw] = t.size;
        if (p.outW < cw || p.outH < ch) {
          // upscale so the crop fits (the aspect ratio is kept)
          const f = Math.max(cw / p.outW, ch / p.outH);
          p.outW = Math.max(cw, Math.round(p.outW * f));
          p.outH = Math.max(ch, Math.round(p.outH * f));
          if (p.interp === 'nearest') p.interp = 'bilinear';
        }
        // torchvision: centre offsets rounded; RandomCrop's top = randint(0, h − th + 1), then left
        const top = t.op === 'centerCrop' ? roundHalfEven((p.outH - ch) / 2) : rng.int(p.outH - ch + 1);
        const left = t.op === 'centerCrop' ? roundHalfEven((p.outW - cw) / 2) : rng.int(p.outW - cw + 1);
        cropPlan(p, left, top, cw, ch, false);
        break;
      }
      case 'randomResizedCrop': {
        const [top, left, h, w] = rrcParams(p.outW, p.outH, t.scale, t.ratio, rng, t.singleDraw);
        cropPlan(p, left, top, w, h, true);
        p.outW = t.size[1];
        p.outH = t.size[0];
        p.interp = t.interpolation;
        break;
      }
      case 'horizontalFlip':
        if (rng.float() < t.p) p.flip = !p.flip;
        break;
      default:
        break;
    }
  }
  return p;
}

/** Source pixels the resampler may touch for this plan (clip ∩ sample grown by the filter support). */
export function neededRegion(p: Plan): Rect {
  const kx = Math.max(1, (p.sample.x1 - p.sample.x0) / p.outW);
  const ky = Math.max(1, (p.sample.y1 - p.sample.y0) / p.outH);
  const sup = filterSupport(p.interp) + 1;
  return {
    x0: Math.max(p.clip.x0, Math.floor(p.sample.x0 - sup * kx)),
    y0: Math.max(p.clip.y0, Math.floor(p.sample.y0 - sup * ky)),
    x1: Math.min(p.clip.x1, Math.ceil(p.sample.x1 + sup * kx)),
    y1: Math.min(p.clip.y1, Math.ceil(p.sample.y1 + sup * ky)),
  };
}

/** Largest DCT-domain reduction (1, 2, 4, 8) that keeps the decoded region at least output-sized. */
export function reductionFor(p: Plan): 1 | 2 | 4 | 8 {
  const f = Math.min((p.sample.x1 - p.sample.x0) / p.outW, (p.sample.y1 - p.sample.y0) / p.outH);
  if (f >= 8) return 8;
  if (f >= 4) return 4;
  if (f >= 2) return 2;
  return 1;
}
