// Full fine-tuning (MAE's main_finetune.py with the settings of docs/METHOD.md §6.2): the pre-trained encoder with
// global average pooling → fc_norm → head, AdamW with layer-wise lr decay, warm-up + cosine per
// iteration down to min lr, drop-path, mixup/cutmix with label smoothing (soft-target cross
// entropy), optional EMA and mixed precision; checkpoints that resume exactly (same semantics as
// pre-training: atomic, verified, the global and mixing RNG states saved with them). The loop itself is
// src/run/loop.ts.
import * as torch from '../torch';
import type { Tensor } from '../torch';
import { dropPathStream } from '../nn';
import { AdamW, GradScaler, LrSchedule, paramGroupsLayerDecay, peakLr, warmupCosine } from '../optim';
import { disposeAll } from '../io';
import { EncoderSource, loadEncoderTensors, loadResolvedEncoder, resolveEncoder } from '../semaim';
import { LabelledBatch, LabelledData, PassOptions, batchesPerEpoch } from '../data';
import { checkLabelledBatch } from '../data/check-batch';
import { OptionError, checkJobHooks, jobOptions, type HookKind, type OptionsInput } from '../util/options';
import { DataError } from '../util/errors';
import { EMA } from '../run/ema';
import { Progress, perSecond } from '../run/progress';
import { LOOP_HOOK_KINDS, LoopHooks, StopReason, trainLoop } from '../run/loop';
import type { TrainState } from '../run/train-state';
import { StoppedBySignal, type StopRequest, type StopSignal } from '../run/signals';
import { withPrecision } from '../run/precision';
import { processDevice } from '../run/device';
import { inJobScope } from '../run/job-scope';
import { rankSlice, severalRanks, type ProcessGroup } from '../dist';
import { Accuracy, AccuracyTally } from './accuracy';
import { allRowIndices, firstOccurrences, rowsPerRank, slicedRowIndices } from './gather-features';
import { ClassifierConfig, ViTClassifier } from './classifier';
import { Mixup, softTargetCrossEntropy } from './mix';
import { FINETUNE_OPTIONS, FinetuneOptions, validateFinetune } from './options';
import { makeFolder } from '../util/make-folder';
import { yieldToEventLoop } from '../util/event-loop';
import { besideProgress, stderrLine } from '../util/console-line';
import { printable, quotedPath } from '../util/printable';
import { FRESH_RUN_HINT } from '../run/recipe';

/** The labelled splits {@link finetune} trains on (train) and evaluates on (test), e.g. data.makeEvalData(...) each; the caller closes them. */
export interface FinetuneData {
  train: LabelledData;
  test: LabelledData;
}

/** The hooks of {@link finetune} (its third argument): the training loop's ({@link LoopHooks}) and the data-parallel group. */
export interface FinetuneHooks extends LoopHooks {
  /** The data-parallel group; data.train and data.test must then be this rank's slices. Rank 0 reports. */
  group?: ProcessGroup | null;
}

/** The kinds of finetune's and runFinetune's hooks (FinetuneHooks): the loop's and the data-parallel group. */
export const FINETUNE_HOOK_KINDS = { ...LOOP_HOOK_KINDS, group: ['object', 'null'] } as const satisfies Record<
  keyof FinetuneHooks,
  HookKind | readonly HookKind[]
>;

/**
 * What {@link finetune} returns: the steps, why the run stopped, the final test accuracies, the best top-1, the last checkpoint and the classifier config.
 */
export interface FinetuneResult {
  outDir: string;
  /** The step the run reached (counting those before a resume). */
  steps: number;
  stoppedBy: StopReason;
  /** The signal that stopped the run (stoppedBy 'signal'). */
  signal?: StopSignal;
  /** Test accuracy of the final model (null when stopped before the end). */
  accuracy: Accuracy | null;
  /** Test accuracy of the EMA model (with --ema). */
  emaAccuracy: Accuracy | null;
  /** The best test top-1 of the checkpointed evaluations and the final one (-1 when none ran). */
  bestTop1: number;
  /** Mean training loss of the last logged window. */
  lastLoss: number;
  /** The last checkpoint folder (null when none was written). */
  checkpoint: string | null;
  /** The encoder the weights come from: a resumed run's is the one it started from, which --checkpoint may no longer name. */
  encoder: EncoderSource;
  config: ClassifierConfig;
}

/**
 * Test accuracy of a classifier over a dataset (eval mode, no gradients, no augmentation).
 * Data-parallel (`group`): `data` is this rank's part of the pass; each rank scores its images, the
 * padding that gave every rank as many rows is not counted (each image once: firstOccurrences), and the
 * counts are summed over the ranks, so every rank gets the accuracy one process gets.
 */
export async function evaluateClassifier(
  model: ViTClassifier,
  data: LabelledData,
  o: { batchSize: number; precision?: string; label?: string | null; group?: ProcessGroup | null; stop?: StopRequest },
): Promise<Accuracy> {
  const wasTraining = model.training;
  model.eval();
  const device = model.cls_token.device;
  const tally = new AccuracyTally(model.cfg.numClasses);
  const group = severalRanks(o.group);
  const progress = o.label && !group ? new Progress(o.label, data.size) : null;
  // every row's label and hits, tallied at the end, when the ranks' repeats are known
  const [labels, top1, top5]: number[][] = [[], [], []];
  let indices: number[] | null = []; // the rows' dataset indices, while every batch gives them
  const standIns: number[] = []; // rows in place of an unusable image: not counted
  const start = performance.now();
  try {
    for await (const b of data.batches({ batchSize: o.batchSize, shuffle: false, epoch: 0, augment: 'none' })) {
      // (the turn after each batch below is where a signal's handler sets the request)
      if (o.stop?.requested) throw new StoppedBySignal('stopped during the evaluation', o.stop.signal);
      checkLabelledBatch(b, { chans: model.cfg.inChans ?? 3, size: model.cfg.imgSize }, model.cfg.numClasses);
      const hits = torch.noGrad(() =>
        torch.scope(() => {
          // in the model's dtype, as finetuneStep feeds them: float32, or float64 for a float64 model
          const images = torch.tensor(b.images, { shape: b.shape, device, dtype: model.cls_token.dtype });
          const logits = withPrecision(o.precision ?? 'fp32', device, () => model.forward(images));
          return tally.hits(logits, b.labels);
        }),
      );
      for (const i of b.standIns ?? []) standIns.push(labels.length + i);
      if (b.indices && indices) indices.push(...b.indices);
      else indices = null;
      labels.push(...b.labels);
      top1.push(...hits.top1);
      top5.push(...hits.top5);
      progress?.update(labels.length, { 'img/s': perSecond(labels.length, start) });
      // a turn of the event loop after every batch (README): with data at hand at once none came in the whole pass
      await yieldToEventLoop();
    }
  } finally {
    progress?.done();
    model.train(wasTraining);
  }
  const expected = group ? rowsPerRank(data.size, group.worldSize) : data.size;
  if (labels.length !== expected)
    throw new DataError(`evaluation: the data gave ${labels.length} images${group ? ` on rank ${group.rank}` : ''}, expected ${expected} of ${data.size}`);
  const rowIndex = Int32Array.from(indices ?? (group ? slicedRowIndices(data.size, o.batchSize, group.worldSize, group.rank) : labels.keys()));
  for (const i of standIns) rowIndex[i] = -1;
  const counted = group ? firstOccurrences(await allRowIndices(group, rowIndex), data.size)[group.rank] : rowIndex.map((v) => (v >= 0 ? 1 : 0));
  const keep = [...counted.keys()].filter((i) => counted[i]);
  tally.addHits(
    keep.map((i) => labels[i]),
    keep.map((i) => top1[i]),
    keep.map((i) => top5[i]),
  );
  const accuracy = group ? AccuracyTally.fromCounts(tally.numClasses, group.sumNumbers(Float64Array.from(tally.counts()))).result() : tally.result();
  // (every rank sees the same sum) an accuracy over no image is NaN: fine-tuning wrote it as its result, top1 null
  if (accuracy.n === 0)
    throw new DataError(`evaluation: ${data.size ? `none of its ${data.size} images could be read (each was skipped as unusable)` : 'the data has no images'}`);
  return accuracy;
}

/** The pass over the training data fine-tuning reads every epoch. */
export function finetunePass(o: FinetuneOptions): PassOptions {
  return { batchSize: o.batchSize, shuffle: true, augment: o.augment, seed: o.seed, dropLast: true };
}

/** The classifier config of a fine-tuning run. */
export function classifierConfigFrom(o: FinetuneOptions, source: EncoderSource, numClasses: number): ClassifierConfig {
  return { ...source.config, dropPath: o.dropPath, numClasses, pool: o.pool };
}

/**
 * AdamW over MAE's layer-wise decay groups: cls_token and patch_embed are layer 0, blocks.i layer
 * i + 1, fc_norm/norm/head layer depth + 1; optimizer.setLr(lr) gives each group
 * lr × layerDecay^(depth + 1 − layer). No weight decay on biases, norms, 1-D parameters, cls_token, pos_embed.
 */
export function makeFinetuneOptimizer(model: ViTClassifier, o: FinetuneOptions, lr: number): AdamW {
  const groups = paramGroupsLayerDecay(model.namedParameters(), {
    numLayers: model.cfg.depth,
    layerDecay: o.layerDecay,
    weightDecay: o.weightDecay,
    noWeightDecay: ['cls_token', 'pos_embed'],
  });
  return new AdamW(groups, { lr, betas: [o.beta1, o.beta2], weightDecay: o.weightDecay });
}

/** What a fine-tuning step runs besides the loop (src/run/loop.ts, which sets the lr, backpropagates and steps). */
export interface FinetuneStep {
  /** AdamW over MAE's layer-decay groups (makeFinetuneOptimizer). */
  optimizer: AdamW;
  /** MAE's warm-up + cosine, per iteration. */
  schedule: LrSchedule;
  /** The mixing's random stream (checkpointed as rng.mix), seeded from o.seed. */
  mixGen: torch.Generator;
  /** The drop-path masks' random stream (checkpointed as rng.dropPath), seeded from o.seed. */
  dropPathGen: torch.Generator;
  mixup: Mixup;
  /** A micro-batch's loss: mixup/cutmix with smoothed targets, the forward under o.precision, soft-target cross-entropy. */
  loss(batch: LabelledBatch): Tensor;
}

/**
 * The step `finetune` trains `model` with, at peak lr `lr`, on `device`. The images enter in the model's
 * dtype: float32, or float64 for test/eval/finetune-golden.test.ts, which checks whole steps against PyTorch.
 */
export function finetuneStep(model: ViTClassifier, o: FinetuneOptions, lr: number, device: torch.Device): FinetuneStep {
  const cfg = model.cfg;
  const optimizer = makeFinetuneOptimizer(model, o, lr);
  const schedule = warmupCosine({ lr, minLr: o.minLr, warmupEpochs: o.warmupEpochs, epochs: o.epochs });
  const mixGen = new torch.Generator(o.seed + 104729);
  const dropPathGen = dropPathStream(model, o.seed);
  const mixup = new Mixup(
    {
      numClasses: cfg.numClasses,
      mixupAlpha: o.mixup,
      cutmixAlpha: o.cutmix,
      prob: o.mixupProb,
      switchProb: o.mixupSwitchProb,
      labelSmoothing: o.smoothing,
    },
    mixGen,
  );
  return {
    optimizer,
    schedule,
    mixGen,
    dropPathGen,
    mixup,
    loss(batch) {
      checkLabelledBatch(batch, { chans: cfg.inChans ?? 3, size: cfg.imgSize }, cfg.numClasses);
      const images = torch.tensor(batch.images, { shape: batch.shape, device, dtype: model.cls_token.dtype });
      const labels = torch.tensor(batch.labels, { dtype: 'int64', device });
      const mixed = mixup.apply(images, labels);
      const logits = withPrecision(o.precision, device, () => model.forward(mixed.images));
      return softTargetCrossEntropy(logits, mixed.targets);
    },
  };
}

/**
 * Fine-tunes the encoder named by o.checkpoint on data.train, evaluating on data.test. `source` skips
 * resolving (and hashing) the checkpoint again. The caller closes the data.
 */
export async function finetune(
  options: OptionsInput<typeof FINETUNE_OPTIONS>,
  data: FinetuneData,
  hooks: FinetuneHooks = {},
  source?: EncoderSource,
): Promise<FinetuneResult> {
  const o = jobOptions(FINETUNE_OPTIONS, options);
  checkJobHooks(hooks, FINETUNE_HOOK_KINDS);
  if (typeof data?.train !== 'object' || typeof data.test !== 'object' || !data.train || !data.test)
    throw new DataError(`finetune: expected its data as the second argument, { train, test } (data.makeEvalData(...) each), got ${String(data)}`);
  return inJobScope(o.threads, () => finetuneJob(o, data, hooks, source));
}

async function finetuneJob(o: FinetuneOptions, data: FinetuneData, hooks: FinetuneHooks = {}, source?: EncoderSource): Promise<FinetuneResult> {
  const log = hooks.log ? besideProgress(hooks.log) : stderrLine;
  validateFinetune(o);
  source ??= resolveEncoder(o.checkpoint, o);
  const numClasses = data.train.numClasses;
  if (data.test.numClasses !== numClasses) throw new DataError(`train data has ${numClasses} classes, test data ${data.test.numClasses}`);
  const cfg = classifierConfigFrom(o, source, numClasses);
  const want = [cfg.inChans ?? 3, cfg.imgSize, cfg.imgSize];
  for (const [name, d] of [
    ['train', data.train],
    ['test', data.test],
  ] as const) {
    if (d.imageShape && d.imageShape.some((v, i) => v !== want[i])) throw new DataError(`${name} images are [${d.imageShape}], the encoder expects [${want}]`);
  }
  const group = hooks.group ?? null;
  const { rank, worldSize: world } = rankSlice(group);
  const evaluates = rank === 0;
  const device = processDevice(o.device, group);
  const perEpoch = Math.floor(batchesPerEpoch(data.train.size, o.batchSize * world, true) / o.accumIter);
  if (perEpoch < 1)
    throw new OptionError(
      'batchSize',
      `the training set (${data.train.size} images) gives no full step of ${o.batchSize} × ${o.accumIter} × ${world} images (--batch-size × --accum-iter × processes)`,
    );
  const lr = peakLr(o, o.batchSize * o.accumIter * world);
  torch.manualSeed(o.seed);

  // ---- model (MAE: init, load the encoder, head trunc_normal 2e-5), EMA
  const model = new ViTClassifier(cfg).initWeights();
  try {
    if (o.init === 'pretrained') {
      // data-parallel ranks agreed on this source's weights (makeSplits): theirs or none
      let tensors: Map<string, Tensor>;
      ({ value: tensors, source } = loadResolvedEncoder(source, { verify: o.verify, newerIfPruned: !group }, (s) =>
        loadEncoderTensors(s, { withFcNorm: true }),
      ));
      try {
        model.loadEncoder(tensors);
      } catch (e) {
        throw new Error(`${source.weights}: ${(e as Error).message}`, { cause: e });
      } finally {
        disposeAll(tensors);
      }
    }
    model.to({ device });
  } catch (e) {
    model.dispose(); // weights that do not fit (a timm global_pool='avg' encoder with --pool cls): not left to the GC
    throw e;
  }
  makeFolder(o.outDir); // only now: a fine-tuning refused its encoder's weights leaves no empty folder
  const ema = o.ema ? new EMA(new ViTClassifier(cfg).to({ device }), model, o.emaDecay) : null;

  // ---- optimiser, schedule, mixing, the loss of a micro-batch
  const { optimizer, schedule, mixGen, dropPathGen, loss } = finetuneStep(model, o, lr, device);
  const scaler = o.precision === 'fp16' ? new GradScaler() : null;

  // ---- evaluation on the test set (every --eval-every epochs and at the end)
  let lastTop1: number | null = null;
  const evaluate = async (epoch: number, state: TrainState, again = false, stop?: StopRequest) => {
    const eo = { batchSize: o.evalBatchSize, precision: o.precision, group, stop };
    const label = (what: string) => (hooks.progress === false ? null : `${what} (epoch ${epoch})`);
    const acc = await evaluateClassifier(model, data.test, { ...eo, label: label('test') });
    const emaAcc = ema ? await evaluateClassifier(ema.shadow, data.test, { ...eo, label: label('test EMA') }) : null;
    lastTop1 = acc.top1;
    const record = { epoch, testTop1: acc.top1, testTop5: acc.top5, ...(emaAcc ? { emaTop1: emaAcc.top1, emaTop5: emaAcc.top5 } : {}) };
    state.writeMetrics(record, again ? { unlessLogged: 'testTop1' } : {});
    if (evaluates)
      log(
        `epoch ${epoch}: test top-1 ${(100 * acc.top1).toFixed(2)}%, top-5 ${(100 * acc.top5).toFixed(2)}%` +
          (emaAcc ? ` (EMA top-1 ${(100 * emaAcc.top1).toFixed(2)}%)` : ''),
      );
    return { acc, emaAcc };
  };
  const end: { final?: { acc: Accuracy; emaAcc: Accuracy | null } } = {};
  // The encoder this run records (finetune.json, state.json, config.json): a resumed run's weights come from
  // the encoder it started from, which its checkpoints name, even when --checkpoint now resolves to another.
  const extraState: { encoder: EncoderSource; classNames?: string[] } = { encoder: source, classNames: data.train.classNames }; // classNames: what `semaim predict` names the classes by
  const onResume = (saved: Record<string, unknown>, checkpointDir: string) => {
    // Labels are class indices: data whose classes are named otherwise (a class folder renamed or swapped for
    // another, same count) numbers them otherwise, and the steps after the resume would learn another mapping.
    const namesBefore = saved.classNames;
    const namesNow = data.train.classNames;
    if (Array.isArray(namesBefore) && namesNow && JSON.stringify(namesBefore) !== JSON.stringify(namesNow)) {
      const differs = namesNow.findIndex((name, c) => name !== namesBefore[c]);
      const i = differs < 0 ? namesNow.length : differs; // (the names now a prefix of those before: the first one gone)
      throw new DataError(
        `the run in ${quotedPath(o.outDir)} was trained on data whose classes are named otherwise (${quotedPath(checkpointDir)}): ` +
          `class ${i} was ${printable(JSON.stringify(namesBefore[i] ?? null))}, the training data now names it ${printable(JSON.stringify(namesNow[i] ?? null))} ` +
          `(of ${namesNow.length} classes); give it the same data to continue it, ` +
          `or start afresh: ${hooks.freshRunHint ?? FRESH_RUN_HINT}`,
      );
    }
    const before = startedFrom(saved.encoder);
    if (!before || before.sha256 === source.sha256) return;
    extraState.encoder = before;
    if (evaluates)
      log(
        `note: --checkpoint ${o.checkpoint} now resolves to ${source.weights} (sha256 ${source.sha256.slice(0, 16)}…), not the encoder this run ` +
          `started from, ${before.weights} (sha256 ${before.sha256.slice(0, 16)}…); the run continues from its checkpoint, whose weights come ` +
          `from that one, and records it (to fine-tune the new encoder, use another --out-dir)`,
      );
  };
  try {
    const r = await trainLoop<LabelledBatch>(
      {
        kind: 'finetune',
        model,
        optimizer,
        schedule,
        scaler,
        ema,
        generators: { mix: mixGen, dropPath: dropPathGen },
        formerlyGlobal: ['dropPath'],
        config: cfg,
        options: o,
        optionTable: FINETUNE_OPTIONS,
        extraState,
        runFiles: ['finetune.json'], // (runFinetune's result, written at the run's end)
        onResume,
        batchesPerEpoch: perEpoch * o.accumIter,
        batches: (epoch, start, end) => data.train.batches({ ...finetunePass(o), epoch, start, end }),
        batchSize: (b) => b.shape[0],
        loss,
        best: { score: () => lastTop1, lowerIsBetter: false },
        onEpochEnd: async (done, state) => {
          if (o.evalEvery > 0 && done % o.evalEvery === 0) await evaluate(done, state);
        },
        // (again: a run killed after its last checkpoint, before finetune.json: evaluated again for it)
        onFinish: async (epochs, state, again, stop) => {
          end.final = await evaluate(epochs, state, again, stop);
        },
      },
      { ...o, device, group },
      hooks,
    );
    const done = end.final;
    return {
      outDir: o.outDir,
      steps: r.steps,
      stoppedBy: r.stoppedBy,
      signal: r.signal,
      accuracy: done?.acc ?? null,
      emaAccuracy: done?.emaAcc ?? null,
      bestTop1: Math.max(r.best ?? -1, done?.acc.top1 ?? -1),
      lastLoss: r.lastLoss,
      checkpoint: r.checkpoint,
      encoder: extraState.encoder,
      config: cfg,
    };
  } catch (e) {
    if (/missing in the state dict: pos_embed$/.test((e as Error).message))
      throw new Error(
        `${quotedPath(o.outDir)}: its checkpoints come from a semaim that kept pos_embed fixed while fine-tuning (MAE trains it), so this version cannot continue them; start a fresh run in another --out-dir (${(e as Error).message})`,
        { cause: e },
      );
    throw e;
  } finally {
    optimizer.dispose();
    scaler?.dispose();
    ema?.shadow.dispose();
    model.dispose();
  }
}

/** The encoder a fine-tuning checkpoint's state.json names (null when it names none, as a hand-made state may not). */
function startedFrom(saved: unknown): EncoderSource | null {
  const e = saved as Partial<EncoderSource> | null;
  return e && typeof e === 'object' && typeof e.sha256 === 'string' && typeof e.weights === 'string' && typeof e.path === 'string' && e.config
    ? (e as EncoderSource)
    : null;
}
