// The ViT encoder (src/semaim/vit.ts, timm parameter names) as an ONNX graph, one function per
// layer type. Input `pixel_values` [batch, C, H, W] float32; outputs `last_hidden_state`
// [batch, 1+N, D] (all tokens after the final norm), `pooler_output` [batch, D] (its [CLS] token,
// the feature k-NN and the linear probe use) and, optionally, `cls_attention` [batch, N] (the last
// block's [CLS]→patch attention, mean over heads). Weights keep their timm names and
// shapes (Linear weights are transposed by a Transpose node that runtimes fold at load time).
// float16: weights and every operation in float16; the float32 input is cast on entry and the
// outputs are cast back to float32, so callers see the same interface for both.
import * as torch from '../torch';
import type { EncoderConfig } from '../semaim/config';
import type { VisionTransformer } from '../semaim/vit';
import { DataType } from './onnx-proto';
import type { ModelProto } from './onnx-proto';
import { FloatType, GraphBuilder, attr } from './onnx-graph';
import { packageVersion } from './assets';

/** The ONNX opset of the exported graphs (17, the first with LayerNormalization); recorded in the exports' JSON. */
export const OPSET = 17;
const LN_EPS = 1e-6;

/** One weight as float32 values in row-major order with its shape `dims`. */
export interface WeightArray {
  dims: number[];
  values: Float32Array;
}

/** An encoder's weights by timm name, as {@link encoderWeights} reads them and {@link vitToOnnx} takes them. */
export type EncoderWeights = Map<string, WeightArray>;

/** Options of {@link vitToOnnx}. */
export interface VitOnnxOptions {
  /** Weights and compute type; a float16 graph still takes and returns float32. */
  dtype: FloatType;
  /** Add the `cls_attention` output. */
  attention: boolean;
  /**
   * A fine-tuned classifier's head (ViTClassifier): outputs `logits` [batch, numClasses] and the head's
   * input as `pooler_output` (pool 'avg': fc_norm over the mean of the patch tokens; 'cls': norm → [CLS])
   * instead of last_hidden_state (an 'avg' classifier has no final norm over its tokens).
   */
  head?: { pool: 'avg' | 'cls'; numClasses: number };
  /** Free-form key/values stored in the model's metadata_props. */
  metadata?: Record<string, string>;
}

/** The parameters and position embedding of an encoder (or a classifier) as float32 arrays, by timm name. */
export function encoderWeights(vit: Pick<VisionTransformer, 'stateDict'>): EncoderWeights {
  const out: EncoderWeights = new Map();
  for (const [name, t] of vit.stateDict()) out.set(name, { dims: [...t.shape], values: torch.scope(() => t.cpu().toFloat32Array()) });
  return out;
}

class VitGraph {
  readonly g: GraphBuilder;
  constructor(
    readonly cfg: EncoderConfig,
    private readonly weights: EncoderWeights,
    dtype: FloatType,
  ) {
    this.g = new GraphBuilder(dtype);
  }

  private param(name: string): string {
    const w = this.weights.get(name);
    if (!w) throw new Error(`the encoder weights lack '${name}'`);
    return this.g.weight(name, w.dims, w.values);
  }

  private inScope<T>(scope: string, fn: () => T): T {
    const outer = this.g.scope;
    this.g.scope = scope;
    try {
      return fn();
    } finally {
      this.g.scope = outer;
    }
  }

  /** y = x Wᵀ + b for a torch Linear stored as `<name>.weight` [out, in] and `<name>.bias`. */
  linear(x: string, name: string): string {
    const g = this.g;
    return this.inScope(name, () => {
      const wT = g.node('Transpose', [this.param(`${name}.weight`)], [attr.ints('perm', [1, 0])]);
      return g.node('Add', [g.node('MatMul', [x, wT]), this.param(`${name}.bias`)]);
    });
  }

  layerNorm(x: string, name: string): string {
    return this.inScope(name, () =>
      this.g.node('LayerNormalization', [x, this.param(`${name}.weight`), this.param(`${name}.bias`)], [attr.int('axis', -1), attr.float('epsilon', LN_EPS)]),
    );
  }

  /** Exact GELU: 0.5·x·(1 + erf(x/√2)). */
  gelu(x: string): string {
    const g = this.g;
    const erf = g.node('Erf', [g.node('Div', [x, g.constant([Math.SQRT2])])]);
    return g.node('Mul', [g.node('Mul', [x, g.node('Add', [erf, g.constant([1])])]), g.constant([0.5])]);
  }

  mlp(x: string, name: string): string {
    return this.linear(this.gelu(this.linear(x, `${name}.fc1`)), `${name}.fc2`);
  }

  /** Multi-head self-attention over all tokens; also returns the probabilities [B, heads, T, T]. */
  attention(x: string, name: string): { out: string; probs: string } {
    const g = this.g;
    const D = this.cfg.embedDim;
    const H = this.cfg.numHeads;
    const hd = D / H;
    const qkv = this.linear(x, `${name}.qkv`);
    return this.inScope(name, () => {
      // [B, T, 3D] -> [B, T, 3, H, hd] -> [3, B, H, T, hd]
      const heads = g.node('Transpose', [g.node('Reshape', [qkv, g.int64s([0, 0, 3, H, hd])])], [attr.ints('perm', [2, 0, 3, 1, 4])]);
      const [q, k, v] = [0, 1, 2].map((i) => g.node('Gather', [heads, g.int64s([i], true)], [attr.int('axis', 0)]));
      const kT = g.node('Transpose', [k], [attr.ints('perm', [0, 1, 3, 2])]);
      // q scaled before the product, as timm's Attention: a float16 runtime keeps q·kᵀ/√hd in range where q·kᵀ alone may pass 65504
      const scores = g.node('MatMul', [g.node('Mul', [q, g.constant([1 / Math.sqrt(hd)])]), kT]);
      const probs = g.node('Softmax', [scores], [attr.int('axis', -1)]);
      // [B, H, T, hd] -> [B, T, H, hd] -> [B, T, D]
      const merged = g.node('Reshape', [g.node('Transpose', [g.node('MatMul', [probs, v])], [attr.ints('perm', [0, 2, 1, 3])]), g.int64s([0, 0, D])]);
      return { out: this.linear(merged, `${name}.proj`), probs };
    });
  }

  block(x: string, name: string): { out: string; probs: string } {
    const g = this.g;
    const a = this.attention(this.layerNorm(x, `${name}.norm1`), `${name}.attn`);
    const h = this.inScope(name, () => g.node('Add', [x, a.out]));
    const m = this.mlp(this.layerNorm(h, `${name}.norm2`), `${name}.mlp`);
    return { out: this.inScope(name, () => g.node('Add', [h, m])), probs: a.probs };
  }

  /** Conv with kernel = stride = patch size, then [B, D, gh, gw] -> [B, N, D] (row-major patches). */
  patchEmbed(images: string): string {
    const g = this.g;
    const p = this.cfg.patchSize;
    return this.inScope('patch_embed', () => {
      const conv = g.node(
        'Conv',
        [images, this.param('patch_embed.proj.weight'), this.param('patch_embed.proj.bias')],
        [attr.ints('kernel_shape', [p, p]), attr.ints('strides', [p, p])],
      );
      const flat = g.node('Reshape', [conv, g.int64s([0, this.cfg.embedDim, -1])]);
      return g.node('Transpose', [flat], [attr.ints('perm', [0, 2, 1])]);
    });
  }

  /** [CLS] + patch tokens with their position embeddings, [B, 1+N, D]. */
  tokens(images: string, patches: string, numPatches: number): string {
    const g = this.g;
    const pos = this.param('pos_embed');
    const slice = (start: number, end: number) => g.node('Slice', [pos, g.int64s([start]), g.int64s([end]), g.int64s([1])]);
    const x = g.node('Add', [patches, slice(1, 1 + numPatches)]);
    const batch = g.node('Shape', [images], [attr.int('start', 0), attr.int('end', 1)]);
    const shape = g.node('Concat', [batch, g.int64s([1, this.cfg.embedDim])], [attr.int('axis', 0)]);
    const cls = g.node('Add', [g.node('Expand', [this.param('cls_token'), shape]), slice(0, 1)]);
    return g.node('Concat', [cls, x], [attr.int('axis', 1)]);
  }

  /** Last block's [CLS] row of the attention, mean over heads, patch columns: [B, N]. */
  clsAttention(probs: string, numPatches: number): string {
    const g = this.g;
    return this.inScope('cls_attention', () => {
      const mean = g.node('ReduceMean', [probs], [attr.ints('axes', [1]), attr.int('keepdims', 0)]);
      const cls = g.node('Gather', [mean, g.int64s([0], true)], [attr.int('axis', 1)]);
      return g.node('Slice', [cls, g.int64s([1]), g.int64s([1 + numPatches]), g.int64s([1])]);
    });
  }
}

/** The ONNX model of a ViT encoder with the given weights. */
export function vitToOnnx(cfg: EncoderConfig, weights: EncoderWeights, o: VitOnnxOptions): ModelProto {
  const vit = new VitGraph(cfg, weights, o.dtype);
  const g = vit.g;
  const C = cfg.inChans ?? 3;
  const grid = cfg.imgSize / cfg.patchSize;
  const N = grid * grid;
  const half = o.dtype === 'float16';
  const pixels = g.input('pixel_values', DataType.FLOAT, ['batch', C, cfg.imgSize, cfg.imgSize]);
  const images = half ? g.node('Cast', [pixels], [attr.int('to', DataType.FLOAT16)]) : pixels;
  let x = vit.tokens(images, vit.patchEmbed(images), N);
  let probs = '';
  for (let i = 0; i < cfg.depth; i++) ({ out: x, probs } = vit.block(x, `blocks.${i}`));
  const toFloat32 = (v: string) => (half ? g.node('Cast', [v], [attr.int('to', DataType.FLOAT)]) : v);
  if (o.head) {
    const pooled =
      o.head.pool === 'avg'
        ? vit.layerNorm(
            g.node('ReduceMean', [g.node('Slice', [x, g.int64s([1]), g.int64s([1 + N]), g.int64s([1])])], [attr.ints('axes', [1]), attr.int('keepdims', 0)]),
            'fc_norm',
          )
        : g.node('Gather', [vit.layerNorm(x, 'norm'), g.int64s([0], true)], [attr.int('axis', 1)]);
    g.output(toFloat32(vit.linear(pooled, 'head')), 'logits', DataType.FLOAT, ['batch', o.head.numClasses], 'class logits (softmax gives the probabilities)');
    g.output(
      toFloat32(pooled),
      'pooler_output',
      DataType.FLOAT,
      ['batch', cfg.embedDim],
      o.head.pool === 'avg' ? 'fc_norm of the mean patch token: the input of the head' : 'the [CLS] token after the final LayerNorm: the input of the head',
    );
  } else {
    const hidden = toFloat32(vit.layerNorm(x, 'norm'));
    g.output(
      hidden,
      'last_hidden_state',
      DataType.FLOAT,
      ['batch', 1 + N, cfg.embedDim],
      'all tokens ([CLS] first, then patches in row-major order) after the final LayerNorm',
    );
    g.output(
      g.node('Gather', [hidden, g.int64s([0], true)], [attr.int('axis', 1)]),
      'pooler_output',
      DataType.FLOAT,
      ['batch', cfg.embedDim],
      'the [CLS] token of last_hidden_state',
    );
  }
  if (o.attention) {
    g.output(
      toFloat32(vit.clsAttention(probs, N)),
      'cls_attention',
      DataType.FLOAT,
      ['batch', N],
      "last block's [CLS]-to-patch attention, mean over heads, patches in row-major order",
    );
  }
  return g.model({
    name: o.head ? 'semaim_vit_classifier' : 'semaim_vit_encoder',
    opset: OPSET,
    producer: 'semaim',
    version: packageVersion(),
    doc: `ViT ${o.head ? `classifier, ${o.head.numClasses} classes, pool ${o.head.pool}` : 'encoder'} (img ${cfg.imgSize}, patch ${cfg.patchSize}, dim ${cfg.embedDim}, depth ${cfg.depth}, heads ${cfg.numHeads}), ${o.dtype}`,
    metadata: o.metadata,
  });
}
