// `semaim export`: the encoder of a checkpoint as timm-compatible safetensors (default), as an
// ONNX folder (onnxruntime, transformers.js), or as a static web page that runs it in the browser.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { quotedPath, shellQuote } from '../util/printable';
import { OptionError, Options, defineOptions } from '../util/options';
import { abortOnStopSignals } from '../run/signals';
import { stderrLine } from '../util/console-line';
import { VERIFY_OPTIONS } from '../eval/options';
import { checkEncoderOut, encoderExportFiles, exportEncoder } from '../export/safetensors';
import { exportOnnx, onnxExportFiles } from '../export/onnx-export';
import { exportWeb, webExportFiles } from '../export/web-export';
import { checkOutputs, encoderFiles } from '../io/outputs';
import { CHECKPOINT_FILES } from '../io/checkpoint';
import { resolveCheckpoint } from '../semaim';
import { EXIF_ORIENTATION_POLICIES } from '../data';
import { checkFolderOption, defineCommand } from './command';

export const EXPORT_FORMATS = ['safetensors', 'onnx', 'web'] as const;

export const EXPORT_OPTIONS = defineOptions({
  checkpoint: {
    type: 'string',
    required: true,
    help: 'run folder (newest valid checkpoint), a checkpoint folder, or an encoder file (.safetensors, or torch.save .pth: converted to timm safetensors); onnx also a fine-tuning run (its classifier)',
  },
  out: { type: 'string', required: true, help: 'safetensors: path without extension (writes <out>.safetensors and <out>.json); onnx, web: a folder' },
  format: {
    type: 'string',
    default: 'safetensors',
    choices: EXPORT_FORMATS,
    help: 'safetensors (timm names), onnx (model + transformers.js configs) or web (a static page running the model in the browser)',
  },
  dtype: {
    type: 'string',
    default: 'float32',
    choices: ['float32', 'float16'],
    help: 'onnx, web: weights and compute in this type (input and outputs stay float32)',
  },
  attention: { type: 'boolean', default: true, help: "onnx: add the output cls_attention (last block's [CLS] attention, mean over heads)" },
  overwrite: { type: 'boolean', default: false, help: 'replace files of an earlier export at --out; never the checkpoint or encoder read' },
  exifOrientation: {
    type: 'string',
    choices: EXIF_ORIENTATION_POLICIES,
    help: "web: how the page treats an image's EXIF orientation, 'ignore' or 'apply' (default: the policy the checkpoint's run read its images with; 'ignore' for an encoder file)",
  },
  ...VERIFY_OPTIONS,
});

/** The files an export reads: an exported encoder and its config, or a checkpoint folder's files. */
function exportInputs(source: string, o: { verify: boolean }): string[] {
  if (!existsSync(source)) return []; // the export says what is missing
  if (statSync(source).isFile()) return encoderFiles(source);
  const dir = resolveCheckpoint(source, o);
  return [...CHECKPOINT_FILES, 'state.json'].map((f) => join(dir, f));
}

function size(path: string): string {
  const b = statSync(path).size;
  return b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 2 ** 10).toFixed(1)} KiB`;
}

async function writeExport(o: Options<typeof EXPORT_OPTIONS>, signal: AbortSignal): Promise<void> {
  if (o.format === 'safetensors') {
    const r = await exportEncoder(o.checkpoint, o.out, { verify: o.verify, overwrite: o.overwrite, signal });
    process.stdout.write(`wrote ${quotedPath(r.weights)} (${r.tensors} tensors) and ${quotedPath(r.config)}\n`);
  } else if (o.format === 'onnx') {
    const r = await exportOnnx(o.checkpoint, o.out, { dtype: o.dtype, attention: o.attention, verify: o.verify, overwrite: o.overwrite, signal });
    process.stdout.write(`wrote ${quotedPath(r.model)} (${size(r.model)}, ${o.dtype}) and ${r.files.slice(1).map(quotedPath).join(', ')}\n`);
  } else {
    const r = await exportWeb(o.checkpoint, o.out, { dtype: o.dtype, verify: o.verify, overwrite: o.overwrite, exifOrientation: o.exifOrientation, signal });
    process.stdout.write(
      `wrote ${quotedPath(r.page)} with model.onnx (${size(`${r.dir}/model.onnx`)}, ${o.dtype}) and onnxruntime-web ${r.ortVersion}\n` +
        `  view it over http, e.g.: python3 -m http.server -d ${shellQuote(resolve(r.dir))}  (then open http://localhost:8000/)\n`,
    );
  }
}

export const exportCommand = defineCommand({
  summary: 'export the encoder of a checkpoint: timm-compatible safetensors, ONNX, or a browser page',
  usage: 'semaim export --checkpoint RUN_DIR --out PATH [--format safetensors|onnx|web]',
  description:
    'Writes the encoder (timm names) of a checkpoint as safetensors + config JSON, as an ONNX model folder\n' +
    '(onnx/model.onnx or onnx/model_fp16.onnx, config.json, preprocessor_config.json for transformers.js),\n' +
    'or as a static page that shows its [CLS] attention and semantic order for any image (serve it over http).\n' +
    'With --format onnx, a fine-tuning run exports its classifier (outputs logits; transformers.js opens it\n' +
    'as image-classification, naming the classes).',
  options: EXPORT_OPTIONS,
  validate: (o) => {
    if (o.format === 'safetensors') checkEncoderOut(o.out);
    // an --out that names the other format's file is a forgotten --format: x.onnx.safetensors or a folder x.safetensors/
    if (o.format === 'safetensors' && /\.onnx$/i.test(o.out))
      throw new OptionError(
        'out',
        `${quotedPath(o.out)} names an ONNX file but --format is safetensors (the default): add --format onnx (which writes a folder)`,
      );
    if (o.format !== 'safetensors' && /\.safetensors$/i.test(o.out))
      throw new OptionError('out', `${quotedPath(o.out)} names a safetensors file but --format ${o.format} writes a folder: give its path`);
    if (o.format === 'safetensors' && o.dtype !== 'float32')
      throw new OptionError('dtype', "float16 is for --format onnx or web (safetensors keeps the checkpoint's float32)");
    if (!o.attention && o.format !== 'onnx')
      throw new OptionError(
        'attention',
        '--no-attention is for --format onnx (safetensors holds weights only; the web page shows the attention, so its model keeps it)',
      );
    if (o.exifOrientation !== undefined && o.format !== 'web')
      throw new OptionError('exifOrientation', 'is for --format web (the page decodes images itself; safetensors and onnx take tensors)');
  },
  preflight: (o) => {
    if (o.format !== 'safetensors') checkFolderOption(o.out, 'out');
    const outputs = o.format === 'safetensors' ? encoderExportFiles(o.out) : o.format === 'onnx' ? onnxExportFiles(o.out, o.dtype) : webExportFiles(o.out);
    checkOutputs(outputs, { overwrite: o.overwrite, inputs: exportInputs(o.checkpoint, o) });
  },
  async run(o) {
    // the conversion takes seconds to tens of seconds (ViT-B) and has no count to show progress by
    const as = o.format === 'safetensors' ? 'timm safetensors' : o.format === 'onnx' ? `ONNX (${o.dtype})` : `a web page with ONNX (${o.dtype})`;
    stderrLine(`export: converting the model of ${quotedPath(o.checkpoint)} to ${as} at ${quotedPath(o.out)} …`);
    await abortOnStopSignals((signal) => writeExport(o, signal), undefined, 'stopping before the next file; no export is written');
    return 0;
  },
});
