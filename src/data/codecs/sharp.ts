// Fallback decoder through sharp/libvips for formats and variants the built-in decoders do not
// handle: WebP, GIF (first frame), TIFF, AVIF/HEIF, CMYK/YCCK or arithmetic-coded JPEG, ...
// sharp is loaded lazily so workers that never need it do not pay for it. The result is flattened
// onto the background grey level, converted to sRGB (CMYK through libvips' profile) and to 8 bits.

import { DecodeError } from './errors';
import { fromInterleaved, type Image } from '../image';

// The subset of sharp's API used here (typed structurally: sharp ships ESM-first typings).
interface SharpPipeline {
  flatten(o: { background: { r: number; g: number; b: number } }): SharpPipeline;
  toColourspace(space: string): SharpPipeline;
  raw(o: { depth: 'uchar' }): SharpPipeline;
  toBuffer(o: { resolveWithObject: true }): Promise<{ data: Buffer; info: { width: number; height: number; channels: number } }>;
}
interface SharpModule {
  (input: Uint8Array, opts: { pages: number; failOn: string; limitInputPixels: number }): SharpPipeline;
  cache(on: boolean): unknown;
}
let sharpMod: SharpModule | null = null;

function loadSharp(): SharpModule {
  if (!sharpMod) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const m = require('sharp') as SharpModule | { default: SharpModule };
    sharpMod = typeof m === 'function' ? m : m.default;
    sharpMod.cache(false);
  }
  return sharpMod;
}

function classify(msg: string): DecodeError['reason'] {
  if (/unsupported image format|bad seek|not a known file format|unable to (open|read) image/i.test(msg)) return 'unsupported';
  if (/premature end|truncat|end of (file|stream|data)|unexpected end|short read|out of data/i.test(msg)) return 'truncated';
  return 'corrupt';
}

export async function decodeWithSharp(buf: Uint8Array, background = 0): Promise<Image> {
  const sharp = loadSharp();
  try {
    const { data, info } = await sharp(buf, { pages: 1, failOn: 'error', limitInputPixels: 1 << 30 })
      .flatten({ background: { r: background, g: background, b: background } })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const samples = info.width * info.height * info.channels;
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.length);
    if (data.length === 2 * samples) {
      // 16-bit data despite the uchar request (happens for some 16-bit inputs): round to 8 bits
      const b8 = new Uint8Array(samples);
      for (let i = 0; i < samples; i++) b8[i] = ((data[2 * i] | (data[2 * i + 1] << 8)) * 255 + 32767) / 65535;
      bytes = b8;
    }
    return fromInterleaved(bytes, info.width, info.height, info.channels, background);
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    const reason = classify(msg);
    throw new DecodeError(reason, reason === 'unsupported' ? 'not an image file (unsupported format)' : `${reason} image (${msg})`);
  }
}
