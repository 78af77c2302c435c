// Separable, antialiased resampling of planar images (the same convolution scheme as PIL's
// `Image.resize`: a filter whose support widens with the downscale factor, weights normalised per
// output pixel). Each plane is resampled from its own placement (see image.ts), so subsampled
// chroma is upsampled and a DCT-reduced decode is resized in the same single pass.
//
// Speed: every output pixel of an axis gets the same number of taps (padded with zero weights),
// and the inner loops are generated and cached per tap count so they are fully unrolled.
// `resampleToOutput` fuses the vertical pass with colour conversion and normalisation and writes
// CHW values straight into a batch buffer.

import type { Image, Plane } from './image';
import { scratchF32 } from './scratch';

/**
 * Resampling filter of the resize and crop transforms: 'bilinear' and 'bicubic' (a = -0.5) are antialiased
 * when downscaling, as PIL's Image.resize; 'nearest' takes one source pixel (masks use it).
 */
export type Interpolation = 'nearest' | 'bilinear' | 'bicubic';

/** Axis-aligned rectangle in source pixels; x1/y1 exclusive, may be fractional. */
export interface Rect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export interface ResampleSpec {
  /** Source region mapped onto the output. */
  sample: Rect;
  /** Source pixels outside this rectangle are never read (edge pixels are extended instead). */
  clip: Rect;
  outW: number;
  outH: number;
  /** Mirror horizontally. */
  flip: boolean;
  interp: Interpolation;
}

/** How values are written to a batch: float `v*scale[c] + bias[c]` (v in 0..255), or bytes. */
export type OutputFormat = { kind: 'float'; scale: Float32Array; bias: Float32Array } | { kind: 'uint8' };

export function filterSupport(interp: Interpolation): number {
  return interp === 'bicubic' ? 2 : interp === 'bilinear' ? 1 : 0.5;
}

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

function triangle(x: number): number {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

// Per-thread temporaries of axisWeights (not returned).
const intPool: Int32Array[] = [new Int32Array(256), new Int32Array(256)];
let f64Pool = new Float64Array(4096);
function tmpInt(k: number, n: number): Int32Array {
  if (intPool[k].length < n) intPool[k] = new Int32Array(n * 2);
  return intPool[k];
}
function tmpF64(n: number): Float64Array {
  if (f64Pool.length < n) f64Pool = new Float64Array(n * 2);
  return f64Pool;
}

export interface Axis {
  n: number;
  /** Taps per output (uniform; zero-padded). */
  taps: number;
  start: Int32Array;
  weights: Float32Array;
  /** Every output reads exactly one input with weight 1. */
  copy: boolean;
}

/**
 * Filter taps for one axis: output pixel i covers source [s0 + i*d, s0 + (i+1)*d) with d = (s1-s0)/n;
 * plane sample k covers source [p0 + k*ps, p0 + (k+1)*ps); only samples whose centre lies inside
 * [c0, c1) and k < len carry weight. Padding taps (weight 0) stay inside [0, len).
 */
export function axisWeights(
  n: number,
  s0: number,
  s1: number,
  c0: number,
  c1: number,
  p0: number,
  ps: number,
  len: number,
  interp: Interpolation,
  flip: boolean,
): Axis {
  const d = (s1 - s0) / n / ps; // plane samples per output pixel
  let lo = Math.max(0, Math.floor((c0 - p0) / ps + 1e-9));
  let hi = Math.min(len, Math.ceil((c1 - p0) / ps - 1e-9));
  if (hi <= lo) {
    lo = Math.min(Math.max(0, lo), len - 1);
    hi = lo + 1;
  }
  const start = new Int32Array(n);
  const offs = (s0 - p0) / ps;
  if (interp === 'nearest') {
    for (let i = 0; i < n; i++) {
      let k = Math.floor(offs + (i + 0.5) * d);
      if (k < lo) k = lo;
      if (k >= hi) k = hi - 1;
      start[flip ? n - 1 - i : i] = k;
    }
    return { n, taps: 1, start, weights: new Float32Array(n).fill(1), copy: true };
  }
  const fs = Math.max(d, 1);
  const support = filterSupport(interp) * fs;
  const filter = interp === 'bicubic' ? bicubic : triangle;
  const maxTaps = Math.min(len, Math.ceil(support) * 2 + 1);
  const ks = tmpInt(0, n);
  const cs = tmpInt(1, n);
  const wtmp = tmpF64(n * maxTaps);
  let taps = 1;
  for (let i = 0; i < n; i++) {
    const center = offs + (i + 0.5) * d;
    let kmin = Math.floor(center - support + 0.5);
    let kmax = Math.floor(center + support + 0.5);
    if (kmin < lo) kmin = lo;
    if (kmax > hi) kmax = hi;
    if (kmax - kmin > maxTaps) kmax = kmin + maxTaps;
    const o = i * maxTaps;
    let total = 0;
    let m = 0;
    for (let k = kmin; k < kmax; k++, m++) {
      const w = filter((k - center + 0.5) / fs);
      wtmp[o + m] = w;
      total += w;
    }
    if (m === 0 || total === 0) {
      let k = Math.floor(center);
      if (k < lo) k = lo;
      if (k >= hi) k = hi - 1;
      kmin = k;
      m = 1;
      wtmp[o] = 1;
      total = 1;
    }
    let a = 0;
    let b = m;
    while (b - a > 1 && Math.abs(wtmp[o + a] / total) < 1e-7) a++;
    while (b - a > 1 && Math.abs(wtmp[o + b - 1] / total) < 1e-7) b--;
    for (let t = a; t < b; t++) wtmp[o + t - a] = wtmp[o + t] / total;
    ks[i] = kmin + a;
    cs[i] = b - a;
    if (b - a > taps) taps = b - a;
  }
  const weights = new Float32Array(n * taps);
  let copy = taps === 1;
  for (let i = 0; i < n; i++) {
    const j = flip ? n - 1 - i : i;
    let k = ks[i];
    let shift = 0;
    if (k + taps > len) {
      shift = k + taps - len;
      k -= shift;
    }
    start[j] = k;
    for (let t = 0; t < cs[i]; t++) weights[j * taps + shift + t] = wtmp[i * maxTaps + t];
    if (copy && weights[j * taps] !== 1) copy = false;
  }
  return { n, taps, start, weights, copy };
}

// ------------------------------------------------------------------ generated kernels

type HPass = (
  src: Uint8Array,
  soff: number,
  sstride: number,
  r0: number,
  rows: number,
  xs: Int32Array,
  xw: Float32Array,
  tmp: Float32Array,
  outW: number,
) => void;
type VRow = (tmp: Float32Array, base: number, outW: number, yw: Float32Array, wo: number, acc: Float32Array) => void;

const hCache: HPass[] = [];
const vCache: VRow[] = [];
const MAX_UNROLL = 24;

function hpass(taps: number): HPass {
  if (taps > MAX_UNROLL) return hGeneric(taps);
  let f = hCache[taps];
  if (f) return f;
  // Two rows per iteration share the index and weight loads.
  const decl: string[] = [];
  const t1: string[] = [];
  const t2: string[] = [];
  for (let t = 0; t < taps; t++) {
    decl.push(`const w${t} = xw[w + ${t}];`);
    t1.push(`w${t} * src[s + ${t}]`);
    t2.push(`w${t} * src[s2 + ${t}]`);
  }
  f = new Function(
    'src',
    'soff',
    'sstride',
    'r0',
    'rows',
    'xs',
    'xw',
    'tmp',
    'outW',
    `let r = 0;
     for (; r + 1 < rows; r += 2) {
       const row = soff + (r0 + r) * sstride;
       const row2 = row + sstride;
       const o = r * outW;
       const o2 = o + outW;
       for (let x = 0, w = 0; x < outW; x++, w += ${taps}) {
         ${decl.join(' ')}
         const s = row + xs[x];
         const s2 = row2 + xs[x];
         tmp[o + x] = ${t1.join(' + ')};
         tmp[o2 + x] = ${t2.join(' + ')};
       }
     }
     if (r < rows) {
       const row = soff + (r0 + r) * sstride;
       const o = r * outW;
       for (let x = 0, w = 0; x < outW; x++, w += ${taps}) {
         ${decl.join(' ')}
         const s = row + xs[x];
         tmp[o + x] = ${t1.join(' + ')};
       }
     }`,
  ) as HPass;
  hCache[taps] = f;
  return f;
}

function hGeneric(taps: number): HPass {
  return (src, soff, sstride, r0, rows, xs, xw, tmp, outW) => {
    for (let r = 0; r < rows; r++) {
      const row = soff + (r0 + r) * sstride;
      const o = r * outW;
      for (let x = 0; x < outW; x++) {
        const s = row + xs[x];
        const w = x * taps;
        let a = 0;
        for (let t = 0; t < taps; t++) a += xw[w + t] * src[s + t];
        tmp[o + x] = a;
      }
    }
  };
}

function vrow(taps: number): VRow {
  if (taps > MAX_UNROLL) return vGeneric(taps);
  let f = vCache[taps];
  if (f) return f;
  const decl: string[] = [];
  const terms: string[] = [];
  for (let t = 0; t < taps; t++) {
    decl.push(`const w${t} = yw[wo + ${t}];`);
    terms.push(`w${t} * tmp[i + ${t} * outW]`);
  }
  f = new Function(
    'tmp',
    'base',
    'outW',
    'yw',
    'wo',
    'acc',
    `${decl.join('\n')}
     for (let x = 0; x < outW; x++) {
       const i = base + x;
       acc[x] = ${terms.join(' + ')};
     }`,
  ) as VRow;
  vCache[taps] = f;
  return f;
}

function vGeneric(taps: number): VRow {
  return (tmp, base, outW, yw, wo, acc) => {
    for (let x = 0; x < outW; x++) acc[x] = 0;
    for (let t = 0; t < taps; t++) {
      const w = yw[wo + t];
      const b = base + t * outW;
      for (let x = 0; x < outW; x++) acc[x] += w * tmp[b + x];
    }
  };
}

/** Horizontal pass of one plane: returns the rows the vertical pass needs and their first index. */
interface Prepared {
  ay: Axis;
  tmp: Float32Array;
  r0: number;
  outW: number;
  src: Plane;
  ax: Axis;
  copy: boolean;
}

function prepare(p: Plane, spec: ResampleSpec, interp: Interpolation, key: string): Prepared {
  const { sample, clip, outW, outH, flip } = spec;
  const ax = axisWeights(outW, sample.x0, sample.x1, clip.x0, clip.x1, p.x0, p.sx, p.width, interp, flip);
  const ay = axisWeights(outH, sample.y0, sample.y1, clip.y0, clip.y1, p.y0, p.sy, p.height, interp, false);
  if (ax.copy && ay.copy) return { ay, tmp: new Float32Array(0), r0: 0, outW, src: p, ax, copy: true };
  let r0 = Infinity;
  let r1 = -Infinity;
  for (let y = 0; y < outH; y++) {
    if (ay.start[y] < r0) r0 = ay.start[y];
    if (ay.start[y] + ay.taps > r1) r1 = ay.start[y] + ay.taps;
  }
  const rows = r1 - r0;
  const tmp = scratchF32(key, rows * outW);
  if (ax.copy) {
    const xs = ax.start;
    for (let r = 0; r < rows; r++) {
      const row = p.offset + (r0 + r) * p.stride;
      const o = r * outW;
      for (let x = 0; x < outW; x++) tmp[o + x] = p.data[row + xs[x]];
    }
  } else {
    hpass(ax.taps)(p.data, p.offset, p.stride, r0, rows, ax.start, ax.weights, tmp, outW);
  }
  return { ay, tmp, r0, outW, src: p, ax, copy: false };
}

/** Computes output row y of a prepared plane into acc (Float32Array(outW)). */
function row(pr: Prepared, y: number, acc: Float32Array): void {
  const outW = pr.outW;
  if (pr.copy) {
    const p = pr.src;
    const srow = p.offset + pr.ay.start[y] * p.stride;
    const xs = pr.ax.start;
    const d = p.data;
    for (let x = 0; x < outW; x++) acc[x] = d[srow + xs[x]];
    return;
  }
  const ay = pr.ay;
  const base = (ay.start[y] - pr.r0) * outW;
  if (ay.copy) {
    const t = pr.tmp;
    for (let x = 0; x < outW; x++) acc[x] = t[base + x];
    return;
  }
  vrow(ay.taps)(pr.tmp, base, outW, ay.weights, y * ay.taps, acc);
}

/** Resamples one plane to an outW×outH byte plane written into `out` at `outOffset`. */
export function resamplePlane(p: Plane, spec: ResampleSpec, interp: Interpolation, out: Uint8Array, outOffset: number): void {
  const { outW, outH } = spec;
  const pr = prepare(p, spec, interp, 'rs-plane');
  const dst = new Uint8ClampedArray(out.buffer, out.byteOffset + outOffset, outW * outH);
  const acc = new Float32Array(outW);
  for (let y = 0; y < outH; y++) {
    row(pr, y, acc);
    const o = y * outW;
    for (let x = 0; x < outW; x++) dst[o + x] = acc[x];
  }
}

/** Resamples every plane (and the mask, nearest-neighbour) to full-resolution outW×outH planes. */
export function resampleImage(img: Image, spec: ResampleSpec): Image {
  const { outW, outH } = spec;
  const n = img.planes.length;
  const buf = new Uint8Array(outW * outH * n);
  const planes: Plane[] = [];
  for (let c = 0; c < n; c++) {
    resamplePlane(img.planes[c], spec, spec.interp, buf, c * outW * outH);
    planes.push({ data: buf, width: outW, height: outH, stride: outW, offset: c * outW * outH, x0: 0, y0: 0, sx: 1, sy: 1 });
  }
  const res: Image = { width: outW, height: outH, space: img.space, planes };
  if (img.mask) {
    const m = new Uint8Array(outW * outH);
    resamplePlane(img.mask, spec, 'nearest', m, 0);
    res.mask = { data: m, width: outW, height: outH, stride: outW, offset: 0, x0: 0, y0: 0, sx: 1, sy: 1 };
  }
  return res;
}

const C_R_CR = 1.402;
const C_G_CB = -0.344136286;
const C_G_CR = -0.714136286;
const C_B_CB = 1.772;

/** Upsampling map for one axis: output i reads i0[i]*(1-w[i]) + i1[i]*w[i] of a low-res row. */
interface UpMap {
  i0: Int32Array;
  i1: Int32Array;
  w: Float32Array;
}

function upMap(n: number, f: number, m: number, flip: boolean): UpMap {
  const i0 = new Int32Array(n);
  const i1 = new Int32Array(n);
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = flip ? n - 1 - i : i;
    const pos = (u + 0.5) / f - 0.5;
    let a = Math.floor(pos);
    let t = pos - a;
    let b = a + 1;
    if (a < 0) {
      a = 0;
      t = 0;
    }
    if (b > m - 1) b = m - 1;
    if (a > m - 1) a = m - 1;
    i0[i] = a;
    i1[i] = b;
    w[i] = t;
  }
  return { i0, i1, w };
}

/**
 * The two low-resolution chroma rows (of Cb and of Cr) that an output row interpolates between, A above
 * and B below, kept from one output row to the next: each is read once (a row that was B becomes A).
 */
class ChromaRows {
  cbA: Float32Array;
  cbB: Float32Array;
  crA: Float32Array;
  crB: Float32Array;
  private rowA = -1;
  private rowB = -1;
  constructor(width: number) {
    [this.cbA, this.cbB, this.crA, this.crB] = [0, 1, 2, 3].map(() => new Float32Array(width));
  }

  /** Makes A hold rows j0 and B rows j1 of planes pb (Cb) and pr (Cr), reading only those not held yet. */
  load(pb: Prepared, pr: Prepared, j0: number, j1: number): this {
    if (this.rowA !== j0) {
      if (this.rowB === j0) {
        [this.cbA, this.cbB, this.crA, this.crB] = [this.cbB, this.cbA, this.crB, this.crA];
        this.rowB = -1;
      } else {
        row(pb, j0, this.cbA);
        row(pr, j0, this.crA);
      }
      this.rowA = j0;
    }
    if (this.rowB !== j1) {
      if (j1 === j0) {
        this.cbB.set(this.cbA);
        this.crB.set(this.crA);
      } else {
        row(pb, j1, this.cbB);
        row(pr, j1, this.crB);
      }
      this.rowB = j1;
    }
    return this;
  }
}

/**
 * Resamples `img` and writes it as 3×outH×outW at `offset` of `out` in the requested format,
 * converting YCbCr/gray to RGB on the fly (the vertical pass, colour conversion and normalisation
 * run per output row without intermediate byte planes). Subsampled chroma is resampled at chroma
 * resolution and upsampled with a triangle filter (libjpeg's "fancy" upsampling) in the same loop.
 * The mask, if any, is not written.
 */
export function resampleToOutput(img: Image, spec: ResampleSpec, out: Float32Array | Uint8Array, offset: number, fmt: OutputFormat): void {
  const { outW, outH } = spec;
  const hw = outW * outH;
  const ycc = img.space === 'ycbcr';
  const P = img.planes;
  const fx = ycc ? P[1].sx / P[0].sx : 1;
  const fy = ycc ? P[1].sy / P[0].sy : 1;
  const half =
    ycc && (fx === 2 || fy === 2) && (fx === 1 || fx === 2) && (fy === 1 || fy === 2) && P[2].sx === P[1].sx && P[2].sy === P[1].sy && outW >= 2 && outH >= 2;
  const isFloat = fmt.kind === 'float';
  const fo = isFloat ? (out as Float32Array) : null;
  const bo = isFloat ? null : new Uint8ClampedArray(out.buffer, out.byteOffset, out.length);
  const s0 = isFloat ? fmt.scale[0] : 1;
  const s1 = isFloat ? fmt.scale[1] : 1;
  const s2 = isFloat ? fmt.scale[2] : 1;
  const b0 = isFloat ? fmt.bias[0] : 0;
  const b1 = isFloat ? fmt.bias[1] : 0;
  const b2 = isFloat ? fmt.bias[2] : 0;
  const a0 = new Float32Array(outW);
  const a1 = new Float32Array(outW);
  const a2 = new Float32Array(outW);

  const py = prepare(P[0], spec, spec.interp, 'rs-0');
  let pb: Prepared | null = null;
  let pr: Prepared | null = null;
  let cw = outW;
  let ux: UpMap | null = null;
  let uy: UpMap | null = null;
  if (half) {
    cw = Math.ceil(outW / fx);
    const ch = Math.ceil(outH / fy);
    const dx = (spec.sample.x1 - spec.sample.x0) / outW;
    const dy = (spec.sample.y1 - spec.sample.y0) / outH;
    const cspec: ResampleSpec = {
      sample: { x0: spec.sample.x0, y0: spec.sample.y0, x1: spec.sample.x0 + cw * fx * dx, y1: spec.sample.y0 + ch * fy * dy },
      clip: spec.clip,
      outW: cw,
      outH: ch,
      flip: false,
      interp: spec.interp,
    };
    pb = prepare(P[1], cspec, spec.interp, 'rs-1');
    pr = prepare(P[2], cspec, spec.interp, 'rs-2');
    ux = upMap(outW, fx, cw, spec.flip);
    uy = upMap(outH, fy, ch, false);
  } else if (P.length > 1) {
    pb = prepare(P[1], spec, spec.interp, 'rs-1');
    pr = prepare(P[2], spec, spec.interp, 'rs-2');
  }
  const chroma = half ? new ChromaRows(cw) : null;

  // Fully fused rows (vertical taps, chroma upsampling, colour conversion and normalisation in one
  // generated loop) for the common cases.
  const outArr = fo ?? bo!;
  const sameGeom =
    P.length === 3 &&
    !half &&
    P.every((p) => p.x0 === P[0].x0 && p.y0 === P[0].y0 && p.sx === P[0].sx && p.sy === P[0].sy && p.width === P[0].width && p.height === P[0].height);
  if (!py.copy && (half || sameGeom || P.length === 1)) {
    const mode = half ? 'half' : P.length === 1 ? 'gray' : ycc ? 'ycc' : 'rgb';
    const f = fusedRow(mode, py.ay.taps, isFloat);
    const T = py.ay.taps;
    const ayw = py.ay.weights;
    for (let y = 0; y < outH; y++) {
      const base = (py.ay.start[y] - py.r0) * outW;
      const o = offset + y * outW;
      if (chroma) {
        const c = chroma.load(pb!, pr!, uy!.i0[y], uy!.i1[y]);
        f(py.tmp, base, outW, ayw, y * T, c.cbA, c.cbB, c.crA, c.crB, uy!.w[y], ux!.i0, ux!.i1, ux!.w, outArr, o, hw, s0, s1, s2, b0, b1, b2);
      } else {
        const tb = pb ? pb.tmp : py.tmp;
        const tr = pr ? pr.tmp : py.tmp;
        f(py.tmp, base, outW, ayw, y * T, tb, tb, tr, tr, 0, null, null, null, outArr, o, hw, s0, s1, s2, b0, b1, b2);
      }
    }
    return;
  }

  for (let y = 0; y < outH; y++) {
    row(py, y, a0);
    if (chroma) {
      const c = chroma.load(pb!, pr!, uy!.i0[y], uy!.i1[y]);
      upsampleRow(c.cbA, c.cbB, c.crA, c.crB, uy!.w[y], ux!, a1, a2, outW);
    } else if (pb) {
      row(pb, y, a1);
      row(pr!, y, a2);
    } else {
      a1.set(a0);
      a2.set(a0);
    }
    if (ycc) yccToRgbRow(a0, a1, a2, outW);
    else clampRow(a0, a1, a2, outW);
    const o = offset + y * outW;
    if (fo) writeFloatRow(fo, o, hw, a0, a1, a2, outW, s0, s1, s2, b0, b1, b2);
    else writeByteRow(bo!, o, hw, a0, a1, a2, outW);
  }
}

type FusedRow = (
  tmp: Float32Array,
  base: number,
  outW: number,
  yw: Float32Array,
  wo: number,
  cbA: Float32Array,
  cbB: Float32Array,
  crA: Float32Array,
  crB: Float32Array,
  wy: number,
  i0: Int32Array | null,
  i1: Int32Array | null,
  wx: Float32Array | null,
  out: Float32Array | Uint8ClampedArray,
  o: number,
  hw: number,
  s0: number,
  s1: number,
  s2: number,
  b0: number,
  b1: number,
  b2: number,
) => void;

const fusedCache = new Map<string, FusedRow>();

/**
 * Generates the per-row output loop. mode 'half': Y from `tmp` with `taps` vertical taps, Cb/Cr
 * bilinearly upsampled from two low-resolution rows each; 'ycc'/'rgb': three planes with the same
 * geometry (cbA/crA hold the 2nd/3rd plane's horizontal-pass rows); 'gray': one plane.
 */
function fusedRow(mode: 'half' | 'ycc' | 'rgb' | 'gray', taps: number, isFloat: boolean): FusedRow {
  const key = `${mode}/${taps}/${isFloat}`;
  let f = fusedCache.get(key);
  if (f) return f;
  const decl: string[] = [];
  const vsum = (arr: string): string => {
    const t: string[] = [];
    for (let k = 0; k < taps; k++) t.push(`w${k} * ${arr}[i + ${k} * outW]`);
    return t.join(' + ');
  };
  for (let k = 0; k < taps; k++) decl.push(`const w${k} = yw[wo + ${k}];`);
  let body: string;
  if (mode === 'half') {
    body = `
      const Y = ${vsum('tmp')};
      const k0 = i0[x], k1 = i1[x], f = wx[x];
      const p0 = cbA[k0] * wy0 + cbB[k0] * wy;
      const p1 = cbA[k1] * wy0 + cbB[k1] * wy;
      const cb = p0 + (p1 - p0) * f - 128;
      const q0 = crA[k0] * wy0 + crB[k0] * wy;
      const q1 = crA[k1] * wy0 + crB[k1] * wy;
      const cr = q0 + (q1 - q0) * f - 128;
      let r = Y + ${C_R_CR} * cr;
      let g = Y + ${C_G_CB} * cb + ${C_G_CR} * cr;
      let b = Y + ${C_B_CB} * cb;`;
  } else if (mode === 'ycc') {
    body = `
      const Y = ${vsum('tmp')};
      const cb = ${vsum('cbA')} - 128;
      const cr = ${vsum('crA')} - 128;
      let r = Y + ${C_R_CR} * cr;
      let g = Y + ${C_G_CB} * cb + ${C_G_CR} * cr;
      let b = Y + ${C_B_CB} * cb;`;
  } else if (mode === 'rgb') {
    body = `
      let r = ${vsum('tmp')};
      let g = ${vsum('cbA')};
      let b = ${vsum('crA')};`;
  } else {
    body = `
      let r = ${vsum('tmp')};
      let g = r;
      let b = r;`;
  }
  const store = isFloat
    ? `out[o + x] = r * s0 + b0; out[o1 + x] = g * s1 + b1; out[o2 + x] = b * s2 + b2;`
    : `out[o + x] = r; out[o1 + x] = g; out[o2 + x] = b;`;
  const src = `
    ${decl.join('\n')}
    const wy0 = 1 - wy;
    const o1 = o + hw;
    const o2 = o + 2 * hw;
    for (let x = 0; x < outW; x++) {
      const i = base + x;
      ${body}
      r = r < 0 ? 0 : r > 255 ? 255 : r;
      g = g < 0 ? 0 : g > 255 ? 255 : g;
      b = b < 0 ? 0 : b > 255 ? 255 : b;
      ${store}
    }`;
  f = new Function(
    'tmp',
    'base',
    'outW',
    'yw',
    'wo',
    'cbA',
    'cbB',
    'crA',
    'crB',
    'wy',
    'i0',
    'i1',
    'wx',
    'out',
    'o',
    'hw',
    's0',
    's1',
    's2',
    'b0',
    'b1',
    'b2',
    src,
  ) as FusedRow;
  fusedCache.set(key, f);
  return f;
}

function upsampleRow(
  cbA: Float32Array,
  cbB: Float32Array,
  crA: Float32Array,
  crB: Float32Array,
  wy: number,
  ux: UpMap,
  a1: Float32Array,
  a2: Float32Array,
  n: number,
): void {
  const wy0 = 1 - wy;
  const i0 = ux.i0;
  const i1 = ux.i1;
  const wx = ux.w;
  for (let x = 0; x < n; x++) {
    const k0 = i0[x];
    const k1 = i1[x];
    const w = wx[x];
    const cb0 = cbA[k0] * wy0 + cbB[k0] * wy;
    const cb1 = cbA[k1] * wy0 + cbB[k1] * wy;
    const cr0 = crA[k0] * wy0 + crB[k0] * wy;
    const cr1 = crA[k1] * wy0 + crB[k1] * wy;
    a1[x] = cb0 + (cb1 - cb0) * w;
    a2[x] = cr0 + (cr1 - cr0) * w;
  }
}

function yccToRgbRow(a0: Float32Array, a1: Float32Array, a2: Float32Array, n: number): void {
  for (let x = 0; x < n; x++) {
    const Y = a0[x];
    const cb = a1[x] - 128;
    const cr = a2[x] - 128;
    const r = Y + C_R_CR * cr;
    const g = Y + C_G_CB * cb + C_G_CR * cr;
    const b = Y + C_B_CB * cb;
    a0[x] = r < 0 ? 0 : r > 255 ? 255 : r;
    a1[x] = g < 0 ? 0 : g > 255 ? 255 : g;
    a2[x] = b < 0 ? 0 : b > 255 ? 255 : b;
  }
}

function clampRow(a0: Float32Array, a1: Float32Array, a2: Float32Array, n: number): void {
  for (let x = 0; x < n; x++) {
    const r = a0[x];
    const g = a1[x];
    const b = a2[x];
    a0[x] = r < 0 ? 0 : r > 255 ? 255 : r;
    a1[x] = g < 0 ? 0 : g > 255 ? 255 : g;
    a2[x] = b < 0 ? 0 : b > 255 ? 255 : b;
  }
}

function writeFloatRow(
  fo: Float32Array,
  o: number,
  hw: number,
  a0: Float32Array,
  a1: Float32Array,
  a2: Float32Array,
  n: number,
  s0: number,
  s1: number,
  s2: number,
  b0: number,
  b1: number,
  b2: number,
): void {
  const o1 = o + hw;
  const o2 = o + 2 * hw;
  for (let x = 0; x < n; x++) {
    fo[o + x] = a0[x] * s0 + b0;
    fo[o1 + x] = a1[x] * s1 + b1;
    fo[o2 + x] = a2[x] * s2 + b2;
  }
}

function writeByteRow(bo: Uint8ClampedArray, o: number, hw: number, a0: Float32Array, a1: Float32Array, a2: Float32Array, n: number): void {
  const o1 = o + hw;
  const o2 = o + 2 * hw;
  for (let x = 0; x < n; x++) {
    bo[o + x] = a0[x];
    bo[o1 + x] = a1[x];
    bo[o2 + x] = a2[x];
  }
}
