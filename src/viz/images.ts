// The user's images for visualisation: file discovery, decoding, resize of the shorter side +
// centre crop to the model's image size (sharp), ImageNet normalisation (and back). Files are
// decoded by the data loader's decoders with the same image-input options, so figures and training
// data agree: the pixel limit is checked from the header before decoding, and the EXIF orientation
// is applied only with exifOrientation 'apply'. An image that cannot be used is skipped with a
// warning; only when none can be used does loading fail.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import type { RgbImage } from './canvas';
import { openImage } from '../data/codecs/decode';
import { IMAGE_EXTENSIONS } from '../data/sources/folder';
import { DecodeError } from '../data/codecs/errors';
import type { Image } from '../data/image';
import { DataError, yieldThenThrowIfAborted } from '../util/errors';
import { identityPlan } from '../data/geometry';
import { resampleToOutput } from '../data/resample';
import { IMAGENET_MEAN, IMAGENET_STD } from '../data/color';
import type { ImageInputOptions } from '../data/options';
import { printable } from '../util/printable';
import { readRegularFile } from '../util/regular-file';
import { stderrLine } from '../util/console-line';

// The extensions the datasets list, so a folder that trains also visualises (.ppm, .pgm and .jfif were missing).
const IMAGE_EXT = new Set(IMAGE_EXTENSIONS);

/** What {@link loadImages} returns: the usable images as display copies and as normalised model input, their names, and the files skipped. */
export interface LoadedImages {
  /** Captions: the file names, with as many parent folders as tell apart two files of one name. */
  names: string[];
  /** The files, as listed from the inputs given. */
  files: string[];
  /** Display copies at the model's size, RGB8. */
  rgb: RgbImage[];
  /** Normalised model input, NCHW float32. */
  tensor: Float32Array;
  /** Side of every image in pixels (the model's image size). */
  size: number;
  /** Files that could not be used, with why (they are left out of the figures). */
  skipped: SkippedImage[];
}

/** An input file that {@link loadImages} left out, with why (the decoder's message, naming the file). */
export interface SkippedImage {
  file: string;
  reason: string;
}

/**
 * Expands the inputs (folders and files) into image files: a folder contributes its image files
 * (sorted, not recursive). Fails naming the path if an input does not exist or yields nothing.
 */
export function listImageFiles(inputs: string[], limit = Infinity): string[] {
  const files: string[] = [];
  for (const p of inputs) {
    if (!existsSync(p)) throw new Error(`image path not found: ${p}`);
    if (statSync(p).isDirectory()) {
      const inDir = readdirSync(p)
        .filter((n) => IMAGE_EXT.has(extname(n).toLowerCase()))
        .sort()
        .map((n) => join(p, n));
      if (inDir.length === 0) throw new Error(`no image files (${[...IMAGE_EXT].join(' ')}) in folder ${p}`);
      for (const f of inDir) files.push(f); // (not push(...inDir): a spread of more than ~125,000 names overflows the call stack)
    } else {
      files.push(p);
    }
  }
  if (files.length === 0) throw new Error('no images given');
  return files.slice(0, limit);
}

/** Decodes one image and resizes the shorter side to `size`, centre-cropping the longer one. */
export async function loadRgb(path: string, size: number, io: Partial<ImageInputOptions> = {}): Promise<RgbImage> {
  // a file that cannot be read or decoded is the caller's: a DecodeError (code 'ERR_DATA') naming it, as
  // the loaders' (a decoder's own failure counts as a corrupt image there too); what follows is ours
  const cannot = (reason: DecodeError['reason'], e: unknown) =>
    new DecodeError(reason, `cannot read image ${path}: ${(e as Error).message.split('\n')[0]}`, { cause: e });
  let bytes: Buffer;
  try {
    bytes = readRegularFile(path); // a FIFO or device named as an image is skipped, not read for ever
  } catch (e) {
    throw cannot('unreadable', e);
  }
  let img: Image;
  try {
    const handle = await openImage(bytes, { background: 255, maxPixels: io.maxImagePixels, exifOrientation: io.exifOrientation });
    img = handle.decode();
  } catch (e) {
    throw cannot(e instanceof DecodeError ? e.reason : 'corrupt', e);
  }
  const { width, height } = img;
  const chw = new Uint8Array(3 * width * height);
  resampleToOutput(img, identityPlan(width, height), chw, 0, { kind: 'uint8' });
  const hwc = Buffer.alloc(chw.length);
  const hw = width * height;
  for (let i = 0; i < hw; i++) for (let c = 0; c < 3; c++) hwc[i * 3 + c] = chw[c * hw + i];
  const { data, info } = await sharp(hwc, { raw: { width, height, channels: 3 } })
    .resize(size, size, { fit: 'cover', position: 'centre', kernel: 'cubic' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/** RGB8 images (all size×size) -> normalised NCHW float32. */
export function normalizeImages(images: RgbImage[], size: number): Float32Array {
  const hw = size * size;
  const out = new Float32Array(images.length * 3 * hw);
  images.forEach((img, n) => {
    if (img.width !== size || img.height !== size) throw new RangeError(`image ${n} is ${img.width}×${img.height}, expected ${size}×${size}`);
    for (let i = 0; i < hw; i++) {
      for (let c = 0; c < 3; c++) out[(n * 3 + c) * hw + i] = (img.data[i * 3 + c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
    }
  });
  return out;
}

/** One normalised CHW image (at `offset` in an NCHW buffer) back to RGB8, clamped; a RangeError unless the buffer holds it. */
export function denormalizeImage(chw: ArrayLike<number>, size: number, offset = 0): RgbImage {
  const hw = size * size;
  // values past the buffer's end (undefined: NaN) were stored as 0, a black image
  if (!(Number.isInteger(size) && size > 0 && Number.isInteger(offset) && offset >= 0 && offset + 3 * hw <= chw.length))
    throw new RangeError(`denormalizeImage: a 3×${size}×${size} image at offset ${offset} does not fit in ${chw.length} values`);
  const data = new Uint8Array(hw * 3);
  for (let i = 0; i < hw; i++) {
    for (let c = 0; c < 3; c++) {
      const v = (chw[offset + c * hw + i] * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 255;
      data[i * 3 + c] = Math.round(Math.min(255, Math.max(0, v)));
    }
  }
  return { width: size, height: size, data };
}

/**
 * Loads images for a model of image size `size`. Unreadable ones are skipped, each with a line to
 * `warn` (default stderr), and listed in `skipped`; it fails only when none is readable. Aborting
 * `signal` stops it before the next image (an AbortError).
 */
export async function loadImages(
  inputs: string[],
  size: number,
  limit = Infinity,
  io: Partial<ImageInputOptions> = {},
  warn: (line: string) => void = stderrLine,
  signal?: AbortSignal,
): Promise<LoadedImages> {
  const files = listImageFiles(inputs);
  const rgb: RgbImage[] = [];
  const used: string[] = [];
  const skipped: SkippedImage[] = [];
  for (const f of files) {
    if (rgb.length >= limit) break;
    await yieldThenThrowIfAborted(signal);
    try {
      rgb.push(await loadRgb(f, size, io));
      used.push(f);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      const reason = e.message;
      skipped.push({ file: f, reason });
      warn(printable(`visualize: skipping ${reason}`));
    }
  }
  if (rgb.length === 0) {
    throw new DataError(`none of the ${files.length} image(s) could be read:\n  ${skipped.map((s) => s.reason).join('\n  ')}`);
  }
  return { names: captions(used), files: used, rgb, tensor: normalizeImages(rgb, size), size, skipped };
}

/** Each file's last path parts: its name, or as many parts as it takes to differ from the others'. */
export function captions(files: string[]): string[] {
  const parts = files.map((f) => f.split(/[\\/]+/).filter((p) => p));
  const depth = files.map(() => 1);
  const caption = (i: number) => parts[i].slice(-depth[i]).join('/');
  for (;;) {
    const seen = new Map<string, number[]>();
    files.forEach((_, i) => seen.set(caption(i), [...(seen.get(caption(i)) ?? []), i]));
    const clashes = [...seen.values()].filter((ix) => ix.length > 1 && ix.some((i) => depth[i] < parts[i].length));
    if (!clashes.length) return files.map((_, i) => caption(i));
    for (const ix of clashes) for (const i of ix) depth[i] = Math.min(depth[i] + 1, parts[i].length);
  }
}
