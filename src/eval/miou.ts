// Semantic-segmentation metrics from a confusion matrix accumulated over a whole test set (as
// mmseg's IoUMetric): per-class IoU = TP / (TP + FP + FN), mIoU = the mean over the classes whose
// union is not empty (a class absent from both the truth and the prediction is NaN and left out,
// mmseg's nanmean; a class predicted but absent from the truth has IoU 0 and counts), pixel accuracy
// = TP summed over classes / labelled pixels. Pixels whose truth is the ignore index count nowhere.
import * as torch from '../torch';
import { Tensor } from '../torch';

import { IGNORE_INDEX } from '../data/seg-streams';

// The ignore index of the masks (255, ADE20K / VOC): such pixels are neither trained on nor scored.
export { IGNORE_INDEX };

/**
 * Semantic-segmentation scores of a confusion matrix, as mmseg's IoUMetric: mIoU, pixel and mean accuracy,
 * and per class, as fractions 0–1. What ConfusionMatrix.metrics() and {@link metricsFromConfusion} return.
 */
export interface SegMetrics {
  /** Mean IoU over the classes present in the truth or the prediction, 0–1 (NaN when no pixel is labelled). */
  mIoU: number;
  /** Correct labelled pixels / labelled pixels. */
  pixelAccuracy: number;
  /** Mean over classes present in the truth of TP / truth pixels. */
  meanAccuracy: number;
  /** IoU per class; null when the class is absent from both truth and prediction. */
  perClassIoU: (number | null)[];
  /** TP / truth pixels per class; null when the class is absent from the truth. */
  perClassAccuracy: (number | null)[];
  /** Labelled (not ignored) pixels scored. */
  pixels: number;
  /** Classes that entered the mean IoU. */
  classesScored: number;
}

/** Counts[truth × C + prediction] over every labelled pixel seen so far. */
export class ConfusionMatrix {
  readonly counts: Float64Array;

  constructor(
    readonly numClasses: number,
    readonly ignoreIndex = IGNORE_INDEX,
  ) {
    if (!(Number.isInteger(numClasses) && numClasses >= 1)) throw new RangeError(`ConfusionMatrix: numClasses must be a positive integer, got ${numClasses}`);
    this.counts = new Float64Array(numClasses * numClasses);
  }

  /** Adds pixels given as plain arrays of class indices, whole numbers (truth may hold the ignore index). */
  addArrays(truth: ArrayLike<number>, prediction: ArrayLike<number>): this {
    if (truth.length !== prediction.length) throw new RangeError(`ConfusionMatrix: ${truth.length} truth pixels, ${prediction.length} predicted`);
    const C = this.numClasses;
    for (let i = 0; i < truth.length; i++) {
      const t = truth[i];
      if (t === this.ignoreIndex) continue;
      const p = prediction[i];
      // (a typed array ignores a write at counts[1.5]: such a pixel vanished, and the scores were of the rest)
      if (!Number.isInteger(t)) throw new RangeError(`ConfusionMatrix: truth label ${t} is not a class index (a whole number)`);
      if (!Number.isInteger(p)) throw new RangeError(`ConfusionMatrix: predicted label ${p} is not a class index (a whole number)`);
      if (!(t >= 0 && t < C)) throw new RangeError(`ConfusionMatrix: truth label ${t} is outside 0..${C - 1} (and not the ignore index ${this.ignoreIndex})`);
      if (!(p >= 0 && p < C)) throw new RangeError(`ConfusionMatrix: predicted label ${p} is outside 0..${C - 1}`);
      this.counts[t * C + p]++;
    }
    return this;
  }

  /**
   * Adds pixels given as tensors of class indices (integers, or whole numbers in a floating tensor) of the same shape (any device): the counting runs on the
   * device (one scatter-add), only the C×C counts come back.
   */
  addTensors(truth: Tensor, prediction: Tensor): this {
    if (truth.shape.join() !== prediction.shape.join())
      throw new RangeError(`ConfusionMatrix: truth [${truth.shape}] and prediction [${prediction.shape}] differ`);
    const C = this.numClasses;
    const counts = torch.noGrad(() =>
      torch.scope(() => {
        // floating labels are class indices only as whole numbers (the cast to int64 truncated 1.5 to class 1)
        for (const [what, x] of [
          ['truth', truth],
          ['prediction', prediction],
        ] as const) {
          if (torch.isFloating(x.dtype) && x.ne(x.floor()).any().item())
            throw new RangeError(`ConfusionMatrix: a ${what} label is not a whole number, so not a class index`);
        }
        const t = truth.flatten().long();
        const p = prediction.flatten().long();
        const keep = t.ne(this.ignoreIndex);
        const tk = t.maskedSelect(keep);
        const pk = p.maskedSelect(keep);
        const bad = tk.lt(0).logicalOr(tk.ge(C)).any().item() || pk.lt(0).logicalOr(pk.ge(C)).any().item();
        if (bad) throw new RangeError(`ConfusionMatrix: a label is outside 0..${C - 1} (truth other than the ignore index ${this.ignoreIndex}, or prediction)`);
        const idx = tk.mul(C).add(pk);
        return torch
          .zeros([C * C], { dtype: 'float64', device: idx.device })
          .scatterAdd(0, idx, torch.ones([idx.shape[0]], { dtype: 'float64', device: idx.device }))
          .toFloat64Array();
      }),
    );
    for (let i = 0; i < counts.length; i++) this.counts[i] += counts[i];
    return this;
  }

  metrics(): SegMetrics {
    return metricsFromConfusion(this.counts, this.numClasses);
  }
}

/** The metrics of a C×C confusion matrix (row = truth, column = prediction). */
export function metricsFromConfusion(counts: ArrayLike<number>, C: number): SegMetrics {
  if (counts.length !== C * C) throw new RangeError(`metricsFromConfusion: ${counts.length} counts for ${C} classes`);
  const perClassIoU: (number | null)[] = [];
  const perClassAccuracy: (number | null)[] = [];
  let correct = 0;
  let pixels = 0;
  for (let c = 0; c < C; c++) {
    let truth = 0;
    let predicted = 0;
    for (let k = 0; k < C; k++) {
      truth += counts[c * C + k];
      predicted += counts[k * C + c];
    }
    const tp = counts[c * C + c];
    const union = truth + predicted - tp;
    perClassIoU.push(union > 0 ? tp / union : null);
    perClassAccuracy.push(truth > 0 ? tp / truth : null);
    correct += tp;
    pixels += truth;
  }
  const mean = (v: (number | null)[]): number => {
    const present = v.filter((x): x is number => x !== null);
    return present.length ? present.reduce((a, b) => a + b, 0) / present.length : NaN;
  };
  const scored = perClassIoU.filter((x) => x !== null).length;
  return {
    mIoU: mean(perClassIoU),
    pixelAccuracy: pixels > 0 ? correct / pixels : NaN,
    meanAccuracy: mean(perClassAccuracy),
    perClassIoU,
    perClassAccuracy,
    pixels,
    classesScored: scored,
  };
}
