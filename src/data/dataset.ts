// Dataset descriptions shared by the main thread and the worker threads.
//
// A `Dataset` (built on the main thread by a source in sources/) carries a serialisable `spec`:
// file paths packed into shared memory, decoded images in a shared byte store, or the parameters
// of the synthetic generator. Workers rebuild a `SampleSource` from the spec without copying the
// big arrays (SharedArrayBuffers are shared, not cloned).

import { join } from 'node:path';
import { DecodeError, SKIP_REASONS } from './codecs/errors';
import { imageMemberCap } from './codecs/limits';
import { openImage, handleFromImage, type ImageHandle } from './codecs/decode';
import { readImageFile } from './codecs/read-file';
import type { ExifOrientationPolicy } from './codecs/orientation';
import type { Image, Plane } from './image';
import { renderSynthetic, syntheticLabel as renderSyntheticLabel, type SyntheticConfig } from './sources/synthetic';

// ------------------------------------------------------------------ shared memory helpers

export function sharedBytes(n: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(Math.max(1, n)), 0, n);
}
export function sharedInt32(n: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(Math.max(4, 4 * n)), 0, n);
}
export function sharedFloat64(n: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(Math.max(8, 8 * n)), 0, n);
}

/** Many strings packed as UTF-8 in shared memory. */
export interface PackedStrings {
  bytes: Uint8Array;
  offsets: Int32Array; // n + 1
}

export function packStrings(items: readonly string[]): PackedStrings {
  // written in place: no Buffer per string (1.28M of them for ImageNet's paths took ~270 MB and a second)
  let total = 0;
  for (const s of items) total += Buffer.byteLength(s, 'utf8');
  const bytes = sharedBytes(total);
  const offsets = sharedInt32(items.length + 1);
  const out = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  let o = 0;
  for (let i = 0; i < items.length; i++) {
    offsets[i] = o;
    o += out.write(items[i], o, 'utf8');
  }
  offsets[items.length] = o;
  return { bytes, offsets };
}

export function unpackString(p: PackedStrings, i: number): string {
  const b = Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.length);
  return b.toString('utf8', p.offsets[i], p.offsets[i + 1]);
}

// ------------------------------------------------------------------ in-memory images

/** Layout codes for MemoryImages. */
export const LAYOUT_GRAY = 0;
export const LAYOUT_RGB = 1;
export const LAYOUT_YCBCR = 2;
/** An image that failed to decode while caching (its reason code is in `csx`). */
export const LAYOUT_FAILED = 255;

/**
 * Decoded images in one byte store: image i starts at offsets[i] with planes stored one after the
 * other (gray: 1 plane; rgb: 3 full planes; ycbcr: Y full, Cb/Cr at ceil(w/csx)×ceil(h/csy)).
 */
export interface MemoryImages {
  data: Uint8Array;
  offsets: Float64Array;
  widths: Int32Array;
  heights: Int32Array;
  layout: Uint8Array;
  csx: Uint8Array;
  csy: Uint8Array;
  /** Optional masks, one byte per pixel, at maskOffsets[i] (-1 when absent). */
  masks?: Uint8Array;
  maskOffsets?: Float64Array;
}

/** Bytes `packImage` needs for an image. */
export function packedSize(img: Image): number {
  if (img.space !== 'ycbcr') return img.width * img.height * (img.space === 'gray' ? 1 : 3);
  const [, cb] = img.planes;
  return img.width * img.height + 2 * cb.width * cb.height;
}

/** Describes how an image will be packed (layout, chroma factors). */
export function packLayout(img: Image): { layout: number; csx: number; csy: number } {
  if (img.space === 'gray') return { layout: LAYOUT_GRAY, csx: 1, csy: 1 };
  if (img.space === 'rgb') return { layout: LAYOUT_RGB, csx: 1, csy: 1 };
  return { layout: LAYOUT_YCBCR, csx: img.planes[1].sx, csy: img.planes[1].sy };
}

/** Copies a full-image decode (planes at origin, luma at full resolution) into `dst` at `o`. */
export function packImage(img: Image, dst: Uint8Array, o: number): number {
  for (const p of img.planes) {
    if (p.x0 !== 0 || p.y0 !== 0) throw new Error('packImage: plane does not start at the origin');
    for (let y = 0; y < p.height; y++) {
      const s = p.offset + y * p.stride;
      dst.set(p.data.subarray(s, s + p.width), o);
      o += p.width;
    }
  }
  return o;
}

export function memoryImage(mem: MemoryImages, i: number): Image {
  const w = mem.widths[i];
  const h = mem.heights[i];
  const layout = mem.layout[i];
  if (layout === LAYOUT_FAILED) {
    const reason = SKIP_REASONS[mem.csx[i]] ?? 'corrupt';
    throw new DecodeError(reason, `${reason} image (found while caching)`);
  }
  const o = mem.offsets[i];
  const d = mem.data;
  const plane = (off: number, pw: number, ph: number, sx: number, sy: number): Plane => ({
    data: d,
    width: pw,
    height: ph,
    stride: pw,
    offset: off,
    x0: 0,
    y0: 0,
    sx,
    sy,
  });
  let img: Image;
  if (layout === LAYOUT_GRAY) img = { width: w, height: h, space: 'gray', planes: [plane(o, w, h, 1, 1)] };
  else if (layout === LAYOUT_RGB) {
    img = { width: w, height: h, space: 'rgb', planes: [plane(o, w, h, 1, 1), plane(o + w * h, w, h, 1, 1), plane(o + 2 * w * h, w, h, 1, 1)] };
  } else {
    const sx = mem.csx[i];
    const sy = mem.csy[i];
    const cw = Math.ceil(w / sx);
    const ch = Math.ceil(h / sy);
    img = {
      width: w,
      height: h,
      space: 'ycbcr',
      planes: [plane(o, w, h, 1, 1), plane(o + w * h, cw, ch, sx, sy), plane(o + w * h + cw * ch, cw, ch, sx, sy)],
    };
  }
  if (mem.masks && mem.maskOffsets && mem.maskOffsets[i] >= 0) {
    img.mask = { data: mem.masks, width: w, height: h, stride: w, offset: mem.maskOffsets[i], x0: 0, y0: 0, sx: 1, sy: 1 };
  }
  return img;
}

/** Marks image i of a store as failed with a reason. */
export function markFailed(mem: MemoryImages, i: number, reason: DecodeError['reason']): void {
  mem.layout[i] = LAYOUT_FAILED;
  mem.csx[i] = Math.max(0, SKIP_REASONS.indexOf(reason));
}

// ------------------------------------------------------------------ dataset specs

export interface FilesSpec {
  kind: 'files';
  root: string;
  /** Paths relative to root. */
  paths: PackedStrings;
  labels: Int32Array | null;
}
export interface MemorySpec {
  kind: 'memory';
  /** Human-readable name used in messages (e.g. the file it was read from). */
  name: string;
  images: MemoryImages;
  labels: Int32Array | null;
  /** When the store is a cache of a files dataset: the original, for messages. */
  files?: FilesSpec;
}
export interface SyntheticSpec {
  kind: 'synthetic';
  config: SyntheticConfig;
}
/**
 * The serialisable description of a dataset's samples (`Dataset.spec`) that worker threads rebuild it from:
 * file paths ('files'), decoded images in shared memory ('memory'), or the synthetic generator's settings.
 */
export type DatasetSpec = FilesSpec | MemorySpec | SyntheticSpec;

/** What every dataset offers on the main thread. */
export interface Dataset {
  readonly spec: DatasetSpec;
  readonly length: number;
  /** Class names (index = label); empty for unlabelled data. */
  readonly classes: readonly string[];
  /** Where the data came from (folder or file), for messages. */
  readonly root: string;
  /** [h, w] when every image has that size, else null. */
  readonly fixedSize: readonly [number, number] | null;
  readonly hasMasks: boolean;
  /** Label of sample i (-1 when unlabelled). */
  label(i: number): number;
  /** A name for sample i in messages (its path for files). */
  name(i: number): string;
}

export function specLength(spec: DatasetSpec): number {
  if (spec.kind === 'files') return spec.paths.offsets.length - 1;
  if (spec.kind === 'memory') return spec.images.widths.length;
  return spec.config.count;
}

export function specName(spec: DatasetSpec, i: number): string {
  if (spec.kind === 'files') return join(spec.root, unpackString(spec.paths, i));
  if (spec.kind === 'memory') return spec.files ? specName(spec.files, i) : `${spec.name}#${i}`;
  return `synthetic(${spec.config.split})#${i}`;
}

export function specLabel(spec: DatasetSpec, i: number): number {
  if (spec.kind === 'synthetic') return renderSyntheticLabel(spec.config, i);
  return spec.labels ? spec.labels[i] : -1;
}

// ------------------------------------------------------------------ reading samples (workers)

export interface OpenedSample {
  handle: ImageHandle | Promise<ImageHandle>;
  label: number;
}

export interface SampleSource {
  readonly spec: DatasetSpec;
  readonly length: number;
  name(i: number): string;
  label(i: number): number;
  /** Opens sample i; throws/rejects with DecodeError when it cannot be used. */
  open(i: number): OpenedSample;
}

export interface SourceOptions {
  /** Grey level transparent pixels are composited onto. */
  background?: number;
  /** Pixel limit checked from each file's header (undefined = the default, 0 = none). */
  maxPixels?: number;
  /** Whether the EXIF orientation of files is applied (default: ignored, as torchvision). */
  exifOrientation?: ExifOrientationPolicy;
}

export function createSource(spec: DatasetSpec, opts: SourceOptions = {}): SampleSource {
  const length = specLength(spec);
  const decodeOptions = { background: opts.background ?? 0, maxPixels: opts.maxPixels, exifOrientation: opts.exifOrientation };
  const maxFileBytes = imageMemberCap(opts.maxPixels);
  return {
    spec,
    length,
    name: (i) => specName(spec, i),
    label: (i) => specLabel(spec, i),
    open(i: number): OpenedSample {
      if (spec.kind === 'files') {
        const path = join(spec.root, unpackString(spec.paths, i));
        let bytes: Uint8Array;
        try {
          bytes = readImageFile(path, maxFileBytes, { reuse: true });
        } catch (e) {
          if (e instanceof DecodeError) throw e;
          const err = e as NodeJS.ErrnoException;
          throw new DecodeError('unreadable', `cannot read file (${err.code ?? err.message})`);
        }
        return { handle: openImage(bytes, decodeOptions), label: spec.labels ? spec.labels[i] : -1 };
      }
      if (spec.kind === 'memory') {
        return { handle: handleFromImage(memoryImage(spec.images, i)), label: spec.labels ? spec.labels[i] : -1 };
      }
      const s = renderSynthetic(spec.config, i);
      return { handle: handleFromImage(s.image), label: s.label };
    },
  };
}
