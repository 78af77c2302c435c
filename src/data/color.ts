// Colour conversion and output writers.
//
// YCbCr → RGB uses libjpeg's fixed-point JFIF tables, so values match what a libjpeg-based
// decoder (PIL, libvips) produces from the same planes. Writers emit CHW data straight into a
// batch buffer: normalised float32 through per-channel lookup tables, or uint8.

import type { Image, Plane } from './image';
import type { OutputFormat } from './resample';

const SCALEBITS = 16;
const ONE_HALF = 1 << (SCALEBITS - 1);
const FIX = (x: number): number => Math.round(x * (1 << SCALEBITS));

const CR_R = new Int32Array(256);
const CB_B = new Int32Array(256);
const CR_G = new Int32Array(256);
const CB_G = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  const x = i - 128;
  CR_R[i] = (FIX(1.402) * x + ONE_HALF) >> SCALEBITS;
  CB_B[i] = (FIX(1.772) * x + ONE_HALF) >> SCALEBITS;
  CR_G[i] = -FIX(0.714136286) * x;
  CB_G[i] = -FIX(0.344136286) * x + ONE_HALF;
}

function clamp8(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** ImageNet per-channel RGB mean on the 0–1 scale: `normalize()`'s default mean. */
export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
/** ImageNet per-channel RGB standard deviation on the 0–1 scale: `normalize()`'s default std. */
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

/** Output format for float batches: v/255 normalised with mean/std (per channel). */
export function floatFormat(mean: readonly number[] = [0, 0, 0], std: readonly number[] = [1, 1, 1]): OutputFormat {
  const scale = new Float32Array(3);
  const bias = new Float32Array(3);
  for (let c = 0; c < 3; c++) {
    scale[c] = 1 / (255 * std[c]);
    bias[c] = -mean[c] / std[c];
  }
  return { kind: 'float', scale, bias };
}

function assertFull(img: Image): void {
  for (const p of img.planes) {
    if (p.sx !== 1 || p.sy !== 1 || p.width < img.width || p.height < img.height || p.x0 !== 0 || p.y0 !== 0) {
      throw new Error('colour conversion needs full-resolution planes (resample first)');
    }
  }
}

/** Writes a full-resolution image (any colour space) as 3×H×W at `offset` of `out`. */
export function writeCHW(img: Image, out: Float32Array | Uint8Array, offset: number, fmt: OutputFormat): void {
  assertFull(img);
  if (fmt.kind === 'float') writeFloat(img, out as Float32Array, offset, fmt.scale, fmt.bias);
  else writeBytes(img, out as Uint8Array, offset);
}

function writeFloat(img: Image, out: Float32Array, offset: number, scale: Float32Array, bias: Float32Array): void {
  const w = img.width;
  const h = img.height;
  const hw = w * h;
  const P = img.planes;
  if (img.space === 'ycbcr') {
    const tmp = new Uint8Array(3 * hw);
    writeBytes(img, tmp, 0);
    for (let c = 0; c < 3; c++) {
      const s = scale[c];
      const b = bias[c];
      const o = offset + c * hw;
      const i0 = c * hw;
      for (let i = 0; i < hw; i++) out[o + i] = tmp[i0 + i] * s + b;
    }
    return;
  }
  for (let c = 0; c < 3; c++) {
    const p: Plane = img.space === 'gray' ? P[0] : P[c];
    const d = p.data;
    const s = scale[c];
    const b = bias[c];
    for (let y = 0; y < h; y++) {
      const si = p.offset + y * p.stride;
      const o = offset + c * hw + y * w;
      for (let x = 0; x < w; x++) out[o + x] = d[si + x] * s + b;
    }
  }
}

function writeBytes(img: Image, out: Uint8Array, offset: number): void {
  const w = img.width;
  const h = img.height;
  const hw = w * h;
  const P = img.planes;
  if (img.space === 'ycbcr') {
    const [py, pb, pr] = P;
    for (let y = 0; y < h; y++) {
      const o = offset + y * w;
      yccToRgbRow(py.data, py.offset + y * py.stride, pb.data, pb.offset + y * pb.stride, pr.data, pr.offset + y * pr.stride, out, o, hw, w);
    }
    return;
  }
  for (let c = 0; c < 3; c++) {
    const p: Plane = img.space === 'gray' ? P[0] : P[c];
    for (let y = 0; y < h; y++) {
      const si = p.offset + y * p.stride;
      out.set(p.data.subarray(si, si + w), offset + c * hw + y * w);
    }
  }
}

/**
 * One row of `n` YCbCr bytes to RGB bytes as libjpeg's ycc_rgb_convert: R at `o`, G at `o + plane`,
 * B at `o + 2·plane` of `out`.
 */
export function yccToRgbRow(
  dy: Uint8Array,
  oy: number,
  db: Uint8Array,
  ob: number,
  dr: Uint8Array,
  or: number,
  out: Uint8Array,
  o: number,
  plane: number,
  n: number,
): void {
  for (let x = 0; x < n; x++) {
    const Y = dy[oy + x];
    const cb = db[ob + x];
    const cr = dr[or + x];
    out[o + x] = clamp8(Y + CR_R[cr]);
    out[o + plane + x] = clamp8(Y + ((CB_G[cb] + CR_G[cr]) >> SCALEBITS));
    out[o + 2 * plane + x] = clamp8(Y + CB_B[cb]);
  }
}
