// Creating tensors: constants, ranges, random values and copies of JS data.
import { native } from './native';
import { DType, Device, TypedArray, dtypeOfArray } from './dtype';
import { Tensor, wrap } from './tensor';
import type { Generator } from './random';
import { describeValue } from './errors';
import { generatorHandle } from './generator-option';

/**
 * Options of the tensor factories ({@link zeros}, {@link full}, {@link tensor}, ...), in place of
 * PyTorch's keyword arguments. Without dtype a factory gives float32 (see each one for exceptions);
 * without device, the default device ({@link setDefaultDevice}).
 */
export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

/** {@link CreateOptions} for the random factories, plus a {@link Generator} to draw from (default: the global one). */
export interface RandomOptions extends CreateOptions {
  generator?: Generator;
}

let defaultDevice: Device | null = null;

/**
 * The device of tensors created without one (torch.set_default_device): 'cpu' unless set. Tensors
 * made from others (ops, *Like, to()) follow their inputs as always.
 */
export function setDefaultDevice(device: Device): void {
  if (device !== 'cpu') wrap(native.empty([0], null, device)).dispose(); // a bad or absent device throws here
  defaultDevice = device === 'cpu' ? null : device;
}
/** The device set by {@link setDefaultDevice} ('cpu' if none). Like torch.get_default_device(). */
export function getDefaultDevice(): Device {
  return defaultDevice ?? 'cpu';
}
/** The device to pass to the addon (null: its default, the CPU). */
function dev(o: CreateOptions): Device | null {
  return o.device ?? defaultDevice;
}

function finish(t: Tensor, o: CreateOptions): Tensor {
  if (o.requiresGrad) t.requiresGrad = true;
  return t;
}

/** A tensor of the given shape with uninitialized values (float32 unless dtype is given). Like torch.empty. */
export function empty(shape: number[], o: CreateOptions = {}): Tensor {
  return finish(wrap(native.empty(shape, o.dtype ?? null, dev(o))), o);
}
/** A tensor of zeros (float32 unless dtype is given). Like torch.zeros, with the shape as one array. */
export function zeros(shape: number[], o: CreateOptions = {}): Tensor {
  return finish(wrap(native.zeros(shape, o.dtype ?? null, dev(o))), o);
}
/** A tensor of ones (float32 unless dtype is given). Like torch.ones, with the shape as one array. */
export function ones(shape: number[], o: CreateOptions = {}): Tensor {
  return finish(wrap(native.ones(shape, o.dtype ?? null, dev(o))), o);
}
/** Without a dtype: bool for a boolean value (as PyTorch), int64 for a BigInt (an integer, as PyTorch's int), float32 for a number (JS cannot tell 1 from 1.0). */
export function full(shape: number[], value: number | boolean | bigint, o: CreateOptions = {}): Tensor {
  const dtype = o.dtype ?? (typeof value === 'boolean' ? 'bool' : typeof value === 'bigint' ? 'int64' : null);
  return finish(wrap(native.full(shape, value, dtype, dev(o))), o);
}
/**
 * The options of a *Like factory: t's dtype and device unless given. An option given as undefined counts as
 * not given (PyTorch's dtype=None): spread over t's, it replaced them with the factory's defaults.
 */
function likeOptions(t: Tensor, o: CreateOptions): CreateOptions {
  return { ...o, dtype: o.dtype ?? t.dtype, device: o.device ?? t.device };
}
/** Zeros with t's shape, and its dtype and device unless options override them. Like torch.zeros_like. */
export function zerosLike(t: Tensor, o: CreateOptions = {}): Tensor {
  return zeros(t.shape, likeOptions(t, o));
}
/** Ones with t's shape, and its dtype and device unless options override them. Like torch.ones_like. */
export function onesLike(t: Tensor, o: CreateOptions = {}): Tensor {
  return ones(t.shape, likeOptions(t, o));
}
/** A tensor of `value` with t's shape, and its dtype and device unless options override them. Like torch.full_like. */
export function fullLike(t: Tensor, value: number, o: CreateOptions = {}): Tensor {
  return full(t.shape, value, likeOptions(t, o));
}
/** [start, end) with step; integer arguments give int64 unless dtype is set. */
export function arange(start: number, end?: number, step = 1, o: CreateOptions = {}): Tensor {
  const [a, b] = end === undefined ? [0, start] : [start, end];
  const ints = Number.isInteger(a) && Number.isInteger(b) && Number.isInteger(step);
  const dtype = o.dtype ?? (ints ? 'int64' : 'float32');
  return finish(wrap(native.arange(a, b, step, dtype, dev(o))), o);
}
/**
 * `steps` evenly spaced values from start to end, both included (float32 unless dtype is given).
 * Like torch.linspace.
 */
export function linspace(start: number, end: number, steps: number, o: CreateOptions = {}): Tensor {
  return finish(wrap(native.linspace(start, end, steps, o.dtype ?? null, dev(o))), o);
}
/** The n×n identity matrix (float32 unless dtype is given). Like torch.eye(n); no separate column count. */
export function eye(n: number, o: CreateOptions = {}): Tensor {
  return finish(wrap(native.eye(n, o.dtype ?? null, dev(o))), o);
}
/** Uniform on [0, 1). */
export function rand(shape: number[], o: RandomOptions = {}): Tensor {
  return finish(wrap(native.rand(shape, o.dtype ?? null, dev(o), generatorHandle(o.generator, 'rand'))), o);
}
/** Samples of the standard normal distribution N(0, 1) (float32 unless dtype is given). Like torch.randn. */
export function randn(shape: number[], o: RandomOptions = {}): Tensor {
  return finish(wrap(native.randn(shape, o.dtype ?? null, dev(o), generatorHandle(o.generator, 'randn'))), o);
}
/** Integers in [low, high), int64 unless dtype is given. */
export function randint(low: number, high: number, shape: number[], o: RandomOptions = {}): Tensor {
  return finish(wrap(native.randint(low, high, shape, o.dtype ?? null, dev(o), generatorHandle(o.generator, 'randint'))), o);
}
/** A random permutation of 0..n-1, int64 unless dtype is given. */
export function randperm(n: number, o: RandomOptions = {}): Tensor {
  return finish(wrap(native.randperm(n, o.dtype ?? null, dev(o), generatorHandle(o.generator, 'randperm'))), o);
}
/** Bernoulli(p) samples shaped like `like`, with its dtype and device unless given. */
export function bernoulli(like: Tensor, p: number, o: RandomOptions = {}): Tensor {
  return finish(wrap(native.bernoulli(like.h, p, o.dtype ?? null, o.device ?? null, generatorHandle(o.generator, 'bernoulli'))), o);
}

/** Nested arrays of numbers or booleans (torch.tensor's data). */
export type Nested = number | boolean | bigint | Nested[];

function isLeaf(v: unknown): boolean {
  return typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint';
}

/** The index path of the first value of nested arrays that is not a number, boolean or bigint, or null. */
function badLeaf(x: unknown): number[] | null {
  if (!Array.isArray(x)) return isLeaf(x) ? null : [];
  for (let i = 0; i < x.length; i++) {
    const p = badLeaf(x[i]);
    if (p) return [i, ...p];
  }
  return null;
}

/** The shape of nested arrays (from the first element of each level); ragged data is refused, as PyTorch. */
function shapeOf(x: Nested): number[] {
  const s: number[] = [];
  for (let cur: Nested = x; Array.isArray(cur); cur = cur[0]) s.push(cur.length);
  const check = (v: Nested, dim: number): void => {
    if (dim === s.length) {
      if (Array.isArray(v)) throw new RangeError(`tensor(): expected a number at dim ${dim}, got a sequence`);
      return;
    }
    if (!Array.isArray(v)) throw new RangeError(`tensor(): expected a sequence at dim ${dim}, got ${v}`);
    if (v.length !== s[dim]) throw new RangeError(`tensor(): expected sequence of length ${s[dim]} at dim ${dim} (got ${v.length})`);
    for (const e of v) check(e, dim + 1);
  };
  check(x, 0);
  return s;
}

/**
 * A tensor from JS data (always copied): nested arrays, or a typed array with an explicit shape
 * (default: 1-D). The dtype of nested arrays, unless given: bool when every value is a boolean, int64 when
 * every value is a BigInt (integers, as PyTorch's ints, kept exact), else float32 (JS cannot tell 1 from
 * 1.0, so [true, 2] is float32 [1, 2] where PyTorch gives int64).
 * For an integer dtype, values are truncated toward zero (as PyTorch) and a value outside the
 * dtype's range (or NaN) throws a RangeError; for bool, every nonzero value (NaN too) is true.
 */
export function tensor(data: Nested | TypedArray, o: CreateOptions & { shape?: number[] } = {}): Tensor {
  let buf: TypedArray;
  let shape: number[];
  let dtype: DType;
  if (ArrayBuffer.isView(data)) {
    buf = data as TypedArray;
    if (buf instanceof Uint16Array && o.dtype !== 'float16' && o.dtype !== 'bfloat16') {
      // Its values are the raw bits of half floats: read as another dtype they would be garbage.
      throw new TypeError(`tensor(): a Uint16Array holds float16 or bfloat16 bits: pass dtype 'float16' or 'bfloat16'${o.dtype ? ` (got '${o.dtype}')` : ''}`);
    }
    dtype = o.dtype ?? dtypeOfArray(buf);
    shape = o.shape ?? [buf.length];
    const natural = buf instanceof Uint16Array ? dtype : dtypeOfArray(buf);
    if (natural !== dtype) {
      checkRange(buf as Iterable<number | bigint>, dtype);
      const t = wrap(native.fromBuffer(buf, shape, natural, null));
      try {
        return finish(t.to({ dtype, device: dev(o) ?? undefined }), o);
      } finally {
        t.dispose();
      }
    }
  } else {
    const bad = badLeaf(data);
    if (bad) {
      const at = bad.length ? ` at index [${bad.join('][')}]` : '';
      const v = bad.reduce((x: unknown, i) => (x as unknown[])[i], data);
      const hint = v instanceof Tensor ? ' (copy a tensor with clone())' : '';
      throw new TypeError(`tensor(): expected numbers, booleans or nested arrays of them, got ${describeValue(v)}${at}${hint}`);
    }
    const nested = shapeOf(data); // refuses ragged data, also where a shape is given
    shape = o.shape ?? nested;
    const flat = (Array.isArray(data) ? (data as unknown[]).flat(Infinity) : [data]) as (number | boolean | bigint)[];
    // (BigInts as float32 were rounded: 2n ** 60n + 1n lost its last bits without a word)
    const all = (type: string) => flat.length > 0 && flat.every((v) => typeof v === type);
    dtype = o.dtype ?? (all('boolean') ? 'bool' : all('bigint') ? 'int64' : 'float32');
    const count = shape.reduce((a, b) => a * b, 1);
    if (flat.length !== count) throw new RangeError(`tensor(): ragged or mismatched data: ${flat.length} values for shape [${shape}]`);
    buf = toTyped(flat, dtype);
    if (dtype === 'float16' || dtype === 'bfloat16') {
      const t = wrap(native.fromBuffer(buf, shape, 'float32', null));
      try {
        return finish(t.to({ dtype, device: dev(o) ?? undefined }), o);
      } finally {
        t.dispose();
      }
    }
  }
  return finish(wrap(native.fromBuffer(buf, shape, dtype, dev(o))), o);
}

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int64: [-(2 ** 63), 2 ** 63], // the upper bound excluded below (2^63 - 1 is not a double)
  int32: [-(2 ** 31), 2 ** 31 - 1],
  int16: [-(2 ** 15), 2 ** 15 - 1],
  int8: [-128, 127],
  uint8: [0, 255],
};

/** Refuses a value (NaN too) outside an integer dtype's range, which a conversion would wrap or saturate. */
function checkRange(values: Iterable<number | bigint>, dtype: DType): void {
  const range = INT_RANGE[dtype];
  if (!range) return;
  // a BigInt is compared exactly: as a number, 2^63 - 1 would round up to 2^63
  const [lo, hi] = range;
  for (const x of values) {
    const inRange =
      typeof x === 'bigint' ? x >= BigInt(lo) && (dtype === 'int64' ? x < BigInt(hi) : x <= BigInt(hi)) : x >= lo && x <= hi && (dtype !== 'int64' || x < hi);
    if (!inRange) {
      throw new RangeError(`tensor(): value ${x} cannot be converted to type ${dtype} without overflow`);
    }
  }
}

function toTyped(flat: (number | boolean | bigint)[], dtype: DType): TypedArray {
  checkRange(
    flat.map((v) => (typeof v === 'bigint' ? v : Number(v))),
    dtype,
  );
  const nums = flat.map(Number);
  switch (dtype) {
    case 'float64':
      return Float64Array.from(nums);
    case 'int64':
      // a BigInt as it is: through a number, one beyond 2^53 would be rounded
      return BigInt64Array.from(flat, (v) => (typeof v === 'bigint' ? v : BigInt(Math.trunc(Number(v)))));
    case 'int32':
      return Int32Array.from(nums);
    case 'int16':
      return Int16Array.from(nums);
    case 'int8':
      return Int8Array.from(nums);
    case 'uint8':
    case 'bool':
      return Uint8Array.from(nums.map((v) => (dtype === 'bool' ? (v !== 0 ? 1 : 0) : v)));
    default:
      return Float32Array.from(nums);
  }
}
