// Fallback decoder through sharp/libvips for formats and variants the built-in decoders do not
// handle: WebP, GIF (first frame), TIFF, AVIF/HEIF, CMYK/YCCK or arithmetic-coded JPEG, ...
// sharp is loaded lazily so workers that never need it do not pay for it. The result is flattened
// onto the background grey level, converted to sRGB (CMYK through libvips' profile) and to 8 bits.
// The size is read from the header (sharp's metadata) and checked against the pixel limit first;
// libvips' own limitInputPixels is set to the same limit as a second guard.

import { DecodeError } from './errors';
import { checkPixelLimit, effectivePixelLimit } from './limits';
import { fromInterleaved, type Image } from '../image';

// The subset of sharp's API used here (typed structurally: sharp ships ESM-first typings).
interface SharpPipeline {
  metadata(): Promise<{ width?: number; height?: number; format?: string }>;
  autoOrient(): SharpPipeline;
  flatten(o: { background: { r: number; g: number; b: number } }): SharpPipeline;
  toColourspace(space: string): SharpPipeline;
  raw(o: { depth: 'uchar' }): SharpPipeline;
  toBuffer(o: { resolveWithObject: true }): Promise<{ data: Buffer; info: { width: number; height: number; channels: number } }>;
}
interface SharpModule {
  (input: Uint8Array, opts: { pages: number; failOn: string; limitInputPixels: number | false }): SharpPipeline;
  cache(on: boolean): unknown;
}
let sharpMod: SharpModule | null = null;

function loadSharp(): SharpModule {
  if (!sharpMod) {
    const m = require('sharp') as SharpModule | { default: SharpModule };
    sharpMod = typeof m === 'function' ? m : m.default;
    sharpMod.cache(false);
  }
  return sharpMod;
}

function classify(msg: string): DecodeError['reason'] {
  if (/exceeds pixel limit/i.test(msg)) return 'too-large';
  if (/unsupported image format|bad seek|not a known file format|unable to (open|read) image/i.test(msg)) return 'unsupported';
  if (/premature end|truncat|end of (file|stream|data)|unexpected end|short read|out of data/i.test(msg)) return 'truncated';
  return 'corrupt';
}

export interface SharpDecodeOptions {
  /** Grey level transparent pixels are composited onto. */
  background?: number;
  /** Pixel limit (undefined = the default, 0 = none). */
  maxPixels?: number;
  /** Rotate/flip as the EXIF orientation says (default: ignore it, as torchvision does). */
  applyOrientation?: boolean;
}

export async function decodeWithSharp(buf: Uint8Array, opts: SharpDecodeOptions = {}): Promise<Image> {
  const sharp = loadSharp();
  const background = opts.background ?? 0;
  const limit = effectivePixelLimit(opts.maxPixels);
  const input = { pages: 1, failOn: 'error', limitInputPixels: Number.isFinite(limit) ? limit : (false as const) };
  try {
    // metadata reads only the header; libvips would refuse it over the limit without saying the size
    const meta = await sharp(buf, { ...input, limitInputPixels: false }).metadata();
    if (meta.width !== undefined && meta.height !== undefined) checkPixelLimit(meta.width, meta.height, opts.maxPixels, (meta.format ?? 'image').toUpperCase());
    let pipeline = sharp(buf, input);
    if (opts.applyOrientation) pipeline = pipeline.autoOrient();
    const { data, info } = await pipeline
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
    if (e instanceof DecodeError) throw e;
    const msg = (e as Error).message.split('\n')[0];
    const reason = classify(msg);
    throw new DecodeError(reason, reason === 'unsupported' ? 'not an image file (unsupported format)' : `${reason} image (${msg})`);
  }
}
