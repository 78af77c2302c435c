// Neural-network functions (torch.nn.functional).
import { native } from './native';
import { Tensor, wrap } from './tensor';
import { isFloating, type DType } from './dtype';

/** A 2-D size, stride or padding: one number for both dims, or [height, width]. Like PyTorch's int-or-tuple arguments. */
export type Pair = number | [number, number];
const pair = (x: Pair): [number, number] => (Array.isArray(x) ? x : [x, x]);
/** How a loss combines its per-element values: their mean, their sum, or none (per-element losses). As in PyTorch. */
export type Reduction = 'mean' | 'sum' | 'none';

/** x · weightᵀ + bias, with weight [out, in] and x [..., in]. Like torch.nn.functional.linear. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return wrap(native.linear(x.h, weight.h, bias ? bias.h : null));
}
/** Softmax along dim, computed in dtype when given (the input is cast first). Like torch.nn.functional.softmax. */
export function softmax(x: Tensor, dim: number, dtype?: DType): Tensor {
  return wrap(native.softmax(x.h, dim, dtype ?? null));
}
/** Log of the softmax along dim, computed in dtype when given. Like torch.nn.functional.log_softmax. */
export function logSoftmax(x: Tensor, dim: number, dtype?: DType): Tensor {
  return wrap(native.logSoftmax(x.h, dim, dtype ?? null));
}
/**
 * Layer normalization over the last dims given by normalizedShape, with optional elementwise
 * weight and bias; eps defaults to 1e-5. Like torch.nn.functional.layer_norm (same argument order).
 */
export function layerNorm(x: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return wrap(native.layerNorm(x.h, normalizedShape, weight ? weight.h : null, bias ? bias.h : null, eps));
}
/**
 * Throws a RangeError (naming `where`) when x [N, C, ...] has one value per channel (N × the sizes after C is 1):
 * PyTorch's _verify_batch_size for batch norm in training, where the unbiased batch variance is 0/0 and the
 * running variance would become NaN.
 */
export function checkBatchNormSize(x: Tensor, where: string): void {
  const s = x.shape;
  const perChannel = s.length < 2 ? NaN : s[0] * s.slice(2).reduce((a, b) => a * b, 1);
  if (perChannel === 1) throw new RangeError(`${where}: expected more than 1 value per channel when training, got input size [${s.join(', ')}]`);
}

/**
 * Batch normalization of x [N, C, ...] per channel. Like torch.nn.functional.batch_norm, with weight,
 * bias, training (default false), momentum (0.1) and eps (1e-5) in an options object; in training the
 * running statistics, when given, are updated in place. In training, one value per channel is refused
 * (a RangeError), as PyTorch refuses it.
 */
export function batchNorm(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  o: { weight?: Tensor | null; bias?: Tensor | null; training?: boolean; momentum?: number; eps?: number } = {},
): Tensor {
  if (o.training) checkBatchNormSize(x, 'batchNorm');
  return wrap(
    native.batchNorm(
      x.h,
      o.weight?.h ?? null,
      o.bias?.h ?? null,
      runningMean?.h ?? null,
      runningVar?.h ?? null,
      o.training ?? false,
      o.momentum ?? 0.1,
      o.eps ?? 1e-5,
    ),
  );
}
/** GELU; approximate 'none' (exact, erf) or 'tanh'. */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return wrap(native.gelu(x.h, approximate));
}
/** max(x, 0) elementwise, as a new tensor. Like torch.nn.functional.relu (no inplace option). */
export function relu(x: Tensor): Tensor {
  return x.relu();
}
/**
 * Zeroes each element with probability p (default 0.5) and scales the rest by 1/(1-p) when training
 * (default true); otherwise the values pass unchanged. Like torch.nn.functional.dropout; p outside [0, 1] throws a RangeError.
 */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  if (p < 0 || p > 1) throw new RangeError(`dropout: p must be in [0, 1], got ${p}`);
  return wrap(native.dropout(x.h, p, training));
}
/**
 * 2-D convolution of x [N, C_in, H, W] with weight [C_out, C_in/groups, kH, kW]. Like
 * torch.nn.functional.conv2d, with stride (default 1), padding (0, numbers only: no 'same'/'valid'),
 * dilation (1) and groups (1) in an options object.
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, o: { stride?: Pair; padding?: Pair; dilation?: Pair; groups?: number } = {}): Tensor {
  return wrap(native.conv2d(x.h, weight.h, bias ? bias.h : null, pair(o.stride ?? 1), pair(o.padding ?? 0), pair(o.dilation ?? 1), o.groups ?? 1));
}
/**
 * 2-D average pooling over kernel windows. Like torch.nn.functional.avg_pool2d with options stride
 * (default: the kernel), padding (0), ceilMode (false) and countIncludePad (true); no divisor_override.
 */
export function avgPool2d(x: Tensor, kernel: Pair, o: { stride?: Pair; padding?: Pair; ceilMode?: boolean; countIncludePad?: boolean } = {}): Tensor {
  return wrap(native.avgPool2d(x.h, pair(kernel), pair(o.stride ?? kernel), pair(o.padding ?? 0), !!o.ceilMode, o.countIncludePad ?? true));
}
/**
 * 2-D max pooling over kernel windows. Like torch.nn.functional.max_pool2d with options stride
 * (default: the kernel), padding (0), dilation (1) and ceilMode (false); no return_indices.
 */
export function maxPool2d(x: Tensor, kernel: Pair, o: { stride?: Pair; padding?: Pair; dilation?: Pair; ceilMode?: boolean } = {}): Tensor {
  return wrap(native.maxPool2d(x.h, pair(kernel), pair(o.stride ?? kernel), pair(o.padding ?? 0), pair(o.dilation ?? 1), !!o.ceilMode));
}
/** Average pooling of x [..., H, W] to outputSize, whatever H and W are. Like torch.nn.functional.adaptive_avg_pool2d. */
export function adaptiveAvgPool2d(x: Tensor, outputSize: Pair): Tensor {
  return wrap(native.adaptiveAvgPool2d(x.h, pair(outputSize)));
}
/** alignCorners (default false) applies to bilinear and bicubic only; giving it for nearest or area throws, as PyTorch. */
export function interpolate(x: Tensor, size: Pair, mode: 'nearest' | 'bilinear' | 'bicubic' | 'area' = 'nearest', alignCorners?: boolean): Tensor {
  return wrap(native.interpolate(x.h, pair(size), mode, alignCorners ?? null));
}
/** Constant padding; pads as in PyTorch: [left, right, top, bottom, ...] from the last dim backwards. */
export function pad(x: Tensor, pads: number[], value = 0): Tensor {
  return wrap(native.pad(x.h, pads, value));
}
/**
 * Cross entropy from logits [N, C]; target holds class indices (int64 [N]) or class probabilities
 * (float [N, C], e.g. from mixup).
 */
export function crossEntropy(
  logits: Tensor,
  target: Tensor,
  o: { weight?: Tensor; reduction?: Reduction; ignoreIndex?: number; labelSmoothing?: number } = {},
): Tensor {
  return wrap(native.crossEntropy(logits.h, target.h, o.weight?.h ?? null, o.reduction ?? 'mean', o.ignoreIndex ?? -100, o.labelSmoothing ?? 0));
}
/** Mean squared error between a and b (reduction default 'mean', as the third argument). Like torch.nn.functional.mse_loss. */
export function mseLoss(a: Tensor, b: Tensor, reduction: Reduction = 'mean'): Tensor {
  return wrap(native.mseLoss(a.h, b.h, reduction));
}
/** Cosine similarity of a and b along dim (default 1), eps 1e-8. Like torch.nn.functional.cosine_similarity. */
export function cosineSimilarity(a: Tensor, b: Tensor, dim = 1, eps = 1e-8): Tensor {
  return wrap(native.cosineSimilarity(a.h, b.h, dim, eps));
}
/** x / max(||x||_p, eps) along dim; PyTorch's F.normalize(input, p=2.0, dim=1, eps=1e-12): the same order and defaults. */
export function normalize(x: Tensor, p = 2, dim = 1, eps = 1e-12): Tensor {
  const n = x.norm(p, dim, true);
  try {
    const d = n.clamp(eps);
    try {
      return x.div(d);
    } finally {
      d.dispose();
    }
  } finally {
    n.dispose();
  }
}
/**
 * One-hot int64 encoding of integer class indices: shape [...indices.shape, numClasses]. Like
 * torch.nn.functional.one_hot, but numClasses has no default (-1 infers it, as PyTorch's default).
 */
export function oneHot(indices: Tensor, numClasses: number): Tensor {
  return wrap(native.oneHot(indices.h, numClasses));
}

/**
 * Options of {@link scaledDotProductAttention}, {@link attentionReference} and {@link sdpaBackend}: PyTorch's
 * attn_mask, is_causal, dropout_p (default 0; applied whenever nonzero: there is no training flag) and scale.
 */
export interface AttentionOptions {
  /** bool (true = may attend) or float (added to the scores), broadcastable to [..., L, S]. */
  mask?: Tensor | null;
  /** Query i attends to keys j <= i (top-left aligned when L != S). */
  causal?: boolean;
  dropout?: number;
  /** Defaults to 1/sqrt(E). */
  scale?: number;
}

/** A mask is bool or floating: an integer one was added to the scores as numbers (PyTorch refuses it). */
function checkMask(mask: Tensor | null | undefined, where: string): void {
  const d = mask?.dtype;
  if (d !== undefined && d !== 'bool' && !isFloating(d))
    throw new TypeError(`${where}: the mask must be bool (true = may attend) or floating (added to the scores), got ${d}`);
}

/**
 * softmax(q kᵀ · scale + mask) v over [..., L, E] tensors. Uses libtorch 2.x's fused kernels
 * (flash / memory-efficient) where available and an exact math path on 1.13.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions = {}): Tensor {
  checkMask(o.mask, 'scaledDotProductAttention');
  return wrap(native.scaledDotProductAttention(q.h, k.h, v.h, o.mask?.h ?? null, o.dropout ?? 0, !!o.causal, o.scale ?? null));
}

/** The explicit math path of attention (reference for tests). */
export function attentionReference(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions = {}): Tensor {
  checkMask(o.mask, 'attentionReference');
  return wrap(native.attentionReference(q.h, k.h, v.h, o.mask?.h ?? null, o.dropout ?? 0, !!o.causal, o.scale ?? null));
}

/**
 * The fused attention backend libtorch picks for these inputs: 'flash', 'efficient', 'cudnn' or 'math'
 * ('semaim-math' before libtorch 2.1, where the addon runs its own math path).
 */
export function sdpaBackend(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions = {}): string {
  return native.sdpaChoice(q.h, k.h, v.h, o.mask?.h ?? null, !!o.causal);
}

/**
 * The attention backends' priority order, e.g. 'cudnn,flash,efficient,math': sets it when given (the
 * listed backends on, in that order; the others off) and returns the enabled backends in order.
 * Setting needs libtorch >= 2.6.
 */
export function sdpaPriority(order = ''): string {
  return native.sdpaPriority(order);
}
