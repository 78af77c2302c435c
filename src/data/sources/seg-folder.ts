// Users' segmentation data in the ADE20K / VOC style:
//
//   <root>/classes.txt              one class name per line (line k = class index k); optional when
//                                   the number of classes is given
//   <root>/<split>/images/**/x.jpg  images (any format the loader reads)
//   <root>/<split>/masks/**/x.png   one class index per pixel (8-bit grey or palette PNG), 255 = ignore
//
// An image and its mask share their path under images/ and masks/ up to the extension. An image
// without a mask, or whose mask name is another image's too (a.jpg and a.png) or several masks' (a.png and
// a.PNG), is left out while listing; a mask whose size differs from its image, that does not
// decode, or that holds a label outside the classes is left out when read (SegSkipError), as is an
// image that does not decode (DecodeError). Nothing is replaced: the loader counts what it leaves out.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { readRegularFile } from '../../util/regular-file';
import { join, resolve } from 'node:path';
import { openImage, type ImageHandle } from '../codecs/decode';
import { imageMemberCap } from '../codecs/limits';
import { readImageFile } from '../codecs/read-file';
import type { ImageInputOptions } from '../options';
import { DecodeError } from '../codecs/errors';
import { decodeLabelPng } from '../codecs/label-png';
import { permutation } from '../rng';
import { IMAGE_EXTENSIONS, imageFiles } from './folder';
import { maskPlane, SegSkipError, withMask, type SegSource } from './seg-source';
import { quotedPath } from '../../util/printable';

export interface SegFolderOptions {
  split: 'train' | 'test';
  /** Number of classes when there is no classes.txt (names become class0, class1, ...). */
  numClasses?: number;
  /** ADE20K's convention: label 0 ('other') becomes ignore (255) and every other label k becomes k − 1. */
  reduceZeroLabel?: boolean;
  /** Use a seeded random subset of at most this many listed pairs. */
  limit?: number;
  seed?: number;
  /** Grey level transparent pixels are composited onto (default 255, as the loader). */
  background?: number;
  /** --max-image-pixels and --exif-orientation, for images and masks alike. */
  imageInput?: ImageInputOptions;
}

const LAYOUT = '<root>/{train,test}/images/**/NAME.{jpg,png,...} with <root>/{train,test}/masks/**/NAME.png (val/ for a missing test/; and <root>/classes.txt)';

const stem = (rel: string): string => rel.replace(/\.[^./]+$/, '');

/** A listing's relative paths grouped by their path without the extension (an image's and its mask's shared name). */
function byStem(files: { length: number; relativePath(i: number): string }): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (let i = 0; i < files.length; i++) {
    const rel = files.relativePath(i);
    const same = groups.get(stem(rel));
    if (same) same.push(rel);
    else groups.set(stem(rel), [rel]);
  }
  return groups;
}

function readClasses(root: string, numClasses: number | undefined): string[] {
  const file = join(root, 'classes.txt');
  if (existsSync(file)) {
    let text: string;
    try {
      text = readRegularFile(file, 'utf8');
    } catch (e) {
      // a folder, FIFO or device at the name is refused naming the file already
      const why = (e as Error).message;
      throw new Error(why.startsWith(file) ? why : `cannot read ${quotedPath(file)} (${why})`, { cause: e });
    }
    const names = text.split(/\r?\n/).map((s) => s.trim());
    while (names.length && names[names.length - 1] === '') names.pop();
    if (names.length < 1) throw new Error(`${quotedPath(file)} lists no class`);
    if (numClasses !== undefined && numClasses !== names.length)
      throw new Error(`${quotedPath(file)} lists ${names.length} classes, but the number of classes given is ${numClasses}`);
    if (names.length > 255) throw new Error(`${quotedPath(file)} lists ${names.length} classes; masks hold at most 255 (0–254, 255 = ignore)`);
    return names;
  }
  if (numClasses === undefined)
    throw new Error(`segmentation folder ${quotedPath(root)}: no classes.txt (one class name per line) and no number of classes given (--num-classes)`);
  if (!(Number.isInteger(numClasses) && numClasses >= 2 && numClasses <= 255)) throw new RangeError(`number of classes must be 2..255, got ${numClasses}`);
  return Array.from({ length: numClasses }, (_, k) => `class${k}`);
}

export function segFolder(rootIn: string, o: SegFolderOptions): SegSource {
  const root = resolve(rootIn);
  // the test split is test/, else val/ (ADE20K's and VOC's validation split), as the classification datasets read it
  const split = o.split === 'test' && !existsSync(join(root, 'test')) && existsSync(join(root, 'val')) ? 'val' : o.split;
  const splitDir = join(root, split);
  const imagesDir = join(splitDir, 'images');
  const masksDir = join(splitDir, 'masks');
  for (const d of [imagesDir, masksDir]) {
    if (!existsSync(d) || !statSync(d).isDirectory()) throw new Error(`segmentation folder: ${d} is missing (expected ${LAYOUT})`);
    try {
      accessSync(d, constants.R_OK | constants.X_OK); // else a masks folder without permission reads as "no mask" for every image
    } catch (e) {
      throw new Error(`segmentation folder: cannot read ${d} (${(e as Error).message})`, { cause: e });
    }
  }
  const classes = readClasses(root, o.numClasses);
  const images = imageFiles(imagesDir, { recursive: true });
  let maskPaths = new Map<string, string[]>();
  try {
    maskPaths = byStem(imageFiles(masksDir, { recursive: true, extensions: ['.png'] }));
  } catch (e) {
    // no mask at all: every image is left out below, and the loader says so; a folder that cannot be read is an error
    // (a sub-folder's too: the listing's error carries the code in its cause, and every mask, listed or not, read as missing)
    const code = (e as NodeJS.ErrnoException).code ?? ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    if (code) throw new Error(`segmentation folder: cannot read ${quotedPath(masksDir)} (${(e as Error).message})`, { cause: e });
  }
  const pairs: { image: string; mask: string }[] = [];
  const listingSkips: { name: string; reason: string; message: string }[] = [];
  // an image pairs with the one mask of its name: images a.jpg and a.png both took the mask a.png (one of
  // them, at least, scored against another image's labels), and masks a.png and a.PNG one at random
  const imagesOf = byStem(images);
  for (let i = 0; i < images.length; i++) {
    const rel = images.relativePath(i);
    const m = maskPaths.get(stem(rel));
    const sharing = imagesOf.get(stem(rel))!;
    const skip = (reason: string, message: string) => listingSkips.push({ name: join(imagesDir, rel), reason, message });
    if (!m) skip('no-mask', `no mask ${join(masksDir, stem(rel))}.png`);
    else if (m.length > 1) skip('mask-ambiguous', `masks ${m.map((x) => quotedPath(join(masksDir, x))).join(' and ')} have its name: keep one`);
    else if (sharing.length > 1)
      skip(
        'mask-ambiguous',
        `images ${sharing.map((x) => quotedPath(join(imagesDir, x))).join(' and ')} share the mask ${quotedPath(join(masksDir, m[0]))}: rename one`,
      );
    else pairs.push({ image: rel, mask: m[0] });
  }
  let chosen = pairs;
  if (o.limit !== undefined && o.limit < pairs.length) {
    const pick = [...permutation(pairs.length, o.seed ?? 0, 'seg-subset').subarray(0, o.limit)].sort((a, b) => a - b);
    chosen = pick.map((k) => pairs[k]);
  }
  const numClasses = classes.length;
  const reduceZero = !!o.reduceZeroLabel;
  const background = o.background ?? 255;
  const extensions = IMAGE_EXTENSIONS.join(' ');
  const maxFileBytes = imageMemberCap(o.imageInput?.maxImagePixels);
  return {
    root: splitDir,
    length: chosen.length,
    classes,
    fixedSize: null,
    listingSkips,
    name: (i) => join(imagesDir, chosen[i].image),
    open(i): ImageHandle | Promise<ImageHandle> {
      const maskFile = join(masksDir, chosen[i].mask);
      let mask;
      try {
        mask = decodeLabelPng(readImageFile(maskFile, maxFileBytes), o.imageInput?.maxImagePixels);
      } catch (e) {
        if (e instanceof DecodeError && e.reason === 'too-large') throw new DecodeError('too-large', `mask ${quotedPath(maskFile)}: ${e.message}`);
        throw new SegSkipError('mask-unreadable', `mask ${quotedPath(maskFile)}: ${(e as Error).message}`);
      }
      const data = mask.data;
      for (let k = 0; k < data.length; k++) {
        let v = data[k];
        if (reduceZero) v = data[k] = v === 0 || v === 255 ? 255 : v - 1;
        if (v >= numClasses && v !== 255) {
          throw new SegSkipError(
            'mask-labels',
            `mask ${maskFile} holds label ${v}${reduceZero ? ' (after reducing the zero label)' : ''}, outside the ${numClasses} classes (0..${numClasses - 1}; 255 = ignore)`,
          );
        }
      }
      let bytes: Uint8Array;
      const imageFile = join(imagesDir, chosen[i].image);
      try {
        bytes = readImageFile(imageFile, maxFileBytes);
      } catch (e) {
        if (e instanceof DecodeError) throw e;
        throw new DecodeError('unreadable', `cannot read file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; images are ${extensions})`);
      }
      const attach = (h: ImageHandle): ImageHandle => {
        if (h.width !== mask.width || h.height !== mask.height) {
          throw new SegSkipError('mask-size', `mask ${quotedPath(maskFile)} is ${mask.width}×${mask.height}, its image ${h.width}×${h.height}`);
        }
        return withMask(h, maskPlane(data, mask.width, mask.height));
      };
      const h = openImage(bytes, { background, maxPixels: o.imageInput?.maxImagePixels, exifOrientation: o.imageInput?.exifOrientation });
      return h instanceof Promise ? h.then(attach) : attach(h);
    },
  };
}
