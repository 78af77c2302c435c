// SGD with momentum, dampening, Nesterov momentum and (coupled) weight decay: PyTorch's
// torch.optim.SGD, one native multi-tensor kernel call per group.
import * as torch from '../torch';
import { native } from '../torch/native';
import { BaseHyper, Optimizer, ParamGroup, ParamWithGrad, ParamsInput } from './optimizer';
import { checkOptionNames, isFiniteNonNegative, withoutUndefined } from './util';

/** The hyper-parameters of {@link SGD}, per group: PyTorch's lr, momentum, dampening, weight_decay (as weightDecay) and nesterov. */
export interface SGDHyper extends BaseHyper {
  momentum: number;
  dampening: number;
  nesterov: boolean;
}

/**
 * SGD's defaults for what a group or the constructor leaves out: lr 1e-3 (as PyTorch ≥ 2.2; older
 * PyTorch requires an lr), no momentum, dampening, weight decay or Nesterov.
 */
export const SGD_DEFAULTS: SGDHyper = { lr: 1e-3, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false };

/**
 * Per parameter with a gradient:
 *   d ← g + wd·p;  if momentum: buf ← d on the first update, else buf ← momentum·buf + (1−dampening)·d;
 *   d ← nesterov ? d + momentum·buf : buf;  p ← p − lr·d
 * State: 'momentum_buffer' (only when momentum ≠ 0).
 * The lr defaults to 1e-3 ({@link SGD_DEFAULTS}), as in PyTorch ≥ 2.2; older PyTorch requires an explicit lr.
 */
export class SGD extends Optimizer<SGDHyper> {
  constructor(params: ParamsInput, opts: Partial<SGDHyper> = {}) {
    checkOptionNames('SGD', opts, SGD_DEFAULTS);
    super('SGD', params, { ...SGD_DEFAULTS, ...withoutUndefined(opts) });
  }

  protected stateKeys(group: ParamGroup<SGDHyper>): string[] {
    return group.momentum !== 0 ? ['momentum_buffer'] : [];
  }

  /**
   * A parameter keeps its buffer when momentum is switched off (used again, as in PyTorch, if it comes back),
   * and one updated before momentum was switched on has none until its next update.
   */
  protected override optionalStateKeys(): string[] {
    return ['momentum_buffer'];
  }

  protected override validate(g: ParamGroup<SGDHyper>): void {
    super.validate(g);
    if (!isFiniteNonNegative(g.momentum)) throw new RangeError(`SGD: invalid momentum ${g.momentum}`);
    if (typeof g.dampening !== 'number' || !Number.isFinite(g.dampening)) throw new RangeError(`SGD: invalid dampening ${g.dampening}`);
    if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0)) {
      throw new RangeError('SGD: Nesterov momentum requires a momentum and zero dampening');
    }
  }

  protected updateGroup(group: ParamGroup<SGDHyper>, items: ParamWithGrad[]): void {
    const { lr, momentum, dampening, weightDecay, nesterov } = group;
    const call = (list: ParamWithGrad[], bufs: torch.Tensor[] | null, first: boolean): void => {
      if (!list.length) return;
      native.sgdStep(
        list.map((it) => it.param.h),
        list.map((it) => it.grad.h),
        bufs ? bufs.map((b) => b.h) : null,
        lr,
        momentum,
        dampening,
        weightDecay,
        nesterov,
        first,
      );
    };
    if (momentum === 0) {
      for (const it of items) this.stateOf(group, it.name, it.param).step += 1;
      call(items, null, false);
      return;
    }
    // A buffer is initialised to the first update direction (PyTorch: buf = clone(d)), so first
    // updates and later ones go in separate calls.
    const first: ParamWithGrad[] = [];
    const later: ParamWithGrad[] = [];
    for (const it of items) {
      const fresh = !this.state.get(it.name)?.tensors.has('momentum_buffer');
      const st = this.stateOf(group, it.name, it.param);
      if (!st.tensors.has('momentum_buffer')) st.tensors.set('momentum_buffer', torch.keep(torch.zerosLike(it.param)));
      (fresh ? first : later).push(it);
      st.step += 1;
    }
    const buf = (it: ParamWithGrad): torch.Tensor => this.state.get(it.name)!.tensors.get('momentum_buffer')!;
    call(first, first.map(buf), true);
    call(later, later.map(buf), false);
  }
}
