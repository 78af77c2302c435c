// The decompression-bomb guard: every decoder reads the image size from the header and refuses an
// image with more pixels than the limit before it allocates or inflates anything. The default is
// the size at which PIL raises DecompressionBombError (2 × Image.MAX_IMAGE_PIXELS).

import { constants } from 'node:buffer';
import { DecodeError } from './errors';

/** PIL's Image.MAX_IMAGE_PIXELS (1024³ / 4 / 3): above it PIL warns. */
export const PIL_MAX_IMAGE_PIXELS = 89_478_485;
/** Default limit: PIL's DecompressionBombError threshold, 178,956,970 pixels (e.g. 13,377 × 13,377). */
export const DEFAULT_MAX_IMAGE_PIXELS = 2 * PIL_MAX_IMAGE_PIXELS;

/** The limit to apply: `undefined` = the default, 0 = no limit. */
export function effectivePixelLimit(maxPixels: number | undefined): number {
  if (maxPixels === undefined) return DEFAULT_MAX_IMAGE_PIXELS;
  return maxPixels > 0 ? maxPixels : Infinity;
}

/** Throws a 'too-large' DecodeError naming the size and the limit when width × height exceeds it. */
export function checkPixelLimit(width: number, height: number, maxPixels: number | undefined, format: string): void {
  const limit = effectivePixelLimit(maxPixels);
  const pixels = width * height;
  if (pixels > limit) {
    throw new DecodeError(
      'too-large',
      `${format} of ${width}×${height} = ${pixels.toLocaleString('en-US')} pixels exceeds the limit of ${limit.toLocaleString('en-US')} pixels ` +
        '(a possible decompression bomb; raise it with --max-image-pixels, 0 = no limit)',
    );
  }
}

/**
 * The largest image file or shard member the loaders read under a pixel limit (`--max-image-pixels`;
 * undefined = the default, 0 = none): what an image the limit admits can take stored uncompressed at
 * 16 bits per channel with alpha (8 bytes per pixel), plus 1 MiB of headers and metadata; 1,366 MiB
 * at the default limit. A fixed cap skipped as too large an image whose pixels the limit admits (an
 * uncompressed or 16-bit TIFF from 256 MiB up); with no pixel limit the cap is the largest Buffer.
 * A larger file or member is skipped unread, counted as too-large.
 */
export function imageMemberCap(maxPixels: number | undefined): number {
  const limit = effectivePixelLimit(maxPixels);
  return Number.isFinite(limit) ? Math.min(8 * limit + (1 << 20), constants.MAX_LENGTH) : constants.MAX_LENGTH;
}
