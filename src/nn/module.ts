// Module: the base of every layer and model. Holds named parameters, buffers and sub-modules,
// walks them by dotted names (PyTorch's state-dict naming), and owns their lifetimes.
import * as torch from '../torch';
import { DType, Tensor } from '../torch';
import { describeValue } from '../torch/errors';

/**
 * Tensors by dotted name (`blocks.3.attn.qkv.weight`), as {@link Module.stateDict} gives and
 * {@link Module.loadStateDict} takes; a Map where PyTorch has an OrderedDict.
 */
export type StateDict = Map<string, Tensor>;

/** Weights that do not fit a module (missing, unexpected, mis-shaped or integer-valued tensors); code 'ERR_CHECKPOINT_MISMATCH', as a checkpoint whose tensors do not fit its config. */
export class StateDictError extends Error {
  readonly code = 'ERR_CHECKPOINT_MISMATCH';
  constructor(
    message: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly shapeMismatch: { name: string; expected: number[]; got: number[] }[],
    /** Floating-point tensors offered integer or bool values (a quantised file without its scales, say). */
    readonly dtypeMismatch: { name: string; expected: DType; got: DType }[] = [],
  ) {
    super(message);
    this.name = 'StateDictError';
  }
}

/**
 * The base of every layer and model, like torch.nn.Module: named parameters, buffers and sub-modules,
 * train/eval mode, stateDict/loadStateDict with PyTorch's names, and ownership of the tensors
 * (dispose() frees them). Unlike PyTorch, members are registered with param/buffer/module in the
 * constructor, and there is no __call__: call forward() directly.
 */
export abstract class Module {
  training = true;
  private readonly params = new Map<string, Tensor>();
  private readonly buffers = new Map<string, { tensor: Tensor; persistent: boolean }>();
  private readonly children_ = new Map<string, Module>();

  /**
   * Registers a trainable tensor (it is kept out of every scope and gets requiresGrad, or with requiresGrad
   * false loses it, as nn.Parameter(t, requires_grad=False)) and returns it. A tensor computed from others
   * (`other.weight.clone()`) is registered detached, a leaf sharing its memory, as nn.Parameter makes it: use
   * the tensor returned.
   */
  protected param(name: string, t: Tensor, requiresGrad = true): Tensor {
    this.checkName(name);
    // a non-leaf never gets a .grad (an optimiser skipped it every step) and passed its gradient on to its source
    const p = t.isLeaf ? t : t.detach();
    torch.keep(p);
    // (a leaf that required grad kept it when registered frozen, and was trained)
    p.requiresGrad = requiresGrad;
    this.params.set(name, p);
    return p;
  }

  /** Registers a non-trainable tensor; persistent buffers appear in stateDict(). */
  protected buffer(name: string, t: Tensor, persistent = true): Tensor {
    this.checkName(name);
    torch.keep(t);
    this.buffers.set(name, { tensor: t, persistent });
    return t;
  }

  protected module<M extends Module>(name: string, m: M): M {
    this.checkName(name);
    this.children_.set(name, m);
    return m;
  }

  private checkName(name: string): void {
    if (!name || name.includes('.')) throw new Error(`invalid module member name '${name}'`);
    if (this.params.has(name) || this.buffers.has(name) || this.children_.has(name)) {
      throw new Error(`'${name}' is already registered in ${this.constructor.name}`);
    }
  }

  /** The direct sub-modules by name, in registration order; one registered under two names is listed once, under the first, as PyTorch's named_children. */
  *namedChildren(): IterableIterator<[string, Module]> {
    const seen = new Set<Module>();
    for (const [name, m] of this.children_) {
      if (seen.has(m)) continue;
      seen.add(m);
      yield [name, m];
    }
  }

  /**
   * This module and every sub-module with its dotted name (`prefix` for this one). A module reached
   * by two names (used twice) is listed once, under the first, as PyTorch's named_modules.
   */
  *namedModules(prefix = ''): IterableIterator<[string, Module]> {
    const seen = new Set<Module>();
    for (const [name, m] of this.everyModule(prefix)) {
      if (seen.has(m)) continue;
      seen.add(m);
      yield [name, m];
    }
  }

  /**
   * Parameters by dotted name, module by module. A tensor reached by two names (a tied weight, a
   * module used twice) is listed once, under the first, as PyTorch's named_parameters: an optimiser
   * given these updates it once per step. {@link stateDict} keeps every name.
   */
  *namedParameters(prefix = ''): IterableIterator<[string, Tensor]> {
    yield* this.namedTensors(prefix, (m) => m.params);
  }

  /** The tensors of {@link namedParameters}, each once. */
  parameters(): Tensor[] {
    return [...this.namedParameters()].map(([, t]) => t);
  }

  /** Buffers by dotted name (only the persistent ones with persistentOnly), each tensor once, as {@link namedParameters}. */
  *namedBuffers(prefix = '', persistentOnly = false): IterableIterator<[string, Tensor]> {
    yield* this.namedTensors(prefix, (m) => [...m.buffers].filter(([, b]) => !persistentOnly || b.persistent).map(([n, b]) => [n, b.tensor]));
  }

  /** Every module under every name it is reachable by, this one first (what stateDict and toString walk). */
  private *everyModule(prefix: string): IterableIterator<[string, Module]> {
    yield [prefix, this];
    for (const [n, m] of this.children_) yield* m.everyModule(prefix ? `${prefix}.${n}` : n);
  }

  /** The tensors `own` gives of each module (once per module and once per tensor), by dotted name. */
  private *namedTensors(prefix: string, own: (m: Module) => Iterable<[string, Tensor]>): IterableIterator<[string, Tensor]> {
    const seen = new Set<Tensor>();
    for (const [modulePrefix, m] of this.namedModules(prefix)) {
      for (const [n, t] of own(m)) {
        if (seen.has(t)) continue;
        seen.add(t);
        yield [modulePrefix ? `${modulePrefix}.${n}` : n, t];
      }
    }
  }

  /** Number of parameter elements, frozen ones (requiresGrad false) included: sum(p.numel() for p in model.parameters()). */
  numParameters(): number {
    return this.parameters().reduce((a, p) => a + p.numel, 0);
  }

  /**
   * Parameters and persistent buffers by dotted name, in PyTorch's order: each module's parameters,
   * then its buffers, then its children's entries. A tensor reachable by two names (a tied weight, a
   * module used twice) is listed under each, as in PyTorch. The tensors are the module's own (not
   * copies): do not dispose them.
   */
  stateDict(): StateDict {
    const out: StateDict = new Map();
    for (const [prefix, m] of this.everyModule('')) {
      const p = prefix ? `${prefix}.` : '';
      for (const [n, t] of m.params) out.set(p + n, t);
      for (const [n, b] of m.buffers) if (b.persistent) out.set(p + n, b.tensor);
    }
    return out;
  }

  /**
   * Copies values into this module's tensors. strict: every name must match both ways; every shape
   * must agree, and a floating-point tensor takes only floating-point values (other float dtypes are
   * cast, as PyTorch does; integers would be cast silently into meaningless weights). As in PyTorch, a
   * 0-d tensor also takes a one-element 1-d one (older checkpoints stored scalars so). A mismatch throws
   * a StateDictError listing all differences, before anything is copied.
   */
  loadStateDict(sd: StateDict | Record<string, Tensor>, opts: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
    const strict = opts.strict ?? true;
    const where = `loadStateDict(${this.constructor.name})`;
    if (sd === null || typeof sd !== 'object' || Array.isArray(sd))
      throw new TypeError(`${where}: expected a Map or a record of tensors by name, got ${describeValue(sd)}`);
    const src: Map<string, unknown> = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const own = this.stateDict();
    for (const k of own.keys()) {
      const s = src.get(k);
      // (a name given undefined is no Tensor either: it was neither missing nor copied, even when strict)
      if (src.has(k) && !(s instanceof Tensor)) throw new TypeError(`${where}: '${k}' is ${describeValue(s)}, not a Tensor`);
    }
    const missing = [...own.keys()].filter((k) => !src.has(k));
    const unexpected = [...src.keys()].filter((k) => !own.has(k));
    const shapeMismatch: { name: string; expected: number[]; got: number[] }[] = [];
    const dtypeMismatch: { name: string; expected: DType; got: DType }[] = [];
    for (const [k, t] of own) {
      const s = src.get(k) as Tensor | undefined;
      if (s && !sameShape(s.shape, t.shape) && !oldScalar(s, t)) shapeMismatch.push({ name: k, expected: t.shape, got: s.shape });
      if (s && torch.isFloating(t.dtype) && !torch.isFloating(s.dtype)) dtypeMismatch.push({ name: k, expected: t.dtype, got: s.dtype });
    }
    if (shapeMismatch.length || dtypeMismatch.length || (strict && (missing.length || unexpected.length))) {
      const lines = [
        ...missing.map((k) => `  missing:    ${k}`),
        ...unexpected.map((k) => `  unexpected: ${k}`),
        ...shapeMismatch.map((m) => `  shape:      ${m.name}: expected [${m.expected}], got [${m.got}]`),
        ...dtypeMismatch.map((m) => `  dtype:      ${m.name}: expected floating-point values (${m.expected}), got ${m.got}`),
      ];
      throw new StateDictError(`loadStateDict(${this.constructor.name}) failed:\n${lines.join('\n')}`, missing, unexpected, shapeMismatch, dtypeMismatch);
    }
    torch.noGrad(() => {
      for (const [k, t] of own) {
        const s = src.get(k) as Tensor | undefined;
        if (!s) continue;
        if (!oldScalar(s, t)) t.copy_(s);
        else {
          const scalar = s.reshape([]);
          t.copy_(scalar);
          scalar.dispose();
        }
      }
    });
    return { missing, unexpected };
  }

  /**
   * Sets training mode on this module, then calls each child's train(mode), as PyTorch's Module.train: a
   * sub-module that overrides train() (one kept in eval mode, say) decides for itself and its children.
   */
  train(mode = true): this {
    this.training = mode;
    for (const [, m] of this.namedChildren()) m.train(mode);
    return this;
  }

  /** train(false). */
  eval(): this {
    return this.train(false);
  }

  /**
   * Moves / casts every parameter and buffer in place; only floating-point ones get the dtype, integer
   * ones keep theirs. The dtype must be a floating-point one (parameters cannot hold integers). A gradient
   * a parameter holds moves and is cast with it, as in PyTorch's Module._apply (left behind, the next
   * backward accumulated into it in the old dtype, or failed on the old device).
   */
  to(opts: { device?: torch.Device; dtype?: torch.DType }): this {
    if (opts.dtype !== undefined && !torch.isFloating(opts.dtype)) {
      throw new TypeError(
        `${this.constructor.name}.to: dtype must be a floating-point dtype (integer dtypes are not allowed for parameters), got '${opts.dtype}'`,
      );
    }
    torch.noGrad(() => {
      for (const [, t] of [...this.namedParameters(), ...this.namedBuffers()]) {
        const dtype = opts.dtype && torch.isFloating(t.dtype) ? opts.dtype : undefined;
        const moved = t.to({ device: opts.device, dtype });
        const grad = t.grad;
        try {
          t.setData(moved);
          if (grad) {
            const movedGrad = grad.to({ device: opts.device, dtype });
            t.grad = movedGrad;
            movedGrad.dispose();
          }
        } finally {
          moved.dispose();
          grad?.dispose();
        }
      }
    });
    return this;
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  /** Frees every parameter and buffer now. The module is unusable afterwards. */
  dispose(): void {
    for (const [, t] of [...this.namedParameters(), ...this.namedBuffers()]) t.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** A tree of the module with parameter counts. */
  toString(): string {
    const lines: string[] = [];
    for (const [name, m] of this.everyModule('')) {
      const depth = name ? name.split('.').length : 0;
      const own = [...m.params.values()].reduce((a, p) => a + p.numel, 0);
      lines.push(`${'  '.repeat(depth)}${name || '(root)'}: ${m.constructor.name}${own ? ` (${own} params)` : ''}`);
    }
    return lines.join('\n');
  }
}

/** PyTorch's _load_from_state_dict compatibility case: a 0-d target given a 1-d source of one element. */
function oldScalar(source: Tensor, target: Tensor): boolean {
  return target.shape.length === 0 && source.shape.length === 1 && source.shape[0] === 1;
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
