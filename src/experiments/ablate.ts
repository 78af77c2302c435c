// The order ablation (paper Table 1 at small scale): matched-budget pre-trains that differ only in
// the prediction order (same seed, so the same initial weights and data order), each evaluated with
// k-NN and a linear probe on cached features; mean ± std over seeds; ablation.md + ablation.json.
// Finished runs are not repeated: each run folder keeps its evaluation, and an interrupted
// pre-training continues from its checkpoint.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch';
import { PRETRAIN_OPTIONS, PretrainOptions, modelConfigFrom, trainDataRequest, validatePretrain } from '../train/pretrain-options';
import { pretrain } from '../train/pretrain';
import { resolveOptions } from '../util/options';
import { VisionTransformer, encoderConfigOf, loadEncoder } from '../semaim';
import { DataFactories, LabelledData, TrainData } from '../data';
import { checkDevice } from '../run/device';
import { DEFAULT_MAX_IMAGE_PIXELS } from '../data/codecs/limits';
import { StoppedBySignal } from '../run/signals';
import { Accuracy } from '../eval/accuracy';
import { FeaturePooling, checkImageShape, disposeFeatures, extractFeatures } from '../eval/features';
import { knnClassify, parseKs } from '../eval/knn';
import { LinprobeOptions, linprobeOnFeatures } from '../eval/linprobe';
import { AblateOptions, parseOrders, validateAblate } from './ablate-options';
import { dataRequest } from '../eval/run';
import { markdownTable, pct } from '../eval/result';
import type { Precision } from '../run/precision';
import { AblationSegprobe, SegScore, ablationSegRecipe } from './ablate-segprobe';

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
    model: 'vit_tiny', imgSize: 32, patchSize: 4, mlpRatio: 4, blur: false, normPix: true, minScale: 0.2, hflip: true,
    weightDecay: 0.05, beta1: 0.9, beta2: 0.95, clipGrad: 3, logEvery: 20, keepLast: 1,
  };
  if (budget === 'full') {
    return {
      pretrain: { ...common, embedDim: 192, depth: 6, numHeads: 3, decoderDepth: 6, batchSize: 256, epochs: 100, warmupEpochs: 10, blr: 5e-4, checkpointEvery: 1000 },
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
  /** seconds is NaN (null in JSON) for the random-init baseline. */
  pretrain: { steps: number; firstLoss: number | null; lastLoss: number | null; seconds: number | null; checkpoint: string | null; sha256: string };
  /** Evaluation per pooling ('cls', 'mean'). */
  eval: Record<string, PoolingScores>;
  evalSeconds: number;
  /** What must match for a finished run to be reused. */
  fingerprint: Record<string, unknown>;
  /** With --eval segprobe: the segmentation probe (kept in the run folder's ablation-segprobe.json). */
  segprobe?: SegScore;
}

/** Options that do not change results (where and how fast a run goes). */
const NEUTRAL = new Set(['outDir', 'threads', 'numWorkers', 'device', 'resume', 'logEvery', 'checkpointEvery', 'keepLast']);

/** Options added after fingerprints were first recorded: left out at their defaults, so earlier runs still match. */
const ADDED_LATER: Record<string, unknown> = { maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS, exifOrientation: 'ignore', verify: true };

export function fingerprint(pretrainOptions: Record<string, unknown>, recipe: AblationRecipe, ks: number[]): Record<string, unknown> {
  const pretrain = Object.fromEntries(Object.entries(pretrainOptions)
    .filter(([k, v]) => !NEUTRAL.has(k) && v !== undefined && v !== null && ADDED_LATER[k] !== v).sort());
  return {
    pretrain, pretrainLimit: recipe.pretrainLimit ?? null, trainLimit: recipe.trainLimit ?? null, testLimit: recipe.testLimit ?? null,
    linprobe: recipe.linprobe, poolings: recipe.poolings, evalBatchSize: recipe.evalBatchSize, ks,
  };
}

function describeDiff(a: Record<string, unknown> | undefined, b: Record<string, unknown>): string {
  if (!a) return 'no recipe recorded';
  const flat = (x: Record<string, unknown>, pre = ''): Record<string, string> => Object.fromEntries(Object.entries(x).flatMap(([k, v]) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.entries(flat(v as Record<string, unknown>, `${pre}${k}.`)) : [[`${pre}${k}`, JSON.stringify(v)]]));
  const fa = flat(a);
  const fb = flat(b);
  const keys = [...new Set([...Object.keys(fa), ...Object.keys(fb)])].filter((k) => fa[k] !== fb[k]);
  return keys.slice(0, 4).map((k) => `${k}: ${fa[k] ?? '–'} → ${fb[k] ?? '–'}`).join(', ');
}

export interface Stat {
  mean: number;
  std: number;
  n: number;
}

export interface AblationSummary {
  order: string;
  runs: number;
  /** Per pooling: k-NN top-1 at the headline k and linear-probe top-1/top-5. */
  scores: Record<string, { knnTop1: Stat; linTop1: Stat; linTop5: Stat }>;
  lastLoss: Stat;
  pretrainSeconds: Stat;
  /** With --eval segprobe: the probe's mIoU. */
  segMIoU?: Stat;
}

export interface AblationResult {
  format: 'semaim.ablation/1';
  createdAt: string;
  command?: string;
  budget: Budget;
  options: AblateOptions;
  recipe: AblationRecipe;
  /** The options every pre-training got (order, seed and out-dir differ). */
  pretrainOptions: Omit<PretrainOptions, 'order' | 'seed' | 'outDir'>;
  headlineK: number;
  runs: AblationRun[];
  summary: AblationSummary[];
  seconds: number;
  markdown: string;
  /** With --eval segprobe: what the column measures. */
  segprobe?: string;
}

export interface AblationHooks {
  log?: (line: string) => void;
  /** The command line, recorded in ablation.md. */
  command?: string;
}

export function stat(values: number[]): Stat {
  const v = values.filter((x) => Number.isFinite(x));
  const n = v.length;
  if (!n) return { mean: NaN, std: NaN, n: 0 };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}

function fmtStat(s: Stat, asPct = true, digits = 2): string {
  if (!s.n) return '–';
  const f = (x: number) => (asPct ? pct(x, digits) : x.toFixed(digits));
  return s.n > 1 ? `${f(s.mean)} ± ${f(s.std)}` : f(s.mean);
}

/** The resolved options of the pre-training run for one order and seed. */
export function pretrainOptionsFor(o: AblateOptions, recipe: AblationRecipe, order: string, seed: number, runDir: string): PretrainOptions {
  const overrides: Record<string, unknown> = {};
  for (const k of ['epochs', 'maxSteps', 'batchSize', 'embedDim', 'depth', 'numHeads', 'decoderDepth', 'patchSize', 'imgSize'] as const) {
    if (o[k] !== undefined) overrides[k] = o[k];
  }
  const p = resolveOptions(PRETRAIN_OPTIONS, recipe.pretrain, overrides, {
    order, seed, outDir: runDir, dataset: o.dataset, dataPath: o.dataPath, numWorkers: o.numWorkers, device: o.device,
    maxImagePixels: o.maxImagePixels, exifOrientation: o.exifOrientation,
    threads: o.threads, precision: o.precision, resume: true,
  });
  if (p.warmupEpochs >= p.epochs) p.warmupEpochs = p.epochs / 10;
  return p;
}

async function evaluateEncoder(
  encoder: VisionTransformer, train: LabelledData, test: LabelledData, recipe: AblationRecipe, ks: number[], seed: number, precision: Precision,
): Promise<Record<string, PoolingScores>> {
  const out: Record<string, PoolingScores> = {};
  for (const pooling of recipe.poolings) {
    const fo = { batchSize: recipe.evalBatchSize, pooling, precision, label: null };
    const tr = await extractFeatures(encoder, train, fo);
    try {
      const te = await extractFeatures(encoder, test, fo);
      try {
        const knn = knnClassify(tr, te, { ks, numClasses: train.numClasses, label: null });
        const lp = await linprobeOnFeatures(tr, te, train.numClasses, { ...recipe.linprobe, seed, label: null });
        lp.probe.dispose();
        const a: Accuracy = lp.accuracy;
        out[pooling] = {
          knn: knn.map((r) => ({ k: r.k, top1: r.accuracy.top1, top5: r.accuracy.top5 })),
          linprobe: { top1: a.top1, top5: a.top5, perClass: a.perClass },
        };
      } finally {
        disposeFeatures(te);
      }
    } finally {
      disposeFeatures(tr);
    }
  }
  return out;
}

function writeJson(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
  renameSync(tmp, path);
}

export function summarise(runs: AblationRun[], orders: string[], poolings: string[], headlineK: number): AblationSummary[] {
  return orders.map((order) => {
    const rs = runs.filter((r) => r.order === order);
    const scores: AblationSummary['scores'] = {};
    for (const p of poolings) {
      scores[p] = {
        knnTop1: stat(rs.map((r) => r.eval[p]?.knn.find((k) => k.k === headlineK)?.top1 ?? NaN)),
        linTop1: stat(rs.map((r) => r.eval[p]?.linprobe.top1 ?? NaN)),
        linTop5: stat(rs.map((r) => r.eval[p]?.linprobe.top5 ?? NaN)),
      };
    }
    return {
      order, runs: rs.length, scores,
      lastLoss: stat(rs.map((r) => r.pretrain.lastLoss ?? NaN)),
      pretrainSeconds: stat(rs.map((r) => r.pretrain.seconds ?? NaN)),
      ...(rs.some((r) => r.segprobe) ? { segMIoU: stat(rs.map((r) => r.segprobe?.mIoU ?? NaN)) } : {}),
    };
  });
}

export function ablationMarkdown(r: Omit<AblationResult, 'markdown'>): string {
  const poolings = r.recipe.poolings;
  const name = (p: string) => (p === 'cls' ? '[CLS]' : 'mean');
  const header = ['order', 'runs',
    ...poolings.map((p) => `k-NN top-1 % (k=${r.headlineK}, ${name(p)})`),
    ...poolings.map((p) => `linear top-1 % (${name(p)})`),
    ...(r.segprobe ? ['seg mIoU %'] : []),
    'final pre-train loss', 'pre-train min'];
  const rows = r.summary.map((s) => [
    s.order, String(s.runs),
    ...poolings.map((p) => fmtStat(s.scores[p].knnTop1)),
    ...poolings.map((p) => fmtStat(s.scores[p].linTop1)),
    ...(r.segprobe ? [s.segMIoU ? fmtStat(s.segMIoU) : '–'] : []),
    fmtStat(s.lastLoss, false, 4),
    fmtStat({ ...s.pretrainSeconds, mean: s.pretrainSeconds.mean / 60, std: s.pretrainSeconds.std / 60 }, false, 1),
  ]);
  const po = r.pretrainOptions;
  const lp = r.recipe.linprobe;
  const lines = [
    `# Order ablation (${r.budget} budget)`,
    '',
    ...(r.command ? ['```', r.command, '```', ''] : []),
    markdownTable(header, rows, ['l', 'r', ...header.slice(2).map(() => 'r' as const)]),
    `Pre-training (identical for every order; seeds ${r.options.seed}..${Number(r.options.seed) + Number(r.options.seeds) - 1}): ViT ${po.embedDim}×${po.depth} (${po.numHeads} heads), ` +
      `patch ${po.patchSize} at ${po.imgSize}², decoder ${po.decoderDepth}, ${po.epochs} epochs` +
      (r.recipe.pretrainLimit ? ` of ${r.recipe.pretrainLimit} images` : '') + `${po.maxSteps ? ` (at most ${po.maxSteps} steps)` : ''}, ` +
      `batch ${po.batchSize}, blr ${po.blr}, warm-up ${po.warmupEpochs}, pixel targets (norm-pix ${po.normPix}, blur ${po.blur}), ${po.precision}, device ${po.device}.`,
    `Evaluation on ${r.options.dataset}: features of the final encoder (unmasked, eval mode); k-NN: DINO weighted vote, T = 0.07; ` +
      `linear probe: BatchNorm (no affine) + Linear, ${(lp.optimizer ?? 'sgd').toUpperCase()} momentum ${lp.momentum}, blr ${lp.blr}, ${lp.epochs} epochs on cached features` +
      `${r.recipe.trainLimit || r.options.trainLimit ? `, ${r.options.trainLimit ?? r.recipe.trainLimit} train` : ''}` +
      `${r.recipe.testLimit || r.options.testLimit ? ` / ${r.options.testLimit ?? r.recipe.testLimit} test images` : ''}.`,
    ...(r.segprobe ? [`seg mIoU: ${r.segprobe}.`] : []),
    `Total wall time ${(r.seconds / 60).toFixed(1)} min. Mean ± sample std over seeds where runs > 1.`,
    '',
  ];
  return lines.join('\n');
}

/** The baseline encoder: the architecture of the pre-training options, initialised from `seed` (frozen, eval mode). */
function randomInitEncoder(options: PretrainOptions, seed: number, device: torch.Device): VisionTransformer {
  torch.manualSeed(seed);
  const encoder = new VisionTransformer(encoderConfigOf(modelConfigFrom(options))).initWeights().to({ device }).eval();
  for (const t of encoder.parameters()) t.requiresGrad = false;
  return encoder;
}

/** Runs the whole ablation; writes `<out-dir>/ablation.{md,json}`. */
export async function ablate(o: AblateOptions, f: DataFactories, hooks: AblationHooks = {}): Promise<AblationResult> {
  const log = hooks.log ?? ((l: string) => process.stderr.write(l + '\n'));
  validateAblate(o);
  const device = checkDevice(o.device);
  const orders = parseOrders(o.orders);
  const ks = parseKs(o.k);
  const headlineK = ks.includes(20) ? 20 : ks[0];
  const budget = o.budget;
  const base = ablationRecipe(budget);
  const segRecipe = ablationSegRecipe(o, budget);
  const recipe: AblationRecipe = {
    ...base,
    pretrainLimit: o.pretrainLimit ?? base.pretrainLimit,
    trainLimit: o.trainLimit ?? base.trainLimit,
    testLimit: o.testLimit ?? base.testLimit,
    linprobe: { ...base.linprobe, epochs: o.linprobeEpochs ?? base.linprobe.epochs },
    poolings: o.pooling === 'cls' || o.pooling === 'mean' ? [o.pooling] : base.poolings,
  };
  const outDir = o.outDir;
  const seeds = o.seeds;
  // Resolve (and so validate) every pre-training configuration before any work.
  const rowNames = o.baseline ? [...orders, RANDOM_INIT] : orders;
  const plan = rowNames.flatMap((order) => Array.from({ length: seeds }, (_, s) => o.seed + s).map((seed) => {
    const runDir = join(outDir, 'runs', `${order === RANDOM_INIT ? 'random-init' : order}-seed${seed}`);
    // The baseline has the architecture of the others (its pre-training options only name it).
    return { order, seed, runDir, options: pretrainOptionsFor(o, recipe, order === RANDOM_INIT ? 'raster' : order, seed, runDir) };
  }));
  for (const p of plan) {
    validatePretrain(p.options);
    modelConfigFrom(p.options);
  }
  mkdirSync(outDir, { recursive: true });
  const t0 = Date.now();
  const imgSize = plan[0].options.imgSize;
  const evalOptions = { ...o, trainLimit: recipe.trainLimit, testLimit: recipe.testLimit };
  const train = await f.makeEvalData(dataRequest(evalOptions, 'train', imgSize));
  let test: LabelledData;
  try {
    test = await f.makeEvalData(dataRequest(evalOptions, 'test', imgSize));
  } catch (e) {
    await train.close();
    throw e;
  }
  const runs: AblationRun[] = [];
  let seg: AblationSegprobe | null = null;
  let segDescription: string | undefined;
  try {
    if (train.numClasses !== test.numClasses) throw new Error(`the train split has ${train.numClasses} classes, the test split ${test.numClasses}`);
    if (segRecipe) {
      seg = await AblationSegprobe.open(segRecipe, f.makeSegData, imgSize, o.seed, { evalBatchSize: recipe.evalBatchSize, precision: o.precision });
      segDescription = seg.description;
    }
    for (const [i, p] of plan.entries()) {
      const cached = join(p.runDir, 'ablation-eval.json');
      const fp = fingerprint(p.options, recipe, ks);
      const addSegprobe = async (run: AblationRun): Promise<void> => {
        if (!seg) return;
        run.segprobe = await seg.score(p.runDir, p.seed, fp.pretrain as Record<string, unknown>, () => (p.order === RANDOM_INIT
          ? randomInitEncoder(p.options, p.seed, device) : loadEncoder(p.runDir, { device }).encoder));
        log(`    ${p.order} seed ${p.seed}: segmentation probe mIoU ${pct(run.segprobe.mIoU)}% (constant majority class: ${pct(run.segprobe.baselineMIoU)}%)`);
      };
      if (existsSync(cached)) {
        const run = JSON.parse(readFileSync(cached, 'utf8')) as AblationRun;
        if (JSON.stringify(run.fingerprint) !== JSON.stringify(fp)) {
          throw new Error(`${cached} was made with another recipe (${describeDiff(run.fingerprint, fp)}); use a new --out-dir`);
        }
        log(`[${i + 1}/${plan.length}] ${p.order} seed ${p.seed}: already done (${cached})`);
        runs.push(run);
        await addSegprobe(run);
        continue;
      }
      const started = join(p.runDir, 'config.json');
      if (p.order !== RANDOM_INIT && existsSync(started)) {
        const before = fingerprint((JSON.parse(readFileSync(started, 'utf8')) as { options: Record<string, unknown> }).options, recipe, ks);
        if (JSON.stringify(before.pretrain) !== JSON.stringify(fp.pretrain)) {
          throw new Error(`${p.runDir} holds a pre-training with other options (${describeDiff(before, fp)}); use a new --out-dir`);
        }
      }
      const tp = Date.now();
      let pr: { steps: number; firstLoss: number; lastLoss: number; checkpoint: string | null } = { steps: 0, firstLoss: NaN, lastLoss: NaN, checkpoint: null };
      let encoder: VisionTransformer;
      let sha256 = 'random-init';
      if (p.order === RANDOM_INIT) {
        log(`[${i + 1}/${plan.length}] baseline: random initialisation, seed ${p.seed}`);
        encoder = randomInitEncoder(p.options, p.seed, device);
      } else {
        log(`[${i + 1}/${plan.length}] pre-training order '${p.order}', seed ${p.seed} → ${p.runDir}`);
        let data = await f.makeTrainData(trainDataRequest(p.options));
        if (recipe.pretrainLimit) data = limitTrainData(data, Math.max(1, Math.floor(recipe.pretrainLimit / p.options.batchSize)));
        const r = await pretrain(p.options, data, { log });
        if (r.stoppedBy === 'signal') throw new StoppedBySignal(`interrupted during '${p.order}' seed ${p.seed}; run the same command again to continue`, r.signal);
        if (r.stoppedBy === 'nonfinite' || !r.checkpoint) throw new Error(`pre-training '${p.order}' seed ${p.seed} diverged (NaN/Inf loss); see ${p.runDir}/metrics.jsonl`);
        pr = r;
        const loaded = loadEncoder(p.runDir, { device });
        encoder = loaded.encoder;
        sha256 = loaded.source.sha256;
      }
      const pretrainSeconds = p.order === RANDOM_INIT ? NaN : (Date.now() - tp) / 1000;
      const te = Date.now();
      let scores: Record<string, PoolingScores>;
      try {
        checkImageShape(encoder, train, 'train data');
        checkImageShape(encoder, test, 'test data');
        scores = await evaluateEncoder(encoder, train, test, recipe, ks, p.seed, o.precision);
      } finally {
        encoder.dispose();
      }
      mkdirSync(p.runDir, { recursive: true });
      const run: AblationRun = {
        order: p.order, seed: p.seed, runDir: p.runDir,
        pretrain: {
          steps: pr.steps, firstLoss: Number.isFinite(pr.firstLoss) ? pr.firstLoss : null, lastLoss: Number.isFinite(pr.lastLoss) ? pr.lastLoss : null,
          seconds: pretrainSeconds, checkpoint: pr.checkpoint, sha256,
        },
        eval: scores, evalSeconds: (Date.now() - te) / 1000, fingerprint: fp,
      };
      writeJson(cached, run);
      runs.push(run);
      await addSegprobe(run);
      const h = scores[recipe.poolings[0]];
      log(`    ${p.order} seed ${p.seed}: loss ${run.pretrain.lastLoss?.toFixed(4)}, k-NN@${headlineK} ${pct(h.knn.find((k) => k.k === headlineK)?.top1)}%, ` +
        `linear ${pct(h.linprobe.top1)}% (${recipe.poolings[0]})`);
    }
  } finally {
    await seg?.close();
    await train.close();
    await test.close();
  }
  const pretrainOptions = { ...plan[0].options, order: undefined, seed: undefined, outDir: undefined };
  const partial: Omit<AblationResult, 'markdown'> = {
    format: 'semaim.ablation/1', createdAt: new Date().toISOString(), command: hooks.command, budget, options: o, recipe, pretrainOptions,
    headlineK, runs, summary: summarise(runs, rowNames, recipe.poolings, headlineK), seconds: (Date.now() - t0) / 1000,
    ...(segDescription ? { segprobe: segDescription } : {}),
  };
  const markdown = ablationMarkdown(partial);
  const result: AblationResult = { ...partial, markdown };
  writeFileSync(join(outDir, 'ablation.md'), markdown);
  writeJson(join(outDir, 'ablation.json'), result);
  return result;
}
