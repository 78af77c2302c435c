// The one training loop, shared by pre-training and fine-tuning: learning-rate schedule per
// iteration, gradient accumulation, mixed precision with optional loss scaling, clipping, EMA,
// metrics, checkpoints that resume exactly, and stops (step budget, signal, non-finite loss).
// What differs between the jobs (model, loss, data, schedule, evaluation) comes in a TrainJob.
// Read it top to bottom like nanoGPT's train.py.
//
// Data-parallel (a process group in the settings): every rank runs this same loop on its slice of
// each global batch; backward averages the gradients over the ranks (only on an optimiser step's
// last micro-batch), so every rank takes the same step. The ranks agree on stopping and on the logged
// loss (their mean) at log steps, and on stopping also between them (about once a second); rank 0
// alone writes metrics, progress and checkpoints.
import * as torch from '../torch';
import { Tensor } from '../torch';
import { GradScaler, Optimizer, BaseHyper, fractionalEpoch, stepsInEpochs } from '../optim';
import { Module, setBatchSlice } from '../nn';
import { EMA } from './ema';
import { optimizerStep } from './optimizer-step';
import { cudnnAutotune } from './cudnn-autotune';
import { StopRequest, StopSignal, StoppedBySignal, catchStopSignals } from './signals';
import type { HookKind, OptionTable } from '../util/options';
import { DistributedDataParallel, GradCompression, ProcessGroup, rankSlice } from '../dist';
import { SAME_START_HINT, StopAgreement, checkRanksHoldSame, signalOfLevel, stopLevel } from '../dist/agree';
import { TrainState, StopReason, type MetricsRecord } from './train-state';
import { FRESH_RUN_HINT } from './recipe';
import { globalRngStates } from './rng-state';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { stepDirName } from '../io/checkpoint';
import { besideProgress, stderrLine } from '../util/console-line';
import { DataError } from '../util/errors';
import { yieldToEventLoop } from '../util/event-loop';
import { quotedPath } from '../util/printable';

export type { StopReason, MetricsRecord };

/** The run settings every trainer has (its option table has these keys). */
export interface LoopSettings {
  outDir: string;
  device: torch.Device;
  /** Micro-batches per optimiser step. */
  accumIter: number;
  epochs: number;
  maxSteps?: number;
  logEvery: number;
  checkpointEvery: number;
  keepLast: number;
  resume: boolean;
  /** Global-norm clipping threshold (0: none). */
  clipGrad: number;
  /** The data-parallel group this process trains in (absent or null: one process). */
  group?: ProcessGroup | null;
  /** Data-parallel: the gradients all-reduced in fp16 or bf16 (default 'none'). */
  gradCompress?: string;
}

/** What differs between trainers. */
export interface TrainJob<B> {
  /** 'pretrain' or 'finetune': the progress label and the checkpoint format `semaim.<kind>/1`. */
  kind: string;
  model: Module;
  optimizer: Optimizer<BaseHyper>;
  /** Learning rate at a fractional epoch. */
  schedule: (epoch: number) => number;
  scaler: GradScaler | null;
  ema: EMA<Module> | null;
  /** Random streams of the job besides the global ones (saved as rng.<name>). */
  generators: Record<string, torch.Generator>;
  /**
   * Those of `generators` that earlier releases drew from the global CPU generator: a checkpoint of theirs,
   * which has no rng.<name>, continues them from its rng.global (what their draws would have come from).
   */
  formerlyGlobal?: string[];
  /** The model config: stored in every checkpoint and compared on resume. */
  config: unknown;
  /** The options, stored with every checkpoint and written to config.json. */
  options: Record<string, unknown>;
  /** Their table: a resumed run must agree on every option not flagged `mayChangeOnResume`. */
  optionTable?: OptionTable;
  /** More JSON state to store with every checkpoint (and in config.json). */
  extraState?: Record<string, unknown>;
  /**
   * Files the job writes into --out-dir besides config.json and metrics.jsonl (fine-tuning's finetune.json): a
   * fresh run moves an earlier run's to previous/ with its checkpoints, rather than leave them beside its own.
   */
  runFiles?: string[];
  /**
   * Called when a run resumes, once its checkpoint is restored, with that checkpoint's state.json (on every
   * rank). The job may change extraState here: config.json and later checkpoints store it as it is then.
   */
  onResume?(saved: Record<string, unknown>, checkpointDir: string): void;
  /**
   * Tensors besides the model, the optimiser and the EMA copy that data-parallel ranks must hold alike
   * from the start (a frozen teacher), by what they are; the model's are broadcast, these are not.
   */
  frozen?: Record<string, Iterable<[string, Tensor]>>;
  batchesPerEpoch: number;
  /**
   * This epoch's batches from batch index `start` on (a resumed epoch skips the ones already seen) up to
   * batch `end` (exclusive): the last whole optimiser step's, so batches no step takes are not built.
   */
  batches(epoch: number, start: number, end: number): AsyncIterable<B>;
  /** Images in a batch (for the throughput). */
  batchSize(batch: B): number;
  /** The batch's loss (a 0-d tensor), computed inside the loop's tensor scope. */
  loss(batch: B): Tensor;
  /**
   * In place of loss() and the loop's backward: runs the micro-batch's forward and backward itself and
   * returns its loss (a replayed CUDA graph, --cuda-graphs). No loss scaling, no accumulation; with a
   * process group the gradients are averaged after it ('after-backward': no hooks inside the graph).
   */
  forwardBackward?(batch: B): Tensor;
  /**
   * True while the gradients live in buffers that the next forwardBackward overwrites (a captured CUDA
   * graph writes into the ones it was captured with): the optimiser step leaves them instead of clearing them.
   */
  gradsPersist?(): boolean;
  /**
   * Which checkpoint is 'best': the score after a step, and whether lower or higher wins. `loggedLoss`: the
   * score is the last logged loss (a --log-every window), not an evaluation of the checkpoint's weights, so a
   * --max-steps stop scores its checkpoint only where a run without the stop scores the same window.
   */
  best: { score(state: TrainState): number | null; lowerIsBetter: boolean; loggedLoss?: boolean };
  /** At an epoch end that is not the run's end, before its checkpoint (e.g. a test-set evaluation). */
  onEpochEnd?(epochsDone: number, state: TrainState): Promise<void>;
  /**
   * After the last step unless the run stopped on a signal or a non-finite loss, before the final checkpoint;
   * `again` when the run had finished already (started again: a process killed after its last checkpoint
   * but before the job's end, e.g. fine-tuning's result file, gets that end now). `stop`, in one process:
   * the run's stop request, which a long end checks (a StoppedBySignal thrown for it keeps the steps, unscored,
   * and the run stops as on a signal; data-parallel ranks would have to agree first, so they get none).
   */
  onFinish?(epochsDone: number, state: TrainState, again: boolean, stop?: StopRequest): Promise<void>;
}

/**
 * How a caller follows and controls a training run (pretrain, finetune): callbacks on each step and
 * metrics line, the progress line, signal handling, and ways to stop it at the next step boundary.
 */
export interface LoopHooks {
  /** Called after every optimiser step with the step number (tests use it to interrupt runs). */
  onStep?: (step: number) => void;
  /** Called with every line written to metrics.jsonl (rank 0), as it is written. */
  onMetrics?: (record: MetricsRecord) => void;
  /** false: no progress line on stderr (default true: redrawn on a terminal, a plain line every 5 s otherwise). */
  progress?: boolean;
  /**
   * While the run lasts, SIGINT and SIGTERM stop it at the next step boundary after a checkpoint, and a
   * second one exits the process, as the command does (default true). false leaves the process's signals
   * to the caller, who stops the run with `signal` or `stop`.
   */
  catchSignals?: boolean;
  /** Set `requested` to stop at the next step boundary (a checkpoint is written first); set before the run starts, it trains nothing. */
  stop?: StopRequest;
  /**
   * Aborting it stops the run as SIGINT does: at the next step boundary, after a checkpoint (the result's
   * stoppedBy is 'signal', without `signal`); the same job started again resumes from that checkpoint.
   * Aborted before the run starts, it trains no step and writes no checkpoint (stoppedBy 'signal' still).
   * Data-parallel: aborting it on any rank stops every rank at the same step, the next one they agree on
   * (a log step, or within about a second: StopAgreement).
   */
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** How a refused resume says to start afresh, for a command without --no-resume (default: another --out-dir, or --no-resume). */
  freshRunHint?: string;
  /**
   * How a disk too small for the run's checkpoints (before the first step, or a checkpoint write that fails) says to
   * make room besides freeing space, for a command without --keep-last (default: lower --keep-last, or another --out-dir).
   */
  spaceHint?: string;
  /**
   * What a diverged run's message advises to change, for a command without those options (default:
   * 'a lower --blr or more --warmup-epochs'); --precision fp32 is added when it applies.
   */
  divergedAdvice?: string;
}

/** The kind of each of the {@link LoopHooks}, as a job checks them before any work (checkJobHooks). */
export const LOOP_HOOK_KINDS = {
  onStep: 'function',
  onMetrics: 'function',
  progress: 'boolean',
  catchSignals: 'boolean',
  stop: 'object',
  signal: 'signal',
  log: 'function',
  freshRunHint: 'string',
  spaceHint: 'string',
  divergedAdvice: 'string',
} as const satisfies Record<keyof LoopHooks, HookKind>;

export interface LoopResult {
  steps: number;
  firstLoss: number;
  lastLoss: number;
  stoppedBy: StopReason;
  checkpoint: string | null;
  /** The best score a checkpoint had (null when none was scored). */
  best: number | null;
  /** Seconds the run trained until its last checkpoint, over every call that continued it (NaN: resumed from a checkpoint without them). */
  seconds: number;
  /** The signal that stopped the run (stoppedBy 'signal'). */
  signal?: StopSignal;
}

const shortDigest = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex').slice(0, 16);

/**
 * Refuses ranks that loaded different weights, optimiser states, EMA copies or teachers, or that resumed
 * at another position, loss scale or random state, naming what differs.
 *
 * What must be equal on every rank, besides the tensors: the position (step, epoch, batch: which global
 * batch comes next, where the lr schedule and the EMA decay stand), the optimiser's JSON state (its step
 * counts set AdamW's bias correction), the loss scaler's scale and growth tracker (another scale scales
 * one rank's share of the averaged gradient differently, and the ranks then skip or grow at other
 * steps), the count of losses in the carried metrics window (it divides the mean the ranks agree on at
 * the next log; the sums are each rank's own by design), and the random generators. These are NOT per
 * rank by design here: every rank draws the global batch's random numbers (order noise, drop-path
 * masks, mixup coefficients, dropout) from the same streams and keeps its rows (docs/DISTRIBUTED.md),
 * and augmentations are seeded per sample, so one stream that differs makes the ranks train on
 * different masks or orders of one global batch, silently. The data order's seed is an option, compared
 * with the others before. The best score is rank 0's alone (it writes the checkpoints) and is not compared.
 */
async function checkStart(job: TrainJob<unknown>, group: ProcessGroup, train: TrainState, device: torch.Device): Promise<void> {
  const { model, optimizer, ema, scaler } = job;
  const state = optimizer.stateDict();
  const scale = scaler?.stateDict();
  const streams = globalRngStates(device);
  for (const [name, g] of Object.entries(job.generators)) streams.set(`rng.${name}`, g.getState());
  try {
    await checkRanksHoldSame(
      group,
      'the state they start from (before rank 0 broadcasts its weights)',
      {
        'the model weights': [...model.namedParameters(), ...model.namedBuffers()],
        'the optimiser state': state.tensors,
        ...(ema && { 'the EMA weights': ema.shadow.namedParameters() }),
        ...job.frozen,
      },
      SAME_START_HINT,
      {
        'the position (step, epoch, batch)': [train.step, train.epoch, train.batch],
        'the optimiser state (JSON)': shortDigest(JSON.stringify(state.meta)),
        ...(scale && { 'the loss scaler (scale, growth tracker)': [scale.scale, scale.growthTracker] }),
        'the losses carried into the next log': train.window.count,
        ...Object.fromEntries([...streams].map(([name, t]) => [`the random stream ${name}`, shortDigest(torch.scope(() => t.cpu().data() as Uint8Array))])),
      },
    );
  } finally {
    for (const t of state.tensors.values()) t.dispose();
    for (const t of streams.values()) t.dispose();
  }
}

export async function trainLoop<B>(job: TrainJob<B>, run: LoopSettings, hooks: LoopHooks = {}): Promise<LoopResult> {
  const group = run.group ?? null;
  // the ranks agree on what happens; rank 0 says it
  const log = group && group.rank !== 0 ? () => {} : hooks.log ? besideProgress(hooks.log) : stderrLine;
  // a stop is said on every machine, by its first worker: a Ctrl-C on another node's launcher left it silent
  const stopLog = !group || group.rank === 0 ? log : group.localRank === 0 ? (hooks.log ?? stderrLine) : () => {};
  const { optimizer, scaler, model, ema } = job;
  const accum = run.accumIter;
  const perEpoch = Math.floor(job.batchesPerEpoch / accum);
  if (perEpoch < 1) throw new Error(`the data gives ${job.batchesPerEpoch} batches per epoch, fewer than --accum-iter ${accum}`);
  if (job.forwardBackward && (accum !== 1 || scaler))
    throw new Error('a job that runs its own forward and backward (CUDA graphs) needs --accum-iter 1 and no fp16 loss scaling');
  const plannedSteps = stepsInEpochs(run.epochs, perEpoch);
  const totalSteps = Math.min(plannedSteps, run.maxSteps ?? Infinity);
  /** The epochs `step` steps make, as onFinish reports them (4 decimals). */
  const epochsAt = (step: number) => Number((step / perEpoch).toFixed(4));

  const state = new TrainState(job, run, {
    perEpoch,
    totalSteps,
    log,
    freshRunHint: hooks.freshRunHint,
    spaceHint: hooks.spaceHint,
    progress: hooks.progress,
    onMetrics: hooks.onMetrics,
  });
  const stop: StopRequest = hooks.stop ?? { requested: false };
  // From before the run's first writes (config.json, a resume's checks): a Ctrl-C there stops the run
  // before its first step, where its default action killed the process mid-write and left a `.tmp-*` file.
  const releaseSignals = hooks.catchSignals === false ? () => {} : catchStopSignals(stop, stopLog);
  try {
    await state.start(run.resume, () => ({ options: job.options, model: job.config, ...job.extraState }));
  } catch (e) {
    state.dispose(); // a refused resume: the loss window's tensors go now, not with the garbage collector
    releaseSignals();
    throw e;
  }
  const lowPrecision = job.options.precision !== undefined && job.options.precision !== 'fp32';
  const divergedMessage = (what: 'loss' | 'weights') =>
    `stopping: the ${what} became NaN/Inf by step ${state.step} (lr ${Number(state.lr().toPrecision(4))}). ` +
    `The last good checkpoint is ${state.lastCheckpoint ?? '(none yet)'}. Runs are deterministic: resumed with the same options, ` +
    `this one diverges again. Start afresh with ${hooks.divergedAdvice ?? divergedAdvice(job.options, state.lr())}${lowPrecision ? ', or --precision fp32' : ''}: ` +
    `${hooks.freshRunHint ?? FRESH_RUN_HINT}.`;
  let agreedSignal: StopSignal | undefined;
  const result = (): LoopResult => ({
    steps: state.step,
    firstLoss: state.firstLoss,
    lastLoss: state.lastLoss,
    stoppedBy: state.stoppedBy,
    checkpoint: state.lastCheckpoint,
    best: state.best,
    seconds: state.seconds,
    ...(state.stoppedBy === 'signal' ? { signal: agreedSignal ?? stop.signal } : {}),
  });
  /** A checkpoint of the current step, its epoch and batch derived from the step (where the run ends, or stopped). */
  const saveAtStep = () => state.save(Math.floor(state.step / perEpoch), (state.step % perEpoch) * accum);
  // The job's end (fine-tuning's final evaluation) runs before the last checkpoint, which it scores. When it fails
  // (test data unreadable by now, a signal, memory), the steps since the last checkpoint are kept: written
  // unscored, and the same command takes the run up there, does the end again and scores it. One process only:
  // other ranks may still be in the evaluation's collectives, where the save's barrier would meet them.
  const finishKeepingSteps = async (): Promise<void> => {
    try {
      await job.onFinish?.(epochsAt(state.step), state, false, group ? undefined : stop);
    } catch (e) {
      // Ctrl-C / SIGTERM during the end (a final evaluation of many images): the run stops as on a signal
      if (e instanceof StoppedBySignal && !group) {
        state.endUnscored = true;
        if (state.savedStep !== state.step) await saveAtStep();
        stopLog(
          `stopping on request during the run's end: its steps are kept in ${quotedPath(String(state.lastCheckpoint))}, unscored: ` +
            'the same command does the end again from there',
        );
        agreedSignal = e.signal;
        state.stoppedBy = 'signal';
        return;
      }
      if (!group && state.savedStep !== state.step) {
        state.endUnscored = true;
        try {
          await saveAtStep();
          log(
            `the run's end failed after its last step; its steps are kept in ${quotedPath(String(state.lastCheckpoint))}, unscored: ` +
              'the same command does the end again from there',
          );
        } catch {
          // (the end's own error is the one to report)
        }
      }
      throw e;
    }
  };
  // Told to stop before any step (an AbortSignal aborted already, or a signal during the start, which reaches
  // its handler when the event loop turns): true, the stop recorded, when every rank agrees to.
  const stopsBeforeStart = async (agreement: StopAgreement, message: string): Promise<boolean> => {
    await yieldToEventLoop();
    const level = await agreement.agreeOn(stop.requested || hooks.signal?.aborted ? stopLevel(stop.signal) : 0, true);
    if (level === 0) return false;
    agreedSignal = signalOfLevel(level);
    stopLog(message);
    state.stoppedBy = 'signal';
    return true;
  };
  if (state.step >= totalSteps) {
    log(
      `nothing to do: the run in ${quotedPath(run.outDir)} already reached step ${state.step} of ${totalSteps} (checkpoint ${quotedPath(String(state.lastCheckpoint))})`,
    );
    state.stoppedBy = totalSteps < plannedSteps ? 'maxSteps' : 'finished';
    try {
      // as at the end of a run that got here (a --max-steps stop included): a result a killed process never wrote is written now
      if (!(await stopsBeforeStart(new StopAgreement(group), `stopping on request: the job's end is not done again`))) {
        try {
          await job.onFinish?.(epochsAt(state.step), state, true, group ? undefined : stop);
        } catch (e) {
          if (!(e instanceof StoppedBySignal)) throw e;
          stopLog(`stopping on request during the run's end: it is done again by the same command`);
          agreedSignal = e.signal;
          state.stoppedBy = 'signal';
          return result();
        }
        // the end a failed final evaluation left unscored: written again, scored, as a run that never failed writes it
        if (state.endUnscored) {
          state.endUnscored = false;
          await saveAtStep();
          log(`the run's end is scored now: ${quotedPath(String(state.lastCheckpoint))}`);
        }
      }
    } finally {
      state.dispose();
      releaseSignals();
    }
    return result();
  }
  const onAbort = () => {
    stop.requested = true;
  };
  if (hooks.signal?.aborted) onAbort();
  hooks.signal?.addEventListener('abort', onAbort, { once: true });
  const restoreCudnn = cudnnAutotune(run.device);
  const restoreSlice = setBatchSlice(rankSlice(group));
  let ddp: DistributedDataParallel | null = null;
  try {
    // after the resume: every rank starts from rank 0's parameters, and must hold the same ones before
    // (and the same optimiser state, EMA copy and teacher, which are not broadcast)
    if (group) await checkStart(job, group, state, run.device);
    const compress = (run.gradCompress ?? 'none') as GradCompression;
    if (group) ddp = new DistributedDataParallel(model, group, { compress, ...(job.forwardBackward && { mode: 'after-backward' }) });
    // Data-parallel: one rank may see a signal (or its own stop request, its AbortSignal) before the
    // others. They agree at every log step and, between them, about once a second (StopAgreement), so
    // all stop at the same step, within about a second, with no collective (a device sync under NCCL)
    // at most steps.
    const stopAgreement = new StopAgreement(group);
    // no step, so no new checkpoint
    if (await stopsBeforeStart(stopAgreement, `stopping on request before step ${state.step + 1}: nothing trained`)) return result();
    const startEpoch = state.epoch;
    state.window.started = performance.now(); // the first line's images per second: its steps' time, not the start's (a resume's checks, loading)
    model.train();
    outer: for (let epoch = startEpoch; state.step < totalSteps; epoch++) {
      let micro = 0;
      let batchIndex = epoch === startEpoch ? state.batch : 0;
      const firstBatch = batchIndex;
      ema?.startEpoch(epoch);
      for await (const batch of job.batches(epoch, batchIndex, perEpoch * accum)) {
        // Forward and backward of one micro-batch; the loss window stays on the device.
        torch.scope(() => {
          if (micro === 0) optimizer.setLr(job.schedule(fractionalEpoch(epoch, batchIndex / accum, perEpoch)));
          if (job.forwardBackward) {
            state.window.add(job.forwardBackward(batch));
            ddp?.allReduceGradients();
            return;
          }
          const loss = job.loss(batch);
          const scaled = loss.div(accum);
          const toBackward = scaler ? scaler.scale(scaled) : scaled;
          if (ddp) ddp.backward(toBackward, { sync: micro === accum - 1 });
          else toBackward.backward();
          state.window.add(loss);
        });
        state.window.images += job.batchSize(batch);
        micro++;
        batchIndex++;
        if (micro < accum) continue;
        micro = 0;

        // Optimiser step: unscale, clip, update, EMA.
        const logStep = (state.step + 1) % run.logEvery === 0 || state.step + 1 === totalSteps;
        torch.scope(() => {
          const norm = optimizerStep({
            optimizer,
            scaler,
            params: model.namedParameters(),
            clipGrad: run.clipGrad,
            ema,
            measureNorm: logStep,
            clearGrads: !job.gradsPersist?.(),
          });
          if (logStep && norm) state.setGradNorm(norm.item(), state.step + 1);
        });
        state.step++;
        state.epoch = epoch;
        state.batch = batchIndex;
        hooks.onStep?.(state.step);
        await yieldToEventLoop();

        // Policy: log, stop on a non-finite loss, evaluate, checkpoint, stop at the budget or on request.
        const epochEnd = batchIndex >= perEpoch * accum;
        const evaluates = epochEnd && state.step < totalSteps && job.onEpochEnd !== undefined;
        const saves = state.step < totalSteps && (state.step % run.checkpointEvery === 0 || epochEnd);
        const epochsDone = epoch + batchIndex / (perEpoch * accum);
        const lossDiverged = logStep && !(await state.flushMetrics(epochsDone));
        if (!logStep) state.showStep(epochsDone);
        const diverged = lossDiverged ? 'loss' : evaluates || saves ? await state.diverged() : null;
        if (diverged) {
          // found at a checkpoint or epoch end between log steps: the window that diverged is written as a log step's
          // is (a NaN loss as null), so that metrics.jsonl and the result's last loss do not end at the last finite window
          if (!logStep) await state.flushMetrics(epochsDone);
          log(divergedMessage(diverged));
          state.stoppedBy = 'nonfinite';
          break outer;
        }
        if (evaluates) await job.onEpochEnd!(epoch + 1, state);
        if (saves) await state.save(epochEnd ? epoch + 1 : epoch, epochEnd ? 0 : batchIndex);
        if (state.step >= totalSteps) {
          state.stoppedBy = totalSteps < plannedSteps ? 'maxSteps' : 'finished';
          break outer;
        }
        const level = await stopAgreement.agreeOn(stop.requested ? stopLevel(stop.signal) : 0, logStep);
        if (level > 0) {
          // every rank exits with the code of the strongest signal any rank got (SIGTERM over SIGINT)
          agreedSignal = signalOfLevel(level);
          stopLog(`stopping on request at step ${state.step}`);
          state.stoppedBy = 'signal';
          break outer;
        }
        if (epochEnd) break;
      }
      // (left at the epoch's end above): batches short of it would go into the next epoch's first step
      if (batchIndex < perEpoch * accum) {
        const asked = perEpoch * accum - firstBatch;
        throw new DataError(
          `epoch ${epoch}: the data gave ${batchIndex - firstBatch} of the ${asked} batches asked (batches ${firstBatch} to ${perEpoch * accum - 1}), fewer than its batchesPerEpoch says`,
        );
      }
    }

    // The end: the last metrics window, the job's final evaluation, the last checkpoint.
    if (state.stoppedBy !== 'nonfinite') {
      const diverged = !(await state.flushMetrics(state.step / perEpoch)) ? 'loss' : await state.diverged();
      if (diverged) {
        log(divergedMessage(diverged));
        state.stoppedBy = 'nonfinite';
      } else {
        if (state.stoppedBy !== 'signal') await finishKeepingSteps();
        if (state.savedStep !== state.step) await saveAtStep();
        if (state.stoppedBy === 'signal' && group && group.rank !== 0) {
          stopLog(
            `stopped at step ${state.step} on every rank: rank 0 (node 0) wrote the checkpoint, ${join('checkpoints', stepDirName(state.step))} in its --out-dir; the same command on every node resumes from it`,
          );
        }
      }
    }
  } finally {
    ddp?.dispose();
    restoreSlice();
    releaseSignals();
    hooks.signal?.removeEventListener('abort', onAbort);
    restoreCudnn();
    state.dispose();
  }
  return result();
}

/** What a diverged run of the command's own options should change: its weight decay when lr × weight decay reached 1, else its lr. */
function divergedAdvice(options: Record<string, unknown>, lr: number): string {
  const wd = options.weightDecay;
  if (typeof wd === 'number' && lr * wd >= 1)
    return `a lower --weight-decay or lr (at lr ${Number(lr.toPrecision(4))} AdamW multiplied the weights by 1 − lr × weight decay = ${Number((1 - lr * wd).toPrecision(4))} at every step)`;
  return `a lower ${options.lr !== undefined ? '--lr' : '--blr'} or more --warmup-epochs`;
}
