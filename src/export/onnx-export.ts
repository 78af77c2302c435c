// `semaim export --format onnx`: an encoder (run folder, checkpoint folder or exported
// .safetensors) as a folder that onnxruntime and transformers.js open directly:
//   onnx/model.onnx (float32) or onnx/model_fp16.onnx (float16), config.json, preprocessor_config.json.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { EncoderConfig } from '../semaim/config';
import { loadEncoder, resolveEncoder } from '../semaim';
import { encodeModel } from './onnx-proto';
import { FloatType } from './onnx-graph';
import { encoderWeights, vitToOnnx, OPSET } from './vit-onnx';
import { modelConfigJson, preprocessorConfigJson } from './hf-config';
import { evalPreprocessing } from './preprocessing';
import { writeFileAtomic } from '../util/safe-write';
import { guardOutputs } from '../io/outputs';

export interface OnnxOptions {
  dtype: FloatType;
  /** Add the `cls_attention` output (last block's [CLS] attention). */
  attention: boolean;
  /** Verify a checkpoint folder's SHA-256 (default true). */
  verify?: boolean;
}

export interface OnnxModelBytes {
  bytes: Uint8Array;
  config: EncoderConfig;
  /** SHA-256 of the weights file the encoder came from. */
  sourceSha256: string;
  /** That weights file. */
  weights: string;
}

/** The encoder of `source` as .onnx bytes. */
export function onnxModelOf(source: string, o: OnnxOptions): OnnxModelBytes {
  const { encoder, source: src } = loadEncoder(resolveEncoder(source, { verify: o.verify }));
  try {
    const cfg = src.config;
    const model = vitToOnnx(cfg, encoderWeights(encoder), {
      dtype: o.dtype,
      attention: o.attention,
      metadata: { semaim_encoder: JSON.stringify(cfg), semaim_source_sha256: src.sha256, semaim_preprocessing: JSON.stringify(evalPreprocessing(cfg.imgSize)) },
    });
    return { bytes: encodeModel(model), config: cfg, sourceSha256: src.sha256, weights: src.weights };
  } finally {
    encoder.dispose();
  }
}

/** File name transformers.js looks for under onnx/ for a dtype. */
export function onnxFileName(dtype: FloatType): string {
  return dtype === 'float16' ? 'model_fp16.onnx' : 'model.onnx';
}

export interface OnnxExportResult {
  dir: string;
  model: string;
  modelBytes: number;
  files: string[];
}

/** The files exportOnnx writes into `outDir`. */
export function onnxExportFiles(outDir: string, dtype: FloatType): string[] {
  return [join(outDir, 'onnx', onnxFileName(dtype)), join(outDir, 'config.json'), join(outDir, 'preprocessor_config.json')];
}

export function exportOnnx(source: string, outDir: string, o: OnnxOptions): OnnxExportResult {
  const m = onnxModelOf(source, o);
  const [model, config, pre] = onnxExportFiles(outDir, o.dtype);
  guardOutputs([model, config, pre], m.weights);
  mkdirSync(join(outDir, 'onnx'), { recursive: true });
  writeFileAtomic(model, m.bytes);
  const info = {
    encoder: m.config,
    dtype: o.dtype,
    opset: OPSET,
    outputs: ['last_hidden_state', 'pooler_output', ...(o.attention ? ['cls_attention'] : [])],
    sourceSha256: m.sourceSha256,
  };
  writeFileAtomic(config, JSON.stringify(modelConfigJson(m.config, info), null, 2) + '\n');
  writeFileAtomic(pre, JSON.stringify(preprocessorConfigJson(evalPreprocessing(m.config.imgSize)), null, 2) + '\n');
  return { dir: outDir, model, modelBytes: m.bytes.length, files: [model, config, pre] };
}
