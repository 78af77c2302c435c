// Grad mode. libtorch's grad mode is thread-local; all ops run on the JS thread.
import { native } from './native';

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const prev = native.isGradEnabled() as boolean;
  native.setGradEnabled(enabled);
  try {
    const r = fn();
    if (r instanceof Promise) throw new Error('noGrad/enableGrad: fn must be synchronous');
    return r;
  } finally {
    native.setGradEnabled(prev);
  }
}

/** Runs fn without recording autograd history. */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/**
 * Mixed precision: inside fn, eligible ops (matmul, linear, conv, attention) run in `dtype` on
 * `device` while parameters stay float32 (libtorch's autocast).
 */
export function autocast<T>(opts: { device: 'cpu' | 'cuda'; dtype: 'bfloat16' | 'float16'; enabled?: boolean }, fn: () => T): T {
  if (opts.enabled === false) return fn();
  native.setAutocast(true, opts.device, opts.dtype);
  try {
    return fn();
  } finally {
    native.setAutocast(false, opts.device, opts.dtype);
  }
}
