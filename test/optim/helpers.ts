// Shared helpers of the optimiser tests: golden files, float64 tensors and comparisons.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as torch from '../../src/torch';
import type { Optimizer, BaseHyper, ParamGroupSpec } from '../../src/optim';

export type Nested = number | Nested[];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function golden<T = any>(name: string): T {
  const file = path.join(__dirname, '..', '..', '..', 'test', 'golden', 'optim', name);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

export function t64(data: Nested, requiresGrad = false): torch.Tensor {
  return torch.tensor(data as number[], { dtype: 'float64', requiresGrad });
}

export function shapeOf(x: Nested): number[] {
  const s: number[] = [];
  let cur = x;
  while (Array.isArray(cur)) {
    s.push(cur.length);
    cur = cur[0];
  }
  return s;
}

function flat(x: Nested): number[] {
  return Array.isArray(x) ? (x as Nested[]).flatMap(flat) : [x];
}

/** Max |a − e| ≤ tol·max(1, |e|) elementwise, with a readable failure. */
export function assertClose(actual: torch.Tensor | number[] | number, expected: Nested, tol: number, what: string): void {
  const a = typeof actual === 'number' ? [actual] : Array.isArray(actual) ? actual : Array.from(actual.toFloat64Array());
  const e = flat(expected);
  assert.equal(a.length, e.length, `${what}: ${a.length} values, expected ${e.length}`);
  for (let i = 0; i < e.length; i++) {
    const err = Math.abs(a[i] - e[i]);
    if (!(err <= tol * Math.max(1, Math.abs(e[i])))) {
      assert.fail(`${what}[${i}]: got ${a[i]}, expected ${e[i]} (|diff| ${err} > tol ${tol})`);
    }
  }
}

/** Sets p.grad to a copy of data (or null); the parameter holds the only reference. */
export function setGrad(p: torch.Tensor, data: Nested | null): void {
  if (data === null) {
    p.grad = null;
    return;
  }
  const g = t64(data);
  p.grad = g;
  g.dispose();
}

export interface GoldenCase {
  groups: Array<{ params: string[]; [k: string]: unknown }>;
  initial: Record<string, Nested>;
  steps: Array<{ lrs: number[]; grads: Record<string, Nested | null> }>;
  expected: Array<Record<string, Nested>>;
  exclude?: string[];
}

export function makeParams(initial: Record<string, Nested>): Map<string, torch.Tensor> {
  return new Map(Object.entries(initial).map(([n, v]) => [n, torch.keep(t64(v, true))]));
}

export function disposeAll(ts: Iterable<torch.Tensor>): void {
  for (const t of ts) t.dispose();
}

/** Group specs of a golden case: names → tensors, PyTorch's snake_case hyper-parameters → camelCase. */
export function groupSpecs(c: GoldenCase, params: Map<string, torch.Tensor>): ParamGroupSpec[] {
  return c.groups.map((g) => {
    const spec: ParamGroupSpec = { params: g.params.map((n) => [n, params.get(n)!] as [string, torch.Tensor]) };
    for (const [k, v] of Object.entries(g)) {
      if (k === 'params') continue;
      spec[k.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase())] = v;
    }
    return spec;
  });
}

/** Runs steps [from, to) of a golden case on an existing optimiser and checks the parameters after each. */
export function runSteps(
  c: GoldenCase,
  params: Map<string, torch.Tensor>,
  opt: Optimizer<BaseHyper>,
  from: number,
  to: number,
  tol: number,
  label: string,
): void {
  for (let k = from; k < to; k++) {
    const s = c.steps[k];
    opt.paramGroups.forEach((g, i) => {
      g.lr = s.lrs[i];
    });
    for (const [n, p] of params) setGrad(p, s.grads[n]);
    opt.step();
    for (const [n, p] of params) assertClose(p, c.expected[k][n], tol, `${label} step ${k} ${n}`);
  }
}

/** Runs a whole golden case with a fresh optimiser from makeOpt. */
export function runCase(c: GoldenCase, makeOpt: (groups: ParamGroupSpec[]) => Optimizer<BaseHyper>, tol: number, label: string): void {
  const params = makeParams(c.initial);
  const opt = makeOpt(groupSpecs(c, params));
  try {
    runSteps(c, params, opt, 0, c.steps.length, tol, label);
  } finally {
    opt.dispose();
    disposeAll(params.values());
  }
}

export const TOL = 1e-9;
