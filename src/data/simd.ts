// WebAssembly SIMD resampling kernels (built at run time by wasm.ts; no toolchain needed):
//   vpass  — vertical filter pass reading 8-bit planes, 8 columns per step (f32x4 ×2);
//   hpassT — horizontal filter pass with T taps unrolled (scalar f32, no bounds checks);
//   ycc/rgb/gray — colour conversion + clamping + normalisation, 4 pixels per step.
// `simdResampleToOutput` runs the whole resize of a sample with them and copies the normalised
// CHW result into the batch. It returns false (and the caller uses the TypeScript path) when
// WebAssembly SIMD is unavailable or the case is not covered (byte output, very wide filters).

import { I32, F32, V128, op, buildModule, type FuncDef } from './wasm';
import { axisWeights, type Axis } from './resample';
import type { Image, Plane } from './image';
import type { ResampleSpec, OutputFormat } from './resample';

const MAX_TAPS = 16;

// Minimal typings: the project's lib settings (ES2022 + @types/node) do not declare WebAssembly.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
};

function vpassDef(): FuncDef {
  // params: src sstride rows cols starts weights taps dst dstride
  const [src, sstride, rows, cols, starts, weights, taps, dst, dstride] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [y, x, t, srow, wp, p, dptr] = [9, 10, 11, 12, 13, 14, 15];
  const [acc0, acc1, w, v] = [16, 17, 18, 19];
  const body = [
    ...op.i32(0),
    ...op.set(y),
    ...op.block(),
    ...op.loop(),
    ...op.get(y),
    ...op.get(rows),
    ...op.i32GeS,
    ...op.brIf(1),
    ...op.get(starts),
    ...op.get(y),
    ...op.i32(2),
    ...op.i32Shl,
    ...op.i32Add,
    ...op.i32Load(),
    ...op.get(sstride),
    ...op.i32Mul,
    ...op.get(src),
    ...op.i32Add,
    ...op.set(srow),
    ...op.get(weights),
    ...op.get(y),
    ...op.get(taps),
    ...op.i32Mul,
    ...op.i32(2),
    ...op.i32Shl,
    ...op.i32Add,
    ...op.set(wp),
    ...op.i32(0),
    ...op.set(x),
    ...op.block(),
    ...op.loop(),
    ...op.get(x),
    ...op.get(cols),
    ...op.i32GeS,
    ...op.brIf(1),
    ...op.f32(0),
    ...op.f32x4Splat,
    ...op.set(acc0),
    ...op.f32(0),
    ...op.f32x4Splat,
    ...op.set(acc1),
    ...op.get(srow),
    ...op.get(x),
    ...op.i32Add,
    ...op.set(p),
    ...op.i32(0),
    ...op.set(t),
    ...op.loop(),
    ...op.get(wp),
    ...op.get(t),
    ...op.i32(2),
    ...op.i32Shl,
    ...op.i32Add,
    ...op.f32Load(),
    ...op.f32x4Splat,
    ...op.set(w),
    ...op.get(p),
    ...op.v128Load8x8U(),
    ...op.set(v),
    ...op.get(acc0),
    ...op.get(w),
    ...op.get(v),
    ...op.i32x4ExtendLowI16x8U,
    ...op.f32x4ConvertI32x4U,
    ...op.f32x4Mul,
    ...op.f32x4Add,
    ...op.set(acc0),
    ...op.get(acc1),
    ...op.get(w),
    ...op.get(v),
    ...op.i32x4ExtendHighI16x8U,
    ...op.f32x4ConvertI32x4U,
    ...op.f32x4Mul,
    ...op.f32x4Add,
    ...op.set(acc1),
    ...op.get(p),
    ...op.get(sstride),
    ...op.i32Add,
    ...op.set(p),
    ...op.get(t),
    ...op.i32(1),
    ...op.i32Add,
    ...op.tee(t),
    ...op.get(taps),
    ...op.i32LtS,
    ...op.brIf(0),
    ...op.end(),
    ...op.get(dst),
    ...op.get(y),
    ...op.get(dstride),
    ...op.i32Mul,
    ...op.i32Add,
    ...op.get(x),
    ...op.i32(2),
    ...op.i32Shl,
    ...op.i32Add,
    ...op.set(dptr),
    ...op.get(dptr),
    ...op.get(acc0),
    ...op.v128Store(0),
    ...op.get(dptr),
    ...op.get(acc1),
    ...op.v128Store(16),
    ...op.get(x),
    ...op.i32(8),
    ...op.i32Add,
    ...op.set(x),
    ...op.br(0),
    ...op.end(),
    ...op.end(),
    ...op.get(y),
    ...op.i32(1),
    ...op.i32Add,
    ...op.set(y),
    ...op.br(0),
    ...op.end(),
    ...op.end(),
  ];
  return { name: 'vpass', params: Array(9).fill(I32), locals: [I32, I32, I32, I32, I32, I32, I32, V128, V128, V128, V128], body };
}

function hpassDef(T: number): FuncDef {
  // params: src sstride rows xs xw outW dst dstride
  const [src, sstride, rows, xs, xw, outW, dst, dstride] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [r, x, srow, drow, xsp, xwp, s] = [8, 9, 10, 11, 12, 13, 14];
  const acc: number[] = [];
  for (let t = 0; t < T; t++) {
    acc.push(...op.get(s), ...op.f32Load(4 * t), ...op.get(xwp), ...op.f32Load(4 * t), ...op.f32Mul);
    if (t > 0) acc.push(...op.f32Add);
  }
  const body = [
    ...op.i32(0),
    ...op.set(r),
    ...op.block(),
    ...op.loop(),
    ...op.get(r),
    ...op.get(rows),
    ...op.i32GeS,
    ...op.brIf(1),
    ...op.get(src),
    ...op.get(r),
    ...op.get(sstride),
    ...op.i32Mul,
    ...op.i32Add,
    ...op.set(srow),
    ...op.get(dst),
    ...op.get(r),
    ...op.get(dstride),
    ...op.i32Mul,
    ...op.i32Add,
    ...op.set(drow),
    ...op.get(xs),
    ...op.set(xsp),
    ...op.get(xw),
    ...op.set(xwp),
    ...op.i32(0),
    ...op.set(x),
    ...op.block(),
    ...op.loop(),
    ...op.get(x),
    ...op.get(outW),
    ...op.i32GeS,
    ...op.brIf(1),
    ...op.get(srow),
    ...op.get(xsp),
    ...op.i32Load(),
    ...op.i32(2),
    ...op.i32Shl,
    ...op.i32Add,
    ...op.set(s),
    ...op.get(drow),
    ...op.get(x),
    ...op.i32(2),
    ...op.i32Shl,
    ...op.i32Add,
    ...acc,
    ...op.f32Store(),
    ...op.get(xsp),
    ...op.i32(4),
    ...op.i32Add,
    ...op.set(xsp),
    ...op.get(xwp),
    ...op.i32(4 * T),
    ...op.i32Add,
    ...op.set(xwp),
    ...op.get(x),
    ...op.i32(1),
    ...op.i32Add,
    ...op.set(x),
    ...op.br(0),
    ...op.end(),
    ...op.end(),
    ...op.get(r),
    ...op.i32(1),
    ...op.i32Add,
    ...op.set(r),
    ...op.br(0),
    ...op.end(),
    ...op.end(),
  ];
  return { name: `hpass${T}`, params: Array(8).fill(I32), locals: Array(7).fill(I32), body };
}

/** mode: 0 ycc, 1 rgb, 2 gray. params: p0 p1 p2 n(bytes, multiple of 16) out ostride s0 s1 s2 b0 b1 b2 */
function colourDef(mode: 0 | 1 | 2): FuncDef {
  const [p0, p1, p2, n, out, ostride] = [0, 1, 2, 3, 4, 5];
  const [s0, s1, s2, b0, b1, b2] = [6, 7, 8, 9, 10, 11];
  const o = 12;
  const [zero, maxv, c128, S0, S1, S2, B0, B1, B2, kR, kGb, kGr, kB, Y, cb, cr, r, g, b] = Array.from({ length: 19 }, (_, i) => 13 + i);
  const splat = (src: number[], dstLocal: number): number[] => [...src, ...op.f32x4Splat, ...op.set(dstLocal)];
  const clamp = (l: number): number[] => [...op.get(l), ...op.get(zero), ...op.f32x4Max, ...op.get(maxv), ...op.f32x4Min, ...op.set(l)];
  const load = (base: number, dstLocal: number): number[] => [...op.get(base), ...op.get(o), ...op.i32Add, ...op.v128Load(), ...op.set(dstLocal)];
  const store = (plane: number, l: number, S: number, B: number): number[] => [
    ...op.get(out),
    ...op.get(ostride),
    ...op.i32(plane),
    ...op.i32Mul,
    ...op.i32Add,
    ...op.get(o),
    ...op.i32Add,
    ...op.get(l),
    ...op.get(S),
    ...op.f32x4Mul,
    ...op.get(B),
    ...op.f32x4Add,
    ...op.v128Store(),
  ];
  let convert: number[];
  if (mode === 0) {
    convert = [
      ...load(p0, Y),
      ...op.get(p1),
      ...op.get(o),
      ...op.i32Add,
      ...op.v128Load(),
      ...op.get(c128),
      ...op.f32x4Sub,
      ...op.set(cb),
      ...op.get(p2),
      ...op.get(o),
      ...op.i32Add,
      ...op.v128Load(),
      ...op.get(c128),
      ...op.f32x4Sub,
      ...op.set(cr),
      ...op.get(Y),
      ...op.get(kR),
      ...op.get(cr),
      ...op.f32x4Mul,
      ...op.f32x4Add,
      ...op.set(r),
      ...op.get(Y),
      ...op.get(kGb),
      ...op.get(cb),
      ...op.f32x4Mul,
      ...op.f32x4Add,
      ...op.get(kGr),
      ...op.get(cr),
      ...op.f32x4Mul,
      ...op.f32x4Add,
      ...op.set(g),
      ...op.get(Y),
      ...op.get(kB),
      ...op.get(cb),
      ...op.f32x4Mul,
      ...op.f32x4Add,
      ...op.set(b),
    ];
  } else if (mode === 1) {
    convert = [...load(p0, r), ...load(p1, g), ...load(p2, b)];
  } else {
    convert = [...load(p0, r), ...op.get(r), ...op.set(g), ...op.get(r), ...op.set(b)];
  }
  const body = [
    ...splat(op.f32(0), zero),
    ...splat(op.f32(255), maxv),
    ...splat(op.f32(128), c128),
    ...splat(op.get(s0), S0),
    ...splat(op.get(s1), S1),
    ...splat(op.get(s2), S2),
    ...splat(op.get(b0), B0),
    ...splat(op.get(b1), B1),
    ...splat(op.get(b2), B2),
    ...splat(op.f32(1.402), kR),
    ...splat(op.f32(-0.344136286), kGb),
    ...splat(op.f32(-0.714136286), kGr),
    ...splat(op.f32(1.772), kB),
    ...op.i32(0),
    ...op.set(o),
    ...op.block(),
    ...op.loop(),
    ...op.get(o),
    ...op.get(n),
    ...op.i32GeS,
    ...op.brIf(1),
    ...convert,
    ...clamp(r),
    ...clamp(g),
    ...clamp(b),
    ...store(0, r, S0, B0),
    ...store(1, g, S1, B1),
    ...store(2, b, S2, B2),
    ...op.get(o),
    ...op.i32(16),
    ...op.i32Add,
    ...op.set(o),
    ...op.br(0),
    ...op.end(),
    ...op.end(),
  ];
  return {
    name: ['ycc', 'rgb', 'gray'][mode],
    params: [I32, I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32],
    locals: [I32, ...Array(19).fill(V128)],
    body,
  };
}

/** 8×8 AAN IDCT of f32 coefficients at `coef` (zeroed afterwards) to bytes at out (+128, rounded, saturated). */
function idctDef(): FuncDef {
  const [coef, out, stride] = [0, 1, 2];
  let next = 3;
  const locals: number[] = [];
  const vec = (): number => {
    locals.push(V128);
    return next++;
  };
  const vecs = (k: number): number[] => Array.from({ length: k }, vec);
  type Ex = number | number[];
  const ld = (x: Ex): number[] => (typeof x === 'number' ? op.get(x) : x);
  const add = (a: Ex, b: Ex): number[] => [...ld(a), ...ld(b), ...op.f32x4Add];
  const sub = (a: Ex, b: Ex): number[] => [...ld(a), ...ld(b), ...op.f32x4Sub];
  const mul = (a: Ex, b: Ex): number[] => [...ld(a), ...ld(b), ...op.f32x4Mul];
  const set = (d: number, e: number[]): number[] => [...e, ...op.set(d)];
  const [cS2, c1847, c1082, cm2613, c128, zero] = vecs(6);
  const [t10, t11, t12, t13, e0, e1, e2, e3, z5, z10, z11, z12, z13, o4, o5, o6, o7, o10, o11, o12] = vecs(20);
  const idct1d = (i: number[], o: number[], bias: boolean): number[] => [
    ...set(t10, add(i[0], i[4])),
    ...set(t11, sub(i[0], i[4])),
    ...set(t13, add(i[2], i[6])),
    ...set(t12, sub(mul(sub(i[2], i[6]), cS2), t13)),
    ...set(e0, bias ? add(add(t10, t13), c128) : add(t10, t13)),
    ...set(e3, bias ? add(sub(t10, t13), c128) : sub(t10, t13)),
    ...set(e1, bias ? add(add(t11, t12), c128) : add(t11, t12)),
    ...set(e2, bias ? add(sub(t11, t12), c128) : sub(t11, t12)),
    ...set(z13, add(i[5], i[3])),
    ...set(z10, sub(i[5], i[3])),
    ...set(z11, add(i[1], i[7])),
    ...set(z12, sub(i[1], i[7])),
    ...set(o7, add(z11, z13)),
    ...set(o11, mul(sub(z11, z13), cS2)),
    ...set(z5, mul(add(z10, z12), c1847)),
    ...set(o10, sub(mul(z12, c1082), z5)),
    ...set(o12, add(mul(z10, cm2613), z5)),
    ...set(o6, sub(o12, o7)),
    ...set(o5, sub(o11, o6)),
    ...set(o4, add(o10, o5)),
    ...set(o[0], add(e0, o7)),
    ...set(o[7], sub(e0, o7)),
    ...set(o[1], add(e1, o6)),
    ...set(o[6], sub(e1, o6)),
    ...set(o[2], add(e2, o5)),
    ...set(o[5], sub(e2, o5)),
    ...set(o[4], add(e3, o4)),
    ...set(o[3], sub(e3, o4)),
  ];
  const [s0, s1, s2, s3] = vecs(4);
  const shuf = (a: number, b: number, lanes: number[]): number[] => [...op.get(a), ...op.get(b), ...op.f32x4Shuffle(lanes)];
  const t4 = (i: number[], o: number[]): number[] => [
    ...set(s0, shuf(i[0], i[1], [0, 4, 1, 5])),
    ...set(s1, shuf(i[0], i[1], [2, 6, 3, 7])),
    ...set(s2, shuf(i[2], i[3], [0, 4, 1, 5])),
    ...set(s3, shuf(i[2], i[3], [2, 6, 3, 7])),
    ...set(o[0], shuf(s0, s2, [0, 1, 4, 5])),
    ...set(o[1], shuf(s0, s2, [2, 3, 6, 7])),
    ...set(o[2], shuf(s1, s3, [0, 1, 4, 5])),
    ...set(o[3], shuf(s1, s3, [2, 3, 6, 7])),
  ];
  const lo = vecs(8);
  const hi = vecs(8);
  const L2 = vecs(8);
  const H2 = vecs(8);
  const Tlo = vecs(8);
  const Thi = vecs(8);
  const Plo = vecs(8);
  const Phi = vecs(8);
  const Rlo = vecs(8);
  const Rhi = vecs(8);
  const body: number[] = [
    ...set(cS2, [...op.f32(1.414213562), ...op.f32x4Splat]),
    ...set(c1847, [...op.f32(1.847759065), ...op.f32x4Splat]),
    ...set(c1082, [...op.f32(1.0823922), ...op.f32x4Splat]),
    ...set(cm2613, [...op.f32(-2.61312593), ...op.f32x4Splat]),
    ...set(c128, [...op.f32(128), ...op.f32x4Splat]),
    ...set(zero, [...op.f32(0), ...op.f32x4Splat]),
  ];
  for (let r = 0; r < 8; r++) {
    body.push(...op.get(coef), ...op.v128Load(32 * r), ...op.set(lo[r]));
    body.push(...op.get(coef), ...op.v128Load(32 * r + 16), ...op.set(hi[r]));
  }
  for (let r = 0; r < 8; r++) {
    body.push(...op.get(coef), ...op.get(zero), ...op.v128Store(32 * r));
    body.push(...op.get(coef), ...op.get(zero), ...op.v128Store(32 * r + 16));
  }
  body.push(...idct1d(lo, L2, false), ...idct1d(hi, H2, false));
  body.push(...t4(L2.slice(0, 4), Tlo.slice(0, 4)), ...t4(L2.slice(4), Thi.slice(0, 4)));
  body.push(...t4(H2.slice(0, 4), Tlo.slice(4)), ...t4(H2.slice(4), Thi.slice(4)));
  body.push(...idct1d(Tlo, Plo, true), ...idct1d(Thi, Phi, true));
  body.push(...t4(Plo.slice(0, 4), Rlo.slice(0, 4)), ...t4(Plo.slice(4), Rhi.slice(0, 4)));
  body.push(...t4(Phi.slice(0, 4), Rlo.slice(4)), ...t4(Phi.slice(4), Rhi.slice(4)));
  const toI32 = (x: number): number[] => [...op.get(x), ...op.f32x4Nearest, ...op.i32x4TruncSatF32x4S];
  const nar = vec();
  for (let r = 0; r < 8; r++) {
    body.push(...set(nar, [...toI32(Rlo[r]), ...toI32(Rhi[r]), ...op.i16x8NarrowI32x4S]));
    body.push(...op.get(out), ...op.get(stride), ...op.i32(r), ...op.i32Mul, ...op.i32Add);
    body.push(...op.get(nar), ...op.get(nar), ...op.i8x16NarrowI16x8U, ...op.v128Store64Lane(0));
  }
  return { name: 'idct', params: [I32, I32, I32], locals, body };
}

type Idct = (coef: number, out: number, stride: number) => void;
type VPass = (src: number, sstride: number, rows: number, cols: number, starts: number, weights: number, taps: number, dst: number, dstride: number) => void;
type HPass = (src: number, sstride: number, rows: number, xs: number, xw: number, outW: number, dst: number, dstride: number) => void;
type Colour = (
  p0: number,
  p1: number,
  p2: number,
  n: number,
  out: number,
  ostride: number,
  s0: number,
  s1: number,
  s2: number,
  b0: number,
  b1: number,
  b2: number,
) => void;

interface Kernels {
  memory: WasmMemory;
  idct: Idct;
  vpass: VPass;
  hpass: HPass[];
  colour: Colour[];
}

let kernels: Kernels | null | undefined;

function load(): Kernels | null {
  if (kernels !== undefined) return kernels;
  if (process.env.SEMAIM_DATA_NO_SIMD === '1') return (kernels = null);
  try {
    const defs: FuncDef[] = [vpassDef()];
    for (let t = 1; t <= MAX_TAPS; t++) defs.push(hpassDef(t));
    defs.push(colourDef(0), colourDef(1), colourDef(2), idctDef());
    const bytes = buildModule(defs, 64);
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
    const ex = inst.exports as Record<string, unknown>;
    kernels = {
      memory: ex.memory as WasmMemory,
      idct: ex.idct as Idct,
      vpass: ex.vpass as VPass,
      hpass: [0, ...Array.from({ length: MAX_TAPS }, (_, i) => i + 1)].map((t) => ex[`hpass${t}`] as HPass),
      colour: [ex.ycc as Colour, ex.rgb as Colour, ex.gray as Colour],
    };
  } catch {
    kernels = null; // no WebAssembly SIMD here: the TypeScript kernels are used
  }
  return kernels;
}

// ------------------------------------------------------------------ arena
// Per-thread bump allocator on the wasm memory. The loader resets it at the start of each sample;
// JPEG planes decoded with `scratch` live here (Plane.arena = byte offset), so the resampler reads
// them in place. Growing the memory detaches earlier views: keep offsets, re-create views.

let top = 0;

export function arenaReset(): void {
  top = 0;
}

/** Allocates `bytes` (16-byte aligned) and returns the offset; null without SIMD support. */
export function arenaAlloc(bytes: number): number | null {
  const K = load();
  if (!K) return null;
  const at = top;
  top = align(top + bytes, 16);
  const have = K.memory.buffer.byteLength;
  if (top > have) K.memory.grow(Math.ceil((top - have) / 65536));
  return at;
}

export function arenaBuffer(): ArrayBuffer {
  return load()!.memory.buffer;
}

/** IDCT of the f32 block at `coef` into bytes at `out` (arena offsets); the block is zeroed. */
export function wasmIdct(): Idct | null {
  const K = load();
  return K ? K.idct : null;
}

/** True when the WebAssembly SIMD kernels are usable in this process. */
export function simdAvailable(): boolean {
  return load() !== null;
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

/**
 * Resamples all planes of `img` to spec.outW×outH, converts to RGB, normalises and writes the CHW
 * result to `out` at `offset`. Returns false when this path does not apply.
 */
export function simdResampleToOutput(img: Image, spec: ResampleSpec, out: Float32Array, offset: number, fmt: OutputFormat): boolean {
  if (fmt.kind !== 'float' || spec.interp === 'nearest') return false;
  const K = load();
  if (!K) return false;
  const { outW, outH, sample, clip, flip, interp } = spec;
  const n = outW * outH;
  const n4 = align(n, 4);
  const planes = img.planes;
  // plan every plane first (weights + source window), then allocate
  // plan every plane first (weights + source window), then allocate; planes with the same
  // placement (Cb/Cr) share their filter weights
  const plans: Array<{ p: Plane; ax: Axis; ay: Axis; cx0: number; cx1: number; ry0: number; ry1: number; cols8: number }> = [];
  for (const p of planes) {
    const prev = plans.find(
      (q) => q.p.x0 === p.x0 && q.p.y0 === p.y0 && q.p.sx === p.sx && q.p.sy === p.sy && q.p.width === p.width && q.p.height === p.height,
    );
    if (prev) {
      plans.push({ ...prev, p });
      continue;
    }
    const ax = axisWeights(outW, sample.x0, sample.x1, clip.x0, clip.x1, p.x0, p.sx, p.width, interp, flip);
    const ay = axisWeights(outH, sample.y0, sample.y1, clip.y0, clip.y1, p.y0, p.sy, p.height, interp, false);
    let cx0 = Infinity;
    let cx1 = -Infinity;
    for (let i = 0; i < outW; i++) {
      if (ax.start[i] < cx0) cx0 = ax.start[i];
      if (ax.start[i] + ax.taps > cx1) cx1 = ax.start[i] + ax.taps;
    }
    let ry0 = Infinity;
    let ry1 = -Infinity;
    for (let i = 0; i < outH; i++) {
      if (ay.start[i] < ry0) ry0 = ay.start[i];
      if (ay.start[i] + ay.taps > ry1) ry1 = ay.start[i] + ay.taps;
    }
    plans.push({ p, ax, ay, cx0, cx1, ry0, ry1, cols8: align(cx1 - cx0, 8) });
  }
  if (plans.some((q) => q.ax.taps > MAX_TAPS)) return false;
  // layout (in the arena, above whatever the decoder left there; released on return)
  const mark = top;
  const alloc = (size: number): number => arenaAlloc(size)!;
  const lay = plans.map((q) => ({
    src: q.p.arena !== undefined ? -1 : alloc(q.p.stride * (q.ry1 - q.ry0) + 32),
    tmp: alloc(outH * q.cols8 * 4),
    starts: alloc(outH * 4),
    wy: alloc(outH * q.ay.taps * 4),
    xs: alloc(outW * 4),
    wx: alloc(outW * q.ax.taps * 4),
    plane: alloc(n4 * 4),
  }));
  const outPtr = alloc(3 * n4 * 4);
  const mem = K.memory;
  const u8 = new Uint8Array(mem.buffer);
  const i32 = new Int32Array(mem.buffer);
  const f32 = new Float32Array(mem.buffer);
  for (let k = 0; k < plans.length; k++) {
    const q = plans[k];
    const L = lay[k];
    const { p } = q;
    // rows ry0.. of the plane: in place when it lives in the arena, else one contiguous copy
    let srcRow0: number;
    if (p.arena !== undefined) srcRow0 = p.arena + p.offset + q.ry0 * p.stride;
    else {
      const s0 = p.offset + q.ry0 * p.stride;
      u8.set(p.data.subarray(s0, Math.min(p.data.length, s0 + (q.ry1 - q.ry0) * p.stride)), L.src);
      srcRow0 = L.src;
    }
    const st = L.starts >> 2;
    for (let y = 0; y < outH; y++) i32[st + y] = q.ay.start[y] - q.ry0;
    f32.set(q.ay.weights, L.wy >> 2);
    const xs = L.xs >> 2;
    for (let x = 0; x < outW; x++) i32[xs + x] = q.ax.start[x] - q.cx0;
    f32.set(q.ax.weights, L.wx >> 2);
    K.vpass(srcRow0 + q.cx0, p.stride, outH, q.cols8, L.starts, L.wy, q.ay.taps, L.tmp, q.cols8 * 4);
    K.hpass[q.ax.taps](L.tmp, q.cols8 * 4, outH, L.xs, L.wx, outW, L.plane, outW * 4);
  }
  const mode = img.space === 'ycbcr' ? 0 : img.space === 'rgb' ? 1 : 2;
  const pl = (k: number): number => lay[Math.min(k, lay.length - 1)].plane;
  K.colour[mode](pl(0), pl(1), pl(2), n4 * 4, outPtr, n4 * 4, fmt.scale[0], fmt.scale[1], fmt.scale[2], fmt.bias[0], fmt.bias[1], fmt.bias[2]);
  const base = outPtr >> 2;
  for (let c = 0; c < 3; c++) out.set(f32.subarray(base + c * n4, base + c * n4 + n), offset + c * n);
  top = mark;
  return true;
}
