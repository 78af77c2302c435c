// `semaim export --encoder-only`: a timm-compatible ViT encoder (timm parameter names, no head) as
// safetensors, with its config JSON beside it.
import { mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadTensors, saveTensors, disposeAll } from '../io';
import { ENCODER_KEY, VerifyOption, checkpointConfig, encoderConfigOf, resolveCheckpoint } from '../semaim';

/** The files exportEncoder writes for `out`. */
export function encoderExportFiles(out: string): string[] {
  const base = out.replace(/\.(safetensors|json)$/, '');
  return [`${base}.safetensors`, `${base}.json`];
}

/** Writes `<out>.safetensors` and `<out>.json`; returns both paths. */
export function exportEncoder(source: string, out: string, o: VerifyOption = {}): { weights: string; config: string; tensors: number } {
  const dir = resolveCheckpoint(source, o);
  const cfg = checkpointConfig(dir);
  const enc = encoderConfigOf(cfg);
  const [weights, config] = encoderExportFiles(out);
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
  const tmp = `${config}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify({ ...enc, timm: { num_classes: 0, global_pool: 'token', class_token: true, qkv_bias: true } }, null, 2));
  renameSync(tmp, config);
  return { weights, config, tensors: tensors.size };
}
