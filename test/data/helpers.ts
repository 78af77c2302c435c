// Helpers for the data tests: temporary folders and real image files written with sharp or by hand.

import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import type { Image } from '../../src/data/image';

const sharpMod = require('sharp');
// sharp ships ESM-first typings; the tests use it structurally.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const sharp: any = typeof sharpMod === 'function' ? sharpMod : sharpMod.default;

export function tempDir(prefix = 'semaim-data-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs `job` while writes of files whose path matches `path` fail as on a full disk (ENOSPC); fs.writeFileSync is restored after. */
export async function withFullDiskAt<T>(path: RegExp, job: () => Promise<T>): Promise<T> {
  const fs = require('node:fs') as typeof import('node:fs'); // a plain object: its functions are replaceable
  const real = fs.writeFileSync;
  fs.writeFileSync = ((...args: Parameters<typeof real>) => {
    if (path.test(String(args[0]))) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return real(...args);
  }) as typeof fs.writeFileSync;
  try {
    return await job();
  } finally {
    fs.writeFileSync = real;
  }
}

/**
 * Runs `job` while the streamed writes (fs.write / fs.writev, as a WriteStream makes them) to files whose
 * path matches `path` fail as on a full disk (ENOSPC), each such file taking `room` bytes first; fs is restored after.
 */
export async function withFullDiskStreamAt<T>(path: RegExp, job: () => Promise<T>, room = 0): Promise<T> {
  const fs = require('node:fs') as typeof import('node:fs'); // a plain object: its functions are replaceable
  const { open, write, writev } = fs;
  const left = new Map<number, number>(); // fd → bytes the disk still takes
  const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
  fs.open = ((p: string, ...rest: unknown[]) => {
    const cb = rest.pop() as (e: Error | null, fd: number) => void;
    (open as (...a: unknown[]) => void)(p, ...rest, (e: Error | null, fd: number) => {
      if (!e && path.test(String(p))) left.set(fd, room);
      cb(e, fd);
    });
  }) as unknown as typeof fs.open;
  const full = (fd: number, bytes: number, cb: (e: Error | null, n?: number) => void): boolean => {
    const r = left.get(fd);
    if (r === undefined) return false;
    if (r < bytes) {
      left.set(fd, 0);
      process.nextTick(cb, enospc());
      return true;
    }
    left.set(fd, r - bytes);
    return false;
  };
  fs.write = ((fd: number, buf: NodeJS.ArrayBufferView, ...rest: unknown[]) => {
    const cb = rest[rest.length - 1] as (e: Error | null) => void;
    if (!full(fd, buf.byteLength, cb)) (write as (...a: unknown[]) => void)(fd, buf, ...rest);
  }) as unknown as typeof fs.write;
  fs.writev = ((fd: number, bufs: NodeJS.ArrayBufferView[], ...rest: unknown[]) => {
    const cb = rest[rest.length - 1] as (e: Error | null) => void;
    const bytes = bufs.reduce((n, b) => n + b.byteLength, 0);
    if (!full(fd, bytes, cb)) (writev as (...a: unknown[]) => void)(fd, bufs, ...rest);
  }) as unknown as typeof fs.writev;
  try {
    return await job();
  } finally {
    Object.assign(fs, { open, write, writev });
  }
}

export function write(path: string, data: Uint8Array | string): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
  return path;
}

/** A smooth, deterministic RGB test picture (interleaved). */
export function picture(w: number, h: number, seed = 0): Buffer {
  const b = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      b[o] = Math.round(127 + 100 * Math.sin((x + seed) / 7));
      b[o + 1] = Math.round(127 + 100 * Math.cos((y - seed) / 9));
      b[o + 2] = Math.round(((x + y + seed) * 255) / (w + h));
    }
  }
  return b;
}

/** Encodes interleaved raw pixels with sharp. */
export async function encode(raw: Buffer, w: number, h: number, ch: number, fmt: string, opts: object = {}): Promise<Buffer> {
  return sharp(raw, { raw: { width: w, height: h, channels: ch } })
    [fmt](opts)
    .toBuffer();
}

/** Decodes with sharp to interleaved sRGB, alpha flattened on black. */
export async function sharpRgb(bytes: Uint8Array): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(bytes, { pages: 1 })
    .flatten({ background: { r: 0, g: 0, b: 0 } })
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** Interleaved RGB of a full-resolution planar image (gray replicated). */
export function interleave(img: Image): Uint8Array {
  const { width: w, height: h } = img;
  const out = new Uint8Array(w * h * 3);
  for (let c = 0; c < 3; c++) {
    const p = img.planes[img.space === 'gray' ? 0 : c];
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[(y * w + x) * 3 + c] = p.data[p.offset + y * p.stride + x];
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

/** Minimal BMP writer for tests: 1/4/8-bit palette, 24-bit, 16/32-bit bitfields, RLE8. */
export function bmp(
  w: number,
  h: number,
  px: (x: number, y: number) => [number, number, number, number],
  opts: { bpp: 1 | 4 | 8 | 16 | 24 | 32; topDown?: boolean; rle8?: boolean; palette?: Array<[number, number, number]> },
): Buffer {
  const { bpp } = opts;
  const pal = opts.palette ?? [];
  const stride = Math.floor((bpp * w + 31) / 32) * 4;
  const rows: Buffer[] = [];
  for (let r = 0; r < h; r++) {
    const y = opts.topDown ? r : h - 1 - r;
    const row = Buffer.alloc(stride);
    for (let x = 0; x < w; x++) {
      const [R, G, B, A] = px(x, y);
      if (bpp <= 8) {
        const idx = pal.findIndex((c) => c[0] === R && c[1] === G && c[2] === B);
        if (idx < 0) throw new Error('colour not in palette');
        if (bpp === 8) row[x] = idx;
        else if (bpp === 4) row[x >> 1] |= x & 1 ? idx : idx << 4;
        else row[x >> 3] |= idx << (7 - (x & 7));
      } else if (bpp === 24) {
        row[x * 3] = B;
        row[x * 3 + 1] = G;
        row[x * 3 + 2] = R;
      } else if (bpp === 16) {
        row.writeUInt16LE(((R >> 3) << 11) | ((G >> 2) << 5) | (B >> 3), x * 2);
      } else {
        row.writeUInt32LE(((A << 24) | (R << 16) | (G << 8) | B) >>> 0, x * 4);
      }
    }
    rows.push(row);
  }
  let pixels: Buffer;
  if (opts.rle8) {
    const parts: number[] = [];
    for (let r = 0; r < h; r++) {
      const row = rows[r];
      let x = 0;
      while (x < w) {
        let run = 1;
        while (x + run < w && run < 255 && row[x + run] === row[x]) run++;
        parts.push(run, row[x]);
        x += run;
      }
      parts.push(0, 0);
    }
    parts.push(0, 1);
    pixels = Buffer.from(parts);
  } else pixels = Buffer.concat(rows);
  return bmpFile({ w, h: opts.topDown ? -h : h, bpp, compression: opts.rle8 ? 1 : bpp === 16 || bpp === 32 ? 3 : 0, palette: pal, pixels });
}

/**
 * A BMP file from its parts: a 40-byte header (108 with the 16/32-bit masks), the palette (for ≤ 8 bits) and
 * the pixel data as given (`h` negative: top-down; `compression` 1 = RLE8, 2 = RLE4, 3 = bitfields).
 */
export function bmpFile(o: { w: number; h: number; bpp: number; compression: number; palette: Array<[number, number, number]>; pixels: Uint8Array }): Buffer {
  const { bpp } = o;
  const hsize = bpp === 32 || bpp === 16 ? 108 : 40;
  const pal = bpp <= 8 ? o.palette : [];
  const off = 14 + hsize + pal.length * 4;
  const file = Buffer.alloc(off + o.pixels.length);
  file.write('BM', 0, 'latin1');
  file.writeUInt32LE(file.length, 2);
  file.writeUInt32LE(off, 10);
  file.writeUInt32LE(hsize, 14);
  file.writeInt32LE(o.w, 18);
  file.writeInt32LE(o.h, 22);
  file.writeUInt16LE(1, 26);
  file.writeUInt16LE(bpp, 28);
  file.writeUInt32LE(o.compression, 30);
  file.writeUInt32LE(o.pixels.length, 34);
  file.writeUInt32LE(pal.length, 46);
  if (bpp === 16) {
    file.writeUInt32LE(0xf800, 54);
    file.writeUInt32LE(0x07e0, 58);
    file.writeUInt32LE(0x001f, 62);
  } else if (bpp === 32) {
    file.writeUInt32LE(0x00ff0000, 54);
    file.writeUInt32LE(0x0000ff00, 58);
    file.writeUInt32LE(0x000000ff, 62);
    file.writeUInt32LE(0xff000000, 66);
  }
  pal.forEach(([r, g, b], i) => file.set([b, g, r, 0], 14 + hsize + 4 * i));
  file.set(o.pixels, off);
  return file;
}

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32(b: Uint8Array): number {
  let c = -1;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]) & 255] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** The eight bytes every PNG file starts with. */
export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function chunk(type: string, body: Uint8Array): Buffer {
  const b = Buffer.alloc(12 + body.length);
  b.writeUInt32BE(body.length, 0);
  b.write(type, 4, 'latin1');
  Buffer.from(body).copy(b, 8);
  b.writeUInt32BE(crc32(b.subarray(4, 8 + body.length)), 8 + body.length);
  return b;
}

/**
 * Minimal PNG writer (no interlace, filter 0): `samples` holds w*h*channels sample values
 * (0..2^depth-1) for colour type `ctype`; optional PLTE/tRNS bodies.
 */
export function pngEncode(
  w: number,
  h: number,
  ctype: 0 | 2 | 3 | 4 | 6,
  depth: 1 | 2 | 4 | 8 | 16,
  samples: ArrayLike<number>,
  extra: { plte?: Uint8Array; trns?: Uint8Array } = {},
): Buffer {
  const { deflateSync } = require('node:zlib') as typeof import('node:zlib');
  const ch = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[ctype];
  const rowBytes = Math.ceil((w * ch * depth) / 8);
  const raw = Buffer.alloc((rowBytes + 1) * h);
  for (let y = 0; y < h; y++) {
    const o = y * (rowBytes + 1) + 1;
    for (let k = 0; k < w * ch; k++) {
      const v = samples[y * w * ch + k];
      if (depth === 16) raw.writeUInt16BE(v, o + 2 * k);
      else if (depth === 8) raw[o + k] = v;
      else {
        const bit = k * depth;
        raw[o + (bit >> 3)] |= v << (8 - depth - (bit & 7));
      }
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = depth;
  ihdr[9] = ctype;
  const parts = [PNG_SIGNATURE, chunk('IHDR', ihdr)];
  if (extra.plte) parts.push(chunk('PLTE', extra.plte));
  if (extra.trns) parts.push(chunk('tRNS', extra.trns));
  parts.push(chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0)));
  return Buffer.concat(parts);
}
