// The segmentation probe as an optional column of `semaim ablate` (--eval segprobe): every encoder
// of the ablation (each order and seed, and the random-init baseline) gets the same probe on the
// same data with masks. Each run folder keeps its score in ablation-segprobe.json, beside
// ablation-eval.json, so the column can be added to a finished ablation without pre-training again.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VisionTransformer } from '../semaim';
import { OptionError, resolveOptions } from '../util/options';
import type { Precision } from '../run/precision';
import type { SegDataRequest } from '../data/seg-loader';
import type { SegData } from '../data/seg-streams';
import { SEG_PROBE_OPTIONS, SegDataSettings, SegprobeSettings, checkSegDataOptions, readSegprobeSettings } from '../eval/segprobe-options';
import type { ImageInputOptions } from '../data/options';
import { openSegSplits, segprobeEncoder } from '../eval/segprobe-run';
import { anyLabelled } from '../eval/segprobe';
import { DataError } from '../util/errors';
import { writeJsonAtomic } from '../util/safe-write';
import { isJsonObject } from '../util/json-file';

export interface AblationSegRecipe {
  settings: SegprobeSettings;
  data: SegDataSettings;
}

export interface SegScore {
  mIoU: number;
  pixelAccuracy: number;
  meanAccuracy: number;
  perClassIoU: (number | null)[];
  /** The constant most-frequent-class prediction on the same test set. */
  baselineMIoU: number;
  seconds: number;
  fingerprint: Record<string, unknown>;
}

/** Images of the probe's splits per budget (the synthetic objects: a disjoint test stream). */
const SEG_LIMITS = { full: { train: 5000, test: 1000 }, small: { train: 1000, test: 500 } };

/** The ablation's options this recipe reads. */
export interface AblationSegOptions {
  eval: string;
  segDataset: string;
  segDataPath?: string;
  segprobeEpochs?: number;
  dataset: string;
  segClasses: 'shapes' | 'object';
  numClasses?: number;
  reduceZeroLabel: boolean;
}

/** The probe's recipe from the ablation's options, or null when --eval does not ask for it. Checks everything before any work. */
export function ablationSegRecipe(o: AblationSegOptions, budget: 'full' | 'small'): AblationSegRecipe | null {
  if (o.eval !== 'segprobe') {
    const set = (['segDataPath', 'segprobeEpochs', 'numClasses'] as const).find((k) => o[k] !== undefined);
    if (o.segDataset !== 'auto') throw new OptionError('segDataset', 'has no effect without --eval segprobe');
    if (set) throw new OptionError(set, 'has no effect without --eval segprobe');
    // (these two have defaults: a value other than the default was given)
    if (o.segClasses !== 'shapes') throw new OptionError('segClasses', 'has no effect without --eval segprobe');
    if (o.reduceZeroLabel) throw new OptionError('reduceZeroLabel', 'has no effect without --eval segprobe');
    return null;
  }
  let dataset = o.segDataset;
  if (dataset === 'auto') {
    if (o.dataset !== 'synthetic') {
      throw new OptionError(
        'segDataset',
        `--eval segprobe needs data with masks, and dataset '${o.dataset}' has none: pass --seg-dataset synthetic (the built-in objects) or --seg-dataset seg-folder --seg-data-path ROOT`,
      );
    }
    dataset = 'synthetic';
  }
  if (dataset === 'seg-folder' && !o.segDataPath)
    throw new OptionError('segDataPath', '--seg-dataset seg-folder needs --seg-data-path (a folder with {train,test}/images and {train,test}/masks)');
  checkSegDataOptions(
    { dataset, dataPath: o.segDataPath, segClasses: o.segClasses, numClasses: o.numClasses, reduceZeroLabel: o.reduceZeroLabel },
    'segDataPath',
  );
  const settings = readSegprobeSettings(resolveOptions(SEG_PROBE_OPTIONS, {}, o.segprobeEpochs !== undefined ? { epochs: o.segprobeEpochs } : {}));
  return {
    settings,
    data: {
      dataset,
      dataPath: o.segDataPath,
      segClasses: o.segClasses,
      numClasses: o.numClasses,
      reduceZeroLabel: o.reduceZeroLabel,
      trainLimit: SEG_LIMITS[budget].train,
      testLimit: SEG_LIMITS[budget].test,
    },
  };
}

/**
 * Refuses (DataError, as every run's probe would) test masks without a labelled pixel, which the probe has nothing to
 * score on: found by the first run's probe, that was after its whole pre-training. It reads the test batches up to the
 * first labelled pixel (the first batch, as a rule).
 */
async function refuseUnlabelledTest(test: SegData, batchSize: number): Promise<void> {
  for await (const b of test.batches({ batchSize, shuffle: false, epoch: 0, augment: 'none' })) if (anyLabelled(b.masks)) return;
  throw new DataError(
    `test data: no labelled pixel in its ${test.size} masks (every pixel is the ignore index ${test.ignoreIndex}): there is nothing to score`,
  );
}

/** The probe over the ablation's encoders: both splits opened once, one score per run (cached in the run folder). */
export class AblationSegprobe {
  private constructor(
    readonly recipe: AblationSegRecipe,
    private readonly train: SegData,
    private readonly test: SegData,
    private readonly o: { evalBatchSize: number; precision: Precision },
    /** The --seed that drew the masked images (the splits' subsets, the synthetic objects). */
    private readonly dataSeed: number,
    /** A kept score's pre-training options as this version records them (the ablation's currentFingerprint). */
    private readonly currentPretrain: (stored: Record<string, unknown>) => unknown,
  ) {}

  static async open(
    recipe: AblationSegRecipe,
    make: ((r: SegDataRequest) => SegData | Promise<SegData>) | undefined,
    imgSize: number,
    seed: number,
    o: { evalBatchSize: number; precision: Precision },
    imageInput?: ImageInputOptions,
    currentPretrain: (stored: Record<string, unknown>) => unknown = (stored) => stored,
  ): Promise<AblationSegprobe> {
    if (!make) throw new Error('--eval segprobe: no segmentation data adapter (makeSegData) was given to the ablation');
    // how images are read is not part of the recipe (nor of the cached results' fingerprint)
    const { train, test } = await openSegSplits(make, { ...recipe.data, imageInput }, imgSize, seed);
    try {
      await refuseUnlabelledTest(test, o.evalBatchSize);
    } catch (e) {
      await train.close();
      await test.close();
      throw e;
    }
    return new AblationSegprobe(recipe, train, test, o, seed, currentPretrain);
  }

  get description(): string {
    const s = this.recipe.settings;
    const d = this.recipe.data;
    return (
      `segmentation probe on ${d.dataset}${d.dataset === 'synthetic' ? ` (${this.train.numClasses} classes)` : ''}, ${this.train.size} train / ${this.test.size} test images: ` +
      `BatchNorm + linear head on the patch tokens of blocks '${s.blocks}', ${s.optimizer} lr ${s.lr}, ${s.epochs} epochs, mIoU over classes present`
    );
  }

  /**
   * The run's score: reused from `<runDir>/ablation-segprobe.json` when made with the same recipe of the same
   * weights (`weights`: the SHA-256 of the encoder's model file, as ablation-eval.json records it), else
   * computed on the encoder `load` gives. Aborting `signal` stops the probe at its next batch (an AbortError; nothing written).
   * `evaluatedBefore`: see {@link scored}.
   */
  async score(
    runDir: string,
    seed: number,
    pretrain: unknown,
    weights: string,
    load: () => VisionTransformer,
    signal?: AbortSignal,
    evaluatedBefore: string | null = weights,
  ): Promise<SegScore> {
    const cached = this.scored(runDir, seed, pretrain, weights, evaluatedBefore);
    if (cached) return cached;
    const fingerprint = this.fingerprint(seed, pretrain, weights);
    const file = join(runDir, 'ablation-segprobe.json');
    const t0 = performance.now();
    const encoder = load();
    try {
      const r = await segprobeEncoder(encoder, this.train, this.test, this.recipe.settings, { ...this.o, seed, progress: false, signal });
      r.probe.head.dispose();
      const m = r.probe.metrics;
      const score: SegScore = {
        mIoU: m.mIoU,
        pixelAccuracy: m.pixelAccuracy,
        meanAccuracy: m.meanAccuracy,
        perClassIoU: m.perClassIoU,
        baselineMIoU: r.baseline.metrics.mIoU,
        seconds: (performance.now() - t0) / 1000,
        fingerprint,
      };
      writeJsonAtomic(file, score);
      return score;
    } finally {
      encoder.dispose();
    }
  }

  /**
   * The run's score kept in `<runDir>/ablation-segprobe.json` when made with this recipe of these weights; null when
   * {@link score} has to compute it. A score stored before the weights were recorded scored those the run's
   * ablation-eval.json named when this call began (`evaluatedBefore`; null when it had none): the run evaluated
   * again on other weights since is probed again too.
   */
  scored(runDir: string, seed: number, pretrain: unknown, weights: string, evaluatedBefore: string | null = weights): SegScore | null {
    const file = join(runDir, 'ablation-segprobe.json');
    if (!existsSync(file)) return null;
    let cached: unknown;
    try {
      cached = JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      return null; // unreadable (cut short, say): scored again and written over
    }
    if (!isJsonObject(cached) || !isJsonObject(cached.fingerprint)) return null;
    // (a score stored before the images' seed was recorded: taken as this one's, as it was)
    const stored: Record<string, unknown> = { dataSeed: this.dataSeed, ...cached.fingerprint };
    if (!('weights' in stored)) stored.weights = evaluatedBefore;
    // (options recorded by an earlier release that this one leaves out: made neutral, or at the value their absence meant)
    if (isJsonObject(stored.pretrain)) stored.pretrain = this.currentPretrain(stored.pretrain);
    return JSON.stringify(stored) === JSON.stringify(this.fingerprint(seed, pretrain, weights)) ? (cached as unknown as SegScore) : null;
  }

  /**
   * What a kept score must match: the run (its pre-training and seed), the probe's recipe, the images (their
   * seed) it was scored on, and the weights it scored (a run evaluated again from a checkpoint that holds
   * other weights now is probed again too).
   */
  private fingerprint(seed: number, pretrain: unknown, weights: string): Record<string, unknown> {
    return { dataSeed: this.dataSeed, pretrain, seed, settings: this.recipe.settings, data: this.recipe.data, evalBatchSize: this.o.evalBatchSize, weights };
  }

  async close(): Promise<void> {
    await this.train.close();
    await this.test.close();
  }
}
