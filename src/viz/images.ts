// The user's images for visualisation: file discovery, decoding with sharp, resize of the shorter
// side + centre crop to the model's image size, ImageNet normalisation (and back).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import sharp from 'sharp';
import type { RgbImage } from './canvas';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff', '.avif']);

export interface LoadedImages {
  names: string[];
  /** Display copies at the model's size, RGB8. */
  rgb: RgbImage[];
  /** Normalised model input, NCHW float32. */
  tensor: Float32Array;
  size: number;
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
      const inDir = readdirSync(p).filter((n) => IMAGE_EXT.has(extname(n).toLowerCase())).sort().map((n) => join(p, n));
      if (inDir.length === 0) throw new Error(`no image files (${[...IMAGE_EXT].join(' ')}) in folder ${p}`);
      files.push(...inDir);
    } else {
      files.push(p);
    }
  }
  if (files.length === 0) throw new Error('no images given');
  return files.slice(0, limit);
}

/** Decodes one image and resizes the shorter side to `size`, centre-cropping the longer one. */
export async function loadRgb(path: string, size: number): Promise<RgbImage> {
  try {
    const { data, info } = await sharp(path, { pages: 1 })
      .rotate()
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .resize(size, size, { fit: 'cover', position: 'centre', kernel: 'cubic' })
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (e) {
    throw new Error(`cannot read image ${path}: ${(e as Error).message.split('\n')[0]}`);
  }
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

/** One normalised CHW image (at `offset` in an NCHW buffer) back to RGB8, clamped. */
export function denormalizeImage(chw: ArrayLike<number>, size: number, offset = 0): RgbImage {
  const hw = size * size;
  const data = new Uint8Array(hw * 3);
  for (let i = 0; i < hw; i++) {
    for (let c = 0; c < 3; c++) {
      const v = (chw[offset + c * hw + i] * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 255;
      data[i * 3 + c] = Math.round(Math.min(255, Math.max(0, v)));
    }
  }
  return { width: size, height: size, data };
}

/** Loads images for a model of image size `size`. */
export async function loadImages(inputs: string[], size: number, limit = Infinity): Promise<LoadedImages> {
  const files = listImageFiles(inputs, limit);
  const rgb: RgbImage[] = [];
  for (const f of files) rgb.push(await loadRgb(f, size));
  return { names: files.map((f) => basename(f)), rgb, tensor: normalizeImages(rgb, size), size };
}
