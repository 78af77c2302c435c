// The jobs behind `semaim knn | linprobe | finetune`: resolve the encoder, make the labelled data,
// run the protocol, write `<out-dir>/<command>.json` and return the short table. Data-parallel (a
// process group), every rank extracts its slices, classifies or trains on its shard, and rank 0 alone
// reports and writes.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { OptionError, checkJobHooks, jobOptions, type HookKind, type OptionsInput } from '../util/options';
import { peakLr } from '../optim/peak-lr';
import { serializeTensors } from '../io/tensors';
import { stageFile } from '../util/safe-write';
import { DataFactories, EvalDataRequest, LabelledData, PassOptions, RankSlice, Split, batchesPerEpoch, splitClassMismatch } from '../data';
import { ProcessGroup, rankSlice } from '../dist';
import { DataError } from '../util/errors';
import { SAME_ENCODER_AND_DATA_HINT, checkRanksAgree, prepareOnEveryRank, throwIfAbortedOnAnyRank } from '../dist/agree';
import { EncoderSource, LoadedEncoder, loadEncoder, resolveEncoder, sha256File } from '../semaim';
import { processDevice } from '../run/device';
import { inJobScope } from '../run/job-scope';
import { imageInputOptions } from '../data/options';
import type { StopReason } from '../run/loop';
import type { StopSignal } from '../run/signals';
import { FeatureSet, checkImageShape, disposeFeatures, extractFeatures, setSize } from './features';
import { FINETUNE_HOOK_KINDS, FinetuneHooks, finetune, finetunePass } from './finetune';
import { KnnResult, knnClassifyAsync, parseKs } from './knn';
import { LinprobeOptions, linprobeOnFeatures, linprobeOnline, onlinePass } from './linprobe';
import {
  EvalCommonOptions,
  FINETUNE_OPTIONS,
  FinetuneOptions,
  KNN_OPTIONS,
  KnnCommandOptions,
  LINPROBE_OPTIONS,
  LinprobeCommandOptions,
  checkLinprobeProcesses,
  validateEval,
  validateFinetune,
  validateLinprobe,
} from './options';
import { EvalResult, commitResult, formatResult, inResultFolder, makeResult, writeResult } from './result';
import { refuseTooFewTrainingImages } from './head-training';
import { checkEncoderFitsOnCpu } from './encoder-memory';

/** What {@link runKnn} and {@link runLinprobe} return (on rank 0): the result written, its path, and the Markdown table the command prints. */
export interface EvalRun {
  result: EvalResult;
  /** The result file written. */
  path: string;
  /** The Markdown table the command prints. */
  table: string;
}

/** How a library caller runs runKnn / runLinprobe / runSegprobe (the third argument; a process group alone also works). */
export interface EvalJobOptions {
  /** Data-parallel: every rank runs the job, rank 0 reports and writes (the others get null). */
  group?: ProcessGroup | null;
  /**
   * Aborting it stops the job before its next batch of images, probe step or block of k-NN queries: it
   * rejects with an AbortError (code 'ERR_ABORTED', `cause` the signal's reason) and writes no result
   * file (an earlier run's files in the out-dir stay as they were). Data-parallel: aborting any rank's
   * signal stops every rank at the same point, each with an AbortError (the ranks agree on it at the
   * job's start and end, one small collective each, and about once a second between: StopAgreement).
   */
  signal?: AbortSignal;
  /**
   * null: no progress bars and no notes on stderr (as embed's and predict's `progress: null`); what the
   * notes said is in the result (data sizes without unusable images, details.batchSize of a probe
   * trained on fewer features than a batch). Default: bars, as the commands show them.
   */
  progress?: null;
}

/** The data factories a run* job opens its splits with (data.DATA_FACTORIES, or a caller's own). */
function checkFactories(job: string, f: DataFactories): void {
  if (typeof (f as Partial<DataFactories> | undefined)?.makeEvalData !== 'function')
    throw new DataError(`${job}: expected data factories as the second argument (data.DATA_FACTORIES, or an object with makeEvalData), got ${String(f)}`);
}

/** The job options from the third argument of a run* job: a process group (as the commands pass it), the options, or nothing. */
export function evalJobOptions(x: ProcessGroup | EvalJobOptions | null | undefined): EvalJobOptions {
  if (!x) return {};
  if (x instanceof ProcessGroup) return { group: x };
  // before any work: `progress: false` (pretrain's spelling) kept the bars on, a misspelt key was ignored
  checkJobHooks(x, EVAL_JOB_KINDS);
  return x;
}

const EVAL_JOB_KINDS = { group: ['object', 'null'], signal: 'signal', progress: 'null' } as const satisfies Record<
  keyof EvalJobOptions,
  HookKind | readonly HookKind[]
>;

/**
 * The request for one labelled split of an evaluation (dataset, data path, that split's limit, seed, workers,
 * image input) that a DataFactories' makeEvalData opens; `trainPass` is the pass a training job reads.
 */
export function dataRequest(o: EvalCommonOptions, split: Split, imgSize: number, trainPass?: PassOptions): EvalDataRequest {
  return {
    split,
    dataset: o.dataset,
    dataPath: o.dataPath,
    imgSize,
    limit: split === 'train' ? o.trainLimit : o.testLimit,
    seed: o.seed,
    numWorkers: o.numWorkers,
    imageInput: imageInputOptions(o),
    trainPass,
  };
}

/**
 * Both labelled splits (each as the rank slice given for it, if any); checks that they agree on the
 * classes. `trainPass`: the pass a training job reads over the train split.
 */
export async function makeSplits(
  f: DataFactories,
  o: EvalCommonOptions,
  imgSize: number,
  slices: { train?: RankSlice; test?: RankSlice } = {},
  dp: { group: ProcessGroup | null; encoderSha256: string } | null = null,
  trainPass?: PassOptions,
): Promise<{ train: LabelledData; test: LabelledData }> {
  const { train, test } = await prepareOnEveryRank(
    dp?.group ?? null,
    async () => {
      const train = await f.makeEvalData(dataRequest(o, 'train', imgSize, trainPass), slices.train);
      try {
        return { train, test: await f.makeEvalData(dataRequest(o, 'test', imgSize), slices.test) };
      } catch (e) {
        await train.close();
        throw e;
      }
    },
    async (splits) => {
      await splits.train.close();
      await splits.test.close();
    },
  );
  try {
    const mismatch = splitClassMismatch(train, test);
    if (mismatch) throw new DataError(mismatch);
    if (dp?.group) {
      // ranks that encode with other weights or read other images would merge features of different models or sets
      const id = (split: LabelledData) => split.identity?.() ?? { samples: split.size, classes: split.numClasses };
      const same: Record<string, unknown> = { 'encoder sha256': dp.encoderSha256 };
      for (const [k, v] of Object.entries(id(train))) same[`train ${k}`] = v;
      for (const [k, v] of Object.entries(id(test))) same[`test ${k}`] = v;
      await checkRanksAgree(dp.group, 'the encoder and the evaluation data', same, SAME_ENCODER_AND_DATA_HINT);
    }
  } catch (e) {
    await train.close();
    await test.close();
    throw e;
  }
  return { train, test };
}

/**
 * A split all of whose images were unusable (skipped while extracting) is the data's fault, as one
 * without images is: a DataError, not the probe's or the vote's error about zero features.
 */
export function checkUsable(usable: { train?: number; test: number }, listed: { train?: number; test: number }): void {
  for (const split of ['train', 'test'] as const) {
    if (usable[split] === 0) throw new DataError(`${split} data: none of its ${listed[split]} images could be read (each was skipped as unusable)`);
  }
}

/**
 * Loads the encoder and extracts train and test features. Data-parallel with a group: each rank keeps
 * its shard of the training features and gets the whole test set (the test split is the small one).
 */
export async function encoderFeatures(
  o: KnnCommandOptions | LinprobeCommandOptions,
  f: DataFactories,
  source: EncoderSource,
  group: ProcessGroup | null = null,
  checkSizes: (sizes: { train: number; test: number }) => void = () => {},
  signal?: AbortSignal,
  progress?: null,
): Promise<{
  loaded: LoadedEncoder;
  train: FeatureSet;
  test: FeatureSet;
  numClasses: number;
  classNames?: string[];
  sizes: { train: number; test: number };
}> {
  // the ranks check after the load that they encode with the same weights (makeSplits): a newer checkpoint may be taken
  const loaded = loadEncoder(source, { device: processDevice(o.device, group), verify: o.verify, newerIfPruned: true });
  let train: FeatureSet | null = null;
  try {
    const slice = rankSlice(group);
    const splits = await makeSplits(f, o, loaded.source.config.imgSize, { train: slice, test: slice }, { group, encoderSha256: loaded.source.sha256 });
    try {
      checkImageShape(loaded.encoder, splits.train, 'train data');
      checkImageShape(loaded.encoder, splits.test, 'test data');
      checkSizes({ train: splits.train.size, test: splits.test.size });
      const fo = { batchSize: o.evalBatchSize, pooling: o.pooling, precision: o.precision, group, signal, encoderName: loaded.source.weights };
      const label = (split: string) => (progress === null ? null : `features (${split})`);
      train = await extractFeatures(loaded.encoder, splits.train, { ...fo, gatherTo: 'shard', label: label('train') });
      const test = await extractFeatures(loaded.encoder, splits.test, { ...fo, gatherTo: 'all', label: label('test') });
      const sizes = { train: setSize(train), test: setSize(test) }; // unusable images left out
      try {
        checkUsable(sizes, { train: splits.train.size, test: splits.test.size });
        checkSizes(sizes);
      } catch (e) {
        disposeFeatures(test);
        throw e;
      }
      return { loaded, train, test, numClasses: splits.train.numClasses, classNames: splits.train.classNames, sizes };
    } finally {
      await splits.train.close();
      await splits.test.close();
    }
  } catch (e) {
    disposeFeatures(train);
    loaded.encoder.dispose();
    throw e;
  }
}

/** The result rows of k-NN results, named 'k-NN k=N': k = 20 first where present (the headline), then the others by increasing k. */
export function knnRows(results: KnnResult[]): { name: string; accuracy: KnnResult['accuracy'] }[] {
  // The headline is k = 20 when asked for (the authors' choice, docs/METHOD.md §6.4), else the first k.
  const sorted = [...results].sort((a, b) => (a.k === 20 ? -1 : b.k === 20 ? 1 : a.k - b.k));
  return sorted.map((r) => ({ name: `k-NN k=${r.k}`, accuracy: r.accuracy }));
}

/** k-NN of the encoder's features; null on data-parallel ranks other than 0 (rank 0 reports). */
export async function runKnn(
  options: OptionsInput<typeof KNN_OPTIONS>,
  f: DataFactories,
  job?: { signal?: AbortSignal; group?: null; progress?: null },
): Promise<EvalRun>;
export async function runKnn(options: OptionsInput<typeof KNN_OPTIONS>, f: DataFactories, job: ProcessGroup | EvalJobOptions | null): Promise<EvalRun | null>;
export async function runKnn(
  options: OptionsInput<typeof KNN_OPTIONS>,
  f: DataFactories,
  job: ProcessGroup | EvalJobOptions | null = null,
): Promise<EvalRun | null> {
  const o = jobOptions(KNN_OPTIONS, options);
  checkFactories('runKnn', f);
  return inJobScope(o.threads, () => runKnnJob(o, f, evalJobOptions(job)));
}

async function runKnnJob(o: KnnCommandOptions, f: DataFactories, { group = null, signal, progress }: EvalJobOptions): Promise<EvalRun | null> {
  await throwIfAbortedOnAnyRank(signal, group);
  validateEval(o);
  const source = resolveEncoder(o.checkpoint, o);
  checkEncoderFitsOnCpu(source.config, o.device, [{ key: 'evalBatchSize', batch: o.evalBatchSize }]);
  const ks = parseKs(o.k);
  return inResultFolder(o.outDir, 'knn', !group || group.rank === 0, () => knnJob(o, f, { group, signal, progress }, source, ks));
}

async function knnJob(
  o: KnnCommandOptions,
  f: DataFactories,
  { group = null, signal, progress }: EvalJobOptions,
  source: EncoderSource,
  ks: number[],
): Promise<EvalRun | null> {
  const t0 = performance.now(); // (the monotonic clock: Date.now() steps with the wall clock, NTP)
  const kmax = ks[ks.length - 1];
  const ft = await encoderFeatures(
    o,
    f,
    source,
    group,
    (sizes) => {
      if (kmax > sizes.train) throw new OptionError('k', `k = ${kmax} exceeds the ${sizes.train} training images`);
    },
    signal,
    progress,
  );
  try {
    const results = await knnClassifyAsync(ft.train, ft.test, {
      ks,
      temperature: o.temperature,
      numClasses: ft.numClasses,
      chunkSize: o.chunkSize,
      group,
      signal,
      label: progress === null ? null : undefined,
    });
    await throwIfAbortedOnAnyRank(signal, group); // aborted during the vote's last block (on any rank): no file
    if (group && group.rank !== 0) return null;
    const result = makeResult('knn', knnRows(results), {
      source: ft.loaded.source,
      config: o,
      data: { ...ft.sizes, numClasses: ft.numClasses },
      classNames: ft.classNames,
      seconds: (performance.now() - t0) / 1000,
      details: { perK: results.map((r) => ({ k: r.k, ...r.accuracy })) },
    });
    const path = writeResult(o.outDir, result);
    return { result, path, table: formatResult(result) };
  } finally {
    disposeFeatures(ft.train, ft.test);
    ft.loaded.encoder.dispose();
  }
}

/** The probe recipe ({@link LinprobeOptions}: epochs, batch, lr, schedule, optimiser, seed, evalEvery) of resolved `semaim linprobe` options. */
export function linprobeOptionsFrom(o: LinprobeCommandOptions): LinprobeOptions {
  return {
    epochs: o.epochs,
    batchSize: o.batchSize,
    blr: o.blr,
    lr: o.lr,
    minLr: o.minLr,
    warmupEpochs: o.warmupEpochs,
    weightDecay: o.weightDecay,
    momentum: o.momentum,
    optimizer: o.optimizer,
    seed: o.seed,
    evalEvery: o.evalEvery,
  };
}

/** The linear probe; null on data-parallel ranks other than 0 (rank 0 reports and writes the probe). */
export async function runLinprobe(
  options: OptionsInput<typeof LINPROBE_OPTIONS>,
  f: DataFactories,
  job?: { signal?: AbortSignal; group?: null; progress?: null },
): Promise<EvalRun>;
export async function runLinprobe(
  options: OptionsInput<typeof LINPROBE_OPTIONS>,
  f: DataFactories,
  job: ProcessGroup | EvalJobOptions | null,
): Promise<EvalRun | null>;
export async function runLinprobe(
  options: OptionsInput<typeof LINPROBE_OPTIONS>,
  f: DataFactories,
  job: ProcessGroup | EvalJobOptions | null = null,
): Promise<EvalRun | null> {
  const o = jobOptions(LINPROBE_OPTIONS, options);
  checkFactories('runLinprobe', f);
  return inJobScope(o.threads, () => runLinprobeJob(o, f, evalJobOptions(job)));
}

async function runLinprobeJob(o: LinprobeCommandOptions, f: DataFactories, { group = null, signal, progress }: EvalJobOptions): Promise<EvalRun | null> {
  await throwIfAbortedOnAnyRank(signal, group);
  validateLinprobe(o); // (the command's checks: an --augment that cached features would ignore, too)
  checkLinprobeProcesses(o, group?.worldSize ?? 1); // under torchrun the launch flags say nothing
  peakLr(o, o.batchSize); // before any feature is extracted
  const source = resolveEncoder(o.checkpoint, o);
  // (without cached features, every step's batch passes through the encoder, without gradients)
  const encoded = [{ key: 'evalBatchSize', batch: o.evalBatchSize }, ...(o.cacheFeatures ? [] : [{ key: 'batchSize', batch: o.batchSize }])];
  checkEncoderFitsOnCpu(source.config, o.device, encoded);
  return inResultFolder(o.outDir, 'linprobe', !group || group.rank === 0, () => linprobeJob(o, f, { group, signal, progress }, source));
}

async function linprobeJob(
  o: LinprobeCommandOptions,
  f: DataFactories,
  { group = null, signal, progress }: EvalJobOptions,
  source: EncoderSource,
): Promise<EvalRun | null> {
  const t0 = performance.now(); // (the monotonic clock: Date.now() steps with the wall clock, NTP)
  const lo = { ...linprobeOptionsFrom(o), signal, label: progress === null ? null : undefined };
  let train: FeatureSet | null;
  let test: FeatureSet | null = null;
  let sizes: { train: number; test: number };
  let numClasses: number;
  let classNames: string[] | undefined;
  let loaded: LoadedEncoder;
  let r;
  if (o.cacheFeatures) {
    // (the probe needs 2 training features: checked before any image is read, and again on those left after the unusable ones)
    const checkSizes = (sizes: { train: number }) => refuseTooFewTrainingImages('linprobe', sizes.train);
    const ft = await encoderFeatures(o, f, source, group, checkSizes, signal, progress);
    ({ loaded, train, test, numClasses, classNames, sizes } = ft);
    try {
      r = await linprobeOnFeatures(train, test, numClasses, { ...lo, group });
    } finally {
      disposeFeatures(train, test);
      loaded.encoder.dispose();
    }
  } else {
    const slice = rankSlice(group);
    const dp = { group, encoderSha256: source.sha256 };
    const splits = await makeSplits(f, o, source.config.imgSize, { train: slice, test: slice }, dp, onlinePass(o, slice.worldSize));
    try {
      // data-parallel ranks agreed on this source's weights (makeSplits): theirs or none
      loaded = loadEncoder(source, { device: processDevice(o.device, group), verify: o.verify, newerIfPruned: !group });
      try {
        checkImageShape(loaded.encoder, splits.train, 'train data');
        checkImageShape(loaded.encoder, splits.test, 'test data');
        ({ numClasses, classNames } = splits.train);
        sizes = { train: splits.train.size, test: splits.test.size };
        // checked before the test features are extracted (linprobeOnline would refuse it only then)
        if (batchesPerEpoch(splits.train.size, o.batchSize, true) < 1)
          throw new OptionError(
            'batchSize',
            `${o.batchSize} exceeds the ${splits.train.size} training images (the online probe, --no-cache-features, drops partial batches)`,
          );
        // The test features in the precision the probe trains on, as the cached path extracts both splits.
        const precision = o.precision;
        const fo = {
          ...{ batchSize: o.evalBatchSize, pooling: o.pooling, precision, group, gatherTo: 'all' as const, signal },
          label: progress === null ? null : 'features (test)',
          encoderName: loaded.source.weights,
        };
        test = await extractFeatures(loaded.encoder, splits.test, fo);
        sizes.test = setSize(test); // unusable test images left out
        // (the training images are read epoch by epoch; a test split without a readable image is refused before them,
        // as the cached probe refuses it: it trained and wrote a linprobe.json whose accuracy was null)
        checkUsable({ test: sizes.test }, { test: splits.test.size });
        r = await linprobeOnline(loaded.encoder, splits.train, test, numClasses, { ...lo, pooling: o.pooling, precision, group, augment: o.augment });
      } finally {
        disposeFeatures(test);
        loaded.encoder.dispose();
      }
    } finally {
      await splits.train.close();
      await splits.test.close();
    }
  }
  try {
    await throwIfAbortedOnAnyRank(signal, group); // aborted during the last step (on any rank): no files
    if (group && group.rank !== 0) return null;
    const outDir = o.outDir;
    // linprobe.json records the probe's SHA-256, so predict refuses a probe damaged since: its bytes are made first
    const probeBytes = serializeTensors(r.probe.stateDict(), { format: 'semaim.linprobe/1', encoderSha256: loaded.source.sha256 });
    const probeSha256 = createHash('sha256').update(probeBytes).digest('hex');
    const result = makeResult('linprobe', [{ name: `linear probe (${o.optimizer}, ${o.epochs} ep)`, accuracy: r.accuracy }], {
      source: loaded.source,
      config: o,
      data: { ...sizes, numClasses },
      classNames,
      seconds: (performance.now() - t0) / 1000,
      details: {
        lr: r.lr,
        batchSize: r.batchSize,
        bestTop1: Math.max(...r.history.map((e) => e.top1 ?? -Infinity), r.accuracy.top1),
        history: r.history,
        probeSha256,
      },
    });
    // the probe and linprobe.json, which describes it, both or (a full disk) neither; a kill between their
    // renames is completed by the next writer
    const probe = () => stageFile(`${outDir}/probe.safetensors`, probeBytes);
    const path = commitResult(outDir, result, [probe]);
    return { result, path, table: formatResult(result) };
  } finally {
    r.probe.dispose();
  }
}

/** What {@link runFinetune} returns: the result and its path, the table the command prints (or why the run stopped), and the stop reason. */
export interface FinetuneRun {
  /** null when the run stopped before the end (signal, NaN), and on data-parallel ranks other than 0. */
  result: EvalResult | null;
  path: string | null;
  table: string;
  stoppedBy: StopReason;
  signal?: StopSignal;
}

/**
 * Runs `semaim finetune`: fine-tunes on the splits `f` opens and writes <out-dir>/finetune.json. A run stopped before
 * the end writes no result (its table says why, and how to continue); data-parallel (hooks.group), rank 0 alone writes.
 */
export async function runFinetune(options: OptionsInput<typeof FINETUNE_OPTIONS>, f: DataFactories, hooks: FinetuneHooks = {}): Promise<FinetuneRun> {
  const o = jobOptions(FINETUNE_OPTIONS, options);
  checkJobHooks(hooks, FINETUNE_HOOK_KINDS);
  checkFactories('runFinetune', f);
  return inJobScope(o.threads, () => runFinetuneJob(o, f, hooks));
}

async function runFinetuneJob(o: FinetuneOptions, f: DataFactories, hooks: FinetuneHooks = {}): Promise<FinetuneRun> {
  validateFinetune(o);
  const source = resolveEncoder(o.checkpoint, o);
  checkEncoderFitsOnCpu(source.config, o.device, [
    { key: 'batchSize', batch: o.batchSize, training: true },
    { key: 'evalBatchSize', batch: o.evalBatchSize },
  ]);
  const t0 = performance.now(); // (the monotonic clock: Date.now() steps with the wall clock, NTP)
  const group = hooks.group ?? null;
  // data-parallel: each rank trains on and evaluates its slices of the global batches; rank 0 reports
  const splits = await makeSplits(
    f,
    o,
    source.config.imgSize,
    { train: rankSlice(group), test: rankSlice(group) },
    { group, encoderSha256: source.sha256 },
    finetunePass(o),
  );
  try {
    const r = await finetune(o, splits, hooks, source);
    if (group && group.rank !== 0) return { result: null, path: null, table: '', stoppedBy: r.stoppedBy, signal: r.signal };
    if (!r.accuracy) {
      const msg =
        r.stoppedBy === 'nonfinite'
          ? `fine-tuning diverged (NaN/Inf) after ${r.steps} steps; no result was written`
          : `fine-tuning stopped (${r.stoppedBy}) after ${r.steps} steps; run again with the same --out-dir to continue from ${r.checkpoint ?? 'the start'}`;
      return { result: null, path: null, table: msg + '\n', stoppedBy: r.stoppedBy, signal: r.signal };
    }
    const rows = [{ name: `fine-tune (${r.steps} steps)`, accuracy: r.accuracy }];
    if (r.emaAccuracy) rows.push({ name: 'fine-tune (EMA)', accuracy: r.emaAccuracy });
    const result = makeResult('finetune', rows, {
      source: r.encoder,
      config: o,
      // the test images scored (unusable ones left out, as knn.json and linprobe.json count them); training puts
      // another image in an unusable one's place, so every listed training image is a sample it trained on
      data: { train: splits.train.size, test: r.accuracy.n, numClasses: splits.train.numClasses },
      classNames: splits.train.classNames,
      seconds: (performance.now() - t0) / 1000,
      details: {
        steps: r.steps,
        stoppedBy: r.stoppedBy,
        bestTop1: r.bestTop1,
        lastLoss: r.lastLoss,
        model: r.config,
        finetuneCheckpoint: r.checkpoint,
        finetuneSha256: r.checkpoint ? sha256File(join(r.checkpoint, 'model.safetensors')) : null,
      },
    });
    const path = writeResult(o.outDir, result);
    return { result, path, table: formatResult(result), stoppedBy: r.stoppedBy };
  } finally {
    await splits.train.close();
    await splits.test.close();
  }
}
