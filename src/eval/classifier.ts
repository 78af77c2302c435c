// Heads for evaluation: MAE's linear probe (BatchNorm without affine → Linear) and the fine-tuning
// classifier (timm/MAE VisionTransformer with global average pooling → fc_norm → head).
import * as torch from '../torch';
import { Tensor } from '../torch';
import { BatchNorm1d, LayerNorm, Linear, Module, ModuleList, Sequential, init } from '../nn';
import { Block, EncoderConfig, PatchEmbed, checkImagesFit, initVitWeights, sincosPosEmbed2d, validateEncoder } from '../semaim';
import { ENCODER_KEY } from '../semaim';

/**
 * MAE's linear-probe head: `head = Sequential(BatchNorm1d(D, affine=False, eps=1e-6), Linear(D, C))`
 * (state-dict names head.0.*, head.1.*), Linear weight trunc_normal(std 0.01), bias 0.
 */
export class LinearProbe extends Module {
  readonly head: Sequential;
  readonly bn: BatchNorm1d;
  readonly linear: Linear;
  constructor(
    readonly dim: number,
    readonly numClasses: number,
  ) {
    super();
    this.bn = new BatchNorm1d(dim, { affine: false, eps: 1e-6 });
    this.linear = new Linear(dim, numClasses);
    this.head = this.module('head', new Sequential(this.bn, this.linear));
    init.truncNormal_(this.linear.weight, 0.01);
    init.zeros_(this.linear.bias!);
  }
  forward(features: Tensor): Tensor {
    return this.head.forward(features);
  }
}

/**
 * How a {@link ViTClassifier} pools its tokens for the head: 'avg' = mean of the patch tokens
 * → fc_norm (MAE fine-tuning, timm global_pool='avg'); 'cls' = final norm → [CLS] token.
 */
export type ClassifierPool = 'avg' | 'cls';

/**
 * The architecture of a {@link ViTClassifier}: an encoder's config plus the number of classes and
 * the pooling. Fine-tuning stores it in its checkpoints (model.safetensors metadata `config`).
 */
export interface ClassifierConfig extends EncoderConfig {
  /** Classes of the head (an integer > 1). */
  numClasses: number;
  /** 'avg': mean of patch tokens → fc_norm (MAE fine-tuning); 'cls': final norm → [CLS]. */
  pool: ClassifierPool;
}

/**
 * A ViT with a classification head, for fine-tuning and prediction. It has timm's names: patch_embed, cls_token, pos_embed (a parameter: MAE's fine-tuning
 * trains the position embedding that pre-training kept fixed; sin-cos when the encoder has none),
 * blocks.i (drop-path rising linearly to cfg.dropPath), then either `fc_norm` over the mean of the
 * patch tokens (pool 'avg', timm global_pool='avg', no final `norm`) or `norm` + [CLS] (pool 'cls'),
 * then `head`.
 */
export class ViTClassifier extends Module {
  readonly numPatches: number;
  readonly patch_embed: PatchEmbed;
  readonly cls_token: Tensor;
  readonly pos_embed: Tensor;
  readonly blocks: ModuleList<Block>;
  readonly norm: LayerNorm | null;
  readonly fc_norm: LayerNorm | null;
  readonly head: Linear;

  constructor(readonly cfg: ClassifierConfig) {
    super();
    validateEncoder(cfg);
    if (!(Number.isInteger(cfg.numClasses) && cfg.numClasses > 1))
      throw new RangeError(`ViTClassifier: numClasses must be an integer > 1, got ${cfg.numClasses}`);
    const D = cfg.embedDim;
    const grid = cfg.imgSize / cfg.patchSize;
    this.numPatches = grid * grid;
    this.patch_embed = this.module('patch_embed', new PatchEmbed(cfg.patchSize, cfg.inChans ?? 3, D));
    this.cls_token = this.param('cls_token', torch.zeros([1, 1, D]));
    this.pos_embed = this.param('pos_embed', sincosPosEmbed2d(D, grid, grid));
    const rates = Array.from({ length: cfg.depth }, (_, i) => (cfg.depth > 1 ? ((cfg.dropPath ?? 0) * i) / (cfg.depth - 1) : 0));
    this.blocks = this.module('blocks', new ModuleList(rates.map((r) => new Block(D, cfg.numHeads, cfg.mlpRatio ?? 4, r))));
    this.norm = cfg.pool === 'cls' ? this.module('norm', new LayerNorm(D, 1e-6)) : null;
    this.fc_norm = cfg.pool === 'avg' ? this.module('fc_norm', new LayerNorm(D, 1e-6)) : null;
    this.head = this.module('head', new Linear(D, cfg.numClasses));
  }

  /** MAE's initialisation (xavier Linear/patch embedding, cls N(0, 0.02)), head weight trunc_normal(std 2e-5), bias 0. */
  initWeights(): this {
    initVitWeights(this);
    this.patch_embed.initWeights();
    init.normal_(this.cls_token, 0, 0.02);
    init.truncNormal_(this.head.weight, 2e-5);
    init.zeros_(this.head.bias!);
    return this;
  }

  /**
   * Loads pre-trained encoder weights (timm names). As MAE's main_finetune: everything of the encoder
   * must be present; only the new head and fc_norm (and `norm` with pool 'avg', which has none) may
   * be left at their initial values; an fc_norm in the weights (a timm global_pool='avg' model) is
   * loaded with pool 'avg'. Returns the names that were not loaded.
   */
  loadEncoder(tensors: Map<string, Tensor>): string[] {
    const avg = this.cfg.pool === 'avg';
    const wanted = (k: string): boolean => (avg ? !k.startsWith('norm.') && (ENCODER_KEY.test(k) || k.startsWith('fc_norm.')) : ENCODER_KEY.test(k));
    const { missing } = this.loadStateDict(new Map([...tensors].filter(([k]) => wanted(k))), { strict: false });
    const allowed = /^(head\.|fc_norm\.)/;
    const bad = missing.filter((k) => !allowed.test(k));
    if (bad.length) {
      // a timm global_pool='avg' file (fc_norm, no final norm) has all an 'avg' classifier needs
      const avgFile = !avg && bad.every((k) => k.startsWith('norm.')) && tensors.has('fc_norm.weight');
      const way = avgFile ? ": they are a timm global_pool='avg' model (fc_norm, no final norm): fine-tune it with pool 'avg' (--pool avg)" : '';
      throw new Error(`the encoder weights lack ${bad.join(', ')}${way}`);
    }
    return missing;
  }

  /** Class logits [B, numClasses]. */
  forward(images: Tensor): Tensor {
    checkImagesFit(images, this.cfg);
    return torch.scope(() => {
      const B = images.shape[0];
      const D = this.cfg.embedDim;
      const patches = this.patch_embed.forward(images).add(this.pos_embed.narrow(1, 1, this.numPatches));
      const cls = this.cls_token.add(this.pos_embed.narrow(1, 0, 1)).expand(B, 1, D);
      let x = torch.cat([cls, patches], 1);
      for (const b of this.blocks) x = b.forward(x);
      const pooled = this.fc_norm ? this.fc_norm.forward(x.narrow(1, 1, this.numPatches).mean(1)) : this.norm!.forward(x).select(1, 0);
      return this.head.forward(pooled);
    });
  }
}
