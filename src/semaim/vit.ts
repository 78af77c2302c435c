// Vision Transformer encoder with timm's parameter names. Attention runs causal (tokens already in
// autoregressive order), with an explicit mask (reference path), or unmasked.
import * as torch from '../torch';
import { F, Tensor, fused } from '../torch';
import { Conv2d, DropPath, Identity, LayerNorm, Linear, Mlp, Module, ModuleList, init } from '../nn';
import { sincosPosEmbed2d } from './posembed';
import { atLeastFloat32 } from './orders';
import { EncoderConfig, MODEL_KEYS, checkKnownKeys, validateEncoder } from './config';

/** Which keys each token may attend to: `causal`, an explicit bool `mask`, or (neither given) all of them. */
export interface AttentionMasking {
  /** Tokens are in prediction order: token i attends to tokens j <= i. */
  causal?: boolean;
  /** Bool [B or 1, 1, T, S], true = may attend. */
  mask?: Tensor | null;
}

/** Patch embedding: a patchSize×patchSize Conv2d of stride patchSize (`proj`), images [B, C, H, W] to tokens [B, N, D]; like timm's PatchEmbed. */
export class PatchEmbed extends Module {
  readonly proj: Conv2d;
  constructor(
    readonly patchSize: number,
    inChans: number,
    embedDim: number,
  ) {
    super();
    this.proj = this.module('proj', new Conv2d(inChans, embedDim, patchSize, { stride: patchSize }));
  }
  /**
   * MAE's initialisation of the weight: the convolution as a Linear over its flattened kernel (xavier-uniform); bias 0,
   * where MAE and the authors keep Conv2d's default (docs/METHOD.md §2.6). Drawn from `generator` (default: the global one).
   */
  initWeights(generator?: torch.Generator): void {
    const w = this.proj.weight;
    torch.noGrad(() =>
      torch.scope(() => {
        const flat = torch.empty([w.shape[0], w.numel / w.shape[0]]);
        init.xavierUniform_(flat, 1, generator);
        w.copy_(flat.view(w.shape));
        this.proj.bias?.zero_();
      }),
    );
  }

  /** [B, C, H, W] -> [B, N, D], patches in row-major order. */
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      if (!fused.useFused('patch-embed', x)) return this.proj.forward(x).flatten(2).transpose(1, 2);
      // The same convolution as one matmul over the patches (each [C, P, P] flattened as the weight is):
      // cuDNN's strided-convolution kernel took ~2 ms per call on an H200 (eager PyTorch's kernel table);
      // the matmul's FLOPs need ~0.1 ms at the matmul rate measured there.
      const [B, C, H, W] = x.shape;
      const P = this.patchSize;
      const patches = x
        .reshape(B, C, H / P, P, W / P, P)
        .permute(0, 2, 4, 1, 3, 5)
        .reshape(B, (H / P) * (W / P), C * P * P);
      return F.linear(patches, this.proj.weight.view(this.proj.outChannels, C * P * P), this.proj.bias);
    });
  }
}

/** Throws unless `numHeads` is a positive integer that splits `dim` whole (else only the first forward's view failed). */
export function checkHeads(dim: number, numHeads: number): void {
  if (!(Number.isInteger(numHeads) && numHeads > 0)) throw new Error(`attention heads must be a positive integer, got ${numHeads}`);
  if (dim % numHeads !== 0) throw new Error(`width ${dim} is not divisible by ${numHeads} heads`);
}

/** Multi-head self-attention with one fused `qkv` Linear and an output `proj` (both with bias); like timm's vision_transformer.Attention. */
export class Attention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  constructor(
    readonly dim: number,
    readonly numHeads: number,
  ) {
    super();
    checkHeads(dim, numHeads);
    this.qkv = this.module('qkv', new Linear(dim, dim * 3));
    this.proj = this.module('proj', new Linear(dim, dim));
  }

  /**
   * q, k, v [B, H, T, hd]: views of the one qkv projection, no copies. Their strides are cuDNN's packed
   * QKV layout ([B, T, 3, H, hd] memory), which the flash and cuDNN attention kernels read as they are.
   */
  heads(x: Tensor): Tensor[] {
    const [B, T] = x.shape;
    const hd = this.dim / this.numHeads;
    // With the qkv kernel (torch/fused.ts), qkv's bias takes its gradient from the heads' backward pass (so
    // only where there is a backward).
    if (fused.useFused('qkv', x) && torch.isGradEnabled() && this.qkv.bias)
      return fused.qkvHeads(F.linear(x, this.qkv.weight, this.qkv.bias.detach()), this.qkv.bias, this.numHeads);
    // [B, T, 3, H, hd] -> 3 × [B, T, H, hd] -> [B, H, T, hd]. Split along the packed dimension itself: the
    // backward then stacks the three gradients straight into [B, T, 3, H, hd] (attention kernels return them
    // in q's [B, T, H, hd] memory order), one copy; split after a permute, it cat'ed them in the permuted
    // order and the reshape back to qkv's output copied them a second time.
    return this.qkv
      .forward(x)
      .view(B, T, 3, this.numHeads, hd)
      .chunk(3, 2)
      .map((t) => t.squeeze(2).transpose(1, 2));
  }

  forward(x: Tensor, m: AttentionMasking = {}): Tensor {
    return torch.scope(() => {
      const [B, T, D] = x.shape;
      const [q, k, v] = this.heads(x);
      const o = F.scaledDotProductAttention(q, k, v, { causal: m.causal, mask: m.mask });
      return this.proj.forward(o.transpose(1, 2).reshape(B, T, D));
    });
  }

  /** Attention probabilities [B, H, T, T]; {@link VisionTransformer.clsAttention} uses them for visualisation and for the 'self' similarity map that sets training orders. */
  probabilities(x: Tensor, m: AttentionMasking = {}): Tensor {
    return torch.scope(() => {
      const [q, k] = this.heads(x);
      let scores = q.matmul(k.transpose(-2, -1)).mul(1 / Math.sqrt(this.dim / this.numHeads));
      if (m.mask) scores = scores.maskedFill(m.mask.logicalNot(), -Infinity);
      if (m.causal) {
        // as forward's causal attention (PyTorch's is_causal): query i sees keys 0..i
        const [T, S] = scores.shape.slice(-2);
        scores = scores.maskedFill(torch.ones([T, S], { dtype: 'bool', device: scores.device }).triu(1), -Infinity);
      }
      return scores.softmax(-1);
    });
  }
}

/** Stochastic depth per block, as the authors' `dpr`: linspace(0, dropPath, depth). */
export function dropPathRates(cfg: EncoderConfig): number[] {
  return Array.from({ length: cfg.depth }, (_, i) => (cfg.depth > 1 ? ((cfg.dropPath ?? 0) * i) / (cfg.depth - 1) : 0));
}

/** A pre-norm transformer block's parts under timm's names: norm1 → attn, norm2 → mlp, each branch through drop_path. */
export abstract class PreNormBlock<A extends Module> extends Module {
  readonly norm1: LayerNorm;
  readonly attn: A;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  readonly dropPath: Module & { forward(x: Tensor): Tensor };
  constructor(dim: number, attn: A, mlpRatio: number, dropPath: number) {
    super();
    this.norm1 = this.module('norm1', new LayerNorm(dim, 1e-6));
    this.attn = this.module('attn', attn);
    this.norm2 = this.module('norm2', new LayerNorm(dim, 1e-6));
    this.mlp = this.module('mlp', new Mlp(dim, Math.floor(dim * mlpRatio)));
    this.dropPath = this.module('drop_path', dropPath > 0 ? new DropPath(dropPath) : new Identity());
  }
}

/** A pre-norm ViT block: x += attn(norm1(x)); x += mlp(norm2(x)), each branch through drop-path; like timm's vision_transformer.Block. */
export class Block extends PreNormBlock<Attention> {
  constructor(dim: number, numHeads: number, mlpRatio = 4, dropPath = 0) {
    super(dim, new Attention(dim, numHeads), mlpRatio, dropPath);
  }
  forward(x: Tensor, m: AttentionMasking = {}): Tensor {
    return torch.scope(() => {
      if (fused.useFused('layernorm', x)) return resolveResidual(this.forwardPending({ base: x, branch: null }, m).out);
      const h = x.add(this.dropPath.forward(this.attn.forward(this.norm1.forward(x), m)));
      return h.add(this.dropPath.forward(this.mlp.forward(this.norm2.forward(h))));
    });
  }

  /**
   * The block on a stream whose last add is pending (the model's fast path): `input` is that stream
   * summed, the previous block's output; `out` is this block's output with its own add pending.
   */
  forwardPending(x: PendingResidual, m: AttentionMasking = {}): { input: Tensor; out: PendingResidual } {
    return torch.scope(() => {
      const kernel = fused.useFused('layernorm', x.base);
      const a = sumAndNorm(x, this.norm1, kernel);
      const b = sumAndNorm({ base: a.sum, branch: this.dropPath.forward(this.attn.forward(a.normed, m)) }, this.norm2, kernel);
      return { input: a.sum, out: { base: b.sum, branch: this.dropPath.forward(this.mlp.forward(b.normed)) } };
    });
  }
}

/**
 * The residual stream with its last add not done yet: base + branch (base alone when branch is null).
 * Blocks hand it on so that the next LayerNorm does the add: with the LayerNorm kernels that is one pass
 * for the sum and the norm (fused.addLayerNorm), and in the backward one kernel for both gradients,
 * instead of a float32 add, the cast of its gradient to the branch's dtype and a gradient accumulation.
 */
export interface PendingResidual {
  base: Tensor;
  branch: Tensor | null;
}

/** The stream summed and normalised (for Linear layers): one kernel with `kernel`, else the add and the module. */
export function sumAndNorm(s: PendingResidual, norm: LayerNorm, kernel: boolean): { sum: Tensor; normed: Tensor } {
  if (!kernel) {
    const sum = resolveResidual(s);
    return { sum, normed: norm.forward(sum) };
  }
  const o = { forLinear: true };
  if (s.branch) return fused.addLayerNorm(s.base, s.branch, norm.weight, norm.bias, norm.eps, o);
  return { sum: s.base, normed: fused.layerNorm(s.base, norm.weight, norm.bias, norm.eps, o) };
}

/** Frees the stream's handles (autograd keeps what its backward needs). */
export function disposeResidual(s: PendingResidual): void {
  s.base.dispose();
  s.branch?.dispose();
}

/** The stream as one tensor: the pending add done. */
export function resolveResidual(s: PendingResidual): Tensor {
  return s.branch ? s.base.add(s.branch) : s.base;
}

/** Xavier-uniform Linear weights, zero biases, unit LayerNorms (the authors' / MAE's init), drawn from `generator` (default: the global one). */
export function initVitWeights(root: Module, generator?: torch.Generator): void {
  for (const [, m] of root.namedModules()) {
    if (m instanceof Linear) {
      init.xavierUniform_(m.weight, 1, generator);
      if (m.bias) init.zeros_(m.bias);
    } else if (m instanceof LayerNorm) {
      if (m.weight) init.ones_(m.weight);
      if (m.bias) init.zeros_(m.bias);
    }
  }
}

/**
 * How an image's tokens become one feature vector (or, 'all', a row per token). 'cls' = [CLS] after the final norm; 'mean' = mean of the
 * patch tokens after the final norm; 'gap' = the authors' and MAE's `--global_pool` (models_vit.py:44-46):
 * mean of the patch tokens *before* the final norm, through a new LayerNorm (eps 1e-6, weight 1, bias
 * 0: their fc_norm, which no pre-training checkpoint holds); 'all' = every token after the final norm.
 */
export type Pooling = 'cls' | 'mean' | 'gap' | 'all';

/** Every {@link Pooling}. */
const POOLINGS: readonly Pooling[] = ['cls', 'mean', 'gap', 'all'];

/** The 'gap' pooling of the tokens before the final norm [B, 1 + N, D]: their fc_norm untrained (LayerNorm eps 1e-6, no affine). */
export function globalPool(tokens: Tensor): Tensor {
  return torch.scope(() => {
    const D = tokens.shape[2];
    return F.layerNorm(tokens.narrow(1, 1, tokens.shape[1] - 1).mean(1), [D], null, null, 1e-6);
  });
}

/**
 * The ViT encoder under timm's parameter names: patch embedding, [CLS] token, fixed 2-D sin-cos position
 * embedding (a buffer), `depth` Blocks and the final `norm`; no classification head. The constructor validates
 * the config; call initWeights() for a fresh model. forwardFeatures gives the tokens [B, 1 + N, D].
 */
export class VisionTransformer extends Module {
  readonly gridH: number;
  readonly gridW: number;
  readonly numPatches: number;
  readonly patch_embed: PatchEmbed;
  readonly cls_token: Tensor;
  readonly pos_embed: Tensor;
  readonly blocks: ModuleList<Block>;
  readonly norm: LayerNorm;

  constructor(readonly cfg: EncoderConfig) {
    super();
    validateEncoder(cfg); // a ConfigError naming the key, not a shape error from deep inside a layer
    checkKnownKeys(cfg, MODEL_KEYS); // an encoder config or a whole SemAIM config; a misspelt size would be left at its default
    this.gridH = cfg.imgSize / cfg.patchSize;
    this.gridW = cfg.imgSize / cfg.patchSize;
    this.numPatches = this.gridH * this.gridW;
    const D = cfg.embedDim;
    this.patch_embed = this.module('patch_embed', new PatchEmbed(cfg.patchSize, cfg.inChans ?? 3, D));
    this.cls_token = this.param('cls_token', torch.zeros([1, 1, D]));
    this.pos_embed = this.buffer('pos_embed', sincosPosEmbed2d(D, this.gridH, this.gridW));
    const rates = dropPathRates(cfg);
    this.blocks = this.module('blocks', new ModuleList(rates.map((r) => new Block(D, cfg.numHeads, cfg.mlpRatio ?? 4, r))));
    this.norm = this.module('norm', new LayerNorm(D, 1e-6));
  }

  /**
   * MAE / authors' initialisation; call once after construction. With a seed the weights come from a
   * generator of their own seeded with it (the ones `torch.manualSeed(seed)` then `initWeights()` give a model
   * already built; seeding before `new`, as pretrain does, gives others: the constructor draws first)
   * and the global generators are left as they were; without one they come from the global generator.
   */
  initWeights(generatorSeed?: number): this {
    const generator = generatorSeed === undefined ? undefined : new torch.Generator(generatorSeed);
    initVitWeights(this, generator);
    this.patch_embed.initWeights(generator);
    init.normal_(this.cls_token, 0, 0.02, generator);
    return this;
  }

  /** Patch tokens plus position embedding, [B, N, D], row-major. */
  embedPatches(images: Tensor): Tensor {
    this.checkImages(images);
    return torch.scope(() => this.patch_embed.forward(images).add(this.pos_embed.narrow(1, 1, this.numPatches)));
  }

  /** [CLS] with its (zero) position embedding, [B, 1, D]. */
  clsTokens(batch: number): Tensor {
    return torch.scope(() => this.cls_token.add(this.pos_embed.narrow(1, 0, 1)).expand(batch, 1, this.cfg.embedDim));
  }

  checkImages(images: Tensor): void {
    checkImagesFit(images, this.cfg);
  }

  /** Unmasked encoder: all tokens after the final norm, [B, 1 + N, D]. */
  forwardFeatures(images: Tensor): Tensor {
    return torch.scope(() => this.norm.forward(this.forwardTokens(images)));
  }

  /** Unmasked encoder: all tokens after the last block, before the final norm, [B, 1 + N, D]. */
  forwardTokens(images: Tensor): Tensor {
    return torch.scope(() => {
      // block to block with the closing residual add pending, done by the next norm (PendingResidual)
      let x: PendingResidual = { base: torch.cat([this.clsTokens(images.shape[0]), this.embedPatches(images)], 1), branch: null };
      for (const b of this.blocks) {
        const { input, out } = b.forwardPending(x);
        input.dispose(); // the stream summed, x.base itself when there was no branch (autograd keeps what it needs)
        disposeResidual(x);
        x = out;
      }
      return resolveResidual(x);
    });
  }

  /** Backbone features: [CLS] token, mean of patch tokens, the authors' global pool, or all tokens (see Pooling). */
  features(images: Tensor, pooling: Pooling = 'cls'): Tensor {
    if (!POOLINGS.includes(pooling)) throw new RangeError(`features: pooling must be one of ${POOLINGS.join(', ')}, got ${String(pooling)}`);
    return torch.scope(() => (pooling === 'gap' ? globalPool(this.forwardTokens(images)) : this.pool(this.forwardFeatures(images), pooling)));
  }

  /**
   * Pools tokens after the final norm [B, 1 + N, D] as `features` does; [CLS] is copied out (a kept
   * view would keep every token). 'gap' needs the tokens before the norm: use globalPool.
   */
  pool(z: Tensor, pooling: Pooling): Tensor {
    if (pooling === 'cls') return z.select(1, 0).clone();
    if (pooling === 'mean') return z.narrow(1, 1, this.numPatches).mean(1);
    if (pooling === 'gap') throw new Error("pool: 'gap' pools the tokens before the final norm (globalPool(forwardTokens(images)))");
    if (pooling === 'all') return z;
    throw new RangeError(`pool: pooling must be one of ${POOLINGS.join(', ')}, got ${String(pooling)}`);
  }

  /** Last block's [CLS]→patch self-attention, mean over heads, [B, N] (unmasked pass). */
  clsAttention(images: Tensor): Tensor {
    return torch.scope(() => {
      let x = torch.cat([this.clsTokens(images.shape[0]), this.embedPatches(images)], 1);
      const blocks = [...this.blocks];
      for (const b of blocks.slice(0, -1)) x = b.forward(x);
      const last = blocks[blocks.length - 1];
      const p = last.attn.probabilities(last.norm1.forward(x));
      // float32 at least (bf16/fp16 probabilities averaged in float32); a float64 model's map stays float64, as its cls/gap maps
      return atLeastFloat32(p).mean(1).select(1, 0).narrow(1, 1, this.numPatches);
    });
  }
}

/** Images fit an encoder of `cfg`: [B, inChans, imgSize, imgSize]. */
export function checkImagesFit(images: Tensor, cfg: EncoderConfig): void {
  const s = images.shape;
  const want = [cfg.inChans ?? 3, cfg.imgSize, cfg.imgSize];
  if (s.length !== 4 || s[1] !== want[0] || s[2] !== want[1] || s[3] !== want[2]) {
    throw new Error(`expected images [B, ${want.join(', ')}], got [${s.join(', ')}]`);
  }
}
