// Format sniffing and dispatch: bytes → an `ImageHandle` whose size is known before decoding.
// JPEG (the common case) stays lazy so the transform can ask for just the region and scale it
// needs; PNG, BMP and PNM decode in TypeScript; everything else goes through sharp. Every path checks
// the pixel count in the header against a limit before decoding (limits.ts), and applies the
// EXIF orientation only when asked to (orientation.ts).

import { DecodeError, NeedsFallback } from './errors';
import { JpegImage, isJpeg } from './jpeg';
import { jpegToRgb } from './jpeg-rgb';
import { decodePng, isPng } from './png';
import { decodeBmp, isBmp } from './bmp';
import { decodePnm, isPnm } from './pnm';
import { decodeWithSharp } from './sharp';
import { exifOrientation, orientImage, swapsAxes, type ExifOrientationPolicy } from './orientation';
import type { Image } from '../image';
import type { Rect } from '../resample';

/** The format {@link sniff} recognises from a file's first bytes; 'unknown' for anything else. */
export type ImageFormat = 'jpeg' | 'png' | 'bmp' | 'pnm' | 'gif' | 'webp' | 'tiff' | 'avif' | 'unknown';

export const NOT_AN_IMAGE = 'not an image file (unrecognised format)';

/**
 * Identifies an image format from its magic bytes (the content, not the file name); 'unknown' when none matches.
 * 'avif' stands for any ISO base-media file (an `ftyp` box), HEIC included.
 */
export function sniff(d: Uint8Array): ImageFormat {
  if (isJpeg(d)) return 'jpeg';
  if (isPng(d)) return 'png';
  if (isBmp(d)) return 'bmp';
  if (isPnm(d)) return 'pnm';
  if (d.length >= 6 && d[0] === 0x47 && d[1] === 0x49 && d[2] === 0x46 && d[3] === 0x38) return 'gif';
  if (
    d.length >= 12 &&
    d[0] === 0x52 &&
    d[1] === 0x49 &&
    d[2] === 0x46 &&
    d[3] === 0x46 &&
    d[8] === 0x57 &&
    d[9] === 0x45 &&
    d[10] === 0x42 &&
    d[11] === 0x50
  ) {
    return 'webp';
  }
  if (d.length >= 4 && ((d[0] === 0x49 && d[1] === 0x49 && d[2] === 0x2a && d[3] === 0) || (d[0] === 0x4d && d[1] === 0x4d && d[2] === 0 && d[3] === 0x2a))) {
    return 'tiff';
  }
  if (d.length >= 12 && d[4] === 0x66 && d[5] === 0x74 && d[6] === 0x79 && d[7] === 0x70) return 'avif';
  return 'unknown';
}

/** What a transform asks a handle for: the source region it will read and a DCT reduction. */
export interface DecodeRequest {
  region?: Rect;
  reduction?: 1 | 2 | 4 | 8;
  /** The caller consumes the image before the next decode: scratch memory may be used. */
  scratch?: boolean;
  /**
   * RGB bytes at full resolution as libjpeg makes them, i.e. as PIL reads the file: a JPEG's chroma
   * is upsampled and converted per pixel before any resize (no DCT-domain reduction). Without it a
   * JPEG comes as Y/Cb/Cr planes, each on its own grid, for the resampler to convert after resizing.
   */
  rgb?: boolean;
}

/**
 * An opened image whose size is known before decoding, as {@link openImage} returns it (the size as displayed,
 * after an applied EXIF orientation). `decode()` gives the pixels; a JPEG decodes only the requested region,
 * DCT-reduced when `scalable`.
 */
export interface ImageHandle {
  readonly width: number;
  readonly height: number;
  /** True when `reduction` in a request is honoured (JPEG). */
  readonly scalable: boolean;
  decode(req?: DecodeRequest): Image;
}

/**
 * How {@link openImage} and {@link decodeImage} open bytes: alpha background (default 0, black; the loaders
 * default to white), pixel limit and EXIF orientation.
 */
export interface ImageOpenOptions {
  /** Grey level (0–255) that transparent pixels are composited onto. */
  background?: number;
  /** Refuse images with more pixels than this, read from the header (default DEFAULT_MAX_IMAGE_PIXELS; 0 = no limit). */
  maxPixels?: number;
  /** 'ignore' (default, as torchvision) or 'apply' the EXIF orientation tag. */
  exifOrientation?: ExifOrientationPolicy;
}

class DecodedHandle implements ImageHandle {
  readonly scalable = false;
  constructor(private readonly img: Image) {}
  get width(): number {
    return this.img.width;
  }
  get height(): number {
    return this.img.height;
  }
  decode(): Image {
    return this.img;
  }
}

/** Source pixels decoded beyond an RGB request's region: more than one chroma sample (≤ 4 pixels). */
const RGB_MARGIN = 8;

class JpegHandle implements ImageHandle {
  readonly scalable = true;
  constructor(private readonly jpeg: JpegImage) {}
  get width(): number {
    return this.jpeg.width;
  }
  get height(): number {
    return this.jpeg.height;
  }
  decode(req: DecodeRequest = {}): Image {
    const { jpeg } = this;
    if (!req.rgb || jpeg.space !== 'ycbcr') return jpeg.decode({ region: req.region, reduction: req.rgb ? 1 : req.reduction, scratch: req.scratch });
    const r = req.region ?? { x0: 0, y0: 0, x1: jpeg.width, y1: jpeg.height };
    const rect = {
      x0: Math.max(0, Math.floor(r.x0)),
      y0: Math.max(0, Math.floor(r.y0)),
      x1: Math.min(jpeg.width, Math.ceil(r.x1)),
      y1: Math.min(jpeg.height, Math.ceil(r.y1)),
    };
    // a margin of chroma samples around the rectangle, for the upsampling filter's neighbours
    const m = RGB_MARGIN;
    const region = {
      x0: Math.max(0, rect.x0 - m),
      y0: Math.max(0, rect.y0 - m),
      x1: Math.min(jpeg.width, rect.x1 + m),
      y1: Math.min(jpeg.height, rect.y1 + m),
    };
    const decoded = jpeg.decode({ region, reduction: 1, scratch: req.scratch });
    // a layout whose luma is sampled below a chroma plane (rare; libjpeg handles it generically) keeps the fused path
    const [y] = decoded.planes;
    if (y.sx !== 1 || y.sy !== 1) return decoded;
    return jpegToRgb(decoded, rect, !!req.scratch);
  }
}

/** A JPEG or PNG shown under its EXIF orientation: decoded in full, then rotated/flipped. */
class OrientedHandle implements ImageHandle {
  readonly scalable = false;
  readonly width: number;
  readonly height: number;
  constructor(
    private readonly inner: ImageHandle,
    private readonly orientation: number,
  ) {
    const swap = swapsAxes(orientation);
    this.width = swap ? inner.height : inner.width;
    this.height = swap ? inner.width : inner.height;
  }
  decode(req: DecodeRequest = {}): Image {
    return orientImage(this.inner.decode({ scratch: req.scratch, rgb: req.rgb }), this.orientation);
  }
}

/** Wraps an already decoded image. */
export function handleFromImage(img: Image): ImageHandle {
  return new DecodedHandle(img);
}

/**
 * Opens encoded image bytes. Synchronous for JPEG/PNG/BMP/PNM, a promise for formats decoded by sharp.
 * Throws (or rejects with) a `DecodeError` naming why the bytes cannot be used.
 */
export function openImage(bytes: Uint8Array, opts: ImageOpenOptions = {}): ImageHandle | Promise<ImageHandle> {
  const bg = opts.background ?? 0;
  const apply = opts.exifOrientation === 'apply';
  if (bytes.length === 0) throw new DecodeError('empty', 'empty file (0 bytes)');
  const fmt = sniff(bytes);
  try {
    let handle: ImageHandle | null = null;
    if (fmt === 'jpeg') handle = new JpegHandle(new JpegImage(bytes, opts.maxPixels));
    else if (fmt === 'png') handle = new DecodedHandle(decodePng(bytes, bg, opts.maxPixels));
    else if (fmt === 'bmp') handle = new DecodedHandle(decodeBmp(bytes, bg, opts.maxPixels));
    else if (fmt === 'pnm') handle = new DecodedHandle(decodePnm(bytes, opts.maxPixels));
    if (handle) {
      const orientation = apply ? exifOrientation(bytes, fmt) : 1;
      return orientation === 1 ? handle : new OrientedHandle(handle, orientation);
    }
  } catch (e) {
    if (!(e instanceof NeedsFallback)) throw wrap(e);
  }
  if (fmt === 'unknown' && !looksLikeOtherImage(bytes)) {
    throw new DecodeError('unsupported', NOT_AN_IMAGE);
  }
  return decodeWithSharp(bytes, { background: bg, maxPixels: opts.maxPixels, applyOrientation: apply }).then((img) => new DecodedHandle(img));
}

/** Decodes fully (helper for tests and caching). */
export async function decodeImage(bytes: Uint8Array, opts: ImageOpenOptions = {}): Promise<Image> {
  const h = await openImage(bytes, opts);
  return h.decode();
}

function wrap(e: unknown): Error {
  if (e instanceof DecodeError) return e;
  return new DecodeError('corrupt', `corrupt image (${(e as Error).message})`);
}

/** Whether the first bytes of a file (a few KiB) may start an image that openImage decodes. */
export function mayBeImage(head: Uint8Array): boolean {
  return sniff(head) !== 'unknown' || looksLikeOtherImage(head);
}

/** Whether the bytes start a format sharp may still read although we do not sniff it (JPEG 2000, SVG). */
function looksLikeOtherImage(d: Uint8Array): boolean {
  if (d.length >= 12 && d[0] === 0 && d[1] === 0 && d[2] === 0 && d[3] === 0x0c && d[4] === 0x6a && d[5] === 0x50) return true; // JP2
  const head = Buffer.from(d.buffer, d.byteOffset, Math.min(d.length, 256)).toString('latin1');
  return /<svg[\s>]/i.test(head) || /^\s*<\?xml[^>]*>\s*<svg/i.test(head);
}
