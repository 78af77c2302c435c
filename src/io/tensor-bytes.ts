// Byte sizes of tensors by dtype and shape, checked: shared by the safetensors and torch.save readers.
import { DTYPES, dtypeBytes, type DType } from '../torch/dtype';

/** Bytes per element; throws on a name that is not a dtype. */
export function dtypeByteSize(dtype: DType): number {
  if (!DTYPES.includes(dtype)) throw new Error(`unknown dtype '${String(dtype)}'`);
  return dtypeBytes(dtype);
}

/** Byte length of a tensor of this dtype and shape; validates the shape. */
export function tensorByteLength(dtype: DType, shape: readonly number[]): number {
  let n = dtypeByteSize(dtype);
  let elements = 1; // in the order libtorch multiplies: [2^52, 2^52, 0] overflows there before the 0
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`invalid shape [${shape.join(', ')}]`);
    n *= d;
    elements *= d;
    if (!Number.isSafeInteger(elements)) throw new Error(`shape [${shape.join(', ')}] is too large`);
  }
  if (!Number.isSafeInteger(n)) throw new Error(`shape [${shape.join(', ')}] is too large`);
  return n;
}
