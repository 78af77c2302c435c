// timm's description of a ViT, in both directions: the JSON that timm's Hugging Face hub format
// keeps beside model.safetensors (`architecture`, `model_args`, `pretrained_cfg`) read into an
// EncoderConfig, and written for an exported encoder so that timm builds the same model from it.
import { isJsonObject } from '../util/json-file';
import { EncoderConfig, PRESETS } from './config';

/** timm's registered ViT names: vit_<size>_patch<P>_<img>[.<pretrained tag>] (DeiT's plain ones too). */
const TIMM_ARCHITECTURE = /^(?:vit|deit)_(tiny|small|base|large|huge)_patch(\d+)_(\d+)(?:\.|$)/;

/** Registered ViTs that compute something else than their weights' names show (activation, norms, positions, pooling). */
const OTHER_VIT = /clip|siglip|rope|quickgelu|dinov2|eva|_reg\d|_gap|_map|relpos|parallel|_xp_|so\d{3}m|distilled/;

/**
 * model_args that change what the network computes in ways semaim's ViT does not: refused rather
 * than loaded into a different network. Values are the ones semaim's ViT has.
 */
const SEMAIM_VIT: Record<string, unknown> = {
  class_token: true,
  qkv_bias: true,
  qk_norm: false,
  pre_norm: false,
  reg_tokens: 0,
  init_values: null,
  act_layer: 'gelu',
};

/** The registered timm name for a config: a preset's own name when the sizes are a preset's. */
export function timmArchitecture(c: EncoderConfig): string {
  const preset = Object.entries(PRESETS).find(([, p]) => p.embedDim === c.embedDim && p.depth === c.depth && p.numHeads === c.numHeads);
  // model_args (below) give every size anyway; the name only has to be a registered ViT
  if (preset && preset[0] === 'vit_huge') return 'vit_huge_patch14_224';
  return `${preset ? preset[0] : 'vit_base'}_patch16_224`;
}

/** timm's keyword arguments for semaim's encoder with no head and [CLS] pooling. */
export function timmModelArgs(c: EncoderConfig): Record<string, unknown> {
  return {
    img_size: c.imgSize,
    patch_size: c.patchSize,
    in_chans: c.inChans ?? 3,
    embed_dim: c.embedDim,
    depth: c.depth,
    num_heads: c.numHeads,
    mlp_ratio: c.mlpRatio ?? 4,
    num_classes: 0,
    global_pool: 'token',
    class_token: true,
    qkv_bias: true,
  };
}

/**
 * The encoder sizes a config JSON describes, in semaim's, timm's or the Hugging Face hub's spelling. Those are semaim's own
 * (camelCase, or a SemAIM config with `encoder`), timm's keyword arguments (`img_size`, ... at the
 * top or under `model_args`), or timm's hub config (`architecture: vit_base_patch16_224`, with
 * `model_args` and `pretrained_cfg.input_size` overriding the name's sizes). Not validated here.
 */
export function encoderConfigFromJson(json: Record<string, unknown>): Record<string, unknown> {
  if (isJsonObject(json.encoder)) return json.encoder;
  if ('embedDim' in json || 'imgSize' in json) return json;
  const args = isJsonObject(json.model_args) ? json.model_args : {};
  const name = typeof json.architecture === 'string' ? json.architecture : null;
  if (name !== null && (!/^(vit|deit)_/.test(name) || OTHER_VIT.test(name))) {
    throw new Error(`architecture '${name}' is not a plain timm ViT (as vit_base_patch16_224): semaim's ViT would compute another network`);
  }
  // a name outside timm's plain pattern (a user's own) gives no sizes: model arguments must
  const arch = name === null ? null : TIMM_ARCHITECTURE.exec(name);
  const preset = arch ? PRESETS[`vit_${arch[1]}`] : undefined;
  const pick = (key: string): unknown => args[key] ?? json[key];
  for (const [key, value] of Object.entries(SEMAIM_VIT)) {
    const given = pick(key);
    if (given !== undefined && given !== value && !(key === 'reg_tokens' && given === null)) {
      throw new Error(`${key} = ${JSON.stringify(given)}: semaim's ViT has ${JSON.stringify(value)} and cannot compute this model`);
    }
  }
  const pretrainedCfg = isJsonObject(json.pretrained_cfg) ? json.pretrained_cfg : {};
  const inputSize = Array.isArray(pretrainedCfg.input_size) ? (pretrainedCfg.input_size as unknown[]) : null;
  // timm takes img_size from input_size[-2:] (H, W): a non-square one is another model, not one of its width
  if (pick('img_size') === undefined && inputSize && inputSize.length === 3 && inputSize[1] !== inputSize[2])
    throw new Error(`pretrained_cfg.input_size ${JSON.stringify(inputSize)}: semaim's ViT takes square images`);
  let imgSize = pick('img_size') ?? inputSize?.[2] ?? (arch ? Number(arch[3]) : undefined);
  if (Array.isArray(imgSize)) {
    if (imgSize.length !== 2 || imgSize[0] !== imgSize[1]) throw new Error(`img_size ${JSON.stringify(imgSize)}: semaim's ViT takes square images`);
    imgSize = imgSize[0];
  }
  return {
    imgSize,
    patchSize: pick('patch_size') ?? (arch ? Number(arch[2]) : undefined),
    inChans: pick('in_chans') ?? inputSize?.[0] ?? 3,
    embedDim: pick('embed_dim') ?? preset?.embedDim,
    depth: pick('depth') ?? preset?.depth,
    numHeads: pick('num_heads') ?? preset?.numHeads,
    mlpRatio: pick('mlp_ratio') ?? 4,
  };
}

/**
 * timm's IMAGENET_DEFAULT_MEAN and _STD (RGB, 0–1 scale): the normalisation semaim's data pipeline applies to
 * every image (src/data/color.ts, a layer above this one, holds the same numbers; a test pins them equal).
 */
export const TIMM_IMAGENET_DEFAULT: { mean: readonly [number, number, number]; std: readonly [number, number, number] } = {
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
};

/**
 * What a config JSON says the encoder's images were normalised with (timm's `pretrained_cfg.mean` and
 * `.std`) when that is not ImageNet's, the one normalisation semaim's data pipeline applies; null
 * otherwise (or when it says nothing). timm's augreg and CLIP-initialised ViTs use 0.5 or CLIP's.
 */
export function otherNormalization(json: Record<string, unknown>): { mean: number[]; std: number[] } | null {
  if (!isJsonObject(json.pretrained_cfg)) return null;
  const cfg = json.pretrained_cfg;
  const triple = (v: unknown): number[] | null => (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number') ? (v as number[]) : null);
  const mean = triple(cfg.mean);
  const std = triple(cfg.std);
  if (!mean || !std) return null;
  const near = (a: number[], b: readonly number[]): boolean => a.every((x, i) => Math.abs(x - b[i]) < 1e-3);
  return near(mean, TIMM_IMAGENET_DEFAULT.mean) && near(std, TIMM_IMAGENET_DEFAULT.std) ? null : { mean, std };
}
