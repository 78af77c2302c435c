// Batch-level mixup / cutmix and (label-smoothed) soft targets, following timm's `Mixup` in
// 'batch' mode: one λ per batch, sample i is mixed with sample n-1-i, cutmix λ is corrected to the
// pasted area, targets = λ·onehot(y) + (1-λ)·onehot(flip(y)) with smoothing.

import { Rng } from './rng';

/**
 * Batch-level mixup/cutmix settings, as timm's Mixup in 'batch' mode (`LoaderOptions.mixup`, {@link mixBatch}).
 * Defaults: mixupAlpha 0.8, cutmixAlpha 1.0, prob 1, switchProb 0.5, labelSmoothing 0, correctLam true.
 */
export interface MixupOptions {
  /** Beta(α, α) for mixup; 0 disables mixup. timm/MAE fine-tuning: 0.8. */
  mixupAlpha?: number;
  /** Beta(α, α) for cutmix; 0 disables cutmix. timm/MAE fine-tuning: 1.0. */
  cutmixAlpha?: number;
  /** Probability that a batch is mixed at all. */
  prob?: number;
  /** Probability of cutmix instead of mixup when both are enabled. */
  switchProb?: number;
  /** Label smoothing folded into the soft targets. */
  labelSmoothing?: number;
  /** Correct λ to the area actually pasted by cutmix. */
  correctLam?: boolean;
}

/** What {@link mixBatch} did: λ (1 = batch unchanged), whether it used cutmix, and the pasted box. */
export interface MixResult {
  lam: number;
  cutmix: boolean;
  /** Pasted box [y0, y1, x0, x1] for cutmix. */
  box?: [number, number, number, number];
}

/**
 * Soft targets [n, numClasses]; λ weights the sample's own label, 1-λ the flipped partner's. A negative label
 * (unlabelled) gets no target; a label ≥ numClasses throws a RangeError naming it. (A row an evaluation's
 * loader left blank keeps its sample's label: it is known by its index, -1, and left out by its consumer.)
 */
export function softTargets(labels: Int32Array, numClasses: number, lam = 1, smoothing = 0): Float32Array {
  const n = labels.length;
  for (const l of labels) if (l >= numClasses) throw new RangeError(`softTargets: label ${l} is outside the ${numClasses} classes of the targets (numClasses)`);
  const off = smoothing / numClasses;
  const on = 1 - smoothing + off;
  const t = new Float32Array(n * numClasses).fill(off);
  for (let i = 0; i < n; i++) {
    const a = labels[i];
    const b = labels[n - 1 - i];
    const row = i * numClasses;
    if (a >= 0) t[row + a] += (on - off) * lam;
    if (b >= 0) t[row + b] += (on - off) * (1 - lam);
  }
  return t;
}

/**
 * Mixes a batch in place: images are n×c×h×w (float or bytes), masks optional n×h×w.
 * Returns λ and what was done; λ = 1 means the batch is unchanged.
 */
export function mixBatch(
  images: Float32Array | Uint8Array,
  shape: readonly [number, number, number, number],
  masks: Uint8Array | null,
  opts: MixupOptions,
  rng: Rng,
): MixResult {
  const mixupAlpha = opts.mixupAlpha ?? 0.8;
  const cutmixAlpha = opts.cutmixAlpha ?? 1.0;
  const prob = opts.prob ?? 1;
  const switchProb = opts.switchProb ?? 0.5;
  let lam = 1;
  let useCutmix = false;
  if (rng.float() < prob) {
    if (mixupAlpha > 0 && cutmixAlpha > 0) {
      useCutmix = rng.float() < switchProb;
      lam = useCutmix ? rng.beta(cutmixAlpha, cutmixAlpha) : rng.beta(mixupAlpha, mixupAlpha);
    } else if (mixupAlpha > 0) {
      lam = rng.beta(mixupAlpha, mixupAlpha);
    } else if (cutmixAlpha > 0) {
      useCutmix = true;
      lam = rng.beta(cutmixAlpha, cutmixAlpha);
    }
  }
  if (lam === 1) return { lam: 1, cutmix: false };
  const [n, c, h, w] = shape;
  const hw = h * w;
  const per = c * hw;
  if (useCutmix) {
    const ratio = Math.sqrt(1 - lam);
    const cutH = Math.trunc(h * ratio);
    const cutW = Math.trunc(w * ratio);
    const cy = rng.int(h);
    const cx = rng.int(w);
    const y0 = clamp(cy - (cutH >> 1), 0, h);
    const y1 = clamp(cy + (cutH >> 1), 0, h);
    const x0 = clamp(cx - (cutW >> 1), 0, w);
    const x1 = clamp(cx + (cutW >> 1), 0, w);
    if (opts.correctLam ?? true) lam = 1 - ((y1 - y0) * (x1 - x0)) / hw;
    // swap the box between i and n-1-i (both read originals)
    for (let i = 0; i < n >> 1; i++) {
      const j = n - 1 - i;
      for (let ch = 0; ch < c; ch++) {
        for (let y = y0; y < y1; y++) {
          const oi = i * per + ch * hw + y * w;
          const oj = j * per + ch * hw + y * w;
          for (let x = x0; x < x1; x++) {
            const t = images[oi + x];
            images[oi + x] = images[oj + x];
            images[oj + x] = t;
          }
        }
      }
      if (masks) {
        for (let y = y0; y < y1; y++) {
          const oi = i * hw + y * w;
          const oj = j * hw + y * w;
          for (let x = x0; x < x1; x++) {
            const t = masks[oi + x];
            masks[oi + x] = masks[oj + x];
            masks[oj + x] = t;
          }
        }
      }
    }
    return { lam, cutmix: true, box: [y0, y1, x0, x1] };
  }
  const isFloat = images instanceof Float32Array;
  const l1 = 1 - lam;
  for (let i = 0; i < n >> 1; i++) {
    const oi = i * per;
    const oj = (n - 1 - i) * per;
    for (let k = 0; k < per; k++) {
      const a = images[oi + k];
      const b = images[oj + k];
      const va = a * lam + b * l1;
      const vb = b * lam + a * l1;
      images[oi + k] = isFloat ? va : Math.round(va);
      images[oj + k] = isFloat ? vb : Math.round(vb);
    }
  }
  return { lam, cutmix: false };
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/** How a finished batch is mixed and labelled: mixup/cutmix (`mix`) and/or label smoothing, over numClasses. */
export interface BatchTargets {
  seed: number;
  mix: MixupOptions | null;
  labelSmoothing: number;
  numClasses: number;
}

/**
 * Mixes a finished batch in place (with `mix`, from the batch's own random stream: seed, epoch, batch, rank)
 * and gives its λ and soft targets (mixed or label-smoothed; null for plain labels).
 */
export function mixedTargets(
  images: Float32Array | Uint8Array,
  shape: readonly [number, number, number, number],
  masks: Uint8Array | null,
  labels: Int32Array,
  cfg: BatchTargets,
  at: { epoch: number; batch: number; rank?: number },
): { lam: number; targets: Float32Array | null } {
  if (cfg.mix) {
    const rng = new Rng(cfg.seed, 'mix', at.epoch, at.batch, ...(at.rank === undefined ? [] : [at.rank]));
    const { lam } = mixBatch(images, shape, masks, cfg.mix, rng);
    return { lam, targets: softTargets(labels, cfg.numClasses, lam, cfg.mix.labelSmoothing ?? 0) };
  }
  return { lam: 1, targets: cfg.labelSmoothing > 0 ? softTargets(labels, cfg.numClasses, 1, cfg.labelSmoothing) : null };
}
