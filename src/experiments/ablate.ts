// The order ablation (paper Table 1 at small scale): matched-budget pre-trains that differ only in
// the prediction order (same seed, so the same initial weights and data order), each evaluated with
// k-NN and a linear probe on cached features; mean ± std over seeds; ablation.md + ablation.json.
// Finished runs are not repeated: each run folder keeps its evaluation, and an interrupted
// pre-training continues from its checkpoint.
import { yieldToEventLoop } from '../util/event-loop';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute, join, relative } from 'node:path';
import { sha256File } from '../io/file-sha256';
import * as torch from '../torch';
import { PRETRAIN_OPTIONS, PretrainOptions, modelConfigFrom, trainDataRequest, validatePretrain } from '../train/pretrain-options';
import { pretrain } from '../train/pretrain';
import { OptionError, OptionTable, resolveOptions } from '../util/options';
import { DataError } from '../util/errors';
import { VisionTransformer, encoderConfigOf, loadEncoder } from '../semaim';
import { DataFactories, LabelledData, MemoryLabelledData, TrainData, splitClassMismatch } from '../data';
import { checkDevice } from '../run/device';
import { DEFAULT_MAX_IMAGE_PIXELS } from '../data/codecs/limits';
import { imageInputOptions } from '../data/options';
import { StopRequest, StoppedBySignal, catchStopSignals } from '../run/signals';
import { Accuracy } from '../eval/accuracy';
import { FeaturePooling, checkImageShape, disposeFeatures, extractPooledFeatures, setSize } from '../eval/features';
import { knnClassify, parseKs } from '../eval/knn';
import { LinprobeOptions, linprobeOnFeatures } from '../eval/linprobe';
import { AblateOptions, OrderSpec, parseOrderSpec, parseOrders, parseShard, validateAblate } from './ablate-options';
import {
  AblationPlan,
  Measurement,
  PlanInputs,
  PlannedRun,
  describePlan,
  loaderWaitOf,
  planShards,
  epochsForSteps,
  planInputsDiffer,
  planSteps,
  readPlan,
  shardOf,
  timeEvaluation,
  timeSteps,
  planScratch,
  writePlan,
  describeDiff,
} from './ablate-plan';
import { checkUsable, dataRequest } from '../eval/run';
import { pathPlace } from '../run/recipe';
import type { Precision } from '../run/precision';
import { isJsonObject, readJsonObject, readJsonWith } from '../util/json-file';
import { AblationSegprobe, SegScore, ablationSegRecipe } from './ablate-segprobe';
import { DIVERGED_FILE, ablationMarkdown, summarise, type AblationSummary } from './ablate-report';
import { pct } from '../eval/result';
import { jsonText, writeFilesAtomic, writeJsonAtomic } from '../util/safe-write';
import { makeFolder } from '../util/make-folder';
import { makeOutputFolder } from '../util/output-folder';
import { besideProgress, stderrLine } from '../util/console-line';

export type Budget = 'full' | 'small';

/** The name of the baseline row: the same architecture, randomly initialised, not pre-trained. */
export const RANDOM_INIT = 'none (random init)';

export interface AblationRecipe {
  /** PRETRAIN_OPTIONS values shared by every order. */
  pretrain: Record<string, unknown>;
  /** Images per pre-training epoch (a different seeded subset each epoch); undefined = the whole set. */
  pretrainLimit?: number;
  trainLimit?: number;
  testLimit?: number;
  linprobe: LinprobeOptions;
  poolings: FeaturePooling[];
  evalBatchSize: number;
}

/**
 * The recipes. 'full': CIFAR-10 at 32², a ViT with patch 4 (64 patches), width 192, depth 6,
 * 3 heads, a 6-block decoder, 100 epochs of batch 256 on all 50k images; the probe on all 50k/10k
 * features — a GPU job of minutes per order. 'small': a CPU-friendly cut (width 96, depth 4, 5000
 * images per epoch, 5 epochs, 5000/1000 images for the evaluation).
 */
export function ablationRecipe(budget: Budget): AblationRecipe {
  const common = {
    model: 'vit_tiny',
    imgSize: 32,
    patchSize: 4,
    mlpRatio: 4,
    blur: false,
    normPix: true,
    minScale: 0.2,
    hflip: true,
    weightDecay: 0.05,
    beta1: 0.9,
    beta2: 0.95,
    clipGrad: 3,
    logEvery: 20,
    keepLast: 1,
  };
  if (budget === 'full') {
    return {
      pretrain: {
        ...common,
        embedDim: 192,
        depth: 6,
        numHeads: 3,
        decoderDepth: 6,
        batchSize: 256,
        epochs: 100,
        warmupEpochs: 10,
        blr: 5e-4,
        checkpointEvery: 1000,
      },
      linprobe: { epochs: 90, batchSize: 256, blr: 0.1, warmupEpochs: 0, minLr: 0, weightDecay: 0, momentum: 0.9, optimizer: 'sgd' },
      poolings: ['cls', 'mean'],
      evalBatchSize: 512,
    };
  }
  return {
    pretrain: { ...common, embedDim: 96, depth: 4, numHeads: 3, decoderDepth: 4, batchSize: 64, epochs: 5, warmupEpochs: 1, blr: 1e-3, checkpointEvery: 200 },
    pretrainLimit: 5000,
    trainLimit: 5000,
    testLimit: 1000,
    linprobe: { epochs: 30, batchSize: 256, blr: 0.1, warmupEpochs: 0, minLr: 0, weightDecay: 0, momentum: 0.9, optimizer: 'sgd' },
    poolings: ['cls', 'mean'],
    evalBatchSize: 256,
  };
}

/** At most `batches` batches per epoch of `data` (the budget cap on images per epoch). */
export function limitTrainData(data: TrainData, batches: number): TrainData {
  if (batches >= data.batchesPerEpoch) return data;
  return {
    batchesPerEpoch: batches,
    async *epoch(epoch, start) {
      let i = start;
      if (i >= batches) return;
      for await (const b of data.epoch(epoch, start)) {
        yield b;
        if (++i >= batches) return;
      }
    },
    close: () => data.close(),
  };
}

export interface PoolingScores {
  /** k-NN accuracy per k. */
  knn: { k: number; top1: number; top5: number }[];
  linprobe: { top1: number; top5: number; perClass: (number | null)[] };
}

export interface AblationRun {
  order: string;
  seed: number;
  runDir: string;
  /**
   * seconds: the pre-training's training time, over every call that continued it (until its last
   * checkpoint); null for the random-init baseline and for a run continued from a checkpoint that does not record it.
   */
  pretrain: {
    steps: number;
    firstLoss: number | null;
    lastLoss: number | null;
    seconds: number | null;
    checkpoint: string | null;
    sha256: string;
    /** Images pre-trained on per epoch (whole batches); absent for the baseline and in runs stored before it was recorded. */
    imagesPerEpoch?: number;
  };
  /** Evaluation per pooling ('cls', 'mean'). */
  eval: Record<string, PoolingScores>;
  /** The images the evaluation used (unusable ones left out); absent in runs stored before it was recorded. */
  evalImages?: { train: number; test: number };
  /**
   * The --seed whose evaluation images it was scored on (it seeds --train-limit's and --test-limit's
   * subsets, and makes the synthetic data); absent in runs stored before it was recorded.
   */
  evalSeed?: number;
  evalSeconds: number;
  /** What must match for a finished run to be reused. */
  fingerprint: Record<string, unknown>;
  /** With --eval segprobe: the segmentation probe (kept in the run folder's ablation-segprobe.json). */
  segprobe?: SegScore;
}

/**
 * A pre-training that diverged (NaN/Inf loss): not evaluated, recorded in its folder's
 * ablation-diverged.json, so that the other runs still run and are tabulated, and a later call (or the
 * parent of --jobs shards) knows it without training it again: runs are deterministic, it diverges again.
 */
export interface DivergedRun {
  order: string;
  seed: number;
  runDir: string;
  /** The step it diverged by. */
  step: number;
  /** Its last good checkpoint (null when none was written). */
  checkpoint: string | null;
  fingerprint: Record<string, unknown>;
}

/** The run's divergence record when it was made with this recipe (`fp`); else null (it is trained again). */
function readDiverged(runDir: string, fp: Record<string, unknown>): DivergedRun | null {
  const path = join(runDir, DIVERGED_FILE);
  if (!existsSync(path)) return null;
  try {
    const d = readJsonWith(path, ['fingerprint']) as unknown as DivergedRun;
    return JSON.stringify(currentFingerprint(d.fingerprint)) === JSON.stringify(fp) ? { ...d, runDir } : null;
  } catch {
    return null;
  }
}

/**
 * A finished run's stored evaluation (ablation-eval.json), or null when it is unusable: then it is
 * moved aside (kept, not deleted) and the run is evaluated again from its checkpoint.
 */
function readCachedRun(path: string, log: (line: string) => void): AblationRun | null {
  try {
    const run = readJsonWith(path, ['fingerprint', 'eval', 'pretrain']) as unknown as AblationRun;
    if (!Object.values(run.eval).every(isJsonObject)) throw new Error(`${path}: 'eval' holds a score that is not an object`);
    return run;
  } catch (e) {
    const aside = `${path}.unusable-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    if (existsSync(path)) renameSync(path, aside); // (a parallel job may have moved it already)
    log(`warning: ${(e as Error).message}; moved to ${aside}, evaluating the run again`);
    return null;
  }
}

/** The checkpoint a stored evaluation scored, where it is now: in `runDir` if it was in the run's folder (moved or copied since). */
function checkpointIn(stored: AblationRun, runDir: string): string {
  const at = stored.pretrain.checkpoint!;
  const inRun = relative(stored.runDir, at);
  return inRun && !inRun.startsWith('..') && !isAbsolute(inRun) ? join(runDir, inRun) : at;
}

/** Why a stored evaluation's checkpoint no longer holds the weights it scored (its model file's SHA-256; damaged, replaced or removed), or null when it does. */
function scoredCheckpointChange(stored: AblationRun, runDir: string): string | null {
  if (!stored.pretrain.checkpoint || typeof stored.pretrain.sha256 !== 'string') return null;
  const weights = join(checkpointIn(stored, runDir), 'model.safetensors');
  let sha256: string;
  try {
    sha256 = sha256File(weights); // (remembered by the file's inode and times: read once per process)
  } catch {
    return `its checkpoint ${weights} is gone since it was evaluated`;
  }
  return sha256 === stored.pretrain.sha256 ? null : `its checkpoint ${weights} changed since it was evaluated`;
}

/** Options that do not change results (where and how fast a run goes). */
const NEUTRAL = new Set([
  'outDir',
  'threads',
  'numWorkers',
  'device',
  'resume',
  'logEvery',
  'checkpointEvery',
  'keepLast',
  // where the processes run (a run may resume with other processes and the same global batch)
  'nprocPerNode',
  'nnodes',
  'nodeRank',
  'masterAddr',
  'masterPort',
  // how the same step is executed on a GPU (a captured graph, fused kernels)
  'cudaGraphs',
  'fused',
]);

/**
 * Options added after fingerprints were first recorded: left out at the value a run recorded before them
 * had (the option table's absentMeans, as pretrain's own resume reads it, or their default), so earlier runs still match.
 */
const ADDED_LATER: Record<string, unknown> = {
  ...Object.fromEntries(
    Object.entries(PRETRAIN_OPTIONS as OptionTable)
      .filter(([, spec]) => spec.absentMeans !== undefined)
      .map(([k, spec]) => [k, spec.absentMeans]),
  ),
  // (before shard datasets, which alone read it)
  shuffleBuffer: (PRETRAIN_OPTIONS as OptionTable).shuffleBuffer.default,
  // the loader handed normalised float32 (and orderPrecision: fp32, its absentMeans)
  upload: 'float32',
  maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
  exifOrientation: 'ignore',
  verify: true,
  gradCompress: 'none',
};

function recipeOptions(pretrainOptions: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(pretrainOptions)
      .filter(([k, v]) => !NEUTRAL.has(k) && v !== undefined && v !== null && ADDED_LATER[k] !== v)
      // where a path points, not how it was written (a stored relative one: from where the ablation runs now)
      .map(([k, v]) => [k, (PRETRAIN_OPTIONS as OptionTable)[k]?.path && typeof v === 'string' ? pathPlace(v, process.cwd()) : v])
      .sort(),
  );
}

/** A stored fingerprint as this version would record it (options since made neutral left out). */
export function currentFingerprint(stored: Record<string, unknown>): Record<string, unknown> {
  const p = stored.pretrain;
  return p && typeof p === 'object' ? { ...stored, pretrain: recipeOptions(p as Record<string, unknown>) } : stored;
}

export function fingerprint(pretrainOptions: Record<string, unknown>, recipe: AblationRecipe, ks: number[]): Record<string, unknown> {
  const pretrain = recipeOptions(pretrainOptions);
  return {
    pretrain,
    pretrainLimit: recipe.pretrainLimit ?? null,
    trainLimit: recipe.trainLimit ?? null,
    testLimit: recipe.testLimit ?? null,
    linprobe: recipe.linprobe,
    poolings: recipe.poolings,
    evalBatchSize: recipe.evalBatchSize,
    ks,
  };
}

export interface AblationResult {
  format: 'semaim.ablation/1';
  createdAt: string;
  command?: string;
  budget: Budget;
  options: AblateOptions;
  recipe: AblationRecipe;
  /** The options every pre-training got (order, tokens of S, seed and out-dir differ). */
  pretrainOptions: Omit<PretrainOptions, 'order' | 'seed' | 'outDir'>;
  headlineK: number;
  runs: AblationRun[];
  /** Pre-trainings that diverged (not evaluated; not in `runs`). */
  diverged: DivergedRun[];
  summary: AblationSummary[];
  seconds: number;
  /** false when --stop-after-minutes (or --plan-only, or a shard) ended the call before every run was done. */
  complete: boolean;
  /** The runs the whole ablation has (complete: runs.length === planned). */
  planned: number;
  plan?: AblationPlan;
  markdown: string;
  /** With --eval segprobe: what the column measures. */
  segprobe?: string;
}

export interface AblationHooks {
  log?: (line: string) => void;
  /** The command line, recorded in ablation.md. */
  command?: string;
  /** Passed to every pre-training (tests stop runs through it); requested before a run starts, the ablation stops there (StoppedBySignal). */
  stop?: StopRequest;
  onStep?: (step: number) => void;
  /**
   * --jobs N: runs shards 0..N-1 ('i/N') at once (the CLI starts one process per shard) and resolves
   * when all have ended; rejects if one failed. Without it --jobs > 1 is refused.
   */
  runShards?: (shards: string[], o: { stopAfterMinutes?: number }) => Promise<void>;
  /** --jobs N with --budget-minutes: N processes each measure (timeSteps, timeEvaluation) at once. */
  measureInProcesses?: (count: number) => Promise<Measurement[]>;
}

/** The length a plan chose (epochs and warm-up epochs). */
export interface PlannedLength {
  epochs: number;
  warmupEpochs: number;
}

/**
 * The resolved options of the pre-training run for one row ('semantic', 'semantic:self') and seed;
 * `planned` (from --budget-minutes) sets the epochs and warm-up.
 */
export function pretrainOptionsFor(
  o: AblateOptions,
  recipe: AblationRecipe,
  row: string,
  seed: number,
  runDir: string,
  planned?: PlannedLength,
): PretrainOptions {
  const spec: OrderSpec = parseOrderSpec(row);
  const overrides: Record<string, unknown> = {};
  for (const k of [
    'epochs',
    'maxSteps',
    'batchSize',
    'embedDim',
    'depth',
    'numHeads',
    'decoderDepth',
    'patchSize',
    'imgSize',
    'blr',
    'decayClsToken',
    'orderPrecision',
    'orderVariant',
  ] as const) {
    if (o[k] !== undefined) overrides[k] = o[k];
  }
  if (planned) Object.assign(overrides, planned);
  const p = resolveOptions(PRETRAIN_OPTIONS, recipe.pretrain, overrides, {
    order: spec.order,
    similarityTokens: spec.tokens,
    seed,
    outDir: runDir,
    dataset: o.dataset,
    dataPath: o.dataPath,
    numWorkers: o.numWorkers,
    device: o.device,
    maxImagePixels: o.maxImagePixels,
    exifOrientation: o.exifOrientation,
    threads: o.threads,
    precision: o.precision,
    cudaGraphs: o.cudaGraphs,
    fused: o.fused,
    resume: true,
  });
  if (p.warmupEpochs >= p.epochs) p.warmupEpochs = p.epochs / 10;
  return p;
}

/** The folder name of a row's run ('semantic:self' → 'semantic-self-seed0'). */
export function runDirName(row: string, seed: number): string {
  return `${row === RANDOM_INIT ? 'random-init' : row.replace(/:/g, '-')}-seed${seed}`;
}

async function evaluateEncoder(
  encoder: VisionTransformer,
  train: LabelledData,
  test: LabelledData,
  recipe: AblationRecipe,
  ks: number[],
  seed: number,
  precision: Precision,
  signal: AbortSignal,
): Promise<{ scores: Record<string, PoolingScores>; images: { train: number; test: number } }> {
  const out: Record<string, PoolingScores> = {};
  let images = { train: 0, test: 0 };
  // One encoder pass per split gives every pooling.
  const fo = { batchSize: recipe.evalBatchSize, precision, label: null, signal };
  const trs = await extractPooledFeatures(encoder, train, recipe.poolings, fo);
  try {
    const tes = await extractPooledFeatures(encoder, test, recipe.poolings, fo);
    try {
      // a split whose every image was unusable (left out) is the data's fault, as in `semaim knn | linprobe`: its
      // k-NN and probe scored NaN over no test image, and ablation-eval.json kept them (null) for every later call
      const first = recipe.poolings[0];
      checkUsable({ train: setSize(trs.get(first)!), test: setSize(tes.get(first)!) }, { train: train.size, test: test.size });
      for (const pooling of recipe.poolings) {
        const tr = trs.get(pooling)!;
        const te = tes.get(pooling)!;
        images = { train: setSize(tr), test: setSize(te) };
        const knn = knnClassify(tr, te, { ks, numClasses: train.numClasses, label: null });
        const lp = await linprobeOnFeatures(tr, te, train.numClasses, { ...recipe.linprobe, seed, label: null, signal });
        lp.probe.dispose();
        const a: Accuracy = lp.accuracy;
        out[pooling] = {
          knn: knn.map((r) => ({ k: r.k, top1: r.accuracy.top1, top5: r.accuracy.top5 })),
          linprobe: { top1: a.top1, top5: a.top5, perClass: a.perClass },
        };
      }
    } finally {
      disposeFeatures(...tes.values());
    }
  } finally {
    disposeFeatures(...trs.values());
  }
  return { scores: out, images };
}

/** The baseline encoder: the architecture of the pre-training options, initialised from `seed` (frozen, eval mode). */
function randomInitEncoder(options: PretrainOptions, seed: number, device: torch.Device): VisionTransformer {
  torch.manualSeed(seed);
  const encoder = new VisionTransformer(encoderConfigOf(modelConfigFrom(options))).initWeights().to({ device }).eval();
  for (const t of encoder.parameters()) t.requiresGrad = false;
  return encoder;
}

/** Refuses a finished run's stored evaluation (`cached`) made with another recipe than `fp`. */
function refuseOtherRecipe(cached: string, stored: Record<string, unknown>, fp: Record<string, unknown>): void {
  if (JSON.stringify(currentFingerprint(stored)) !== JSON.stringify(fp))
    throw new Error(`${cached} was made with another recipe (${describeDiff(stored, fp)}); use a new --out-dir`);
}

/**
 * A started pre-training continues only with what shaped it: its options and images per epoch (the
 * evaluation's part of the recipe may still change, nothing was evaluated yet). config.json keeps the
 * options, ablation-pretrain.json the limit (unknown for a run started before that file was written).
 */
function refuseOtherPretraining(runDir: string, fp: Record<string, unknown>): void {
  const started = join(runDir, 'config.json');
  const limitFile = join(runDir, 'ablation-pretrain.json');
  if (!existsSync(started)) return;
  const now = { pretrain: fp.pretrain, pretrainLimit: fp.pretrainLimit };
  const before = {
    pretrain: recipeOptions(readJsonWith(started, ['options']).options as Record<string, unknown>),
    pretrainLimit: existsSync(limitFile) ? readJsonObject(limitFile).pretrainLimit : fp.pretrainLimit,
  };
  if (JSON.stringify(before) !== JSON.stringify(now))
    throw new Error(`${runDir} holds a pre-training with other options (${describeDiff(before, now)}); use a new --out-dir`);
}

/**
 * Before any work: every run already in the out-dir (evaluated, or its pre-training started) was made
 * with this call's recipe. Checked run by run as they came, a new run listed before a finished one (a row
 * added in front, another shard's run) was trained and evaluated first, and the folder then held runs of
 * two recipes that neither call could continue. (An unreadable stored evaluation is left to the run's turn.)
 */
function refuseOtherRecipes(runs: { row: string; runDir: string; fp: Record<string, unknown> }[]): void {
  for (const p of runs) {
    const cached = join(p.runDir, 'ablation-eval.json');
    let stored: Record<string, unknown> | null = null;
    try {
      if (existsSync(cached)) stored = readJsonWith(cached, ['fingerprint']).fingerprint as Record<string, unknown>;
    } catch {
      stored = null;
    }
    if (stored && isJsonObject(stored)) refuseOtherRecipe(cached, stored, p.fp);
    else if (p.row !== RANDOM_INIT) refuseOtherPretraining(p.runDir, p.fp);
  }
}

/** The runs of an ablation in the order they are done: rows × seeds, then the baseline × seeds. */
function planRuns(rows: string[], seeds: number[], outDir: string): { row: string; seed: number; runDir: string; key: string }[] {
  return rows.flatMap((row) => seeds.map((seed) => ({ row, seed, runDir: join(outDir, 'runs', runDirName(row, seed)), key: `${row}/${seed}` })));
}

/** The plan inputs of this call (what a stored plan must match). */
function planInputs(o: AblateOptions, rows: string[], recipe: AblationRecipe, ks: number[]): PlanInputs {
  const probe = pretrainOptionsFor(o, recipe, rows.find((r) => r !== RANDOM_INIT) ?? 'raster', o.seed, '/plan');
  const fp = fingerprint({ ...probe, epochs: undefined, warmupEpochs: undefined, order: undefined, similarityTokens: undefined, seed: undefined }, recipe, ks);
  return { budgetMinutes: o.budgetMinutes!, rows, seeds: o.seeds, seed: o.seed, baseline: o.baseline, recipe: fp };
}

/**
 * The command's exit code: 75 while runs other than diverged ones are still to do (the same command
 * continues them; scripts re-run on 75), then 1 for a diverged run (a re-run diverges again), else 0.
 */
export function ablationExitCode(r: Pick<AblationResult, 'runs' | 'diverged' | 'planned'>): number {
  if (r.runs.length + r.diverged.length < r.planned) return 75;
  return r.diverged.length ? 1 : 0;
}

/**
 * What this process measures for a plan: the step time of every row (the real loop on random
 * images) and one run's evaluation at the sizes of the evaluation data.
 */
export async function measureAblation(o: AblateOptions, f: DataFactories, log: (l: string) => void = () => {}, stop?: StopRequest): Promise<Measurement> {
  const { recipe, rows, ks } = resolveAblation(o);
  const sizes = await evalSizes(o, f, recipe, rows);
  const steps: Measurement['steps'] = {};
  for (const row of rows.filter((r) => r !== RANDOM_INIT)) {
    const opts = pretrainOptionsFor(o, recipe, row, o.seed, '/plan');
    steps[row] = await timeSteps(opts, o.outDir, o.device === 'cpu' ? 2 : 5, o.device === 'cpu' ? 4 : 10, stop);
    log(`  measured '${row}': ${(1000 * steps[row].step).toFixed(0)} ms per step, ${steps[row].startup.toFixed(1)} s per run besides the steps`);
  }
  const opts = pretrainOptionsFor(o, recipe, rows[0] === RANDOM_INIT ? 'raster' : rows[0], o.seed, '/plan');
  const evalSeconds = await timeEvaluation(opts, {
    sizes: { train: sizes.train, test: sizes.test },
    numClasses: sizes.numClasses,
    poolings: recipe.poolings,
    ks,
    evalBatchSize: recipe.evalBatchSize,
    linprobe: recipe.linprobe,
    precision: o.precision,
    device: checkDevice(o.device),
  });
  log(`  measured evaluation: ${evalSeconds.toFixed(1)} s per run`);
  const segSeconds = await timeSegprobe(o, opts, f, recipe.evalBatchSize);
  if (segSeconds !== null) log(`  measured segmentation probe: ${segSeconds.toFixed(1)} s per run`);
  return { steps, evalSeconds: evalSeconds + (segSeconds ?? 0) };
}

/**
 * With --eval segprobe: the seconds of one run's segmentation probe, measured whole (its data, features
 * and epochs) on a random-init encoder; null without it. Each run pays it after its k-NN and probe.
 */
async function timeSegprobe(o: AblateOptions, options: PretrainOptions, f: DataFactories, evalBatchSize: number): Promise<number | null> {
  const segRecipe = ablationSegRecipe(o, o.budget);
  if (!segRecipe) return null;
  const t0 = performance.now();
  const seg = await AblationSegprobe.open(segRecipe, f.makeSegData, options.imgSize, o.seed, { evalBatchSize, precision: o.precision }, imageInputOptions(o));
  const scratch = planScratch(o.outDir); // score() keeps its result there
  try {
    await seg.score(scratch, o.seed, null, 'random-init', () => randomInitEncoder(options, o.seed, checkDevice(o.device)));
    return (performance.now() - t0) / 1000;
  } finally {
    await seg.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The sizes of the evaluation splits (opened and closed again). */
async function evalSizes(
  o: AblateOptions,
  f: DataFactories,
  recipe: AblationRecipe,
  rows: string[],
): Promise<{ train: number; test: number; numClasses: number }> {
  const imgSize = pretrainOptionsFor(o, recipe, rows[0] === RANDOM_INIT ? 'raster' : rows[0], o.seed, '/x').imgSize;
  const evalOptions = { ...o, trainLimit: recipe.trainLimit, testLimit: recipe.testLimit };
  const train = await f.makeEvalData(dataRequest(evalOptions, 'train', imgSize));
  try {
    const test = await f.makeEvalData(dataRequest(evalOptions, 'test', imgSize));
    await test.close();
    return { train: train.size, test: test.size, numClasses: train.numClasses };
  } finally {
    await train.close();
  }
}

/** Recipe, rows and k list of a call. */
function resolveAblation(o: AblateOptions): { recipe: AblationRecipe; rows: string[]; orders: string[]; ks: number[] } {
  const orders = parseOrders(o.orders);
  const ks = parseKs(o.k);
  const base = ablationRecipe(o.budget);
  const recipe: AblationRecipe = {
    ...base,
    pretrainLimit: o.pretrainLimit ?? base.pretrainLimit,
    trainLimit: o.trainLimit ?? base.trainLimit,
    testLimit: o.testLimit ?? base.testLimit,
    linprobe: { ...base.linprobe, epochs: o.linprobeEpochs ?? base.linprobe.epochs, batchSize: o.linprobeBatchSize ?? base.linprobe.batchSize },
    poolings: o.pooling === 'cls' || o.pooling === 'mean' ? [o.pooling] : base.poolings,
  };
  return { recipe, orders, rows: o.baseline ? [...orders, RANDOM_INIT] : orders, ks };
}

/**
 * Loader seconds per batch of the real pre-training data (after a few batches that start the workers and warm up).
 * An epoch too short for them all keeps its last batch to time, so a short epoch is measured (its time
 * then includes some warm-up), not taken to cost nothing; only an empty epoch gives 0.
 */
export async function timeLoader(data: TrainData, batches = 8, skip = 3): Promise<number> {
  const it = data.epoch(0, 0)[Symbol.asyncIterator]();
  const warmUp = Math.min(skip, data.batchesPerEpoch - 1);
  for (let i = 0; i < warmUp; i++) if ((await it.next()).done) return 0;
  const t0 = performance.now();
  let n = 0;
  for (; n < batches; n++) if ((await it.next()).done) break;
  await it.return?.(undefined);
  return n ? (performance.now() - t0) / 1000 / n : 0;
}

/** Makes the plan of this call, or reuses the stored one. */
async function makePlan(
  o: AblateOptions,
  f: DataFactories,
  hooks: AblationHooks,
  ctx: {
    recipe: AblationRecipe;
    rows: string[];
    ks: number[];
    seeds: number[];
    /** The call's start, by the monotonic clock (performance.now(), ms). */
    t0: number;
    log: (l: string) => void;
  },
): Promise<AblationPlan> {
  const inputs = planInputs(o, ctx.rows, ctx.recipe, ctx.ks);
  const stored = readPlan(o.outDir);
  if (stored) {
    const { refuse, extended } = planInputsDiffer({ ...stored.inputs, recipe: currentFingerprint(stored.inputs.recipe) }, inputs);
    if (refuse)
      throw new Error(`${join(o.outDir, 'plan.json')} was planned for other settings (${refuse}); use a new --out-dir, or the settings it was planned for`);
    ctx.log(
      `using the stored plan ${join(o.outDir, 'plan.json')}` +
        (extended ? ` (planned for other runs: ${extended}; the new runs get the same ${stored.steps} steps, the budget no longer holds)` : ''),
    );
    return stored;
  }
  if (o.shard !== undefined)
    throw new Error(`--shard with --budget-minutes needs ${join(o.outDir, 'plan.json')}: run without --shard (--jobs starts the shards after planning)`);
  ctx.log(
    `planning for ${o.budgetMinutes} min: timing ${ctx.rows.filter((r) => r !== RANDOM_INIT).length} rows' steps and one evaluation` +
      (o.jobs > 1 ? ` in ${o.jobs} processes at once` : ''),
  );
  let measured: Measurement;
  if (o.jobs > 1) {
    if (!hooks.measureInProcesses) throw new Error('--jobs > 1 needs a way to start processes (the command line has one)');
    const all = await hooks.measureInProcesses(o.jobs);
    // The slowest process of each row: the shards run at once, as they were measured.
    measured = {
      steps: Object.fromEntries(
        Object.keys(all[0].steps).map((r) => [
          r,
          {
            step: Math.max(...all.map((m) => m.steps[r].step)),
            startup: Math.max(...all.map((m) => m.steps[r].startup)),
          },
        ]),
      ),
      evalSeconds: Math.max(...all.map((m) => m.evalSeconds)),
    };
  } else {
    measured = await measureAblation(o, f, ctx.log, hooks.stop);
  }
  // The real loader, for one run's options.
  const first = pretrainOptionsFor(o, ctx.recipe, ctx.rows[0] === RANDOM_INIT ? 'raster' : ctx.rows[0], o.seed, '/plan');
  let data = await f.makeTrainData(trainDataRequest(first));
  let loaderSecondsPerBatch: number;
  let perEpoch: number;
  try {
    if (ctx.recipe.pretrainLimit) data = limitTrainData(data, Math.max(1, Math.floor(ctx.recipe.pretrainLimit / first.batchSize)));
    perEpoch = data.batchesPerEpoch;
    loaderSecondsPerBatch = await timeLoader(data);
  } finally {
    await data.close();
  }
  const workers = first.numWorkers ?? 1;
  const loaderWait = loaderWaitOf(loaderSecondsPerBatch, workers);
  const spentSeconds = (performance.now() - ctx.t0) / 1000;
  const runs: PlannedRun[] = ctx.rows.flatMap((row) => ctx.seeds.map((seed) => ({ key: `${row}/${seed}`, row: row === RANDOM_INIT ? null : row })));
  const budgetSeconds = o.budgetMinutes! * 60;
  const r = planSteps({ budgetSeconds, spentSeconds, runs, measured, loaderWait, jobs: o.jobs });
  if (r.steps < 1) {
    throw new Error(
      `a budget of ${o.budgetMinutes} min does not cover even the evaluations and one step per run (predicted ` +
        `${(r.predictedSeconds / 60).toFixed(1)} min); raise --budget-minutes, or lower --seeds, --train-limit or --test-limit`,
    );
  }
  const { epochs, steps } = epochsForSteps(r.steps, perEpoch);
  const warmRatio = Number(ctx.recipe.pretrain.warmupEpochs) / Number(ctx.recipe.pretrain.epochs);
  const plan: AblationPlan = {
    format: 'semaim.ablation-plan/1',
    createdAt: new Date().toISOString(),
    inputs,
    jobs: o.jobs,
    device: o.device,
    threads: o.threads ?? null,
    measured: { ...measured, processes: o.jobs, loaderSecondsPerBatch, loaderWorkers: workers, spentSeconds },
    batchesPerEpoch: perEpoch,
    steps,
    epochs,
    warmupEpochs: Number((epochs * warmRatio).toFixed(6)),
    predictedSeconds: r.predictedSeconds,
    shards: r.shards,
  };
  if (steps < 50) ctx.log(`warning: the plan gives only ${steps} steps per pre-training; the orders will hardly differ`);
  writePlan(o.outDir, plan);
  return plan;
}

/** Runs the whole ablation; writes `<out-dir>/ablation.{md,json}` (and plan.json with --budget-minutes). */
export async function ablate(o: AblateOptions, f: DataFactories, hooks: AblationHooks = {}): Promise<AblationResult> {
  // an ablation that fails (data it refuses once opened, a stop before the first run) takes back the
  // --out-dir folders it made while they are still empty: never one that was there, nor one holding a run
  const made = { takeBack: () => {} };
  try {
    return await ablateJob(o, f, hooks, made);
  } catch (e) {
    made.takeBack();
    throw e;
  }
}

async function ablateJob(o: AblateOptions, f: DataFactories, hooks: AblationHooks, made: { takeBack: () => void }): Promise<AblationResult> {
  const log = hooks.log ? besideProgress(hooks.log) : stderrLine;
  validateAblate(o);
  // Durations and the --stop-after-minutes limit by the monotonic clock: with Date.now(), a wall clock stepped
  // forward an hour (NTP) ended a 60-minute limit at once, and the plan's spent seconds and the call's went wrong.
  const t0 = performance.now();
  const device = checkDevice(o.device);
  const { recipe, rows: rowNames, ks } = resolveAblation(o);
  const headlineK = ks.includes(20) ? 20 : ks[0];
  const budget = o.budget;
  const segRecipe = ablationSegRecipe(o, budget);
  let segDescription: string | undefined;
  const outDir = o.outDir;
  const seedList = Array.from({ length: o.seeds }, (_, s) => o.seed + s);
  const shard = o.shard !== undefined ? parseShard(o.shard) : null;
  // Validate every pre-training configuration before any work (with the recipe's length; a plan only changes it).
  for (const row of rowNames) {
    const opts = pretrainOptionsFor(o, recipe, row === RANDOM_INIT ? 'raster' : row, o.seed, '/x');
    validatePretrain(opts);
    modelConfigFrom(opts);
  }
  made.takeBack = makeOutputFolder(outDir);
  const plan = o.budgetMinutes !== undefined ? await makePlan(o, f, hooks, { recipe, rows: rowNames, ks, seeds: seedList, t0, log }) : undefined;
  if (plan) log(describePlan(plan, shard ? shard.count : o.jobs));
  const planned: PlannedLength | undefined = plan ? { epochs: plan.epochs, warmupEpochs: plan.warmupEpochs } : undefined;
  const all = planRuns(rowNames, seedList, outDir).map((p) => ({
    ...p,
    // The baseline has the architecture of the others (its pre-training options only name it).
    options: pretrainOptionsFor(o, recipe, p.row === RANDOM_INIT ? 'raster' : p.row, p.seed, p.runDir, planned),
  }));
  for (const p of all) {
    validatePretrain(p.options);
    modelConfigFrom(p.options);
  }
  refuseOtherRecipes(all.map((p) => ({ row: p.row, runDir: p.runDir, fp: fingerprint(p.options, recipe, ks) })));
  const pretrainOptions = { ...all[0].options, order: undefined, similarityTokens: undefined, seed: undefined, outDir: undefined };
  const diverged: DivergedRun[] = [];
  const finish = (runs: AblationRun[], complete: boolean): AblationResult => {
    const partial: Omit<AblationResult, 'markdown'> = {
      format: 'semaim.ablation/1',
      createdAt: new Date().toISOString(),
      command: hooks.command,
      budget,
      options: o,
      recipe,
      pretrainOptions,
      headlineK,
      runs,
      diverged,
      summary: summarise(runs, rowNames, recipe.poolings, headlineK, diverged),
      seconds: (performance.now() - t0) / 1000,
      complete,
      planned: all.length,
      ...(plan ? { plan } : {}),
      ...(segDescription ? { segprobe: segDescription } : {}),
    };
    const markdown = ablationMarkdown(partial);
    const result: AblationResult = { ...partial, markdown };
    // Also with no run finished yet (a --stop-after-minutes before the first): the command says it
    // wrote them, and an older table of other settings must not stand for this call's.
    if (!shard && !o.planOnly) {
      // the table and its data together (a kill between the renames is completed by the next writer)
      writeFilesAtomic([
        [join(outDir, 'ablation.json'), jsonText(result)],
        [join(outDir, 'ablation.md'), markdown],
      ]);
    }
    return result;
  };
  if (o.planOnly) return finish([], false);

  // --jobs N: the shards run in their own processes; this one then collects their finished runs.
  if (o.jobs > 1) {
    if (!hooks.runShards) throw new Error('--jobs > 1 needs a way to start processes (the command line has one)');
    const shards = Array.from({ length: o.jobs }, (_, i) => `${i}/${o.jobs}`);
    log(`running ${all.length} runs in ${o.jobs} processes (logs: ${join(outDir, 'logs')})`);
    const left = o.stopAfterMinutes !== undefined ? Math.max(0.1, o.stopAfterMinutes - (performance.now() - t0) / 60_000) : undefined;
    await hooks.runShards(shards, { stopAfterMinutes: left === undefined ? undefined : Number(left.toFixed(3)) });
  }
  const keys = all.map((p) => p.key);
  const assigned =
    plan && shard
      ? planShards(
          plan,
          all.map((p) => ({ key: p.key, row: p.row === RANDOM_INIT ? null : p.row })),
          shard.count,
        )
      : null;
  const mine = shard ? all.filter((_, i) => shardOf(keys, i, shard.count, assigned) === shard.index) : all;

  const deadline = o.stopAfterMinutes !== undefined ? t0 + o.stopAfterMinutes * 60_000 : Infinity;
  const stop: StopRequest = hooks.stop ?? { requested: false };
  // The timer and the deadline run by monotonic clocks (libuv's, performance.now()): once the timer has fired the
  // time is up, whatever performance.now() says (a timer may fire early by libuv's cached clock), or its stop read as an interruption.
  let timerFired = false;
  const timer = Number.isFinite(deadline)
    ? setTimeout(
        () => {
          timerFired = true;
          stop.requested = true;
        },
        Math.max(0, deadline - performance.now()),
      )
    : null;
  timer?.unref();
  const timeUp = () => timerFired || performance.now() >= deadline;

  const imgSize = all[0].options.imgSize;
  const evalOptions = { ...o, trainLimit: recipe.trainLimit, testLimit: recipe.testLimit };
  const ev: { train: LabelledData | null; test: LabelledData | null } = { train: null, test: null };
  // The k-NN and the linear probe of every run need this many training images: found short only after the first
  // pre-training, the ablation stopped there (the probe trains on at least 2 features).
  const checkEvalTrainSize = (n: number, what: string): void => {
    const kmax = ks[ks.length - 1];
    const images = `${n} ${what}${n === 1 ? '' : 's'}`;
    if (n < 2) throw new DataError(`the evaluation data has ${images}: the linear probe of every run needs at least 2`);
    if (kmax > n) throw new OptionError('k', `k = ${kmax} exceeds the ${images} of the evaluation data`);
  };
  const openEval = async (): Promise<{ train: LabelledData; test: LabelledData }> => {
    if (ev.train && ev.test) return { train: ev.train, test: ev.test };
    const tr = await f.makeEvalData(dataRequest(evalOptions, 'train', imgSize));
    try {
      checkEvalTrainSize(tr.size, 'training image');
    } catch (e) {
      await tr.close();
      throw e;
    }
    let te: LabelledData;
    try {
      te = await f.makeEvalData(dataRequest(evalOptions, 'test', imgSize));
    } catch (e) {
      await tr.close();
      throw e;
    }
    const mismatch = splitClassMismatch(tr, te);
    if (mismatch) {
      await tr.close();
      await te.close();
      throw new Error(mismatch);
    }
    if (!o.cacheEvalImages) {
      [ev.train, ev.test] = [tr, te];
      return { train: tr, test: te };
    }
    // Decoded once for every run of this call.
    const tc = performance.now();
    let train: MemoryLabelledData;
    let test: MemoryLabelledData;
    try {
      train = await MemoryLabelledData.load(tr, recipe.evalBatchSize);
      test = await MemoryLabelledData.load(te, recipe.evalBatchSize);
    } finally {
      await tr.close();
      await te.close();
    }
    [ev.train, ev.test] = [train, test];
    log(`evaluation images decoded into memory: ${train.size} train, ${test.size} test (${((performance.now() - tc) / 1000).toFixed(1)} s)`);
    checkEvalTrainSize(train.size, 'usable training image'); // (unusable images left out)
    return { train, test };
  };

  const runs: AblationRun[] = [];
  let seg: AblationSegprobe | null = null;
  let complete = true;
  // From here until the tables are written, a SIGINT/SIGTERM stops the ablation at the next step of a
  // pre-training (after its checkpoint), at the next batch of an evaluation (nothing of it is written), or
  // before the next run; a file being written is finished first. Without a handler its default action
  // killed an evaluation's process mid-write, leaving the file's `.tmp-*`.
  const evaluation = new AbortController();
  const releaseSignals = catchStopSignals(stop, log, {
    stopping: 'stopping at the next step (after its checkpoint) or evaluation batch',
    onStop: () => evaluation.abort(),
  });
  try {
    if (segRecipe) {
      seg = await AblationSegprobe.open(
        segRecipe,
        f.makeSegData,
        imgSize,
        o.seed,
        { evalBatchSize: recipe.evalBatchSize, precision: o.precision },
        imageInputOptions(o),
        recipeOptions,
      );
      segDescription = seg.description;
    }
    // The time limit, checked between pieces of work (a run; a segmentation probe, kept apart from its run's
    // scores). The event loop turns first: a signal during the last piece's final writes then reaches its
    // handler, and a deadline's timer its stop (which is the time limit, not an interruption).
    const timeUpBefore = async (what: string): Promise<boolean> => {
      await yieldToEventLoop();
      if (!timeUp()) return false;
      complete = false;
      log(`--stop-after-minutes ${o.stopAfterMinutes} reached before ${what}; run the same command again to continue`);
      return true;
    };
    for (const [i, p] of all.entries()) {
      const ours = mine.includes(p); // this call's own run (every run without --shard)
      const cached = join(p.runDir, 'ablation-eval.json');
      const fp = fingerprint(p.options, recipe, ks);
      const addSegprobe = async (run: AblationRun): Promise<void> => {
        if (!seg) return;
        try {
          run.segprobe = await seg.score(
            p.runDir,
            p.seed,
            fp.pretrain as Record<string, unknown>,
            run.pretrain.sha256,
            () => (p.row === RANDOM_INIT ? randomInitEncoder(p.options, p.seed, device) : loadEncoder(p.runDir, { device }).encoder),
            evaluation.signal,
            evaluatedBefore,
          );
        } catch (e) {
          if (evaluation.signal.aborted && (e as Error)?.name === 'AbortError')
            throw new StoppedBySignal(
              `interrupted while scoring the segmentation probe of '${p.row}' seed ${p.seed}; run the same command again to continue`,
              stop.signal,
            );
          throw e;
        }
        log(`    ${p.row} seed ${p.seed}: segmentation probe mIoU ${pct(run.segprobe.mIoU)}% (constant majority class: ${pct(run.segprobe.baselineMIoU)}%)`);
      };
      let stored = existsSync(cached) ? readCachedRun(cached, log) : null;
      if (stored) refuseOtherRecipe(cached, stored.fingerprint, fp);
      // the weights its evaluation scored before this call (a segmentation score stored without its weights scored these)
      const evaluatedBefore = typeof stored?.pretrain.sha256 === 'string' ? stored.pretrain.sha256 : null;
      // evaluated again when its scores no longer describe this run: scored on the evaluation images of another
      // --seed (its pre-training is this call's), or of weights no checkpoint in the run folder holds now
      let stale: string | null = null;
      if (stored && stored.evalSeed !== undefined && stored.evalSeed !== o.seed) stale = `was evaluated on the images of --seed ${stored.evalSeed}`;
      else if (stored && p.row !== RANDOM_INIT) stale = scoredCheckpointChange(stored, p.runDir);
      if (stale) {
        if (ours) log(`[${i + 1}/${all.length}] ${p.row} seed ${p.seed}: ${stale}, evaluating it again`);
        stored = null;
      }
      if (stored) {
        if (ours) log(`[${i + 1}/${all.length}] ${p.row} seed ${p.seed}: already done (${cached})`);
        if (stored.pretrain.checkpoint) stored.pretrain.checkpoint = checkpointIn(stored, p.runDir);
        stored.runDir = p.runDir; // where it is now: the out-dir may have been moved or copied since
        // (the probe column added to a finished run: a piece of work of its own)
        const probes = seg && ours && !seg.scored(p.runDir, p.seed, fp.pretrain, stored.pretrain.sha256);
        if (probes && (await timeUpBefore(`the segmentation probe of '${p.row}' seed ${p.seed}`))) break;
        runs.push(stored);
        // a shard scores its own runs only: the other shards score theirs at the same time
        if (ours) await addSegprobe(stored);
        continue;
      }
      const gone = p.row === RANDOM_INIT ? null : readDiverged(p.runDir, fp);
      if (gone) {
        if (ours) log(`[${i + 1}/${all.length}] ${p.row} seed ${p.seed}: diverged by step ${gone.step} (${join(p.runDir, DIVERGED_FILE)}), not evaluated`);
        diverged.push(gone);
        continue;
      }
      if (!ours) continue;
      if (o.jobs > 1) {
        // Its process stopped early (--stop-after-minutes): the next call continues it.
        complete = false;
        log(`[${i + 1}/${all.length}] ${p.row} seed ${p.seed}: not finished yet`);
        continue;
      }
      if (await timeUpBefore(`'${p.row}' seed ${p.seed}`)) break;
      // a stop asked before this run (before the ablation started, too): no data opened, nothing evaluated or trained
      if (stop.requested) throw new StoppedBySignal(`stopped before '${p.row}' seed ${p.seed}; run the same command again to continue`, stop.signal);
      // (checked before any work too: a parallel shard may have started it since)
      const limitFile = join(p.runDir, 'ablation-pretrain.json');
      if (p.row !== RANDOM_INIT) refuseOtherPretraining(p.runDir, fp);
      const data = await openEval();
      let pr: { steps: number; firstLoss: number; lastLoss: number; checkpoint: string | null; seconds: number } = {
        steps: 0,
        firstLoss: NaN,
        lastLoss: NaN,
        checkpoint: null,
        seconds: NaN,
      };
      let encoder: VisionTransformer;
      let sha256 = 'random-init';
      let imagesPerEpoch: number | undefined;
      if (p.row === RANDOM_INIT) {
        log(`[${i + 1}/${all.length}] baseline: random initialisation, seed ${p.seed}`);
        torch.setNumThreads(o.threads ?? availableParallelism());
        encoder = randomInitEncoder(p.options, p.seed, device);
      } else {
        log(`[${i + 1}/${all.length}] pre-training '${p.row}', seed ${p.seed} → ${p.runDir}`);
        let td = await f.makeTrainData(trainDataRequest(p.options));
        if (recipe.pretrainLimit) td = limitTrainData(td, Math.max(1, Math.floor(recipe.pretrainLimit / p.options.batchSize)));
        imagesPerEpoch = td.batchesPerEpoch * p.options.batchSize;
        makeFolder(p.runDir);
        // the signals are caught above: a Ctrl-C during these first drafts stops the pre-training before its first step
        writeJsonAtomic(limitFile, { pretrainLimit: fp.pretrainLimit });
        const r = await pretrain(p.options, td, {
          log,
          stop,
          catchSignals: false,
          onStep: hooks.onStep,
          // the advice of a refused resume or a divergence names only ablate's options
          freshRunHint: 'another --out-dir',
          spaceHint: 'another --out-dir',
          divergedAdvice: 'a lower --blr',
        });
        if (r.stoppedBy === 'signal') {
          if (stop.signal || !timeUp())
            throw new StoppedBySignal(`interrupted during '${p.row}' seed ${p.seed}; run the same command again to continue`, r.signal);
          complete = false;
          log(
            `--stop-after-minutes ${o.stopAfterMinutes} reached during '${p.row}' seed ${p.seed} (checkpoint at step ${r.steps}); run the same command again to continue`,
          );
          break;
        }
        if (r.stoppedBy === 'nonfinite') {
          // recorded, not fatal: the other runs still run and are tabulated (the exit code says it)
          const d: DivergedRun = { order: p.row, seed: p.seed, runDir: p.runDir, step: r.steps, checkpoint: r.checkpoint, fingerprint: fp };
          writeJsonAtomic(join(p.runDir, DIVERGED_FILE), d);
          diverged.push(d);
          log(`    ${p.row} seed ${p.seed}: diverged (NaN/Inf loss) by step ${r.steps}; not evaluated, the ablation goes on`);
          continue;
        }
        if (!r.checkpoint) throw new Error(`pre-training '${p.row}' seed ${p.seed} ended without a checkpoint in ${p.runDir}`);
        pr = r;
        // the checkpoint the pre-training ended at: checkpoints/best when its step checkpoint was unusable
        // (a run folder is read by its step-* checkpoints only, and reported none)
        const loaded = loadEncoder(r.checkpoint, { device });
        encoder = loaded.encoder;
        sha256 = loaded.source.sha256;
      }
      const te = performance.now();
      let scores: Record<string, PoolingScores>;
      let evalImages: { train: number; test: number };
      try {
        checkImageShape(encoder, data.train, 'train data');
        checkImageShape(encoder, data.test, 'test data');
        ({ scores, images: evalImages } = await evaluateEncoder(encoder, data.train, data.test, recipe, ks, p.seed, o.precision, evaluation.signal));
      } catch (e) {
        if (evaluation.signal.aborted && (e as Error)?.name === 'AbortError')
          throw new StoppedBySignal(`interrupted while evaluating '${p.row}' seed ${p.seed}; run the same command again to continue`, stop.signal);
        throw e;
      } finally {
        encoder.dispose();
      }
      makeFolder(p.runDir);
      const run: AblationRun = {
        order: p.row,
        seed: p.seed,
        runDir: p.runDir,
        pretrain: {
          steps: pr.steps,
          firstLoss: Number.isFinite(pr.firstLoss) ? pr.firstLoss : null,
          lastLoss: Number.isFinite(pr.lastLoss) ? pr.lastLoss : null,
          // the whole pre-training, over every call that continued it (not this call's share)
          seconds: Number.isFinite(pr.seconds) ? pr.seconds : null,
          checkpoint: pr.checkpoint,
          sha256,
          imagesPerEpoch,
        },
        eval: scores,
        evalImages,
        evalSeed: o.seed,
        evalSeconds: (performance.now() - te) / 1000,
        fingerprint: fp,
      };
      writeJsonAtomic(cached, run);
      const h = scores[recipe.poolings[0]];
      log(
        `    ${p.row} seed ${p.seed}: ${run.pretrain.lastLoss === null ? '' : `loss ${run.pretrain.lastLoss.toFixed(4)}, `}k-NN@${headlineK} ${pct(h.knn.find((k) => k.k === headlineK)?.top1)}%, ` +
          `linear ${pct(h.linprobe.top1)}% (${recipe.poolings[0]}), evaluation ${run.evalSeconds.toFixed(1)} s`,
      );
      // (its scores are kept: the next call takes the run up at its probe)
      if (seg && (await timeUpBefore(`the segmentation probe of '${p.row}' seed ${p.seed}`))) break;
      runs.push(run);
      await addSegprobe(run);
    }
    // A shard is complete when its own runs are; the ablation when all are. A diverged run counts as done
    // for a shard (its parent reads ablation-diverged.json), as not done for the ablation (its table lacks it).
    const done = new Set([...runs.map((r) => r.runDir), ...(shard ? diverged.map((d) => d.runDir) : [])]);
    return finish(runs, complete && mine.every((p) => done.has(p.runDir)));
  } finally {
    releaseSignals();
    if (timer) clearTimeout(timer);
    await seg?.close();
    await ev.train?.close();
    await ev.test?.close();
  }
}
