// The errors the native addon throws: a JavaScript Error with the op that failed and a code saying
// what kind of failure it was (native/core.cc, rethrowAsJs).

/** Every `code` a {@link TorchError} can carry, one per kind of native failure (see {@link isTorchError}). */
export const TORCH_ERROR_CODES = [
  'ERR_TORCH', // any other libtorch error (c10::Error)
  'ERR_TORCH_OOM', // out of memory (c10::OutOfMemoryError)
  'ERR_TORCH_INDEX', // index out of range (c10::IndexError)
  'ERR_TORCH_VALUE', // a bad value (c10::ValueError)
  'ERR_TORCH_TYPE', // a bad dtype or argument type (c10::TypeError)
  'ERR_TORCH_NOT_IMPLEMENTED', // the op has no kernel for this backend or dtype (a CUDA tensor on a CPU build, ...)
  'ERR_ARG', // the addon refused an argument before calling libtorch
  'ERR_NATIVE', // another C++ exception
] as const;

/** One of {@link TORCH_ERROR_CODES}. */
export type TorchErrorCode = (typeof TORCH_ERROR_CODES)[number];

/** An Error thrown by the native addon, with the kind of failure (`code`) and the addon function (`op`). */
export interface TorchError extends Error {
  code: TorchErrorCode;
  /** The addon function that failed ('matmul', 'fromBuffer', ...). */
  op: string;
}

/** Whether `e` came from the native addon (then `e.code` and `e.op` say what and where). */
export function isTorchError(e: unknown): e is TorchError {
  return (
    e instanceof Error &&
    typeof (e as { op?: unknown }).op === 'string' &&
    (TORCH_ERROR_CODES as readonly string[]).includes((e as { code?: string }).code ?? '')
  );
}

/** A wrong argument, for a message: `the string "x"`, `null`, `a Tensor`, `an Object`. */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (typeof v === 'function') return 'a function';
  if (v === null || typeof v !== 'object') return String(v);
  const name = (v as object).constructor?.name ?? 'Object';
  return `${/^[AEIOU]/i.test(name) ? 'an' : 'a'} ${name}`;
}
