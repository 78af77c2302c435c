// `semaim embed`: features of a folder of images or a dataset, from a checkpoint or an exported
// encoder, into one safetensors file (+ the image list as JSON); the job is src/eval/embed.ts.
import { Options, defineOptions, MAX_WORKERS } from '../util/options';
import { IMAGE_SOURCE_OPTIONS, RUN_OPTIONS, VERIFY_OPTIONS, checkImageSource, checkImageSourcePaths, imageSetJobFrom } from '../eval/options';
import { EMBED_DTYPES, EMBED_POOLINGS, EmbedOptions, embed, embedListPath } from '../eval/embed';
import { checkOutputName, checkOutputs, encoderFiles } from '../io/outputs';
import { IMAGE_INPUT_OPTIONS } from '../data/options';
import { precisionOption, checkPrecision } from '../run/precision';
import { abortOnStopSignals } from '../run/signals';
import { quotedPath } from '../util/printable';
import { checkDevice } from '../run/device';
import { resolveEncoder } from '../semaim';
import { defineCommand } from './command';
import { runDataParallel } from './data-parallel';
import { LAUNCH_OPTIONS } from '../dist/launch';

export const EMBED_OPTIONS = defineOptions({
  checkpoint: {
    type: 'string',
    required: true,
    help: 'pre-training run folder (newest valid checkpoint), checkpoint folder, or an encoder file (.safetensors, or torch.save .pth)',
  },
  ...VERIFY_OPTIONS,
  ...IMAGE_SOURCE_OPTIONS,
  pooling: {
    type: 'string',
    default: 'cls',
    choices: EMBED_POOLINGS,
    help: "[CLS] token, mean of the patch tokens, or all tokens [1 + P, D] (after the final norm); 'gap' = the authors' --global_pool (mean before the final norm, LayerNorm without weights)",
  },
  dtype: { type: 'string', default: 'float32', choices: EMBED_DTYPES, help: 'stored type of the features (float16 halves the file)' },
  batchSize: { type: 'int', default: 256, min: 1, help: 'images per batch and process (256, as the evaluations, gives bit-equal features)' },
  precision: precisionOption('encoder precision (bf16/fp16 autocast); auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)'),
  numWorkers: { type: 'int', min: 0, max: MAX_WORKERS, help: 'decoding worker threads (default: one per core but one, at most 8; 0 = on the main thread)' },
  ...IMAGE_INPUT_OPTIONS,
  ...RUN_OPTIONS,
  out: { type: 'string', default: 'runs/embed/features.safetensors', help: 'output .safetensors (the image list goes beside it as .json)' },
  overwrite: { type: 'boolean', default: false, help: 'replace an existing --out (and its .json); never the encoder read' },
  // data-parallel: the ranks share the images, rank 0 writes (docs/DISTRIBUTED.md)
  ...LAUNCH_OPTIONS,
});

export type EmbedCommandOptions = Options<typeof EMBED_OPTIONS>;

/** The job's options from the command's. */
export function embedOptionsFrom(o: EmbedCommandOptions): EmbedOptions {
  return { ...imageSetJobFrom(o), checkpoint: o.checkpoint, out: o.out, pooling: o.pooling, dtype: o.dtype };
}

function validateEmbed(o: EmbedCommandOptions): void {
  checkImageSource(o);
  checkOutputName(o.out, '.safetensors', 'the image list goes beside it as .json');
  checkDevice(o.device);
  checkPrecision(o.precision, o.device);
}

function preflight(o: EmbedCommandOptions): void {
  checkImageSourcePaths(o);
  const encoder = resolveEncoder(o.checkpoint, o); // a missing encoder is reported before any image is read
  checkOutputs([o.out, embedListPath(o.out)], { overwrite: o.overwrite, inputs: encoderFiles(encoder.weights) });
}

export const embedCommand = defineCommand({
  summary: 'features of a folder of images (or one image) or a dataset ([CLS], mean or all tokens) as safetensors',
  usage: 'semaim embed --checkpoint RUN_DIR|ENCODER.safetensors|ENCODER.pth (--images DIR|FILE | --dataset NAME) [options]',
  description:
    'Runs the encoder over every image with the evaluation preprocessing (resize + centre crop + normalise, as k-NN\n' +
    'and the linear probe) and writes the features to one safetensors file, batch by batch: features [n, D]\n' +
    '(or [n, 1 + P, D] with --pooling all), indices and, for labelled data, labels; beside it <name>.json lists\n' +
    'the images in row order (with labels) and the skipped unreadable ones.',
  options: EMBED_OPTIONS,
  validate: validateEmbed,
  preflight,
  run: (o) =>
    runDataParallel(o, { command: 'embed', table: EMBED_OPTIONS }, async (group) => {
      const r = await abortOnStopSignals((signal) => embed({ ...embedOptionsFrom(o), group, signal }));
      if (r) {
        process.stdout.write(
          `embedded ${r.count} image${r.count === 1 ? '' : 's'}${r.skipped ? ` (${r.skipped} skipped)` : ''} in ${r.seconds.toFixed(1)} s: features [${r.shape.join(', ')}]\n` +
            `  wrote ${quotedPath(r.path)}\n  and   ${quotedPath(r.listPath)}\n`,
        );
      }
      return 0;
    }),
});
