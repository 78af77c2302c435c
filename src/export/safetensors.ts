// `semaim export` (--format safetensors): a timm-compatible ViT encoder (timm parameter names, no head) as
// safetensors, with its config JSON beside it; from a run, or converted from another encoder file.
import { checkExportPaths } from './export-paths';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { loadTensors, readSafetensorsHeader, disposeAll } from '../io';
import { stageTensors, tensorsBytes } from '../io/tensors';
import { checkpointWeightsSha256, runKindOf } from '../io/checkpoint';
import { evalPreprocessing } from './preprocessing';
import {
  ENCODER_KEY,
  EncoderConfig,
  VerifyOption,
  checkpointConfig,
  encoderConfigOf,
  loadEncoderTensors,
  missingEncoderWeights,
  readResolvedCheckpoint,
  resolveEncoder,
  timmArchitecture,
  timmModelArgs,
} from '../semaim';
import type { Tensor } from '../torch';
import { checkExportSpace } from './export-space';
import { formatBytes } from '../util/disk-space';
import { guardOutputs } from '../io/outputs';
import { OptionError, defineOptions, jobFields } from '../util/options';
import { CheckpointError } from '../util/errors';
import { quotedPath } from '../util/printable';
import { stageFile } from '../util/safe-write';
import { commitExport } from './commit-export';

/** The files exportEncoder writes for `out`. */
export function encoderExportFiles(out: string): string[] {
  const base = out.replace(/\.(safetensors|json)$/i, '');
  return [`${base}.safetensors`, `${base}.json`];
}

/**
 * Refuses an `out` with no file name to put the extensions on: a folder's path ('exports/', as --format onnx
 * and web take, '.') or a bare '.safetensors' wrote the hidden files 'exports/.safetensors' and 'exports/.json'.
 */
export function checkEncoderOut(out: string): void {
  const name = out
    .replace(/\.(safetensors|json)$/i, '')
    .split(sep === '/' ? '/' : /[\\/]/)
    .pop();
  if (name === '' || name === '.' || name === '..')
    throw new OptionError(
      'out',
      `${quotedPath(out)} has no file name: the safetensors export writes <out>.safetensors and <out>.json, so give a path without extension, e.g. ${quotedPath(join(out, 'encoder'))}`,
    );
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
      crop_pct: timmCropPct(enc.imgSize, p.resizeShortSide),
      crop_mode: 'center',
      mean: p.mean,
      std: p.std,
    },
  };
}

/**
 * The crop_pct for which timm's eval transform, floor(img_size / crop_pct), resizes to `resizeShortSide`:
 * the plain quotient rounds below that for a few sizes (890 / (890 / 1017) = 1016.99…), so it is lowered
 * by ulps until the division reaches it.
 */
export function timmCropPct(imgSize: number, resizeShortSide: number): number {
  const bits = new Float64Array([imgSize / resizeShortSide]);
  const asInt = new BigInt64Array(bits.buffer);
  while (Math.floor(imgSize / bits[0]) < resizeShortSide) asInt[0] -= 1n; // a positive double's next smaller value
  return bits[0];
}

/** Options of {@link exportEncoder}. */
export interface ExportOptions extends VerifyOption {
  /**
   * Replace the files of an earlier export at the output (default false, as the command without
   * --overwrite: an existing one is refused with an OptionError, code 'ERR_OUTPUT_EXISTS', before any
   * file is written). Never the checkpoint or encoder read, nor a checkpoint folder's or run's files.
   */
  overwrite?: boolean;
  /** Aborting it stops the export before its next file (an AbortError): none is written, an earlier export stays. */
  signal?: AbortSignal;
}

/** The options of {@link ExportOptions} a caller sets as values, checked as `semaim export` checks its flags. */
const ENCODER_EXPORT_FIELDS = defineOptions({
  verify: { type: 'boolean', help: "check a checkpoint folder's files" },
  overwrite: { type: 'boolean', help: 'replace an earlier export' },
});

/**
 * Writes `<out>.safetensors` and `<out>.json`; returns both paths. `source` is a pre-training run or
 * checkpoint folder, or an encoder file (timm/MAE/DDP .safetensors, or a torch.save .pth such as the
 * authors' released checkpoints): the export then converts it to timm's names and float32.
 */
export async function exportEncoder(source: string, out: string, options: ExportOptions = {}): Promise<{ weights: string; config: string; tensors: number }> {
  checkExportPaths(source, out);
  checkEncoderOut(out);
  const o = jobFields(options ?? {}, ENCODER_EXPORT_FIELDS, { signal: 'signal', onWarning: 'function', unusableHint: true });
  if (existsSync(source) && statSync(source).isFile()) return exportEncoderFile(source, out, o);
  const files = encoderExportFiles(out);
  const { tensors, enc, sha256 } = readResolvedCheckpoint(source, o, (dir) => {
    const { metadata } = readSafetensorsHeader(join(dir, 'model.safetensors'));
    const kind = runKindOf(metadata.format);
    if (kind && kind !== 'pretrain') {
      throw new CheckpointError(
        `${dir} is a checkpoint of a ${kind} run: export takes a pre-training run. A fine-tuned classifier needs no export: ` +
          `its ${join(dir, 'model.safetensors')} ${classifierTimmModel(metadata.config)} as it is (--format onnx writes it for onnxruntime and transformers.js)`,
      );
    }
    const enc = encoderConfigOf(checkpointConfig(dir));
    guardOutputs(files, join(dir, 'model.safetensors'), o.overwrite);
    const sha256 = checkpointWeightsSha256(dir, o.verify !== false);
    const { tensors } = loadTensors(join(dir, 'model.safetensors'), { filter: (k) => ENCODER_KEY.test(k), finite: true, sha256 });
    return { tensors, enc, sha256 };
  });
  return writeEncoder(tensors, enc, sha256, files, o.signal, !!o.overwrite);
}

/** The timm model a fine-tuned classifier's weights load into, by the pooling its config records. */
function classifierTimmModel(configJson: string | undefined): string {
  let pool: unknown;
  try {
    pool = (JSON.parse(configJson ?? '{}') as { pool?: unknown }).pool;
  } catch {
    pool = undefined;
  }
  return pool === 'cls'
    ? "has timm's names (norm, head) and loads into timm's VisionTransformer(global_pool='token', num_classes=N)"
    : "has timm's names (fc_norm, head) and loads into timm's VisionTransformer(global_pool='avg', num_classes=N)";
}

async function exportEncoderFile(source: string, out: string, o: ExportOptions): Promise<{ weights: string; config: string; tensors: number }> {
  const src = resolveEncoder(source);
  if (src.layout.fcNorm) {
    throw new CheckpointError(
      `${source} is a timm global_pool='avg' model (fc_norm, no final norm): not an encoder with a final norm, which the export writes; fine-tuning can start from it as it is`,
    );
  }
  // the file it writes is a whole timm encoder (final norm, every bias): one lacking any (timm's final_norm=False,
  // qkv_bias=False) was written as it was, and loaded neither in semaim nor in the timm model its JSON names
  const missing = missingEncoderWeights(src.config, readSafetensorsHeader(src.weights).tensors.keys(), src.layout);
  if (missing.length) {
    const named = missing.slice(0, 3).map((k) => `'${k}'`);
    throw new CheckpointError(
      `${source} lacks ${missing.length} weight(s) of the encoder its config describes (${named.join(', ')}${missing.length > 3 ? ', ...' : ''}): ` +
        "not a timm VisionTransformer with a final norm and biases, which the export writes (timm's final_norm=False or qkv_bias=False?)",
      'ERR_CHECKPOINT_MISMATCH',
    );
  }
  const files = encoderExportFiles(out);
  guardOutputs(files, source, o.overwrite);
  const loaded = loadEncoderTensors(src);
  const tensors = new Map<string, Tensor>();
  for (const [k, t] of loaded) {
    tensors.set(k, t.dtype === 'float32' ? t : t.to({ dtype: 'float32' }));
    if (t.dtype !== 'float32') t.dispose();
  }
  return writeEncoder(tensors, src.config, src.sha256, files, o.signal, !!o.overwrite);
}

/**
 * Writes the encoder's tensors (disposing them) and its config JSON, both or (a full disk, a kill) neither: commitExport.
 * The weights file names its source by the SHA-256 of the weights read, not their path: an export of the same
 * weights is the same file wherever they were.
 */
async function writeEncoder(
  tensors: Map<string, Tensor>,
  enc: EncoderConfig,
  sourceSha256: string,
  [weights, config]: string[],
  signal: AbortSignal | undefined,
  overwrite: boolean,
) {
  try {
    // the weights' bytes, and 64 KiB for the header (a name and shape a tensor) and the config JSON
    const bytes = tensorsBytes(tensors.values());
    checkExportSpace(dirname(weights), bytes + (64 << 10), weights, `${tensors.size} tensors of ${formatBytes(bytes)} and the config`);
  } catch (e) {
    disposeAll(tensors);
    throw e;
  }
  try {
    await commitExport(
      dirname(weights),
      [weights, config],
      [
        () =>
          stageTensors(weights, tensors, {
            format: 'pt',
            config: JSON.stringify(enc),
            sourceSha256,
            note: 'timm VisionTransformer(img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, num_classes=0, global_pool="token")',
          }),
        () => stageFile(config, JSON.stringify(exportedConfigJson(enc), null, 2)),
      ],
      signal,
      overwrite,
    );
  } finally {
    disposeAll(tensors);
  }
  return { weights, config, tensors: tensors.size };
}
