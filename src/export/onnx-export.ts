// `semaim export --format onnx`: an encoder (run folder, checkpoint folder or exported
// .safetensors), or a fine-tuning run's classifier, as a folder that onnxruntime and transformers.js
// open directly:
//   onnx/model.onnx (float32) or onnx/model_fp16.onnx (float16), config.json, preprocessor_config.json.
import { checkExportPaths } from './export-paths';
import { dirname, join } from 'node:path';
import type { EncoderConfig } from '../semaim/config';
import { loadEncoder, resolveEncoder, type EncoderSource } from '../semaim';
import { encodeModel, type ModelProto } from './onnx-proto';
import { FloatType } from './onnx-graph';
import { encoderWeights, vitToOnnx, OPSET } from './vit-onnx';
import { classifierConfigJson, modelConfigJson, preprocessorConfigJson } from './hf-config';
import { isFinetuneFolder, loadClassifier, resolveClassifier } from '../eval/classifier-source';
import { evalPreprocessing } from './preprocessing';
import { fileStagers } from '../util/safe-write';
import { commitExport } from './commit-export';
import { guardOutputs } from '../io/outputs';
import { checkExportSpace, filesBytes } from './export-space';
import { formatBytes } from '../util/disk-space';
import { OptionError, defineOptions, jobFields } from '../util/options';
import { isJsonObject, readJsonObject } from '../util/json-file';
import { existsSync } from 'node:fs';

/** Options of {@link exportOnnx} and {@link onnxModelOf}. */
export interface OnnxOptions {
  /** Weights and compute type (default 'float32'); 'float16' is written as onnx/model_fp16.onnx. */
  dtype?: FloatType;
  /** Add the `cls_attention` output (last block's [CLS] attention; default false). */
  attention?: boolean;
  /** Verify a checkpoint folder's SHA-256 (default true). */
  verify?: boolean;
  /** exportOnnx: replace the files of an earlier export in the folder (default false: refused, OptionError code 'ERR_OUTPUT_EXISTS'). */
  overwrite?: boolean;
  /** exportOnnx: aborting it stops the export before its next file (an AbortError): none is written, an earlier export stays. */
  signal?: AbortSignal;
}

/** What {@link onnxModelOf} returns: the serialised .onnx model and what the export records about it. */
export interface OnnxModelBytes {
  bytes: Uint8Array;
  config: EncoderConfig;
  /** The model's outputs. */
  outputs: string[];
  /** A fine-tuned classifier's class names (its `logits` columns); absent for an encoder. */
  classNames?: string[];
  /** SHA-256 of the weights file the encoder came from. */
  sourceSha256: string;
  /** That weights file. */
  weights: string;
  /** The checkpoint folder it is part of (its state.json records the run's options); absent for an encoder file. */
  checkpointDir?: string;
}

const outputNames = (model: ModelProto): string[] => model.graph.output.map((v) => v.name);

/** The encoder of `source` (a path, or an encoder resolveEncoder found) as .onnx bytes. */
export function onnxModelOf(source: string | EncoderSource, options: OnnxOptions = {}): OnnxModelBytes {
  const o = onnxFields(options);
  const { encoder, source: src } = loadEncoder(typeof source === 'string' ? resolveEncoder(source, { verify: o.verify }) : source);
  try {
    const cfg = src.config;
    const model = vitToOnnx(cfg, encoderWeights(encoder), {
      dtype: o.dtype,
      attention: o.attention,
      metadata: { semaim_encoder: JSON.stringify(cfg), semaim_source_sha256: src.sha256, semaim_preprocessing: JSON.stringify(evalPreprocessing(cfg.imgSize)) },
    });
    return {
      bytes: encodeModel(model),
      config: cfg,
      outputs: outputNames(model),
      sourceSha256: src.sha256,
      weights: src.weights,
      checkpointDir: src.kind === 'checkpoint' ? dirname(src.weights) : undefined,
    };
  } finally {
    encoder.dispose();
  }
}

/** The classifier of a fine-tuning run (or checkpoint folder) as .onnx bytes: outputs `logits` and the head's input. */
export function classifierOnnxModelOf(source: string, options: OnnxOptions = {}): OnnxModelBytes {
  const o = onnxFields(options);
  const src = resolveClassifier(source, { verify: o.verify });
  const classifier = loadClassifier(src, 'cpu');
  try {
    const cfg = src.config;
    const classNames = src.classNames ?? Array.from({ length: cfg.numClasses }, (_, i) => `class ${i}`);
    const model = vitToOnnx(cfg, encoderWeights(classifier), {
      dtype: o.dtype,
      attention: o.attention,
      head: { pool: cfg.pool, numClasses: cfg.numClasses },
      metadata: {
        semaim_classifier: JSON.stringify(cfg),
        semaim_class_names: JSON.stringify(classNames),
        semaim_source_sha256: src.sha256,
        semaim_preprocessing: JSON.stringify(evalPreprocessing(cfg.imgSize)),
      },
    });
    return { bytes: encodeModel(model), config: cfg, outputs: outputNames(model), classNames, sourceSha256: src.sha256, weights: src.weights };
  } finally {
    classifier.dispose();
  }
}

/** File name transformers.js looks for under onnx/ for a dtype. */
export function onnxFileName(dtype: FloatType): string {
  return dtype === 'float16' ? 'model_fp16.onnx' : 'model.onnx';
}

/** What {@link exportOnnx} resolves to: the folder, the path and size in bytes of the .onnx file, and every file written. */
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

/** The export options a library caller sets as values, checked as `semaim export` checks its flags (dtype: float32 unless given). */
export const EXPORT_FIELDS = defineOptions({
  dtype: { type: 'string', default: 'float32', choices: ['float32', 'float16'], help: 'weights and compute type' },
  attention: { type: 'boolean', default: false, help: 'add the cls_attention output' },
  verify: { type: 'boolean', help: "check a checkpoint folder's files" },
  overwrite: { type: 'boolean', help: 'replace an earlier export' },
});

/** The options checked, with their defaults filled in. */
function onnxFields(o: OnnxOptions) {
  return jobFields(o ?? {}, EXPORT_FIELDS, { signal: 'signal' });
}

/**
 * Refuses an export beside the other dtype's model when that model came from other weights: the JSON
 * files are rewritten for the new weights, and transformers.js would load the old model under them
 * (`--dtype float16 --overwrite` from another checkpoint left onnx/model.onnx of the first).
 */
function refuseOtherSourcesModel(outDir: string, dtype: FloatType, sha256: string | undefined): void {
  const other = join(outDir, 'onnx', onnxFileName(dtype === 'float16' ? 'float32' : 'float16'));
  if (!existsSync(other)) return;
  let before: unknown;
  try {
    const semaim = readJsonObject(join(outDir, 'config.json')).semaim;
    before = isJsonObject(semaim) ? semaim.sourceSha256 : undefined;
  } catch {
    before = undefined;
  }
  if (typeof before === 'string' && before === sha256) return;
  throw new OptionError(
    'out',
    `${other} was exported from other weights (${typeof before === 'string' ? `SHA-256 ${before.slice(0, 12)}…` : 'its config.json does not say which'}), ` +
      `and this export's config.json would describe only the new ones: remove it, or export into another folder`,
  );
}

/** An encoder, or a fine-tuning run's classifier (transformers.js: image-classification), as an ONNX folder. */
export async function exportOnnx(source: string, outDir: string, options: OnnxOptions = {}): Promise<OnnxExportResult> {
  checkExportPaths(source, outDir);
  const o = onnxFields(options);
  const m = isFinetuneFolder(source) ? classifierOnnxModelOf(source, o) : onnxModelOf(source, o);
  const [model, config, pre] = onnxExportFiles(outDir, o.dtype);
  guardOutputs([model, config, pre], m.weights, o.overwrite);
  refuseOtherSourcesModel(outDir, o.dtype, m.sourceSha256);
  const info = { [m.classNames ? 'classifier' : 'encoder']: m.config, dtype: o.dtype, opset: OPSET, outputs: m.outputs, sourceSha256: m.sourceSha256 };
  const json = m.classNames ? classifierConfigJson(m.config, m.classNames, info) : modelConfigJson(m.config, info);
  // (config.json first: the commit journal and the lock are named after it, in the folder that holds all three)
  const files: [string, string | Uint8Array][] = [
    [config, JSON.stringify(json, null, 2) + '\n'],
    [model, m.bytes],
    [pre, JSON.stringify(preprocessorConfigJson(evalPreprocessing(m.config.imgSize)), null, 2) + '\n'],
  ];
  checkExportSpace(outDir, filesBytes(files), outDir, `model ${formatBytes(m.bytes.length)} and its two JSON files`);
  // all three, or none: an earlier export's config never describes a new model
  await commitExport(join(outDir, 'onnx'), [config, model, pre], fileStagers(files), o.signal, !!o.overwrite);
  return { dir: outDir, model, modelBytes: m.bytes.length, files: [model, config, pre] };
}
