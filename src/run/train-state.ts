// Everything a training run carries from step to step and into its checkpoints: the position (step,
// epoch, batch), the loss window kept on the device, the best score, and the save / resume of the
// model, optimiser, loss scaler, EMA and random streams.
import { randomBytes } from 'node:crypto';
import { writeFileAtomic } from '../util/safe-write';
import { checkFreeSpace, formatBytes } from '../util/disk-space';
import { existsSync } from 'node:fs';
import { isJsonObject, readJsonObject } from '../util/json-file';
import { OptionError, type OptionTable } from '../util/options';
import { join, relative } from 'node:path';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { disposeAll } from '../io';
import { tensorsBytes } from '../io/tensors';
import { refuseOtherFormatVersion, runKindOf, type LoadedCheckpoint } from '../io/checkpoint';
import { CheckpointManager, plainRunId } from './checkpoints';
import { MetricsLog, lossEnds } from './metrics';
import { FRESH_RUN_HINT, pathPlace, recipeChanges, refuseRecipeChanges } from './recipe';
import { Progress, type ProgressFields } from './progress';
import { RunLock } from './run-lock';
import { globalRngStates, restoreGlobalRngStates } from './rng-state';
import type { ProcessGroup } from '../dist';
import { rankCouldNotStart } from '../dist/agree';
import { markToldOtherRanks } from '../dist/late-failure';
import { encoderConfigOf, type EncoderConfig } from '../semaim';
import { jsonDifferences } from '../util/json-diff';
import type { LoopSettings, TrainJob } from './loop';
import { quotedPath } from '../util/printable';

/**
 * Why a training run ended: 'finished' (every planned step), 'maxSteps' (the --max-steps budget), 'signal'
 * (SIGINT/SIGTERM, an aborted AbortSignal or a stop request) or 'nonfinite' (the loss or the weights became NaN/Inf).
 */
export type StopReason = 'finished' | 'maxSteps' | 'signal' | 'nonfinite';

/** Whether every value of the tensors is finite (one read back; each tensor's flag made in its own scope, so the transient masks do not pile up). */
function allFinite(tensors: Iterable<Tensor>): boolean {
  return torch.scope(() => {
    const flags: Tensor[] = [];
    for (const t of tensors) flags.push(torch.scope(() => t.isfinite().all()));
    return flags.length === 0 || torch.stack(flags).all().item() === 1;
  });
}

/**
 * A line of metrics.jsonl: every --log-every steps the loss (mean since the last line), learning rate,
 * gradient norm and throughput; a job's evaluations add their own lines (e.g. fine-tuning's test accuracy).
 */
export interface MetricsRecord {
  /** ISO 8601, when the line was written. */
  time: string;
  step: number;
  epoch?: number;
  loss?: number;
  lr?: number;
  /** null: not measured at this step; "Infinity" or "NaN": measured and not finite (JSON has no such numbers). */
  gradNorm?: number | 'Infinity' | 'NaN' | null;
  imgPerSec?: number;
  [field: string]: unknown;
}

/**
 * Sum and count of the losses since the last log, and whether all were finite, kept on the device so
 * that a step never waits for the GPU; read only every --log-every steps.
 */
export class LossWindow {
  readonly sum: Tensor;
  readonly allFinite: Tensor;
  count = 0;
  images = 0;
  /** When the window started, by the monotonic clock (performance.now(), ms): a wall clock stepped meanwhile (NTP) made the rate absurd. */
  started = performance.now();

  constructor(device: torch.Device) {
    this.sum = torch.keep(torch.zeros([], { device }));
    this.allFinite = torch.keep(torch.ones([], { dtype: 'bool', device }));
  }

  add(loss: Tensor): void {
    this.sum.add_(loss.detach().float());
    this.allFinite.copy_(this.allFinite.logicalAnd(loss.isfinite()));
    this.count++;
  }

  /** Whether every loss so far was finite (reads the device). */
  finite(): boolean {
    return this.allFinite.item() === 1;
  }

  /** The losses not yet written to the metrics: their sum (as the device holds it) and count (reads the device). */
  pending(): { sum: number; count: number } {
    return { sum: this.count ? this.sum.item() : 0, count: this.count };
  }

  /** Continues a window a checkpoint carried (a resumed run then logs the mean an uninterrupted run logs). */
  restore(w: { sum: number; count: number }): void {
    this.sum.fill_(w.sum);
    this.count = w.count;
  }

  /** The mean loss and the images per second of the window, then starts a new window (the finiteness flag persists). */
  take(): { mean: number; rate: number } {
    const mean = this.count ? this.sum.item() / this.count : NaN;
    const rate = this.images / Math.max((performance.now() - this.started) / 1000, 1e-9);
    this.sum.zero_();
    this.count = 0;
    this.images = 0;
    this.started = performance.now();
    return { mean, rate };
  }

  dispose(): void {
    this.sum.dispose();
    this.allFinite.dispose();
  }
}

/** Losses not yet in a metrics line of the --log-every cadence: each rank's sum (rank order) and their count. */
interface UnloggedLosses {
  sums: number[];
  count: number;
}

interface SavedState {
  /** Processes that trained (absent in checkpoints from before data-parallel training: 1). */
  worldSize?: number;
  step: number;
  epoch: number;
  batch: number;
  best: number | null;
  optimizer: unknown;
  scaler?: unknown;
  config: unknown;
  /**
   * The losses of the steps after the last metrics line of the --log-every cadence (each rank's sum over
   * them, as its device held it, and their count): a line written at this step off the cadence (a run
   * stopped by a signal or --max-steps) is dropped on resume and its losses go into the next line, as
   * without the stop. Absent in checkpoints from before it: the next line then covers the steps after the
   * checkpoint alone.
   */
  lossWindow?: UnloggedLosses;
  /** Seconds the run trained until this checkpoint, over every call that continued it (absent in checkpoints from before it). */
  seconds?: number;
  /**
   * Optimiser steps per epoch when it was written: its step, epoch and batch place it in that layout, which a
   * resumed run must share. Absent in checkpoints from before it: the count is then read from the step, epoch
   * and batch (stepsPerEpochOf), which from epoch 1 on give it.
   */
  stepsPerEpoch?: number;
  /**
   * The run's end, written unscored because the job's end (fine-tuning's final evaluation) failed after its last
   * step: the same command takes the run up there, does that end and writes the checkpoint again, scored.
   */
  endUnscored?: boolean;
}

/** Where rank 0 starts a resumed run: its checkpoint folder (relative to --out-dir) and step. */
interface Settled {
  checkpoint: string;
  step: number;
}

/** Rank 0's word to the others when it could not start the run (the folder in use, a changed recipe, no space). */
interface CouldNotStart {
  failure: string;
}

export class TrainState {
  step = 0;
  /** Where the next batch comes from: epoch and batch (micro-batch) index within it. */
  epoch = 0;
  batch = 0;
  best: number | null = null;
  firstLoss = NaN;
  lastLoss = NaN;
  /** The gradient norm measured at a log step, and that step (a step between log steps has none). */
  private gradNorm = { value: NaN, step: -1 };
  lastCheckpoint: string | null = null;
  /** The step of the newest checkpoint (written or resumed from); -1 before any. */
  savedStep = -1;
  /** Set while the last checkpoint is (or is about to be written as) the run's end left unscored: see SavedState.endUnscored. */
  endUnscored = false;
  /**
   * Seconds the run trained until its newest checkpoint, over every call that continued it (the steps
   * after a checkpoint that a killed process lost count once, when they are done again); NaN when it was
   * resumed from a checkpoint that does not record them.
   */
  seconds = 0;
  /**
   * When this call took up the run (by the monotonic clock, performance.now(), ms: a wall clock stepped back
   * during the run made its seconds negative), and the run's seconds then.
   */
  private readonly began = performance.now();
  private secondsBefore = 0;
  stoppedBy: StopReason = 'finished';
  readonly window: LossWindow;
  private readonly checkpoints: CheckpointManager;
  private readonly metrics: MetricsLog;
  private readonly progress: Progress | null;
  /** The progress line's fields from the last log step (none before the first). */
  private shown: ProgressFields = {};
  private readonly onMetrics?: (record: MetricsRecord) => void;
  private readonly log: (line: string) => void;
  private readonly group: ProcessGroup | null;
  /** Rank 0 (or the only process): the one that writes files. */
  private readonly writes: boolean;
  /** Rank 0's hold on the run folder while it writes there. */
  private lock: RunLock | null = null;
  private readonly freshRunHint: string;
  private readonly spaceHint: string | undefined;
  /** The losses of a metrics line written off the --log-every cadence, and its step (saved with a checkpoint of that step). */
  private offCadence: (UnloggedLosses & { step: number }) | null = null;
  private readonly totalSteps: number;
  private readonly perEpoch: number;

  constructor(
    private readonly job: TrainJob<unknown>,
    private readonly run: LoopSettings,
    o: {
      perEpoch: number;
      totalSteps: number;
      log: (line: string) => void;
      freshRunHint?: string;
      /** How a disk too small for the checkpoints says to make room besides freeing space (default: lower --keep-last, or another --out-dir). */
      spaceHint?: string;
      /** false: no progress line (default true). */
      progress?: boolean;
      onMetrics?: (record: MetricsRecord) => void;
    },
  ) {
    this.log = o.log;
    this.freshRunHint = o.freshRunHint ?? FRESH_RUN_HINT;
    this.group = run.group ?? null;
    this.writes = (this.group?.rank ?? 0) === 0;
    this.window = new LossWindow(run.device);
    this.spaceHint = o.spaceHint;
    this.checkpoints = new CheckpointManager(run.outDir, run.keepLast, (m) => this.log(m), o.spaceHint);
    this.metrics = new MetricsLog(join(run.outDir, 'metrics.jsonl'));
    this.progress = o.progress === false ? null : new Progress(job.kind, o.totalSteps);
    this.onMetrics = o.onMetrics;
    this.totalSteps = o.totalSteps;
    this.perEpoch = o.perEpoch;
  }

  /** Processes training together (1 without a group). */
  get worldSize(): number {
    return this.group?.worldSize ?? 1;
  }

  /** The largest learning rate of the optimiser's groups (layer-wise decay gives the head the largest). */
  lr(): number {
    return Math.max(...this.job.optimizer.paramGroups.map((g) => g.lr));
  }

  /**
   * Starts the run: takes the folder's lock (src/run/run-lock.ts), removes temporary folders of dead
   * processes, then continues from the newest good checkpoint when resuming (refusing a changed
   * recipe), else moves an earlier run in the folder aside.
   * config.json (what `configJson` gives once a resumed run is restored) is written only after these checks pass. Data-parallel: rank 0 does all this first
   * (it alone touches the folder); the other ranks then load the checkpoint it settled on.
   */
  async start(resume: boolean, configJson: () => Record<string, unknown>): Promise<void> {
    if (!this.writes) {
      const [settled] = await this.group!.allGatherJson<Settled | CouldNotStart | null>(null);
      if (settled && 'failure' in settled) throw rankCouldNotStart(this.group!, 0, settled.failure);
      if (settled) this.resumeAsRankZero(settled);
      return;
    }
    let settled: Settled | null = null;
    try {
      this.lock = RunLock.acquire(this.run.outDir);
      this.checkpoints.removeDeadTemps();
      const latest = resume ? this.checkpoints.loadLatest() : null;
      const sameRun = resume && !latest ? this.runStoppedBeforeItsFirstCheckpoint(configJson()) : null;
      if (latest) {
        this.restoreFrom(latest);
        settled = { checkpoint: relative(this.run.outDir, latest.dir), step: this.step };
      } else if (sameRun) {
        // started again with the same recipe: the same run from step 0, as a resume from a checkpoint of
        // step 0 would be (its logged lines are redone); each such kill made a folder in previous/
        this.checkpoints.runId = sameRun;
        const redone = this.metrics.truncateAfter(0);
        this.log(`run ${sameRun} stopped before its first checkpoint: starting it again from step 0 (${redone} logged line(s) are redone)`);
      } else {
        this.checkpoints.archivePreviousRun(['metrics.jsonl', 'config.json', ...(this.job.runFiles ?? [])]);
        this.checkpoints.runId = `${new Date().toISOString().replace(/[-:]|\.\d+Z$/g, '')}-${randomBytes(3).toString('hex')}`;
      }
      this.checkSpace();
      writeFileAtomic(
        join(this.run.outDir, 'config.json'),
        // cwd: what relative paths among the options are relative to (as a checkpoint records it)
        JSON.stringify({ runId: this.checkpoints.runId, worldSize: this.worldSize, cwd: process.cwd(), ...configJson() }, null, 2),
      );
    } catch (e) {
      this.lock?.release();
      // the others wait for rank 0's word: they get why, rather than Gloo's "Connection closed by peer"
      // when this process exits, which under torchrun or on another machine said nothing of the cause
      const failure: CouldNotStart = { failure: e instanceof OptionError ? e.flagMessage : e instanceof Error ? e.message : String(e) };
      try {
        await this.group?.allGatherJson<Settled | CouldNotStart | null>(failure);
        markToldOtherRanks(e);
      } catch {
        // the others are gone already: this rank's own error is the one to report
      }
      throw e;
    }
    // the others learn where rank 0 starts (a fresh run, or the checkpoint it settled on)
    await this.group?.allGatherJson(settled);
  }

  /**
   * The run id of a run in this folder that was stopped before its first checkpoint (config.json and
   * metrics.jsonl, no checkpoint, nothing moved to checkpoints/corrupt) and had this recipe: the same
   * options (recipeChanges, at the global batch, paths placed from the folder it started in) and model; else null.
   */
  private runStoppedBeforeItsFirstCheckpoint(now: Record<string, unknown>): string | null {
    const root = join(this.run.outDir, 'checkpoints');
    if (this.checkpoints.list().length || existsSync(join(root, 'best')) || existsSync(join(root, 'corrupt'))) return null;
    let stored: Record<string, unknown>;
    try {
      stored = readJsonObject(join(this.run.outDir, 'config.json'));
    } catch {
      return null;
    }
    const { worldSize, options, model } = stored;
    const runId = plainRunId(stored.runId);
    if (runId === null || !isJsonObject(options) || !this.job.optionTable) return null;
    // relative paths (--data-path, a teacher) by where they point from the folder each run started in
    const bases = { stored: typeof stored.cwd === 'string' ? stored.cwd : undefined, now: process.cwd() };
    if (JSON.stringify(comparableConfig(model, bases.stored ?? bases.now)) !== JSON.stringify(comparableConfig(now.model, bases.now))) return null;
    const world = typeof worldSize === 'number' ? worldSize : 1;
    return this.recipeChangesSince(this.job.optionTable, options, world, bases).length ? null : runId;
  }

  /**
   * What differs between the options a run was started with (by `savedWorld` processes) and this job's. --batch-size
   * is per process: a run may continue with other processes that see the same global batch, so both are compared at it.
   */
  private recipeChangesSince(table: OptionTable, saved: Record<string, unknown>, savedWorld: number, bases: Parameters<typeof recipeChanges>[3]) {
    const global = (opts: Record<string, unknown>, world: number) =>
      typeof opts.batchSize === 'number' ? { ...opts, batchSize: opts.batchSize * world } : opts;
    return recipeChanges(table, global(saved, savedWorld), global(this.job.options, this.worldSize), bases);
  }

  /**
   * Refuses, before any step, a run whose checkpoints the disk cannot hold (checkFreeSpace). A checkpoint
   * is the model's tensors, the optimiser's state (every parameter's, as after the first step), the EMA's
   * and 256 KiB for the rest (state.json, RNG states, headers). At the peak the folder holds the step
   * folders kept (--keep-last, never more than the run writes), the next one written before the oldest is
   * removed, and 'best' with the copy that replaces it; those already there count as used.
   */
  private checkSpace(): void {
    if (this.step >= this.totalSteps) return; // finished: started again, it writes no checkpoint
    const { job } = this;
    const size =
      (256 << 10) + tensorsBytes(job.model.stateDict().values()) + job.optimizer.stateBytes() + (job.ema ? tensorsBytes(job.ema.stateTensors().values()) : 0);
    const writes = checkpointsToWrite(this.step, this.totalSteps, this.run.checkpointEvery, this.perEpoch);
    const steps = Math.max(1, Math.min(this.run.keepLast + 1 - this.checkpoints.list().length, writes));
    // a new 'best' is a copy beside the one it replaces; the run's first, when there is none, replaces nothing
    const hasBest = existsSync(join(this.checkpoints.root, 'best'));
    const best = hasBest ? 1 : Math.min(2, writes);
    const bestWhat = hasBest ? "the copy that replaces 'best'" : best === 1 ? "'best'" : "'best' and the copy that replaces it";
    checkFreeSpace(this.run.outDir, (steps + best) * size, 'the checkpoints of this run', {
      how:
        `${steps + best} × ${formatBytes(size)}: ${steps} step folder${steps === 1 ? '' : 's'} at once (this run writes ${writes} checkpoint${writes === 1 ? '' : 's'}; ` +
        `up to --keep-last ${this.run.keepLast} kept, the next one written before the oldest is removed), and ${bestWhat}`,
      remedy: `Free space, ${this.spaceHint === undefined ? 'lower --keep-last, or use another --out-dir' : `or use ${this.spaceHint}`}`,
    });
  }

  /**
   * A rank other than 0 continues from the checkpoint rank 0 settled on (after quarantining corrupt
   * ones), not from the newest one it sees itself: an --out-dir that is not the same folder on every
   * machine would otherwise start the ranks at different steps, which then wait for each other's
   * collectives until the timeout.
   */
  private resumeAsRankZero(settled: Settled): void {
    const dir = join(this.run.outDir, settled.checkpoint);
    const rank = this.group!.rank;
    const shared = 'a data-parallel run needs its --out-dir on storage every machine sees (or the same copy of it on each)';
    if (!existsSync(dir)) {
      throw new Error(
        `rank ${rank}: rank 0 resumes from ${quotedPath(settled.checkpoint)} (step ${settled.step}), which this rank cannot see at ${quotedPath(dir)}: ${shared}`,
      );
    }
    this.restoreFrom(this.checkpoints.load(dir));
    if (this.step !== settled.step) {
      throw new Error(`rank ${rank}: ${quotedPath(dir)} holds step ${this.step}, but rank 0 resumes from step ${settled.step} there: ${shared}`);
    }
  }

  private restoreFrom(latest: LoadedCheckpoint): void {
    try {
      this.restore(latest);
    } finally {
      disposeAll(latest.model);
      disposeAll(latest.extra);
    }
  }

  private restore(latest: LoadedCheckpoint): void {
    const { job } = this;
    const s = latest.state as unknown as SavedState & { bestLoss?: number; bestTop1?: number; options?: Record<string, unknown>; cwd?: unknown };
    const bases = { stored: typeof s.cwd === 'string' ? s.cwd : undefined, now: process.cwd() };
    const savedWorld = s.worldSize ?? 1;
    const format = latest.modelMetadata.format;
    refuseOtherFormatVersion(format, latest.dir);
    if (format && format !== `semaim.${job.kind}/1`) {
      const kind = runKindOf(format) ?? format;
      throw new Error(
        `${quotedPath(this.run.outDir)} holds a ${kind} run (${quotedPath(latest.dir)}), not a ${job.kind} run: give ${job.kind} its own --out-dir`,
      );
    }
    if (job.optionTable && s.options) {
      const changes = this.recipeChangesSince(job.optionTable, s.options, savedWorld, bases);
      for (const c of changes) {
        if (c.key !== 'batchSize' || (savedWorld === 1 && this.worldSize === 1)) continue;
        c.before = `${c.before} (global: ${s.options.batchSize} × ${savedWorld} processes)`;
        c.now = `${c.now} (global: ${job.options.batchSize} × ${this.worldSize} processes)`;
      }
      refuseRecipeChanges(job.optionTable, changes, this.run.outDir, this.freshRunHint);
    }
    const [modelBefore, modelNow] = [comparableConfig(s.config, bases.stored ?? bases.now), comparableConfig(job.config, bases.now)];
    if (JSON.stringify(modelBefore) !== JSON.stringify(modelNow)) {
      throw new Error(
        `the checkpoint in ${quotedPath(latest.dir)} was made for another model (${jsonDifferences(modelBefore, modelNow)}); start afresh: ${this.freshRunHint}`,
      );
    }
    const madePerEpoch = typeof s.stepsPerEpoch === 'number' ? s.stepsPerEpoch : stepsPerEpochOf(s, this.run.accumIter, this.perEpoch);
    if (madePerEpoch !== this.perEpoch) {
      // its step count and its (epoch, batch) would place the run in two layouts: it went on at the old
      // position with the step count of the old one, its epochs going backwards, past --epochs
      throw new Error(
        `the run in ${quotedPath(this.run.outDir)} made ${madePerEpoch} optimiser steps per epoch, the data now gives ${this.perEpoch} ` +
          `(${job.batchesPerEpoch} batches per epoch at --accum-iter ${this.run.accumIter}): its images changed since the run began ` +
          `(${quotedPath(latest.dir)}); give it the same data to continue it, or start afresh: ${this.freshRunHint}`,
      );
    }
    job.model.loadStateDict(latest.model);
    const optTensors = new Map([...latest.extra].filter(([k]) => k.startsWith('opt.')).map(([k, v]) => [k.slice(4), v]));
    job.optimizer.loadStateDict({ tensors: optTensors, meta: s.optimizer as never });
    job.ema?.loadStateTensors(latest.extra);
    if (job.scaler && s.scaler) job.scaler.loadStateDict(s.scaler as never);
    restoreGlobalRngStates(latest.extra, this.run.device);
    for (const [name, g] of Object.entries(job.generators)) {
      const st = latest.extra.get(`rng.${name}`) ?? (job.formerlyGlobal?.includes(name) ? latest.extra.get('rng.global') : undefined);
      if (!st) throw new Error(`checkpoint ${quotedPath(latest.dir)} has no state for the random stream '${name}'`);
      g.setState(st);
    }
    this.step = s.step;
    this.progress?.resumeFrom(s.step);
    this.epoch = s.epoch;
    this.batch = s.batch;
    this.best = s.best ?? s.bestLoss ?? (s.bestTop1 !== undefined && s.bestTop1 >= 0 ? s.bestTop1 : null);
    this.lastCheckpoint = latest.dir;
    this.savedStep = s.step;
    this.endUnscored = s.endUnscored === true;
    this.seconds = this.secondsBefore = typeof s.seconds === 'number' ? s.seconds : NaN;
    // Metrics logged after the checkpoint are computed again: drop them, and take up the loss curve. A line
    // at the checkpoint's own step written off the --log-every cadence (a stop) is dropped too: its losses
    // continue in the window, so the next line is the one an uninterrupted run writes (a run with nothing
    // left to do keeps its lines as they are).
    const carried = s.lossWindow && s.lossWindow.count > 0 && s.step < this.totalSteps ? s.lossWindow : null;
    if (this.writes) this.metrics.truncateAfter(this.step, carried ? { lossLinesAt: this.step } : {});
    if (carried) {
      // each rank its own sum (at another world size, their mean: the logged mean stays the same)
      const { sums, count } = carried;
      const sum = sums.length === this.worldSize ? sums[this.group?.rank ?? 0] : sums.reduce((a, b) => a + b, 0) / sums.length;
      this.window.restore({ sum, count });
    }
    const losses = lossEnds(this.metrics.path); // (the file's two ends: an 800-epoch run logs hundreds of thousands of lines)
    if (losses) [this.firstLoss, this.lastLoss] = [losses.first, losses.last];
    const worlds = savedWorld !== this.worldSize ? `; written by ${savedWorld} process(es), continued by ${this.worldSize}` : '';
    if (this.writes) this.log(`resumed from ${quotedPath(latest.dir)} (step ${this.step}, epoch ${this.epoch}, batch ${this.batch}${worlds})`);
    job.onResume?.(latest.state as Record<string, unknown>, latest.dir);
  }

  /**
   * Writes a checkpoint positioned at (epoch, batch). The caller has asked diverged() first (the loop does
   * before every save): a checkpoint never holds a NaN/Inf loss's or weights' state.
   * Data-parallel: rank 0 writes, then all ranks pass a barrier, so that no rank goes on (or ends)
   * before the checkpoint exists.
   */
  async save(epoch: number, batch: number): Promise<void> {
    const { job } = this;
    const scored = this.mayBeBest();
    const score = scored ? job.best.score(this) : null;
    const better = score !== null && Number.isFinite(score) && (this.best === null || (job.best.lowerIsBetter ? score < this.best : score > this.best));
    if (better) this.best = score;
    // a --max-steps stop before any scored checkpoint (a short run) still leaves a best/: this one, unscored
    // (`best` stays null), so that the first scored checkpoint of a continued run replaces it
    const standIn = !scored && this.stoppedBy === 'maxSteps' && this.best === null;
    const lossWindow = await this.unlogged();
    this.seconds = this.secondsBefore + (performance.now() - this.began) / 1000;
    if (this.writes) this.write(epoch, batch, better || standIn, lossWindow);
    this.savedStep = this.step;
    await this.group?.barrier();
  }

  /**
   * Whether the checkpoint of this step is scored for 'best'. Not the one of a run stopped by a signal: it is off
   * the checkpoint cadence, its score from a partial loss window, which an uninterrupted run never scores there
   * (resumed, it ends with the same best/). Nor, when the score is the logged loss, the one of a --max-steps stop,
   * unless a run without the stop writes it too (on the checkpoint cadence) with the same full --log-every window:
   * a partial window's mean (a few steps) would displace full ones, and a continued run would end with another best/.
   * (A score that evaluates the weights, fine-tuning's, is that checkpoint's whatever the step.)
   */
  private mayBeBest(): boolean {
    if (this.stoppedBy === 'signal' || this.endUnscored) return false;
    if (this.stoppedBy !== 'maxSteps' || !this.job.best.loggedLoss) return true;
    const onCheckpointCadence = this.step % this.run.checkpointEvery === 0 || this.step % this.perEpoch === 0;
    return onCheckpointCadence && this.step % this.run.logEvery === 0;
  }

  /**
   * What became NaN/Inf, on any rank: 'loss' (a loss since the last log line) or 'weights' (a tensor of
   * the model, the optimiser or the EMA copy: a step whose gradients overflow writes NaN weights while its
   * own loss was finite); null when all is finite. No checkpoint is written and no evaluation runs after
   * either. Reads every trained tensor once (on the device; one sync): at checkpoints and epoch ends only.
   */
  async diverged(): Promise<'loss' | 'weights' | null> {
    const loss = !this.window.finite();
    const weights = !loss && !allFinite(this.trainedTensors());
    const [anyLoss, anyWeights] = this.group ? await this.group.averageNumbers([loss ? 1 : 0, weights ? 1 : 0]) : [loss ? 1 : 0, weights ? 1 : 0];
    return anyLoss > 0 ? 'loss' : anyWeights > 0 ? 'weights' : null;
  }

  /** Every tensor training changes, as the checkpoint holds them: the model's, the optimiser's, the EMA copy's. */
  private *trainedTensors(): Generator<Tensor> {
    const { job } = this;
    yield* job.model.stateDict().values();
    const opt = job.optimizer.stateDict();
    try {
      yield* opt.tensors.values();
    } finally {
      disposeAll(opt.tensors);
    }
    if (job.ema) yield* job.ema.stateTensors().values();
  }

  /** The losses since the last line of the --log-every cadence: the window not yet written, plus a line written off the cadence at this step. */
  private async unlogged(): Promise<UnloggedLosses> {
    const off = this.offCadence?.step === this.step ? this.offCadence : null;
    if (off) return { sums: off.sums, count: off.count }; // the line took the window: nothing since
    const { sum, count } = this.window.pending();
    return { sums: count > 0 ? await this.rankSums(sum) : [], count };
  }

  /** Every rank's number, in rank order (one process: its own). */
  private async rankSums(sum: number): Promise<number[]> {
    return this.group ? await this.group.allGatherJson(sum) : [sum];
  }

  private write(epoch: number, batch: number, better: boolean, lossWindow: UnloggedLosses): void {
    const { job } = this;
    const optState = job.optimizer.stateDict();
    const extra = new Map<string, Tensor>([...optState.tensors].map(([k, v]) => [`opt.${k}`, v] as [string, Tensor]));
    if (job.ema) for (const [k, v] of job.ema.stateTensors()) extra.set(k, v);
    const owned = globalRngStates(this.run.device);
    for (const [name, g] of Object.entries(job.generators)) owned.set(`rng.${name}`, g.getState());
    for (const [k, v] of owned) extra.set(k, v);
    try {
      const state: SavedState & Record<string, unknown> = {
        worldSize: this.worldSize,
        step: this.step,
        epoch,
        batch,
        best: this.best,
        optimizer: optState.meta,
        scaler: job.scaler?.stateDict(),
        config: job.config,
        lossWindow,
        ...(this.endUnscored ? { endUnscored: true } : {}),
        seconds: this.seconds,
        stepsPerEpoch: this.perEpoch,
        options: job.options,
        cwd: process.cwd(), // what relative paths among the options are relative to
        ...job.extraState,
      };
      this.lastCheckpoint = this.checkpoints.save(
        this.step,
        {
          model: job.model.stateDict(),
          extra,
          state,
          modelMetadata: { config: JSON.stringify(job.config), format: `semaim.${job.kind}/1` },
        },
        { best: better },
      );
    } finally {
      disposeAll(optState.tensors);
      disposeAll(owned);
    }
  }

  /** The gradient norm of `step`, for the metrics line of that step. */
  setGradNorm(value: number, step: number): void {
    this.gradNorm = { value, step };
  }

  /**
   * Writes the metrics window (nothing when it is empty); false when the loss became NaN/Inf.
   * Data-parallel: the loss is the mean over the ranks, the rate their sum; every rank returns the same.
   */
  async flushMetrics(fractionalEpoch: number): Promise<boolean> {
    if (this.window.count === 0) return true;
    let finite = this.window.finite();
    const { sum, count } = this.window.pending();
    let { mean, rate } = this.window.take();
    if (this.group) {
      const [m, anyNonFinite, r] = await this.group.averageNumbers([mean, finite ? 0 : 1, rate]);
      [mean, finite, rate] = [m, anyNonFinite === 0, r * this.worldSize];
    }
    // (the ranks agree on the step, so all of them take part in the gather or none)
    this.offCadence = this.step % this.run.logEvery === 0 ? null : { step: this.step, sums: await this.rankSums(sum), count };
    if (Number.isNaN(this.firstLoss)) this.firstLoss = mean;
    this.lastLoss = mean;
    // a run stopped between log steps has no norm of its last step: null, not an older step's
    const gradNorm = this.gradNorm.step === this.step ? this.gradNorm.value : null;
    // JSON has no Infinity/NaN (stringify writes null, which means "not measured"): a non-finite norm as the string
    const rec = {
      step: this.step,
      epoch: Number(fractionalEpoch.toFixed(4)),
      loss: mean,
      lr: this.lr(),
      gradNorm: gradNorm === null || Number.isFinite(gradNorm) ? gradNorm : String(gradNorm),
      imgPerSec: rate,
    };
    if (!this.writes) return finite && Number.isFinite(mean);
    this.appendMetrics(rec);
    // the fields that matter most first: a narrow terminal leaves out the last ones
    this.shown = { loss: mean, 'img/s': rate.toFixed(1), lr: rec.lr, gnorm: gradNorm ?? '-' };
    this.showStep(fractionalEpoch);
    return finite && Number.isFinite(mean);
  }

  /**
   * Moves the progress line to this step, with the last logged loss and rate: called between log steps
   * too, without which nothing showed until the first --log-every step (minutes of silence for a large
   * model on a CPU).
   */
  showStep(fractionalEpoch: number): void {
    if (this.writes) this.progress?.update(this.step, { ...this.shown, epoch: fractionalEpoch.toFixed(2) });
  }

  /**
   * Records more metrics (e.g. a test-set evaluation) at the current step; with `unlessLogged`, not when a
   * record of this step holds that key already (a finished run's end done again).
   */
  writeMetrics(record: Record<string, unknown>, o: { unlessLogged?: string } = {}): void {
    if (!this.writes) return;
    if (o.unlessLogged !== undefined && this.metrics.has(this.step, o.unlessLogged)) return;
    this.appendMetrics({ step: this.step, ...record });
  }

  /** Appends a line to metrics.jsonl and hands it, as written, to the caller's onMetrics. */
  private appendMetrics(record: { step: number } & Record<string, unknown>): void {
    const line = this.metrics.write(record); // (not inside onMetrics?.(…): that skips its argument when there is no callback)
    this.onMetrics?.(line);
  }

  dispose(): void {
    if (this.writes) this.progress?.done();
    this.window.dispose();
    this.lock?.release();
  }
}

/**
 * How many checkpoints a run from step `from` to `total` writes when it is not stopped early: one at every
 * multiple of `every` and at every epoch end (a multiple of `perEpoch`) before `total`, and the last at `total`
 * (trainLoop's policy).
 */
export function checkpointsToWrite(from: number, total: number, every: number, perEpoch: number): number {
  if (from >= total) return 0;
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const multiples = (x: number) => (Number.isSafeInteger(x) && x > 0 ? Math.floor((total - 1) / x) - Math.floor(from / x) : 0); // in (from, total)
  const both = Number.isSafeInteger(every) && every > 0 ? (every / gcd(every, perEpoch)) * perEpoch : 0;
  return multiples(every) + multiples(perEpoch) - multiples(both) + 1;
}

/**
 * The optimiser steps per epoch of a checkpoint that does not record them (written before stepsPerEpoch was),
 * or what can be said of them: every checkpoint sits at step = epoch × steps per epoch + batch / accumIter,
 * batch / accumIter a whole number of steps short of an epoch. From epoch 1 on that gives the count; in
 * epoch 0 it only bounds it from below, so `now` (this run's count) is taken while the position fits it.
 */
function stepsPerEpochOf(s: { step: number; epoch: number; batch: number }, accumIter: number, now: number): number | string {
  const inEpoch = s.batch / accumIter;
  if (s.epoch === 0) return s.step === inEpoch && inEpoch < now ? now : `more than ${Math.floor(inEpoch)}`;
  const perEpoch = (s.step - inEpoch) / s.epoch;
  return Number.isInteger(inEpoch) && Number.isInteger(perEpoch) && perEpoch > inEpoch ? perEpoch : 'another number of';
}

/**
 * A model config as two runs of the same model record it: the teacher's path placed from where the run
 * started, and its encoder config in the fields an encoder has (a run from before 2026-12-03 recorded the
 * teacher's whole .json, the exporter's timm block too; loadTeacher compares the same fields); pixel
 * targets without the blur, without the blur's size (a run started with --no-blur --blur-kernel 5, before
 * that was refused, resumes without it).
 */
function comparableConfig(config: unknown, base: string): unknown {
  const c = config as { target?: { type?: unknown; blur?: unknown; teacher?: unknown; teacherConfig?: unknown } } | null;
  if (c?.target?.type === 'pixels' && c.target.blur === false) {
    const { blurKernel: _kernel, blurSigma: _sigma, ...unblurred } = c.target as Record<string, unknown>;
    return { ...c, target: unblurred };
  }
  if (typeof c?.target?.teacher !== 'string') return config;
  const teacherConfig = isJsonObject(c.target.teacherConfig) ? encoderConfigOf(c.target.teacherConfig as unknown as EncoderConfig) : c.target.teacherConfig;
  return { ...c, target: { ...c.target, teacher: pathPlace(c.target.teacher, base), teacherConfig } };
}
