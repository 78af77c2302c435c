// Label masks stored as PNG (ADE20K, VOC, Cityscapes style): one class index per pixel, read raw.
// Unlike decodePng (which makes pictures: palette entries become colours, low bit depths are
// scaled to 0–255), a grey PNG gives its sample values and a palette PNG its palette indices.
// Colour PNGs are refused: a mask is one index per pixel, not a picture.
import { DecodeError } from './errors';
import { checkPixelLimit } from './limits';
import { ADAM7, inflatePngData, isPng, readPngChunks, sample, unfilter } from './png';

export interface LabelMask {
  width: number;
  height: number;
  /** width × height class indices, row-major. */
  data: Uint8Array;
}

/**
 * Decodes a grey (1–16 bit) or palette (1–8 bit) PNG into its raw per-pixel values (at most 255).
 * `maxPixels`: the images' decompression-bomb limit (default DEFAULT_MAX_IMAGE_PIXELS; 0 = none).
 */
export function decodeLabelPng(d: Uint8Array, maxPixels?: number): LabelMask {
  if (!isPng(d)) throw new DecodeError('unsupported', 'not a PNG file (masks are PNGs of class indices)');
  const c = readPngChunks(d);
  const { width, height, depth, ctype } = c;
  if (ctype !== 0 && ctype !== 3) {
    throw new DecodeError(
      'unsupported',
      `mask PNG has colour type ${ctype} (${ctype === 2 || ctype === 6 ? 'RGB' : 'grey + alpha'}); a mask must be an 8-bit grey or palette PNG of class indices`,
    );
  }
  if (![1, 2, 4, 8, 16].includes(depth) || (ctype === 3 && depth === 16)) throw new DecodeError('corrupt', `corrupt PNG: colour type ${ctype}, depth ${depth}`);
  if (width === 0 || height === 0) throw new DecodeError('corrupt', 'corrupt PNG: zero size');
  // a mask is decoded whole, so a forged size is refused as for images
  checkPixelLimit(width, height, maxPixels, 'mask PNG');
  const raw = inflatePngData(c, depth);
  const out = new Uint8Array(width * height);
  const bpp = Math.max(1, depth >> 3);
  let rp = 0;
  for (const [x0, y0, dx, dy] of c.interlace ? ADAM7 : [[0, 0, 1, 1]]) {
    const pw = Math.ceil((width - x0) / dx);
    const ph = Math.ceil((height - y0) / dy);
    if (pw <= 0 || ph <= 0) continue;
    const rowBytes = Math.ceil((pw * depth) / 8);
    if (rp + (rowBytes + 1) * ph > raw.length) throw new DecodeError('truncated', 'truncated PNG data');
    let prev = new Uint8Array(rowBytes);
    let cur = new Uint8Array(rowBytes);
    for (let j = 0; j < ph; j++) {
      unfilter(raw[rp], raw.subarray(rp + 1, rp + 1 + rowBytes), prev, cur, bpp);
      rp += rowBytes + 1;
      const base = (y0 + j * dy) * width + x0;
      for (let i = 0; i < pw; i++) {
        const v = sample(cur, i, depth);
        if (v > 255) throw new DecodeError('unsupported', `mask value ${v} is above 255 (16-bit mask); class indices must be 0–254, 255 = ignore`);
        out[base + i * dx] = v;
      }
      const t = prev;
      prev = cur;
      cur = t;
    }
  }
  return { width, height, data: out };
}
