// Options of `semaim segprobe` and the one function that turns them into a typed configuration
// (checked before any work).
import { OptionError, Options, defineOptions, jobOptions, MAX_THREADS, MAX_THREADS_IS, SEED_RANGE } from '../util/options';
import { peakLr } from '../optim/peak-lr';
import { precisionOption, checkPrecision, type Precision } from '../run/precision';
import { checkDevice } from '../run/device';
import type * as torch from '../torch';
import type { SyntheticSegClasses } from '../data/sources/seg-synthetic';
import type { SegAugment } from '../data/seg-streams';
import { defaultSegLr, type SegOptimizer } from './segprobe';
import { LAUNCH_OPTIONS } from '../dist/launch';
import { checkBatchSplits } from './options';
import { IMAGE_INPUT_OPTIONS, imageInputOptions, type ImageInputOptions } from '../data/options';

/** The data options (also offered by `semaim ablate --eval segprobe`). */
export const SEG_DATA_OPTIONS = defineOptions({
  segClasses: {
    type: 'string',
    default: 'shapes',
    choices: ['shapes', 'object'],
    help: "synthetic objects: 'shapes' = background + one class per shape (11), 'object' = background + object (2)",
  },
  numClasses: { type: 'int', min: 2, max: 255, help: 'seg-folder without classes.txt: the number of classes (mask values 0..N-1, 255 = ignore)' },
  reduceZeroLabel: { type: 'boolean', default: false, help: "seg-folder: ADE20K's convention, label 0 becomes ignore and label k becomes k-1" },
});

/** The probe's training options. */
export const SEG_PROBE_OPTIONS = defineOptions({
  blocks: {
    type: 'string',
    default: 'last',
    help: "patch tokens of: 'last' (final block, after the final norm), 'lastN' (e.g. last4, concatenated, each through the final norm) or 0-based block indices '1,3'",
  },
  epochs: { type: 'number', default: 20, min: 0.001, help: 'training epochs' },
  batchSize: { type: 'int', default: 16, min: 1, help: 'images per step, of all processes together' },
  optimizer: { type: 'string', default: 'adamw', choices: ['adamw', 'sgd'], help: 'AdamW (β 0.9, 0.999) or SGD with momentum' },
  lr: { type: 'number', min: 0, help: 'peak lr (default 0.1 for AdamW, 1 for SGD: a linear head on normalised features wants large steps)' },
  minLr: { type: 'number', default: 0, min: 0, help: 'final lr of the cosine schedule' },
  warmupEpochs: { type: 'number', default: 0, min: 0, help: 'linear warm-up epochs (below --epochs)' },
  weightDecay: { type: 'number', default: 1e-4, min: 0, help: 'weight decay' },
  momentum: { type: 'number', default: 0.9, min: 0, max: 1, help: 'SGD momentum' },
  augment: {
    type: 'string',
    default: 'none',
    choices: ['none', 'crop-flip'],
    help: "'none': features extracted once and cached; 'crop-flip': random resized crop (scale 0.5-1) + flip of image and mask, the encoder runs on every batch",
  },
});

/**
 * The option table of `semaim segprobe`: the encoder, the training of the linear segmentation head, the data with masks, evaluation
 * and output; {@link readSegprobeConfig} turns resolved values into the {@link SegprobeConfig} {@link runSegprobe} takes.
 */
export const SEGPROBE_OPTIONS = defineOptions({
  checkpoint: {
    type: 'string',
    required: true,
    help: 'pre-training run folder (newest valid checkpoint), checkpoint folder, or an encoder file (.safetensors, or torch.save .pth)',
  },
  verify: {
    type: 'boolean',
    default: true,
    help: "check a checkpoint folder's files against the SHA-256 in its state.json before using it (--no-verify uses a corrupted one anyway)",
  },
  init: {
    type: 'string',
    default: 'pretrained',
    choices: ['pretrained', 'random'],
    help: "'random': the checkpoint's architecture freshly initialised from --seed (baseline)",
  },
  ...SEG_PROBE_OPTIONS,
  dataset: {
    type: 'string',
    default: 'synthetic',
    choices: ['synthetic', 'seg-folder'],
    help: "'synthetic' (built-in objects with masks) or 'seg-folder' (--data-path with {train,test}/images and {train,test}/masks)",
  },
  dataPath: { type: 'string', help: 'seg-folder: the root folder' },
  ...SEG_DATA_OPTIONS,
  trainLimit: { type: 'int', min: 2, help: 'use at most this many training images (synthetic: default 5000; folder: a seeded subset)' },
  testLimit: { type: 'int', min: 1, help: 'use at most this many test images (synthetic: default 1000; folder: a seeded subset)' },
  ...IMAGE_INPUT_OPTIONS,
  evalBatchSize: { type: 'int', default: 64, min: 1, help: 'images per batch and process when extracting features and predicting' },
  precision: precisionOption('encoder precision (autocast); auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)'),
  evalEvery: { type: 'int', default: 0, min: 0, help: 'report test mIoU every N epochs (0: only at the end)' },
  figureImages: { type: 'int', default: 8, min: 0, help: 'test images drawn in segprobe.png (0: no figure)' },
  seed: { type: 'int', ...SEED_RANGE, default: 0, help: "random seed (the head's initialisation and shuffling; also the synthetic objects' image streams)" },
  device: { type: 'string', default: 'cpu', help: "'cpu', 'cuda' or 'cuda:N'" },
  threads: { type: 'int', min: 1, max: MAX_THREADS, maxIs: MAX_THREADS_IS, help: 'CPU threads for libtorch (default: all cores)' },
  outDir: { type: 'string', default: 'runs/segprobe', help: 'output folder (segprobe.json, segprobe.png, seg-head.safetensors)' },
  // data-parallel: each process encodes its share of the images (docs/DISTRIBUTED.md)
  ...LAUNCH_OPTIONS,
});

/** The probe's settings, typed. */
export interface SegprobeSettings {
  blocks: string;
  epochs: number;
  batchSize: number;
  optimizer: SegOptimizer;
  lr: number;
  minLr: number;
  warmupEpochs: number;
  weightDecay: number;
  momentum: number;
  augment: SegAugment;
}

/**
 * The segmentation data a probe reads (SegprobeConfig.data): the dataset ('synthetic'
 * or 'seg-folder'), its path, classes and label convention, and the split limits.
 */
export interface SegDataSettings {
  dataset: string;
  dataPath?: string;
  segClasses: SyntheticSegClasses;
  numClasses?: number;
  reduceZeroLabel: boolean;
  trainLimit?: number;
  testLimit?: number;
  /** --max-image-pixels and --exif-orientation for the seg-folder's images and masks. */
  imageInput?: ImageInputOptions;
}

/** The typed configuration of a segmentation probe run: made by {@link readSegprobeConfig} from the command's options, taken by {@link runSegprobe}. */
export interface SegprobeConfig {
  checkpoint: string;
  verify: boolean;
  init: 'pretrained' | 'random';
  probe: SegprobeSettings;
  data: SegDataSettings;
  evalBatchSize: number;
  precision: Precision;
  evalEvery: number;
  figureImages: number;
  seed: number;
  device: torch.Device;
  threads?: number;
  outDir: string;
}

/**
 * The resolved options of `semaim segprobe` ({@link SEGPROBE_OPTIONS}), e.g. from
 * resolveOptions(SEGPROBE_OPTIONS, { ... }), as {@link readSegprobeConfig} reads them.
 */
export type SegprobeCommandOptions = Options<typeof SEGPROBE_OPTIONS>;

/** The probe's settings from resolved options (SEG_PROBE_OPTIONS keys). */
export function readSegprobeSettings(o: Options<typeof SEG_PROBE_OPTIONS>): SegprobeSettings {
  const s: SegprobeSettings = {
    blocks: o.blocks,
    epochs: o.epochs,
    batchSize: o.batchSize,
    optimizer: o.optimizer,
    lr: o.lr ?? defaultSegLr(o.optimizer),
    minLr: o.minLr,
    warmupEpochs: o.warmupEpochs,
    weightDecay: o.weightDecay,
    momentum: o.momentum,
    augment: o.augment,
  };
  if (!/^last\d*$|^\d+(\s*,\s*\d+)*$/.test(s.blocks.trim()))
    throw new OptionError('blocks', `expected 'last', 'lastN' or 0-based block indices such as '1,3', got '${s.blocks}'`);
  if (/^last0+$/.test(s.blocks.trim())) throw new OptionError('blocks', `'${s.blocks}' names no block (lastN takes N >= 1)`);
  if (s.warmupEpochs >= s.epochs) throw new OptionError('warmupEpochs', `(${s.warmupEpochs}) must be below --epochs (${s.epochs})`);
  // AdamW takes no momentum (a value given as the default cannot be told apart from none given, and changes nothing)
  if (s.optimizer === 'adamw' && s.momentum !== SEG_PROBE_OPTIONS.momentum.default)
    throw new OptionError('momentum', "has no effect with --optimizer adamw (its betas are 0.9, 0.999): it is SGD's (--optimizer sgd)");
  // (no base lr: the batch does not scale it; AdamW's betas are (0.9, 0.999), segprobe.ts)
  peakLr(s, 1, s.optimizer === 'adamw' ? { beta1: 0.9 } : undefined);
  return s;
}

/**
 * Refuses the SEG_DATA_OPTIONS, and a data path, that do nothing with the dataset chosen (they were ignored silently:
 * `segprobe --data-path ROOT` without `--dataset seg-folder` scored the synthetic objects); `dataPathKey` names the data path's option.
 */
export function checkSegDataOptions(
  d: Pick<SegDataSettings, 'dataset' | 'dataPath' | 'segClasses' | 'numClasses' | 'reduceZeroLabel'>,
  dataPathKey = 'dataPath',
): void {
  if (d.dataset === 'synthetic' && d.dataPath !== undefined)
    throw new OptionError(dataPathKey, "has no effect with dataset 'synthetic': its images are generated (give --dataset seg-folder to read a folder)");
  if (d.dataset === 'synthetic' && d.numClasses !== undefined)
    throw new OptionError('numClasses', "has no effect with dataset 'synthetic': its classes come from --seg-classes (shapes: 11, object: 2)");
  if (d.dataset === 'synthetic' && d.reduceZeroLabel)
    throw new OptionError('reduceZeroLabel', "has no effect with dataset 'synthetic': its label 0 is the background, a class");
  if (d.dataset !== 'synthetic' && d.segClasses !== 'shapes')
    throw new OptionError('segClasses', `has no effect with dataset '${d.dataset}': its classes come from its masks (classes.txt or --num-classes)`);
}

/** Data settings from resolved options (SEG_DATA_OPTIONS plus dataset, dataPath, limits). */
export function readSegDataSettings(o: SegDataSettings): SegDataSettings {
  const d: SegDataSettings = {
    dataset: o.dataset,
    dataPath: o.dataPath,
    segClasses: o.segClasses,
    numClasses: o.numClasses,
    reduceZeroLabel: o.reduceZeroLabel,
    trainLimit: o.trainLimit,
    testLimit: o.testLimit,
    imageInput: o.imageInput,
  };
  checkSegDataOptions(d);
  if (d.dataset === 'seg-folder' && !d.dataPath)
    throw new OptionError('dataPath', "dataset 'seg-folder' needs --data-path (a folder with train/ and test/, each holding images/ and masks/)");
  return d;
}

/**
 * With --augment crop-flip each of the processes encodes batch / processes images of every step's batch:
 * refuses a batch they cannot split (the cached probe takes any batch).
 */
export function checkSegprobeProcesses(o: { augment: string; batchSize: number }, processes: number): void {
  if (o.augment !== 'none') checkBatchSplits(o.batchSize, processes, `--augment ${o.augment}`);
}

/**
 * The checked configuration {@link runSegprobe} takes, from SEGPROBE_OPTIONS' values (a plain object is resolved here, as the jobs resolve theirs; lr, when not given: 0.1 for AdamW, 1 for SGD). Throws
 * an OptionError naming the bad option (device, precision, blocks, warm-up, lr, data options, or a batch the processes cannot split).
 */
export function readSegprobeConfig(o: SegprobeCommandOptions): SegprobeConfig {
  // resolved again, as the jobs resolve their options: a plain object was read as if resolved (its misspelt
  // `epoch` ignored, and a missing device refused as "must be cpu, cuda or cuda:N, got 'undefined'")
  o = jobOptions(SEGPROBE_OPTIONS, o);
  const device = checkDevice(o.device);
  checkPrecision(o.precision, o.device);
  checkSegprobeProcesses(o, o.nprocPerNode * o.nnodes);
  return {
    checkpoint: o.checkpoint,
    verify: o.verify,
    init: o.init,
    probe: readSegprobeSettings(o),
    data: readSegDataSettings({ ...o, imageInput: imageInputOptions(o) }),
    evalBatchSize: o.evalBatchSize,
    precision: o.precision,
    evalEvery: o.evalEvery,
    figureImages: o.figureImages,
    seed: o.seed,
    device,
    threads: o.threads,
    outDir: o.outDir,
  };
}
