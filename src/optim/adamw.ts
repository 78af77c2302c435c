// AdamW (Loshchilov & Hutter): PyTorch's torch.optim.AdamW with amsgrad off, one native multi-tensor
// kernel call per group (and per distinct step count).
import { native } from '../torch/native';
import { BaseHyper, Optimizer, ParamGroup, ParamWithGrad, ParamsInput } from './optimizer';
import { checkOptionNames, isFiniteNonNegative, withoutUndefined } from './util';

/** The hyper-parameters of {@link AdamW}, per group: PyTorch's lr, betas, eps and weight_decay (as weightDecay). */
export interface AdamWHyper extends BaseHyper {
  betas: [number, number];
  eps: number;
}

/** AdamW's defaults for what a group or the constructor leaves out; the same as torch.optim.AdamW's (lr 1e-3, weight decay 1e-2). */
export const ADAMW_DEFAULTS: AdamWHyper = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 };

/**
 * AdamW, Adam with decoupled weight decay: the update of torch.optim.AdamW. Per parameter with a gradient,
 * at step t (counted per parameter):
 *   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
 *   p ← p − lr/(1−β1^t) · m / (√v/√(1−β2^t) + eps)
 * State: 'exp_avg' (m) and 'exp_avg_sq' (v).
 */
export class AdamW extends Optimizer<AdamWHyper> {
  constructor(params: ParamsInput, opts: Partial<AdamWHyper> = {}) {
    checkOptionNames('AdamW', opts, ADAMW_DEFAULTS);
    super('AdamW', params, { ...ADAMW_DEFAULTS, ...withoutUndefined(opts) });
  }

  protected stateKeys(): string[] {
    return ['exp_avg', 'exp_avg_sq'];
  }

  protected override validate(g: ParamGroup<AdamWHyper>): void {
    super.validate(g);
    if (!isFiniteNonNegative(g.eps)) throw new RangeError(`AdamW: invalid epsilon ${g.eps}`);
    // (a lone number, e.g. a state dict's betas: 0.9, failed the destructuring below with a bare TypeError)
    if (!Array.isArray(g.betas) || g.betas.length !== 2) throw new RangeError(`AdamW: betas must be a pair [beta1, beta2], got ${JSON.stringify(g.betas)}`);
    const [b1, b2] = g.betas;
    if (!(isFiniteNonNegative(b1) && b1 < 1)) throw new RangeError(`AdamW: invalid beta1 ${b1}`);
    if (!(isFiniteNonNegative(b2) && b2 < 1)) throw new RangeError(`AdamW: invalid beta2 ${b2}`);
  }

  protected updateGroup(group: ParamGroup<AdamWHyper>, items: ParamWithGrad[]): void {
    // Parameters skipped on some steps have fewer updates; the kernel takes one step count per call.
    const byStep = new Map<number, ParamWithGrad[]>();
    for (const it of items) {
      const st = this.stateOf(group, it.name, it.param);
      st.step += 1;
      const list = byStep.get(st.step);
      if (list) list.push(it);
      else byStep.set(st.step, [it]);
    }
    const [b1, b2] = group.betas;
    for (const [step, list] of byStep) {
      const states = list.map((it) => this.state.get(it.name)!.tensors);
      native.adamwStep(
        list.map((it) => it.param.h),
        list.map((it) => it.grad.h),
        states.map((s) => s.get('exp_avg')!.h),
        states.map((s) => s.get('exp_avg_sq')!.h),
        group.lr,
        b1,
        b2,
        group.eps,
        group.weightDecay,
        step,
      );
    }
  }
}
