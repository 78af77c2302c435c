// Batch-level regularisation of fine-tuning, as timm's Mixup (mode 'batch') and
// SoftTargetCrossEntropy: mixup (α 0.8) or cutmix (α 1.0), chosen per batch with probability 0.5,
// mixing each image with the batch flipped; targets are label-smoothed one-hots mixed with the same
// λ (cutmix's λ corrected to the pasted box's area). Every random draw comes from one
// torch.Generator, so a checkpointed generator state reproduces the stream exactly.
import * as torch from '../torch';
import { Tensor } from '../torch';
import { sampleBetaFrom } from '../util/beta';

/**
 * Settings of {@link Mixup} (timm's Mixup, mode 'batch'): the Beta α of mixup
 * and of cutmix, how often a batch is mixed and with which, and label smoothing.
 */
export interface MixOptions {
  numClasses: number;
  /** Mixup Beta(α, α); 0 disables mixup. Required; `semaim finetune`'s --mixup defaults to 0.8 (timm/MAE), see FINETUNE_OPTIONS. */
  mixupAlpha: number;
  /** CutMix Beta(α, α); 0 disables cutmix. Required; `semaim finetune`'s --cutmix defaults to 1.0, see FINETUNE_OPTIONS. */
  cutmixAlpha: number;
  /** Probability of mixing a batch at all. Default 1. */
  prob?: number;
  /** Probability of cutmix rather than mixup when both are enabled. Default 0.5. */
  switchProb?: number;
  /** Label smoothing ε: the target is (1 − ε)·onehot + ε/C. Default 0.1. */
  labelSmoothing?: number;
  /** Correct λ to the area actually pasted (box clipped at the border). Default true. */
  correctLam?: boolean;
}

/** What {@link Mixup} did to a batch: nothing, mixup (a blend with the flipped batch) or cutmix (a box pasted from it). */
export type MixMode = 'none' | 'mixup' | 'cutmix';

/** One batch's draw of Mixup.params(): the mode, λ, and the cutmix box. */
export interface MixParams {
  mode: MixMode;
  /** Weight of the original image (1 = unchanged). */
  lam: number;
  /** Cutmix box [y0, y1) × [x0, x1) pasted from the flipped batch. */
  box?: { y0: number; y1: number; x0: number; x1: number };
}

/** What Mixup.apply() returns: the mixed images [B, C, H, W] with their soft targets, and the draw that made them. */
export interface MixedBatch extends MixParams {
  images: Tensor;
  /** Soft targets [B, C], each row sums to 1. */
  targets: Tensor;
}

/** Uniform draws from a generator, fetched in blocks (one native call per block). */
class Draws {
  private buf: Float64Array = new Float64Array(0);
  private i = 0;
  constructor(
    private readonly gen: torch.Generator,
    private readonly block = 32,
  ) {}
  uniform(): number {
    if (this.i >= this.buf.length) {
      const t = torch.rand([this.block], { dtype: 'float64', generator: this.gen, device: 'cpu' });
      this.buf = t.toFloat64Array();
      t.dispose();
      this.i = 0;
    }
    return this.buf[this.i++];
  }
  beta(a: number, b: number): number {
    return sampleBetaFrom(a, b, () => this.uniform());
  }
  /** Integer in [low, high). */
  int(low: number, high: number): number {
    return Math.min(high - 1, low + Math.floor(this.uniform() * (high - low)));
  }
}

/** A Beta(a, b) sample from a generator (one block of uniforms). */
export function sampleBeta(a: number, b: number, gen: torch.Generator): number {
  return new Draws(gen).beta(a, b);
}

/** timm's rand_bbox + cutmix_bbox_and_lam: a box of side ratio √(1−λ), centred uniformly, clipped. */
export function cutmixBox(H: number, W: number, lam: number, cy: number, cx: number, correctLam = true): { box: NonNullable<MixParams['box']>; lam: number } {
  const ratio = Math.sqrt(1 - lam);
  const cutH = Math.floor(H * ratio);
  const cutW = Math.floor(W * ratio);
  const clip = (v: number, hi: number) => Math.min(Math.max(v, 0), hi);
  const box = {
    y0: clip(cy - Math.floor(cutH / 2), H),
    y1: clip(cy + Math.floor(cutH / 2), H),
    x0: clip(cx - Math.floor(cutW / 2), W),
    x1: clip(cx + Math.floor(cutW / 2), W),
  };
  const area = (box.y1 - box.y0) * (box.x1 - box.x0);
  return { box, lam: correctLam ? 1 - area / (H * W) : lam };
}

/** The dtype of soft targets: float32, or float64 for float64 images (a float64 run, as test/eval/finetune-golden.test.ts's). */
export type TargetDType = 'float32' | 'float64';

/** Label-smoothed one-hot targets [B, C]: 1 − ε + ε/C on the class, ε/C elsewhere. */
export function smoothOneHot(labels: Tensor, numClasses: number, smoothing = 0, dtype: TargetDType = 'float32'): Tensor {
  return torch.scope(() => {
    const off = smoothing / numClasses;
    const on = 1 - smoothing + off;
    return torch.F.oneHot(labels, numClasses)
      .to({ dtype })
      .mul(on - off)
      .add(off);
  });
}

/** timm's mixup_target: λ·smooth(y) + (1 − λ)·smooth(flip(y)). */
export function mixTargets(labels: Tensor, numClasses: number, lam: number, smoothing = 0, dtype: TargetDType = 'float32'): Tensor {
  return torch.scope(() => {
    const y1 = smoothOneHot(labels, numClasses, smoothing, dtype);
    if (lam === 1) return y1;
    const y2 = smoothOneHot(labels.flip(0), numClasses, smoothing, dtype);
    return y1.mul(lam).add(y2.mul(1 - lam));
  });
}

/**
 * mean over the batch of −Σ_c target_c · log softmax(logits)_c (timm's SoftTargetCrossEntropy), in
 * float32 for float32 and lower-precision logits (autocast's bf16/fp16), in float64 for float64 ones.
 */
export function softTargetCrossEntropy(logits: Tensor, targets: Tensor): Tensor {
  return torch.scope(() =>
    targets
      .mul((logits.dtype === 'float64' ? logits : logits.float()).logSoftmax(-1))
      .sum(-1)
      .neg()
      .mean(),
  );
}

/**
 * Mixup and cutmix of fine-tuning batches with label-smoothed soft targets, as timm's Mixup (mode 'batch'). Every draw comes from `generator`,
 * so a checkpointed generator state reproduces the stream; defaults: prob 1, switchProb 0.5, labelSmoothing 0.1, correctLam true.
 */
export class Mixup {
  readonly o: Required<MixOptions>;
  constructor(
    o: MixOptions,
    readonly generator: torch.Generator,
  ) {
    this.o = { prob: 1, switchProb: 0.5, labelSmoothing: 0.1, correctLam: true, ...o };
    const { mixupAlpha, cutmixAlpha, prob, switchProb, labelSmoothing, numClasses } = this.o;
    if (!(mixupAlpha >= 0)) throw new RangeError(`Mixup: mixupAlpha must be >= 0, got ${mixupAlpha}`);
    if (!(cutmixAlpha >= 0)) throw new RangeError(`Mixup: cutmixAlpha must be >= 0, got ${cutmixAlpha}`);
    if (!(prob >= 0 && prob <= 1)) throw new RangeError(`Mixup: prob must be in [0, 1], got ${prob}`);
    if (!(switchProb >= 0 && switchProb <= 1)) throw new RangeError(`Mixup: switchProb must be in [0, 1], got ${switchProb}`);
    if (!(labelSmoothing >= 0 && labelSmoothing < 1)) throw new RangeError(`Mixup: labelSmoothing must be in [0, 1), got ${labelSmoothing}`);
    if (!(Number.isInteger(numClasses) && numClasses > 1)) throw new RangeError(`Mixup: numClasses must be an integer > 1, got ${numClasses}`);
  }

  get enabled(): boolean {
    return this.o.prob > 0 && (this.o.mixupAlpha > 0 || this.o.cutmixAlpha > 0);
  }

  /** Draws this batch's mode, λ and box (timm's _params_per_batch, then the box for cutmix). */
  params(H: number, W: number): MixParams {
    const { mixupAlpha, cutmixAlpha, prob, switchProb, correctLam } = this.o;
    if (!this.enabled) return { mode: 'none', lam: 1 };
    const r = new Draws(this.generator);
    if (r.uniform() >= prob) return { mode: 'none', lam: 1 };
    let cutmix: boolean;
    if (mixupAlpha > 0 && cutmixAlpha > 0) cutmix = r.uniform() < switchProb;
    else cutmix = cutmixAlpha > 0;
    const alpha = cutmix ? cutmixAlpha : mixupAlpha;
    const lam = r.beta(alpha, alpha);
    if (!cutmix) return { mode: 'mixup', lam };
    const cy = r.int(0, H);
    const cx = r.int(0, W);
    const { box, lam: corrected } = cutmixBox(H, W, lam, cy, cx, correctLam);
    return { mode: 'cutmix', lam: corrected, box };
  }

  /** Mixes images [B, C, H, W] and builds soft targets from int64 labels [B] (float64 for float64 images, float32 otherwise). */
  apply(images: Tensor, labels: Tensor): MixedBatch {
    const [B, , H, W] = images.shape;
    // (before any draw) one label per image: one label was broadcast over the batch by the loss, and more
    // labels than images gave targets whose flipped partners were not the images' partners
    if (labels.ndim !== 1) throw new RangeError(`Mixup: labels must be [${B}], got [${labels.shape.join(', ')}]`);
    if (labels.shape[0] !== B) throw new RangeError(`Mixup: ${labels.shape[0]} labels for a batch of ${B} images`);
    const p = this.params(H, W);
    return torch.scope(() => {
      let mixed = images;
      if (p.mode === 'mixup') {
        mixed = images.mul(p.lam).add(images.flip(0).mul(1 - p.lam));
      } else if (p.mode === 'cutmix' && p.box) {
        const { y0, y1, x0, x1 } = p.box;
        const rows = torch.arange(H, undefined, 1, { device: images.device });
        const cols = torch.arange(W, undefined, 1, { device: images.device });
        const inRows = rows.ge(y0).logicalAnd(rows.lt(y1)).view(1, 1, H, 1);
        const inCols = cols.ge(x0).logicalAnd(cols.lt(x1)).view(1, 1, 1, W);
        mixed = torch.where(inRows.logicalAnd(inCols), images.flip(0), images);
      }
      const dtype: TargetDType = images.dtype === 'float64' ? 'float64' : 'float32';
      const targets = mixTargets(labels, this.o.numClasses, p.lam, this.o.labelSmoothing, dtype).to({ device: images.device });
      return { ...p, images: mixed === images ? images.clone() : mixed, targets };
    });
  }
}
