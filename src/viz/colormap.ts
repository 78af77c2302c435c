// Colour maps for scalar maps: 'turbo' (Google's rainbow replacement; polynomial fit by its
// authors, Apache-2.0) as a 256-entry table. Value 1 is the warm (dark red) end, 0 the cold end.
/** A colour as [red, green, blue], each 0..255. */
export type RGB = readonly [number, number, number];

function turboAt(x: number): RGB {
  const x2 = x * x;
  const x3 = x2 * x;
  const x4 = x2 * x2;
  const x5 = x4 * x;
  const r = 0.13572138 + 4.6153926 * x - 42.66032258 * x2 + 132.13108234 * x3 - 152.94239396 * x4 + 59.28637943 * x5;
  const g = 0.09140261 + 2.19418839 * x + 4.84296658 * x2 - 14.18503333 * x3 + 4.27729857 * x4 + 2.82956604 * x5;
  const b = 0.1066733 + 12.64194608 * x - 60.58204836 * x2 + 110.36276771 * x3 - 89.90310912 * x4 + 27.34824973 * x5;
  const q = (v: number) => Math.round(Math.min(1, Math.max(0, v)) * 255);
  return [q(r), q(g), q(b)];
}

/** The turbo table: 256 RGB entries, index 255 = value 1. */
export const TURBO: readonly RGB[] = Array.from({ length: 256 }, (_, i) => turboAt(i / 255));

/** The colour of a value in [0, 1] (clamped; NaN and ±Infinity map to 0). */
export function colorize(v: number, table: readonly RGB[] = TURBO): RGB {
  const x = Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0;
  return table[Math.round(x * (table.length - 1))];
}

/** The table index whose colour is nearest (squared RGB distance) to c. */
export function nearestIndex(c: RGB, table: readonly RGB[] = TURBO): number {
  let best = 0;
  let bestD = Infinity;
  table.forEach((t, i) => {
    const d = (t[0] - c[0]) ** 2 + (t[1] - c[1]) ** 2 + (t[2] - c[2]) ** 2;
    if (d < bestD) {
      bestD = d;
      best = i;
    }
  });
  return best;
}

/** Scales values to [0, 1] by their min and max (a constant map becomes all 0.5). */
export function minMax(values: ArrayLike<number>): Float32Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  const out = new Float32Array(values.length);
  const span = hi - lo;
  for (let i = 0; i < values.length; i++) out[i] = span > 0 ? (values[i] - lo) / span : 0.5;
  return out;
}

/**
 * Order values -> "earliness" in [0, 1]: the first predicted patch gets 1 (warmest), the last 0.
 * Uses ranks (ties keep index order), so every order type spreads over the whole colour range.
 */
export function orderEarliness(order: ArrayLike<number>): Float32Array {
  const n = order.length;
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => order[a] - order[b] || a - b);
  const out = new Float32Array(n);
  idx.forEach((patch, rank) => {
    out[patch] = n > 1 ? 1 - rank / (n - 1) : 1;
  });
  return out;
}
