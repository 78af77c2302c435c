// A dataset of images with per-pixel class labels, as the segmentation loader reads it: sample i
// opens as an image handle whose decoded image carries its label mask as the `mask` plane (so the
// transforms move the mask with the image, nearest-neighbour).
import type { ImageHandle } from '../codecs/decode';
import type { Image, Plane } from '../image';

export interface SegSource {
  /** Where the data comes from, for messages. */
  readonly root: string;
  readonly length: number;
  readonly classes: readonly string[];
  /** [h, w] when every image has that size, else null. */
  readonly fixedSize: readonly [number, number] | null;
  name(i: number): string;
  /** Throws a SegSkipError or a DecodeError when the sample cannot be used. */
  open(i: number): ImageHandle | Promise<ImageHandle>;
  /** Samples left out while listing (e.g. an image without a mask). */
  readonly listingSkips: readonly { name: string; reason: string; message: string }[];
}

/** Why a listed sample's mask cannot be used. */
export class SegSkipError extends Error {
  constructor(
    readonly reason: 'no-mask' | 'mask-size' | 'mask-labels' | 'mask-unreadable',
    message: string,
  ) {
    super(message);
    this.name = 'SegSkipError';
  }
}

/** A full-resolution mask plane over `data` (width × height bytes). */
export function maskPlane(data: Uint8Array, width: number, height: number): Plane {
  return { data, width, height, stride: width, offset: 0, x0: 0, y0: 0, sx: 1, sy: 1 };
}

/** Wraps a handle so that every decode carries `mask` (full resolution, source coordinates). */
export function withMask(handle: ImageHandle, mask: Plane): ImageHandle {
  return {
    width: handle.width,
    height: handle.height,
    scalable: handle.scalable,
    decode(req): Image {
      return { ...handle.decode(req), mask };
    },
  };
}
