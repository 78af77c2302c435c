// MNIST-style IDX files (raw or gzip): MNIST and Fashion-MNIST. Debian's `dataset-fashion-mnist`
// installs Fashion-MNIST to /usr/share/datasets/fashion-mnist/.

import { refuseNonBoolean, refuseUnknownKeys } from '../../util/options';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { kMaxLength } from 'node:buffer';
import { constants, gunzipSync } from 'node:zlib';
import { sharedInt32 } from '../dataset';
import { MemoryDataset, uniformImages } from './memory';
import { readRegularFile } from '../../util/regular-file';
import { quotedPath } from '../../util/printable';

/** Fashion-MNIST's class names in label order (0 'T-shirt/top' … 9 'Ankle boot'). */
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
/** MNIST's class names: the digits '0' to '9' in label order. */
export const MNIST_CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
/** Where Debian's dataset-fashion-mnist package installs Fashion-MNIST: {@link fashionMnist}'s default folder. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** A parsed unsigned-byte IDX array (MNIST's file format), as {@link parseIdx} returns it: dims and row-major data. */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** The dims of the IDX header at the start of `d`, where its data starts and how many bytes it declares. */
function idxHeader(d: Uint8Array, name: string): { dims: number[]; start: number; count: number } {
  if (d.length < 4 || d[0] !== 0 || d[1] !== 0) throw new Error(`${name}: not an IDX file (bad magic)`);
  if (d[2] !== 0x08) throw new Error(`${name}: IDX element type 0x${d[2].toString(16)} is not unsigned byte`);
  const nd = d[3];
  if (nd < 1 || d.length < 4 + 4 * nd) throw new Error(`${name}: truncated IDX header`);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < nd; i++) {
    const o = 4 + 4 * i;
    const v = ((d[o] << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3]) >>> 0;
    dims.push(v);
    count *= v;
  }
  return { dims, start: 4 + 4 * nd, count };
}

/**
 * A gzipped IDX file, decompressed to no more than its header declares: a few kilobytes of gzip can
 * expand to gigabytes. The header is read from the first compressed bytes (Z_SYNC_FLUSH decodes a
 * prefix without an error; 4 KiB of gzip hold it, and expand to at most 4 MiB).
 */
function gunzipIdx(gz: Uint8Array, name: string): Buffer {
  let head: Buffer;
  try {
    head = gunzipSync(gz.subarray(0, 4096), { finishFlush: constants.Z_SYNC_FLUSH });
  } catch (e) {
    throw new Error(`${name}: corrupt gzip data (${(e as Error).message})`, { cause: e });
  }
  const { dims, start, count } = idxHeader(head, name);
  const size = start + count;
  if (size > kMaxLength) throw new Error(`${name}: IDX dims ${dims.join('x')} declare ${size} bytes, more than a buffer holds (${kMaxLength})`);
  try {
    return gunzipSync(gz, { maxOutputLength: size });
  } catch (e) {
    const tooLarge = (e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
    const what = tooLarge
      ? `gzip data decompresses to more than the ${size} bytes its IDX header declares (dims ${dims.join('x')})`
      : `corrupt gzip data (${(e as Error).message})`;
    throw new Error(`${name}: ${what}`, { cause: e });
  }
}

/** Parses an unsigned-byte IDX file (gunzipping when needed). */
export function parseIdx(bytes: Uint8Array, name = 'IDX file'): IdxArray {
  const d = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipIdx(bytes, name) : bytes;
  const { dims, start, count } = idxHeader(d, name);
  if (d.length - start < count) {
    throw new Error(`${name}: truncated IDX data (${d.length - start} bytes, expected ${count} for dims ${dims.join('x')})`);
  }
  // as torchvision's reader (its view to the dims fails) and the gzip path (decompressed to no more than the header declares)
  if (d.length - start > count) {
    throw new Error(
      `${name}: ${d.length - start} bytes of IDX data where its header (dims ${dims.join('x')}) declares ${count}: not the file its header describes`,
    );
  }
  return { dims, data: d.subarray(start, start + count) };
}

function readIdx(path: string): IdxArray {
  let bytes: Buffer;
  try {
    bytes = readRegularFile(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOTREGULAR') throw new Error(`IDX: ${err.message}`, { cause: e });
    throw new Error(`IDX: cannot read ${quotedPath(path)} (${err.code ?? err.message})`, { cause: e });
  }
  return parseIdx(bytes, path);
}

/** An IDX image file (n×h×w) with an optional label file (n). */
export function idxDataset(imagesPath: string, labelsPath: string | null, classes: readonly string[] = []): MemoryDataset {
  const img = readIdx(imagesPath);
  if (img.dims.length !== 3) throw new Error(`IDX: ${quotedPath(imagesPath)} has dims ${img.dims.join('x')}, expected n x height x width`);
  const [n, h, w] = img.dims;
  if (n === 0) throw new Error(`IDX: ${quotedPath(imagesPath)} holds no images`);
  // checked before allocating: 4294967295 images of 0x28 pixels need no data but fail there
  if (h === 0 || w === 0) throw new Error(`IDX: ${quotedPath(imagesPath)} has dims ${img.dims.join('x')}: images of ${h}x${w} pixels hold nothing`);
  const mem = uniformImages(n, h, w, 1);
  mem.data.set(img.data);
  let labels: Int32Array | null = null;
  if (labelsPath) {
    const lab = readIdx(labelsPath);
    if (lab.dims.length !== 1 || lab.dims[0] !== n) {
      throw new Error(`IDX: ${quotedPath(labelsPath)} has dims ${lab.dims.join('x')}, expected ${n} labels to match ${quotedPath(imagesPath)}`);
    }
    const bad = classes.length > 0 ? lab.data.findIndex((l) => l >= classes.length) : -1;
    if (bad >= 0) {
      throw new Error(
        `IDX: ${quotedPath(labelsPath)}: image ${bad} has label ${lab.data[bad]}, but there are ${classes.length} classes (not the label file of ${quotedPath(imagesPath)}?)`,
      );
    }
    labels = sharedInt32(n);
    labels.set(lab.data);
  }
  return new MemoryDataset(imagesPath, mem, labels, classes, [h, w]);
}

function findFile(root: string, base: string): string | null {
  for (const name of [base, `${base}.gz`, base.replace(/-idx/, '.idx'), `${base.replace(/-idx/, '.idx')}.gz`]) {
    const p = join(root, name);
    if (existsSync(p)) return p;
  }
  return null;
}

/** MNIST-layout folder: train-/t10k- images-idx3-ubyte and labels-idx1-ubyte (raw or .gz). */
export function mnistLike(root: string, opts: { train?: boolean; classes?: readonly string[] } = {}): MemoryDataset {
  refuseUnknownKeys(opts, ['train', 'classes']);
  refuseNonBoolean('MNIST', 'train', opts.train);
  root = resolve(root);
  const prefix = (opts.train ?? true) ? 'train' : 't10k';
  const images = findFile(root, `${prefix}-images-idx3-ubyte`);
  const labels = findFile(root, `${prefix}-labels-idx1-ubyte`);
  if (!images || !labels) {
    throw new Error(
      `MNIST: ${quotedPath(root)} lacks ${prefix}-images-idx3-ubyte[.gz] and/or ${prefix}-labels-idx1-ubyte[.gz] (expected an MNIST-layout folder of IDX files)`,
    );
  }
  return idxDataset(images, labels, opts.classes ?? MNIST_CLASSES);
}

/**
 * MNIST from a folder of its IDX files (raw or .gz) with the digits as class names; `train` (default true)
 * picks the train- files, else t10k-. Throws when the files are missing or malformed.
 */
export function mnist(root: string, opts: { train?: boolean } = {}): MemoryDataset {
  refuseUnknownKeys(opts, ['train']);
  return mnistLike(root, { ...opts, classes: MNIST_CLASSES });
}

/** Fashion-MNIST (default folder: Debian's /usr/share/datasets/fashion-mnist). */
export function fashionMnist(opts: { root?: string; train?: boolean } = {}): MemoryDataset {
  refuseUnknownKeys(opts, ['root', 'train']);
  const root = opts.root ?? FASHION_MNIST_DIR;
  if (!opts.root && !existsSync(root)) {
    throw new Error(`Fashion-MNIST: ${quotedPath(root)} does not exist (install it with: apt-get install dataset-fashion-mnist)`);
  }
  return mnistLike(root, { train: opts.train, classes: FASHION_MNIST_CLASSES });
}
