// The job behind `semaim segprobe`: the frozen encoder (pre-trained, or its architecture freshly
// initialised), both splits of a dataset with masks, the probe, then `<out-dir>/segprobe.json`
// (fractions 0–1), `segprobe.png` (predictions beside the ground truth), `seg-head.safetensors`,
// and a Markdown table for the terminal.
import { quotedPath } from '../util/printable';
import { lstatSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import * as torch from '../torch';
import { stageTensors } from '../io/tensors';
import { OptionError, jobOptions } from '../util/options';
import { VisionTransformer } from '../semaim';
import { encodePng } from '../viz/png';
import { removeDeadTemps, stageFile, tempPath, type StagedFile } from '../util/safe-write';
import { drawSegFigure } from '../viz/seg-figure';
import type { SegDataRequest } from '../data/seg-loader';
import { EncoderSource, LoadedEncoder, loadEncoder, resolveEncoder } from '../semaim';
import { SegMetrics } from './miou';
import { commitResult, inResultFolder, markdownTable, pct } from './result';
import { refuseTooFewTrainingImages } from './head-training';
import { SegData, SegSkip, SkipSummary, describeSkips, mergeSkips, summarizeSkips } from '../data/seg-streams';
import { splitClassMismatch } from '../data/streams';
import { extractSegFeatures, parseBlocks, SegFeatureSet, segSetSize } from './seg-features';
import { severalRanks, type ProcessGroup } from '../dist';
import { SAME_ENCODER_AND_DATA_HINT, checkRanksAgree, prepareOnEveryRank, throwIfAbortedOnAnyRank } from '../dist/agree';
import { SEGPROBE_OPTIONS, SegDataSettings, SegprobeConfig, SegprobeSettings, checkSegprobeProcesses, readSegprobeConfig } from './segprobe-options';
import { processDevice } from '../run/device';
import { inJobScope } from '../run/job-scope';
import { SegprobeResult, anyLabelled, constantPredictionMetrics, segprobeOnFeatures, segprobeOnline } from './segprobe';
import type { Precision } from '../run/precision';
import { DataError } from '../util/errors';
import { evalJobOptions, type EvalJobOptions } from './run';
import { checkEncoderFitsOnCpu } from './encoder-memory';

/** Where segmentation data comes from (src/data/seg-loader.ts's makeSegData, or memory in tests). */
export type SegDataFactory = (request: SegDataRequest) => SegData | Promise<SegData>;

export interface SegprobeOutcome {
  probe: SegprobeResult;
  /** Predicting the class most frequent in the training masks everywhere. */
  baseline: { classIndex: number; className: string; metrics: SegMetrics };
  blocks: number[];
  featureDim: number;
  sizes: { train: number; test: number };
  skipped: { train: SkipSummary; test: SkipSummary };
  /** The first test images (normalised) and their masks, for the figure. */
  figure: { images: Float32Array; truth: Uint8Array; count: number };
}

export interface ProbeRunOptions {
  evalBatchSize: number;
  precision: Precision;
  seed: number;
  evalEvery?: number;
  /** Test images kept for the figure. */
  keep?: number;
  /** Show progress bars (default true). */
  progress?: boolean;
  /** Data-parallel: each rank encodes its slices of both splits and holds shards; results on every rank. */
  group?: ProcessGroup | null;
  /** Aborting it stops the features or the probe before the next batch or step (AbortError, code 'ERR_ABORTED'). */
  signal?: AbortSignal;
  /** The encoder's weights file, named when its features are NaN/Inf. */
  encoderName?: string;
}

function checkShapes(encoder: VisionTransformer, data: SegData, what: string): void {
  const want = [encoder.cfg.inChans ?? 3, encoder.cfg.imgSize, encoder.cfg.imgSize];
  if (data.imageShape.join() !== want.join()) throw new DataError(`${what}: images are [${data.imageShape}], the encoder expects [${want}]`);
}

/** Trains and scores the probe on a frozen encoder over two splits. */
export async function segprobeEncoder(
  encoder: VisionTransformer,
  train: SegData,
  test: SegData,
  s: SegprobeSettings,
  o: ProbeRunOptions,
): Promise<SegprobeOutcome> {
  const mismatch = splitClassMismatch(train, test);
  if (mismatch) throw new DataError(mismatch);
  checkShapes(encoder, train, 'train data');
  checkShapes(encoder, test, 'test data');
  // the result names each class's IoU and counts the classes by its names: one per class, or they disagree
  for (const [what, d] of [
    ['train data', train],
    ['test data', test],
  ] as const)
    if (!Array.isArray(d.classNames) || d.classNames.length !== d.numClasses)
      throw new DataError(
        `${what}: ${Array.isArray(d.classNames) ? d.classNames.length : 'no'} class names for its ${d.numClasses} classes (one name per class)`,
      );
  // (the online probe drops a partial batch: checked before the test features are extracted, as linprobe's online path)
  if (s.augment !== 'none' && train.size < s.batchSize)
    throw new OptionError(
      'batchSize',
      `${s.batchSize} exceeds the ${train.size} training images (the online probe, --augment ${s.augment}, drops partial batches)`,
    );
  // the head's BatchNorm normalises over a step's patch tokens: one image of an encoder's one patch is one value per channel
  if (s.batchSize * encoder.numPatches < 2)
    throw new OptionError(
      'batchSize',
      `${s.batchSize} image of the encoder's one patch per step gives the head's BatchNorm one value per channel to normalise: it needs at least 2 (--batch-size 2)`,
    );
  // before any batch is read, what the data left out while listing (an image without a mask): not among its `size`
  const listingSkips = train.skipped().count;
  const blocks = parseBlocks(s.blocks, encoder.cfg.depth);
  const C = train.numClasses;
  const show = o.progress ?? true;
  const group = severalRanks(o.group);
  const fo = { batchSize: o.evalBatchSize, blocks, precision: o.precision, group, signal: o.signal, encoderName: o.encoderName };
  const keep = o.keep ?? 0;
  const settings = {
    epochs: s.epochs,
    batchSize: s.batchSize,
    lr: s.lr,
    minLr: s.minLr,
    warmupEpochs: s.warmupEpochs,
    weightDecay: s.weightDecay,
    momentum: s.momentum,
    optimizer: s.optimizer,
    seed: o.seed,
    evalEvery: o.evalEvery,
    evalBatchSize: o.evalBatchSize,
    keepPredictions: keep,
    label: show ? 'segprobe' : null,
    group,
    signal: o.signal,
  };
  let testSet: SegFeatureSet | null = null;
  let trainSet: SegFeatureSet | null = null;
  try {
    testSet = await extractSegFeatures(encoder, test, { ...fo, keepImages: keep, label: show ? 'features (test)' : null });
    // masks whose every pixel is ignored leave nothing to score: the mIoU was NaN, written as null
    const labelled = anyLabelled(testSet.masks);
    if (!(group ? await group.anyTrue(labelled) : labelled))
      throw new DataError(
        `test data: no labelled pixel in its ${segSetSize(testSet)} masks (every pixel is the ignore index ${test.ignoreIndex}): there is nothing to score`,
      );
    let probe: SegprobeResult;
    if (s.augment === 'none') {
      trainSet = await extractSegFeatures(encoder, train, { ...fo, label: show ? 'features (train)' : null });
      probe = await segprobeOnFeatures(trainSet, testSet, C, settings);
    } else {
      probe = await segprobeOnline(encoder, train, testSet, C, { ...settings, blocks, augment: s.augment, precision: o.precision });
    }
    const skipped = await skippedOverRanks(group, train, test);
    const h = probe.trainHistogram;
    const classIndex = h.reduce((best, v, k) => (v > h[best] ? k : best), 0);
    const count = testSet.keptMasks.length / (testSet.size[0] * testSet.size[1]);
    return {
      probe,
      blocks,
      featureDim: testSet.features.shape[2],
      baseline: { classIndex, className: train.classNames[classIndex], metrics: constantPredictionMetrics(testSet.masks, C, classIndex, group) },
      sizes: { train: trainSet ? segSetSize(trainSet) : train.size - (skipped.train.count - listingSkips), test: segSetSize(testSet) },
      skipped,
      figure: { images: testSet.images, truth: testSet.keptMasks, count },
    };
  } finally {
    trainSet?.features.dispose();
    testSet?.features.dispose();
  }
}

/** What both splits left out, over all ranks (each rank reads only its slices). */
async function skippedOverRanks(group: ProcessGroup | null, train: SegData, test: SegData): Promise<{ train: SkipSummary; test: SkipSummary }> {
  if (!group) return { train: train.skipped(), test: test.skipped() };
  const all = await group.allGatherJson<SegSkip[][]>([train.skippedSamples(), test.skippedSamples()]);
  return { train: summarizeSkips(mergeSkips(all.map((x) => x[0]))), test: summarizeSkips(mergeSkips(all.map((x) => x[1]))) };
}

/**
 * The frozen encoder: pre-trained weights (of the run's newest checkpoint where the run pruned the source's
 * since: the ranks check after this that they agree), or the same architecture initialised from `seed`; and its source.
 */
export function frozenEncoder(source: EncoderSource, init: 'pretrained' | 'random', seed: number, device: torch.Device, verify?: boolean): LoadedEncoder {
  if (init === 'pretrained') return loadEncoder(source, { device, verify, newerIfPruned: true });
  torch.manualSeed(seed);
  const encoder = new VisionTransformer(source.config).initWeights();
  for (const p of encoder.parameters()) p.requiresGrad = false;
  return { encoder: encoder.to({ device }).eval(), source };
}

export function segDataRequest(d: SegDataSettings, split: 'train' | 'test', imgSize: number, seed: number): SegDataRequest {
  return {
    split,
    dataset: d.dataset,
    dataPath: d.dataPath,
    imgSize,
    limit: split === 'train' ? d.trainLimit : d.testLimit,
    seed,
    segClasses: d.segClasses,
    numClasses: d.numClasses,
    reduceZeroLabel: d.reduceZeroLabel,
    imageInput: d.imageInput,
  };
}

/**
 * Both splits; closes the first when the second cannot be opened. A training split of fewer than 2 images is
 * refused at once: the probe needs 2, and found out only after the features (in an ablation, after its first pre-training).
 */
export async function openSegSplits(f: SegDataFactory, d: SegDataSettings, imgSize: number, seed: number): Promise<{ train: SegData; test: SegData }> {
  const train = await f(segDataRequest(d, 'train', imgSize, seed));
  try {
    refuseTooFewTrainingImages('segprobe', train.size);
    return { train, test: await f(segDataRequest(d, 'test', imgSize, seed)) };
  } catch (e) {
    await train.close();
    throw e;
  }
}

/**
 * One measurement of segprobe's result (SegprobeFile.rows), the probe's or the
 * most-frequent-class baseline's: mIoU, pixel and mean accuracy (0–1), and the pixels scored.
 */
export interface SegRow {
  name: string;
  mIoU: number;
  pixelAccuracy: number;
  meanAccuracy: number;
  pixels: number;
}

/**
 * The result file of `semaim segprobe` (<out-dir>/segprobe.json, format 'semaim.segprobe/1'): the probe's mIoU
 * and accuracies, per class, the rows (probe and constant baseline), the encoder, the data and the options.
 */
export interface SegprobeFile {
  format: 'semaim.segprobe/1';
  command: 'segprobe';
  createdAt: string;
  /** The headline: the probe's mean IoU, 0–1 (mean over classes present in the truth or the prediction). */
  mIoU: number;
  pixelAccuracy: number;
  meanAccuracy: number;
  perClassIoU: (number | null)[];
  perClassAccuracy: (number | null)[];
  classNames: string[];
  rows: SegRow[];
  checkpoint: { path: string; weights: string; sha256: string; kind: string; init: 'pretrained' | 'random' };
  encoder: EncoderSource['config'];
  data: { dataset: string; train: number; test: number; numClasses: number; ignoreIndex: number; skipped: { train: SkipSummary; test: SkipSummary } };
  config: Record<string, unknown>;
  seconds: number;
  details: Record<string, unknown>;
}

const row = (name: string, m: SegMetrics): SegRow => ({ name, mIoU: m.mIoU, pixelAccuracy: m.pixelAccuracy, meanAccuracy: m.meanAccuracy, pixels: m.pixels });

/** The table printed after a run: one row per measurement, then the per-class IoU of the probe. */
export function formatSegprobe(r: SegprobeFile): string {
  const main = markdownTable(
    ['evaluation', 'mIoU %', 'pixel acc %', 'mean acc %', 'test images'],
    r.rows.map((x) => [x.name, pct(x.mIoU), pct(x.pixelAccuracy), pct(x.meanAccuracy), String(r.data.test)]),
    ['l', 'r', 'r', 'r', 'r'],
  );
  const perClass = markdownTable(['class', ...r.classNames], [['IoU % (probe)', ...r.perClassIoU.map((v) => pct(v, 1))]]);
  const skips = `skipped samples: train ${describeSkips(r.data.skipped.train)}, test ${describeSkips(r.data.skipped.test)}`;
  const enc =
    r.checkpoint.init === 'random'
      ? `encoder: the architecture of ${quotedPath(r.checkpoint.weights)}, randomly initialised (seed ${r.config.seed})`
      : `encoder ${quotedPath(r.checkpoint.weights)} (sha256 ${r.checkpoint.sha256.slice(0, 16)}…)`;
  return `${main}\n${perClass}\n${skips}\n${enc}\n`;
}

/**
 * What {@link runSegprobe} returns (on rank 0): the result written, its path, the figure (segprobe.png; null when none was drawn) and the Markdown table.
 */
export interface SegprobeRun {
  result: SegprobeFile;
  path: string;
  figure: string | null;
  table: string;
}

/**
 * The probe and its files; null on data-parallel ranks other than 0 (rank 0 writes). `options` are those `cfg`
 * was read from (readSegprobeConfig), written as segprobe.json's config: others are refused (OptionError 'options').
 */
export async function runSegprobe(
  cfg: SegprobeConfig,
  options: Record<string, unknown>,
  f: SegDataFactory,
  job?: { signal?: AbortSignal; group?: null; progress?: null },
): Promise<SegprobeRun>;
export async function runSegprobe(
  cfg: SegprobeConfig,
  options: Record<string, unknown>,
  f: SegDataFactory,
  job: ProcessGroup | EvalJobOptions | null,
): Promise<SegprobeRun | null>;
export async function runSegprobe(
  cfg: SegprobeConfig,
  options: Record<string, unknown>,
  f: SegDataFactory,
  job: ProcessGroup | EvalJobOptions | null = null,
): Promise<SegprobeRun | null> {
  if (typeof cfg?.probe !== 'object' || typeof cfg.data !== 'object')
    throw new OptionError(
      'options',
      `runSegprobe: expected the config readSegprobeConfig(resolveOptions(SEGPROBE_OPTIONS, {...})) gives as the first argument, got ${String(cfg)}`,
    );
  if (typeof f !== 'function')
    throw new DataError(`runSegprobe: expected a data factory (a function of { split, ... }) as the third argument, got ${String(f)}`);
  return inJobScope(cfg.threads, () => runSegprobeJob(cfg, recordedOptions(cfg, options), f, evalJobOptions(job)));
}

/**
 * The options written as segprobe.json's `config` (resolved, as the other evaluations record theirs): those
 * `cfg` was read from. Other options (a caller's stale or edited copy) would describe a run that never
 * happened: refused, naming the first setting on which they differ.
 */
function recordedOptions(cfg: SegprobeConfig, options: Record<string, unknown>): Record<string, unknown> {
  const resolved = jobOptions(SEGPROBE_OPTIONS, options);
  const plain = (v: unknown): Record<string, unknown> => JSON.parse(JSON.stringify(v)) as Record<string, unknown>;
  const [given, read] = [plain(cfg), plain(readSegprobeConfig(resolved))];
  if (!isDeepStrictEqual(given, read)) {
    const key = [...new Set([...Object.keys(given), ...Object.keys(read)])].find((k) => !isDeepStrictEqual(given[k], read[k]));
    throw new OptionError(
      'options',
      `runSegprobe: the options (the second argument, written as segprobe.json's config) are not those the config (the first) was read from: its ${key} is ${JSON.stringify(given[key!])}, theirs ${JSON.stringify(read[key!])}; pass the options given to readSegprobeConfig`,
    );
  }
  return resolved;
}

async function runSegprobeJob(
  cfg: SegprobeConfig,
  options: Record<string, unknown>,
  f: SegDataFactory,
  { group = null, signal, progress }: EvalJobOptions,
): Promise<SegprobeRun | null> {
  await throwIfAbortedOnAnyRank(signal, group);
  const source = resolveEncoder(cfg.checkpoint, { verify: cfg.verify });
  try {
    parseBlocks(cfg.probe.blocks, source.config.depth); // a bad --blocks stops here, before any data is read
  } catch (e) {
    throw new OptionError('blocks', (e as Error).message);
  }
  checkSegprobeProcesses(cfg.probe, group?.worldSize ?? 1); // under torchrun the launch flags say nothing
  // (with augmentation, every step's batch passes through the encoder, without gradients)
  const encoded = [
    { key: 'evalBatchSize', batch: cfg.evalBatchSize },
    ...(cfg.probe.augment === 'none' ? [] : [{ key: 'batchSize', batch: cfg.probe.batchSize }]),
  ];
  checkEncoderFitsOnCpu(source.config, cfg.device, encoded);
  return inResultFolder(cfg.outDir, 'segprobe', !group || group.rank === 0, () => segprobeJob(cfg, options, f, { group, signal, progress }, source));
}

async function segprobeJob(
  cfg: SegprobeConfig,
  options: Record<string, unknown>,
  f: SegDataFactory,
  { group = null, signal, progress }: EvalJobOptions,
  source: EncoderSource,
): Promise<SegprobeRun | null> {
  const t0 = performance.now(); // (the monotonic clock: Date.now() steps with the wall clock, NTP)
  let encoder: VisionTransformer;
  ({ encoder, source } = frozenEncoder(source, cfg.init, cfg.seed, processDevice(cfg.device, group), cfg.verify));
  let outcome: SegprobeOutcome;
  let names: string[];
  try {
    const { train, test } = await prepareOnEveryRank(
      group,
      () => openSegSplits(f, cfg.data, source.config.imgSize, cfg.seed),
      async (splits) => {
        await splits.train.close();
        await splits.test.close();
      },
    );
    try {
      if (group) {
        // ranks with other weights or other samples would assemble batches and counts of different models or sets
        const same = {
          'encoder sha256': source.sha256,
          'train samples': train.size,
          'train classes': train.classNames,
          'test samples': test.size,
          'test classes': test.classNames,
        };
        await checkRanksAgree(group, 'the encoder and the segmentation data', same, SAME_ENCODER_AND_DATA_HINT);
      }
      names = train.classNames;
      outcome = await segprobeEncoder(encoder, train, test, cfg.probe, {
        evalBatchSize: cfg.evalBatchSize,
        precision: cfg.precision,
        seed: cfg.seed,
        evalEvery: cfg.evalEvery,
        keep: cfg.figureImages,
        progress: progress !== null,
        group,
        signal,
        encoderName: cfg.init === 'pretrained' ? source.weights : undefined,
      });
    } finally {
      await train.close();
      await test.close();
    }
  } finally {
    encoder.dispose();
  }
  const { probe, baseline } = outcome;
  try {
    await throwIfAbortedOnAnyRank(signal, group); // aborted during the last step (on any rank): no files
    if (group && group.rank !== 0) return null;
    const m = probe.metrics;
    const label = cfg.init === 'random' ? 'random-init encoder' : 'frozen encoder';
    const result: SegprobeFile = {
      format: 'semaim.segprobe/1',
      command: 'segprobe',
      createdAt: new Date().toISOString(),
      mIoU: m.mIoU,
      pixelAccuracy: m.pixelAccuracy,
      meanAccuracy: m.meanAccuracy,
      perClassIoU: m.perClassIoU,
      perClassAccuracy: m.perClassAccuracy,
      classNames: names,
      rows: [
        row(`linear probe, ${label} (${cfg.probe.optimizer}, ${cfg.probe.epochs} ep, blocks ${cfg.probe.blocks})`, m),
        row(`constant '${baseline.className}' (most frequent training class)`, baseline.metrics),
      ],
      checkpoint: { path: source.path, weights: source.weights, sha256: source.sha256, kind: source.kind, init: cfg.init },
      encoder: source.config,
      data: { dataset: cfg.data.dataset, ...outcome.sizes, numClasses: names.length, ignoreIndex: 255, skipped: outcome.skipped },
      config: options,
      seconds: 0,
      details: {
        lr: probe.lr,
        history: probe.history,
        blocks: outcome.blocks,
        featureDim: outcome.featureDim,
        baseline: { classIndex: baseline.classIndex, perClassIoU: baseline.metrics.perClassIoU },
        pixels: m.pixels,
        classesScored: m.classesScored,
        miou: 'mean over classes present in the test truth or the prediction (a class absent from both is left out, as mmseg); ignore index 255',
      },
    };
    // the figure, the head and segprobe.json, which describes them: all or (a full disk) none, one journal
    const stagers: (() => StagedFile)[] = [];
    let figure: string | null = null;
    if (outcome.figure.count > 0) {
      const at = (figure = join(cfg.outDir, 'segprobe.png'));
      const png = await encodePng(
        drawSegFigure({
          images: outcome.figure.images,
          truth: outcome.figure.truth,
          prediction: probe.predictions,
          size: source.config.imgSize,
          count: outcome.figure.count,
          classNames: names,
          title: `segprobe: mIoU ${pct(m.mIoU, 1)}% (${label})`,
        }),
      );
      stagers.push(() => stageFile(at, png));
      result.details.figure = figure;
    }
    stagers.push(() =>
      stageTensors(join(cfg.outDir, 'seg-head.safetensors'), probe.head.stateDict(), {
        format: 'semaim.seghead/1',
        encoderSha256: source.sha256,
        init: cfg.init,
        blocks: JSON.stringify(outcome.blocks),
        classNames: JSON.stringify(names),
      }),
    );
    // an earlier run's figure (this one drew none: --figure-images 0) would sit beside this result as its own:
    // the same commit moves it to a temporary name (a process killed after the commit, before removing it,
    // left it beside the new result), removed once the new files are in place
    const earlier = join(cfg.outDir, 'segprobe.png');
    let moved: string | null = null;
    if (!figure && lstatSync(earlier, { throwIfNoEntry: false })?.isFile()) {
      removeDeadTemps(earlier); // one a killed run moved off
      const to = (moved = tempPath(earlier));
      stagers.push(() => ({ path: to, tmp: earlier, commit: () => renameSync(earlier, to), abort: () => {} }));
    }
    result.seconds = (performance.now() - t0) / 1000;
    const path = commitResult(cfg.outDir, result, stagers);
    if (moved) rmSync(moved, { force: true });
    return { result, path, figure, table: formatSegprobe(result) };
  } finally {
    probe.head.dispose();
  }
}
