// Inverse DCTs for the JPEG decoder.
//
// `idct8` is the AAN floating-point IDCT (as in IJG's jidctflt.c) working on coefficients that were
// dequantised with a table pre-multiplied by `aanScaledQuant`. `idctReduced` produces an N×N output
// (N = 4, 2, 1) equal to the r×r box average (r = 8/N) of the full 8×8 IDCT restricted to the
// frequencies below N, which is how the decoder downsamples in the DCT domain.
//
// Outputs are written through a Uint8ClampedArray, whose stores round and clamp to 0..255.

const SQRT2 = 1.414213562;

/** Natural (row-major) index of the k-th coefficient in zig-zag order, padded for corrupt runs. */
export const ZIGZAG = new Int32Array([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22,
  15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
  // extra entries so that a corrupt run overshooting 63 lands harmlessly
  63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
]);

const AAN = new Float64Array(8);
AAN[0] = 1;
for (let k = 1; k < 8; k++) AAN[k] = Math.cos((k * Math.PI) / 16) * Math.SQRT2;

const aanCache = new Map<string, Float64Array>();

/** Quantisation table (natural order) pre-scaled for `idct8`, including the final 1/8 (cached). */
export function aanScaledQuant(q: Uint16Array): Float64Array {
  const key = String.fromCharCode.apply(null, q as unknown as number[]);
  let out = aanCache.get(key);
  if (out) return out;
  out = new Float64Array(64);
  for (let u = 0; u < 8; u++) for (let v = 0; v < 8; v++) out[u * 8 + v] = (q[u * 8 + v] * AAN[u] * AAN[v]) / 8;
  if (aanCache.size > 64) aanCache.clear();
  aanCache.set(key, out);
  return out;
}

/** Quantisation table as floats (natural order) for `idctReduced`. */
export function plainQuant(q: Uint16Array): Float64Array {
  const out = new Float64Array(64);
  for (let i = 0; i < 64; i++) out[i] = q[i];
  return out;
}

const ws = new Float64Array(64);

/**
 * Full 8×8 IDCT of dequantised coefficients `blk` (natural order, AAN-prescaled), adding 128.
 * Writes 8×8 pixels at out[o + y*stride + x]. `blk` is left unchanged.
 */
export function idct8(blk: Float32Array | Float64Array, out: Uint8ClampedArray, o: number, stride: number): void {
  // Pass 1: columns.
  for (let c = 0; c < 8; c++) {
    const i1 = blk[8 + c];
    const i2 = blk[16 + c];
    const i3 = blk[24 + c];
    const i4 = blk[32 + c];
    const i5 = blk[40 + c];
    const i6 = blk[48 + c];
    const i7 = blk[56 + c];
    if (i1 === 0 && i2 === 0 && i3 === 0 && i4 === 0 && i5 === 0 && i6 === 0 && i7 === 0) {
      const dc = blk[c];
      ws[c] = dc;
      ws[8 + c] = dc;
      ws[16 + c] = dc;
      ws[24 + c] = dc;
      ws[32 + c] = dc;
      ws[40 + c] = dc;
      ws[48 + c] = dc;
      ws[56 + c] = dc;
      continue;
    }
    const i0 = blk[c];
    // even part
    const t10 = i0 + i4;
    const t11 = i0 - i4;
    const t13 = i2 + i6;
    const t12 = (i2 - i6) * SQRT2 - t13;
    const e0 = t10 + t13;
    const e3 = t10 - t13;
    const e1 = t11 + t12;
    const e2 = t11 - t12;
    // odd part
    const z13 = i5 + i3;
    const z10 = i5 - i3;
    const z11 = i1 + i7;
    const z12 = i1 - i7;
    const o7 = z11 + z13;
    const o11 = (z11 - z13) * SQRT2;
    const z5 = (z10 + z12) * 1.847759065;
    const o10 = 1.0823922 * z12 - z5;
    const o12 = -2.61312593 * z10 + z5;
    const o6 = o12 - o7;
    const o5 = o11 - o6;
    const o4 = o10 + o5;
    ws[c] = e0 + o7;
    ws[56 + c] = e0 - o7;
    ws[8 + c] = e1 + o6;
    ws[48 + c] = e1 - o6;
    ws[16 + c] = e2 + o5;
    ws[40 + c] = e2 - o5;
    ws[32 + c] = e3 + o4;
    ws[24 + c] = e3 - o4;
  }
  // Pass 2: rows.
  for (let r = 0; r < 64; r += 8) {
    const i0 = ws[r];
    const i1 = ws[r + 1];
    const i2 = ws[r + 2];
    const i3 = ws[r + 3];
    const i4 = ws[r + 4];
    const i5 = ws[r + 5];
    const i6 = ws[r + 6];
    const i7 = ws[r + 7];
    const t10 = i0 + i4;
    const t11 = i0 - i4;
    const t13 = i2 + i6;
    const t12 = (i2 - i6) * SQRT2 - t13;
    const e0 = t10 + t13 + 128;
    const e3 = t10 - t13 + 128;
    const e1 = t11 + t12 + 128;
    const e2 = t11 - t12 + 128;
    const z13 = i5 + i3;
    const z10 = i5 - i3;
    const z11 = i1 + i7;
    const z12 = i1 - i7;
    const o7 = z11 + z13;
    const o11 = (z11 - z13) * SQRT2;
    const z5 = (z10 + z12) * 1.847759065;
    const o10 = 1.0823922 * z12 - z5;
    const o12 = -2.61312593 * z10 + z5;
    const o6 = o12 - o7;
    const o5 = o11 - o6;
    const o4 = o10 + o5;
    out[o] = e0 + o7;
    out[o + 7] = e0 - o7;
    out[o + 1] = e1 + o6;
    out[o + 6] = e1 - o6;
    out[o + 2] = e2 + o5;
    out[o + 5] = e2 - o5;
    out[o + 4] = e3 + o4;
    out[o + 3] = e3 - o4;
    o += stride;
  }
}

/** Fills an n×n block with one value (DC-only block). */
export function fillBlock(value: number, n: number, out: Uint8ClampedArray, o: number, stride: number): void {
  for (let y = 0; y < n; y++, o += stride) for (let x = 0; x < n; x++) out[o + x] = value;
}

// Reduced IDCT matrices: R[n][8*k + u] for output size n (1, 2, 4), output k, frequency u < n.
const REDUCED: Float64Array[] = [];
for (const n of [1, 2, 4]) {
  const r = 8 / n;
  const m = new Float64Array(n * 8);
  for (let k = 0; k < n; k++) {
    for (let u = 0; u < n; u++) {
      const cu = u === 0 ? Math.SQRT1_2 : 1;
      let s = 0;
      for (let j = 0; j < r; j++) s += (cu / 2) * Math.cos(((2 * (r * k + j) + 1) * u * Math.PI) / 16);
      m[8 * k + u] = s / r;
    }
  }
  REDUCED[n] = m;
}

const wsr = new Float64Array(32);

/** Reduced IDCT to an n×n block (n = 1, 2, 4) from dequantised (plain) coefficients. */
export function idctReduced(blk: Float32Array | Float64Array, n: number, out: Uint8ClampedArray, o: number, stride: number): void {
  if (n === 1) {
    out[o] = blk[0] / 8 + 128;
    return;
  }
  const m = REDUCED[n];
  // columns: for each column u < n, compute n outputs over rows v < n
  for (let u = 0; u < n; u++) {
    for (let k = 0; k < n; k++) {
      let s = 0;
      for (let v = 0; v < n; v++) s += m[8 * k + v] * blk[v * 8 + u];
      wsr[k * 8 + u] = s;
    }
  }
  for (let k = 0; k < n; k++, o += stride) {
    for (let x = 0; x < n; x++) {
      let s = 128;
      for (let u = 0; u < n; u++) s += m[8 * x + u] * wsr[k * 8 + u];
      out[o + x] = s;
    }
  }
}
