// The parallel autoregressive decoder: cross-attention blocks whose queries are position
// embeddings (no content), reading the encoder stream. Parameter names follow the authors' code.
import * as torch from '../torch';
import { F, Tensor, fused } from '../torch';
import { Linear, Module } from '../nn';
import { PreNormBlock, checkHeads, resolveResidual, sumAndNorm, type AttentionMasking, type PendingResidual } from './vit';

/**
 * Multi-head attention of the decoder's queries over the encoder stream, with separate q, k, v and proj
 * Linears (all with bias), as the authors' `Attention_SelfCrossMask` (docs/METHOD.md §2.4).
 */
export class CrossAttention extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly proj: Linear;
  constructor(
    readonly dim: number,
    readonly numHeads: number,
  ) {
    super();
    checkHeads(dim, numHeads);
    this.q = this.module('q', new Linear(dim, dim));
    this.k = this.module('k', new Linear(dim, dim));
    this.v = this.module('v', new Linear(dim, dim));
    this.proj = this.module('proj', new Linear(dim, dim));
  }

  private split(x: Tensor): Tensor {
    const [B, T] = x.shape;
    return x.view(B, T, this.numHeads, this.dim / this.numHeads).transpose(1, 2);
  }

  /** queries [B, T, D] attend to keys/values [B, S, D]. */
  forward(queries: Tensor, kv: Tensor, m: AttentionMasking = {}): Tensor {
    return torch.scope(() => {
      const [B, T, D] = queries.shape;
      const q = this.split(this.q.forward(queries));
      const k = this.split(this.k.forward(kv));
      const v = this.split(this.v.forward(kv));
      const o = F.scaledDotProductAttention(q, k, v, { causal: m.causal, mask: m.mask });
      return this.proj.forward(o.transpose(1, 2).reshape(B, T, D));
    });
  }
}

/**
 * One decoder (query) block: pre-norm cross-attention of the query stream to the encoder stream, then an MLP,
 * each with a residual; no self-attention among the queries (the authors' `Block_SelfCrossMask`, docs/METHOD.md §2.4).
 */
export class DecoderBlock extends PreNormBlock<CrossAttention> {
  constructor(dim: number, numHeads: number, mlpRatio = 4, dropPath = 0) {
    super(dim, new CrossAttention(dim, numHeads), mlpRatio, dropPath);
  }
  /** g += drop(attn(norm1(g), norm1(h))); g += drop(mlp(norm2(g))). The same norm1 serves both streams. */
  forward(g: Tensor, h: Tensor, m: AttentionMasking = {}): Tensor {
    return torch.scope(() => {
      if (fused.useFused('layernorm', g)) return resolveResidual(this.forwardPending({ base: g, branch: null }, h, m));
      const x = g.add(this.dropPath.forward(this.attn.forward(this.norm1.forward(g), this.norm1.forward(h), m)));
      return x.add(this.dropPath.forward(this.mlp.forward(this.norm2.forward(x))));
    });
  }

  /**
   * The block on a query stream whose last add is pending (the model's fast path); its own add left pending.
   * The keys are h's first `keys` tokens (default all).
   */
  forwardPending(g: PendingResidual, h: Tensor, m: AttentionMasking = {}, keys = h.shape[1]): PendingResidual {
    return torch.scope(() => {
      const kernel = fused.useFused('layernorm', g.base);
      const a = sumAndNorm(g, this.norm1, kernel);
      // With the kernel the keys are normalised where they are in h, and their gradient comes back for the
      // whole of h (no slice of h in the graph: its backward would zero and copy a gradient of h's size).
      const kv = kernel
        ? fused.layerNorm(h, this.norm1.weight, this.norm1.bias, this.norm1.eps, { forLinear: true, tokens: keys < h.shape[1] ? keys : undefined })
        : this.norm1.forward(keys < h.shape[1] ? h.narrow(1, 0, keys) : h);
      const b = sumAndNorm({ base: a.sum, branch: this.dropPath.forward(this.attn.forward(a.normed, kv, m)) }, this.norm2, kernel);
      return { base: b.sum, branch: this.dropPath.forward(this.mlp.forward(b.normed)) };
    });
  }
}

/**
 * Which encoder block each decoder block reads: decoder block k reads the stream right after
 * encoder block floor((k+1)·L/L') (1-based), a uniform choice for any 1 ≤ L' ≤ L; equals the
 * authors' `(i+1) % (L/L') == 0` rule when L' divides L.
 */
export function decoderTaps(depth: number, decoderDepth: number): number[] {
  if (!(Number.isInteger(depth) && depth > 0)) throw new RangeError(`decoderTaps: the encoder depth must be a positive integer, got ${depth}`);
  // (a fraction gave taps for a whole number of blocks, NaN none at all)
  if (!(Number.isInteger(decoderDepth) && decoderDepth >= 1 && decoderDepth <= depth))
    throw new RangeError(`decoder depth must be an integer in 1..${depth}, got ${decoderDepth}`);
  return Array.from({ length: decoderDepth }, (_, k) => Math.floor(((k + 1) * depth) / decoderDepth));
}
