// Features that overflow float32: an encoder with finite but huge weights (a diverged pre-training's,
// ~1e30) gives NaN/Inf activations, and a k-NN, probe or embedding of them still looks like a result
// (every vote for class 0, all-NaN rows, a probe loss that seems to blame the lr). An extraction keeps one
// flag on the features' device, updated by every batch without waiting for it, and reads it once at the end.
import * as torch from '../torch';
import type { Tensor } from '../torch';
import type { ProcessGroup } from '../dist';
import { CheckpointError } from '../util/errors';

export class FeatureOverflowCheck {
  /** The sum of every feature times 0: 0 while all were finite, NaN from the first NaN/Inf on (inf × 0 is NaN). */
  private zeroSum: Tensor | null = null;

  /** Notes whether every value of a batch's features is finite (on their device). */
  add(features: Tensor): void {
    // two kernels, where isfinite().all() took a quarter of a linear probe's step on cached features
    torch.scope(() => {
      const s = features.detach().mul(0).sum().float();
      if (this.zeroSum) this.zeroSum.add_(s);
      else this.zeroSum = torch.keep(s.clone());
    });
  }

  /** Whether some batch had a NaN/Inf feature (reads the device). */
  overflowed(): boolean {
    return this.zeroSum !== null && this.zeroSum.item() !== 0;
  }

  /**
   * Throws featureOverflowError when some batch had a NaN/Inf feature, on any rank of `group` (every rank
   * calls it at the same point); `features` says which ("the test images' features").
   */
  async throwIfOverflowed(encoder: string | undefined, features: string, group?: ProcessGroup | null): Promise<void> {
    const mine = this.overflowed();
    if (group && group.worldSize > 1 ? await group.anyTrue(mine) : mine) throw featureOverflowError(encoder, features);
  }

  dispose(): void {
    this.zeroSum?.dispose();
    this.zeroSum = null;
  }
}

/** The error of an encoder whose features are not finite; `encoder` names its weights (the checkpoint) where known. */
export function featureOverflowError(encoder: string | undefined, features: string): CheckpointError {
  return new CheckpointError(
    `${encoder ?? 'the encoder'}: its outputs overflow float32: ${features} hold NaN/Inf values (non-finite features), ` +
      'so no result was computed or written. Its weights are unusable for evaluation: a diverged pre-training leaves such weights ' +
      '(semaim report on its run folder shows its loss); evaluate an earlier checkpoint.',
  );
}
