// In-memory image representation shared by the decoders, the resampler and the transforms.
//
// Images are planar 8-bit. Each plane carries its own placement in source-pixel units, so a JPEG's
// subsampled chroma planes, a DCT-domain reduced decode and a partial (cropped) decode are all
// described without copying: plane pixel (i, j) covers source pixels
// [x0 + i*sx, x0 + (i+1)*sx) × [y0 + j*sy, y0 + (j+1)*sy).

/** How an {@link Image}'s planes are read: one gray plane, or three planes of R, G, B or of JPEG Y, Cb, Cr. */
export type ColorSpace = 'gray' | 'rgb' | 'ycbcr';

/**
 * One 8-bit channel of an {@link Image}, placed in source pixels: plane pixel (i, j) covers source pixels
 * [x0 + i·sx, x0 + (i+1)·sx) × [y0 + j·sy, y0 + (j+1)·sy), so subsampled chroma and cropped or DCT-reduced
 * decodes need no copy.
 */
export interface Plane {
  data: Uint8Array;
  width: number;
  height: number;
  /** Bytes between rows. */
  stride: number;
  /** Byte offset of pixel (0, 0) inside `data`. */
  offset: number;
  x0: number;
  y0: number;
  sx: number;
  sy: number;
  /** Byte offset of `data` in the WebAssembly arena when the plane lives there (see simd.ts). */
  arena?: number;
}

/**
 * A decoded image as planar 8-bit channels plus an optional object mask: what the decoders produce and the
 * resampler and transforms read.
 */
export interface Image {
  /** Size of the full source image in pixels. */
  width: number;
  height: number;
  space: ColorSpace;
  /** 1 plane for gray, 3 for rgb/ycbcr (Y, Cb, Cr). */
  planes: Plane[];
  /** Optional object mask (0/1), geometrically transformed with nearest-neighbour sampling. */
  mask?: Plane;
}

/** A plane covering the whole image at full resolution. */
export function fullPlane(data: Uint8Array, width: number, height: number, offset = 0, stride = width): Plane {
  return { data, width, height, stride, offset, x0: 0, y0: 0, sx: 1, sy: 1 };
}

/** A new zeroed full-resolution planar image. */
export function allocImage(width: number, height: number, space: ColorSpace): Image {
  const n = space === 'gray' ? 1 : 3;
  const buf = new Uint8Array(width * height * n);
  const planes: Plane[] = [];
  for (let c = 0; c < n; c++) planes.push(fullPlane(buf, width, height, c * width * height));
  return { width, height, space, planes };
}

/** Planar image from interleaved 8-bit pixels with 1–4 channels; alpha is composited onto `background`. */
export function fromInterleaved(src: Uint8Array, width: number, height: number, channels: number, background: number): Image {
  const n = width * height;
  if (channels === 1) {
    const buf = new Uint8Array(n);
    buf.set(src.subarray(0, n));
    return { width, height, space: 'gray', planes: [fullPlane(buf, width, height)] };
  }
  if (channels === 2) {
    const buf = new Uint8Array(n);
    for (let i = 0, j = 0; i < n; i++, j += 2) buf[i] = blend(src[j], src[j + 1], background);
    return { width, height, space: 'gray', planes: [fullPlane(buf, width, height)] };
  }
  const buf = new Uint8Array(n * 3);
  const g0 = n;
  const b0 = 2 * n;
  if (channels === 3) {
    for (let i = 0, j = 0; i < n; i++, j += 3) {
      buf[i] = src[j];
      buf[g0 + i] = src[j + 1];
      buf[b0 + i] = src[j + 2];
    }
  } else if (channels === 4) {
    for (let i = 0, j = 0; i < n; i++, j += 4) {
      const a = src[j + 3];
      if (a === 255) {
        buf[i] = src[j];
        buf[g0 + i] = src[j + 1];
        buf[b0 + i] = src[j + 2];
      } else {
        buf[i] = blend(src[j], a, background);
        buf[g0 + i] = blend(src[j + 1], a, background);
        buf[b0 + i] = blend(src[j + 2], a, background);
      }
    }
  } else {
    throw new Error(`fromInterleaved: unsupported channel count ${channels}`);
  }
  return {
    width,
    height,
    space: 'rgb',
    planes: [fullPlane(buf, width, height, 0), fullPlane(buf, width, height, n), fullPlane(buf, width, height, 2 * n)],
  };
}

/** Composites value v with alpha a (0..255) over a background grey level. */
export function blend(v: number, a: number, background: number): number {
  return ((v * a + background * (255 - a) + 127) / 255) | 0;
}

/** True when every plane is full resolution and starts at the origin. */
export function isFullResolution(img: Image): boolean {
  for (const p of img.planes) {
    if (p.sx !== 1 || p.sy !== 1 || p.x0 !== 0 || p.y0 !== 0 || p.width < img.width || p.height < img.height) {
      return false;
    }
  }
  return true;
}
