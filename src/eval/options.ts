// Option tables of `semaim knn | linprobe | finetune | ablate` (SPEC §5 defaults) and the checks
// that need more than one option. Everything is validated before any work starts.
import { OptionError, OptionTable, OptionValues } from '../util/options';
import { parseKs } from './knn';
import { autoPrecision, checkPrecision } from '../train/precision';
import { checkDevice } from '../util/device';
import { SEG_DATA_OPTIONS } from './segprobe-options';

const DATA_OPTIONS: OptionTable = {
  dataset: { type: 'string', default: 'cifar10', help: 'labelled dataset (e.g. cifar10, synthetic, folder), as the data adapter names them' },
  dataPath: { type: 'string', help: 'dataset location (cifar10: folder or .tar.gz; folder: root with train/ and test/ class folders)' },
  trainLimit: { type: 'int', min: 1, help: 'use at most this many training images (seeded, class-balanced subset)' },
  testLimit: { type: 'int', min: 1, help: 'use at most this many test images (seeded, class-balanced subset)' },
  numWorkers: { type: 'int', min: 0, help: 'decoding/augmentation worker threads (default: one per core but one, at most 8; 0 = on the main thread)' },
};

const RUN_OPTIONS: OptionTable = {
  seed: { type: 'int', default: 0, help: 'random seed' },
  device: { type: 'string', default: 'cpu', help: "'cpu', 'cuda' or 'cuda:N'" },
  threads: { type: 'int', min: 1, help: 'CPU threads for libtorch (default: all cores)' },
};

const FEATURE_OPTIONS: OptionTable = {
  pooling: { type: 'string', default: 'cls', choices: ['cls', 'mean'], help: "feature: the [CLS] token or the mean of the patch tokens (after the final norm)" },
  evalBatchSize: { type: 'int', default: 256, min: 1, help: 'images per batch when extracting features' },
  precision: { type: 'string', default: 'auto', choices: ['auto', 'fp32', 'bf16', 'fp16'], auto: autoPrecision, help: 'encoder precision while extracting features (bf16/fp16 autocast); auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)' },
};

const KNN_ONLY: OptionTable = {
  k: { type: 'string', default: '10,20,30', help: 'neighbour counts to report, comma-separated (one top-max(k) pass)' },
  temperature: { type: 'number', default: 0.07, min: 1e-6, help: 'vote weight exp(cos / T)' },
  chunkSize: { type: 'int', default: 256, min: 1, help: 'test rows per similarity block ([chunk, nTrain] floats in memory)' },
};

const LINPROBE_ONLY: OptionTable = {
  epochs: { type: 'number', default: 90, min: 0.001, help: 'training epochs' },
  batchSize: { type: 'int', default: 256, min: 2, help: 'training batch (MAE: 16384 over 64 GPUs; SPEC: 4096)' },
  blr: { type: 'number', default: 0.1, min: 0, help: 'base lr; lr = blr × batch / 256' },
  lr: { type: 'number', min: 0, help: 'absolute lr (overrides blr)' },
  minLr: { type: 'number', default: 0, min: 0, help: 'final lr of the cosine schedule' },
  warmupEpochs: { type: 'number', default: 0, min: 0, help: 'linear warm-up epochs (SPEC: none; MAE: 10)' },
  weightDecay: { type: 'number', default: 0, min: 0, help: 'weight decay' },
  momentum: { type: 'number', default: 0.9, min: 0, max: 1, help: 'SGD/LARS momentum' },
  optimizer: { type: 'string', default: 'sgd', choices: ['sgd', 'lars'], help: 'SGD (SPEC) or LARS (MAE)' },
  cacheFeatures: { type: 'boolean', default: true, help: 'extract features once (no augmentation) and train on them; --no-cache-features runs the encoder on every crop-flip batch' },
  evalEvery: { type: 'int', default: 0, min: 0, help: 'report test accuracy every N epochs (0: only at the end)' },
};

export const KNN_OPTIONS: OptionTable = {
  checkpoint: { type: 'string', required: true, help: 'pre-training run folder (newest valid checkpoint), checkpoint folder, or exported encoder .safetensors' },
  ...KNN_ONLY,
  ...FEATURE_OPTIONS,
  ...DATA_OPTIONS,
  ...RUN_OPTIONS,
  outDir: { type: 'string', default: 'runs/knn', help: 'output folder (knn.json)' },
};

export const LINPROBE_OPTIONS: OptionTable = {
  checkpoint: { type: 'string', required: true, help: 'pre-training run folder, checkpoint folder, or exported encoder .safetensors' },
  ...LINPROBE_ONLY,
  ...FEATURE_OPTIONS,
  ...DATA_OPTIONS,
  ...RUN_OPTIONS,
  outDir: { type: 'string', default: 'runs/linprobe', help: 'output folder (linprobe.json, probe.safetensors)' },
};

export const FINETUNE_OPTIONS: OptionTable = {
  checkpoint: { type: 'string', required: true, help: 'pre-training run folder, checkpoint folder, or exported encoder .safetensors' },
  init: { type: 'string', default: 'pretrained', choices: ['pretrained', 'random'], help: "'random': the checkpoint's architecture from scratch (baseline)" },
  pool: { type: 'string', default: 'avg', choices: ['avg', 'cls'], help: "'avg': mean of patch tokens → fc_norm (MAE); 'cls': norm → [CLS]" },
  dropPath: { type: 'number', default: 0.1, min: 0, max: 0.99, help: 'stochastic depth rate (rises linearly over the blocks)' },
  // optimisation
  epochs: { type: 'number', default: 100, min: 0.001, help: 'training epochs' },
  maxSteps: { type: 'int', min: 1, help: 'stop after this many optimiser steps (budget cap)' },
  batchSize: { type: 'int', default: 64, min: 2, help: 'images per micro-batch' },
  accumIter: { type: 'int', default: 1, min: 1, help: 'gradient accumulation steps' },
  blr: { type: 'number', default: 5e-4, min: 0, help: 'base lr; lr = blr × effective batch / 256' },
  lr: { type: 'number', min: 0, help: 'absolute lr (overrides blr)' },
  minLr: { type: 'number', default: 1e-6, min: 0, help: 'final lr of the cosine schedule' },
  warmupEpochs: { type: 'number', default: 20, min: 0, help: 'linear warm-up epochs' },
  layerDecay: { type: 'number', default: 0.65, min: 0, max: 1, help: 'layer-wise lr decay: block i gets lr × decay^(depth − i)' },
  weightDecay: { type: 'number', default: 0.05, min: 0, help: 'AdamW weight decay (not on biases, norms, 1-D params, cls token)' },
  beta1: { type: 'number', default: 0.9, min: 0, max: 1, help: 'AdamW beta1' },
  beta2: { type: 'number', default: 0.999, min: 0, max: 1, help: 'AdamW beta2' },
  clipGrad: { type: 'number', default: 0, min: 0, help: 'global gradient-norm clip (0 = off, as MAE)' },
  // regularisation
  augment: { type: 'string', default: 'finetune', choices: ['finetune', 'crop-flip', 'none'], help: "data augmentation: 'finetune' = crop, flip, RandAugment m9-mstd0.5, random erasing 0.25" },
  mixup: { type: 'number', default: 0.8, min: 0, help: 'mixup Beta(α, α) (0 = off)' },
  cutmix: { type: 'number', default: 1.0, min: 0, help: 'cutmix Beta(α, α) (0 = off)' },
  mixupProb: { type: 'number', default: 1, min: 0, max: 1, help: 'probability of mixing a batch' },
  mixupSwitchProb: { type: 'number', default: 0.5, min: 0, max: 1, help: 'probability of cutmix rather than mixup when both are on' },
  smoothing: { type: 'number', default: 0.1, min: 0, max: 0.99, help: 'label smoothing' },
  ema: { type: 'boolean', default: false, help: 'keep (and evaluate) an EMA copy of the model' },
  emaDecay: { type: 'number', default: 0.9999, min: 0, max: 1, help: 'EMA decay per step' },
  precision: { type: 'string', default: 'auto', choices: ['auto', 'fp32', 'bf16', 'fp16'], auto: autoPrecision, help: 'mixed precision (fp16 with loss scaling, CUDA only); auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)' },
  evalBatchSize: { type: 'int', default: 256, min: 1, help: 'images per evaluation batch' },
  ...DATA_OPTIONS,
  ...RUN_OPTIONS,
  // run
  outDir: { type: 'string', default: 'runs/finetune', help: 'output folder (checkpoints, metrics, finetune.json)' },
  evalEvery: { type: 'int', default: 1, min: 0, help: 'evaluate on the test set every N epochs (0: only at the end)' },
  checkpointEvery: { type: 'int', default: 500, min: 1, help: 'save a checkpoint every N steps (and at each epoch end)' },
  keepLast: { type: 'int', default: 2, min: 1, help: 'checkpoints to keep (plus the best)' },
  logEvery: { type: 'int', default: 10, min: 1, help: 'read the loss from the device every N steps' },
  resume: { type: 'boolean', default: true, help: 'continue from the latest checkpoint in out-dir if there is one' },
};

export const ABLATE_ORDERS = ['raster', 'stochastic', 'similarity', 'semantic', 'multicenter'] as const;

export const ABLATE_OPTIONS: OptionTable = {
  orders: { type: 'string', default: ABLATE_ORDERS.join(','), help: 'orders to compare, comma-separated (also: snake)' },
  seeds: { type: 'int', default: 1, min: 1, help: 'pre-train each order with seeds seed..seed+N-1 and report mean ± std' },
  budget: { type: 'string', default: 'full', choices: ['full', 'small'], help: "recipe: 'full' (CIFAR-10 32², ViT 192×6, patch 4: a GPU job) or 'small' (CPU-friendly)" },
  epochs: { type: 'number', min: 0.001, help: 'override the recipe: pre-training epochs' },
  maxSteps: { type: 'int', min: 1, help: 'override the recipe: pre-training step cap' },
  batchSize: { type: 'int', min: 1, help: 'override the recipe: pre-training batch' },
  embedDim: { type: 'int', min: 4, help: 'override the recipe: encoder width' },
  depth: { type: 'int', min: 1, help: 'override the recipe: encoder depth' },
  numHeads: { type: 'int', min: 1, help: 'override the recipe: attention heads' },
  decoderDepth: { type: 'int', min: 1, help: 'override the recipe: decoder blocks' },
  patchSize: { type: 'int', min: 1, help: 'override the recipe: patch size' },
  imgSize: { type: 'int', min: 1, help: 'override the recipe: image size' },
  pretrainLimit: { type: 'int', min: 1, help: 'override the recipe: images per pre-training epoch (a seeded random subset each epoch)' },
  linprobeEpochs: { type: 'number', min: 0.001, help: 'override the recipe: linear-probe epochs' },
  k: { type: 'string', default: '10,20,30', help: 'k-NN neighbour counts (the table shows k = 20 when present)' },
  pooling: { type: 'string', default: 'both', choices: ['cls', 'mean', 'both'], help: 'features evaluated: [CLS], mean of patch tokens, or both' },
  baseline: { type: 'boolean', default: true, help: 'also evaluate the same architecture randomly initialised (no pre-training)' },
  eval: { type: 'string', default: 'none', choices: ['none', 'segprobe'], help: "extra column: 'segprobe' = the segmentation probe's mIoU on data with masks (see --seg-dataset)" },
  segDataset: { type: 'string', default: 'auto', choices: ['auto', 'synthetic', 'seg-folder'], help: "--eval segprobe: data with masks; auto = the synthetic objects when --dataset synthetic" },
  segDataPath: { type: 'string', help: '--eval segprobe with --seg-dataset seg-folder: its root ({train,test}/images, {train,test}/masks, classes.txt)' },
  segprobeEpochs: { type: 'number', min: 0.001, help: 'override the recipe: segmentation-probe epochs' },
  ...SEG_DATA_OPTIONS,
  ...DATA_OPTIONS,
  ...RUN_OPTIONS,
  precision: { type: 'string', default: 'auto', choices: ['auto', 'fp32', 'bf16', 'fp16'], auto: autoPrecision, help: 'pre-training and feature precision; auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)' },
  outDir: { type: 'string', default: 'runs/ablate', help: 'output folder (ablation.md, ablation.json, one pre-training run per order and seed)' },
};

/** Checks shared by every evaluation command. */
export function validateEval(o: OptionValues): void {
  checkDevice(String(o.device));
  if (o.dataset === 'folder' && !o.dataPath) throw new OptionError('dataPath', "dataset 'folder' needs --data-path");
  if (o.k !== undefined) {
    try {
      parseKs(String(o.k));
    } catch (e) {
      throw new OptionError('k', (e as Error).message);
    }
  }
  if (o.warmupEpochs !== undefined && o.epochs !== undefined && (o.warmupEpochs as number) >= (o.epochs as number)) {
    throw new OptionError('warmupEpochs', `(${o.warmupEpochs}) must be below epochs (${o.epochs})`);
  }
  checkPrecision(o.precision, o.device);
  if (o.orders !== undefined) parseOrders(String(o.orders));
}

/** Parses the ablation's order list. */
export function parseOrders(text: string): string[] {
  const known = ['raster', 'snake', 'stochastic', 'similarity', 'semantic', 'multicenter'];
  const list = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (!list.length) throw new OptionError('orders', 'is empty');
  for (const s of list) if (!known.includes(s)) throw new OptionError('orders', `unknown order '${s}' (known: ${known.join(', ')})`);
  if (new Set(list).size !== list.length) throw new OptionError('orders', `lists an order twice: ${text}`);
  return list;
}
