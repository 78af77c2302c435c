// Where does the semantic order start? On the synthetic objects (images with object masks): pre-train
// one model per S used for training (default: the paper's [CLS] cosine, and the authors' `self`
// [CLS] attention), then, at initialisation and at evenly spaced checkpoints, the fraction of test
// images whose first predicted patch lies on the object, with S from each of cls / gap / self,
// against the random-centre baseline. With --seeds N every S is trained with N seeds (the test images
// stay those of --seed) and the table gives mean ± std over them. Writes object-start.md and .json.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch';
import { DataLoader, normalize, openDataset, makeTrainData } from '../data';
import { SemAIM, SimilarityTokens, loadModel } from '../semaim';
import { listCheckpoints } from '../io/checkpoint';
import { GPU_STEP_OPTIONS, PRETRAIN_OPTIONS, PretrainOptions, modelConfigFrom, trainDataRequest, validatePretrain } from '../train/pretrain-options';
import { pretrain } from '../train/pretrain';
import { StoppedBySignal } from '../run/signals';
import { checkDevice } from '../run/device';
import { ObjectData, ObjectStartScore, objectStartFraction } from '../viz/object-start';
import {
  OptionError,
  Options,
  defineOptions,
  didYouMean,
  kebab,
  resolveOptions,
  MAX_THREADS,
  MAX_THREADS_IS,
  SEED_RANGE,
  checkSeedList,
} from '../util/options';
import { pretrainResumeChanges } from '../train/resume-changes';
import { markdownTable } from '../eval/result';
import { stat } from './ablate-report';
import { commitStagedUnlessAborted, fileStagers } from '../util/safe-write';
import { yieldThenThrowIfAborted } from '../util/errors';
import { makeFolder } from '../util/make-folder';
import { readJsonWith } from '../util/json-file';
import { stderrLine } from '../util/console-line';

export const TOKENS: SimilarityTokens[] = ['cls', 'gap', 'self'];

export const OBJECT_STUDY_OPTIONS = defineOptions({
  outDir: { type: 'string', default: 'runs/object-start', help: 'output folder (one pre-training run per --train-tokens, object-start.md/json)' },
  trainTokens: {
    type: 'string',
    default: 'cls,self',
    help: "S the models train with, comma-separated: cls (paper), gap, self (authors' [CLS] attention); one run each",
  },
  steps: { type: 'int', default: 192, min: 1, help: 'optimiser steps per run (fresh synthetic images every step: batch × steps images, one epoch)' },
  points: {
    type: 'int',
    default: 4,
    min: 1,
    help: 'checkpoints evaluated per run (plus initialisation): one every ⌈--steps / --points⌉ steps and the last step, so at most this many',
  },
  testSize: { type: 'int', default: 1000, min: 10, max: 1_000_000, help: 'synthetic test images with object masks (held in memory)' },
  imgSize: { type: 'int', default: 32, min: 8, max: 8192, help: 'image size' },
  patchSize: { type: 'int', default: 4, min: 1, help: 'patch size' },
  embedDim: { type: 'int', default: 128, min: 4, help: 'encoder width' },
  depth: { type: 'int', default: 4, min: 1, help: 'encoder depth' },
  numHeads: { type: 'int', default: 4, min: 1, help: 'attention heads' },
  decoderDepth: { type: 'int', default: 4, min: 1, help: 'decoder blocks' },
  batchSize: { type: 'int', default: 64, min: 1, help: 'pre-training batch' },
  blr: { type: 'number', default: 1.6e-2, min: 0, help: "base lr (lr = blr × batch / 256); the demo's recipe" },
  warmupFraction: { type: 'number', default: 0.25, min: 0, max: 0.9, help: 'linear warm-up as a fraction of the steps' },
  orderVariant: { type: 'string', default: 'paper', choices: ['paper', 'authors'], help: "semantic centre: 'paper' (3×3 filter) or 'authors' (argmax of S)" },
  decayClsToken: { type: 'boolean', default: true, help: 'weight decay on cls_token (as the authors)' },
  // (0 would put every patch on the object, the background too: the statistic and its baseline both 100 %)
  threshold: { type: 'number', default: 0.5, above: 0, max: 1, help: 'a patch is on the object when at least this share (> 0) of its pixels is' },
  seed: { type: 'int', ...SEED_RANGE, default: 0, help: 'random seed (same initial weights for every run; the test images)' },
  seeds: { type: 'int', default: 1, min: 1, max: 1000, help: 'train each S with seeds seed..seed+N-1 and report mean ± std over them' },
  device: { mayChangeOnResume: true, type: 'string', default: 'cpu', help: "'cpu', 'cuda' or 'cuda:N'" },
  threads: { mayChangeOnResume: true, type: 'int', min: 1, max: MAX_THREADS, maxIs: MAX_THREADS_IS, help: 'CPU threads for libtorch (default: all cores)' },
  // its pre-trainings' own options (studyPretrainOptions hands them to pretrain): the same values, limits and --help
  numWorkers: PRETRAIN_OPTIONS.numWorkers,
  precision: PRETRAIN_OPTIONS.precision,
  cudaGraphs: GPU_STEP_OPTIONS.cudaGraphs,
});

export type ObjectStudyOptions = Options<typeof OBJECT_STUDY_OPTIONS>;

export interface StudyPoint {
  /** The S the model trained with. */
  trainedWith: SimilarityTokens;
  /** The seed of its pre-training (initial weights, images, order noise). */
  seed: number;
  step: number;
  /** Per S used to order: the fraction of images whose order starts on the object, and its standard error. */
  byTokens: Record<SimilarityTokens, { fraction: number; stdErr: number }>;
  /** The random-centre baseline: the mean share of object patches. */
  randomCentre: number;
}

export interface StudyResult {
  format: 'semaim.object-start/1';
  options: ObjectStudyOptions;
  n: number;
  points: StudyPoint[];
  /**
   * Planned points that were not scored: their run has no checkpoint at that step (it was trained with
   * other --points, whose checkpoints a finished run keeps).
   */
  missing: { trainedWith: SimilarityTokens; seed: number; step: number }[];
  markdown: string;
}

export function parseTrainTokens(text: string): SimilarityTokens[] {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!list.length) throw new OptionError('trainTokens', 'is empty');
  for (const t of list)
    if (!(TOKENS as string[]).includes(t)) throw new OptionError('trainTokens', `unknown tokens '${t}'${didYouMean(t, TOKENS)} (known: ${TOKENS.join(', ')})`);
  if (new Set(list).size !== list.length) throw new OptionError('trainTokens', `names a token twice: ${text}`);
  return list as SimilarityTokens[];
}

/**
 * Where the run trained with S from `tokens` and `seed` lives: trained-<S>-seed<N>, named by its own
 * seed (as ablate's <order>-seed<N>), so that --seed 1 finds the run --seeds 2 trained for seed 1 (it was
 * named relative to --seed, and --seed 1 refused to resume trained-<S>, seed 0's). A folder of that older
 * naming, trained-<S>, is used where its config.json says it holds this seed's run.
 */
export function studyRunDir(o: Pick<ObjectStudyOptions, 'outDir'>, tokens: SimilarityTokens, seed: number): string {
  const dir = join(o.outDir, `trained-${tokens}-seed${seed}`);
  const older = join(o.outDir, `trained-${tokens}`);
  if (existsSync(dir) || !existsSync(join(older, 'config.json'))) return dir;
  let olderSeed: unknown;
  try {
    olderSeed = (readJsonWith(join(older, 'config.json'), ['options']).options as Record<string, unknown>).seed;
  } catch {
    return dir; // unreadable: not taken for this seed's run
  }
  return olderSeed === seed ? older : dir;
}

/** The seeds every S is trained with. */
export function studySeeds(o: Pick<ObjectStudyOptions, 'seed' | 'seeds'>): number[] {
  checkSeedList(o);
  return Array.from({ length: o.seeds }, (_, i) => o.seed + i);
}

/** The pre-training options of the run trained with S from `tokens` (and `seed`, default --seed). */
export function studyPretrainOptions(o: ObjectStudyOptions, tokens: SimilarityTokens, seed = o.seed): PretrainOptions {
  const every = studyCheckpointEvery(o);
  // refused here in the study's terms: pretrain's own refusal named --synthetic-size, which object-start has not
  const images = o.steps * o.batchSize;
  const most = PRETRAIN_OPTIONS.syntheticSize.max;
  if (images > most)
    throw new OptionError(
      'steps',
      `(${o.steps}) × --batch-size (${o.batchSize}) is ${images} fresh synthetic images per run, more than ${most}: lower --steps or --batch-size`,
    );
  return resolveOptions(PRETRAIN_OPTIONS, {
    dataset: 'synthetic',
    syntheticSize: images,
    imgSize: o.imgSize,
    patchSize: o.patchSize,
    model: 'vit_tiny',
    embedDim: o.embedDim,
    depth: o.depth,
    numHeads: o.numHeads,
    decoderDepth: o.decoderDepth,
    order: 'semantic',
    orderVariant: o.orderVariant,
    similarityTokens: tokens,
    blur: false,
    minScale: 0.5,
    batchSize: o.batchSize,
    epochs: 1,
    warmupEpochs: o.warmupFraction,
    blr: o.blr,
    weightDecay: 0.05,
    clipGrad: 3,
    decayClsToken: o.decayClsToken,
    seed,
    device: o.device,
    threads: o.threads,
    numWorkers: o.numWorkers,
    precision: o.precision,
    cudaGraphs: o.cudaGraphs,
    outDir: studyRunDir(o, tokens, seed),
    checkpointEvery: every,
    // every checkpoint (at most one per step): a stop writes one off the plan, which must not push out a planned one
    keepLast: o.steps,
    logEvery: Math.min(20, every),
  });
}

/** The study's option behind each pre-training option it sets (for a refusal in the study's own terms). */
const STUDY_OPTION_OF: Record<string, keyof ObjectStudyOptions> = {
  syntheticSize: 'steps',
  warmupEpochs: 'warmupFraction',
  similarityTokens: 'trainTokens',
};

/**
 * Refuses, naming object-start's options, to continue a run whose stored pre-training options differ from
 * the ones this study would train it with (pretrain's own refusal names pretrain's options, e.g.
 * --synthetic-size for a changed --steps).
 */
function refuseChangedRun(options: PretrainOptions): void {
  const changes = pretrainResumeChanges(options)?.changes ?? [];
  if (!changes.length) return;
  const keys = changes.map((c) => STUDY_OPTION_OF[c.key] ?? (c.key in OBJECT_STUDY_OPTIONS ? (c.key as keyof ObjectStudyOptions) : null));
  const named = [...new Set(keys.filter((k) => k !== null))].map((k) => `--${kebab(k)}`);
  const detail = changes.map((c) => `${kebab(c.key)} ${JSON.stringify(c.before)} → ${JSON.stringify(c.now)}`).join(', ');
  throw new OptionError(
    keys.find((k) => k !== null) ?? changes[0].key,
    `the run in ${options.outDir} was trained with other settings${named.length ? ` of ${named.join(', ')}` : ''} (its pre-training: ${detail}). ` +
      'Run with the values it was started with to continue it, or use another --out-dir.',
  );
}

/** The test set is held in memory as float32 images and byte masks: at most this many bytes. */
export const MAX_TEST_BYTES = 2 ** 31;

/** Refuses a test set that would not fit in memory (1e9 images grew to 8 GB, then failed with 'Invalid typed array length'). */
export function checkTestSize(o: Pick<ObjectStudyOptions, 'imgSize' | 'testSize'>): void {
  const bytes = o.testSize * o.imgSize * o.imgSize * (3 * 4 + 1);
  if (bytes > MAX_TEST_BYTES)
    throw new OptionError(
      'testSize',
      `${o.testSize} test images of ${o.imgSize}² take ${(bytes / 2 ** 30).toFixed(1)} GiB in memory, more than ${MAX_TEST_BYTES / 2 ** 30}: lower --test-size or --img-size`,
    );
}

/** The synthetic test images with their object masks (normalised as the model sees them). */
export async function objectTestData(o: Pick<ObjectStudyOptions, 'imgSize' | 'testSize' | 'seed'>): Promise<ObjectData> {
  const ds = openDataset('synthetic', { split: 'test', imgSize: o.imgSize, syntheticSize: o.testSize, seed: o.seed });
  const loader = new DataLoader(ds, { batchSize: o.testSize, shuffle: false, workers: 0, masks: true, transforms: [normalize()] });
  try {
    for await (const b of loader.iterate(0)) return { images: b.images as Float32Array, masks: b.masks! };
    throw new Error('the synthetic test set is empty');
  } finally {
    await loader.close();
  }
}

function score(model: SemAIM, data: ObjectData, o: ObjectStudyOptions, trainedWith: SimilarityTokens, seed: number, step: number): StudyPoint {
  const by = {} as StudyPoint['byTokens'];
  let s: ObjectStartScore | null = null;
  for (const tokens of TOKENS) {
    s = objectStartFraction(model, data, { seed: o.seed, tokens, threshold: o.threshold });
    by[tokens] = { fraction: s.fraction, stdErr: s.stdErr };
  }
  return { trainedWith, seed, step, byTokens: by, randomCentre: s!.baselineExpected };
}

/** Steps between the study's checkpoints: ⌈steps / points⌉, which gives at most `points` of them (the last step included). */
export function studyCheckpointEvery(o: Pick<ObjectStudyOptions, 'steps' | 'points'>): number {
  return Math.max(1, Math.ceil(o.steps / o.points));
}

/**
 * The checkpoints scored (after the initialisation): every --checkpoint-every steps, and the last step.
 * A stop writes one more checkpoint where it happens; that one is not scored, so that an interrupted
 * study scores the same steps as one never interrupted.
 */
export function plannedSteps(o: Pick<ObjectStudyOptions, 'steps' | 'points'>): number[] {
  const every = studyCheckpointEvery(o);
  const steps: number[] = [];
  for (let s = every; s < o.steps; s += every) steps.push(s);
  return [...steps, o.steps];
}

/** One table row per (trained S, step): one seed's fractions ± their standard error, or mean ± std over the seeds. */
function studyRows(points: StudyPoint[], seeds: number): string[][] {
  const pct = (x: number) => (100 * x).toFixed(1);
  if (seeds === 1)
    return points.map((p) => [
      p.trainedWith,
      String(p.step),
      ...TOKENS.map((t) => `${pct(p.byTokens[t].fraction)} ± ${pct(p.byTokens[t].stdErr)}`),
      pct(p.randomCentre),
    ]);
  const groups = new Map<string, StudyPoint[]>();
  for (const p of points) {
    const key = `${p.trainedWith}/${p.step}`;
    groups.set(key, [...(groups.get(key) ?? []), p]);
  }
  return [...groups.values()].map((g) => {
    const cell = (t: SimilarityTokens) => {
      const s = stat(g.map((p) => p.byTokens[t].fraction));
      // one seed's value alone has no spread to give (stat gives NaN for it)
      return `${pct(s.mean)}${s.n > 1 ? ` ± ${pct(s.std)}` : ''}${s.n < seeds ? ` (${s.n} of ${seeds} seeds)` : ''}`;
    };
    return [g[0].trainedWith, String(g[0].step), ...TOKENS.map(cell), pct(stat(g.map((p) => p.randomCentre)).mean)];
  });
}

export function studyMarkdown(r: Omit<StudyResult, 'markdown'>): string {
  const o = r.options;
  const rows = studyRows(r.points, o.seeds);
  const seeds = studySeeds(o);
  return [
    '# Where the semantic order starts (synthetic objects)',
    '',
    markdownTable(['trained with S =', 'step', 'starts on the object %, S = cls', 'S = gap', 'S = self', 'random centre %'], rows, [
      'l',
      'r',
      'r',
      'r',
      'r',
      'r',
    ]),
    `${r.n} synthetic test images (${o.imgSize}², patch ${o.patchSize}); a patch is on the object when ≥ ${o.threshold} of its pixels are. ` +
      `Models: ViT ${o.embedDim}×${o.depth} (${o.numHeads} heads), decoder ${o.decoderDepth}, semantic order (${o.orderVariant} variant), ` +
      `${o.steps} steps of batch ${o.batchSize} on fresh synthetic images, blr ${o.blr}, warm-up ${o.warmupFraction} of the steps, ` +
      `weight decay 0.05${o.decayClsToken ? ' (cls_token too)' : ''}, ` +
      (seeds.length > 1 ? `seeds ${seeds[0]}..${seeds[seeds.length - 1]} (test images of seed ${o.seed})` : `seed ${o.seed}`) +
      `, ${o.device}. Step 0 is the initialisation (the same weights for every run of a seed). ` +
      (seeds.length > 1
        ? `± is the standard deviation over the ${seeds.length} seeds (the binomial standard error of one value is about ${(100 * Math.sqrt(0.25 / r.n)).toFixed(1)} points at most).`
        : '± is the binomial standard error over the test images.'),
    ...(r.missing.length
      ? [
          '',
          `**Not scored, as their runs have no checkpoint at that step (trained with other --points): ` +
            `${r.missing.map((m) => `S = ${m.trainedWith} seed ${m.seed} step ${m.step}`).join(', ')}. ` +
            `A new --out-dir trains runs that have them.**`,
        ]
      : []),
    '',
  ].join('\n');
}

/**
 * Runs the study (pre-trainings resume from their checkpoints when run again). Aborting `signal` stops a
 * pre-training as SIGINT does (after a checkpoint; a StoppedBySignal), or the scoring before its next
 * checkpoint (an AbortError); either way object-start.md and .json are not written. With `signal`, the
 * process's SIGINT/SIGTERM are left to the caller.
 */
export async function objectStartStudy(o: ObjectStudyOptions, log: (l: string) => void = stderrLine, signal?: AbortSignal): Promise<StudyResult> {
  const trained = parseTrainTokens(o.trainTokens);
  const device = checkDevice(o.device);
  const runs = trained.flatMap((t) => studySeeds(o).map((seed) => ({ tokens: t, seed, options: studyPretrainOptions(o, t, seed) })));
  for (const r of runs) {
    validatePretrain(r.options);
    modelConfigFrom(r.options);
    refuseChangedRun(r.options);
  }
  makeFolder(o.outDir);
  const data = await objectTestData(o);
  const points: StudyPoint[] = [];
  const missing: StudyResult['missing'] = [];
  for (const r of runs) {
    log(`object-start: pre-training with S = ${r.tokens}, seed ${r.seed} (${o.steps} steps) → ${r.options.outDir}`);
    const res = await pretrain(r.options, makeTrainData(trainDataRequest(r.options)), {
      log,
      freshRunHint: 'another --out-dir',
      spaceHint: 'another --out-dir',
      divergedAdvice: 'a lower --blr or a larger --warmup-fraction',
      ...(signal && { signal, catchSignals: false }),
    });
    if (res.stoppedBy === 'signal')
      throw new StoppedBySignal(
        `interrupted during the run with S = ${r.tokens}, seed ${r.seed}; run the same command again to continue`,
        res.signal ?? (signal?.reason as StoppedBySignal | undefined)?.signal,
      );
    if (res.stoppedBy === 'nonfinite')
      throw new Error(
        `the run with S = ${r.tokens}, seed ${r.seed} diverged (NaN/Inf loss) by step ${res.steps}; ` +
          `start afresh in another --out-dir with a lower --blr or a larger --warmup-fraction`,
      );
    await yieldThenThrowIfAborted(signal);
    // Initialisation: the weights pre-training starts from (same seed, same config).
    torch.manualSeed(r.options.seed);
    const init = new SemAIM(modelConfigFrom(r.options)).initWeights().to({ device });
    try {
      points.push(score(init, data, o, r.tokens, r.seed, 0));
    } finally {
      init.dispose();
    }
    const saved = listCheckpoints(join(r.options.outDir, 'checkpoints'));
    for (const step of plannedSteps(o)) {
      await yieldThenThrowIfAborted(signal);
      const dir = saved.find((c) => c.step === step)?.dir;
      if (!dir) {
        log(`  step ${step}: no checkpoint in ${r.options.outDir}/checkpoints, not scored (the run was trained with other --points)`);
        missing.push({ trainedWith: r.tokens, seed: r.seed, step });
        continue;
      }
      const loaded = loadModel(dir, device, {
        unusableHint: `move ${dir} out of checkpoints/ and run the same command again: the study scores the checkpoints that remain`,
      });
      try {
        points.push(score(loaded.model, data, o, r.tokens, r.seed, step));
      } finally {
        loaded.dispose();
      }
      const p = points[points.length - 1];
      log(
        `  step ${step}: on the object ${TOKENS.map((t) => `${t} ${(100 * p.byTokens[t].fraction).toFixed(1)}%`).join(', ')} (random centre ${(100 * p.randomCentre).toFixed(1)}%)`,
      );
    }
  }
  const partial = { format: 'semaim.object-start/1' as const, options: o, n: data.masks.length / (o.imgSize * o.imgSize), points, missing };
  const result: StudyResult = { ...partial, markdown: studyMarkdown(partial) };
  // the table and its data together (a kill between the renames is completed by the next writer)
  await commitStagedUnlessAborted(
    fileStagers([
      [join(o.outDir, 'object-start.json'), JSON.stringify(result, null, 2) + '\n'],
      [join(o.outDir, 'object-start.md'), result.markdown],
    ]),
    signal,
  );
  return result;
}
