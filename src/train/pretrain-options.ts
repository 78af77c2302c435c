// `semaim pretrain` options (defaults: the authors' ViT-B/16 ImageNet recipe, docs/METHOD.md §6.1) and their
// translation into a model config. Everything is validated before any work starts.
import {
  OptionError,
  Options,
  OptionValues,
  defineOptions,
  refuseNoEffectOptions,
  kebab,
  MAX_THREADS,
  MAX_THREADS_IS,
  MAX_WORKERS,
  SEED_RANGE,
} from '../util/options';
import { FLOAT32_MAX, peakLr } from '../optim/peak-lr';
import { precisionOption, checkPrecision } from '../run/precision';
import { checkDevice } from '../run/device';
import { cudaGraphRefusal } from '../run/cuda-graph-step';
import { native } from '../torch/native';
import { fused } from '../torch';
import {
  AUTHORS_SEMANTIC_ORDER,
  DEFAULT_ORDER,
  ConfigError,
  EncoderConfig,
  OrderConfig,
  PRESETS,
  SemAIMConfig,
  TargetConfig,
  encoderParameterCount,
  resolveEncoder,
  validateConfig,
} from '../semaim';
import type { TrainDataRequest } from '../data';
import { IMAGE_INPUT_OPTIONS, imageInputOptions, syntheticIgnoresDataPath } from '../data/options';
import { DATASETS } from '../data/factories';
import { GRAD_SYNC_OPTIONS, LAUNCH_OPTIONS, checkGradSync } from '../dist/launch';
import { machineMemory, type MachineMemory } from '../util/machine-memory';
import { quotedPath } from '../util/printable';

/** The orders whose patches follow a similarity map S. */
const S_ORDERS = ['similarity', 'semantic', 'multicenter'];

// Why an option changes nothing under the others (OptionSpec.noEffect), or undefined where it is read.
const unlessOrders =
  (orders: readonly string[], why: string) =>
  (o: OptionValues): string | undefined =>
    orders.includes(String(o.order)) ? undefined : `with --order ${o.order}: ${why}`;
const unlessSimilarityOrder = (why: string) => unlessOrders(S_ORDERS, why);
const S_ONLY = 'only the similarity, semantic and multicenter orders use a similarity map';
const unlessBlurred = (o: OptionValues): string | undefined =>
  o.target === 'pixels' && o.blur ? undefined : o.target === 'pixels' ? 'with --no-blur' : `with --target ${o.target}`;
const unlessEma = (o: OptionValues): string | undefined => (o.ema ? undefined : 'without --ema');
const unlessDataset =
  (dataset: string, why: string) =>
  (o: OptionValues): string | undefined =>
    o.dataset === dataset ? undefined : `with --dataset ${o.dataset}: ${why}`;

/**
 * How a GPU executes the step, not what it computes: shared by pretrain and the studies that pre-train
 * (ablate, object-start); a run may resume with other values.
 */
export const GPU_STEP_OPTIONS = defineOptions({
  cudaGraphs: {
    mayChangeOnResume: true,
    type: 'boolean',
    default: false,
    help: 'capture the order pass, forward and backward once as a CUDA graph and replay it each step (CUDA, bf16 or fp32, --accum-iter 1, --drop-path 0; the gradient all-reduce and the optimiser run after each replay)',
  },
  fused: {
    mayChangeOnResume: true,
    type: 'string',
    default: 'auto',
    auto: (o) => autoFused(String(o.device)),
    help: "fused CUDA kernels (compiled at run time with NVRTC): 'all', 'none' or a list of layernorm, layernorm-backward (with layernorm), gelu, qkv, targets, patch-embed (a matmul, no kernel); auto = layernorm on a GPU where they compile (the one measured faster), else none",
  },
});

/**
 * The option table of `semaim pretrain` and {@link pretrain}: model, prediction order, target, data, optimisation, precision,
 * EMA, run and data-parallel settings; the recipe's defaults are the authors' ViT-B/16 ImageNet ones (docs/METHOD.md §6.1).
 */
export const PRETRAIN_OPTIONS = defineOptions({
  // model
  model: { type: 'string', default: 'vit_base', choices: Object.keys(PRESETS), help: 'encoder preset (width/depth/heads)' },
  imgSize: { type: 'int', default: 224, min: 1, max: 8192, help: 'input image size (square)' },
  patchSize: { type: 'int', default: 16, min: 1, help: 'patch size' },
  embedDim: { type: 'int', min: 4, help: 'override the preset width' },
  depth: { type: 'int', min: 1, help: 'override the preset depth' },
  numHeads: { type: 'int', min: 1, help: 'override the preset number of heads' },
  mlpRatio: { type: 'number', default: 4, min: 0.25, help: 'MLP hidden width / embed width' },
  dropPath: { type: 'number', default: 0, min: 0, max: 0.99, help: 'stochastic depth rate (pre-training uses none)' },
  decoderDepth: { type: 'int', min: 1, help: 'decoder (query) blocks, 1..depth (default: depth)' },
  // order
  order: { type: 'string', default: 'semantic', choices: ['raster', 'snake', 'stochastic', 'similarity', 'semantic', 'multicenter'], help: 'prediction order' },
  orderVariant: {
    type: 'string',
    default: 'paper',
    choices: ['paper', 'authors'],
    noEffect: unlessOrders(['semantic', 'multicenter'], 'it picks the centre of the semantic and multicenter orders'),
    help: "semantic centre: 'paper' = 3×3 mean filter, λ=0.01; 'authors' = no filter, λ=1e-3",
  },
  orderLambda: {
    type: 'number',
    min: 0,
    noEffect: unlessOrders(['semantic', 'multicenter'], 'λ is the noise of the semantic and multicenter orders'),
    help: 'override the noise scale λ of semantic/multicenter orders',
  },
  similaritySource: {
    type: 'string',
    default: 'auto',
    choices: ['auto', 'online', 'ema', 'teacher'],
    // the authors' engine orders by the teacher's map whenever the targets are its features
    // (engines/engine_pretrain.py:179-190), by the online model's otherwise (docs/METHOD.md §3.2)
    auto: (o) => (o.target === 'features' ? 'teacher' : 'online'),
    noEffect: unlessSimilarityOrder(S_ONLY),
    help: "model that gives the similarity map; auto = 'teacher' with --target features (the authors' engine), else 'online' (the model being trained)",
  },
  similarityTokens: {
    type: 'string',
    choices: ['cls', 'gap', 'self'],
    noEffect: unlessSimilarityOrder(S_ONLY),
    help: "tokens of S (authors' --attention_type; default cls): 'cls' = cos to [CLS] (paper); 'gap' = cos to the mean patch token; 'self' = last block's [CLS] attention",
  },
  centers: {
    type: 'int',
    default: 3,
    min: 1,
    noEffect: unlessOrders(['multicenter'], "it is the multicenter order's"),
    help: 'multicenter: at most this many centres',
  },
  minRelHeight: {
    type: 'number',
    default: 0.5,
    min: 0,
    max: 1,
    noEffect: unlessOrders(['multicenter'], "it is the multicenter order's"),
    help: 'multicenter: minimum peak height relative to the highest',
  },
  minDistance: {
    type: 'number',
    default: 2,
    min: 0,
    noEffect: unlessOrders(['multicenter'], "it is the multicenter order's"),
    help: 'multicenter: minimum distance between centres (patches)',
  },
  // target
  target: { type: 'string', default: 'pixels', choices: ['pixels', 'features'], help: 'prediction target' },
  normPix: { type: 'boolean', default: true, help: 'per-patch normalised pixel targets' },
  blur: { type: 'boolean', default: true, help: 'Gaussian-blur pixel targets (authors’ headline run)' },
  blurKernel: { type: 'int', default: 9, min: 1, noEffect: unlessBlurred, help: 'blur kernel size (odd)' },
  blurSigma: { type: 'number', default: 1, noEffect: unlessBlurred, help: 'blur sigma' },
  teacher: {
    type: 'string',
    path: true,
    noEffect: (o) => (o.target === 'features' ? undefined : `with --target ${o.target}: a teacher gives feature targets (--target features)`),
    help: 'feature targets: teacher encoder .safetensors or torch.save .pth (with a .json config beside it)',
  },
  // data
  dataset: { type: 'string', default: 'synthetic', choices: DATASETS, help: 'training data' },
  dataPath: {
    type: 'string',
    path: true,
    noEffect: syntheticIgnoresDataPath,
    help: "dataset folder (cifar10: extracted or the .tar.gz; folder: class sub-folders; flat: images; shards: 'dir/shard-{000000..000127}.tar', a list or a folder of tar shards)",
  },
  shuffleBuffer: {
    type: 'int',
    default: 1000,
    min: 1,
    noEffect: unlessDataset('shards', "it is the tar shards' shuffle buffer"),
    help: 'shards: samples each loader worker shuffles among (memory: this many encoded images per worker, within a budget of half the memory or $SEMAIM_SHUFFLE_MEMORY)',
  },
  syntheticSize: {
    type: 'int',
    default: 5000,
    min: 1,
    max: 100_000_000,
    noEffect: unlessDataset('synthetic', 'it is the number of synthetic images'),
    help: 'synthetic dataset: number of images',
  },
  numWorkers: {
    mayChangeOnResume: true,
    type: 'int',
    min: 0,
    max: MAX_WORKERS,
    help: 'decoding/augmentation worker threads (default: one per core but one, at most 8; 0 = on the main thread)',
  },
  upload: {
    mayChangeOnResume: true,
    type: 'string',
    default: 'auto',
    choices: ['auto', 'uint8', 'float32'],
    auto: (o) => (uploadsUint8('auto', String(o.device)) ? 'uint8' : 'float32'),
    help: 'what the loader hands to the device: uint8 (4× fewer bytes, normalised on the device) or normalised float32; auto = uint8 on a GPU, float32 on the CPU',
  },
  minScale: { type: 'number', default: 0.2, min: 0.01, max: 1, help: 'RandomResizedCrop minimum scale' },
  hflip: { type: 'boolean', default: true, help: 'random horizontal flip' },
  ...IMAGE_INPUT_OPTIONS,
  // optimisation
  batchSize: {
    type: 'int',
    default: 64,
    min: 1,
    help: 'images per step and process (per accumulation micro-batch); the effective batch is batch × accum × processes',
  },
  accumIter: { type: 'int', default: 1, min: 1, help: 'gradient accumulation steps' },
  epochs: { mayChangeOnResume: true, type: 'number', default: 800, min: 0, help: 'training epochs' },
  maxSteps: { mayChangeOnResume: true, type: 'int', min: 1, help: 'stop after this many optimiser steps (budget cap)' },
  blr: { type: 'number', default: 2e-4, min: 0, help: 'base lr; lr = blr × effective batch / 256' },
  lr: { type: 'number', min: 0, help: 'absolute lr (overrides --blr)' },
  minLr: { type: 'number', default: 0, min: 0, help: 'final lr of the cosine schedule' },
  warmupEpochs: { type: 'number', default: 30, min: 0, help: 'linear warm-up epochs' },
  weightDecay: {
    type: 'number',
    default: 0.05,
    min: 0,
    help: 'AdamW weight decay (not on biases, norms, 1-D params, pos_embed; cls_token see --decay-cls-token)',
  },
  decayClsToken: {
    type: 'boolean',
    default: true,
    absentMeans: false,
    help: "weight decay on cls_token too, as the authors' (and MAE's) pre-training: timm's add_weight_decay exempts only 1-D params and biases; --no-decay-cls-token exempts it (semaim before this option)",
  },
  beta1: { type: 'number', default: 0.9, min: 0, below: 1, help: 'AdamW beta1' },
  beta2: { type: 'number', default: 0.95, min: 0, below: 1, help: 'AdamW beta2' },
  clipGrad: { type: 'number', default: 3, min: 0, max: FLOAT32_MAX, maxIs: 'the largest float32', help: 'global gradient-norm clip (0 = off)' },
  precision: precisionOption(
    'mixed precision (bf16/fp16 autocast, float32 master weights; fp16 with loss scaling); auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)',
  ),
  orderPrecision: {
    type: 'string',
    default: 'same',
    choices: ['same', 'fp32'],
    noEffect: unlessSimilarityOrder('it is the precision of the similarity pass, which only the similarity, semantic and multicenter orders run'),
    // (semaim before this option ran the pass in float32)
    absentMeans: 'fp32',
    help: "the per-step similarity pass that orders the patches: 'same' as --precision (its encoder forward under bf16/fp16 autocast, the map in float32), or 'fp32' (the authors' engine)",
  },
  ...GPU_STEP_OPTIONS,
  ema: { type: 'boolean', default: false, help: 'keep an EMA copy of the encoder' },
  emaDecay: { type: 'number', default: 0.999, min: 0, max: 1, noEffect: unlessEma, help: "EMA decay per step (the start of --ema-schedule authors' ramp)" },
  emaSchedule: {
    type: 'string',
    default: 'auto',
    choices: ['auto', 'authors', 'constant'],
    // the authors' engine ramps timm ModelEma's decay per epoch (engines/engine_pretrain.py:129-134)
    auto: (o) => (o.ema ? 'authors' : 'constant'),
    noEffect: unlessEma,
    absentMeans: 'constant',
    help: "EMA decay over the run: 'authors' = from --ema-decay linearly to 0.9999 over the first 100 epochs, set at each epoch's start (their engine); 'constant' = --ema-decay throughout; auto = authors with --ema",
  },
  seed: { type: 'int', ...SEED_RANGE, default: 0, help: 'random seed' },
  device: { mayChangeOnResume: true, type: 'string', default: 'cpu', help: "'cpu', 'cuda' or 'cuda:N'" },
  threads: {
    mayChangeOnResume: true,
    type: 'int',
    min: 1,
    max: MAX_THREADS,
    maxIs: MAX_THREADS_IS,
    help: 'CPU threads for libtorch (default: all cores, shared among the processes on this machine)',
  },
  // run
  outDir: { mayChangeOnResume: true, type: 'string', default: 'runs/pretrain', help: 'output folder (checkpoints, metrics, config)' },
  checkpointEvery: { mayChangeOnResume: true, type: 'int', default: 500, min: 1, help: 'save a checkpoint every N steps (and at each epoch end)' },
  keepLast: { mayChangeOnResume: true, type: 'int', default: 3, min: 1, help: 'checkpoints to keep (plus the best)' },
  logEvery: { mayChangeOnResume: true, type: 'int', default: 10, min: 1, help: 'read metrics from the device every N steps' },
  resume: { mayChangeOnResume: true, type: 'boolean', default: true, help: 'continue from the latest checkpoint in --out-dir if there is one' },
  // data-parallel (docs/DISTRIBUTED.md)
  ...LAUNCH_OPTIONS,
  ...GRAD_SYNC_OPTIONS,
});

/**
 * The resolved options of `semaim pretrain` ({@link PRETRAIN_OPTIONS}) that {@link pretrain} takes, e.g. from resolveOptions(PRETRAIN_OPTIONS, { ... }).
 */
export type PretrainOptions = Options<typeof PRETRAIN_OPTIONS>;

/**
 * `--upload`: uint8 batches copy 4× fewer bytes to a GPU (and are normalised there); on the CPU the
 * loader's workers normalise in parallel with the model, so float32 is cheaper there.
 */
export function uploadsUint8(upload: string, device: string): boolean {
  return upload === 'uint8' || (upload === 'auto' && device !== 'cpu');
}

/** Builds and validates the model config; errors name the option. */
export function modelConfigFrom(o: PretrainOptions): SemAIMConfig {
  const preset = PRESETS[o.model];
  const enc = {
    imgSize: o.imgSize,
    patchSize: o.patchSize,
    inChans: 3,
    embedDim: o.embedDim ?? preset.embedDim,
    depth: o.depth ?? preset.depth,
    numHeads: o.numHeads ?? preset.numHeads,
    mlpRatio: o.mlpRatio,
    dropPath: o.dropPath,
  };
  let target: TargetConfig;
  if (o.target === 'features') {
    if (!o.teacher) throw new OptionError('teacher', "target 'features' needs --teacher <file.safetensors>");
    target = { type: 'features', teacher: o.teacher, teacherConfig: readTeacherConfig(o.teacher) };
  } else {
    target = { type: 'pixels', normPix: o.normPix, blur: o.blur, blurKernel: o.blurKernel, blurSigma: o.blurSigma };
  }
  const source = o.similaritySource;
  if (source === 'ema' && !o.ema) throw new OptionError('similaritySource', "'ema' needs --ema");
  // (the model config's own check said "'teacher' needs a teacher (feature targets)", naming no option)
  if (source === 'teacher' && o.target !== 'features') throw new OptionError('similaritySource', "'teacher' needs --target features (and its --teacher)");
  const semantic = o.orderVariant === 'authors' ? AUTHORS_SEMANTIC_ORDER : DEFAULT_ORDER;
  const lambda = o.orderLambda ?? semantic.lambda;
  // Only a non-default choice is written into the config, so paper-default configs stay as they were.
  const tokens = o.similarityTokens && o.similarityTokens !== 'cls' ? { tokens: o.similarityTokens } : {};
  if (tokens.tokens && source === 'teacher')
    throw new OptionError(
      'similarityTokens',
      `a teacher's similarity map always uses [CLS] (min-max)${o.target === 'features' ? "; with --target features the map is the teacher's unless --similarity-source online or ema" : ''}`,
    );
  let order: OrderConfig;
  switch (o.order) {
    case 'similarity':
      order = { type: 'similarity', source, ...tokens };
      break;
    case 'semantic':
      order = { type: 'semantic', source, filter: semantic.filter, lambda, ...tokens };
      break;
    case 'multicenter':
      order = {
        type: 'multicenter',
        source,
        k: o.centers,
        minRelHeight: o.minRelHeight,
        minDistance: o.minDistance,
        filter: semantic.filter,
        lambda,
        ...tokens,
      };
      break;
    default:
      order = { type: o.order };
  }
  const cfg: SemAIMConfig = { ...enc, decoderDepth: o.decoderDepth ?? enc.depth, target, order };
  try {
    validateConfig(cfg);
  } catch (e) {
    // the option names the key: "option 'imgSize': config 'imgSize': …" named it twice
    if (e instanceof ConfigError)
      throw new OptionError(CONFIG_KEY_OPTION[e.key] ?? e.key.split('.').pop()!, asFlags(e.message.replace(/^config '[^']*': /, '')));
    throw e;
  }
  checkModelFits(cfg, o);
  return cfg;
}

/**
 * On the CPU, attention holds each block's batch × heads × T × T map (float32, T = patches + 1): a
 * 8192² image in 32² patches asked for 34 GB in its first step, after the run folder was made. Refused
 * when one map with the model's state exceeds memory (a GPU's attention kernels hold no such map),
 * naming --batch-size and the largest that fits, or the image and patch size where not even one image does.
 */
function checkAttentionFits(cfg: SemAIMConfig, o: PretrainOptions, memory: MachineMemory, stateBytes: number): void {
  if (o.device !== 'cpu') return;
  const tokens = (cfg.imgSize / cfg.patchSize) ** 2 + 1;
  const perImage = cfg.numHeads * tokens * tokens * 4;
  const map = o.batchSize * perImage;
  if (map + stateBytes <= memory.bytes) return;
  const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  // the map alone, or the map with the state, is what exceeds memory: "22.6 GiB, more than 23.5 GiB" was the map alone
  const need = map > memory.bytes ? '' : `; with the weights, gradients and AdamW state that is ${gib(map + stateBytes)}`;
  const fits = Math.floor((memory.bytes - stateBytes) / perImage);
  throw new OptionError(
    fits >= 1 ? 'batchSize' : 'imgSize',
    `on the CPU one attention map of batch ${o.batchSize} × ${cfg.numHeads} heads × ${tokens}² tokens (${tokens - 1} patches of ` +
      `--img-size ${cfg.imgSize} / --patch-size ${cfg.patchSize}, and [CLS]) takes ${gib(map)}${need}, more than ${memory.describe}: ` +
      (fits >= 1 ? `a --batch-size of at most ${fits}, a smaller --img-size or a larger --patch-size` : 'a smaller --img-size or a larger --patch-size'),
  );
}

/** A model-config message in the options' words: a field that is an option (`patchSize`) named by its flag (`--patch-size`). */
const asFlags = (message: string): string =>
  message.replace(/\b[a-z]+(?:[A-Z][a-z0-9]*)+\b/g, (w) => (Object.hasOwn(PRETRAIN_OPTIONS, w) ? `--${kebab(w)}` : w));

/** The option behind each model-config key whose name differs. */
const CONFIG_KEY_OPTION: Record<string, string> = {
  'order.type': 'order',
  'order.source': 'similaritySource',
  'order.tokens': 'similarityTokens',
  'order.k': 'centers',
  'order.lambda': 'orderLambda',
  'target.type': 'target',
  'target.teacher': 'teacher',
  'target.teacherConfig': 'teacher',
};

/**
 * Refuses a model whose parameters, gradients and AdamW moments alone (16 bytes per parameter) would
 * not fit in this machine's memory, naming the option that made it large, before anything is allocated.
 */
export function checkModelFits(cfg: SemAIMConfig, o: PretrainOptions, memory: MachineMemory = machineMemory()): void {
  const params = semaimParameterCount(cfg);
  const bytes = params * 16;
  if (bytes <= memory.bytes) return checkAttentionFits(cfg, o, memory, bytes);
  const key = o.mlpRatio !== 4 ? 'mlpRatio' : o.embedDim !== undefined ? 'embedDim' : o.depth !== undefined ? 'depth' : 'model';
  throw new OptionError(
    key,
    `the model would have ${(params / 1e9).toFixed(2)} billion parameters (embed ${cfg.embedDim}, depth ${cfg.depth}, ` +
      `MLP ratio ${cfg.mlpRatio}, decoder ${cfg.decoderDepth}): ${(bytes / 2 ** 30).toFixed(1)} GiB for weights, gradients and AdamW state, ` +
      `more than ${memory.describe}`,
  );
}

/** Trainable parameters of a SemAIM model (encoder, decoder, head), counted from its config. */
export function semaimParameterCount(c: SemAIMConfig): number {
  const D = c.embedDim;
  const H = Math.floor(D * (c.mlpRatio ?? 4)); // every MLP's hidden width, the head's too (as the model makes them)
  const P = c.patchSize * c.patchSize * (c.inChans ?? 3);
  const decoderBlock = 2 * D + 4 * (D * D + D) + 2 * D + (D * H + H + H * D + D);
  const out = c.target.type === 'pixels' ? P : c.target.teacherConfig.embedDim;
  const head = D * H + H + H * out + out; // the final norm is the encoder's
  return encoderParameterCount(c) + c.decoderDepth * decoderBlock + head;
}

/** A teacher's encoder config, found and checked as any outside encoder's (resolveEncoder). */
export function readTeacherConfig(path: string): EncoderConfig {
  try {
    return resolveEncoder(path).config;
  } catch (e) {
    throw new OptionError('teacher', `cannot use ${quotedPath(path)} as the teacher: ${(e as Error).message}`);
  }
}

/** What the run asks of the data pipeline. */
export function trainDataRequest(o: PretrainOptions): TrainDataRequest {
  return {
    dataset: o.dataset,
    dataPath: o.dataPath,
    imgSize: o.imgSize,
    syntheticSize: o.syntheticSize,
    seed: o.seed,
    minScale: o.minScale,
    hflip: o.hflip,
    batchSize: o.batchSize,
    numWorkers: o.numWorkers,
    uint8: uploadsUint8(o.upload, o.device),
    imageInput: imageInputOptions(o),
    shuffleBuffer: o.shuffleBuffer,
  };
}

/** Checks that need more than one option. */
export function validatePretrain(o: PretrainOptions): void {
  if ((o.dataset === 'folder' || o.dataset === 'flat' || o.dataset === 'shards') && !o.dataPath)
    throw new OptionError('dataPath', `--dataset ${o.dataset} needs --data-path`);
  checkDevice(o.device);
  checkPrecision(o.precision, o.device);
  if (!(o.epochs > 0)) throw new OptionError('epochs', `must be > 0, got ${o.epochs}`);
  if (o.warmupEpochs >= o.epochs) {
    throw new OptionError('warmupEpochs', `(${o.warmupEpochs}) must be below --epochs (${o.epochs})`);
  }
  peakLr(o, o.batchSize * o.accumIter * o.nprocPerNode * o.nnodes, o);
  checkCudaGraphs(o);
  fusedKindsOf(o);
  checkGradSync(o);
  if (o.dataset === 'synthetic') checkSyntheticSizes(o);
  refuseNoEffectOptions(PRETRAIN_OPTIONS, o as unknown as OptionValues, ['dataPath', 'teacher']);
}

/**
 * `semaim pretrain`'s refusal of order, target, EMA and data options that the chosen ones never read (they were
 * ignored silently, where --teacher with pixel targets was refused): each option's `noEffect` says when. Not in
 * validatePretrain: ablate and object-start share one set of options among runs of several orders.
 */
export function refuseUnusedOptions(o: PretrainOptions): void {
  refuseNoEffectOptions(PRETRAIN_OPTIONS, o as unknown as OptionValues);
}

/** The synthetic set's sizes are known before any work: refuse what its loader would refuse later. */
function checkSyntheticSizes(o: PretrainOptions): void {
  if (o.imgSize < 8) throw new OptionError('imgSize', `the synthetic objects need images of at least 8 pixels, got ${o.imgSize}`);
  // every process takes --batch-size images of each global batch (its loader's batches per epoch: size / (batch × processes))
  const world = o.nprocPerNode * o.nnodes;
  const perStep = o.batchSize * world;
  const batch = world > 1 ? `${o.batchSize} × ${world} processes` : `${o.batchSize}`;
  if (perStep > o.syntheticSize)
    throw new OptionError('batchSize', `${batch} exceeds the ${o.syntheticSize} images of --synthetic-size (an epoch drops its last partial batch)`);
  const batches = Math.floor(o.syntheticSize / perStep);
  if (batches < o.accumIter)
    throw new OptionError(
      'accumIter',
      `${o.accumIter} exceeds the ${batches} batches per epoch of --synthetic-size ${o.syntheticSize} at --batch-size ${batch}`,
    );
}

/**
 * --fused auto: the LayerNorm kernel on a CUDA device where the kernels compile, else none. On an H200
 * (ViT-B/16, batch 256) it made the step 1.08× faster; layernorm-backward, gelu and qkv (backward kernels
 * that also give fc1's and qkv's biases their gradients) and patch-embed are not measured yet.
 * docs/BENCHMARKS.md, "Pre-training step (CUDA)".
 */
export function autoFused(device: string): string {
  return device.startsWith('cuda') && fused.kernelStatus(true).loaded ? 'layernorm' : 'none';
}

/** --fused: the kernel kinds, refused before any work where they cannot run (compiles them on a GPU). */
export function fusedKindsOf(o: Pick<PretrainOptions, 'fused' | 'device'>): fused.FusedKind[] {
  let kinds: fused.FusedKind[];
  try {
    kinds = fused.parseFusedKinds(o.fused === 'auto' ? autoFused(o.device) : o.fused);
  } catch (e) {
    throw new OptionError('fused', (e as Error).message);
  }
  if (!kinds.length) return kinds;
  // The model takes the LayerNorm kernel only with layernorm on; its backward kind alone changed nothing.
  if (kinds.includes('layernorm-backward') && !kinds.includes('layernorm'))
    throw new OptionError('fused', 'layernorm-backward is the backward of the layernorm kernel and has no effect without it: add layernorm');
  if (!o.device.startsWith('cuda')) throw new OptionError('fused', `the fused kernels run on CUDA devices only (got --device ${o.device}); use --fused none`);
  const status = kinds.some(fused.needsKernels) ? fused.kernelStatus(true) : null;
  if (status && !status.loaded) throw new OptionError('fused', `the kernels cannot run here: ${status.message}`);
  return kinds;
}

/** --cuda-graphs: where the captured step can run. */
export function checkCudaGraphs(o: Pick<PretrainOptions, 'cudaGraphs' | 'device' | 'precision' | 'accumIter' | 'dropPath'>): void {
  if (!o.cudaGraphs) return;
  if (o.accumIter > 1)
    throw new OptionError('cudaGraphs', `needs --accum-iter 1 (got ${o.accumIter}): a replayed backward writes the gradients anew instead of adding to them`);
  if (o.dropPath > 0)
    throw new OptionError(
      'cudaGraphs',
      `needs --drop-path 0 (got ${o.dropPath}): the run draws its drop-path masks on the host from its own random stream, which a replayed graph would not draw again`,
    );
  const why = cudaGraphRefusal({ device: o.device, precision: o.precision, cudaBuild: native.cudaBuild });
  if (why) throw new OptionError('cudaGraphs', why);
}
