// PNG decoder (all colour types, bit depths 1–16, palette + tRNS, Adam7 interlacing) using
// node's zlib for inflate. 16-bit samples are rounded to 8 bits; alpha (channel or tRNS) is
// composited onto the requested background grey level. The size in IHDR is checked against the
// pixel limit before anything is inflated, and inflating stops at twice the size IHDR implies.

import { constants as zlib, crc32, inflateSync } from 'node:zlib';
import { constants } from 'node:buffer';
import { DecodeError } from './errors';
import { checkPixelLimit } from './limits';
import { fromInterleaved, type Image } from '../image';

const SIG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function isPng(d: Uint8Array): boolean {
  if (d.length < 8) return false;
  for (let i = 0; i < 8; i++) if (d[i] !== SIG[i]) return false;
  return true;
}

export function u32(d: Uint8Array, o: number): number {
  return ((d[o] << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3]) >>> 0;
}

const MAX_LENGTH = constants.MAX_LENGTH;
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
/** The bit depths the PNG spec allows for each colour type (any other pair libpng and PIL refuse). */
const DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
export const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
];

/** The chunks the decoders read, up to IEND. */
export interface PngChunks {
  width: number;
  height: number;
  depth: number;
  ctype: number;
  interlace: number;
  palette: Uint8Array | null;
  trns: Uint8Array | null;
  idat: Uint8Array[];
  sawEnd: boolean;
}

/** Walks a PNG's chunks (a truncated last IDAT is kept as far as it goes); throws when there is no IHDR. */
export function readPngChunks(d: Uint8Array): PngChunks {
  const c: PngChunks = { width: 0, height: 0, depth: 0, ctype: -1, interlace: 0, palette: null, trns: null, idat: [], sawEnd: false };
  let pos = 8;
  while (pos + 8 <= d.length) {
    const len = u32(d, pos);
    const type = String.fromCharCode(d[pos + 4], d[pos + 5], d[pos + 6], d[pos + 7]);
    const start = pos + 8;
    if (start + len > d.length) {
      if (type === 'IDAT') c.idat.push(d.subarray(start, d.length));
      break;
    }
    const body = d.subarray(start, start + len);
    // the chunks read here besides the image data are checked as PIL checks every chunk before IDAT: a bit
    // flipped in the palette or the size gave other pixels without a word (IDAT has zlib's own checksum)
    if (
      (type === 'IHDR' || type === 'PLTE' || type === 'tRNS') &&
      start + len + 4 <= d.length &&
      crc32(d.subarray(pos + 4, start + len)) !== u32(d, start + len)
    ) {
      throw new DecodeError('corrupt', `corrupt PNG: the CRC-32 of its ${type} chunk does not match its bytes`);
    }
    if (type === 'IHDR') {
      if (len < 13) throw new DecodeError('corrupt', 'corrupt PNG: bad IHDR');
      c.width = u32(body, 0);
      c.height = u32(body, 4);
      c.depth = body[8];
      c.ctype = body[9];
      c.interlace = body[12];
    } else if (type === 'PLTE') c.palette = body;
    else if (type === 'tRNS') c.trns = body;
    else if (type === 'IDAT') c.idat.push(body);
    else if (type === 'IEND') {
      c.sawEnd = true;
      break;
    }
    pos = start + len + 4;
  }
  if (c.ctype < 0) throw new DecodeError('corrupt', 'corrupt PNG: no IHDR chunk');
  return c;
}

/**
 * The inflated image data at `bitsPP` bits per pixel (filter bytes included). Refused when there is
 * none, when it is shorter than IHDR's size needs, and when it inflates beyond twice that size
 * (instead of filling memory).
 */
export function inflatePngData(c: PngChunks, bitsPP: number): Uint8Array {
  const { width, height, idat, sawEnd } = c;
  if (idat.length === 0) throw new DecodeError(sawEnd ? 'corrupt' : 'truncated', 'PNG has no image data');
  let expected = 0;
  for (const [x0, y0, dx, dy] of c.interlace ? ADAM7 : [[0, 0, 1, 1]]) {
    const pw = Math.ceil((width - x0) / dx);
    const ph = Math.ceil((height - y0) / dy);
    if (pw > 0 && ph > 0) expected += (Math.ceil((pw * bitsPP) / 8) + 1) * ph;
  }
  let raw: Uint8Array;
  try {
    // (Z_SYNC_FLUSH: a stream cut short gives what it holds, as PIL reads a file cut after its rows, in the
    // stream's Adler-32; one cut inside the rows is short of `expected` below)
    raw = inflateSync(idat.length === 1 ? idat[0] : Buffer.concat(idat), {
      maxOutputLength: Math.min(2 * expected + (1 << 20), MAX_LENGTH),
      finishFlush: zlib.Z_SYNC_FLUSH,
    });
  } catch (e) {
    const msg = (e as Error).message;
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new DecodeError('corrupt', `corrupt PNG: its data inflates to more than twice the ${expected} bytes a ${width}×${height} image needs`);
    }
    const truncated = !sawEnd || /unexpected end/i.test(msg);
    throw new DecodeError(truncated ? 'truncated' : 'corrupt', `${truncated ? 'truncated' : 'corrupt'} PNG data (${msg})`);
  }
  if (raw.length < expected) throw new DecodeError('truncated', 'truncated PNG data');
  return raw;
}

/** Decodes a PNG; `maxPixels`: the pixel limit (undefined = the default, 0 = none). */
export function decodePng(d: Uint8Array, background = 0, maxPixels?: number): Image {
  if (!isPng(d)) throw new DecodeError('unsupported', 'not a PNG file');
  const c = readPngChunks(d);
  const { width, height, depth, ctype, palette, trns } = c;
  const ch = CHANNELS[ctype];
  if (!ch || !DEPTHS[ctype].includes(depth)) throw new DecodeError('corrupt', `corrupt PNG: colour type ${ctype}, depth ${depth}`);
  if (width === 0 || height === 0) throw new DecodeError('corrupt', 'corrupt PNG: zero size');
  if (ctype === 3 && !palette) throw new DecodeError('corrupt', 'corrupt PNG: palette image without PLTE');
  // a grey or RGB colour key is one 2-byte sample per channel; a shorter one was read with zeros for what it lacks
  // (PIL refuses it; a longer one, as PIL, is read from its start)
  if (trns && (ctype === 0 || ctype === 2) && trns.length < 2 * ch) {
    throw new DecodeError('corrupt', `corrupt PNG: a tRNS colour key of ${trns.length} bytes where colour type ${ctype} needs ${2 * ch}`);
  }
  checkPixelLimit(width, height, maxPixels, 'PNG');
  const bitsPP = ch * depth;
  const raw = inflatePngData(c, bitsPP);
  const bpp = Math.max(1, bitsPP >> 3);

  // Output channels: palette → 3 (or 4 with tRNS); gray/rgb + tRNS colour key → +alpha.
  const keyed = trns !== null && (ctype === 0 || ctype === 2);
  const outCh = ctype === 3 ? (trns ? 4 : 3) : keyed ? ch + 1 : ch;
  const out = new Uint8Array(width * height * outCh);

  let rp = 0;
  const passes = c.interlace ? ADAM7 : [[0, 0, 1, 1]];
  for (const [x0, y0, dx, dy] of passes) {
    const pw = Math.ceil((width - x0) / dx);
    const ph = Math.ceil((height - y0) / dy);
    if (pw <= 0 || ph <= 0) continue;
    const rowBytes = Math.ceil((pw * bitsPP) / 8);
    const need = (rowBytes + 1) * ph;
    if (rp + need > raw.length) throw new DecodeError('truncated', 'truncated PNG data');
    let prev = new Uint8Array(rowBytes);
    let cur = new Uint8Array(rowBytes);
    for (let y = 0; y < ph; y++) {
      const f = raw[rp];
      const line = raw.subarray(rp + 1, rp + 1 + rowBytes);
      rp += rowBytes + 1;
      unfilter(f, line, prev, cur, bpp);
      emitRow(cur, pw, y0 + y * dy, x0, dx, width, depth, ctype, ch, outCh, palette, trns, out);
      const t = prev;
      prev = cur;
      cur = t;
    }
  }
  return fromInterleaved(out, width, height, outCh, background);
}

export function unfilter(f: number, line: Uint8Array, prev: Uint8Array, cur: Uint8Array, bpp: number): void {
  const n = line.length;
  switch (f) {
    case 0:
      cur.set(line);
      break;
    case 1:
      for (let i = 0; i < n; i++) cur[i] = line[i] + (i >= bpp ? cur[i - bpp] : 0);
      break;
    case 2:
      for (let i = 0; i < n; i++) cur[i] = line[i] + prev[i];
      break;
    case 3:
      for (let i = 0; i < n; i++) cur[i] = line[i] + (((i >= bpp ? cur[i - bpp] : 0) + prev[i]) >> 1);
      break;
    case 4:
      for (let i = 0; i < n; i++) {
        const a = i >= bpp ? cur[i - bpp] : 0;
        const b = prev[i];
        const c = i >= bpp ? prev[i - bpp] : 0;
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        cur[i] = line[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
      }
      break;
    default:
      throw new DecodeError('corrupt', `corrupt PNG: filter type ${f}`);
  }
}

function emitRow(
  row: Uint8Array,
  pw: number,
  y: number,
  x0: number,
  dx: number,
  width: number,
  depth: number,
  ctype: number,
  ch: number,
  outCh: number,
  palette: Uint8Array | null,
  trns: Uint8Array | null,
  out: Uint8Array,
): void {
  const base = y * width;
  if (depth === 8 && ctype !== 3 && outCh === ch) {
    if (dx === 1) {
      out.set(row.subarray(0, pw * ch), base * ch);
      return;
    }
    for (let i = 0; i < pw; i++) {
      const o = (base + x0 + i * dx) * ch;
      for (let c = 0; c < ch; c++) out[o + c] = row[i * ch + c];
    }
    return;
  }
  for (let i = 0; i < pw; i++) {
    const o = (base + x0 + i * dx) * outCh;
    if (ctype === 3) {
      const idx = sample(row, i, depth);
      // an index past PLTE's entries is grey (idx, idx, idx), as PIL (torchvision's reader) gives it
      const inPalette = idx * 3 + 2 < palette!.length;
      out[o] = inPalette ? palette![idx * 3] : idx;
      out[o + 1] = inPalette ? palette![idx * 3 + 1] : idx;
      out[o + 2] = inPalette ? palette![idx * 3 + 2] : idx;
      if (outCh === 4) out[o + 3] = idx < trns!.length ? trns![idx] : 255;
      continue;
    }
    let keyMatch = true;
    for (let c = 0; c < ch; c++) {
      const v = sample(row, i * ch + c, depth);
      out[o + c] = to8(v, depth);
      if (outCh > ch) {
        const key = (trns![2 * c] << 8) | trns![2 * c + 1];
        if (v !== key) keyMatch = false;
      }
    }
    if (outCh > ch) out[o + ch] = keyMatch ? 0 : 255;
  }
}

/** k-th sample of a row at the given bit depth. */
export function sample(row: Uint8Array, k: number, depth: number): number {
  switch (depth) {
    case 8:
      return row[k];
    case 16:
      return (row[2 * k] << 8) | row[2 * k + 1];
    case 4:
      return (row[k >> 1] >> (4 - 4 * (k & 1))) & 15;
    case 2:
      return (row[k >> 2] >> (6 - 2 * (k & 3))) & 3;
    default:
      return (row[k >> 3] >> (7 - (k & 7))) & 1;
  }
}

function to8(v: number, depth: number): number {
  switch (depth) {
    case 8:
      return v;
    case 16:
      return ((v * 255 + 32767) / 65535) | 0;
    case 4:
      return v * 17;
    case 2:
      return v * 85;
    default:
      return v * 255;
  }
}
