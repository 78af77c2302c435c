// A float64 finite-difference gradient checker (the counterpart of torch.autograd.gradcheck).
//
// fn's output y is reduced to the scalar L = sum(y * r) with a fixed random projection r, so one
// backward() gives dL/dx for every input. Each checked input then has up to `maxElements` of its
// elements (sampled with a seeded PRNG) perturbed by ±eps, and the central difference
// (L(x+eps) - L(x-eps)) / 2eps is compared with the analytic gradient.
// Everything the checker creates lives in torch.scope()s and is disposed before it returns.
import { mulberry32 as prng } from '../util/prng';
import { Tensor } from './tensor';
import { scope } from './scope';
import { noGrad } from './autograd';
import { tensor, randn } from './creation';
import { Generator } from './random';
import { isFloating } from './dtype';

export interface GradcheckOptions {
  /** Finite-difference step. */
  eps?: number;
  /** Absolute tolerance: |analytic - numeric| <= atol + rtol * |numeric|. */
  atol?: number;
  rtol?: number;
  /** At most this many elements are checked per input (sampled without replacement, seeded); a whole number of at least 1. */
  maxElements?: number;
  /** Seeds the element sampling and the output projection. */
  seed?: number;
  /** Indices of the inputs to differentiate; default: every floating-point input. */
  wrt?: number[];
  /** Throw a GradcheckError on a mismatch (default); otherwise return the failing report. */
  raise?: boolean;
}

export interface GradcheckMismatch {
  input: number;
  /** Flat (row-major) element index and the same as a multi-index. */
  element: number;
  index: number[];
  analytic: number;
  numeric: number;
}

export interface GradcheckReport {
  ok: boolean;
  /** Per checked input: how many elements were compared and the largest absolute error. */
  inputs: { input: number; shape: number[]; checked: number; maxAbsError: number }[];
  mismatches: GradcheckMismatch[];
}

export class GradcheckError extends Error {
  constructor(readonly report: GradcheckReport) {
    super(formatReport(report));
    this.name = 'GradcheckError';
  }
}

function formatReport(r: GradcheckReport): string {
  const lines = [`gradcheck failed: ${r.mismatches.length} mismatching element(s)`];
  for (const m of r.mismatches.slice(0, 10)) {
    lines.push(
      `  input ${m.input} element ${m.element} [${m.index.join(', ')}]: analytic ${m.analytic} vs numeric ${m.numeric}` +
        ` (diff ${Math.abs(m.analytic - m.numeric).toExponential(3)})`,
    );
  }
  if (r.mismatches.length > 10) lines.push(`  ... and ${r.mismatches.length - 10} more`);
  return lines.join('\n');
}

function sample(n: number, k: number, rand: () => number): number[] {
  if (n <= k) return Array.from({ length: n }, (_, i) => i);
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rand() * (n - i));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, k).sort((a, b) => a - b);
}

function unravel(flat: number, shape: number[]): number[] {
  const out = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    out[d] = flat % shape[d];
    flat = Math.floor(flat / shape[d]);
  }
  return out;
}

/**
 * Checks fn's gradients with respect to float64 inputs against central differences.
 * Non-floating inputs (indices, masks) are passed through unchanged. Returns the report; throws a
 * GradcheckError naming input, element, analytic and numeric values on a mismatch.
 */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: GradcheckOptions = {}): GradcheckReport {
  const eps = opts.eps ?? 1e-6;
  const atol = opts.atol ?? 1e-5;
  const rtol = opts.rtol ?? 1e-4;
  const maxElements = opts.maxElements ?? 40;
  // a negative one sliced off the last element (checking n-1), 0 or NaN checked nothing and passed
  if (!Number.isInteger(maxElements) || maxElements < 1)
    throw new RangeError(`gradcheck: maxElements must be a whole number of at least 1, got ${maxElements}`);
  const seed = opts.seed ?? 1234;
  const wrt = opts.wrt ?? inputs.map((t, i) => (isFloating(t.dtype) ? i : -1)).filter((i) => i >= 0);
  for (const i of wrt) {
    if (!Number.isInteger(i) || i < 0 || i >= inputs.length)
      throw new RangeError(`gradcheck: wrt index ${i} is not an input's index (${inputs.length} inputs: 0..${inputs.length - 1})`);
    if (inputs[i].dtype !== 'float64') {
      throw new TypeError(`gradcheck: input ${i} is ${inputs[i].dtype}; finite differences need float64 inputs`);
    }
  }
  if (wrt.length === 0) throw new Error('gradcheck: no floating-point input to check');

  const report: GradcheckReport = { ok: true, inputs: [], mismatches: [] };
  scope(() => {
    // Detached float64 copies: the checker never touches the caller's tensors or their .grad.
    const base = inputs.map((t, i) => (wrt.includes(i) ? t.detach().clone() : t));
    const leaves = base.map((t, i) => (wrt.includes(i) ? t.detach().requiresGrad_(true) : t));

    // Analytic gradients of L = sum(y * r).
    const y = fn(...leaves);
    if (!(y instanceof Tensor)) throw new TypeError('gradcheck: fn must return a Tensor');
    if (!isFloating(y.dtype)) throw new TypeError(`gradcheck: fn returned a ${y.dtype} tensor; it must be floating-point`);
    const proj = randn(y.shape, { dtype: y.dtype, generator: new Generator(seed) });
    const loss = y.mul(proj).sum();
    if (!loss.requiresGrad) throw new Error('gradcheck: the output does not depend on any checked input (no autograd history)');
    loss.backward();
    const analytic = wrt.map((i) => {
      const g = leaves[i].grad;
      return g === null ? new Float64Array(base[i].numel) : g.contiguous().toFloat64Array();
    });
    const projData = proj.toFloat64Array();

    const evalAt = (which: number, values: Float64Array, shape: number[]): number =>
      scope(() =>
        noGrad(() => {
          const x = tensor(values, { dtype: 'float64', shape });
          const args = base.map((t, i) => (i === which ? x : t));
          const out = fn(...args);
          const o = out.contiguous().toFloat64Array();
          let s = 0;
          for (let k = 0; k < o.length; k++) s += o[k] * projData[k];
          return s;
        }),
      );

    const rand = prng(seed);
    wrt.forEach((inputIndex, w) => {
      const shape = base[inputIndex].shape;
      const values = base[inputIndex].contiguous().toFloat64Array();
      const picks = sample(values.length, maxElements, rand);
      let maxAbsError = 0;
      for (const e of picks) {
        const orig = values[e];
        values[e] = orig + eps;
        const plus = evalAt(inputIndex, values, shape);
        values[e] = orig - eps;
        const minus = evalAt(inputIndex, values, shape);
        values[e] = orig;
        const numeric = (plus - minus) / (2 * eps);
        const a = analytic[w][e];
        const err = Math.abs(a - numeric);
        if (!(err <= maxAbsError) && !Number.isNaN(maxAbsError)) maxAbsError = err; // a NaN, once seen, stays
        if (!(err <= atol + rtol * Math.abs(numeric))) {
          report.mismatches.push({ input: inputIndex, element: e, index: unravel(e, shape), analytic: a, numeric });
        }
      }
      report.inputs.push({ input: inputIndex, shape, checked: picks.length, maxAbsError });
    });
  });
  report.ok = report.mismatches.length === 0;
  if (!report.ok && opts.raise !== false) throw new GradcheckError(report);
  return report;
}
