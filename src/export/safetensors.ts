// `semaim export --encoder-only`: a timm-compatible ViT encoder (timm parameter names, no head) as
// safetensors, with its config JSON beside it.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadTensors, readSafetensorsHeader, saveTensors, disposeAll } from '../io';
import { runKindOf } from '../io/checkpoint';
import { evalPreprocessing } from './preprocessing';
import { ENCODER_KEY, EncoderConfig, VerifyOption, checkpointConfig, encoderConfigOf, resolveCheckpoint, timmArchitecture, timmModelArgs } from '../semaim';
import { guardOutputs } from '../io/outputs';
import { writeFileAtomic } from '../util/safe-write';

/** The files exportEncoder writes for `out`. */
export function encoderExportFiles(out: string): string[] {
  const base = out.replace(/\.(safetensors|json)$/, '');
  return [`${base}.safetensors`, `${base}.json`];
}

/**
 * The JSON beside an exported encoder: semaim's config (camelCase) and timm's hub config
 * (architecture, model_args, pretrained_cfg), so that both semaim and timm build the model from it.
 */
export function exportedConfigJson(enc: EncoderConfig): Record<string, unknown> {
  const p = evalPreprocessing(enc.imgSize);
  return {
    ...enc,
    architecture: timmArchitecture(enc),
    num_classes: 0,
    num_features: enc.embedDim,
    global_pool: 'token',
    model_args: timmModelArgs(enc),
    pretrained_cfg: {
      input_size: [enc.inChans ?? 3, enc.imgSize, enc.imgSize],
      interpolation: p.interpolation,
      crop_pct: enc.imgSize / p.resizeShortSide,
      crop_mode: 'center',
      mean: p.mean,
      std: p.std,
    },
  };
}

/** Writes `<out>.safetensors` and `<out>.json`; returns both paths. */
export function exportEncoder(source: string, out: string, o: VerifyOption = {}): { weights: string; config: string; tensors: number } {
  const dir = resolveCheckpoint(source, o);
  const kind = runKindOf(readSafetensorsHeader(join(dir, 'model.safetensors')).metadata.format);
  if (kind && kind !== 'pretrain') {
    throw new Error(
      `${dir} is a checkpoint of a ${kind} run: export takes a pre-training run. A fine-tuned classifier needs no export: ` +
        `its ${join(dir, 'model.safetensors')} has timm's names (fc_norm, head) and loads into timm's VisionTransformer(global_pool='avg', num_classes=N) as it is ` +
        '(--format onnx writes it for onnxruntime and transformers.js)',
    );
  }
  const cfg = checkpointConfig(dir);
  const enc = encoderConfigOf(cfg);
  const [weights, config] = encoderExportFiles(out);
  guardOutputs([weights, config], join(dir, 'model.safetensors'));
  mkdirSync(dirname(weights), { recursive: true }); // as the ONNX and web exports create theirs
  const { tensors } = loadTensors(join(dir, 'model.safetensors'), { filter: (k) => ENCODER_KEY.test(k) });
  try {
    saveTensors(weights, tensors, {
      format: 'pt',
      config: JSON.stringify(enc),
      source: dir,
      note: 'timm VisionTransformer(img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, num_classes=0, global_pool="token")',
    });
  } finally {
    disposeAll(tensors);
  }
  writeFileAtomic(config, JSON.stringify(exportedConfigJson(enc), null, 2));
  return { weights, config, tensors: tensors.size };
}
