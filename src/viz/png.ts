// PNG encoding and decoding of RGB buffers through sharp (libvips), no other dependency.
import { writeFileAtomic } from '../util/safe-write';
import { dirname } from 'node:path';
import sharp from 'sharp';
import type { RgbImage } from './canvas';
import { makeFolder } from '../util/make-folder';

/** Encodes an RGB8 image as PNG bytes (sharp); a RangeError when data is not width × height × 3 bytes. */
export async function encodePng(img: RgbImage): Promise<Buffer> {
  if (img.data.length !== img.width * img.height * 3)
    throw new RangeError(`RGB buffer of ${img.data.length} bytes does not match ${img.width}×${img.height}×3`);
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
}

/** Writes an RGB8 image to `path` as a PNG (making its folder; the file is replaced atomically); resolves to `path`. */
export async function writePng(path: string, img: RgbImage): Promise<string> {
  makeFolder(dirname(path));
  writeFileAtomic(path, await encodePng(img));
  return path;
}

/** Reads any image sharp decodes as RGB8 (alpha flattened onto white). */
export async function readRgb(pathOrBuffer: string | Buffer): Promise<RgbImage> {
  const { data, info } = await sharp(pathOrBuffer)
    .flatten({ background: '#ffffff' })
    .toColourspace('srgb')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`expected 3 channels after conversion, got ${info.channels}`);
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}
