// Grad mode. libtorch's grad mode is thread-local; all ops run on the JS thread.
import { native } from './native';

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const prev = native.isGradEnabled();
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

/**
 * Runs fn with autograd recording switched on, even inside {@link noGrad}; the previous mode comes
 * back when fn ends. Like torch.enable_grad(). fn must be synchronous: a returned Promise throws.
 */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

/** Whether autograd is recording ops right now (false inside {@link noGrad}). Like torch.is_grad_enabled(). */
export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/**
 * Mixed precision: inside fn, eligible ops (matmul, linear, conv, attention) run in `dtype` on
 * `device` while parameters stay float32 (libtorch's autocast). Regions nest as in PyTorch: the
 * previous state comes back when fn ends, and `enabled: false` turns autocast off inside an
 * autocast region (for work that must stay float32).
 */
export function autocast<T>(opts: { device: 'cpu' | 'cuda'; dtype?: 'bfloat16' | 'float16'; enabled?: boolean }, fn: () => T): T {
  const [wasOn, wasDtype] = native.getAutocast(opts.device);
  const on = opts.enabled !== false;
  native.setAutocast(on, opts.device, opts.dtype ?? wasDtype, false);
  try {
    const r = fn();
    // The state is switched back before the rest of an async fn runs: refuse it, as noGrad does.
    if (r instanceof Promise) throw new Error('autocast: fn must be synchronous');
    return r;
  } finally {
    // Leaving the outermost region drops the cached low-precision weight copies, as PyTorch does.
    native.setAutocast(wasOn, opts.device, wasDtype, !wasOn);
  }
}

/** The autocast state of a device type: whether it is on, and its dtype. */
export function autocastState(device: 'cpu' | 'cuda'): { enabled: boolean; dtype: string } {
  const [enabled, dtype] = native.getAutocast(device);
  return { enabled, dtype };
}
