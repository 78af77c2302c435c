// SemAIM pre-training: what is particular to it — the model (with its teacher and EMA copy), the
// order of every batch from its own similarity pass, the loss, AdamW over the weight-decay groups and
// the warm-up + cosine schedule (docs/METHOD.md §6). The loop itself is src/run/loop.ts.
import * as torch from '../torch';
import { dropPathStream } from '../nn';
import { AdamW, GradScaler, paramGroupsWeightDecay, peakLr, warmupCosine } from '../optim';
import { SemAIM, VisionTransformer, loadTeacher, orderUsesNoise } from '../semaim';
import type { RankedTrainData, TrainBatch, TrainData } from '../data';
import { checkTrainBatch } from '../data/check-batch';
import { EMA, authorsEmaDecay } from '../run/ema';
import { LOOP_HOOK_KINDS, LoopHooks, StopReason, trainLoop } from '../run/loop';
import type { StopSignal } from '../run/signals';
import { withPrecision } from '../run/precision';
import { DeviceImages } from '../run/device-images';
import { processDevice } from '../run/device';
import { inJobScope } from '../run/job-scope';
import { JobSetting } from '../util/job-setting';
import { rankSlice, type ProcessGroup } from '../dist';
import { SAME_DATA_HINT, checkRanksAgree } from '../dist/agree';
import { PRETRAIN_OPTIONS, PretrainOptions, modelConfigFrom, validatePretrain, fusedKindsOf } from './pretrain-options';
import { OptionError, checkJobHooks, jobOptions, type HookKind, type OptionsInput } from '../util/options';
import { DataError } from '../util/errors';
import { StaticPretrainStep } from './pretrain-step';
import { makeFolder } from '../util/make-folder';

export type { TrainBatch, TrainData };

/** What {@link pretrain} returns: the steps, the first and last logged loss, why the run stopped, the last and best checkpoints, and the training time. */
export interface PretrainResult {
  outDir: string;
  /** The step the run reached (counting those before a resume). */
  steps: number;
  /** Mean training loss of the first logged window. */
  firstLoss: number;
  /** Mean training loss of the last logged window. */
  lastLoss: number;
  stoppedBy: StopReason;
  /** The signal that stopped the run (stoppedBy 'signal'). */
  signal?: StopSignal;
  /** The last checkpoint folder (null when none was written). */
  checkpoint: string | null;
  /** The lowest logged loss a checkpoint had (checkpoints/best holds it); null when none was scored. */
  best: number | null;
  /** Seconds the run trained until its last checkpoint, over every call that continued it (NaN: resumed from a checkpoint without them). */
  seconds: number;
}

/** The hooks of {@link pretrain} (its third argument): the training loop's ({@link LoopHooks}), the data-parallel group, and a testing switch. */
export interface PretrainHooks extends LoopHooks {
  /**
   * The data-parallel group this process trains in (src/cli/data-parallel.ts makes it); `data` must
   * then be this rank's slice (makeTrainData(request, { rank, worldSize })).
   */
  group?: ProcessGroup | null;
  /**
   * Tests where no GPU is: take --cuda-graphs's step path (static inputs, the job's own forward and
   * backward) with every step run eagerly instead of captured.
   */
  staticStepWithoutCapture?: boolean;
}

const PRETRAIN_HOOK_KINDS = { ...LOOP_HOOK_KINDS, group: ['object', 'null'], staticStepWithoutCapture: 'boolean' } as const satisfies Record<
  keyof PretrainHooks,
  HookKind | readonly HookKind[]
>;

/**
 * Parameters exempt from weight decay besides 1-D ones and biases: pos_embed (fixed, not trained);
 * cls_token unless --decay-cls-token (the authors' recipe decays it, docs/METHOD.md §6.1).
 */
export function noWeightDecayNames(o: Pick<PretrainOptions, 'decayClsToken'>): string[] {
  return o.decayClsToken ? ['pos_embed'] : ['cls_token', 'pos_embed'];
}

// The fused kernels' switch is process-wide: the run sets its --fused kinds while it runs.
const fusedSwitch = new JobSetting(
  () => ({ kinds: torch.fused.fusedKinds(), onCpu: torch.fused.fusedOnCpu() }),
  (f) => torch.fused.setFused(f.kinds, { onCpu: f.onCpu }),
);

/** Pre-trains on `data`, which it closes when done, also when it fails (a refused option included). */
export async function pretrain(options: OptionsInput<typeof PRETRAIN_OPTIONS>, data: TrainData, hooks: PretrainHooks = {}): Promise<PretrainResult> {
  if (typeof (data as Partial<TrainData> | undefined)?.close !== 'function')
    throw new DataError(`pretrain: expected its training data as the second argument (data.makeTrainData(trainDataRequest(o))), got ${String(data)}`);
  let result: PretrainResult;
  try {
    const o = jobOptions(PRETRAIN_OPTIONS, options);
    checkJobHooks(hooks, PRETRAIN_HOOK_KINDS);
    result = await inJobScope(o.threads, () => pretrainOn(o, data, hooks));
  } catch (e) {
    try {
      await data.close();
    } catch {
      // the job's error is the one to report: one of closing the data as well would hide it
    }
    throw e;
  }
  await data.close();
  return result;
}

async function pretrainOn(o: PretrainOptions, data: TrainData, hooks: PretrainHooks): Promise<PretrainResult> {
  validatePretrain(o);
  const cfg = modelConfigFrom(o);
  const group = hooks.group ?? null;
  const { rank, worldSize: world } = rankSlice(group);
  const device = processDevice(o.device, group);
  // before the out-dir exists: the loop would refuse it only after making an empty one
  if (data.batchesPerEpoch < o.accumIter)
    throw new OptionError('accumIter', `${o.accumIter} exceeds the ${data.batchesPerEpoch} batches per epoch the data gives at --batch-size ${o.batchSize}`);
  if (group) {
    const identity = (data as Partial<RankedTrainData>).identity?.() ?? {};
    await checkRanksAgree(group, 'the training data', { batchesPerEpoch: data.batchesPerEpoch, ...identity }, SAME_DATA_HINT);
  }
  // the schedule (docs/METHOD.md §6.1); the effective batch counts every process
  const lr = peakLr(o, o.batchSize * o.accumIter * world);
  const fusedKinds = fusedKindsOf(o); // checked by validatePretrain
  torch.manualSeed(o.seed);

  // What the run has made, freed when it ends: also when setting up fails part-way (a teacher it cannot
  // load, a device out of memory), which would otherwise leave the model to the garbage collector.
  const owned: { dispose(): void }[] = [];
  const made = <T extends { dispose(): void }>(x: T): T => {
    owned.push(x);
    return x;
  };
  try {
    // ---- model, teacher, EMA
    const model = made(new SemAIM(cfg).initWeights());
    model.to({ device });
    model.teacher = loadTeacher(cfg, device);
    if (model.teacher) made(model.teacher);
    const emaDecayAt = o.emaSchedule === 'authors' ? (epoch: number) => authorsEmaDecay(o.emaDecay, epoch) : undefined;
    const ema = o.ema ? new EMA(made(new VisionTransformer(cfg).to({ device })), model, o.emaDecay, emaDecayAt) : null;

    // ---- optimiser and schedule
    const groups = paramGroupsWeightDecay(model.namedParameters(), { weightDecay: o.weightDecay, noWeightDecay: noWeightDecayNames(o) });
    const optimizer = made(new AdamW(groups, { lr, betas: [o.beta1, o.beta2], weightDecay: o.weightDecay }));
    const schedule = warmupCosine({ lr, minLr: o.minLr, warmupEpochs: o.warmupEpochs, epochs: Math.max(o.epochs, o.warmupEpochs + 1e-9) });
    const scaler = o.precision === 'fp16' ? made(new GradScaler()) : null;
    const orderGen = new torch.Generator(o.seed + 7919);
    const dropPathGen = dropPathStream(model, o.seed);
    const upload = made(new DeviceImages(data.normalize ?? null));
    const input = { chans: cfg.inChans ?? 3, size: cfg.imgSize }; // what every batch must be
    const orderPrecision = o.orderPrecision === 'fp32' ? 'fp32' : o.precision;
    // The order's U(0,1) noise for a batch of B: N processes × batch B draw the noise of 1 process ×
    // batch N·B, each taking its rows. Drawn here, outside a captured graph (which cannot upload host data).
    const orderNoise = (B: number): torch.Tensor | undefined => {
      if (!orderUsesNoise(cfg.order)) return undefined;
      const noise = torch.rand([world * B, model.numPatches], { device, generator: orderGen });
      return world > 1 ? noise.narrow(0, rank * B, B) : noise;
    };
    // --cuda-graphs: the order pass, forward and backward as one captured graph.
    const staticStep =
      o.cudaGraphs || hooks.staticStepWithoutCapture
        ? made(
            new StaticPretrainStep(model, {
              precision: o.precision,
              orderPrecision,
              device,
              ema: ema?.shadow,
              warmup: 3,
              clearGrads: () => optimizer.zeroGrad(),
              capture: !hooks.staticStepWithoutCapture,
            }),
          )
        : null;

    makeFolder(o.outDir); // only now: a run that fails to set up (a teacher it cannot load) leaves no empty folder
    const leaveFused = fusedSwitch.enter({ kinds: fusedKinds, onCpu: false });
    made({ dispose: leaveFused });
    const r = await trainLoop<TrainBatch>(
      {
        kind: 'pretrain',
        model,
        optimizer,
        schedule,
        scaler,
        ema,
        generators: { order: orderGen, dropPath: dropPathGen },
        formerlyGlobal: ['dropPath'],
        ...(model.teacher && { frozen: { 'the teacher weights': [...model.teacher.namedParameters(), ...model.teacher.namedBuffers()] } }),
        config: cfg,
        options: o,
        optionTable: PRETRAIN_OPTIONS,
        batchesPerEpoch: data.batchesPerEpoch,
        batches: (epoch, start, end) => data.epoch(epoch, start, end),
        batchSize: (b) => b.shape[0],
        loss(batch) {
          checkTrainBatch(batch, input, !!data.normalize);
          const images = upload.upload(batch.images, batch.shape, device);
          const noise = orderNoise(images.shape[0]);
          const { order } = withPrecision(orderPrecision, device, () => model.makeOrder(images, { ema: ema?.shadow, generator: orderGen, noise }));
          return withPrecision(o.precision, device, () => model.forward(images, order)).loss;
        },
        ...(staticStep && {
          forwardBackward(batch: TrainBatch) {
            checkTrainBatch(batch, input, !!data.normalize);
            const images = upload.upload(batch.images, batch.shape, device);
            return staticStep.run(images, orderNoise(images.shape[0]));
          },
          gradsPersist: () => staticStep.captured,
        }),
        best: { score: (s) => s.lastLoss, lowerIsBetter: true, loggedLoss: true },
      },
      { ...o, device, group },
      hooks,
    );
    return { outDir: o.outDir, ...r };
  } finally {
    for (const x of owned.reverse()) x.dispose();
  }
}
