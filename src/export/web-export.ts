// `semaim export --format web`: a static folder that shows an encoder's [CLS] attention and
// semantic order for any image, in the browser, with nothing fetched from elsewhere:
//   index.html, app.js, maps.js, preprocess.js,
//   orientation.js, style.css                               the page (from src/export/web/)
//   model.onnx, model.json                                  the encoder (with cls_attention) and what the page needs to know
//                                                           (preprocessing, the EXIF orientation policy)
//   ort/                                                    onnxruntime-web's WebAssembly build, copied from node_modules
import { checkExportPaths } from './export-paths';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { exportAsset, packageVersion } from './assets';
import { FloatType } from './onnx-graph';
import { EXPORT_FIELDS, onnxModelOf } from './onnx-export';
import { resolveEncoder } from '../semaim';
import { defineOptions, jobFields } from '../util/options';
import { fileStagers } from '../util/safe-write';
import { commitExport } from './commit-export';
import { evalPreprocessing } from './preprocessing';
import { OPSET } from './vit-onnx';
import { guardOutputs } from '../io/outputs';
import { CheckpointError, MissingPackageError } from '../util/errors';
import { checkExportSpace, filesBytes } from './export-space';
import { formatBytes } from '../util/disk-space';
import { readRegularFile } from '../util/regular-file';
import { isJsonObject } from '../util/json-file';
import { EXIF_ORIENTATION_POLICIES, type ExifOrientationPolicy } from '../data/codecs/orientation';
import { describeValue } from '../torch/errors';
import { quotedPath } from '../util/printable';

const PAGE_FILES = ['index.html', 'app.js', 'maps.js', 'preprocess.js', 'orientation.js', 'style.css'];
/** The WebAssembly build of onnxruntime-web: the ES module the page imports and what it loads. */
const ORT_FILES = ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];

/** onnxruntime-web's dist/ folder and version, or a clear error when the package is not installed. */
export function onnxruntimeWeb(): { dist: string; version: string } {
  let entry: string;
  try {
    entry = require.resolve('onnxruntime-web');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw e;
    throw new MissingPackageError(
      'onnxruntime-web',
      "export --format web needs the npm package onnxruntime-web (its WebAssembly files go into the folder): run 'npm install onnxruntime-web'",
      { cause: e },
    );
  }
  for (let dir = dirname(entry); dirname(dir) !== dir; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (!existsSync(pkg)) continue;
    const json = JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string; version?: string };
    if (json.name !== 'onnxruntime-web') continue;
    const dist = join(dir, 'dist');
    const missing = ORT_FILES.filter((f) => !existsSync(join(dist, f)));
    if (missing.length)
      throw new MissingPackageError(
        'onnxruntime-web',
        `onnxruntime-web ${json.version} in ${dir} lacks ${missing.join(', ')}: reinstall it ('npm install onnxruntime-web')`,
      );
    return { dist, version: json.version ?? '?' };
  }
  throw new MissingPackageError('onnxruntime-web', `cannot find onnxruntime-web's package.json above ${entry}: reinstall it ('npm install onnxruntime-web')`);
}

/** The EXIF orientation policy the page decodes images under, and where it comes from. */
export interface WebExifOrientation {
  policy: ExifOrientationPolicy;
  /** 'checkpoint': the run's --exif-orientation, from the checkpoint's state.json; 'option': given to exportWeb; 'default': nothing records it, semaim's default. */
  source: 'checkpoint' | 'option' | 'default';
}

/**
 * The policy the encoder's run read its images with: the `exifOrientation` option its checkpoint's
 * state.json records; semaim's default ('ignore') for an encoder file or a run from before the option.
 */
export function recordedExifOrientation(checkpointDir: string | undefined): WebExifOrientation {
  if (checkpointDir) {
    const path = join(checkpointDir, 'state.json');
    let state: unknown = null;
    try {
      state = JSON.parse(readRegularFile(path, 'utf8'));
    } catch (e) {
      // gone with its folder since its weights were read: a run writing to the folder pruned it, and what it
      // records is not known (taking it for a checkpoint without the option gave the page 'ignore' for an 'apply' run)
      if (!existsSync(checkpointDir))
        throw new CheckpointError(
          `checkpoint ${checkpointDir} was removed while it was being read (a run writing to its folder prunes its checkpoints): run again, or name a checkpoint the run keeps`,
          'ERR_CHECKPOINT_CHANGED',
          { cause: e },
        );
      /* unreadable (only with --no-verify): nothing recorded */
    }
    const options = isJsonObject(state) ? state.options : undefined;
    const policy = isJsonObject(options) ? options.exifOrientation : undefined;
    if (policy !== undefined) {
      if (!EXIF_ORIENTATION_POLICIES.includes(policy as ExifOrientationPolicy))
        throw new Error(`${path}: options.exifOrientation is ${describeValue(policy)}, expected one of ${EXIF_ORIENTATION_POLICIES.join(', ')}`);
      return { policy: policy as ExifOrientationPolicy, source: 'checkpoint' };
    }
  }
  return { policy: 'ignore', source: 'default' };
}

const ORT_README = (version: string) =>
  `onnxruntime-web ${version} (WebAssembly build), copied from its npm package. MIT License, Copyright (c) Microsoft Corporation.\n`;

/** What {@link exportWeb} resolves to: the folder, the path of its index.html, the size in bytes of model.onnx and the onnxruntime-web version copied. */
export interface WebExportResult {
  dir: string;
  page: string;
  modelBytes: number;
  ortVersion: string;
}

/** The files exportWeb writes into `outDir`. */
export function webExportFiles(outDir: string): string[] {
  return [...['model.onnx', 'model.json', ...PAGE_FILES].map((f) => join(outDir, f)), ...[...ORT_FILES, 'README.txt'].map((f) => join(outDir, 'ort', f))];
}

// (not `attention`: the page needs it, exportWeb always adds it)
const WEB_EXPORT_FIELDS = defineOptions({
  dtype: EXPORT_FIELDS.dtype,
  verify: EXPORT_FIELDS.verify,
  overwrite: EXPORT_FIELDS.overwrite,
  exifOrientation: { type: 'string', choices: EXIF_ORIENTATION_POLICIES, help: 'EXIF orientation policy of the page' },
});

/** Options of {@link exportWeb}. */
export interface WebExportOptions {
  /** Weights and compute type of model.onnx (default 'float32'; input and outputs stay float32). */
  dtype?: FloatType;
  /** Verify a checkpoint folder's SHA-256 (default true). */
  verify?: boolean;
  /** Replace the files of an earlier export in the folder (default false: refused, OptionError code 'ERR_OUTPUT_EXISTS', before any file is written). */
  overwrite?: boolean;
  /** Aborting it stops the export before its next file (an AbortError): none is written, an earlier export stays. */
  signal?: AbortSignal;
  /** How the page treats an image's EXIF orientation (default: the policy the checkpoint's run read its images with; 'ignore' for an encoder file). */
  exifOrientation?: ExifOrientationPolicy;
}

/** The page, model and onnxruntime-web into `outDir` (see {@link WebExportOptions}). */
export async function exportWeb(source: string, outDir: string, options: WebExportOptions = {}): Promise<WebExportResult> {
  checkExportPaths(source, outDir);
  const o = jobFields(options ?? {}, WEB_EXPORT_FIELDS, { signal: 'signal' });
  const ort = onnxruntimeWeb();
  const src = resolveEncoder(source, { verify: o.verify });
  // the policy of the checkpoint whose weights are read next (they are loaded against the SHA-256 found now): read
  // before the conversion, which takes seconds, while a run writing to the folder may prune the checkpoint
  const exifOrientation: WebExifOrientation = o.exifOrientation
    ? { policy: o.exifOrientation, source: 'option' }
    : recordedExifOrientation(src.kind === 'checkpoint' ? dirname(src.weights) : undefined);
  const m = onnxModelOf(src, { dtype: o.dtype, attention: true, verify: o.verify });
  // the page reads every image as RGB and feeds it as [1, 3, H, W]: another encoder failed in onnxruntime on each image
  const chans = m.config.inChans ?? 3;
  if (chans !== 3)
    throw new Error(`the page feeds RGB images (3 channels); ${quotedPath(m.weights)} takes ${chans} channel(s): the web page needs an RGB encoder`);
  guardOutputs(webExportFiles(outDir), m.weights, o.overwrite);
  const info = {
    encoder: m.config,
    dtype: o.dtype,
    opset: OPSET,
    preprocessing: evalPreprocessing(m.config.imgSize),
    exifOrientation,
    outputs: ['last_hidden_state', 'pooler_output', 'cls_attention'],
    sourceSha256: m.sourceSha256,
    semaim: packageVersion(),
    onnxruntimeWeb: ort.version,
  };
  const files: [string, string | Uint8Array][] = [
    [join(outDir, 'model.onnx'), m.bytes],
    [join(outDir, 'model.json'), JSON.stringify(info, null, 2) + '\n'],
    ...PAGE_FILES.map((f): [string, Uint8Array] => [join(outDir, f), readFileSync(exportAsset(join('web', f)))]),
    ...ORT_FILES.map((f): [string, Uint8Array] => [join(outDir, 'ort', f), readFileSync(join(ort.dist, f))]),
    [join(outDir, 'ort', 'README.txt'), ORT_README(ort.version)],
  ];
  const bytes = filesBytes(files);
  checkExportSpace(outDir, bytes, outDir, `model ${formatBytes(m.bytes.length)}, the page and onnxruntime-web ${formatBytes(bytes - m.bytes.length)}`);
  // every file of this export is one commit (one journal, beside model.onnx): a full disk changes none
  // of them, and a kill between the renames is completed by the next writer, so the page, the runtime
  // and the model are always of one export
  await commitExport(join(outDir, 'ort'), webExportFiles(outDir), fileStagers(files), o.signal, !!o.overwrite);
  return { dir: outDir, page: join(outDir, 'index.html'), modelBytes: m.bytes.length, ortVersion: ort.version };
}
