// Small seeded pseudo-random number generator for the data pipeline.
//
// xoshiro128** (Blackman & Vigna) seeded through splitmix32; every random decision in the data
// pipeline (shuffles, crops, augmentations, synthetic images) draws from an `Rng` derived from the
// user's seed plus a key path such as (epoch, sample index), so results do not depend on how work
// is split across worker threads.

import { sampleBetaFrom, sampleGamma } from '../util/beta';

/** Mixes a 32-bit state (splitmix32 finaliser). */
function mix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  return (z ^ (z >>> 15)) >>> 0;
}

/** Hashes a list of integers (or strings) into one 32-bit value. */
export function hashKeys(...keys: (number | string)[]): number {
  let h = 0x811c9dc5;
  for (const k of keys) {
    if (typeof k === 'string') {
      for (let i = 0; i < k.length; i++) h = mix32(h ^ k.charCodeAt(i));
      h = mix32(h ^ 0x5bd1e995);
    } else {
      // Split into two 32-bit halves so integers up to 2^53 hash fully.
      const lo = k >>> 0;
      const hi = Math.floor(k / 4294967296) >>> 0;
      h = mix32(h ^ lo);
      h = mix32(h ^ hi ^ 0x27d4eb2f);
    }
  }
  return h >>> 0;
}

/**
 * Seeded pseudo-random generator (xoshiro128**) behind every random decision of the data pipeline. It is
 * seeded from a seed plus a key path (`new Rng(seed, epoch, index)`), so a draw depends on what it is for,
 * not on which worker thread makes it.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spareNormal: number | null = null;

  /** Creates a generator from a seed and an optional key path (e.g. `new Rng(seed, epoch, index)`). */
  constructor(seed: number, ...keys: (number | string)[]) {
    let s = hashKeys(seed, ...keys);
    s = mix32(s);
    this.a = s;
    s = mix32(s);
    this.b = s;
    s = mix32(s);
    this.c = s;
    s = mix32(s);
    this.d = s;
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** Next uint32. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  float(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform float in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Uniform integer in [0, n) (n ≥ 1), unbiased. */
  int(n: number): number {
    if (!(n >= 1)) throw new RangeError(`Rng.int: n must be >= 1, got ${n}`);
    if (n <= 4294967296) {
      const limit = 4294967296 - (4294967296 % n);
      for (;;) {
        const x = this.nextU32();
        if (x < limit) return x % n;
      }
    }
    return Math.floor(this.float() * n);
  }

  /** Uniform integer in [lo, hi] inclusive. */
  intRange(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  bool(p = 0.5): boolean {
    return this.float() < p;
  }

  /** Standard normal (Box–Muller, cached pair). */
  normal(mean = 0, std = 1): number {
    if (this.spareNormal !== null) {
      const z = this.spareNormal;
      this.spareNormal = null;
      return mean + std * z;
    }
    let u = 0;
    while (u === 0) u = this.float();
    const v = this.float();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return mean + std * r * Math.cos(2 * Math.PI * v);
  }

  /** Gamma(shape, 1) (util/beta.ts). */
  gamma(shape: number): number {
    return sampleGamma(shape, () => this.float());
  }

  /** Beta(a, b) (util/beta.ts: 0.5 where both Gamma draws underflow). */
  beta(a: number, b: number): number {
    return sampleBetaFrom(a, b, () => this.float());
  }

  /** Picks one element uniformly. */
  choice<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** In-place Fisher–Yates shuffle. */
  shuffle<T extends { length: number; [i: number]: unknown }>(arr: T): T {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = arr[i];
      arr[i] = arr[j];
      arr[j] = t;
    }
    return arr;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A seeded permutation of 0..n-1. */
export function permutation(n: number, seed: number, ...keys: (number | string)[]): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  new Rng(seed, ...keys).shuffle(p);
  return p;
}
