// Exponential moving average of a model's parameters (a shadow copy, updated after each step).
import * as torch from '../torch';
import { Tensor } from '../torch';
import { Module } from '../nn';

export class EMA<M extends Module> {
  private readonly pairs: [Tensor, Tensor][];
  /**
   * `decayAt` (optional) gives the decay for each epoch, applied by startEpoch; without it `decay` stays
   * as given.
   */
  constructor(
    readonly shadow: M,
    source: Module,
    public decay: number,
    private readonly decayAt?: (epoch: number) => number,
  ) {
    const src = new Map(source.namedParameters());
    this.pairs = [...shadow.namedParameters()].map(([name, t]) => {
      const s = src.get(name);
      if (!s) throw new Error(`EMA: source has no parameter '${name}'`);
      t.requiresGrad = false;
      return [t, s];
    });
    this.copyFrom();
    shadow.eval();
  }

  /** Sets the shadow equal to the source. */
  copyFrom(): void {
    torch.noGrad(() => {
      for (const [e, s] of this.pairs) e.copy_(s);
    });
  }

  /** Sets this epoch's decay (epochs count from 0), when the EMA has a schedule. */
  startEpoch(epoch: number): void {
    if (this.decayAt) this.decay = this.decayAt(epoch);
  }

  /** shadow ← decay·shadow + (1 − decay)·source */
  update(): void {
    torch.noGrad(() => {
      for (const [e, s] of this.pairs) e.lerp_(s, 1 - this.decay);
    });
  }

  /** Shadow tensors under `ema.<name>` for checkpoints. */
  stateTensors(): Map<string, Tensor> {
    return new Map([...this.shadow.namedParameters()].map(([n, t]) => [`ema.${n}`, t]));
  }

  /**
   * Loads the shadow from a checkpoint's `ema.<name>` tensors; throws, changing nothing, when one of the
   * shadow's parameters has none (the shadow would keep the weights it was made with, not the run's average).
   */
  loadStateTensors(tensors: Map<string, Tensor>): void {
    const own = new Map<string, Tensor>();
    for (const [k, v] of tensors) if (k.startsWith('ema.')) own.set(k.slice(4), v);
    const missing = [...this.shadow.namedParameters()].map(([name]) => name).filter((name) => !own.has(name));
    if (missing.length)
      throw new Error(
        `the checkpoint has no EMA weights for ${missing.length === 1 ? 'a parameter' : `${missing.length} parameters`} (ema.${missing.join(', ema.').slice(0, 200)}): it was not written by a run with --ema`,
      );
    this.shadow.loadStateDict(new Map([...this.shadow.stateDict()].map(([k, v]) => [k, own.get(k) ?? v])));
  }
}

/**
 * The authors' pre-training EMA decay at epoch `epoch` (from 0): `start` rising linearly to 0.9999 over
 * the first 100 epochs, 0.9999 after ([A] engines/engine_pretrain.py:131-134, where start is 0.999).
 */
export function authorsEmaDecay(start: number, epoch: number): number {
  return epoch < 100 ? start + (epoch / 100) * (0.9999 - start) : 0.9999;
}
