// The optimiser base class: parameter groups, lazily created per-parameter state keyed by parameter
// name, zeroGrad, and state dicts that split into tensors (for safetensors) and JSON metadata.
import * as torch from '../torch';
import { Tensor } from '../torch';
import { describeValue } from '../torch/errors';
import { checkOptionNames, isFiniteNonNegative, withoutUndefined } from './util';

/** Named parameters, as a module's namedParameters() yields them. */
export type NamedParams = Iterable<[string, Tensor]>;

/** One parameter group as the caller describes it; missing hyper-parameters take the optimiser's defaults. */
export interface ParamGroupSpec {
  params: NamedParams;
  lr?: number;
  weightDecay?: number;
  /** Layer-wise lr decay factor: setLr(lr) sets this group's lr to lr × lrScale (MAE's `lr_scale`). Default 1. */
  lrScale?: number;
  /** A label for logs (e.g. 'layer_3_decay'); not used by the optimiser. */
  name?: string;
  [hyper: string]: unknown;
}

/** What an optimiser constructor accepts: named parameters (one group) or a list of groups. */
export type ParamsInput = NamedParams | ParamGroupSpec[];

/** Hyper-parameters every optimiser has. */
export interface BaseHyper {
  lr: number;
  weightDecay: number;
}

/** A live parameter group: its parameters and hyper-parameters (mutable: the trainer sets `lr`). */
export type ParamGroup<H extends BaseHyper> = H & {
  params: Array<[string, Tensor]>;
  lrScale: number;
  name?: string;
};

/** Per-parameter optimiser state: how many updates the parameter has had and its state tensors. */
export interface ParamState {
  step: number;
  tensors: Map<string, Tensor>;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** The JSON half of a state dict. */
export interface OptimizerMeta {
  format: 'semaim.optim/1';
  /** The optimiser class name ('AdamW', 'SGD', 'LARS'). */
  type: string;
  /** Per group: the parameter names in order, lrScale, name and every hyper-parameter. */
  groups: Array<{ params: string[]; [hyper: string]: Json }>;
  /** Per parameter that has state: its step count. */
  state: Record<string, { step: number }>;
}

/**
 * A state dict: `tensors` maps '<state key>.<parameter name>' (e.g. 'exp_avg.blocks.0.attn.qkv.weight')
 * to a tensor; `meta` is JSON-able.
 */
export interface OptimizerStateDict {
  tensors: Map<string, Tensor>;
  meta: OptimizerMeta;
}

/** One parameter of a group together with its gradient, as step() sees it. */
export interface ParamWithGrad {
  name: string;
  param: Tensor;
  grad: Tensor;
}

function isGroupList(x: ParamsInput): x is ParamGroupSpec[] {
  if (!Array.isArray(x) || x.length === 0) return false;
  const first = x[0] as unknown;
  return first !== null && typeof first === 'object' && !Array.isArray(first) && 'params' in (first as object);
}

function isIterable(x: unknown): x is Iterable<unknown> {
  return typeof (x as { [Symbol.iterator]?: unknown } | null | undefined)?.[Symbol.iterator] === 'function';
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function listDiff(label: string, expected: string[], got: string[]): string {
  const e = new Set(expected);
  const g = new Set(got);
  const missing = expected.filter((n) => !g.has(n));
  const unexpected = got.filter((n) => !e.has(n));
  const parts: string[] = [];
  if (missing.length) parts.push(`missing in the state dict: ${missing.join(', ')}`);
  if (unexpected.length) parts.push(`not in the optimiser: ${unexpected.join(', ')}`);
  if (!parts.length) parts.push(`same names in a different order (optimiser: ${expected.join(', ')}; state dict: ${got.join(', ')})`);
  return `${label}: ${parts.join('; ')}`;
}

/**
 * Base class of the optimisers. Subclasses give their defaults, their state keys and update().
 *
 * Semantics shared by all: step() runs without autograd and frees every temporary; parameters whose
 * grad is null are skipped (no state change); `group.lr` is the learning rate used as is (setLr applies
 * lrScale, as MAE's adjust_learning_rate does).
 */
export abstract class Optimizer<H extends BaseHyper> {
  readonly paramGroups: Array<ParamGroup<H>> = [];
  protected readonly state = new Map<string, ParamState>();
  private readonly byName = new Map<string, Tensor>();

  /**
   * @param typeName 'AdamW', 'SGD', 'LARS': stored in state dicts and checked on load.
   * @param defaults hyper-parameters for groups that do not set them.
   */
  protected constructor(
    readonly typeName: string,
    params: ParamsInput,
    readonly defaults: H,
  ) {
    const specs: ParamGroupSpec[] = isGroupList(params) ? params : [{ params: params as NamedParams }];
    for (const spec of specs) this.addParamGroup(spec);
    if (this.byName.size === 0) throw new Error(`${this.typeName}: got an empty parameter list`);
  }

  /** The names of the state tensors a parameter of this group has (e.g. ['exp_avg', 'exp_avg_sq']). */
  protected abstract stateKeys(group: ParamGroup<H>): string[];

  /**
   * State tensors a parameter of this group may hold or lack, whatever stateKeys says, after a setting changed
   * (SGD's buffer, kept when momentum is switched off, made only at the next update when it is switched on):
   * loadStateDict takes them when a state dict has them and does not ask for them when it has not.
   */
  protected optionalStateKeys(_group: ParamGroup<H>): string[] {
    return [];
  }

  /** Checks a group's hyper-parameters; throws RangeError with a clear message. */
  protected validate(group: ParamGroup<H>): void {
    if (!isFiniteNonNegative(group.lr)) throw new RangeError(`${this.typeName}: invalid learning rate ${group.lr}`);
    if (!isFiniteNonNegative(group.weightDecay)) throw new RangeError(`${this.typeName}: invalid weight decay ${group.weightDecay}`);
    if (!isFiniteNonNegative(group.lrScale)) throw new RangeError(`${this.typeName}: invalid lrScale ${group.lrScale}`);
  }

  /** Updates the parameters of one group (called inside noGrad and a scope). */
  protected abstract updateGroup(group: ParamGroup<H>, items: ParamWithGrad[]): void;

  /**
   * Adds a parameter group (hyper-parameters it omits come from the defaults). A name or a tensor
   * already in the optimiser is refused: a tensor under two names would be updated twice per step.
   */
  addParamGroup(spec: ParamGroupSpec): void {
    if (!isIterable(spec.params)) {
      throw new TypeError(`${this.typeName}: pass [name, tensor] pairs such as module.namedParameters(), not ${describeValue(spec.params)}`);
    }
    const params = new Map<string, Tensor>();
    const nameOf = new Map<Tensor, string>();
    for (const [name, p] of this.byName) nameOf.set(p, name);
    for (const entry of spec.params) {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || !(entry[1] instanceof Tensor)) {
        throw new TypeError(`${this.typeName}: parameters must be [name, tensor] pairs (e.g. model.namedParameters())`);
      }
      const [name, p] = entry;
      if (this.byName.has(name) || params.has(name)) throw new Error(`${this.typeName}: parameter '${name}' appears in more than one place`);
      const other = nameOf.get(p);
      if (other !== undefined) {
        throw new Error(`${this.typeName}: parameter '${name}' is the same tensor as '${other}' (some parameters appear in more than one place)`);
      }
      if (p.isDisposed) throw new Error(`${this.typeName}: parameter '${name}' was disposed`);
      nameOf.set(p, name);
      params.set(name, p);
    }
    const { params: _ignored, ...rest } = spec;
    // as the constructor's options: PyTorch's weight_decay (or MAE's lr_scale) beside the real key was kept as
    // an unused key, and the group trained with the default weight decay (or no layer-wise lr decay)
    checkOptionNames(`${this.typeName}: parameter group ${this.paramGroups.length}`, rest, this.defaults, ['lrScale', 'name']);
    // array-valued defaults (AdamW's betas) copied: a group's, changed in place, must not change the defaults or other groups
    const defaults = Object.fromEntries(Object.entries(this.defaults).map(([k, v]) => [k, Array.isArray(v) ? [...v] : v]));
    const group = { ...defaults, lrScale: 1, ...withoutUndefined(rest), params: [...params] } as ParamGroup<H>;
    this.validate(group);
    for (const [name, p] of params) this.byName.set(name, p);
    this.paramGroups.push(group);
  }

  /** Every parameter, in group order. */
  namedParameters(): Array<[string, Tensor]> {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /** Every parameter tensor, in group order (for clipGradNorm). */
  parameters(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params.map(([, p]) => p));
  }

  /** Sets every group's lr to lr × group.lrScale (MAE's adjust_learning_rate); lr must be a finite number ≥ 0. */
  setLr(lr: number): void {
    if (!isFiniteNonNegative(lr)) throw new RangeError(`${this.typeName}.setLr: invalid learning rate ${lr}`);
    for (const g of this.paramGroups) g.lr = lr * g.lrScale;
  }

  /** Clears the gradients: sets them to null (default) or, with setToNone=false, zeroes them in place. */
  zeroGrad(setToNone = true): void {
    for (const [, p] of this.namedParameters()) {
      if (setToNone) {
        p.grad = null;
      } else {
        const g = p.grad;
        if (g) {
          try {
            g.zero_();
          } finally {
            g.dispose();
          }
        }
      }
    }
  }

  /** One update of every parameter that has a gradient. */
  step(): void {
    torch.noGrad(() =>
      torch.scope(() => {
        for (const group of this.paramGroups) {
          const items: ParamWithGrad[] = [];
          for (const [name, param] of group.params) {
            const grad = param.grad; // a fresh wrapper, freed by the scope
            if (grad !== null) items.push({ name, param, grad });
          }
          if (items.length) this.updateGroup(group, items);
        }
      }),
    );
  }

  /** The state of a parameter, creating zero-filled state tensors (kept out of scopes) on first use. */
  protected stateOf(group: ParamGroup<H>, name: string, param: Tensor): ParamState {
    let st = this.state.get(name);
    if (!st) {
      st = { step: 0, tensors: new Map() };
      for (const key of this.stateKeys(group)) st.tensors.set(key, torch.keep(torch.zerosLike(param)));
      this.state.set(name, st);
    }
    return st;
  }

  /** Bytes of the state tensors once every parameter has had an update (what a checkpoint holds of them). */
  stateBytes(): number {
    let n = 0;
    for (const g of this.paramGroups) for (const [, p] of g.params) n += this.stateKeys(g).length * p.numel * torch.dtypeBytes(p.dtype);
    return n;
  }

  /** The state of a parameter, or undefined before its first update. */
  getState(name: string): ParamState | undefined {
    return this.state.get(name);
  }

  /**
   * The optimiser state. The tensors are new wrappers that share storage with the live state (like
   * PyTorch's state_dict); the caller owns and disposes them. Pass clone: true for a snapshot that
   * later steps do not change.
   */
  stateDict(opts: { clone?: boolean } = {}): OptimizerStateDict {
    const tensors = new Map<string, Tensor>();
    const state: Record<string, { step: number }> = {};
    for (const [name] of this.namedParameters()) {
      const st = this.state.get(name);
      if (!st) continue;
      state[name] = { step: st.step };
      for (const [key, t] of st.tensors) tensors.set(`${key}.${name}`, opts.clone ? t.clone() : t.detach());
    }
    const groups = this.paramGroups.map((g) => {
      const { params, ...hyper } = g;
      return { ...(JSON.parse(JSON.stringify(hyper)) as Record<string, Json>), params: params.map(([n]) => n) };
    });
    return { tensors, meta: { format: 'semaim.optim/1', type: this.typeName, groups, state } };
  }

  /**
   * Restores a state dict: the groups must list the same parameter names in the same order, every
   * state tensor must belong to a known parameter and state key and have the parameter's shape.
   * Everything is checked before anything changes. The tensors are copied (to each parameter's device
   * and dtype); the caller still owns the dict. Group hyper-parameters are restored too (as PyTorch).
   */
  loadStateDict(sd: OptimizerStateDict): void {
    const { meta, tensors } = sd;
    const where = `${this.typeName}.loadStateDict`;
    if (!meta || meta.format !== 'semaim.optim/1') throw new Error(`${where}: not a semaim optimiser state dict (format ${String(meta?.format)})`);
    if (meta.type !== this.typeName) throw new Error(`${where}: the state dict is for ${meta.type}, not ${this.typeName}`);
    // (a damaged or hand-made meta failed below with a bare TypeError that named neither the dict nor what it lacked)
    if (!Array.isArray(meta.groups) || !meta.groups.every(isRecord)) throw new Error(`${where}: its meta.groups is not a list of parameter groups`);
    if (!isRecord(meta.state)) throw new Error(`${where}: its meta.state is not an object of per-parameter steps (${describeValue(meta.state)})`);
    if (!(tensors instanceof Map)) throw new Error(`${where}: its tensors are not a Map of state tensors (${describeValue(tensors)})`);
    if (meta.groups.length !== this.paramGroups.length) {
      throw new Error(`${where}: the state dict has ${meta.groups.length} parameter groups, the optimiser has ${this.paramGroups.length}`);
    }
    meta.groups.forEach((mg, i) => {
      if (!Array.isArray(mg.params)) throw new Error(`${where}: parameter group ${i} lists no parameter names`);
      const names = this.paramGroups[i].params.map(([n]) => n);
      if (mg.params.length !== names.length || mg.params.some((n, k) => n !== names[k])) {
        throw new Error(listDiff(`${where}: parameter group ${i} differs`, names, mg.params));
      }
    });
    const groupOf = new Map<string, ParamGroup<H>>();
    for (const g of this.paramGroups) for (const [n] of g.params) groupOf.set(n, g);
    // Hyper-parameters first (state keys may depend on them, e.g. SGD's momentum).
    const hypers = meta.groups.map((mg, i) => {
      const { params: _names, ...hyper } = mg;
      const merged = { ...this.paramGroups[i], ...(hyper as object) } as ParamGroup<H>;
      this.validate(merged);
      return hyper;
    });
    const expected = new Map<string, { name: string; key: string; optional?: boolean }>();
    const problems: string[] = [];
    for (const [name, s] of Object.entries(meta.state)) {
      const g = groupOf.get(name);
      if (!g) {
        problems.push(`state for unknown parameter '${name}'`);
        continue;
      }
      if (!isRecord(s)) {
        problems.push(`'${name}': its state is ${describeValue(s)}, not { step }`);
        continue;
      }
      if (!Number.isInteger(s.step) || s.step < 0) problems.push(`'${name}': invalid step ${s.step}`);
      const merged = { ...g, ...(hypers[this.paramGroups.indexOf(g)] as object) } as ParamGroup<H>;
      for (const key of this.stateKeys(merged)) expected.set(`${key}.${name}`, { name, key });
      for (const key of this.optionalStateKeys(merged)) expected.set(`${key}.${name}`, { name, key, optional: true });
    }
    for (const [k, e] of expected) if (!e.optional && !tensors.has(k)) problems.push(`missing tensor '${k}'`);
    for (const [k, t] of tensors) {
      const e = expected.get(k);
      if (!e) {
        problems.push(`unexpected tensor '${k}'`);
        continue;
      }
      const p = this.byName.get(e.name)!;
      if (t.isDisposed) problems.push(`tensor '${k}' was disposed`);
      else if (!sameShape(t.shape, p.shape)) problems.push(`tensor '${k}' has shape [${t.shape}], parameter has [${p.shape}]`);
    }
    if (problems.length) throw new Error(`${where}: ${problems.join('; ')}`);

    hypers.forEach((h, i) => Object.assign(this.paramGroups[i], h));
    this.disposeState();
    for (const [name, s] of Object.entries(meta.state)) {
      const p = this.byName.get(name)!;
      const st: ParamState = { step: s.step, tensors: new Map() };
      const g = groupOf.get(name)!;
      for (const key of new Set([...this.stateKeys(g), ...this.optionalStateKeys(g)])) {
        const src = tensors.get(`${key}.${name}`);
        if (!src) continue; // (an optional one the dict does not have)
        st.tensors.set(key, torch.keep(torch.noGrad(() => src.to({ dtype: p.dtype, device: p.device, copy: true }))));
      }
      this.state.set(name, st);
    }
  }

  /** Frees the state tensors (the optimiser can still step: state starts again from zero). */
  dispose(): void {
    this.disposeState();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private disposeState(): void {
    for (const st of this.state.values()) for (const t of st.tensors.values()) t.dispose();
    this.state.clear();
  }
}
