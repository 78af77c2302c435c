// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_), without a host sync.
import * as torch from '../torch';
import type { Tensor } from '../torch';
import { native } from '../torch/native';
import { wrap } from '../torch/tensor';
import { describeValue } from '../torch/errors';

/** Parameters as tensors or as [name, tensor] pairs (e.g. model.namedParameters(), optimizer.namedParameters()). */
export type ParamsLike = Iterable<Tensor | [string, Tensor]>;

/**
 * Scales the gradients in place so that their global L2 norm is at most maxNorm, by
 * min(1, maxNorm / (norm + 1e-6)) as PyTorch does, and returns the norm before clipping as a 0-d tensor
 * on the gradients' device. Nothing waits for the device: read the value later with readNorm().
 * maxNorm must be positive; Infinity only measures. Unlike PyTorch, which zeroes the gradients at
 * max_norm=0, 0 is refused: the options of this library use 0 for "no clipping", so a 0 that reaches
 * here is a mistake (skip the call instead). Parameters without a gradient are ignored; with no gradient at
 * all the norm is 0. A non-finite norm (inf/nan gradients) turns the gradients into nan/0, as in
 * PyTorch with error_if_nonfinite=false.
 */
export function clipGradNorm(params: ParamsLike, maxNorm: number): Tensor {
  if (!(maxNorm > 0)) throw new RangeError(`clipGradNorm: maxNorm must be positive, got ${maxNorm}`);
  if (typeof (params as { [Symbol.iterator]?: unknown } | null)?.[Symbol.iterator] !== 'function') {
    throw new TypeError(`clipGradNorm: pass tensors or [name, tensor] pairs such as module.parameters(), not ${describeValue(params)}`);
  }
  const grads: Tensor[] = [];
  try {
    for (const entry of params) {
      const p: unknown = Array.isArray(entry) ? entry[1] : entry;
      if (!(p instanceof torch.Tensor))
        throw new TypeError(`clipGradNorm: pass tensors or [name, tensor] pairs such as module.parameters(), not ${describeValue(p)} among them`);
      const g = p.grad;
      if (g !== null) grads.push(g);
    }
    return wrap(
      torch.noGrad(() =>
        native.clipGradNorm(
          grads.map((g) => g.h),
          maxNorm,
        ),
      ),
    );
  } finally {
    for (const g of grads) g.dispose();
  }
}

/** The global L2 norm of the gradients (0-d tensor, no host sync, gradients unchanged). */
export function gradNorm(params: ParamsLike): Tensor {
  return clipGradNorm(params, Infinity);
}

/** Reads a 0-d tensor such as clipGradNorm's result (this synchronises) and, by default, disposes it. */
export function readNorm(norm: Tensor, opts: { dispose?: boolean } = {}): number {
  try {
    return norm.item();
  } finally {
    if (opts.dispose ?? true) norm.dispose();
  }
}
