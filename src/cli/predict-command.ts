// `semaim predict`: a fine-tuned classifier's top-k classes for a folder of images or a dataset split,
// as JSON + CSV; the job is src/eval/predict.ts.
import { Options, defineOptions, MAX_WORKERS } from '../util/options';
import { IMAGE_SOURCE_OPTIONS, RUN_OPTIONS, VERIFY_OPTIONS, checkImageSource, checkImageSourcePaths, imageSetJobFrom } from '../eval/options';
import { predict, predictCsvPath } from '../eval/predict';
import { resolvePredictor } from '../eval/classifier-source';
import { checkOutputName, checkOutputs, encoderFiles } from '../io/outputs';
import { IMAGE_INPUT_OPTIONS } from '../data/options';
import { precisionOption, checkPrecision } from '../run/precision';
import { checkDevice } from '../run/device';
import { abortOnStopSignals } from '../run/signals';
import { quotedPath } from '../util/printable';
import { defineCommand } from './command';

export const PREDICT_OPTIONS = defineOptions({
  checkpoint: {
    type: 'string',
    required: true,
    help: 'fine-tuning run folder (newest valid checkpoint), one of its checkpoint folders (e.g. RUN/checkpoints/best), or a linprobe --out-dir',
  },
  encoder: {
    type: 'string',
    help: "a linear probe's encoder when it is no longer where linprobe.json says (it must have the SHA-256 the probe recorded)",
  },
  ...VERIFY_OPTIONS,
  ...IMAGE_SOURCE_OPTIONS,
  topK: { type: 'int', default: 5, min: 1, help: 'classes listed per image, most probable first (at most the number of classes)' },
  batchSize: { type: 'int', default: 256, min: 1, help: 'images per batch' },
  precision: precisionOption('classifier precision (bf16/fp16 autocast); auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)'),
  numWorkers: { type: 'int', min: 0, max: MAX_WORKERS, help: 'decoding worker threads (default: one per core but one, at most 8; 0 = on the main thread)' },
  ...IMAGE_INPUT_OPTIONS,
  ...RUN_OPTIONS,
  out: { type: 'string', default: 'runs/predict/predictions.json', help: 'output .json (the CSV goes beside it as .csv)' },
  overwrite: { type: 'boolean', default: false, help: 'replace an existing --out (and its .csv); never the checkpoint read' },
});

export type PredictCommandOptions = Options<typeof PREDICT_OPTIONS>;

function validatePredict(o: PredictCommandOptions): void {
  checkImageSource(o);
  checkOutputName(o.out, '.json', 'the CSV goes beside it');
  checkDevice(o.device);
  checkPrecision(o.precision, o.device);
}

function preflight(o: PredictCommandOptions): void {
  checkImageSourcePaths(o);
  const src = resolvePredictor(o.checkpoint, o); // a missing or wrong checkpoint is reported before any image is read
  const inputs = src.kind === 'linprobe' ? [src.weights, ...encoderFiles(src.encoder.weights)] : [src.weights];
  checkOutputs([o.out, predictCsvPath(o.out)], { overwrite: o.overwrite, inputs });
}

export const predictCommand = defineCommand({
  summary: "a fine-tuned classifier's (or a linear probe's) top-k classes for a folder of images (or one image) or a dataset, as JSON and CSV",
  usage: 'semaim predict --checkpoint FINETUNE_RUN_DIR|LINPROBE_DIR (--images DIR|FILE | --dataset NAME) [options]',
  description:
    'Runs the classifier of a `semaim finetune` run (or the encoder and probe of a `semaim linprobe` run) over\n' +
    "every image with the evaluation preprocessing (resize + centre crop + normalise, as the run's test accuracy)\n" +
    "and writes <out>.json (checkpoint, class names, each image's top-k classes with their probabilities, the\n" +
    'skipped unreadable images, and the accuracy when the dataset is labelled) and <out>.csv (one row per image).',
  options: PREDICT_OPTIONS,
  validate: validatePredict,
  preflight,
  run: async (o) => {
    const r = await abortOnStopSignals((signal) =>
      predict({ ...imageSetJobFrom(o), checkpoint: o.checkpoint, encoder: o.encoder, out: o.out, topK: o.topK, signal }),
    );
    const acc = r.accuracy ? `: top-1 ${(100 * r.accuracy.top1).toFixed(2)} %, top-5 ${(100 * r.accuracy.top5).toFixed(2)} %` : '';
    process.stdout.write(
      `predicted ${r.count} image${r.count === 1 ? '' : 's'}${r.skipped ? ` (${r.skipped} skipped)` : ''} in ${r.seconds.toFixed(1)} s${acc}\n` +
        `  wrote ${quotedPath(r.path)}\n  and   ${quotedPath(r.csvPath)}\n`,
    );
    return 0;
  },
});
