// Option tables of `semaim knn | linprobe | finetune | ablate` (defaults: docs/METHOD.md §6) and the checks
// that need more than one option. Everything is validated before any work starts.
import { OptionError, Options, defineOptions, MAX_THREADS, MAX_THREADS_IS, MAX_WORKERS, SEED_RANGE } from '../util/options';
import { FLOAT32_MAX, peakLr } from '../optim/peak-lr';
import { parseKs } from './knn';
import { precisionOption, checkPrecision } from '../run/precision';
import { checkDevice } from '../run/device';
import { IMAGE_INPUT_OPTIONS, ImageInputOptions, checkDataPath, checkSyntheticDataPath, imageInputOptions, syntheticIgnoresDataPath } from '../data/options';
import type { ImageSetJob } from './embed';
import { DATASETS } from '../data/factories';
import { statSync } from 'node:fs';
import { GRAD_SYNC_OPTIONS, LAUNCH_OPTIONS, checkGradSync } from '../dist/launch';

/** The images `semaim embed` and `semaim predict` read: a folder or an image file, or a split of a dataset as the evaluations open it. */
export const IMAGE_SOURCE_OPTIONS = defineOptions({
  images: { type: 'string', help: 'a folder of images, searched recursively, or one image file (no labels); or give --dataset' },
  dataset: {
    type: 'string',
    // openDataset's: tar shards are streamed, not opened by index
    choices: DATASETS.filter((d) => d !== 'shards'),
    help: 'a dataset as the other commands name it (labelled data adds labels; not shards, which are streamed: give the folder they were packed from); or give --images',
  },
  dataPath: { type: 'string', help: 'dataset location (cifar10: folder or .tar.gz; folder: root with train/ and test/ (or val/) class folders)' },
  split: { type: 'string', default: 'test', choices: ['train', 'test'], help: 'split of --dataset' },
  limit: {
    type: 'int',
    min: 1,
    help: "at most this many images: the subset the evaluations' --test-limit / --train-limit take (seeded, class-balanced; synthetic: the first N)",
  },
});

type ImageSource = { images?: string; dataset?: string; dataPath?: string; split: string };

type ImageSetCommandOptions = ImageInputOptions &
  Required<Pick<ImageSetJob, 'split' | 'seed' | 'batchSize' | 'device' | 'precision' | 'verify' | 'overwrite'>> &
  Pick<ImageSetJob, 'images' | 'dataset' | 'dataPath' | 'limit' | 'threads' | 'numWorkers'>;

/** The options of a job over an image set (embed, predict) from its command's. */
export function imageSetJobFrom(o: ImageSetCommandOptions): ImageSetJob {
  return {
    images: o.images,
    dataset: o.dataset,
    dataPath: o.dataPath,
    split: o.split,
    limit: o.limit,
    seed: o.seed,
    batchSize: o.batchSize,
    device: o.device,
    precision: o.precision,
    threads: o.threads,
    numWorkers: o.numWorkers,
    imageInput: imageInputOptions(o),
    verify: o.verify,
    overwrite: o.overwrite,
  };
}

/** The image source's options together (before any work). */
export function checkImageSource(o: ImageSource): void {
  if (!o.images && !o.dataset) throw new OptionError('images', 'give a folder of images or an image file (--images DIR|FILE) or a dataset (--dataset NAME)');
  if (o.images && o.dataset) throw new OptionError('images', '--images and --dataset exclude each other');
  if (o.images && o.dataPath) throw new OptionError('dataPath', '--data-path goes with --dataset; --images names the folder or file itself');
  // the default's value given explicitly cannot be told apart, and changes nothing
  if (o.images && o.split !== 'test') throw new OptionError('split', '--split goes with --dataset; --images reads every image of the folder (or the one file)');
  checkDatasetPath(o);
}

/** --dataset folder needs a --data-path, and synthetic data (generated) takes none. */
function checkDatasetPath(o: { dataset?: string; dataPath?: string }): void {
  if (o.dataset === 'folder' && !o.dataPath) throw new OptionError('dataPath', '--dataset folder needs --data-path');
  checkSyntheticDataPath(o);
}

/** The image source's files exist (the preflight: before any model is loaded). */
export function checkImageSourcePaths(o: ImageSource): void {
  checkDataPath(o, [o.split as 'train' | 'test']);
  if (!o.images) return;
  const stat = statSync(o.images, { throwIfNoEntry: false });
  if (!stat) throw new OptionError('images', `${o.images} does not exist`);
  if (!stat.isDirectory() && !stat.isFile()) throw new OptionError('images', `${o.images} is neither a folder nor a file`);
}

/**
 * The labelled-data options of the evaluation commands (dataset, data path, train/test limits, loader
 * workers, image input); part of KNN_OPTIONS, LINPROBE_OPTIONS, FINETUNE_OPTIONS and `semaim ablate`'s table.
 */
export const DATA_OPTIONS = defineOptions({
  // no choices: a library caller's own DataFactories may name others; an unknown name is a DataError when opened
  // (the commands, over the real datasets, check it against their labelled ones: src/cli/eval-commands.ts)
  dataset: { type: 'string', default: 'cifar10', help: 'labelled dataset (flat, images without labels, is for pretrain and embed)' },
  dataPath: {
    type: 'string',
    path: true,
    noEffect: syntheticIgnoresDataPath,
    help: "dataset location (cifar10: folder or .tar.gz; folder: root with train/ and test/ (or val/) class folders; shards: tar shards with {split} for train and test, e.g. 'dir/{split}' or 'dir/{split}/shard-{000000..000127}.tar', or a folder holding train/ and test/)",
  },
  trainLimit: {
    type: 'int',
    min: 1,
    help: 'use at most this many training images (a seeded, class-balanced subset; synthetic: the first N, classes at random)',
  },
  testLimit: { type: 'int', min: 1, help: 'use at most this many test images (a seeded, class-balanced subset; synthetic: the first N, classes at random)' },
  numWorkers: {
    mayChangeOnResume: true,
    type: 'int',
    min: 0,
    max: MAX_WORKERS,
    help: 'decoding/augmentation worker threads (default: one per core but one, at most 8; 0 = on the main thread)',
  },
  ...IMAGE_INPUT_OPTIONS,
});

/**
 * The --verify / --no-verify option of the commands that read a checkpoint: check a
 * checkpoint folder's files against the SHA-256 in its state.json first (default true).
 */
export const VERIFY_OPTIONS = defineOptions({
  verify: {
    type: 'boolean',
    default: true,
    mayChangeOnResume: true,
    help: "check a checkpoint folder's files against the SHA-256 in its state.json before using it (--no-verify uses a corrupted one anyway)",
  },
});

/** The --seed, --device and --threads options the evaluation commands, embed, predict and ablate share (defaults: 0, 'cpu', all cores). */
export const RUN_OPTIONS = defineOptions({
  seed: { type: 'int', ...SEED_RANGE, default: 0, help: 'random seed' },
  device: { mayChangeOnResume: true, type: 'string', default: 'cpu', help: "'cpu', 'cuda' or 'cuda:N'" },
  threads: { mayChangeOnResume: true, type: 'int', min: 1, max: MAX_THREADS, maxIs: MAX_THREADS_IS, help: 'CPU threads for libtorch (default: all cores)' },
});

const FEATURE_OPTIONS = defineOptions({
  pooling: {
    type: 'string',
    default: 'cls',
    choices: ['cls', 'mean', 'gap'],
    help: "feature: the [CLS] token or the mean of the patch tokens (after the final norm); 'gap' = the authors' --global_pool: the mean of the patch tokens before the final norm, through a LayerNorm without weights",
  },
  evalBatchSize: { type: 'int', default: 256, min: 1, help: 'images per batch and process when extracting features' },
  precision: precisionOption(
    'encoder precision while extracting features (bf16/fp16 autocast); auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)',
  ),
});

const KNN_ONLY = defineOptions({
  k: { type: 'string', default: '10,20,30', help: 'neighbour counts to report, comma-separated (one top-max(k) pass)' },
  temperature: { type: 'number', default: 0.07, min: 1e-6, help: 'vote weight exp(cos / T)' },
  chunkSize: { type: 'int', default: 256, min: 1, help: 'test rows per similarity block ([chunk, nTrain] floats in memory)' },
});

const LINPROBE_ONLY = defineOptions({
  epochs: { type: 'number', default: 90, min: 0.001, help: 'training epochs' },
  batchSize: {
    type: 'int',
    default: 256,
    min: 2,
    help: 'training batch, of all processes together (MAE: 16384 over 64 GPUs; SemAIM authors: 4096, docs/METHOD.md §6.3)',
  },
  blr: { type: 'number', default: 0.1, min: 0, help: 'base lr; lr = blr × batch / 256' },
  lr: { type: 'number', min: 0, help: 'absolute lr (overrides --blr)' },
  minLr: { type: 'number', default: 0, min: 0, help: 'final lr of the cosine schedule' },
  warmupEpochs: { type: 'number', default: 0, min: 0, help: 'linear warm-up epochs (SemAIM authors: none; MAE: 10)' },
  weightDecay: { type: 'number', default: 0, min: 0, help: 'weight decay' },
  momentum: { type: 'number', default: 0.9, min: 0, max: 1, help: 'SGD/LARS momentum' },
  optimizer: { type: 'string', default: 'sgd', choices: ['sgd', 'lars'], help: 'SGD (SemAIM authors) or LARS (MAE)' },
  cacheFeatures: {
    type: 'boolean',
    default: true,
    help: 'extract features once (no augmentation) and train on them; --no-cache-features runs the encoder on every augmented batch (--augment)',
  },
  augment: {
    type: 'string',
    default: 'resize-crop-flip',
    choices: ['resize-crop-flip', 'crop-flip'],
    help: "training augmentation with --no-cache-features: 'resize-crop-flip' = Resize + RandomCrop + flip (SemAIM authors), 'crop-flip' = RandomResizedCrop 0.08-1 + flip (MAE's: its util/crop.py single-draw crop)",
  },
  evalEvery: {
    type: 'int',
    default: 1,
    min: 0,
    help: "test accuracy every N epochs (0: only at the end); the best of them is details.bestTop1, the number the authors' script prints",
  },
});

/**
 * The option table of `semaim knn` and {@link runKnn}: the encoder, k values and
 * temperature, feature extraction, data, device and output folder, with their defaults.
 */
export const KNN_OPTIONS = defineOptions({
  checkpoint: {
    type: 'string',
    required: true,
    help: 'pre-training run folder (newest valid checkpoint), checkpoint folder, or an encoder file (.safetensors, or torch.save .pth)',
  },
  ...VERIFY_OPTIONS,
  ...KNN_ONLY,
  ...FEATURE_OPTIONS,
  ...DATA_OPTIONS,
  ...RUN_OPTIONS,
  outDir: { type: 'string', default: 'runs/knn', help: 'output folder (knn.json)' },
  // data-parallel feature extraction (docs/DISTRIBUTED.md)
  ...LAUNCH_OPTIONS,
});

/**
 * The option table of `semaim linprobe` and {@link runLinprobe}: the encoder, the probe's recipe
 * (SGD, blr 0.1, 90 epochs by default), feature extraction, data, device and output folder.
 */
export const LINPROBE_OPTIONS = defineOptions({
  checkpoint: { type: 'string', required: true, help: 'pre-training run folder, checkpoint folder, or an encoder file (.safetensors, or torch.save .pth)' },
  ...VERIFY_OPTIONS,
  ...LINPROBE_ONLY,
  ...FEATURE_OPTIONS,
  ...DATA_OPTIONS,
  ...RUN_OPTIONS,
  outDir: { type: 'string', default: 'runs/linprobe', help: 'output folder (linprobe.json, probe.safetensors)' },
  // data-parallel feature extraction (docs/DISTRIBUTED.md)
  ...LAUNCH_OPTIONS,
});

/**
 * The option table of `semaim finetune`, {@link runFinetune} and {@link finetune}: MAE's fine-tuning with the settings of docs/METHOD.md §6.2
 * (AdamW, layer decay 0.65, drop-path 0.1, mixup/cutmix, label smoothing), the data, checkpoints and data-parallel settings, with their defaults.
 */
export const FINETUNE_OPTIONS = defineOptions({
  checkpoint: {
    type: 'string',
    required: true,
    path: true,
    help: 'pre-training run folder, checkpoint folder, or an encoder file (.safetensors, or torch.save .pth)',
  },
  ...VERIFY_OPTIONS,
  init: { type: 'string', default: 'pretrained', choices: ['pretrained', 'random'], help: "'random': the checkpoint's architecture from scratch (baseline)" },
  pool: { type: 'string', default: 'avg', choices: ['avg', 'cls'], help: "'avg': mean of patch tokens → fc_norm (MAE); 'cls': norm → [CLS]" },
  dropPath: { type: 'number', default: 0.1, min: 0, max: 0.99, help: 'stochastic depth rate (rises linearly over the blocks)' },
  // optimisation
  epochs: { mayChangeOnResume: true, type: 'number', default: 100, min: 0.001, help: 'training epochs' },
  maxSteps: { mayChangeOnResume: true, type: 'int', min: 1, help: 'stop after this many optimiser steps (budget cap)' },
  batchSize: { type: 'int', default: 64, min: 2, help: 'images per micro-batch and process (effective batch = batch × accum × processes)' },
  accumIter: { type: 'int', default: 1, min: 1, help: 'gradient accumulation steps' },
  blr: { type: 'number', default: 5e-4, min: 0, help: 'base lr; lr = blr × effective batch / 256' },
  lr: { type: 'number', min: 0, help: 'absolute lr (overrides --blr)' },
  minLr: { type: 'number', default: 1e-6, min: 0, help: 'final lr of the cosine schedule' },
  warmupEpochs: { type: 'number', default: 20, min: 0, help: 'linear warm-up epochs' },
  layerDecay: { type: 'number', default: 0.65, min: 0, max: 1, help: 'layer-wise lr decay: block i gets lr × decay^(depth − i)' },
  weightDecay: { type: 'number', default: 0.05, min: 0, help: 'AdamW weight decay (not on biases, norms, 1-D params, cls_token, pos_embed)' },
  beta1: { type: 'number', default: 0.9, min: 0, below: 1, help: 'AdamW beta1' },
  beta2: { type: 'number', default: 0.999, min: 0, below: 1, help: 'AdamW beta2' },
  clipGrad: { type: 'number', default: 0, min: 0, max: FLOAT32_MAX, maxIs: 'the largest float32', help: 'global gradient-norm clip (0 = off, as MAE)' },
  // regularisation
  augment: {
    type: 'string',
    default: 'finetune',
    choices: ['finetune', 'crop-flip', 'none'],
    help: "data augmentation: 'finetune' = crop, flip, RandAugment m9-mstd0.5, random erasing 0.25",
  },
  mixup: { type: 'number', default: 0.8, min: 0, help: 'mixup Beta(α, α) (0 = off)' },
  cutmix: { type: 'number', default: 1.0, min: 0, help: 'cutmix Beta(α, α) (0 = off)' },
  // the batch mixing (timm's Mixup) runs only with --mixup or --cutmix on, and picks between them only with both
  mixupProb: {
    type: 'number',
    default: 1,
    min: 0,
    max: 1,
    noEffect: (o) => (o.mixup === 0 && o.cutmix === 0 ? 'with --mixup 0 and --cutmix 0: no batch is mixed' : undefined),
    help: 'probability of mixing a batch',
  },
  mixupSwitchProb: {
    type: 'number',
    default: 0.5,
    min: 0,
    max: 1,
    noEffect: (o) =>
      (o.mixup as number) > 0 && (o.cutmix as number) > 0
        ? undefined
        : 'unless both --mixup and --cutmix are above 0: it picks cutmix rather than mixup for a batch',
    help: 'probability of cutmix rather than mixup when both are on',
  },
  smoothing: { type: 'number', default: 0.1, min: 0, max: 0.99, help: 'label smoothing' },
  ema: { type: 'boolean', default: false, help: 'keep (and evaluate) an EMA copy of the model' },
  emaDecay: { type: 'number', default: 0.9999, min: 0, max: 1, noEffect: (o) => (o.ema ? undefined : 'without --ema'), help: 'EMA decay per step' },
  precision: precisionOption('mixed precision (fp16 with loss scaling, CUDA only); auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)'),
  evalBatchSize: { mayChangeOnResume: true, type: 'int', default: 256, min: 1, help: 'images per evaluation batch and process' },
  ...DATA_OPTIONS,
  ...RUN_OPTIONS,
  // run
  outDir: { mayChangeOnResume: true, type: 'string', default: 'runs/finetune', help: 'output folder (checkpoints, metrics, finetune.json)' },
  evalEvery: { mayChangeOnResume: true, type: 'int', default: 1, min: 0, help: 'evaluate on the test set every N epochs (0: only at the end)' },
  checkpointEvery: { mayChangeOnResume: true, type: 'int', default: 500, min: 1, help: 'save a checkpoint every N steps (and at each epoch end)' },
  keepLast: { mayChangeOnResume: true, type: 'int', default: 2, min: 1, help: 'checkpoints to keep (plus the best)' },
  logEvery: { mayChangeOnResume: true, type: 'int', default: 10, min: 1, help: 'read the loss from the device every N steps' },
  resume: { mayChangeOnResume: true, type: 'boolean', default: true, help: 'continue from the latest checkpoint in --out-dir if there is one' },
  // data-parallel (docs/DISTRIBUTED.md)
  ...LAUNCH_OPTIONS,
  ...GRAD_SYNC_OPTIONS,
});

/** The resolved options of `semaim knn` ({@link KNN_OPTIONS}) that {@link runKnn} takes, e.g. from resolveOptions(KNN_OPTIONS, { ... }). */
export type KnnCommandOptions = Options<typeof KNN_OPTIONS>;
/**
 * The resolved options of `semaim linprobe` ({@link LINPROBE_OPTIONS}) that {@link runLinprobe} takes, e.g. from resolveOptions(LINPROBE_OPTIONS, { ... }).
 */
export type LinprobeCommandOptions = Options<typeof LINPROBE_OPTIONS>;
/**
 * The resolved options of `semaim finetune` ({@link FINETUNE_OPTIONS}) that {@link finetune}
 * and {@link runFinetune} take, e.g. from resolveOptions(FINETUNE_OPTIONS, { ... }).
 */
export type FinetuneOptions = Options<typeof FINETUNE_OPTIONS>;

/** What every evaluation's options have in common (the data and where it runs). */
export interface EvalCommonOptions extends ImageInputOptions {
  device: string;
  dataset: string;
  dataPath?: string;
  trainLimit?: number;
  testLimit?: number;
  numWorkers?: number;
  seed: number;
  threads?: number;
  precision: string;
  k?: string;
  epochs?: number;
  warmupEpochs?: number;
}

/** Checks shared by every evaluation command. */
export function validateEval(o: EvalCommonOptions): void {
  checkDevice(o.device);
  checkDatasetPath(o);
  if (o.k !== undefined) {
    try {
      parseKs(o.k);
    } catch (e) {
      throw new OptionError('k', (e as Error).message);
    }
  }
  if (o.warmupEpochs !== undefined && o.epochs !== undefined && o.warmupEpochs >= o.epochs) {
    throw new OptionError('warmupEpochs', `(${o.warmupEpochs}) must be below --epochs (${o.epochs})`);
  }
  checkPrecision(o.precision, o.device);
}

/** A probe that encodes every step's batch on N processes (each batch / N images): refuses a batch they cannot split; `mode` names the flag. */
export function checkBatchSplits(batchSize: number, processes: number, mode: string): void {
  if (processes > 1 && batchSize % processes !== 0) {
    throw new OptionError(
      'batchSize',
      `(${batchSize}) must be divisible by the ${processes} processes with ${mode}: each encodes batch / processes images of every step's batch`,
    );
  }
}

/** The online (uncached) probe on N processes: each encodes batch / N images of every step's batch. */
export function checkLinprobeProcesses(o: { cacheFeatures: boolean; batchSize: number }, processes: number): void {
  if (!o.cacheFeatures) checkBatchSplits(o.batchSize, processes, '--no-cache-features');
}

/** The linear probe's checks: the shared ones, and a batch the processes of the online (uncached) probe can split. */
export function validateLinprobe(o: LinprobeCommandOptions): void {
  validateEval(o);
  if (o.trainLimit !== undefined && o.trainLimit < 2)
    throw new OptionError('trainLimit', `must be at least 2: the probe trains on at least 2 images, got ${o.trainLimit}`);
  if (o.cacheFeatures && o.augment !== 'resize-crop-flip')
    throw new OptionError('augment', 'has no effect on cached features (extracted once, without augmentation): add --no-cache-features');
  checkLinprobeProcesses(o, o.nprocPerNode * o.nnodes);
  peakLr(o, o.batchSize);
}

/** Fine-tuning's checks: the shared ones, and a gradient compression the backend can sum. */
export function validateFinetune(o: FinetuneOptions): void {
  validateEval(o);
  checkGradSync(o);
  peakLr(o, o.batchSize * o.accumIter * o.nprocPerNode * o.nnodes, o);
}
