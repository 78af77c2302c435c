// Error types raised while reading or decoding one sample.
import { DataError } from '../../util/errors';

/** Why a sample could not be used; counted per epoch in the loader's summary (the index is its code in caches). */
export const SKIP_REASONS = ['empty', 'truncated', 'corrupt', 'unsupported', 'unreadable', 'too-large'] as const;
/**
 * Why a sample could not be used: 'empty', 'truncated', 'corrupt', 'unsupported' (not an image, or a variant
 * no decoder here reads), 'unreadable' (the file cannot be read) or 'too-large' (over the pixel limit); the
 * keys of `byReason` in the loaders' epoch summaries.
 */
export type SkipReason = (typeof SKIP_REASONS)[number];

/**
 * An image that cannot be used, and why (`reason`). The loaders skip and count it; handed to a function
 * directly (data.openImage, data.decodeImage, viz.loadRgb) it is the caller's: a DataError, code 'ERR_DATA'.
 */
export class DecodeError extends DataError {
  constructor(
    readonly reason: SkipReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DecodeError';
  }
}

/**
 * Raised by a built-in decoder for a valid file it does not handle itself (e.g. a CMYK or
 * arithmetic-coded JPEG); the caller then falls back to sharp/libvips.
 */
export class NeedsFallback extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NeedsFallback';
  }
}
