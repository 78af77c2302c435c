// Full-resolution RGB bytes of a decoded YCbCr JPEG, as libjpeg(-turbo) makes them by default and
// so as PIL (torchvision's loader) sees them: subsampled chroma "fancy"-upsampled (jdsample.c's
// triangle filters h2v1, h1v2, h2v2; plain replication for other ratios or chroma at most 2
// samples wide), converted with the JFIF tables (jdcolor.c) and clamped to bytes, per pixel at full
// resolution. A resize then reads RGB bytes as it does a PNG's.
//
// The filters, with a chroma row c (neighbours past the image edge replicated, as libjpeg does):
//   h2v1: out[2k] = (3c[k] + c[k-1] + 1) >> 2,  out[2k+1] = (3c[k] + c[k+1] + 2) >> 2
//   h1v2: out = (3·near + far + bias) >> 2, bias 1 for the upper output row, 2 for the lower
//   h2v2: s[k] = 3·near[k] + far[k]; out[2k] = (3s[k] + s[k-1] + 8) >> 4, out[2k+1] = (3s[k] + s[k+1] + 7) >> 4
// where `near` is the chroma row holding the output row and `far` the one above (upper output row)
// or below (lower).

import type { Image, Plane } from '../image';
import { fullPlane } from '../image';
import { yccToRgbRow } from '../color';
import { scratchU8 } from '../scratch';

/** Integer source rectangle, x1/y1 exclusive. */
export interface PixelRect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/**
 * RGB of `img` (a reduction-1 YCbCr decode) over `rect`, which must lie inside the luma plane. Chroma
 * neighbours outside the decoded planes are replicated, which equals libjpeg only at the image's
 * edges: decode a margin of at least one chroma sample beyond `rect` on the other sides.
 */
export function jpegToRgb(img: Image, rect: PixelRect, scratch: boolean): Image {
  const [py, pb, pr] = img.planes;
  if (img.space !== 'ycbcr' || py.sx !== 1 || py.sy !== 1) throw new Error('jpegToRgb: needs a full-resolution YCbCr decode');
  const w = rect.x1 - rect.x0;
  const h = rect.y1 - rect.y0;
  const n = w * h;
  const buf = scratch ? scratchU8('jpeg-rgb', 3 * n) : new Uint8Array(3 * n);
  const cb = new Uint8Array(w);
  const cr = new Uint8Array(w);
  const up = new Int32Array(w + 2);
  for (let y = rect.y0; y < rect.y1; y++) {
    upsampleRow(pb, rect, y, cb, up);
    upsampleRow(pr, rect, y, cr, up);
    const o = (y - rect.y0) * w;
    yccToRgbRow(py.data, py.offset + (y - py.y0) * py.stride + (rect.x0 - py.x0), cb, 0, cr, 0, buf, o, n, w);
  }
  const planes: Plane[] = [0, 1, 2].map((c) => ({ ...fullPlane(buf, w, h, c * n), x0: rect.x0, y0: rect.y0 }));
  return { width: img.width, height: img.height, space: 'rgb', planes, mask: img.mask };
}

/** Chroma of source row `y` over rect.x0..x1 into `out`; `sums`: scratch of w + 2 entries. */
function upsampleRow(p: Plane, rect: PixelRect, y: number, out: Uint8Array, sums: Int32Array): void {
  const d = p.data;
  const fx = p.sx;
  const fy = p.sy;
  const row = (j: number): number => p.offset + Math.max(0, Math.min(p.height - 1, j)) * p.stride;
  const col = (k: number): number => Math.max(0, Math.min(p.width - 1, k));
  // jdsample.c: the triangle filters only for h2v1, h2v2 (chroma wider than 2) and h1v2; other ratios (2:1 across
  // and 3:1 or 4:1 down included) replicate (int_upsample)
  const fancyX = fx === 2 && (fy === 1 || fy === 2) && p.width > 2;
  const fancyY = fy === 2 && (fx === 1 || fancyX);
  const j = Math.floor((y - p.y0) / fy);
  const near = row(j);
  const w = rect.x1 - rect.x0;
  if (!fancyX && !fancyY) {
    // 4:4:4 (identity) or libjpeg's box replication (int_upsample, h2v1_upsample/h2v2_upsample)
    for (let x = 0; x < w; x++) out[x] = d[near + col(Math.floor((rect.x0 + x - p.x0) / fx))];
    return;
  }
  const lower = (y - p.y0) % 2 === 1;
  const far = fancyY ? row(lower ? j + 1 : j - 1) : near;
  if (!fancyX) {
    // h1v2
    const bias = lower ? 2 : 1;
    for (let x = 0; x < w; x++) {
      const k = col(rect.x0 + x - p.x0);
      out[x] = (3 * d[near + k] + d[far + k] + bias) >> 2;
    }
    return;
  }
  // h2v1 / h2v2: column values (or column sums) for chroma samples k0-1 .. k1+1 into sums
  const k0 = Math.floor((rect.x0 - p.x0) / 2);
  const k1 = Math.floor((rect.x1 - 1 - p.x0) / 2);
  for (let k = k0 - 1; k <= k1 + 1; k++) {
    const c = col(k);
    sums[k - k0 + 1] = fancyY ? 3 * d[near + c] + d[far + c] : d[near + c];
  }
  const [b0, b1, shift] = fancyY ? [8, 7, 4] : [1, 2, 2];
  for (let x = 0; x < w; x++) {
    const s = rect.x0 + x - p.x0;
    const i = (s >> 1) - k0 + 1;
    const v = 3 * sums[i];
    out[x] = (s & 1) === 0 ? (v + sums[i - 1] + b0) >> shift : (v + sums[i + 1] + b1) >> shift;
  }
}
