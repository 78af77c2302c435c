// The two JSON files that let transformers.js (@huggingface/transformers) open an exported folder
// as an image-feature-extraction model (an encoder) or an image-classification model (a fine-tuned
// classifier): config.json (a ViT-style model config) and
// preprocessor_config.json (the evaluation preprocessing as a ViTImageProcessor describes it).
import type { EncoderConfig } from '../semaim/config';
import type { EvalPreprocessing } from './preprocessing';

/**
 * PIL's resampling code for the resize. semaim resizes with an antialiased bicubic filter (PIL's
 * scheme). transformers.js in Node maps 'bicubic' (3) to sharp's affine transform, which does not
 * antialias (a 300×200 image came out up to 0.57 normalised units off); its Lanczos (1) is
 * sharp's antialiased Lanczos-3, within 0.03 of semaim's pixels. So the file names Lanczos.
 */
const RESAMPLE_FOR_TRANSFORMERS_JS = 1;

export function modelConfigJson(cfg: EncoderConfig, extra: Record<string, unknown>): Record<string, unknown> {
  return {
    model_type: 'vit',
    architectures: ['ViTModel'],
    hidden_size: cfg.embedDim,
    num_hidden_layers: cfg.depth,
    num_attention_heads: cfg.numHeads,
    intermediate_size: Math.floor(cfg.embedDim * (cfg.mlpRatio ?? 4)),
    hidden_act: 'gelu',
    layer_norm_eps: 1e-6,
    image_size: cfg.imgSize,
    patch_size: cfg.patchSize,
    num_channels: cfg.inChans ?? 3,
    qkv_bias: true,
    semaim: extra,
  };
}

/**
 * A fine-tuned classifier's config: transformers.js opens it as ViTForImageClassification (output
 * `logits`), and its image-classification pipeline names the classes from id2label.
 */
export function classifierConfigJson(cfg: EncoderConfig, classNames: string[], extra: Record<string, unknown>): Record<string, unknown> {
  return {
    ...modelConfigJson(cfg, extra),
    architectures: ['ViTForImageClassification'],
    num_labels: classNames.length,
    id2label: Object.fromEntries(classNames.map((n, i) => [String(i), n])),
    label2id: Object.fromEntries(classNames.map((n, i) => [n, i])),
  };
}

export function preprocessorConfigJson(p: EvalPreprocessing): Record<string, unknown> {
  return {
    image_processor_type: 'ViTImageProcessor',
    do_convert_rgb: true,
    do_resize: true,
    size: { shortest_edge: p.resizeShortSide },
    resample: RESAMPLE_FOR_TRANSFORMERS_JS,
    do_center_crop: true,
    crop_size: { height: p.crop[0], width: p.crop[1] },
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: p.mean,
    image_std: p.std,
  };
}
