// The linear segmentation head on frozen patch tokens (the DINOv2 linear protocol, mmseg's BNHead):
// BatchNorm over the feature dimension, a 1×1 linear map to class logits per patch, then bilinear
// upsampling of the logit maps to the image (align_corners = False, as torch's F.interpolate and
// mmseg's resize). The upsampling is linear, so upsampling the C logit maps equals classifying
// upsampled features — and is cheaper when C < D.
import * as torch from '../torch';
import { F, Tensor } from '../torch';
import { BatchNorm1d, Linear, Module, init } from '../nn';

export class SegLinearHead extends Module {
  readonly bn: BatchNorm1d;
  readonly linear: Linear;

  /**
   * `dim`: width of the patch features (D × number of blocks concatenated). BatchNorm without affine
   * (a Linear follows, which can absorb a scale and shift), eps 1e-6, as the linear probe; Linear
   * weight N(0, 0.01²) and zero bias, as mmseg's conv_seg.
   */
  constructor(
    readonly dim: number,
    readonly numClasses: number,
  ) {
    super();
    if (!(Number.isInteger(numClasses) && numClasses >= 2)) throw new RangeError(`SegLinearHead: numClasses must be an integer >= 2, got ${numClasses}`);
    this.bn = this.module('bn', new BatchNorm1d(dim, { affine: false, eps: 1e-6 }));
    this.linear = this.module('linear', new Linear(dim, numClasses));
    init.normal_(this.linear.weight, 0, 0.01);
    init.zeros_(this.linear.bias!);
  }

  /** Per-patch logits [B, C, gridH, gridW] from patch tokens [B, gridH·gridW, D] (row-major patches). */
  patchLogits(tokens: Tensor, grid: [number, number]): Tensor {
    const [B, N, D] = tokens.shape;
    if (tokens.shape.length !== 3 || D !== this.dim) throw new Error(`SegLinearHead: expected tokens [B, N, ${this.dim}], got [${tokens.shape}]`);
    if (grid[0] * grid[1] !== N) throw new Error(`SegLinearHead: ${N} tokens do not fill a ${grid[0]}×${grid[1]} grid`);
    return torch.scope(() => {
      const z = this.linear.forward(this.bn.forward(tokens.reshape(B * N, D)));
      return z.view(B, grid[0], grid[1], this.numClasses).permute(0, 3, 1, 2).contiguous();
    });
  }

  /** Logits [B, C, H, W] at the image size. */
  forward(tokens: Tensor, grid: [number, number], size: [number, number]): Tensor {
    return torch.scope(() => upsampleLogits(this.patchLogits(tokens, grid), size));
  }
}

/** Bilinear resize of logit maps [B, C, h, w] to [B, C, H, W], align_corners = False (torch's F.interpolate). */
export function upsampleLogits(logits: Tensor, size: [number, number]): Tensor {
  const [, , h, w] = logits.shape;
  if (h === size[0] && w === size[1]) return logits.clone();
  return F.interpolate(logits, size, 'bilinear', false);
}
