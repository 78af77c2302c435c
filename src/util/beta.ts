// Gamma and Beta variates from a stream of uniform draws, the one sampler behind mixup / cutmix's λ
// (the data pipeline's Rng and fine-tuning's torch.Generator each supply their own uniforms).

/** A uniform draw in [0, 1). */
export type Uniform = () => number;

/** Standard normal by Box–Muller (two draws; 1 − u keeps the logarithm finite). */
function normal(uniform: Uniform): number {
  return Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** Gamma(a, 1) by Marsaglia & Tsang (boosted for a < 1). For a tiny `a` it underflows to 0. */
export function sampleGamma(a: number, uniform: Uniform): number {
  if (!(a > 0)) throw new RangeError(`gamma: shape must be > 0, got ${a}`);
  if (a < 1) return sampleGamma(a + 1, uniform) * Math.pow(1 - uniform(), 1 / a);
  const d = a - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = normal(uniform);
    const v0 = 1 + c * x;
    if (v0 <= 0) continue;
    const v = v0 * v0 * v0;
    const u = 1 - uniform();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/**
 * Beta(a, b) as X / (X + Y) of two Gamma draws. With tiny shapes (α 1e-6) both draws underflow to 0,
 * and 0 / 0 would be NaN: 0.5 then, the middle of a distribution whose mass sits at both ends.
 */
export function sampleBetaFrom(a: number, b: number, uniform: Uniform): number {
  const x = sampleGamma(a, uniform);
  const y = sampleGamma(b, uniform);
  return x + y === 0 ? 0.5 : x / (x + y);
}
