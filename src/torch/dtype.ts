// Element types and devices, as string literals.
/** A tensor's element type, named as in PyTorch without the `torch.` prefix ('float32', 'int64', ...). */
export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';
/** Where a tensor lives: 'cpu', 'cuda' (the current CUDA device) or 'cuda:N'. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

/** The device's type, as autocast takes it (PyTorch: `torch.device(d).type`). */
export function deviceType(device: Device | string): 'cpu' | 'cuda' {
  return device.startsWith('cuda') ? 'cuda' : 'cpu';
}

export const FLOAT_DTYPES: readonly DType[] = ['float32', 'float64', 'float16', 'bfloat16'];
export const DTYPES: readonly DType[] = [...FLOAT_DTYPES, 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

/** Whether d is a floating-point dtype (float32, float64, float16, bfloat16). Like torch.dtype.is_floating_point. */
export function isFloating(d: DType): boolean {
  return FLOAT_DTYPES.includes(d);
}

/** The size of one element of dtype d in bytes (bool: 1); a name that is not a dtype is a TypeError. Like torch.dtype.itemsize. */
export function dtypeBytes(d: DType): number {
  switch (d) {
    case 'float64':
    case 'int64':
      return 8;
    case 'float32':
    case 'int32':
      return 4;
    case 'float16':
    case 'bfloat16':
    case 'int16':
      return 2;
    case 'int8':
    case 'uint8':
    case 'bool':
      return 1;
    default:
      throw new TypeError(`dtypeBytes: unknown dtype '${String(d)}'`);
  }
}

/**
 * The JS typed arrays that hold tensor data, in and out: one per dtype, with a Uint16Array holding
 * the raw bits of float16 or bfloat16 and a Uint8Array holding uint8 or bool.
 */
export type TypedArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array | Uint16Array;

/** The dtype a typed array maps to when no dtype is given. */
export function dtypeOfArray(a: TypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint8Array) return 'uint8';
  if (a instanceof Uint16Array) throw new TypeError('a Uint16Array is ambiguous (float16 or bfloat16 bits): pass dtype');
  const name = (a as object).constructor?.name ?? 'typed array';
  throw new TypeError(`a ${name} has no tensor dtype (use a Float32Array, Float64Array, BigInt64Array, Int32Array, Int16Array, Int8Array or Uint8Array)`);
}

/** A typed array view over raw bytes of the given dtype (half types as raw Uint16 bits). */
export function viewAs(d: DType, buf: ArrayBuffer): TypedArray {
  switch (d) {
    case 'float32':
      return new Float32Array(buf);
    case 'float64':
      return new Float64Array(buf);
    case 'int64':
      return new BigInt64Array(buf);
    case 'int32':
      return new Int32Array(buf);
    case 'int16':
      return new Int16Array(buf);
    case 'int8':
      return new Int8Array(buf);
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(buf);
    default:
      return new Uint8Array(buf);
  }
}
