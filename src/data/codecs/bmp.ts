// BMP decoder (libvips/sharp cannot read BMP): OS/2 and Windows headers (12–124 bytes),
// 1/4/8-bit palettes, 16/24/32-bit (BI_RGB and BI_BITFIELDS masks, alpha when a mask is given),
// RLE8/RLE4, bottom-up and top-down rows.

import { DecodeError } from './errors';
import { checkPixelLimit } from './limits';
import { fromInterleaved, type Image } from '../image';

export function isBmp(d: Uint8Array): boolean {
  return d.length >= 2 && d[0] === 0x42 && d[1] === 0x4d;
}

function u16(d: Uint8Array, o: number): number {
  return d[o] | (d[o + 1] << 8);
}
function u32(d: Uint8Array, o: number): number {
  return (d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (d[o + 3] << 24)) >>> 0;
}
function i32(d: Uint8Array, o: number): number {
  return d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (d[o + 3] << 24);
}

interface Mask {
  shift: number;
  max: number;
  mask: number;
}

function maskInfo(mask: number): Mask {
  if (mask === 0) return { shift: 0, max: 0, mask: 0 };
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  let bits = 0;
  // Bounded: JS shift counts are mod 32, so an all-ones mask (a valid 32-bit channel) looped forever.
  while (shift + bits < 32 && ((mask >>> (shift + bits)) & 1) === 1) bits++;
  return { shift, max: bits >= 32 ? 0xffffffff : 2 ** bits - 1, mask };
}

/** A masked channel scaled to 0-255 as PIL's BGR;15 / BGR;16 unpackers scale 16-bit pixels: v × 255 / max, rounded down. */
function channel(px: number, m: Mask): number {
  if (m.max === 0) return 0;
  return Math.floor((((px & m.mask) >>> m.shift) * 255) / m.max);
}

/** Decodes a BMP; `maxPixels`: the pixel limit (undefined = the default, 0 = none). */
export function decodeBmp(d: Uint8Array, background = 0, maxPixels?: number): Image {
  if (!isBmp(d)) throw new DecodeError('unsupported', 'not a BMP file');
  if (d.length < 26) throw new DecodeError('truncated', 'truncated BMP header');
  let dataOffset = u32(d, 10);
  const hsize = u32(d, 14);
  let width: number;
  let height: number;
  let bpp: number;
  let compression = 0;
  let colors = 0;
  let palEntry = 4;
  if (hsize === 12) {
    width = u16(d, 18);
    height = u16(d, 20);
    bpp = u16(d, 24);
    palEntry = 3;
  } else if (hsize >= 40) {
    if (d.length < 14 + 40) throw new DecodeError('truncated', 'truncated BMP header');
    width = i32(d, 18);
    height = i32(d, 22);
    bpp = u16(d, 28);
    compression = u32(d, 30);
    colors = u32(d, 46);
  } else {
    throw new DecodeError('unsupported', `unsupported BMP header size ${hsize}`);
  }
  const topDown = height < 0;
  height = Math.abs(height);
  if (width <= 0 || height === 0 || width > 65535 || height > 65535) {
    throw new DecodeError('corrupt', `corrupt BMP: size ${width}x${height}`);
  }
  checkPixelLimit(width, height, maxPixels, 'BMP');
  if (compression === 4 || compression === 5) throw new DecodeError('unsupported', 'BMP with embedded JPEG/PNG');
  // masks for bitfields
  let masks: Mask[] | null = null;
  let hasAlpha = false;
  if (compression === 3 || compression === 6) {
    const mo = hsize >= 52 ? 14 + 40 : 14 + hsize;
    if (mo + 12 > d.length) throw new DecodeError('truncated', 'truncated BMP masks');
    const a = compression === 6 || hsize >= 56 ? (mo + 16 <= d.length ? u32(d, mo + 12) : 0) : 0;
    masks = [maskInfo(u32(d, mo)), maskInfo(u32(d, mo + 4)), maskInfo(u32(d, mo + 8)), maskInfo(a)];
    hasAlpha = a !== 0;
  } else if (bpp === 16) {
    masks = [maskInfo(0x7c00), maskInfo(0x03e0), maskInfo(0x001f), maskInfo(0)];
  } else if (bpp === 32 && hsize >= 56) {
    // BI_RGB 32-bit: some writers put alpha in the high byte and say so with a V3+ alpha mask.
    const a = u32(d, 14 + 52);
    if (a !== 0) {
      masks = [maskInfo(0xff0000), maskInfo(0xff00), maskInfo(0xff), maskInfo(a)];
      hasAlpha = true;
    }
  }
  let palette: Uint8Array | null = null;
  const po = 14 + hsize + (compression === 3 && hsize === 40 ? 12 : 0);
  // a pixel-data offset of 0 (some writers leave it unset) means the pixels follow the palette, as PIL
  // reads it; it was taken as byte 0, and the file's own header decoded as its first pixels
  if (dataOffset === 0) dataOffset = po + (bpp <= 8 ? (colors || 1 << bpp) * palEntry : 0);
  if (bpp <= 8) {
    const n = colors || 1 << bpp;
    // entries the file does not give are the grey ramp (i, i, i), as PIL's palette starts
    palette = Uint8Array.from({ length: 256 * 3 }, (_, j) => Math.floor(j / 3));
    for (let i = 0; i < n && i < 256; i++) {
      const o = po + i * palEntry;
      if (o + 3 > d.length) throw new DecodeError('truncated', 'truncated BMP palette');
      palette[i * 3] = d[o + 2];
      palette[i * 3 + 1] = d[o + 1];
      palette[i * 3 + 2] = d[o];
    }
  }
  const outCh = hasAlpha ? 4 : 3;
  if (compression === 1 || compression === 2) {
    if (!palette) throw new DecodeError('corrupt', 'corrupt BMP: RLE without palette');
    const out = new Uint8Array(width * height * outCh);
    // pixels no run sets (an end of line or a delta skips them) are palette entry 0, as PIL's decoder pads with index 0
    for (let o = 0; o < out.length; o += 3) out.set(palette.subarray(0, 3), o);
    decodeRle(d, dataOffset, width, height, compression === 2 ? 4 : 8, palette, topDown, out);
    return fromInterleaved(out, width, height, 3, background);
  }
  if (![1, 4, 8, 16, 24, 32].includes(bpp)) throw new DecodeError('unsupported', `unsupported BMP bit depth ${bpp}`);
  const stride = Math.floor((bpp * width + 31) / 32) * 4;
  if (dataOffset + stride * (height - 1) + Math.ceil((bpp * width) / 8) > d.length) {
    throw new DecodeError('truncated', 'truncated BMP pixel data');
  }
  // (allocated once the pixels are known to be there: a 54-byte header claiming 65,535×2,730 took 537 MB first)
  const out = new Uint8Array(width * height * outCh);
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (topDown ? y : height - 1 - y) * stride;
    let o = y * width * outCh;
    for (let x = 0; x < width; x++, o += outCh) {
      if (bpp <= 8) {
        let idx: number;
        if (bpp === 8) idx = d[row + x];
        else if (bpp === 4) idx = (d[row + (x >> 1)] >> (x & 1 ? 0 : 4)) & 15;
        else idx = (d[row + (x >> 3)] >> (7 - (x & 7))) & 1;
        out[o] = palette![idx * 3];
        out[o + 1] = palette![idx * 3 + 1];
        out[o + 2] = palette![idx * 3 + 2];
      } else if (bpp === 24) {
        const p = row + x * 3;
        out[o] = d[p + 2];
        out[o + 1] = d[p + 1];
        out[o + 2] = d[p];
      } else {
        const px = bpp === 16 ? u16(d, row + x * 2) : u32(d, row + x * 4);
        if (masks) {
          out[o] = channel(px, masks[0]);
          out[o + 1] = channel(px, masks[1]);
          out[o + 2] = channel(px, masks[2]);
          if (hasAlpha) out[o + 3] = channel(px, masks[3]);
        } else {
          out[o] = (px >>> 16) & 255;
          out[o + 1] = (px >>> 8) & 255;
          out[o + 2] = px & 255;
        }
      }
    }
  }
  return fromInterleaved(out, width, height, outCh, background);
}

function decodeRle(d: Uint8Array, pos: number, width: number, height: number, bits: 4 | 8, pal: Uint8Array, topDown: boolean, out: Uint8Array): void {
  let x = 0;
  let y = 0;
  const put = (idx: number): void => {
    if (x < width && y < height) {
      const row = topDown ? y : height - 1 - y;
      const o = (row * width + x) * 3;
      out[o] = pal[idx * 3];
      out[o + 1] = pal[idx * 3 + 1];
      out[o + 2] = pal[idx * 3 + 2];
    }
    x++;
  };
  for (;;) {
    if (pos + 2 > d.length) throw new DecodeError('truncated', 'truncated BMP RLE data');
    const a = d[pos];
    const b = d[pos + 1];
    pos += 2;
    if (a > 0) {
      for (let i = 0; i < a; i++) put(bits === 8 ? b : i & 1 ? b & 15 : b >> 4);
    } else if (b === 0) {
      x = 0;
      y++;
    } else if (b === 1) {
      return;
    } else if (b === 2) {
      if (pos + 2 > d.length) throw new DecodeError('truncated', 'truncated BMP RLE data');
      x += d[pos];
      y += d[pos + 1];
      pos += 2;
    } else {
      const n = b;
      const bytes = bits === 8 ? n : (n + 1) >> 1;
      if (pos + bytes > d.length) throw new DecodeError('truncated', 'truncated BMP RLE data');
      for (let i = 0; i < n; i++) put(bits === 8 ? d[pos + i] : i & 1 ? d[pos + (i >> 1)] & 15 : d[pos + (i >> 1)] >> 4);
      pos += (bytes + 1) & ~1;
    }
    if (y >= height) return;
  }
}
