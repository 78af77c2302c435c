// `semaim export --encoder-only`: a timm-compatible ViT encoder (timm parameter names, no head) as
// safetensors, with its config JSON beside it.
import { existsSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { loadTensors, saveTensors, disposeAll } from '../io';
import { EncoderConfig, SemAIMConfig } from '../semaim';
import { CheckpointManager } from './checkpoint';

const ENCODER_KEY = /^(patch_embed\.|cls_token$|pos_embed$|blocks\.|norm\.)/;

/** The newest valid checkpoint folder of a run folder, or the folder itself if it is a checkpoint. */
export function resolveCheckpoint(path: string): string {
  if (existsSync(join(path, 'state.json'))) return path;
  const mgr = new CheckpointManager(path);
  for (const { dir } of mgr.list()) {
    const problem = mgr.verify(dir);
    if (!problem) return dir;
    console.warn(`warning: skipping checkpoint ${dir}: ${problem}`);
  }
  throw new Error(`no usable checkpoint in ${path} (expected a run folder with checkpoints/step-* or a checkpoint folder)`);
}

/** Reads the model config stored in a checkpoint's model.safetensors metadata. */
export function checkpointConfig(checkpointDir: string): SemAIMConfig {
  const { metadata, tensors } = loadTensors(join(checkpointDir, 'model.safetensors'), { filter: () => false });
  disposeAll(tensors);
  if (!metadata.config) throw new Error(`${checkpointDir}/model.safetensors has no model config in its metadata`);
  return JSON.parse(metadata.config) as SemAIMConfig;
}

export function encoderConfigOf(c: SemAIMConfig): EncoderConfig {
  return { imgSize: c.imgSize, patchSize: c.patchSize, inChans: c.inChans ?? 3, embedDim: c.embedDim, depth: c.depth, numHeads: c.numHeads, mlpRatio: c.mlpRatio ?? 4 };
}

/** Writes `<out>.safetensors` and `<out>.json`; returns both paths. */
export function exportEncoder(source: string, out: string): { weights: string; config: string; tensors: number } {
  const dir = resolveCheckpoint(source);
  const cfg = checkpointConfig(dir);
  const enc = encoderConfigOf(cfg);
  const base = out.replace(/\.(safetensors|json)$/, '');
  const { tensors } = loadTensors(join(dir, 'model.safetensors'), { filter: (k) => ENCODER_KEY.test(k) });
  try {
    saveTensors(`${base}.safetensors`, tensors, {
      format: 'pt', config: JSON.stringify(enc), source: dir,
      note: 'timm VisionTransformer(img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, num_classes=0, global_pool="token")',
    });
  } finally {
    disposeAll(tensors);
  }
  const tmp = `${base}.json.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify({ ...enc, timm: { num_classes: 0, global_pool: 'token', class_token: true, qkv_bias: true } }, null, 2));
  renameSync(tmp, `${base}.json`);
  return { weights: `${base}.safetensors`, config: `${base}.json`, tensors: tensors.size };
}
