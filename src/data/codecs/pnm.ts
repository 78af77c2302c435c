// Netpbm decoder (P1–P6: PBM, PGM, PPM, plain and raw). The datasets list .ppm/.pgm (GTSRB ships
// as .ppm) but sharp's prebuilt libvips has no PPM loader. Read as PIL reads them: a sample becomes
// round(v / maxval × 255) with Python's half-to-even rounding (exact for maxval 255), a PBM 1 is
// black. One deliberate difference: PIL opens a 16-bit P5 as mode I and convert('RGB') clips it at
// 255 (almost every pixel white); here it is scaled like every other depth.

import { DecodeError } from './errors';
import { checkPixelLimit } from './limits';
import { fromInterleaved, type Image } from '../image';

const isSpace = (c: number): boolean => c === 0x20 || (c >= 0x09 && c <= 0x0d);

/** Whether the bytes start a Netpbm file: 'P1'–'P6' and a whitespace (PIL's test). */
export function isPnm(d: Uint8Array): boolean {
  return d.length >= 3 && d[0] === 0x50 && d[1] >= 0x31 && d[1] <= 0x36 && isSpace(d[2]);
}

/** Reads whitespace-separated decimal tokens, skipping '#' comments to the end of their line. */
class Tokens {
  constructor(
    private readonly d: Uint8Array,
    public pos: number,
  ) {}

  /** The next token as a number, or null at the end of the data; consumes the one whitespace after it. */
  next(what: string): number | null {
    const { d } = this;
    let text = '';
    while (this.pos < d.length) {
      const c = d[this.pos++];
      if (c === 0x23) {
        while (this.pos < d.length && d[this.pos] !== 0x0a && d[this.pos] !== 0x0d) this.pos++;
      } else if (isSpace(c)) {
        if (text) break;
      } else {
        if (c < 0x30 || c > 0x39) throw new DecodeError('corrupt', `corrupt PNM (${what}: '${String.fromCharCode(c)}' is not a digit)`);
        text += String.fromCharCode(c);
        if (text.length > 10) throw new DecodeError('corrupt', `corrupt PNM (${what}: a number of over 10 digits)`);
      }
    }
    return text ? Number(text) : null;
  }

  header(what: string): number {
    const v = this.next(what);
    if (v === null) throw new DecodeError('truncated', `truncated PNM header (no ${what})`);
    return v;
  }
}

/** round(v / maxval × 255) as Python rounds a float (half to even), clipped to 255 as PIL does. */
function to8bit(v: number, maxval: number): number {
  const x = (v / maxval) * 255;
  let r = Math.round(x);
  if (r - x === 0.5 && r % 2 !== 0) r -= 1;
  return Math.min(r, 255);
}

/** Decodes a Netpbm image (P1–P6) to grey (PBM, PGM) or RGB (PPM); `maxPixels`: the pixel limit (undefined = the default, 0 = none). */
export function decodePnm(d: Uint8Array, maxPixels?: number): Image {
  if (!isPnm(d)) throw new DecodeError('unsupported', 'not a PNM file');
  const kind = d[1] - 0x30;
  const tokens = new Tokens(d, 3);
  const width = tokens.header('width');
  const height = tokens.header('height');
  if (width < 1 || height < 1) throw new DecodeError('corrupt', `corrupt PNM (size ${width}×${height})`);
  const bitmap = kind === 1 || kind === 4;
  const maxval = bitmap ? 1 : tokens.header('maxval');
  if (maxval < 1 || maxval > 65535) throw new DecodeError('corrupt', `corrupt PNM (maxval ${maxval}: must be 1–65535)`);
  checkPixelLimit(width, height, maxPixels, 'PNM');
  const channels = kind === 3 || kind === 6 ? 3 : 1;
  const n = width * height * channels;
  const truncated = (): DecodeError => new DecodeError('truncated', `truncated PNM data (${width}×${height}, ${channels} channel(s))`);
  // the fewest bytes the samples take (raw: their size; plain: a digit each, P2/P3 with a space between),
  // checked before the image is allocated: a 20-byte header claiming 13,377² RGB pixels took 537 MB first
  const least = kind === 4 ? Math.ceil(width / 8) * height : kind >= 5 ? n * (maxval > 255 ? 2 : 1) : kind === 1 ? n : 2 * n - 1;
  if (d.length - tokens.pos < least) throw truncated();
  const out = new Uint8Array(n);

  if (kind === 4) {
    const rowBytes = Math.ceil(width / 8);
    if (d.length - tokens.pos < rowBytes * height) throw truncated();
    for (let y = 0; y < height; y++) {
      const row = tokens.pos + y * rowBytes;
      for (let x = 0; x < width; x++) out[y * width + x] = (d[row + (x >> 3)] >> (7 - (x & 7))) & 1 ? 0 : 255;
    }
  } else if (kind === 1) {
    // plain PBM: every sample is one '0' or '1' character; whitespace between them is optional
    let i = 0;
    for (let p = tokens.pos; p < d.length && i < n; p++) {
      const c = d[p];
      if (c === 0x23) while (p + 1 < d.length && d[p + 1] !== 0x0a && d[p + 1] !== 0x0d) p++;
      else if (c === 0x30 || c === 0x31) out[i++] = c === 0x31 ? 0 : 255;
      else if (!isSpace(c)) throw new DecodeError('corrupt', `corrupt PNM (PBM sample '${String.fromCharCode(c)}')`);
    }
    if (i < n) throw truncated();
  } else if (kind === 2 || kind === 3) {
    for (let i = 0; i < n; i++) {
      const v = tokens.next('sample');
      if (v === null) throw truncated();
      if (v > maxval) throw new DecodeError('corrupt', `corrupt PNM (sample ${v} above maxval ${maxval})`);
      out[i] = to8bit(v, maxval);
    }
  } else {
    const wide = maxval > 255;
    const p0 = tokens.pos;
    if (d.length - p0 < n * (wide ? 2 : 1)) throw truncated();
    if (maxval === 255) out.set(d.subarray(p0, p0 + n));
    else for (let i = 0; i < n; i++) out[i] = to8bit(wide ? (d[p0 + 2 * i] << 8) | d[p0 + 2 * i + 1] : d[p0 + i], maxval);
  }
  return fromInterleaved(out, width, height, channels, 0);
}
