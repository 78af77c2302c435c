// Error types raised while reading or decoding one sample.

/** Why a sample could not be used; counted per epoch in the loader's summary. */
export type SkipReason = 'empty' | 'truncated' | 'corrupt' | 'unsupported' | 'unreadable';

export class DecodeError extends Error {
  constructor(
    readonly reason: SkipReason,
    message: string,
  ) {
    super(message);
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
