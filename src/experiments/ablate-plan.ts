// Planning an order ablation to a time budget (`semaim ablate --budget-minutes M`): time a few
// pre-training steps of every row and the evaluation of one run on this machine, then choose the one
// number of steps every pre-training gets so that all runs (spread over --jobs processes) and their
// evaluations fit. The plan is stored in <out-dir>/plan.json so that a later call (after an
// interruption, or on a second time-limited machine session) continues with the same recipe.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeFolder } from '../util/make-folder';
import { namesOfDeadProcesses } from '../util/process-alive';
import * as torch from '../torch';
import { PretrainOptions, modelConfigFrom } from '../train/pretrain-options';
import { pretrain } from '../train/pretrain';
import { VisionTransformer, encoderConfigOf } from '../semaim';
import { MemoryLabelledData, TrainBatch, TrainData } from '../data';
import { extractPooledFeatures, disposeFeatures, FeatureSet, FeaturePooling } from '../eval/features';
import { knnClassify } from '../eval/knn';
import { linprobeOnFeatures, LinprobeOptions } from '../eval/linprobe';
import { isJsonObject, jsonBrief, readJsonWith } from '../util/json-file';
import { otherFormatVersion } from '../io/checkpoint';
import { jsonDifferences } from '../util/json-diff';
import type { Precision } from '../run/precision';
import { writeFileAtomic } from '../util/safe-write';
import { StopRequest, StoppedBySignal } from '../run/signals';
import { stepsInEpochs } from '../optim';

export interface StepTiming {
  /** Seconds per optimiser step (median of the timed steps after the warm-up ones). */
  step: number;
  /** Seconds of one run besides its steps: building the model, the last checkpoint. */
  startup: number;
}

/** What one process measured (with --jobs N, N processes measure at once, as they will run). */
export interface Measurement {
  /** Per row name. */
  steps: Record<string, StepTiming>;
  /** Seconds of one run's evaluation: features of the train and test images (all poolings), k-NN, linear probe. */
  evalSeconds: number;
}

/** What must match for a stored plan to be reused. */
export interface PlanInputs {
  budgetMinutes: number;
  rows: string[];
  seeds: number;
  seed: number;
  baseline: boolean;
  /** The pre-training and evaluation recipe, without the epochs the plan chooses. */
  recipe: Record<string, unknown>;
}

export interface AblationPlan {
  format: 'semaim.ablation-plan/1';
  createdAt: string;
  inputs: PlanInputs;
  jobs: number;
  device: string;
  threads: number | null;
  measured: Measurement & {
    /** Processes that measured at once (= jobs). */
    processes: number;
    /** Seconds per batch of the real training data loader. */
    loaderSecondsPerBatch: number;
    /** Loader worker threads (0: batches are made on the main thread, so their time adds to a step's). */
    loaderWorkers: number;
    /** Seconds already spent before the plan (opening and caching the evaluation images, measuring). */
    spentSeconds: number;
  };
  batchesPerEpoch: number;
  /** Optimiser steps of every pre-training. */
  steps: number;
  epochs: number;
  warmupEpochs: number;
  /** Predicted wall time of the whole ablation from its start, seconds. */
  predictedSeconds: number;
  /** Per run key ('<row>/<seed>'): the shard 0..jobs-1 that runs it. */
  shards: Record<string, number>;
}

export interface PlannedRun {
  key: string;
  /** Row name; null for the random-init baseline (no pre-training). */
  row: string | null;
}

/** In-memory pre-training data of random normalised images (only the step time matters). */
function randomTrainData(shape: number[], batches: number, seed: number): TrainData {
  const images = torch.scope(() => torch.randn(shape, { generator: new torch.Generator(seed) }).toFloat32Array());
  return {
    batchesPerEpoch: batches,
    async *epoch(_epoch: number, start: number): AsyncGenerator<TrainBatch> {
      for (let b = start; b < batches; b++) yield { images, shape };
    },
    close() {},
  };
}

/**
 * A new scratch folder for a plan's measurements in the ablation's out-dir, `.plan-scratch-<pid>-XXXXXX`
 * (ones a killed process left are removed first): not in $TMPDIR, which may be missing or read-only, and
 * be too small for the checkpoint a timed pre-training writes.
 */
export function planScratch(outDir: string): string {
  makeFolder(outDir);
  for (const name of namesOfDeadProcesses(outDir, /^\.plan-scratch-(\d+)-\w+$/)) rmSync(join(outDir, name), { recursive: true, force: true });
  return mkdtempSync(join(outDir, `.plan-scratch-${process.pid}-`));
}

/**
 * Waits for the work queued on `device` (nothing on the CPU). A CUDA step returns once its kernels are queued:
 * without this wait, a step's time read between metric reads was the rate of queueing them, and the plan
 * took far more steps than the budget holds.
 */
export function waitForDevice(device: string): void {
  if (device.startsWith('cuda')) torch.cuda.synchronize();
}

/**
 * Times `warmup + timed` steps of the real pre-training loop on random images (in a scratch folder in `outDir`, see planScratch).
 * A SIGINT/SIGTERM (or `stop`) during them is a StoppedBySignal: the steps it cut short time nothing,
 * and a plan made from them would be kept for every later call.
 */
export async function timeSteps(options: PretrainOptions, outDir: string, warmup = 2, timed = 4, stop?: StopRequest): Promise<StepTiming> {
  const dir = planScratch(outDir);
  const total = warmup + timed;
  const stamps: number[] = [];
  const t0 = performance.now();
  try {
    const o: PretrainOptions = {
      ...options,
      outDir: dir,
      epochs: 1e6,
      warmupEpochs: 1,
      maxSteps: total,
      resume: false,
      logEvery: Math.max(options.logEvery, 1),
      checkpointEvery: 1e9,
      keepLast: 1,
    };
    const shape = [o.batchSize, 3, o.imgSize, o.imgSize];
    const r = await pretrain(o, randomTrainData(shape, total, o.seed), {
      log: () => {},
      onStep: () => {
        waitForDevice(o.device);
        stamps.push(performance.now());
      },
      ...(stop && { stop }),
    });
    if (r.stoppedBy === 'signal')
      throw new StoppedBySignal(
        'interrupted while timing the steps for --budget-minutes; no plan was written, run the same command again',
        r.signal ?? stop?.signal,
      );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return stepTiming(t0, stamps, performance.now(), warmup, total);
}

/**
 * The arithmetic of {@link timeSteps}, from the clock (ms) before the run (`t0`), after each of its `total` steps
 * (`stamps`) and after it (`t1`): the step is the median of the gaps before each step after the `warmup` ones (the
 * mean gap when the warm-up took them all); the startup is the rest of the run's time, never below 0.
 */
export function stepTiming(t0: number, stamps: readonly number[], t1: number, warmup: number, total: number): StepTiming {
  const elapsed = (t1 - t0) / 1000;
  const gaps = stamps
    .slice(warmup)
    .map((t, i) => (t - stamps[warmup + i - 1]) / 1000)
    .filter((x) => Number.isFinite(x));
  const step = median(gaps.length ? gaps : [(stamps[stamps.length - 1] - stamps[0]) / 1000 / Math.max(1, stamps.length - 1)]);
  return { step, startup: Math.max(0, elapsed - step * total) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export interface EvalCost {
  sizes: { train: number; test: number };
  numClasses: number;
  poolings: FeaturePooling[];
  ks: number[];
  evalBatchSize: number;
  linprobe: LinprobeOptions;
  precision: Precision;
  device: torch.Device;
}

/**
 * Seconds of the second of two calls of `work`. The first call of each part pays one-time costs (on a
 * GPU: kernel loading, cuBLAS and cuDNN set-up, the allocator's first blocks) that the parts' scaling
 * below would multiply: on an H200 the plan took 28-36 s per evaluation where the runs took 8-9 s.
 */
async function timeWarm(work: () => unknown, device: string): Promise<number> {
  await work();
  waitForDevice(device);
  const t = performance.now();
  await work();
  waitForDevice(device);
  return (performance.now() - t) / 1000;
}

/**
 * Times one run's evaluation with a random-init encoder on random images: feature extraction over
 * `sample` images scaled to the train + test sizes; k-NN on random features of the real sizes; one
 * linear-probe epoch (or the recipe's epochs when fewer) scaled to the recipe's epochs.
 */
export async function timeEvaluation(options: PretrainOptions, c: EvalCost, sample = 1024): Promise<number> {
  torch.manualSeed(options.seed);
  const cfg = encoderConfigOf(modelConfigFrom(options));
  const encoder = new VisionTransformer(cfg).initWeights().to({ device: c.device }).eval();
  for (const p of encoder.parameters()) p.requiresGrad = false;
  const n = Math.max(1, Math.min(sample, c.sizes.train + c.sizes.test));
  const shape = [n, 3, cfg.imgSize, cfg.imgSize];
  const images = torch.scope(() => torch.randn(shape, { generator: new torch.Generator(1) }).toFloat32Array());
  const data = new MemoryLabelledData(
    images,
    shape,
    Int32Array.from({ length: n }, (_, i) => i % c.numClasses),
    c.numClasses,
  );
  const sets: FeatureSet[] = [];
  try {
    const features =
      (await timeWarm(async () => {
        disposeFeatures(
          ...(await extractPooledFeatures(encoder, data, c.poolings, { batchSize: c.evalBatchSize, precision: c.precision, label: null })).values(),
        );
      }, c.device)) *
      ((c.sizes.train + c.sizes.test) / n);
    const rand = (rows: number, seed: number): FeatureSet => {
      const f = torch.keep(torch.randn([rows, cfg.embedDim], { generator: new torch.Generator(seed) }).to({ device: c.device }));
      const set = { features: f, labels: Int32Array.from({ length: rows }, (_, i) => i % c.numClasses) };
      sets.push(set);
      return set;
    };
    const tr = rand(c.sizes.train, 2);
    const te = rand(c.sizes.test, 3);
    const knn = await timeWarm(() => {
      knnClassify(tr, te, { ks: c.ks.filter((k) => k <= c.sizes.train), numClasses: c.numClasses, label: null });
    }, c.device);
    const epochs = Math.min(1, c.linprobe.epochs);
    const linprobe =
      (await timeWarm(async () => {
        (await linprobeOnFeatures(tr, te, c.numClasses, { ...c.linprobe, epochs, warmupEpochs: 0, label: null })).probe.dispose();
      }, c.device)) *
      (c.linprobe.epochs / epochs);
    return features + c.poolings.length * (knn + linprobe);
  } finally {
    disposeFeatures(...sets);
    encoder.dispose();
  }
}

export interface PlanArithmetic {
  budgetSeconds: number;
  /** Already spent (data, measuring). */
  spentSeconds: number;
  runs: PlannedRun[];
  measured: Measurement;
  /** Seconds a step waits for the loader on top of the model step. */
  loaderWait: (step: number) => number;
  jobs: number;
  /** Fraction of the remaining budget planned for (the rest is margin). Default 0.95. */
  fill?: number;
}

/** Seconds of one run at `steps` steps. */
export function runSeconds(run: PlannedRun, steps: number, a: Pick<PlanArithmetic, 'measured' | 'loaderWait'>): number {
  if (run.row === null) return a.measured.evalSeconds;
  const t = a.measured.steps[run.row];
  if (!t) throw new Error(`no step time measured for row '${run.row}'`);
  return steps * (t.step + a.loaderWait(t.step)) + t.startup + a.measured.evalSeconds;
}

/**
 * Longest-processing-time assignment of runs to `jobs` shards (deterministic: ties keep the run
 * order); returns each run's shard and the largest shard's seconds.
 */
export function assignShards(costs: { key: string; seconds: number }[], jobs: number): { shards: Record<string, number>; makespan: number } {
  const load = new Array<number>(jobs).fill(0);
  const shards: Record<string, number> = {};
  const order = costs.map((c, i) => ({ ...c, i })).sort((a, b) => b.seconds - a.seconds || a.i - b.i);
  for (const c of order) {
    let best = 0;
    for (let s = 1; s < jobs; s++) if (load[s] < load[best]) best = s;
    shards[c.key] = best;
    load[best] += c.seconds;
  }
  return { shards, makespan: Math.max(0, ...load) };
}

/** The largest number of steps whose predicted wall time fits the budget (0 when none does). */
export function planSteps(a: PlanArithmetic): { steps: number; predictedSeconds: number; shards: Record<string, number> } {
  const limit = (a.budgetSeconds - a.spentSeconds) * (a.fill ?? 0.95);
  const at = (steps: number) =>
    assignShards(
      a.runs.map((r) => ({ key: r.key, seconds: runSeconds(r, steps, a) })),
      a.jobs,
    );
  if (at(1).makespan > limit) return { steps: 0, predictedSeconds: a.spentSeconds + at(1).makespan, shards: at(1).shards };
  let lo = 1;
  let hi = 2;
  while (at(hi).makespan <= limit && hi < 1e9) hi *= 2;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (at(mid).makespan <= limit) lo = mid;
    else hi = mid;
  }
  const r = at(lo);
  return { steps: lo, predictedSeconds: a.spentSeconds + r.makespan, shards: r.shards };
}

/** Epochs that give exactly `steps` steps at `perEpoch` batches per epoch (as the loop counts them: stepsInEpochs). */
export function epochsForSteps(steps: number, perEpoch: number): { epochs: number; steps: number } {
  let epochs = Number((steps / perEpoch).toFixed(6));
  while (stepsInEpochs(epochs, perEpoch) > steps) epochs = Number((epochs - 1e-6).toFixed(6));
  while (stepsInEpochs(epochs, perEpoch) < steps) epochs = Number((epochs + 1e-6).toFixed(6));
  return { epochs, steps: stepsInEpochs(epochs, perEpoch) };
}

export function planPath(outDir: string): string {
  return join(outDir, 'plan.json');
}

/**
 * The stored plan of an ablation folder, checked: the length it sets every run to must be the one it
 * recorded (stepsInEpochs(epochs, batches per epoch) = steps), or a hand-edited plan would train another length
 * than its reports say.
 */
export function readPlan(outDir: string): AblationPlan | null {
  const p = planPath(outDir);
  if (!existsSync(p)) return null;
  const plan = readJsonWith(p, ['inputs', 'shards', 'measured']) as unknown as AblationPlan;
  const newer = otherFormatVersion(plan.format, p);
  if (newer) throw new Error(newer);
  if (plan.format !== 'semaim.ablation-plan/1') throw new Error(`${p} is not an ablation plan (format ${JSON.stringify(plan.format)})`);
  const positive = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;
  for (const key of ['epochs', 'steps', 'batchesPerEpoch'] as const) {
    if (!positive(plan[key])) throw new Error(`${p}: '${key}' is ${JSON.stringify(plan[key])}, not a positive number`);
  }
  if (!(typeof plan.warmupEpochs === 'number' && plan.warmupEpochs >= 0 && plan.warmupEpochs < plan.epochs))
    throw new Error(`${p}: 'warmupEpochs' is ${JSON.stringify(plan.warmupEpochs)}, not in [0, epochs)`);
  // (every plan semaim writes records its recipe: makePlan compares it with this call's)
  if (!isJsonObject(plan.inputs.recipe)) throw new Error(`${p}: 'inputs.recipe' is missing or not an object`);
  const m = plan.measured;
  if (!isJsonObject(m.steps)) throw new Error(`${p}: 'measured.steps' is ${jsonBrief(m.steps)}, not an object`);
  for (const [row, t] of Object.entries(m.steps)) {
    for (const key of ['step', 'startup'] as const) {
      const v = isJsonObject(t) ? t[key] : undefined;
      if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0))
        throw new Error(`${p}: 'measured.steps.${row}.${key}' is ${jsonBrief(v)}, not a number ≥ 0`);
    }
  }
  for (const key of ['evalSeconds', 'processes', 'loaderSecondsPerBatch', 'loaderWorkers', 'spentSeconds'] as const) {
    if (!(typeof m[key] === 'number' && Number.isFinite(m[key]) && m[key] >= 0))
      throw new Error(`${p}: 'measured.${key}' is ${JSON.stringify(m[key])}, not a number ≥ 0`);
  }
  if (stepsInEpochs(plan.epochs, plan.batchesPerEpoch) !== plan.steps)
    throw new Error(`${p}: ${plan.epochs} epochs of ${plan.batchesPerEpoch} batches are not its ${plan.steps} steps (was it edited?)`);
  return plan;
}

export function writePlan(outDir: string, plan: AblationPlan): void {
  writeFileAtomic(planPath(outDir), JSON.stringify(plan, null, 2) + '\n');
}

/** Inputs that may differ from a stored plan: rows and seeds added later get the planned length too. */
const EXTENSIBLE: (keyof PlanInputs)[] = ['rows', 'seeds', 'baseline'];

/** The first four settings two recipes differ in, flattened ('pretrain.emaSchedule: – → "constant"'). */
export function describeDiff(a: Record<string, unknown> | undefined, b: Record<string, unknown>): string {
  return a ? jsonDifferences(a, b) : 'no recipe recorded';
}

/**
 * The inputs that differ between a stored plan and this call: `refuse` lists what makes another
 * recipe (the budget, the first seed, the recipe), `extended` the rows, seeds or baseline a later
 * call may add or drop while keeping the planned length (the budget then no longer holds).
 */
export function planInputsDiffer(stored: PlanInputs, now: PlanInputs): { refuse: string; extended: string } {
  const keys = Object.keys(now) as (keyof PlanInputs)[];
  const diff = keys.filter((k) => JSON.stringify(stored[k]) !== JSON.stringify(now[k]));
  const say = (ks: (keyof PlanInputs)[]) =>
    ks
      .map((k) =>
        k === 'recipe' ? `the recipe: ${describeDiff(stored.recipe, now.recipe)}` : `${k}: ${JSON.stringify(stored[k])} → ${JSON.stringify(now[k])}`,
      )
      .join(', ');
  return { refuse: say(diff.filter((k) => !EXTENSIBLE.includes(k))), extended: say(diff.filter((k) => EXTENSIBLE.includes(k))) };
}

/** Seconds a step waits for the loader on top of the model step (with no workers, the main thread makes every batch). */
export function loaderWaitOf(loaderSecondsPerBatch: number, workers: number): (step: number) => number {
  return (step) => (workers === 0 ? loaderSecondsPerBatch : Math.max(0, loaderSecondsPerBatch - step));
}

/**
 * The plan's assignment of runs to `jobs` shards: its own when it was planned for that many processes;
 * else (a plan made with --jobs 1 continued with --jobs 2 put every run in shard 0) the runs it measured
 * spread anew over `jobs` by their predicted seconds. Runs of rows it did not measure are left to shardOf.
 */
export function planShards(plan: AblationPlan, runs: PlannedRun[], jobs: number): Record<string, number> {
  if (plan.jobs === jobs) return plan.shards;
  const m = plan.measured;
  const a = { measured: m, loaderWait: loaderWaitOf(m.loaderSecondsPerBatch, m.loaderWorkers) };
  const known = runs.filter((r) => r.row === null || m.steps[r.row]);
  return assignShards(
    known.map((r) => ({ key: r.key, seconds: runSeconds(r, plan.steps, a) })),
    jobs,
  ).shards;
}

/**
 * The shard that runs run `i` of `keys`: the plan's assignment (planShards), and for runs the plan does
 * not know (rows or seeds added later) a round-robin over those runs.
 */
export function shardOf(keys: string[], i: number, count: number, planned: Record<string, number> | null): number {
  // a shard index of these shards (an edited plan.json's -1, 0.5 or '1' was no shard's: the run never ran)
  const kept = (k: string): boolean => planned !== null && Number.isInteger(planned[k]) && planned[k] >= 0 && planned[k] < count;
  if (kept(keys[i])) return planned![keys[i]];
  const unplanned = keys.filter((k) => !kept(k));
  return unplanned.indexOf(keys[i]) % count;
}

/** A short human summary of a plan, run in `jobs` processes (when not those it was planned for, it says so). */
export function describePlan(plan: AblationPlan, jobs = plan.jobs): string {
  const m = plan.measured;
  const rows = Object.entries(m.steps)
    .map(([r, t]) => `${r} ${(1000 * t.step).toFixed(0)} ms`)
    .join(', ');
  return [
    `plan: ${plan.steps} steps per pre-training (${plan.epochs} epochs of ${plan.batchesPerEpoch} batches, warm-up ${plan.warmupEpochs}), ` +
      (jobs === plan.jobs ? `${plan.jobs} process(es); predicted` : `run in ${jobs} process(es), planned for ${plan.jobs}, which were predicted to take`) +
      ` ${(plan.predictedSeconds / 60).toFixed(1)} min of the ${plan.inputs.budgetMinutes} min budget`,
    `  measured (${m.processes} process(es) at once, ${plan.device}, ${plan.threads ?? 'all'} thread(s)): step ${rows}; ` +
      `evaluation ${m.evalSeconds.toFixed(1)} s per run; loader ${(1000 * m.loaderSecondsPerBatch).toFixed(1)} ms per batch (${m.loaderWorkers} workers); ` +
      `${m.spentSeconds.toFixed(0)} s spent before planning`,
  ].join('\n');
}
