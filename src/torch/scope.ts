// Deterministic tensor lifetimes. Every Tensor created while a scope is open belongs to it and is
// disposed when the scope ends, except what the scope returns (which moves to the enclosing scope)
// and what was kept with keep(). Scopes are synchronous and nest.
//
// Tensors outside every scope (made there, returned from the outermost scope, or kept) go to a
// short "nursery" list. Each nursery sweep gives the still-undisposed ones a GC backstop
// (Tensor.guard()): a V8 finalizer costs about as much as a small op, so temporaries that are
// disposed right away, and everything a scope frees, never pay for one. The nursery holds its
// tensors strongly until the next sweep: after NURSERY_SIZE tensors, or when the current task ends.
import type { Tensor } from './tensor';
import { describeValue } from './errors';

const frames: Tensor[][] = [];
const NURSERY_SIZE = 32;
// A fixed array and a count (not push/length = 0, which reallocates and costs the GC ~0.3 µs per tensor).
const nursery: (Tensor | undefined)[] = new Array(NURSERY_SIZE).fill(undefined);
let nurseryCount = 0;
let sweepScheduled = false;

function sweep(): void {
  for (let i = 0; i < nurseryCount; i++) {
    nursery[i]!.guard();
    nursery[i] = undefined;
  }
  nurseryCount = 0;
}

function sweepAtEndOfTask(): void {
  sweepScheduled = false;
  sweep();
}

function adopt(t: Tensor): void {
  if (nurseryCount === NURSERY_SIZE) sweep(); // before adding t: its creator may still dispose it
  nursery[nurseryCount++] = t;
  if (!sweepScheduled) {
    sweepScheduled = true;
    setImmediate(sweepAtEndOfTask).unref();
  }
}

/** Called by the Tensor constructor. */
export function track(t: Tensor): void {
  const n = frames.length; // (no frames[-1]: an out-of-bounds read is V8's slow path)
  if (n > 0) frames[n - 1].push(t);
  else adopt(t);
}

type Constructor = abstract new (...args: never[]) => unknown;

function collect(value: unknown, out: Set<Tensor>, seen: Set<unknown>, TensorClass: Constructor): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (value instanceof TensorClass) {
    out.add(value as Tensor);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, out, seen, TensorClass);
    return;
  }
  if (value instanceof Map) {
    for (const v of value.values()) collect(v, out, seen, TensorClass);
    return;
  }
  // a plain object: a literal, or a dictionary made without a prototype (Object.create(null))
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    for (const v of Object.values(value as Record<string, unknown>)) collect(v, out, seen, TensorClass);
  }
}

let tensorClass: Constructor | undefined;
export function registerTensorClass(c: Constructor): void {
  tensorClass = c;
}

/**
 * Runs fn and disposes every tensor created inside it, except tensors found in its return value
 * (arrays, Maps and plain objects, Object.create(null) ones too, are searched) and tensors passed to keep().
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
    // The rest of fn runs on without its tensors and fails on them: its promise is the caller's no more
    // (they get the error below), so its rejection must not crash the process as an unhandled one.
    result.catch(() => {});
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

/**
 * Exempts tensors from every scope: they live until dispose() (or garbage collection). Takes a Tensor
 * or an array of Tensors; anything else is a TypeError (it would otherwise break the next nursery sweep).
 */
export function keep<T extends Tensor | Tensor[]>(t: T): T {
  const items: unknown[] = Array.isArray(t) ? t : [t];
  const bad = items.findIndex((x) => !(tensorClass && x instanceof tensorClass));
  if (bad >= 0) {
    throw new TypeError(`keep(): expected a Tensor or an array of Tensors, got ${describeValue(items[bad])}${Array.isArray(t) ? ` at index ${bad}` : ''}`);
  }
  for (const x of items as Tensor[]) {
    if (x.kept) continue;
    x.kept = true;
    adopt(x);
  }
  return t;
}

/** How many scopes are open (for tests). */
export function scopeDepth(): number {
  return frames.length;
}
