// The Tensor class: one wrapper owns one libtorch handle. Methods mirror PyTorch's names in camelCase.
import { native, TensorHandle } from './native';
import { DTYPES, DType, Device, TypedArray, viewAs } from './dtype';
import { registerTensorClass, track } from './scope';
import type { Generator } from './random';
import { generatorHandle } from './generator-option';
import type { Scalar } from './generated/native-ops';

/** The handle of every disposed Tensor: native ops on it throw "<op>: tensor was disposed". */
const DISPOSED: TensorHandle = native.disposedHandle();

/** A BigInt scalar must be a safe integer (|n| ≤ 2^53 - 1); larger ones are refused. */
export type { Scalar };
/** What binary ops (add, mul, eq, where, ...) take as the other operand: a tensor or a plain number, boolean or BigInt. */
export type TensorOrScalar = Tensor | Scalar;

function arg(x: TensorOrScalar): TensorHandle | Scalar {
  return x instanceof Tensor ? x.h : x;
}

/** Wraps a native handle (or null) returned by the addon. */
export function wrap(h: TensorHandle): Tensor {
  return new Tensor(h);
}

function wrapPair(hs: TensorHandle[]): [Tensor, Tensor] {
  return [new Tensor(hs[0]), new Tensor(hs[1])];
}

/**
 * A libtorch tensor, like torch.Tensor with methods in camelCase (indexSelect, maskedFill_). One
 * wrapper owns one native handle, freed by dispose(), by the enclosing torch.scope(), or by garbage
 * collection as a backstop. Unlike PyTorch, max()/min() only reduce over all elements (per dim:
 * maxDim/minDim; elementwise: maximum/minimum) and cuda() defaults to 'cuda:0'.
 */
export class Tensor {
  /** Set by keep(): no scope disposes this tensor. */
  kept = false;
  /** Whether garbage collection of this wrapper disposes the native handle (see guard()). */
  private backstopped = false;
  // A boolean beside the handle: comparing BigInt handles costs a runtime call per check.
  private live = true;

  constructor(private handle: TensorHandle) {
    track(this);
  }

  /**
   * The native handle, valid while this Tensor is alive and not disposed: do not store it apart from
   * the Tensor (ops on a disposed Tensor's handle throw a clear error).
   */
  get h(): TensorHandle {
    return this.handle;
  }

  // ------------------------------------------------------------ lifetime

  /** Frees this wrapper's reference to the tensor now. Idempotent. */
  dispose(): void {
    if (!this.live) return;
    this.live = false;
    const h = this.handle;
    this.handle = DISPOSED;
    native.dispose(h);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  get isDisposed(): boolean {
    return !this.live;
  }

  /**
   * Called by the scope machinery for tensors that outlive their scope (or were made outside one):
   * from now on, garbage collection of this wrapper disposes the tensor if nobody else does.
   * Tensors disposed before that never pay for a GC finalizer.
   */
  guard(): void {
    if (this.backstopped || !this.live) return;
    native.backstop(this, this.handle);
    this.backstopped = true;
  }

  // ------------------------------------------------------------ properties

  get shape(): number[] {
    return native.shape(this.handle);
  }
  get strides(): number[] {
    return native.strides(this.handle);
  }
  get dtype(): DType {
    return native.dtype(this.handle);
  }
  get device(): Device {
    return native.device(this.handle);
  }
  get ndim(): number {
    return native.dim(this.handle);
  }
  get numel(): number {
    return native.numel(this.handle);
  }
  get isContiguous(): boolean {
    return native.isContiguous(this.handle);
  }
  /** The size of one dimension (all of them: .shape). */
  size(dim: number): number {
    if (!Number.isInteger(dim)) throw new TypeError(`size(dim): dim must be an integer, got ${String(dim)} (.shape gives every size)`);
    const s = this.shape;
    const d = dim < 0 ? s.length + dim : dim;
    if (d < 0 || d >= s.length) throw new RangeError(`size(${dim}): tensor has ${s.length} dimensions`);
    return s[d];
  }

  /** A one-line summary; use print() for the values. */
  toString(): string {
    if (this.isDisposed) return 'Tensor(disposed)';
    const g = this.requiresGrad ? ', requiresGrad' : '';
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device}${g})`;
  }

  /** JSON.stringify gives the summary (the handle is a BigInt, which JSON cannot hold). */
  toJSON(): string {
    return this.toString();
  }

  /** libtorch's formatting of the values. */
  print(): string {
    return native.format(this.handle);
  }

  // ------------------------------------------------------------ data out

  /** A copy of the values as a typed array (float16/bfloat16 as raw Uint16 bits). */
  data(): TypedArray {
    return viewAs(this.dtype, native.toBuffer(this.handle));
  }
  /** The values as float32 (any dtype). */
  toFloat32Array(): Float32Array {
    const t = this.dtype === 'float32' ? this : this.to({ dtype: 'float32' });
    try {
      return new Float32Array(native.toBuffer(t.handle));
    } finally {
      if (t !== this) t.dispose();
    }
  }
  /** The values as float64 (any dtype). */
  toFloat64Array(): Float64Array {
    const t = this.dtype === 'float64' ? this : this.to({ dtype: 'float64' });
    try {
      return new Float64Array(native.toBuffer(t.handle));
    } finally {
      if (t !== this) t.dispose();
    }
  }
  /** Zero-copy view of a contiguous CPU tensor's memory (stays valid after dispose()). */
  sharedData(): TypedArray {
    return viewAs(this.dtype, native.sharedBuffer(this.handle));
  }
  /**
   * The single value of a one-element tensor (synchronises with the device). An int64 value beyond
   * ±(2^53 - 1), which a number cannot hold exactly, throws a RangeError: read it with data().
   */
  item(): number {
    const v = native.item(this.handle);
    if (typeof v === 'bigint') throw new RangeError(`item(): the int64 value ${v} does not fit a JS number exactly; read it with .data() (a BigInt64Array)`);
    return Number(v);
  }
  /** Nested arrays of numbers (int64 values beyond ±(2^53 - 1) throw a RangeError: read them with data()). */
  tolist(): unknown {
    const flat = this.dtype === 'int64' ? Array.from(this.data() as BigInt64Array, exactNumber) : Array.from(this.toFloat64Array());
    const shape = this.shape;
    if (shape.length === 0) return flat[0];
    const build = (dim: number, offset: number): unknown[] => {
      const n = shape[dim];
      const stride = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      const out: unknown[] = [];
      for (let i = 0; i < n; i++) out.push(dim === shape.length - 1 ? flat[offset + i] : build(dim + 1, offset + i * stride));
      return out;
    };
    return build(0, 0);
  }

  // ------------------------------------------------------------ conversion

  /** A dtype or device alone may be given as a string: to('float64'), to('cuda'). */
  to(opts: DType | Device | { dtype?: DType; device?: Device; nonBlocking?: boolean; copy?: boolean }): Tensor {
    if (typeof opts === 'string') return this.to(DTYPES.includes(opts as DType) ? { dtype: opts as DType } : { device: opts as Device });
    if (opts === null || typeof opts !== 'object') throw new TypeError(`to(): expected options { dtype, device }, a dtype or a device, got ${String(opts)}`);
    return wrap(native.to(this.handle, opts.dtype ?? null, opts.device ?? null, !!opts.nonBlocking, !!opts.copy));
  }
  float(): Tensor {
    return this.to({ dtype: 'float32' });
  }
  double(): Tensor {
    return this.to({ dtype: 'float64' });
  }
  long(): Tensor {
    return this.to({ dtype: 'int64' });
  }
  bool(): Tensor {
    return this.to({ dtype: 'bool' });
  }
  cpu(): Tensor {
    return this.to({ device: 'cpu' });
  }
  cuda(index = 0): Tensor {
    return this.to({ device: `cuda:${index}` });
  }
  clone(): Tensor {
    return wrap(native.clone(this.handle));
  }
  detach(): Tensor {
    return wrap(native.detach(this.handle));
  }
  contiguous(): Tensor {
    return wrap(native.contiguous(this.handle));
  }

  // ------------------------------------------------------------ autograd

  get requiresGrad(): boolean {
    return native.requiresGrad(this.handle);
  }
  set requiresGrad(v: boolean) {
    native.setRequiresGrad(this.handle, v);
  }
  requiresGrad_(v = true): this {
    native.setRequiresGrad(this.handle, v);
    return this;
  }
  get isLeaf(): boolean {
    return native.isLeaf(this.handle);
  }
  /** The accumulated gradient (a new wrapper each call), or null. */
  get grad(): Tensor | null {
    const g = native.grad(this.handle);
    return g === null ? null : wrap(g);
  }
  set grad(g: Tensor | null) {
    native.setGrad(this.handle, g ? g.handle : null);
  }
  retainGrad(): void {
    native.retainGrad(this.handle);
  }
  /** Replaces the data behind this tensor (dtype, device, shape) keeping its identity (PyTorch's `t.data = src`). */
  setData(src: Tensor): void {
    native.setData(this.handle, src.handle);
  }
  backward(gradient?: Tensor, opts: { retainGraph?: boolean } = {}): void {
    native.backward(this.handle, gradient ? gradient.handle : null, !!opts.retainGraph);
  }

  // ------------------------------------------------------------ views and shape

  reshape(...shape: number[] | [number[]]): Tensor {
    return wrap(native.reshape(this.handle, flatShape(shape)));
  }
  view(...shape: number[] | [number[]]): Tensor {
    return wrap(native.view(this.handle, flatShape(shape)));
  }
  permute(...dims: number[] | [number[]]): Tensor {
    return wrap(native.permute(this.handle, flatShape(dims)));
  }
  transpose(d0: number, d1: number): Tensor {
    return wrap(native.transpose(this.handle, d0, d1));
  }
  /** The dimensions reversed, as PyTorch's .T (a 0-d or 1-d tensor as it is); mT transposes batches of matrices. */
  get T(): Tensor {
    return this.permute([...Array(this.ndim).keys()].reverse());
  }
  /** The last two dimensions transposed (PyTorch's .mT). */
  get mT(): Tensor {
    if (this.ndim < 2) throw new RangeError(`mT: expected a tensor of at least 2 dimensions, got ${this.ndim}`);
    return this.transpose(-2, -1);
  }
  expand(...shape: number[] | [number[]]): Tensor {
    return wrap(native.expand(this.handle, flatShape(shape)));
  }
  expandAs(other: Tensor): Tensor {
    return this.expand(other.shape);
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return wrap(native.narrow(this.handle, dim, start, length));
  }
  /** Python's t[start:end:step] along dim (end exclusive; negative indices count from the end). */
  slice(dim: number, start?: number, end?: number, step = 1): Tensor {
    return wrap(native.slice(this.handle, dim, start ?? null, end ?? null, step));
  }
  select(dim: number, index: number): Tensor {
    return wrap(native.select(this.handle, dim, index));
  }
  squeeze(dim?: number): Tensor {
    return wrap(native.squeeze(this.handle, dim ?? null));
  }
  unsqueeze(dim: number): Tensor {
    return wrap(native.unsqueeze(this.handle, dim));
  }
  flatten(start = 0, end = -1): Tensor {
    return wrap(native.flatten(this.handle, start, end));
  }
  repeat(...sizes: number[] | [number[]]): Tensor {
    return wrap(native.repeat(this.handle, flatShape(sizes)));
  }
  flip(...dims: number[] | [number[]]): Tensor {
    return wrap(native.flip(this.handle, flatShape(dims)));
  }
  tril(diagonal = 0): Tensor {
    return wrap(native.tril(this.handle, diagonal));
  }
  triu(diagonal = 0): Tensor {
    return wrap(native.triu(this.handle, diagonal));
  }
  split(sizeOrSizes: number | number[], dim = 0): Tensor[] {
    const hs = typeof sizeOrSizes === 'number' ? native.split(this.handle, sizeOrSizes, dim) : native.splitWithSizes(this.handle, sizeOrSizes, dim);
    return hs.map(wrap);
  }
  chunk(chunks: number, dim = 0): Tensor[] {
    return native.chunk(this.handle, chunks, dim).map(wrap);
  }

  // ------------------------------------------------------------ indexing

  gather(dim: number, index: Tensor): Tensor {
    return wrap(native.gather(this.handle, dim, index.handle));
  }
  scatter(dim: number, index: Tensor, src: Tensor): Tensor {
    return wrap(native.scatter(this.handle, dim, index.handle, src.handle));
  }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return wrap(native.scatterAdd(this.handle, dim, index.handle, src.handle));
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return wrap(native.indexSelect(this.handle, dim, index.handle));
  }
  /** Advanced indexing t[i0, i1, ...] with index tensors for the leading dimensions. */
  index(indices: Tensor[]): Tensor {
    return wrap(
      native.index(
        this.handle,
        indices.map((t) => t.handle),
      ),
    );
  }
  indexPut(indices: Tensor[], values: Tensor, accumulate = false): Tensor {
    return wrap(
      native.indexPut(
        this.handle,
        indices.map((t) => t.handle),
        values.handle,
        accumulate,
      ),
    );
  }
  maskedFill(mask: Tensor, value: TensorOrScalar): Tensor {
    return wrap(native.maskedFill(this.handle, mask.handle, arg(value)));
  }
  maskedSelect(mask: Tensor): Tensor {
    return wrap(native.maskedSelect(this.handle, mask.handle));
  }
  nonzero(): Tensor {
    return wrap(native.nonzero(this.handle));
  }
  /** Indices that sort along dim; stable keeps equal values in index order. */
  argsort(dim = -1, descending = false, stable = false): Tensor {
    return wrap(native.argsort(this.handle, dim, descending, stable));
  }
  sort(dim = -1, descending = false): [Tensor, Tensor] {
    return wrapPair(native.sort(this.handle, dim, descending));
  }
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] {
    return wrapPair(native.topk(this.handle, k, dim, largest, sorted));
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return wrap(native.argmax(this.handle, dim ?? null, keepdim));
  }
  argmin(dim?: number, keepdim = false): Tensor {
    return wrap(native.argmin(this.handle, dim ?? null, keepdim));
  }

  // ------------------------------------------------------------ elementwise

  add(other: TensorOrScalar, alpha?: number): Tensor {
    return wrap(native.add(this.handle, arg(other), alpha));
  }
  sub(other: TensorOrScalar, alpha?: number): Tensor {
    return wrap(native.sub(this.handle, arg(other), alpha));
  }
  mul(other: TensorOrScalar): Tensor {
    return wrap(native.mul(this.handle, arg(other)));
  }
  div(other: TensorOrScalar): Tensor {
    return wrap(native.div(this.handle, arg(other)));
  }
  pow(exponent: TensorOrScalar): Tensor {
    return wrap(native.pow(this.handle, arg(exponent)));
  }
  remainder(other: TensorOrScalar): Tensor {
    return wrap(native.remainder(this.handle, arg(other)));
  }
  /** other - this */
  rsub(other: number): Tensor {
    return wrap(native.rsub(this.handle, other));
  }
  eq(other: TensorOrScalar): Tensor {
    return wrap(native.eq(this.handle, arg(other)));
  }
  ne(other: TensorOrScalar): Tensor {
    return wrap(native.ne(this.handle, arg(other)));
  }
  lt(other: TensorOrScalar): Tensor {
    return wrap(native.lt(this.handle, arg(other)));
  }
  le(other: TensorOrScalar): Tensor {
    return wrap(native.le(this.handle, arg(other)));
  }
  gt(other: TensorOrScalar): Tensor {
    return wrap(native.gt(this.handle, arg(other)));
  }
  ge(other: TensorOrScalar): Tensor {
    return wrap(native.ge(this.handle, arg(other)));
  }
  maximum(other: Tensor): Tensor {
    return wrap(native.maximum(this.handle, other.handle));
  }
  minimum(other: Tensor): Tensor {
    return wrap(native.minimum(this.handle, other.handle));
  }
  logicalAnd(other: Tensor): Tensor {
    return wrap(native.logicalAnd(this.handle, other.handle));
  }
  logicalOr(other: Tensor): Tensor {
    return wrap(native.logicalOr(this.handle, other.handle));
  }
  logicalXor(other: Tensor): Tensor {
    return wrap(native.logicalXor(this.handle, other.handle));
  }
  logicalNot(): Tensor {
    return wrap(native.logicalNot(this.handle));
  }

  neg(): Tensor {
    return wrap(native.neg(this.handle));
  }
  exp(): Tensor {
    return wrap(native.exp(this.handle));
  }
  log(): Tensor {
    return wrap(native.log(this.handle));
  }
  log1p(): Tensor {
    return wrap(native.log1p(this.handle));
  }
  expm1(): Tensor {
    return wrap(native.expm1(this.handle));
  }
  sqrt(): Tensor {
    return wrap(native.sqrt(this.handle));
  }
  rsqrt(): Tensor {
    return wrap(native.rsqrt(this.handle));
  }
  abs(): Tensor {
    return wrap(native.abs(this.handle));
  }
  sin(): Tensor {
    return wrap(native.sin(this.handle));
  }
  cos(): Tensor {
    return wrap(native.cos(this.handle));
  }
  tanh(): Tensor {
    return wrap(native.tanh(this.handle));
  }
  sigmoid(): Tensor {
    return wrap(native.sigmoid(this.handle));
  }
  relu(): Tensor {
    return wrap(native.relu(this.handle));
  }
  erf(): Tensor {
    return wrap(native.erf(this.handle));
  }
  floor(): Tensor {
    return wrap(native.floor(this.handle));
  }
  ceil(): Tensor {
    return wrap(native.ceil(this.handle));
  }
  round(): Tensor {
    return wrap(native.round(this.handle));
  }
  reciprocal(): Tensor {
    return wrap(native.reciprocal(this.handle));
  }
  sign(): Tensor {
    return wrap(native.sign(this.handle));
  }
  square(): Tensor {
    return wrap(native.square(this.handle));
  }
  isnan(): Tensor {
    return wrap(native.isnan(this.handle));
  }
  isfinite(): Tensor {
    return wrap(native.isfinite(this.handle));
  }
  clamp(min?: Scalar | null, max?: Scalar | null): Tensor {
    return wrap(native.clamp(this.handle, min ?? null, max ?? null));
  }

  matmul(other: Tensor): Tensor {
    return wrap(native.matmul(this.handle, other.handle));
  }
  mm(other: Tensor): Tensor {
    return wrap(native.mm(this.handle, other.handle));
  }
  bmm(other: Tensor): Tensor {
    return wrap(native.bmm(this.handle, other.handle));
  }

  // ------------------------------------------------------------ reductions (dim omitted = all)

  sum(dim?: number | number[], keepdim = false, dtype?: DType): Tensor {
    return wrap(native.sum(this.handle, dim ?? null, keepdim, dtype ?? null));
  }
  mean(dim?: number | number[], keepdim = false): Tensor {
    return wrap(native.mean(this.handle, dim ?? null, keepdim));
  }
  /** Variance; unbiased (Bessel's correction) by default, as PyTorch. */
  var(dim?: number | number[], unbiased = true, keepdim = false): Tensor {
    return wrap(native.var(this.handle, dim ?? null, unbiased, keepdim));
  }
  std(dim?: number | number[], unbiased = true, keepdim = false): Tensor {
    return wrap(native.std(this.handle, dim ?? null, unbiased, keepdim));
  }
  /** Maximum of all elements (PyTorch's max(dim) is maxDim, max(other) is maximum). */
  max(...args: never[]): Tensor {
    if (args.length) throw new TypeError('max() takes no arguments: use maxDim(dim) for the maximum along a dimension, maximum(other) for the elementwise one');
    return wrap(native.maxAll(this.handle));
  }
  /** Minimum of all elements (PyTorch's min(dim) is minDim, min(other) is minimum). */
  min(...args: never[]): Tensor {
    if (args.length) throw new TypeError('min() takes no arguments: use minDim(dim) for the minimum along a dimension, minimum(other) for the elementwise one');
    return wrap(native.minAll(this.handle));
  }
  /** [values, indices] along dim. */
  maxDim(dim: number, keepdim = false): [Tensor, Tensor] {
    return wrapPair(native.maxDim(this.handle, dim, keepdim));
  }
  minDim(dim: number, keepdim = false): [Tensor, Tensor] {
    return wrapPair(native.minDim(this.handle, dim, keepdim));
  }
  amax(dim: number | number[], keepdim = false): Tensor {
    return wrap(native.amax(this.handle, dim, keepdim));
  }
  amin(dim: number | number[], keepdim = false): Tensor {
    return wrap(native.amin(this.handle, dim, keepdim));
  }
  norm(p = 2, dim?: number | number[], keepdim = false): Tensor {
    return wrap(native.norm(this.handle, p, dim ?? null, keepdim));
  }
  logsumexp(dim: number | number[], keepdim = false): Tensor {
    return wrap(native.logsumexp(this.handle, dim, keepdim));
  }
  cumsum(dim: number): Tensor {
    return wrap(native.cumsum(this.handle, dim));
  }
  any(dim?: number, keepdim = false): Tensor {
    return wrap(native.any(this.handle, dim ?? null, keepdim));
  }
  all(dim?: number, keepdim = false): Tensor {
    return wrap(native.all(this.handle, dim ?? null, keepdim));
  }
  softmax(dim: number): Tensor {
    return wrap(native.softmax(this.handle, dim, null));
  }
  logSoftmax(dim: number): Tensor {
    return wrap(native.logSoftmax(this.handle, dim, null));
  }

  // ------------------------------------------------------------ in place (no autograd history on leaves)

  add_(other: TensorOrScalar, alpha?: number): this {
    native.add_(this.handle, arg(other), alpha);
    return this;
  }
  sub_(other: TensorOrScalar, alpha?: number): this {
    native.sub_(this.handle, arg(other), alpha);
    return this;
  }
  mul_(other: TensorOrScalar): this {
    native.mul_(this.handle, arg(other));
    return this;
  }
  div_(other: TensorOrScalar): this {
    native.div_(this.handle, arg(other));
    return this;
  }
  addcmul_(a: Tensor, b: Tensor, value = 1): this {
    native.addcmul_(this.handle, a.handle, b.handle, value);
    return this;
  }
  addcdiv_(a: Tensor, b: Tensor, value = 1): this {
    native.addcdiv_(this.handle, a.handle, b.handle, value);
    return this;
  }
  lerp_(end: Tensor, weight: TensorOrScalar): this {
    native.lerp_(this.handle, end.handle, arg(weight));
    return this;
  }
  copy_(src: Tensor): this {
    native.copy_(this.handle, src.handle);
    return this;
  }
  zero_(): this {
    native.zero_(this.handle);
    return this;
  }
  fill_(value: Scalar): this {
    native.fill_(this.handle, value);
    return this;
  }
  clamp_(min?: Scalar | null, max?: Scalar | null): this {
    native.clamp_(this.handle, min ?? null, max ?? null);
    return this;
  }
  maskedFill_(mask: Tensor, value: Scalar): this {
    native.maskedFill_(this.handle, mask.handle, value);
    return this;
  }
  uniform_(low = 0, high = 1, generator?: Generator): this {
    native.uniform_(this.handle, low, high, generatorHandle(generator, 'uniform_'));
    return this;
  }
  normal_(mean = 0, std = 1, generator?: Generator): this {
    native.normal_(this.handle, mean, std, generatorHandle(generator, 'normal_'));
    return this;
  }
}

function exactNumber(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new RangeError(`tolist(): the int64 value ${v} does not fit a JS number exactly; read the values with .data() (a BigInt64Array)`);
  }
  return Number(v);
}

function flatShape(args: number[] | [number[]]): number[] {
  return Array.isArray(args[0]) ? (args[0] as number[]) : (args as number[]);
}

registerTensorClass(Tensor);
