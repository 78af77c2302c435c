// EXIF orientation (tag 0x0112): where to read it (a JPEG's APP1 "Exif" segment, a PNG's eXIf
// chunk) and how to apply it to a decoded image. The loader ignores it by default, as torchvision
// does; `exifOrientation: 'apply'` rotates/flips as the tag says, as PIL's ImageOps.exif_transpose
// and libvips' autorotate do.

import type { Image, Plane } from '../image';
import { isFullResolution } from '../image';
import { identityPlan } from '../geometry';
import { resampleToOutput } from '../resample';

/**
 * What to do with an image's EXIF orientation tag: 'ignore' it (the default, as torchvision does) or 'apply'
 * it (as PIL's ImageOps.exif_transpose).
 */
export type ExifOrientationPolicy = 'ignore' | 'apply';
/** Every {@link ExifOrientationPolicy}: the choices of the --exif-orientation option. */
export const EXIF_ORIENTATION_POLICIES: readonly ExifOrientationPolicy[] = ['ignore', 'apply'];

/** The orientation in a TIFF structure (EXIF payload) starting at `t`; 1 when absent or invalid. */
function tiffOrientation(d: Uint8Array, t: number, end: number): number {
  if (t + 8 > end) return 1;
  const le = d[t] === 0x49 && d[t + 1] === 0x49;
  if (!le && !(d[t] === 0x4d && d[t + 1] === 0x4d)) return 1;
  const u16 = (o: number): number => (le ? d[o] | (d[o + 1] << 8) : (d[o] << 8) | d[o + 1]);
  const u32 = (o: number): number =>
    le ? (d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (d[o + 3] << 24)) >>> 0 : ((d[o] << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3]) >>> 0;
  if (u16(t + 2) !== 42) return 1;
  const ifd = t + u32(t + 4);
  if (ifd + 2 > end) return 1;
  const n = u16(ifd);
  for (let i = 0; i < n; i++) {
    const e = ifd + 2 + 12 * i;
    if (e + 12 > end) return 1;
    if (u16(e) === 0x0112) {
      const type = u16(e + 2);
      const v = type === 3 ? u16(e + 8) : type === 4 ? u32(e + 8) : 0;
      return v >= 1 && v <= 8 ? v : 1;
    }
  }
  return 1;
}

function jpegOrientation(d: Uint8Array): number {
  let pos = 2;
  while (pos + 4 <= d.length) {
    if (d[pos] !== 0xff) return 1;
    const marker = d[pos + 1];
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return 1; // EXIF comes before the first scan
    const len = (d[pos + 2] << 8) | d[pos + 3];
    const seg = pos + 4;
    const end = Math.min(d.length, pos + 2 + len);
    // "Exif\0\0" then the TIFF structure
    if (
      marker === 0xe1 &&
      len >= 16 &&
      d[seg] === 0x45 &&
      d[seg + 1] === 0x78 &&
      d[seg + 2] === 0x69 &&
      d[seg + 3] === 0x66 &&
      d[seg + 4] === 0 &&
      d[seg + 5] === 0
    ) {
      return tiffOrientation(d, seg + 6, end);
    }
    pos += 2 + len;
  }
  return 1;
}

function pngOrientation(d: Uint8Array): number {
  let pos = 8;
  while (pos + 8 <= d.length) {
    const len = ((d[pos] << 24) | (d[pos + 1] << 16) | (d[pos + 2] << 8) | d[pos + 3]) >>> 0;
    const type = String.fromCharCode(d[pos + 4], d[pos + 5], d[pos + 6], d[pos + 7]);
    const body = pos + 8;
    const end = Math.min(d.length, body + len);
    if (type === 'eXIf') {
      // the chunk holds the TIFF structure (some writers keep the JPEG-style "Exif\0\0" prefix)
      const prefixed = d[body] === 0x45 && d[body + 1] === 0x78 && d[body + 2] === 0x69 && d[body + 3] === 0x66;
      return tiffOrientation(d, prefixed ? body + 6 : body, end);
    }
    if (type === 'IDAT' || type === 'IEND') return 1; // eXIf must come before the image data
    pos = body + len + 4;
  }
  return 1;
}

/** EXIF orientation (1–8) of a JPEG or PNG; 1 (as stored) for other formats or without the tag. */
export function exifOrientation(d: Uint8Array, format: 'jpeg' | 'png' | string): number {
  if (format === 'jpeg') return jpegOrientation(d);
  if (format === 'png') return pngOrientation(d);
  return 1;
}

/** True when the orientation swaps width and height (5–8). */
export function swapsAxes(orientation: number): boolean {
  return orientation >= 5 && orientation <= 8;
}

/** Source (x, y) of display pixel (x', y') for an orientation, in a W×H stored image. */
function sourceOf(orientation: number, W: number, H: number, xo: number, yo: number): [number, number] {
  switch (orientation) {
    case 2:
      return [W - 1 - xo, yo];
    case 3:
      return [W - 1 - xo, H - 1 - yo];
    case 4:
      return [xo, H - 1 - yo];
    case 5:
      return [yo, xo];
    case 6:
      return [yo, H - 1 - xo];
    case 7:
      return [W - 1 - yo, H - 1 - xo];
    case 8:
      return [W - 1 - yo, xo];
    default:
      return [xo, yo];
  }
}

function orientPlane(p: Plane, orientation: number, W: number, H: number): Plane {
  const swap = swapsAxes(orientation);
  const ow = swap ? H : W;
  const oh = swap ? W : H;
  const out = new Uint8Array(ow * oh);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const [sx, sy] = sourceOf(orientation, W, H, x, y);
      out[y * ow + x] = p.data[p.offset + sy * p.stride + sx];
    }
  }
  return { data: out, width: ow, height: oh, stride: ow, offset: 0, x0: 0, y0: 0, sx: 1, sy: 1 };
}

/**
 * The image as displayed under an EXIF orientation (new buffers; 1 returns it unchanged). Images
 * with subsampled chroma are first converted to full-resolution RGB, with the chroma upsampling
 * the resampler uses.
 */
export function orientImage(img: Image, orientation: number): Image {
  if (orientation === 1) return img;
  const W = img.width;
  const H = img.height;
  let src = img;
  if (!isFullResolution(img)) {
    const rgb = new Uint8Array(3 * W * H);
    resampleToOutput(img, identityPlan(W, H), rgb, 0, { kind: 'uint8' });
    const plane = (c: number): Plane => ({ data: rgb, width: W, height: H, stride: W, offset: c * W * H, x0: 0, y0: 0, sx: 1, sy: 1 });
    src = { width: W, height: H, space: 'rgb', planes: [plane(0), plane(1), plane(2)], mask: img.mask };
  }
  const swap = swapsAxes(orientation);
  const out: Image = {
    width: swap ? H : W,
    height: swap ? W : H,
    space: src.space,
    planes: src.planes.map((p) => orientPlane(p, orientation, W, H)),
  };
  if (src.mask) out.mask = orientPlane(src.mask, orientation, W, H);
  return out;
}
