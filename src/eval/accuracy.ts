// Classification accuracy from class scores: top-1, top-5 and per-class top-1, accumulated batch
// by batch (one host transfer per batch).
import * as torch from '../torch';
import { Tensor } from '../torch';

/**
 * Classification accuracy over a test set: top-1, top-5 and per-class top-1. What {@link AccuracyTally}
 * (result()) and {@link accuracyOf} return; top1 and top5 are NaN when no image was tallied.
 */
export interface Accuracy {
  /** Top-1 accuracy, a fraction in [0, 1] (NaN when no image was tallied). */
  top1: number;
  /** Top-min(5, numClasses) accuracy, a fraction in [0, 1] (NaN when no image was tallied). */
  top5: number;
  /** Top-1 per class; null for a class with no test images. */
  perClass: (number | null)[];
  /** Test images per class. */
  perClassCount: number[];
  /** Test images tallied. */
  n: number;
}

/**
 * Accumulates top-1, top-5 and per-class top-1 hits batch by batch, from class scores [B, C] and labels [B].
 * result() gives the {@link Accuracy}; counts() and fromCounts() add tallies up across data-parallel ranks.
 */
export class AccuracyTally {
  private n = 0;
  private top1 = 0;
  private top5 = 0;
  private readonly correct: number[];
  private readonly count: number[];

  constructor(readonly numClasses: number) {
    this.correct = new Array(numClasses).fill(0);
    this.count = new Array(numClasses).fill(0);
  }

  /** scores [B, C] (larger = more likely; ties go to the lower class index), labels [B] (one outside the classes: a miss, in no class). */
  add(scores: Tensor, labels: Int32Array): void {
    const { top1, top5 } = this.hits(scores, labels);
    this.addHits(labels, top1, top5);
  }

  /** Whether each row's label is its top-1 and among its top-5 classes (1/0), without tallying them. */
  hits(scores: Tensor, labels: Int32Array): { top1: Uint8Array; top5: Uint8Array } {
    const [B, C] = scores.shape;
    if (C !== this.numClasses) throw new Error(`AccuracyTally: scores have ${C} classes, expected ${this.numClasses}`);
    if (B !== labels.length) throw new Error(`AccuracyTally: ${B} score rows for ${labels.length} labels`);
    const k = Math.min(5, C);
    const [top1, top5] = torch.noGrad(() =>
      torch.scope(() => {
        const y = torch.tensor(labels, { dtype: 'int64', device: 'cpu' }).unsqueeze(1);
        const known = y.clamp(0, C - 1); // (a label outside the classes is no hit)
        // float64 stays float64 (rounded to float32, close scores tied and the lower class won); lower precisions are exact in float32
        const s = scores.detach();
        const rank = labelRanks((s.dtype === 'float64' ? s : s.float()).cpu(), known).squeeze(1);
        const valid = known.eq(y).squeeze(1);
        const hit = (r: Tensor): Uint8Array => r.logicalAnd(valid).to({ dtype: 'uint8' }).data() as Uint8Array;
        return [hit(rank.eq(0)), hit(rank.lt(k))];
      }),
    );
    return { top1, top5 };
  }

  /** Tallies rows by their labels and hits (see hits()). */
  addHits(labels: ArrayLike<number>, top1: ArrayLike<number>, top5: ArrayLike<number>): void {
    for (let i = 0; i < labels.length; i++) {
      const c = labels[i];
      const known = c >= 0 && c < this.numClasses; // (a label outside the classes is a miss, in no class)
      if (known) this.count[c]++;
      if (top1[i]) {
        if (known) this.correct[c]++;
        this.top1++;
      }
      if (top5[i]) this.top5++;
    }
    this.n += labels.length;
  }

  /** The tally as numbers that add up across tallies: [n, top1, top5, correct per class, count per class]. */
  counts(): number[] {
    return [this.n, this.top1, this.top5, ...this.correct, ...this.count];
  }

  /** A tally from counts() (e.g. summed over data-parallel ranks). */
  static fromCounts(numClasses: number, counts: ArrayLike<number>): AccuracyTally {
    if (counts.length !== 3 + 2 * numClasses) throw new Error(`AccuracyTally: ${counts.length} counts for ${numClasses} classes`);
    const t = new AccuracyTally(numClasses);
    [t.n, t.top1, t.top5] = [counts[0], counts[1], counts[2]];
    for (let c = 0; c < numClasses; c++) {
      t.correct[c] = counts[3 + c];
      t.count[c] = counts[3 + numClasses + c];
    }
    return t;
  }

  /** The accuracy of every row tallied so far. */
  result(): Accuracy {
    return {
      top1: this.n ? this.top1 / this.n : NaN,
      top5: this.n ? this.top5 / this.n : NaN,
      perClass: this.count.map((c, i) => (c ? this.correct[i] / c : null)),
      perClassCount: [...this.count],
      n: this.n,
    };
  }
}

/**
 * The place of each row's label among its classes in a stable descending sort of the scores [B, C]
 * (NaN above every number, ties in class order: where argsort(1, descending, stable) puts it), [B, 1] int64.
 * It counts the classes ranked before the label, O(B·C), where sorting every row to read its first five
 * took most of a linear probe's evaluation.
 */
function labelRanks(scores: Tensor, labels: Tensor): Tensor {
  const C = scores.shape[1];
  const own = scores.gather(1, labels); // [B, 1]
  const before = torch.arange(0, C, 1, { dtype: 'int64' }).unsqueeze(0).lt(labels); // classes with a lower index
  const nan = scores.isnan();
  const ownNan = own.isnan();
  // a NaN score ranks above every number and ties with the other NaNs; among numbers, the larger first
  const above = nan
    .logicalAnd(ownNan.logicalNot())
    .logicalOr(scores.gt(own))
    .logicalOr(scores.eq(own).logicalOr(nan.logicalAnd(ownNan)).logicalAnd(before));
  return above.sum(1, true);
}

/** Accuracy of a whole score matrix at once. */
export function accuracyOf(scores: Tensor, labels: Int32Array, numClasses: number): Accuracy {
  const t = new AccuracyTally(numClasses);
  t.add(scores, labels);
  return t.result();
}
