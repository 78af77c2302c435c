// `semaim pretrain` options (SPEC §5 defaults: the authors' ViT-B/16 ImageNet recipe) and their
// translation into a model config. Everything is validated before any work starts.
import { readFileSync } from 'node:fs';
import { OptionError, OptionTable, OptionValues } from '../util/options';
import { autoPrecision, checkPrecision } from './precision';
import { checkDevice } from '../util/device';
import {
  AUTHORS_SEMANTIC_ORDER, ConfigError, EncoderConfig, OrderConfig, PRESETS, SemAIMConfig, SimilarityTokens, TargetConfig, validateConfig,
} from '../semaim';

export const PRETRAIN_OPTIONS: OptionTable = {
  // model
  model: { type: 'string', default: 'vit_base', choices: Object.keys(PRESETS), help: 'encoder preset (width/depth/heads)' },
  imgSize: { type: 'int', default: 224, min: 1, help: 'input image size (square)' },
  patchSize: { type: 'int', default: 16, min: 1, help: 'patch size' },
  embedDim: { type: 'int', min: 4, help: 'override the preset width' },
  depth: { type: 'int', min: 1, help: 'override the preset depth' },
  numHeads: { type: 'int', min: 1, help: 'override the preset number of heads' },
  mlpRatio: { type: 'number', default: 4, min: 0.25, help: 'MLP hidden width / embed width' },
  dropPath: { type: 'number', default: 0, min: 0, max: 0.99, help: 'stochastic depth rate (pre-training uses none)' },
  decoderDepth: { type: 'int', min: 1, help: 'decoder (query) blocks, 1..depth (default: depth)' },
  // order
  order: { type: 'string', default: 'semantic', choices: ['raster', 'snake', 'stochastic', 'similarity', 'semantic', 'multicenter'], help: 'prediction order' },
  orderVariant: { type: 'string', default: 'paper', choices: ['paper', 'authors'], help: "semantic centre: 'paper' = 3×3 mean filter, λ=0.01; 'authors' = no filter, λ=1e-3" },
  orderLambda: { type: 'number', min: 0, help: 'override the noise scale λ of semantic/multicenter orders' },
  similaritySource: { type: 'string', default: 'online', choices: ['online', 'ema', 'teacher'], help: 'model that gives the similarity map' },
  similarityTokens: {
    type: 'string', choices: ['cls', 'gap', 'self'],
    help: "tokens of S (authors' --attention_type; default cls): 'cls' = cos to [CLS] (paper); 'gap' = cos to the mean patch token; 'self' = last block's [CLS] attention",
  },
  centers: { type: 'int', default: 3, min: 1, help: 'multicenter: at most this many centres' },
  minRelHeight: { type: 'number', default: 0.5, min: 0, max: 1, help: 'multicenter: minimum peak height relative to the highest' },
  minDistance: { type: 'number', default: 2, min: 0, help: 'multicenter: minimum distance between centres (patches)' },
  // target
  target: { type: 'string', default: 'pixels', choices: ['pixels', 'features'], help: 'prediction target' },
  normPix: { type: 'boolean', default: true, help: 'per-patch normalised pixel targets' },
  blur: { type: 'boolean', default: true, help: 'Gaussian-blur pixel targets (authors’ headline run)' },
  blurKernel: { type: 'int', default: 9, min: 1, help: 'blur kernel size (odd)' },
  blurSigma: { type: 'number', default: 1, help: 'blur sigma' },
  teacher: { type: 'string', help: 'feature targets: teacher encoder safetensors (with a .json config beside it)' },
  // data
  dataset: { type: 'string', default: 'synthetic', choices: ['synthetic', 'cifar10', 'folder', 'flat', 'shards'], help: 'training data' },
  dataPath: { type: 'string', help: "dataset folder (cifar10: extracted or the .tar.gz; folder: class sub-folders; flat: images; shards: 'dir/shard-{000000..000127}.tar', a list or a folder of tar shards)" },
  shuffleBuffer: { type: 'int', default: 1000, min: 1, help: 'shards: samples each loader worker shuffles among (memory: this many encoded images per worker)' },
  syntheticSize: { type: 'int', default: 5000, min: 1, help: 'synthetic dataset: number of images' },
  numWorkers: { type: 'int', min: 0, help: 'decoding/augmentation worker threads (default: one per core but one, at most 8; 0 = on the main thread)' },
  upload: {
    type: 'string', default: 'auto', choices: ['auto', 'uint8', 'float32'], auto: (o) => (uploadsUint8('auto', String(o.device)) ? 'uint8' : 'float32'),
    help: 'what the loader hands to the device: uint8 (4× fewer bytes, normalised on the device) or normalised float32; auto = uint8 on a GPU, float32 on the CPU',
  },
  minScale: { type: 'number', default: 0.2, min: 0.01, max: 1, help: 'RandomResizedCrop minimum scale' },
  hflip: { type: 'boolean', default: true, help: 'random horizontal flip' },
  // optimisation
  batchSize: { type: 'int', default: 64, min: 1, help: 'images per step (per accumulation micro-batch)' },
  accumIter: { type: 'int', default: 1, min: 1, help: 'gradient accumulation steps' },
  epochs: { type: 'number', default: 800, min: 0, help: 'training epochs' },
  maxSteps: { type: 'int', min: 1, help: 'stop after this many optimiser steps (budget cap)' },
  blr: { type: 'number', default: 2e-4, min: 0, help: 'base lr; lr = blr × effective batch / 256' },
  lr: { type: 'number', min: 0, help: 'absolute lr (overrides blr)' },
  minLr: { type: 'number', default: 0, min: 0, help: 'final lr of the cosine schedule' },
  warmupEpochs: { type: 'number', default: 30, min: 0, help: 'linear warm-up epochs' },
  weightDecay: { type: 'number', default: 0.05, min: 0, help: 'AdamW weight decay (not on biases, norms, 1-D params, cls/pos)' },
  beta1: { type: 'number', default: 0.9, min: 0, max: 1, help: 'AdamW beta1' },
  beta2: { type: 'number', default: 0.95, min: 0, max: 1, help: 'AdamW beta2' },
  clipGrad: { type: 'number', default: 3, min: 0, help: 'global gradient-norm clip (0 = off)' },
  precision: {
    type: 'string', default: 'auto', choices: ['auto', 'fp32', 'bf16', 'fp16'], auto: autoPrecision,
    help: 'mixed precision (bf16/fp16 autocast, float32 master weights; fp16 with loss scaling); auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)',
  },
  orderPrecision: {
    type: 'string', default: 'same', choices: ['same', 'fp32'],
    help: "the per-step similarity pass that orders the patches: 'same' as --precision (its encoder forward under bf16/fp16 autocast, the map in float32), or 'fp32' (the authors' engine)",
  },
  ema: { type: 'boolean', default: false, help: 'keep an EMA copy of the encoder' },
  emaDecay: { type: 'number', default: 0.999, min: 0, max: 1, help: 'EMA decay per step' },
  seed: { type: 'int', default: 0, help: 'random seed' },
  device: { type: 'string', default: 'cpu', help: "'cpu', 'cuda' or 'cuda:N'" },
  threads: { type: 'int', min: 1, help: 'CPU threads for libtorch (default: all cores)' },
  // run
  outDir: { type: 'string', default: 'runs/pretrain', help: 'output folder (checkpoints, metrics, config)' },
  checkpointEvery: { type: 'int', default: 500, min: 1, help: 'save a checkpoint every N steps (and at each epoch end)' },
  keepLast: { type: 'int', default: 3, min: 1, help: 'checkpoints to keep (plus the best)' },
  logEvery: { type: 'int', default: 10, min: 1, help: 'read metrics from the device every N steps' },
  resume: { type: 'boolean', default: true, help: 'continue from the latest checkpoint in out-dir if there is one' },
};

/**
 * `--upload`: uint8 batches copy 4× fewer bytes to a GPU (and are normalised there); on the CPU the
 * loader's workers normalise in parallel with the model, so float32 is cheaper there.
 */
export function uploadsUint8(upload: string, device: string): boolean {
  return upload === 'uint8' || (upload === 'auto' && device !== 'cpu');
}

/** Builds and validates the model config; errors name the option. */
export function modelConfigFrom(o: OptionValues): SemAIMConfig {
  const preset = PRESETS[o.model as string];
  const enc = {
    imgSize: o.imgSize as number, patchSize: o.patchSize as number, inChans: 3,
    embedDim: (o.embedDim as number | undefined) ?? preset.embedDim,
    depth: (o.depth as number | undefined) ?? preset.depth,
    numHeads: (o.numHeads as number | undefined) ?? preset.numHeads,
    mlpRatio: o.mlpRatio as number, dropPath: o.dropPath as number,
  };
  let target: TargetConfig;
  if (o.target === 'features') {
    if (!o.teacher) throw new OptionError('teacher', "target 'features' needs --teacher <file.safetensors>");
    target = { type: 'features', teacher: o.teacher as string, teacherConfig: readTeacherConfig(o.teacher as string) };
  } else {
    target = { type: 'pixels', normPix: o.normPix as boolean, blur: o.blur as boolean, blurKernel: o.blurKernel as number, blurSigma: o.blurSigma as number };
  }
  const source = o.similaritySource as 'online' | 'ema' | 'teacher';
  if (source === 'ema' && !o.ema) throw new OptionError('similaritySource', "'ema' needs --ema");
  const semantic = o.orderVariant === 'authors' ? (AUTHORS_SEMANTIC_ORDER as { filter: boolean; lambda: number }) : { filter: true, lambda: 0.01 };
  const lambda = (o.orderLambda as number | undefined) ?? semantic.lambda;
  // Only a non-default choice is written into the config, so paper-default configs stay as they were.
  const tokens = o.similarityTokens && o.similarityTokens !== 'cls' ? { tokens: o.similarityTokens as SimilarityTokens } : {};
  if ((tokens as { tokens?: string }).tokens && source === 'teacher') throw new OptionError('similarityTokens', "a teacher's similarity map always uses [CLS] (min-max)");
  let order: OrderConfig;
  switch (o.order) {
    case 'similarity': order = { type: 'similarity', source, ...tokens }; break;
    case 'semantic': order = { type: 'semantic', source, filter: semantic.filter, lambda, ...tokens }; break;
    case 'multicenter':
      order = { type: 'multicenter', source, k: o.centers as number, minRelHeight: o.minRelHeight as number,
        minDistance: o.minDistance as number, filter: semantic.filter, lambda, ...tokens };
      break;
    default: order = { type: o.order as 'raster' | 'snake' | 'stochastic' };
  }
  const cfg: SemAIMConfig = { ...enc, decoderDepth: (o.decoderDepth as number | undefined) ?? enc.depth, target, order };
  try {
    validateConfig(cfg);
  } catch (e) {
    if (e instanceof ConfigError) throw new OptionError(e.key.split('.').pop()!, e.message);
    throw e;
  }
  return cfg;
}

/** A teacher's encoder config: `<file>.json` beside `<file>.safetensors` (as `semaim export` writes). */
export function readTeacherConfig(path: string): EncoderConfig {
  const jsonPath = path.replace(/\.safetensors$/, '') + '.json';
  try {
    const c = JSON.parse(readFileSync(jsonPath, 'utf8')) as EncoderConfig & { encoder?: EncoderConfig };
    return c.encoder ?? c;
  } catch (e) {
    throw new OptionError('teacher', `cannot read the teacher's config ${jsonPath}: ${(e as Error).message}`);
  }
}

/** Checks that need more than one option. */
export function validatePretrain(o: OptionValues): void {
  if ((o.dataset === 'folder' || o.dataset === 'flat' || o.dataset === 'shards') && !o.dataPath) throw new OptionError('dataPath', `dataset '${o.dataset}' needs --data-path`);
  checkDevice(String(o.device));
  checkPrecision(o.precision, o.device);
  if ((o.warmupEpochs as number) >= (o.epochs as number) && (o.epochs as number) > 0) {
    throw new OptionError('warmupEpochs', `(${o.warmupEpochs}) must be below epochs (${o.epochs})`);
  }
}
