// Dynamic loss scaling for float16 training: PyTorch's torch.cuda.amp.GradScaler.
import * as torch from '../torch';
import type { Tensor } from '../torch';
import { native } from '../torch/native';
import { wrap } from '../torch/tensor';

/** What the scaler needs from an optimiser (every Optimizer fits). */
export interface ScalableOptimizer {
  step(): void;
  parameters(): Tensor[];
}

/**
 * Options of {@link GradScaler}, with PyTorch's defaults: initScale 2^16, growthFactor 2, backoffFactor
 * 0.5, growthInterval 2000 (clean steps before the scale grows), enabled true.
 */
export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  /** false: scale() returns the loss unchanged and step() just steps (e.g. float32 or bfloat16 runs). */
  enabled?: boolean;
}

/** The scaler's state dict (JSON-able). */
export interface GradScalerState {
  scale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  growthTracker: number;
}

type Stage = 'ready' | 'unscaled' | 'stepped';

interface PerOptimizer {
  stage: Stage;
  /** Global norm of the scaled gradients, pending (not yet read); non-finite iff a gradient is. */
  norm: Tensor | null;
  /** The found-inf verdict once read. */
  foundInf: boolean | null;
}

const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * Dynamic loss scaling for float16 mixed precision, as torch.cuda.amp.GradScaler.
 *
 * Usage per iteration (as PyTorch):
 *   scaler.scale(loss).backward();
 *   scaler.unscale_(opt); clipGradNorm(...)   // optional, before step
 *   scaler.step(opt);                         // skipped when a gradient is inf/nan
 *   scaler.update();                          // backoff on inf/nan, growth after growthInterval clean steps
 *
 * The scale is a float32 value kept on the host, so scale() and unscale_() never synchronise;
 * step() reads one found-inf value from the device (PyTorch 1.13 does the same). The inf/nan check
 * tests whether the global norm of the scaled gradients is finite (one multi-tensor kernel); a
 * finite gradient whose squared sum overflows counts as inf too, which only happens when the scale
 * is far too large anyway. Float16 gradients are refused, as in PyTorch (keep float32 master
 * parameters and use autocast).
 */
export class GradScaler {
  private scaleValue: number;
  private growthTracker = 0;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  readonly enabled: boolean;
  private readonly perOptimizer = new Map<ScalableOptimizer, PerOptimizer>();

  constructor(opts: GradScalerOptions = {}) {
    this.enabled = opts.enabled ?? true;
    this.scaleValue = Math.fround(opts.initScale ?? 2 ** 16);
    this.growthFactor = opts.growthFactor ?? 2.0;
    this.backoffFactor = opts.backoffFactor ?? 0.5;
    this.growthInterval = opts.growthInterval ?? 2000;
    if (!(this.scaleValue > 0) || !Number.isFinite(this.scaleValue)) throw new RangeError(`GradScaler: invalid initScale ${opts.initScale}`);
    if (!(this.growthFactor > 1)) throw new RangeError('GradScaler: the growth factor must be > 1.0.');
    if (!(this.backoffFactor < 1 && this.backoffFactor > 0)) throw new RangeError('GradScaler: the backoff factor must be in (0, 1).');
    if (!(Number.isInteger(this.growthInterval) && this.growthInterval > 0)) throw new RangeError('GradScaler: growthInterval must be a positive integer.');
  }

  /** The current scale (1 when disabled). */
  getScale(): number {
    return this.enabled ? this.scaleValue : 1;
  }

  /** Clean steps since the last growth or backoff. */
  getGrowthTracker(): number {
    return this.growthTracker;
  }

  /** loss × scale as a new tensor (float16/bfloat16 losses are scaled in float32); the loss itself when disabled. */
  scale(loss: Tensor): Tensor {
    if (!this.enabled) return loss;
    if (loss.dtype === 'float16' || loss.dtype === 'bfloat16') {
      const up = loss.float();
      try {
        return up.mul(this.scaleValue);
      } finally {
        up.dispose();
      }
    }
    return loss.mul(this.scaleValue);
  }

  /** Divides the optimiser's gradients by the scale in place and records whether any is inf/nan. */
  unscale_(opt: ScalableOptimizer): void {
    if (!this.enabled) return;
    const s = this.stateOf(opt);
    if (s.stage === 'unscaled') throw new Error('GradScaler: unscale_() has already been called on this optimizer since the last update().');
    if (s.stage === 'stepped') throw new Error('GradScaler: unscale_() is being called after step().');
    const grads: Tensor[] = [];
    try {
      for (const p of opt.parameters()) {
        const g = p.grad;
        if (g === null) continue;
        grads.push(g);
        if (g.dtype === 'float16') throw new Error('GradScaler: Attempting to unscale FP16 gradients.');
      }
      const inv = Math.fround(1 / this.scaleValue);
      // No gradient, no inf check recorded (PyTorch's found_inf_per_device stays empty): step() refuses it.
      if (grads.length)
        torch.noGrad(() => {
          s.norm = torch.keep(
            wrap(
              native.clipGradNorm(
                grads.map((g) => g.h),
                Infinity,
              ),
            ),
          );
          native.foreachMul_(
            grads.map((g) => g.h),
            inv,
          );
        });
    } finally {
      for (const g of grads) g.dispose();
    }
    s.stage = 'unscaled';
  }

  /**
   * Unscales (unless unscale_ ran) and steps unless a gradient is inf/nan. Returns whether it stepped. Throws, as
   * PyTorch, when none of the optimiser's parameters has a gradient (no inf check was recorded).
   */
  step(opt: ScalableOptimizer): boolean {
    if (!this.enabled) {
      opt.step();
      return true;
    }
    const s = this.stateOf(opt);
    if (s.stage === 'stepped') throw new Error('GradScaler: step() has already been called since the last update().');
    if (s.stage === 'ready') this.unscale_(opt);
    // As PyTorch's assertion: stepping an optimiser none of whose parameters has a gradient did nothing, and
    // update() then counted a clean iteration (a forgotten backward() went unnoticed, and grew the scale).
    if (s.norm === null && s.foundInf === null)
      throw new Error('GradScaler: no inf checks were recorded for this optimizer: none of its parameters has a gradient (was backward() called?)');
    const found = resolve(s);
    s.stage = 'stepped';
    if (!found) opt.step();
    return !found;
  }

  /**
   * Adjusts the scale after an iteration: × backoffFactor if any optimiser saw inf/nan, × growthFactor
   * after growthInterval consecutive clean iterations (unless that overflows float32). With newScale,
   * sets the scale instead.
   */
  update(newScale?: number): void {
    if (!this.enabled) return;
    try {
      if (newScale !== undefined) {
        if (!(newScale > 0) || !Number.isFinite(newScale)) throw new RangeError(`GradScaler.update: invalid scale ${newScale}`);
        this.scaleValue = Math.fround(newScale);
        return;
      }
      const checked = [...this.perOptimizer.values()].filter((s) => s.norm !== null || s.foundInf !== null);
      if (!checked.length) throw new Error('GradScaler.update: no inf checks were recorded prior to update().');
      let found = false;
      for (const s of checked) found = resolve(s) || found;
      if (found) {
        this.scaleValue = Math.fround(this.scaleValue * this.backoffFactor);
        this.growthTracker = 0;
      } else if (this.growthTracker + 1 === this.growthInterval) {
        const grown = Math.fround(this.scaleValue * this.growthFactor);
        if (Number.isFinite(grown) && grown <= FLOAT32_MAX) this.scaleValue = grown;
        this.growthTracker = 0;
      } else {
        this.growthTracker += 1;
      }
    } finally {
      this.reset();
    }
  }

  stateDict(): GradScalerState {
    return {
      scale: this.scaleValue,
      growthFactor: this.growthFactor,
      backoffFactor: this.backoffFactor,
      growthInterval: this.growthInterval,
      growthTracker: this.growthTracker,
    };
  }

  /** Restores scale and growth tracker; the factors and interval must match this scaler's. */
  loadStateDict(s: GradScalerState): void {
    if (!s || typeof s.scale !== 'number' || typeof s.growthTracker !== 'number') {
      throw new Error('GradScaler.loadStateDict: not a GradScaler state dict');
    }
    const diffs = (['growthFactor', 'backoffFactor', 'growthInterval'] as const)
      .filter((k) => s[k] !== this[k])
      .map((k) => `${k} ${s[k]} (state dict) vs ${this[k]}`);
    if (diffs.length) throw new Error(`GradScaler.loadStateDict: options differ: ${diffs.join(', ')}`);
    if (!(s.scale > 0) || !Number.isFinite(s.scale)) throw new RangeError(`GradScaler.loadStateDict: invalid scale ${s.scale}`);
    // (one at or past growthInterval never equals growthInterval − 1 again: the scale never grew after it)
    if (!Number.isInteger(s.growthTracker) || s.growthTracker < 0 || s.growthTracker >= this.growthInterval)
      throw new RangeError(`GradScaler.loadStateDict: invalid growthTracker ${s.growthTracker} (must be an integer in 0..${this.growthInterval - 1})`);
    this.scaleValue = Math.fround(s.scale);
    this.growthTracker = s.growthTracker;
  }

  /** Frees pending found-inf tensors. */
  dispose(): void {
    this.reset();
  }

  private stateOf(opt: ScalableOptimizer): PerOptimizer {
    let s = this.perOptimizer.get(opt);
    if (!s) {
      s = { stage: 'ready', norm: null, foundInf: null };
      this.perOptimizer.set(opt, s);
    }
    return s;
  }

  private reset(): void {
    for (const s of this.perOptimizer.values()) s.norm?.dispose();
    this.perOptimizer.clear();
  }
}

function resolve(s: PerOptimizer): boolean {
  if (s.foundInf === null) {
    s.foundInf = s.norm === null ? false : !Number.isFinite(s.norm.item());
    s.norm?.dispose();
    s.norm = null;
  }
  return s.foundInf;
}
