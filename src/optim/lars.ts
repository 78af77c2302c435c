// LARS as in MAE's util/lars.py (used there for linear probing), with an optional exclusion set.
import * as torch from '../torch';
import { BaseHyper, Optimizer, ParamGroup, ParamWithGrad, ParamsInput } from './optimizer';
import { checkOptionNames, isFiniteNonNegative, withoutUndefined } from './util';

/** The hyper-parameters of {@link LARS}, per group: lr, weightDecay, momentum and the trust coefficient (MAE's trust_coefficient). */
export interface LARSHyper extends BaseHyper {
  momentum: number;
  /** η in the trust ratio η·‖p‖/‖update‖. */
  trustCoefficient: number;
}

/** LARS's defaults, as MAE's LARS: lr 0 (set by the schedule), weight decay 0, momentum 0.9, trust coefficient 0.001. */
export const LARS_DEFAULTS: LARSHyper = { lr: 0, weightDecay: 0, momentum: 0.9, trustCoefficient: 0.001 };

/** What the {@link LARS} constructor takes: any {@link LARSHyper} (others from {@link LARS_DEFAULTS}) and an exclusion set. */
export interface LARSOptions extends Partial<LARSHyper> {
  /**
   * Parameter names (or a predicate) treated like 1-D parameters: no weight decay and no trust ratio,
   * only momentum. Not in MAE (where only ndim ≤ 1 is excluded); similar to SimCLR/BYOL's
   * "exclude bias and batch-norm from LARS adaptation".
   */
  exclude?: Iterable<string> | ((name: string, param: torch.Tensor) => boolean);
}

/**
 * MAE's LARS. For each parameter with a gradient g:
 *   if p.ndim > 1 and p is not excluded:
 *     d ← g + wd·p;  q ← η·‖p‖/‖d‖ (q ← 1 when ‖p‖ = 0 or ‖d‖ = 0);  d ← q·d
 *   else d ← g  (no weight decay, no trust ratio)
 *   mu ← momentum·mu + d  (mu starts at zero, no dampening);  p ← p − lr·mu
 * State: 'mu'. The trust ratio is computed on the device (no host sync).
 */
export class LARS extends Optimizer<LARSHyper> {
  private readonly excluded: (name: string, param: torch.Tensor) => boolean;

  constructor(params: ParamsInput, opts: LARSOptions = {}) {
    checkOptionNames('LARS', opts, LARS_DEFAULTS, ['exclude']);
    const { exclude, ...hyper } = opts;
    super('LARS', params, { ...LARS_DEFAULTS, ...withoutUndefined(hyper) });
    if (typeof exclude === 'function') {
      this.excluded = exclude;
    } else {
      const names = new Set(exclude ?? []);
      const known = new Set(this.namedParameters().map(([n]) => n));
      const unknown = [...names].filter((n) => !known.has(n));
      if (unknown.length) throw new Error(`LARS: excluded names are not parameters: ${unknown.join(', ')}`);
      this.excluded = (name) => names.has(name);
    }
  }

  protected stateKeys(): string[] {
    return ['mu'];
  }

  protected override validate(g: ParamGroup<LARSHyper>): void {
    super.validate(g);
    if (!isFiniteNonNegative(g.momentum)) throw new RangeError(`LARS: invalid momentum ${g.momentum}`);
    if (!isFiniteNonNegative(g.trustCoefficient)) throw new RangeError(`LARS: invalid trust coefficient ${g.trustCoefficient}`);
  }

  protected updateGroup(group: ParamGroup<LARSHyper>, items: ParamWithGrad[]): void {
    const { lr, weightDecay, momentum, trustCoefficient } = group;
    for (const { name, param, grad } of items) {
      const st = this.stateOf(group, name, param);
      st.step += 1;
      let d = grad;
      if (param.ndim > 1 && !this.excluded(name, param)) {
        d = grad.add(param, weightDecay);
        const pNorm = param.norm();
        const dNorm = d.norm();
        const ratio = pNorm.mul(trustCoefficient).div(dNorm);
        const q = torch.where(pNorm.gt(0), torch.where(dNorm.gt(0), ratio, 1), 1);
        d = d.mul(q);
      }
      const mu = st.tensors.get('mu')!;
      mu.mul_(momentum).add_(d);
      param.add_(mu, -lr);
    }
  }
}
