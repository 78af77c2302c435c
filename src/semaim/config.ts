// Model configuration: presets, defaults, validation and JSON round trip.
import { didYouMean } from '../util/options';

/**
 * The sizes of a ViT encoder: square `imgSize`² images cut into `patchSize`² patches, `depth` blocks of
 * width `embedDim` with `numHeads` heads. Checked by {@link validateEncoder}; the encoder part of a {@link SemAIMConfig}.
 */
export interface EncoderConfig {
  imgSize: number;
  patchSize: number;
  /** Image channels (default 3). */
  inChans?: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  /** MLP hidden width as a multiple of embedDim (default 4). */
  mlpRatio?: number;
  /** Stochastic depth rate of the last block, in [0, 1); block i gets dropPath·i/(depth−1) (default 0). */
  dropPath?: number;
}

/**
 * What the model predicts for each patch (docs/METHOD.md §5): 'pixels' (blurred by a blurKernel² Gaussian
 * of σ blurSigma when `blur`, per-patch normalised when `normPix`) or 'features' of a frozen teacher encoder
 * (`teacher`: its weights file, `teacherConfig`: its sizes).
 */
export type TargetConfig =
  | { type: 'pixels'; normPix: boolean; blur: boolean; blurKernel: number; blurSigma: number }
  | { type: 'features'; teacher: string; teacherConfig: EncoderConfig };

/** Which encoder gives the similarity map S of an order: the model being trained ('online'), its EMA copy ('ema') or the feature-target teacher ('teacher'). */
export type SimilaritySource = 'online' | 'ema' | 'teacher';

/**
 * Which tokens give the similarity map S (the authors' `--attention_type`): 'cls' (the paper and the
 * default) = softmax over patches of cos(z_cls, z_i); 'gap' = the same with the mean of the patch
 * tokens in place of z_cls; 'self' = the last encoder block's [CLS]→patch attention, mean over heads.
 * Only the online and EMA sources use it; a teacher always uses 'cls' (min-max normalised).
 */
export type SimilarityTokens = 'cls' | 'gap' | 'self';

/** The paper's semantic order: distance to the argmax of S (3×3 mean-filtered first when `filter`) plus λ·U(0,1), λ = `lambda` (docs/METHOD.md §3.3). */
export type SemanticOrderConfig = { type: 'semantic'; source: SimilaritySource; filter: boolean; lambda: number; tokens?: SimilarityTokens };
/** The prediction order of a {@link SemAIMConfig}, by `type`: raster, snake, stochastic, similarity (p = 1 − S), semantic or multicenter (docs/METHOD.md §3). */
export type OrderConfig =
  | { type: 'raster' | 'snake' | 'stochastic' }
  | { type: 'similarity'; source: SimilaritySource; tokens?: SimilarityTokens }
  | SemanticOrderConfig
  | {
      type: 'multicenter';
      source: SimilaritySource;
      k: number;
      minRelHeight: number;
      minDistance: number;
      filter: boolean;
      lambda: number;
      tokens?: SimilarityTokens;
    };

/** A whole SemAIM model config: encoder sizes, decoder depth, target and order; made by {@link makeConfig}, checked by {@link validateConfig}. */
export interface SemAIMConfig extends EncoderConfig {
  /** Number of decoder (query) blocks, 1..depth. */
  decoderDepth: number;
  target: TargetConfig;
  order: OrderConfig;
}

/** Width, depth and heads of timm's ViT sizes by name (vit_tiny … vit_huge), read by {@link makeConfig} and `pretrain --model`. */
export const PRESETS: Record<string, Pick<EncoderConfig, 'embedDim' | 'depth' | 'numHeads'>> = {
  vit_tiny: { embedDim: 192, depth: 12, numHeads: 3 },
  vit_small: { embedDim: 384, depth: 12, numHeads: 6 },
  vit_base: { embedDim: 768, depth: 12, numHeads: 12 },
  vit_large: { embedDim: 1024, depth: 24, numHeads: 16 },
  vit_huge: { embedDim: 1280, depth: 32, numHeads: 16 },
};

/** The authors' headline target, as `semaim pretrain`'s defaults: per-patch normalised pixels of the 9×9, σ 1 blurred image. */
export const DEFAULT_PIXEL_TARGET: Readonly<TargetConfig> = Object.freeze({ type: 'pixels', normPix: true, blur: true, blurKernel: 9, blurSigma: 1 });

/** Paper defaults: semantic order from the online model, 3×3 mean filter, λ = 0.01. */
export const DEFAULT_ORDER: Readonly<SemanticOrderConfig> = Object.freeze({ type: 'semantic', source: 'online', filter: true, lambda: 0.01 });

/** The authors' released variant of the semantic order: no filter, λ = 1e-3. */
export const AUTHORS_SEMANTIC_ORDER: Readonly<SemanticOrderConfig> = Object.freeze({ type: 'semantic', source: 'online', filter: false, lambda: 1e-3 });

/** Thrown by the config checks: `key` names the offending field (e.g. 'order.lambda'); code 'ERR_CONFIG'. */
export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG';
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`config '${key}': ${message}`);
    this.name = 'ConfigError';
  }
}

/** A full model config from a preset name and overrides (decoder depth defaults to the encoder depth). */
export function makeConfig(preset: keyof typeof PRESETS | string, overrides: Partial<SemAIMConfig> = {}): SemAIMConfig {
  const p = Object.hasOwn(PRESETS, preset) ? PRESETS[preset] : undefined;
  if (!p) throw new ConfigError('preset', `unknown preset '${preset}' (known: ${Object.keys(PRESETS).join(', ')})`);
  checkObject(overrides, 'overrides');
  const cfg: SemAIMConfig = {
    imgSize: 224,
    patchSize: 16,
    inChans: 3,
    mlpRatio: 4,
    dropPath: 0,
    ...p,
    decoderDepth: overrides.depth ?? p.depth,
    // copies: a caller who changes its config must not change the defaults of every later one
    target: { ...DEFAULT_PIXEL_TARGET },
    order: { ...DEFAULT_ORDER },
    ...overrides,
  };
  validateConfig(cfg);
  return cfg;
}

/** A value as written: JSON, but NaN and ±Infinity as they are (JSON prints them as null) and undefined as undefined. */
const shown = (v: unknown): string => (typeof v === 'number' || v === undefined ? String(v) : JSON.stringify(v));

const posInt = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v > 0;

/** A config, or a part of one, read from a file is an object: null or an array there is a ConfigError naming it, not a TypeError. */
function checkObject(v: unknown, key: string): void {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(key, `must be an object, got ${shown(v)}`);
}

/** The fields of an {@link EncoderConfig}. */
const ENCODER_KEYS: readonly string[] = ['imgSize', 'patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'mlpRatio', 'dropPath'];

/** The fields of a {@link SemAIMConfig}: the encoder's and the decoder's, target and order. */
export const MODEL_KEYS: readonly string[] = [...ENCODER_KEYS, 'decoderDepth', 'target', 'order'];

/** The fields of each target type; `type` first. */
const TARGET_KEYS: Record<TargetConfig['type'], readonly string[]> = {
  pixels: ['type', 'normPix', 'blur', 'blurKernel', 'blurSigma'],
  features: ['type', 'teacher', 'teacherConfig'],
};

/** The fields each order type needs; those read from a similarity map may also say which `tokens` give it. */
const ORDER_KEYS: Record<OrderConfig['type'], readonly string[]> = {
  raster: ['type'],
  snake: ['type'],
  stochastic: ['type'],
  similarity: ['type', 'source'],
  semantic: ['type', 'source', 'filter', 'lambda'],
  multicenter: ['type', 'source', 'k', 'minRelHeight', 'minDistance', 'filter', 'lambda'],
};

/**
 * Refuses a field of `c` that is not one of `known`, naming it (`prefix` in front) and the known field
 * it is a typo of, if one is: a misspelt field would otherwise be ignored and its default used.
 */
export function checkKnownKeys(c: object, known: readonly string[], prefix = ''): void {
  for (const key of Object.keys(c)) {
    if (known.includes(key)) continue;
    throw new ConfigError(prefix + key, `unknown field${didYouMean(key, known, prefix)} (known: ${known.join(', ')})`);
  }
}

/** Refuses a part of a config that lacks one of the fields its type needs (`what`: e.g. "a 'semantic' order"). */
function checkRequiredKeys(c: object, required: readonly string[], prefix: string, what: string): void {
  const missing = required.find((k) => !Object.hasOwn(c, k));
  if (missing !== undefined) throw new ConfigError(prefix + missing, `missing: ${what} needs ${required.join(', ')}`);
}

/** Throws unless `c[key]` is a boolean (a 'false' read from a file would be true). */
function checkBoolean(c: object, key: string, prefix: string): void {
  const v = (c as Record<string, unknown>)[key];
  if (typeof v !== 'boolean') throw new ConfigError(prefix + key, `must be true or false, got ${shown(v)}`);
}

/** Throws unless `c[key]` is a finite number. */
function checkFinite(c: object, key: string, prefix: string): void {
  const v = (c as Record<string, unknown>)[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(prefix + key, `must be a finite number, got ${shown(v)}`);
}

/**
 * Upper bounds of an encoder config, far above any published ViT (ViT-22B: width 6144, depth 48, 14²
 * patches at 224²): a config from a file someone handed over cannot make a model grow without limit.
 */
export const ENCODER_LIMITS = { imgSize: 8192, patchSize: 1024, embedDim: 16384, depth: 256, numHeads: 1024, inChans: 64, mlpRatio: 64, numPatches: 65536 };

/**
 * Trainable parameters of a ViT encoder, counted from its config: the patch embedding, [CLS], the blocks and
 * the final norm (not the position embedding, a fixed sin-cos buffer in pre-training).
 */
export function encoderParameterCount(c: EncoderConfig): number {
  const D = c.embedDim;
  const H = Math.floor(D * (c.mlpRatio ?? 4));
  const P = c.patchSize * c.patchSize * (c.inChans ?? 3);
  const norm = 2 * D;
  const block = norm + (3 * D * D + 3 * D) + (D * D + D) + norm + (D * H + H + H * D + D);
  return P * D + D + D + c.depth * block + norm;
}

/**
 * Checks an encoder config: positive integer sizes within {@link ENCODER_LIMITS}, imgSize divisible by patchSize,
 * embedDim by numHeads and by 4, inChans, mlpRatio and dropPath in range. Throws a {@link ConfigError} whose key has `prefix` in front.
 */
export function validateEncoder(c: EncoderConfig, prefix = ''): void {
  checkObject(c, prefix.replace(/\.$/, '') || 'config');
  for (const k of ['imgSize', 'patchSize', 'embedDim', 'depth', 'numHeads'] as const) {
    if (!posInt(c[k])) throw new ConfigError(prefix + k, `must be a positive integer, got ${shown(c[k])}`);
    if (c[k] > ENCODER_LIMITS[k]) throw new ConfigError(prefix + k, `${c[k]} is above the limit of ${ENCODER_LIMITS[k]}`);
  }
  const patches = (c.imgSize / c.patchSize) ** 2;
  if (patches > ENCODER_LIMITS.numPatches)
    throw new ConfigError(
      prefix + 'imgSize',
      `${c.imgSize}² in patches of ${c.patchSize}² gives ${patches} patches, above the limit of ${ENCODER_LIMITS.numPatches}`,
    );
  if (c.imgSize % c.patchSize !== 0) throw new ConfigError(prefix + 'imgSize', `${c.imgSize} is not divisible by patchSize ${c.patchSize}`);
  if (c.embedDim % c.numHeads !== 0) throw new ConfigError(prefix + 'embedDim', `${c.embedDim} is not divisible by numHeads ${c.numHeads}`);
  if (c.embedDim % 4 !== 0) throw new ConfigError(prefix + 'embedDim', `${c.embedDim} must be divisible by 4 (2-D sin-cos position embedding)`);
  if (c.inChans !== undefined && !(posInt(c.inChans) && c.inChans <= ENCODER_LIMITS.inChans))
    throw new ConfigError(prefix + 'inChans', `must be an integer in 1..${ENCODER_LIMITS.inChans}, got ${shown(c.inChans)}`);
  if (c.mlpRatio !== undefined && !(typeof c.mlpRatio === 'number' && c.mlpRatio <= ENCODER_LIMITS.mlpRatio && Math.floor(c.embedDim * c.mlpRatio) >= 1))
    throw new ConfigError(prefix + 'mlpRatio', `must give an MLP of 1..${ENCODER_LIMITS.mlpRatio} × embedDim units, got ${String(c.mlpRatio)}`);
  if (c.dropPath !== undefined && !(typeof c.dropPath === 'number' && c.dropPath >= 0 && c.dropPath < 1))
    throw new ConfigError(prefix + 'dropPath', `must be in [0, 1), got ${shown(c.dropPath)}`);
}

/**
 * Checks a whole model config (encoder, decoderDepth in 1..depth, target, order): every field its target and
 * order types need, of its type, and no field it does not know; throws a {@link ConfigError} naming the first bad field.
 */
export function validateConfig(c: SemAIMConfig): void {
  validateEncoder(c);
  checkKnownKeys(c, MODEL_KEYS);
  if (!posInt(c.decoderDepth) || c.decoderDepth > c.depth) {
    throw new ConfigError('decoderDepth', `must be an integer in 1..depth (${c.depth}), got ${shown(c.decoderDepth)}`);
  }
  validateTarget(c.target, c);
  validateOrder(c.order, c.target.type);
}

function validateTarget(t: TargetConfig, c: EncoderConfig): void {
  checkObject(t, 'target');
  if (typeof t.type !== 'string' || !Object.hasOwn(TARGET_KEYS, t.type))
    throw new ConfigError('target.type', `must be 'pixels' or 'features', got ${JSON.stringify((t as { type: unknown }).type)}`);
  checkKnownKeys(t, TARGET_KEYS[t.type], 'target.');
  checkRequiredKeys(t, TARGET_KEYS[t.type], 'target.', `a '${t.type}' target`);
  if (t.type === 'pixels') {
    checkBoolean(t, 'normPix', 'target.');
    checkBoolean(t, 'blur', 'target.');
    checkFinite(t, 'blurKernel', 'target.');
    checkFinite(t, 'blurSigma', 'target.');
    if (t.blur && (!posInt(t.blurKernel) || t.blurKernel % 2 === 0)) throw new ConfigError('target.blurKernel', 'must be an odd positive integer');
    // a wider kernel only adds taps that lie over the zero padding for every pixel (and a 100001² kernel
    // was a 10-billion-element array)
    if (t.blur && t.blurKernel > 2 * c.imgSize - 1)
      throw new ConfigError(
        'target.blurKernel',
        `must be at most 2 × imgSize − 1 = ${2 * c.imgSize - 1} (wider taps only ever fall on the padding), got ${t.blurKernel}`,
      );
    if (t.blur && !(t.blurSigma > 0)) throw new ConfigError('target.blurSigma', 'must be > 0');
    // the unbiased variance of a single value is NaN: every target, and so the loss, came out NaN
    const values = c.patchSize * c.patchSize * (c.inChans ?? 3);
    if (t.normPix && values < 2)
      throw new ConfigError(
        'target.normPix',
        `per-patch normalisation needs at least 2 values per patch, a ${c.patchSize}² patch of ${c.inChans ?? 3} channel(s) has ${values}`,
      );
  } else {
    if (typeof t.teacher !== 'string' || !t.teacher) throw new ConfigError('target.teacher', 'feature targets need a teacher safetensors file');
    // its fields are not held to the encoder's: runs before 2026-12-03 recorded the teacher's whole .json
    // here, and loadTeacher compares the encoder fields with the teacher's file anyway
    validateEncoder(t.teacherConfig, 'target.teacherConfig.');
    if (t.teacherConfig.imgSize !== c.imgSize || t.teacherConfig.patchSize !== c.patchSize) {
      const [ti, tp] = [t.teacherConfig.imgSize, t.teacherConfig.patchSize];
      throw new ConfigError(
        'target.teacherConfig',
        `the teacher must use the same image and patch size: it has ${ti}² images in ${tp}² patches, the model ${c.imgSize}² in ${c.patchSize}²`,
      );
    }
    // the teacher reads the model's images: other channels failed only at the first step, blaming the images
    const [tc, mc] = [t.teacherConfig.inChans ?? 3, c.inChans ?? 3];
    if (tc !== mc)
      throw new ConfigError(
        'target.teacherConfig',
        `the teacher must take the model's image channels: it takes ${tc} channel(s), the model ${mc} (it reads the same images)`,
      );
  }
}

/** The orders read from a similarity map, which say where it comes from. */
const needsSource = (o: OrderConfig): o is Exclude<OrderConfig, { type: 'raster' | 'snake' | 'stochastic' }> =>
  o.type === 'similarity' || o.type === 'semantic' || o.type === 'multicenter';

function validateOrder(o: OrderConfig, target: TargetConfig['type']): void {
  checkObject(o, 'order');
  if (typeof o.type !== 'string' || !Object.hasOwn(ORDER_KEYS, o.type))
    throw new ConfigError('order.type', `must be one of ${Object.keys(ORDER_KEYS).join(', ')}, got ${JSON.stringify(o.type)}`);
  checkKnownKeys(o, needsSource(o) ? [...ORDER_KEYS[o.type], 'tokens'] : ORDER_KEYS[o.type], 'order.');
  checkRequiredKeys(o, ORDER_KEYS[o.type], 'order.', `a '${o.type}' order`);
  if (!needsSource(o)) return;
  if (!['online', 'ema', 'teacher'].includes(o.source)) {
    throw new ConfigError('order.source', `must be online, ema or teacher, got ${shown(o.source)}`);
  }
  if (o.source === 'teacher' && target !== 'features') {
    throw new ConfigError('order.source', "'teacher' needs a teacher (feature targets)");
  }
  if (o.tokens !== undefined && !['cls', 'gap', 'self'].includes(o.tokens)) {
    throw new ConfigError('order.tokens', `must be cls, gap or self, got ${JSON.stringify(o.tokens)}`);
  }
  // (as the CLI's --similarity-tokens) training read the teacher's [CLS] map whatever tokens said, and the figures another
  if (o.source === 'teacher' && o.tokens !== undefined && o.tokens !== 'cls') {
    throw new ConfigError('order.tokens', `${JSON.stringify(o.tokens)} with source 'teacher': a teacher's similarity map is always its [CLS] (min-max)`);
  }
  if (o.type === 'similarity') return;
  checkBoolean(o, 'filter', 'order.');
  // Far above the paper's 0.01: at 1e6 the noise already decides the whole order; beyond, it overflows.
  if (!(typeof o.lambda === 'number' && o.lambda >= 0 && o.lambda <= 1e6)) throw new ConfigError('order.lambda', `must be in [0, 1e6], got ${shown(o.lambda)}`);
  if (o.type === 'multicenter') {
    if (!posInt(o.k)) throw new ConfigError('order.k', `must be a positive integer, got ${shown(o.k)}`);
    if (!(typeof o.minRelHeight === 'number' && o.minRelHeight >= 0 && o.minRelHeight <= 1))
      throw new ConfigError('order.minRelHeight', `must be in [0, 1], got ${shown(o.minRelHeight)}`);
    if (!(typeof o.minDistance === 'number' && o.minDistance >= 0 && Number.isFinite(o.minDistance)))
      throw new ConfigError('order.minDistance', `must be a finite number >= 0, got ${shown(o.minDistance)}`);
  }
}

/** The config as JSON indented by 2 spaces, which {@link configFromJSON} reads back. */
export function configToJSON(c: SemAIMConfig): string {
  return JSON.stringify(c, null, 2);
}

/** Parses a config from JSON and validates it (a SyntaxError for bad JSON, a {@link ConfigError} for a bad value); no defaults are filled in. */
export function configFromJSON(text: string): SemAIMConfig {
  const c = JSON.parse(text) as SemAIMConfig;
  validateConfig(c);
  return c;
}
