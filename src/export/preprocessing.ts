// The evaluation preprocessing of an exported encoder, read from src/data's own evaluation
// transforms so that the exported descriptions (transformers.js, the browser page) follow them:
// resize the short side to floor(size / 0.875) (bicubic), centre-crop size×size, scale to [0, 1],
// normalise with ImageNet's mean and std. The page leaves an image already size×size as it is (as
// evaluation does for a dataset whose images all have that size). Transparent pixels are composited on white.
import { evalTransforms } from '../data/transforms';
import type { CenterCropSpec, NormalizeSpec, ResizeSpec } from '../data/transforms';

/** What {@link evalPreprocessing} returns: the evaluation transform as numbers, for config.json, preprocessor_config.json and the web page. */
export interface EvalPreprocessing {
  /** Model input size (square). */
  size: number;
  /** Short side after the resize. */
  resizeShortSide: number;
  interpolation: 'bicubic' | 'bilinear' | 'nearest';
  crop: [number, number];
  mean: [number, number, number];
  std: [number, number, number];
  /** Grey level transparent pixels are composited onto. */
  alphaBackground: number;
}

/**
 * The evaluation preprocessing for `size`² model inputs, read from evalTransforms: resize the short side to
 * floor(size / 0.875) (bicubic), centre-crop size×size, normalise with ImageNet's mean and std.
 */
export function evalPreprocessing(size: number): EvalPreprocessing {
  const t = evalTransforms(size);
  const resize = t.find((s): s is ResizeSpec => s.op === 'resize');
  const crop = t.find((s): s is CenterCropSpec => s.op === 'centerCrop');
  const norm = t.find((s): s is NormalizeSpec => s.op === 'normalize');
  if (!resize || typeof resize.size !== 'number' || !crop || !norm)
    throw new Error('evaluation transforms are not resize(short side) + centerCrop + normalize');
  return {
    size,
    resizeShortSide: resize.size,
    interpolation: resize.interpolation,
    crop: [crop.size[0], crop.size[1]],
    mean: [...norm.mean],
    std: [...norm.std],
    alphaBackground: 255,
  };
}
