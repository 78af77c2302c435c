// The SemAIM model: a ViT encoder, a parallel autoregressive cross-attention decoder and a
// prediction head, trained to predict every patch from the patches before it in a semantic order.
import * as torch from '../torch';
import { Tensor, fused } from '../torch';
import { Mlp, ModuleList } from '../nn';
import { SemAIMConfig, SimilarityTokens, validateConfig } from './config';
import { DecoderBlock, decoderTaps } from './decoder';
import { atLeastFloat32, checkNoiseOptions, orderFromConfig, needsSimilarity, similarityMap, checkOrder, strictOrder } from './orders';
import { featurePatchLoss, pixelPatchLoss, pixelTargets } from './targets';
import { VisionTransformer, disposeResidual, dropPathRates, resolveResidual, sumAndNorm, type PendingResidual } from './vit';
import { markPhase } from './phases';
import { didYouMean } from '../util/options';

/** How SemAIM.forward runs attention: 'fast' (tokens gathered into order, causal attention) or 'reference' (explicit masks, the specification); docs/METHOD.md §4. */
export type AttentionPath = 'fast' | 'reference';

/** What SemAIM.forward returns: the loss, the loss per patch and the order used, plus predictions and targets with `outputs: 'all'`. */
export interface SemAIMOutput {
  /** Mean of patchLoss (scalar). */
  loss: Tensor;
  /** Loss per patch [B, N], in the original (row-major) patch order. */
  patchLoss: Tensor;
  /** The order values used [B, N]. */
  order: Tensor;
  /** Predictions [B, N, out] in the original patch order (only with outputs: 'all'). */
  pred?: Tensor;
  /** Targets [B, N, out] in the original patch order (only with outputs: 'all'). */
  target?: Tensor;
}

/** Options of SemAIM.forward. */
export interface ForwardOptions {
  /** 'fast' (default): tokens gathered into order, causal attention. 'reference': explicit masks. */
  path?: AttentionPath;
  /** 'loss' (default) skips reordering predictions and targets back for output. */
  outputs?: 'loss' | 'all';
}

/**
 * The similarity map S [B, N] from an encoder (the online model, an EMA copy or a frozen teacher):
 * an unmasked forward pass in eval mode without gradients. `mode` applies to the cosines of 'cls' and
 * 'gap'; 'self' (attention probabilities) takes 'softmax' only.
 */
export function encoderSimilarity(
  encoder: VisionTransformer,
  images: Tensor,
  mode: 'softmax' | 'minmax' = 'softmax',
  tokens: SimilarityTokens = 'cls',
): Tensor {
  if (tokens === 'self' && mode !== 'softmax')
    throw new RangeError(
      `encoderSimilarity: mode '${mode}' normalises [CLS]- or mean-vs-patch cosines; tokens 'self' give attention probabilities (use mode 'softmax')`,
    );
  const wasTraining = encoder.training;
  encoder.eval();
  try {
    if (tokens === 'self') return torch.noGrad(() => encoder.clsAttention(images));
    return torch.noGrad(() => torch.scope(() => similarityMap(encoder.forwardFeatures(images), mode, tokens)));
  } finally {
    encoder.train(wasTraining);
  }
}

/** Throws a RangeError naming `fn` for a key of its options that is not one of `known`, with the one it is a typo of. */
function checkOptionKeys(fn: string, o: object, known: readonly string[]): void {
  for (const key of Object.keys(o)) {
    if (known.includes(key)) continue;
    throw new RangeError(`${fn}: unknown option '${key}'${didYouMean(key, known)} (known: ${known.join(', ')})`);
  }
}

/** The order's similarity tokens ('cls' when the order has none or does not say). */
export function similarityTokens(o: SemAIMConfig['order']): SimilarityTokens {
  return ('tokens' in o && o.tokens) || 'cls';
}

/**
 * The SemAIM model: the ViT encoder (this class extends VisionTransformer, timm's names), the parallel
 * cross-attention decoder (`query_blocks`) and the prediction head (the authors' names). `makeOrder` gives a
 * batch's order values; `forward` the loss of predicting every patch from those before it in that order.
 */
export class SemAIM extends VisionTransformer {
  readonly query_blocks: ModuleList<DecoderBlock>;
  /** Shares `norm` with the encoder, as the authors' model: LayerNorm → prediction_head. */
  readonly prediction_head: Mlp;
  readonly taps: number[];
  readonly outDim: number;
  /** Frozen teacher for feature targets (and the `teacher` similarity source); not a parameter. */
  teacher: VisionTransformer | null = null;

  constructor(readonly config: SemAIMConfig) {
    validateConfig(config);
    super(config);
    const D = config.embedDim;
    this.taps = decoderTaps(config.depth, config.decoderDepth);
    // Decoder block k has encoder block k's stochastic depth rate, as the authors' query_blocks (dpr[k]).
    const rates = dropPathRates(config);
    this.query_blocks = this.module(
      'query_blocks',
      new ModuleList(this.taps.map((_, k) => new DecoderBlock(D, config.numHeads, config.mlpRatio ?? 4, rates[k]))),
    );
    const t = config.target;
    this.outDim = t.type === 'pixels' ? config.patchSize * config.patchSize * (config.inChans ?? 3) : t.teacherConfig.embedDim;
    this.prediction_head = this.module('prediction_head', new Mlp(D, Math.floor(D * (config.mlpRatio ?? 4)), this.outDim));
  }

  get grid(): { gridH: number; gridW: number } {
    return { gridH: this.gridH, gridW: this.gridW };
  }

  /**
   * Targets [B, N, out] in row-major patch order, float32 even inside a bf16/fp16 autocast region:
   * pixel targets (blur, per-patch norm) are computed with autocast off, teacher features are cast up.
   */
  targets(images: Tensor): Tensor {
    const t = this.config.target;
    if (t.type === 'pixels') {
      const o = { patchSize: this.config.patchSize, ...t };
      return torch.noGrad(() =>
        torch.autocast({ device: torch.deviceType(images.device), enabled: false }, () => torch.scope(() => pixelTargets(atLeastFloat32(images), o))),
      );
    }
    if (!this.teacher) throw new Error('feature targets need a teacher: set model.teacher (see loadTeacher)');
    const teacher = this.teacher;
    this.checkTeacherFits(teacher);
    return torch.noGrad(() =>
      torch.scope(() => {
        teacher.eval();
        return atLeastFloat32(teacher.forwardFeatures(images).narrow(1, 1, this.numPatches)).contiguous();
      }),
    );
  }

  /**
   * Throws unless the teacher gives one token of the head's width for each of this model's patches: the fast path
   * gathered its targets to the model's patches and the head's width, so another teacher was sliced to fit, silently.
   */
  private checkTeacherFits(teacher: VisionTransformer): void {
    const [n, d] = [teacher.numPatches, teacher.cfg.embedDim];
    if (n !== this.numPatches || d !== this.outDim)
      throw new Error(
        `model.teacher gives ${n} patch tokens of width ${d}; the model predicts ${this.numPatches} patches of width ${this.outDim} ` +
          `(the teacher its config names, target.teacherConfig, has ${this.numPatches} of width ${this.outDim}): set a teacher of those sizes (see loadTeacher)`,
      );
  }

  /**
   * S [B, N] from the source the config's order names (online model, EMA encoder or teacher), from the tokens
   * it names (default [CLS]) unless `tokens` overrides them (the figures' comparisons; a teacher's S is its
   * [CLS] map only, other tokens are a RangeError). A source that is not there (no `ema` given, no teacher)
   * is an Error: the online model's S in its place was drawn and scored as the one the model trained with.
   */
  similarityMap(images: Tensor, o: { ema?: VisionTransformer | null; tokens?: SimilarityTokens } = {}): Tensor {
    const order = this.config.order;
    const source = 'source' in order ? order.source : 'online';
    const t = o.tokens ?? similarityTokens(order);
    if (source === 'teacher') {
      if (!this.teacher) throw new Error("the model's similarity source 'teacher' needs model.teacher (see loadTeacher)");
      // (the teacher's [CLS] map was returned for tokens 'gap' or 'self' too, and scored under their name)
      if (t !== 'cls')
        throw new RangeError(
          `the teacher's similarity map is always its [CLS] (min-max); tokens '${t}' cannot be used with the model's similarity source 'teacher'`,
        );
      this.checkTeacherFits(this.teacher);
      return encoderSimilarity(this.teacher, images, 'minmax');
    }
    if (source === 'ema') {
      if (!o.ema) throw new Error("the model's similarity source 'ema' needs the EMA encoder (ema): its S is the EMA copy's, not the online model's");
      return encoderSimilarity(o.ema, images, 'softmax', t);
    }
    return encoderSimilarity(this, images, 'softmax', t);
  }

  /**
   * Order values for a batch from the config: similarity-based orders read S from the online model,
   * an EMA encoder, or the teacher.
   */
  makeOrder(images: Tensor, opts: { ema?: VisionTransformer; generator?: torch.Generator; noise?: Tensor } = {}): { order: Tensor; similarity: Tensor | null } {
    // a misspelt key was ignored: { Noise } drew fresh noise, not the ranks' shared draw
    checkOptionKeys('makeOrder', opts, ['ema', 'generator', 'noise']);
    if (opts.ema != null && !(opts.ema instanceof VisionTransformer))
      throw new RangeError(`makeOrder: ema must be a VisionTransformer, got ${String(opts.ema)}`);
    this.checkImages(images);
    const o = this.config.order;
    const B = images.shape[0];
    checkNoiseOptions('makeOrder', opts, B, this.numPatches);
    let S: Tensor | null = null;
    markPhase('similarity');
    if (needsSimilarity(o)) S = this.similarityMap(images, { ema: opts.ema });
    markPhase('order');
    const order = torch.noGrad(() => orderFromConfig(o, B, this.grid, S, { generator: opts.generator, noise: opts.noise, device: images.device }));
    return { order, similarity: S };
  }

  /** Loss of predicting every patch in the given order (order values [B, N]; tied values go in patch-index order). */
  forward(images: Tensor, order: Tensor, opts: ForwardOptions = {}): SemAIMOutput {
    this.checkImages(images);
    // the loss is a mean over the batch's patches: of none it was NaN, returned as a loss
    if (images.shape[0] === 0) throw new RangeError('forward: a batch of 0 images has no loss (the mean over no patches is NaN)');
    checkOrder(order, images.shape[0], this.numPatches, 'forward');
    checkOptionKeys('forward', opts, ['path', 'outputs']); // { output: 'all' } returned no predictions
    const path = opts.path ?? 'fast';
    if (path !== 'fast' && path !== 'reference') throw new RangeError(`forward: path must be 'fast' or 'reference', got ${String(path)}`);
    if (opts.outputs !== undefined && opts.outputs !== 'loss' && opts.outputs !== 'all')
      throw new RangeError(`forward: outputs must be 'loss' or 'all', got ${String(opts.outputs)}`);
    return torch.scope(() => {
      markPhase('targets');
      const target = this.targets(images);
      const all = opts.outputs === 'all';
      const { pred, patchLoss } = path === 'fast' ? this.forwardFast(images, order, target, all) : this.forwardReference(images, order, target);
      const out: SemAIMOutput = { loss: patchLoss.mean(), patchLoss, order: order };
      if (all) {
        out.pred = pred!;
        out.target = target;
      }
      return out;
    });
  }

  /** Per-patch loss [B, N], in float32 (predictions from a bf16/fp16 autocast region are cast up). */
  private patchLossFn(pred: Tensor, target: Tensor): Tensor {
    return torch.scope(() => {
      const p = atLeastFloat32(pred);
      return this.config.target.type === 'pixels' ? pixelPatchLoss(p, target) : featurePatchLoss(p, target);
    });
  }

  /**
   * Tokens, queries and targets gathered into prediction order; then the encoder is causal over
   * [CLS, p1..pN] and the decoder's queries 1..N attend causally to [CLS, p1..p(N-1)].
   */
  private forwardFast(images: Tensor, order: Tensor, target: Tensor, wantPred: boolean): { pred: Tensor | null; patchLoss: Tensor } {
    const [B] = images.shape;
    const N = this.numPatches;
    const D = this.config.embedDim;
    markPhase('encoder');
    const ids = order.argsort(1, false, true); // stable: the same tie-break as strictOrder in the reference
    const idsD = ids.unsqueeze(-1).expand(B, N, D);
    // Both streams go from block to block with their last residual add pending, done by the next norm
    // (PendingResidual: one kernel with the LayerNorm kernels, the same ops as Block.forward without).
    let h: PendingResidual = { base: torch.cat([this.clsTokens(B), this.embedPatches(images).gather(1, idsD)], 1), branch: null };
    let g: PendingResidual = { base: this.pos_embed.narrow(1, 1, N).expand(B, N, D).gather(1, idsD), branch: null };
    const blocks = [...this.blocks];
    const decoders = [...this.query_blocks];
    let k = 0;
    for (let i = 0; i <= blocks.length; i++) {
      // the encoder stream after i blocks: the input block i sums, or the last block's output
      let stream: Tensor;
      if (i < blocks.length) {
        markPhase('encoder');
        const r = blocks[i].forwardPending(h, { causal: true });
        if (h.branch) disposeResidual(h); // summed into r.input (which is h.base itself when there is no branch)
        stream = r.input;
        h = r.out;
      } else stream = resolveResidual(h);
      while (k < decoders.length && this.taps[k] === i) {
        markPhase('decoder');
        const next = decoders[k].forwardPending(g, stream, { causal: true }, N); // keys: [CLS, p1..p(N-1)]
        disposeResidual(g);
        g = next;
        k++;
      }
      stream.dispose(); // handles are freed as the blocks go (autograd keeps what its backward needs)
    }
    markPhase('head');
    const { normed } = sumAndNorm(g, this.norm, fused.useFused('layernorm', g.base));
    const predSorted = this.prediction_head.forward(normed);
    markPhase('loss');
    const idsOut = ids.unsqueeze(-1).expand(B, N, this.outDim);
    const lossSorted = this.patchLossFn(predSorted, target.gather(1, idsOut));
    // Back to row-major patch order.
    const patchLoss = torch.zeros([B, N], { dtype: lossSorted.dtype, device: lossSorted.device }).scatter(1, ids, lossSorted);
    const pred = wantPred ? torch.zerosLike(predSorted).scatter(1, idsOut, predSorted) : null; // training needs only the loss
    return { pred, patchLoss };
  }

  /** Explicit masks in row-major order (the specification, kept as the test reference). */
  private forwardReference(images: Tensor, order: Tensor, target: Tensor): { pred: Tensor; patchLoss: Tensor } {
    const [B] = images.shape;
    const N = this.numPatches;
    const D = this.config.embedDim;
    const { encoder, decoder } = referenceMasks(order);
    let h = torch.cat([this.clsTokens(B), this.embedPatches(images)], 1);
    let g = this.pos_embed.narrow(1, 1, N).expand(B, N, D);
    const decoders = [...this.query_blocks];
    let k = 0;
    [...this.blocks].forEach((block, i) => {
      h = block.forward(h, { mask: encoder });
      while (k < decoders.length && this.taps[k] === i + 1) g = decoders[k++].forward(g, h, { mask: decoder });
    });
    const pred = this.prediction_head.forward(this.norm.forward(g));
    return { pred, patchLoss: this.patchLossFn(pred, target) };
  }
}

/**
 * The explicit attention masks for order values p [B, N], the reference the fast path is tested against.
 * They are docs/METHOD.md §4.1's (bool, true = may attend); tied values are first
 * ranked by patch index (strictOrder), the order the fast path takes them in:
 * encoder [B, 1, N+1, N+1]: patch i sees patch j iff p_j ≤ p_i, everyone sees [CLS], [CLS] sees only itself;
 * decoder [B, 1, N, N+1]: query i sees patch j iff p_j < p_i, and sees [CLS].
 */
export function referenceMasks(order: Tensor): { encoder: Tensor; decoder: Tensor } {
  return torch.scope(() => {
    const [B, N] = order.shape;
    const p = strictOrder(order);
    const pi = p.unsqueeze(2);
    const pj = p.unsqueeze(1);
    const dev = order.device;
    const colCls = torch.ones([B, N, 1], { dtype: 'bool', device: dev });
    const rowCls = torch.cat([torch.ones([B, 1, 1], { dtype: 'bool', device: dev }), torch.zeros([B, 1, N], { dtype: 'bool', device: dev })], 2);
    const encoder = torch.cat([rowCls, torch.cat([colCls, pj.le(pi)], 2)], 1).unsqueeze(1);
    const decoder = torch.cat([colCls, pj.lt(pi)], 2).unsqueeze(1);
    return { encoder, decoder };
  });
}
