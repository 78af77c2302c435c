// Learning-rate schedules, evaluated per iteration at a fractional epoch
// (epoch + iteration / iterationsPerEpoch), as MAE's util/lr_sched.py does.
import { isFiniteNonNegative } from './util';

/** A schedule maps a (fractional) epoch to a learning rate. */
export type LrSchedule = (epoch: number) => number;

/** Options of {@link warmupCosine}, all in learning-rate units or (fractional) epochs. */
export interface WarmupCosineOptions {
  /** Peak learning rate (reached at the end of warm-up). */
  lr: number;
  /** Learning rate at `epochs` (default 0). */
  minLr?: number;
  /** Linear warm-up length in epochs (default 0). */
  warmupEpochs?: number;
  /** Total length in epochs. */
  epochs: number;
}

function checkWarmup(warmupEpochs: number, what: string): void {
  if (!(warmupEpochs >= 0)) throw new RangeError(`${what}: warmupEpochs must be ≥ 0, got ${warmupEpochs}`);
}

/**
 * Refuses an lr, minLr or gamma that makes the schedule give a learning rate setLr refuses (negative, NaN,
 * infinite): a minLr of −1 passed, and the run stopped near its end, where the cosine went below 0.
 */
function checkRate(value: number, name: string, what: string): void {
  if (!isFiniteNonNegative(value)) throw new RangeError(`${what}: ${name} must be a finite number ≥ 0, got ${value}`);
}

/** Linear warm-up from 0: lr·epoch/warmupEpochs, or undefined once warm-up is over. */
function warmup(lr: number, warmupEpochs: number, epoch: number): number | undefined {
  return epoch < warmupEpochs ? (lr * epoch) / warmupEpochs : undefined;
}

/**
 * A schedule of the learning rate by (fractional) epoch: a linear warm-up, then a half-cycle cosine to minLr.
 * This is MAE's adjust_learning_rate: from 0 to lr over warmupEpochs, then from lr to minLr at `epochs`:
 *   epoch < warmup: lr·epoch/warmup
 *   else:           minLr + (lr − minLr)·½·(1 + cos(π·(epoch − warmup)/(epochs − warmup)))
 * Past `epochs` the cosine continues (as in MAE); callers stop at `epochs`.
 */
export function warmupCosine(o: WarmupCosineOptions): LrSchedule {
  const minLr = o.minLr ?? 0;
  const warmupEpochs = o.warmupEpochs ?? 0;
  checkWarmup(warmupEpochs, 'warmupCosine');
  checkRate(o.lr, 'lr', 'warmupCosine');
  checkRate(minLr, 'minLr', 'warmupCosine');
  const problem = minLrProblem(minLr, o.lr);
  if (problem) throw new RangeError(`warmupCosine: minLr ${problem}`);
  if (!(o.epochs > warmupEpochs)) throw new RangeError(`warmupCosine: epochs (${o.epochs}) must exceed warmupEpochs (${warmupEpochs})`);
  return (epoch) =>
    warmup(o.lr, warmupEpochs, epoch) ?? minLr + (o.lr - minLr) * 0.5 * (1 + Math.cos((Math.PI * (epoch - warmupEpochs)) / (o.epochs - warmupEpochs)));
}

/** Why a cosine from the peak `lr` down to `minLr` is not one, or null: a minLr above the peak would raise the lr. */
export function minLrProblem(minLr: number | undefined, lr: number): string | null {
  return minLr !== undefined && minLr > lr ? `(${minLr}) is above the peak lr (${lr}): the cosine would raise the lr instead of lowering it` : null;
}

/** A constant learning rate, after an optional linear warm-up from 0. */
export function constantLr(o: { lr: number; warmupEpochs?: number }): LrSchedule {
  const warmupEpochs = o.warmupEpochs ?? 0;
  checkWarmup(warmupEpochs, 'constantLr');
  checkRate(o.lr, 'lr', 'constantLr');
  return (epoch) => warmup(o.lr, warmupEpochs, epoch) ?? o.lr;
}

/**
 * Options of {@link stepLr}: the starting lr, exactly one of milestones and stepSize, gamma, and an
 * optional linear warm-up length in epochs (default 0).
 */
export interface StepLrOptions {
  lr: number;
  /** Multiply by gamma at each milestone epoch (MultiStepLR)... */
  milestones?: number[];
  /** ...or every stepSize epochs (StepLR). */
  stepSize?: number;
  /** Default 0.1. */
  gamma?: number;
  warmupEpochs?: number;
}

/**
 * Step decay: lr·gamma^k where k counts the milestones ≤ epoch (torch's MultiStepLR) or
 * floor(epoch / stepSize) (StepLR). Changes exactly at the milestone, so with fractional epochs the
 * drop happens at the first iteration of that epoch. Optional linear warm-up from 0 first.
 */
export function stepLr(o: StepLrOptions): LrSchedule {
  const gamma = o.gamma ?? 0.1;
  const warmupEpochs = o.warmupEpochs ?? 0;
  checkWarmup(warmupEpochs, 'stepLr');
  checkRate(o.lr, 'lr', 'stepLr');
  checkRate(gamma, 'gamma', 'stepLr');
  if (o.milestones?.some((m) => typeof m !== 'number' || !Number.isFinite(m)))
    throw new RangeError(`stepLr: milestones must be finite epochs, got [${o.milestones.join(', ')}]`);
  if ((o.milestones === undefined) === (o.stepSize === undefined)) throw new RangeError('stepLr: give exactly one of milestones and stepSize');
  if (o.stepSize !== undefined && !(o.stepSize > 0)) throw new RangeError(`stepLr: stepSize must be positive, got ${o.stepSize}`);
  const milestones = [...(o.milestones ?? [])].sort((a, b) => a - b);
  return (epoch) => {
    const w = warmup(o.lr, warmupEpochs, epoch);
    if (w !== undefined) return w;
    const k = o.stepSize !== undefined ? Math.floor(epoch / o.stepSize) : milestones.filter((m) => m <= epoch).length;
    return o.lr * gamma ** k;
  };
}

/**
 * The steps `epochs` epochs of `perEpoch` steps make: ⌈epochs × perEpoch⌉, the product taken to 12 digits
 * first (a decimal epoch count times an integer is not exact in binary: 0.28 × 25 = 7.000000000000001 made 8).
 */
export function stepsInEpochs(epochs: number, perEpoch: number): number {
  return Math.ceil(Number((epochs * perEpoch).toPrecision(12)));
}

/** The fractional epoch of an iteration: epoch + iteration / iterationsPerEpoch (MAE's data_iter_step / len(loader) + epoch). */
export function fractionalEpoch(epoch: number, iteration: number, iterationsPerEpoch: number): number {
  if (!(iterationsPerEpoch > 0)) throw new RangeError(`fractionalEpoch: iterationsPerEpoch must be positive, got ${iterationsPerEpoch}`);
  return epoch + iteration / iterationsPerEpoch;
}

/**
 * The linear scaling rule: absolute lr = base lr × effective batch / 256 (MAE's `args.lr = args.blr *
 * eff_batch_size / 256`; the effective batch includes gradient accumulation and all workers).
 */
export function scaleLr(baseLr: number, effectiveBatch: number, referenceBatch = 256): number {
  if (!(effectiveBatch > 0)) throw new RangeError(`scaleLr: batch must be positive, got ${effectiveBatch}`);
  return (baseLr * effectiveBatch) / referenceBatch;
}
