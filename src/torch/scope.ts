// Deterministic tensor lifetimes. Every Tensor created while a scope is open belongs to it and is
// disposed when the scope ends, except what the scope returns (which moves to the enclosing scope)
// and what was kept with keep(). Scopes are synchronous and nest.
import type { Tensor } from './tensor';

const frames: Tensor[][] = [];

/** Called by the Tensor constructor. */
export function track(t: Tensor): void {
  const top = frames[frames.length - 1];
  if (top !== undefined) top.push(t);
}

function collect(value: unknown, out: Set<Tensor>, seen: Set<unknown>, TensorClass: Function): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (value instanceof TensorClass) { out.add(value as Tensor); return; }
  if (Array.isArray(value)) { for (const v of value) collect(v, out, seen, TensorClass); return; }
  if (value instanceof Map) { for (const v of value.values()) collect(v, out, seen, TensorClass); return; }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value as Record<string, unknown>)) collect(v, out, seen, TensorClass);
  }
}

let tensorClass: Function | undefined;
export function registerTensorClass(c: Function): void { tensorClass = c; }

/**
 * Runs fn and disposes every tensor created inside it, except tensors found in its return value
 * (arrays, Maps and plain objects are searched) and tensors passed to keep().
 */
export function scope<T>(fn: () => T): T {
  const frame: Tensor[] = [];
  frames.push(frame);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    frames.pop();
    for (const t of frame) if (!t.kept) t.dispose();
    throw e;
  }
  frames.pop();
  if (result instanceof Promise) {
    for (const t of frame) if (!t.kept) t.dispose();
    throw new Error('scope(fn): fn returned a Promise; scopes are synchronous (await outside, or use scope inside each step)');
  }
  const returned = new Set<Tensor>();
  if (tensorClass) collect(result, returned, new Set(), tensorClass);
  for (const t of frame) {
    if (t.kept) continue;
    if (returned.has(t)) track(t);
    else t.dispose();
  }
  return result;
}

/** Exempts tensors from every scope: they live until dispose() (or garbage collection). */
export function keep<T extends Tensor | Tensor[]>(t: T): T {
  if (Array.isArray(t)) for (const x of t) x.kept = true;
  else t.kept = true;
  return t;
}

/** How many scopes are open (for tests). */
export function scopeDepth(): number {
  return frames.length;
}
