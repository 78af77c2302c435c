// Shared helpers for the engine tests: deterministic inputs built in JS (no engine RNG) and
// tolerance comparisons.
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { Tensor, DType } from '../../src/torch';

import { mulberry32 as prng } from '../../src/util/prng';

export { prng };

/** Skip reason for tests of CPU-only behaviour when SEMAIM_TEST_DEVICE makes tensors default to another device. */
export const cpuOnly: string | false = torch.getDefaultDevice() === 'cpu' ? false : `CPU-only behaviour (tensors default to ${torch.getDefaultDevice()})`;

const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

export interface RndOptions {
  seed?: number;
  /** Uniform on [lo, hi) (default [-1, 1)). */
  lo?: number;
  hi?: number;
  /** Keep every value at least this far from each of these points (kinks of abs, clamp, relu...). */
  awayFrom?: number[];
  minGap?: number;
  dtype?: DType;
}

let autoSeed = 1;

/** A float64 (default) tensor of seeded uniform values, optionally kept away from kinks. */
export function rnd(shape: number[], o: RndOptions = {}): Tensor {
  const r = prng(o.seed ?? autoSeed++);
  const lo = o.lo ?? -1;
  const hi = o.hi ?? 1;
  const gap = o.minGap ?? 0.05;
  const n = numel(shape);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let v = lo + (hi - lo) * r();
    for (let tries = 0; o.awayFrom && o.awayFrom.some((k) => Math.abs(v - k) < gap) && tries < 1000; tries++) v = lo + (hi - lo) * r();
    out[i] = v;
  }
  const t = torch.tensor(out, { dtype: 'float64', shape });
  if (o.dtype && o.dtype !== 'float64') {
    const c = t.to({ dtype: o.dtype });
    t.dispose();
    return c;
  }
  return t;
}

/** int64 tensor of seeded integers in [0, high). */
export function rndInt(shape: number[], high: number, seed = autoSeed++): Tensor {
  const r = prng(seed);
  const n = numel(shape);
  const out = new BigInt64Array(n);
  for (let i = 0; i < n; i++) out[i] = BigInt(Math.floor(r() * high));
  return torch.tensor(out, { shape });
}

/** Values of a tensor as plain numbers (any dtype). */
export function values(t: Tensor): number[] {
  return Array.from(t.toFloat64Array());
}

/** Asserts two tensors (or a tensor and numbers) agree elementwise within atol + rtol*|expected|. */
export function assertClose(actual: Tensor | ArrayLike<number>, expected: Tensor | ArrayLike<number>, atol = 1e-6, rtol = 0, what = ''): void {
  if (actual instanceof Tensor && expected instanceof Tensor) {
    assert.deepEqual(actual.shape, expected.shape, `${what} shape`);
  }
  const a = actual instanceof Tensor ? actual.toFloat64Array() : Array.from(actual);
  const e = expected instanceof Tensor ? expected.toFloat64Array() : Array.from(expected);
  assert.equal(a.length, e.length, `${what} element count`);
  let worst = -1;
  let worstErr = 0;
  for (let i = 0; i < a.length; i++) {
    const bothNan = Number.isNaN(a[i]) && Number.isNaN(e[i]);
    const same = a[i] === e[i];
    const err = Math.abs(a[i] - e[i]);
    if (!bothNan && !same && !(err <= atol + rtol * Math.abs(e[i]))) {
      if (worst < 0 || err > worstErr) {
        worst = i;
        worstErr = err;
      }
    }
  }
  if (worst >= 0) {
    assert.fail(
      `${what ? what + ': ' : ''}element ${worst}: got ${a[worst]}, expected ${e[worst]} (|diff| ${worstErr.toExponential(3)} > atol ${atol} + rtol ${rtol})`,
    );
  }
}

/** Runs body inside a scope and asserts it leaves no live native tensors behind. */
export function noLeak(body: () => void): void {
  const before = torch.memoryStats().liveTensors;
  torch.scope(body);
  const after = torch.memoryStats().liveTensors;
  // (<=: a finalizer may free an older, forgotten tensor meanwhile; a leak here only ever adds.)
  assert.ok(after <= before, `live tensors before ${before}, after ${after}: the test leaked native tensors`);
}
