// Prediction targets and losses: pixels (optional blur, per-patch normalisation) and teacher features.
import * as torch from '../torch';
import { F, Tensor, fused } from '../torch';

/**
 * A normalised 2-D Gaussian kernel for each of `channels`, [C, 1, k, k] (the authors' GaussianConv2d). `size`
 * must be an odd positive integer (an even one, padded by size/2, grew the blurred image by a pixel) and
 * `sigma` a finite number > 0 (σ 0 gave 0/0 at the centre: a kernel of NaN), as the config's blurKernel and blurSigma.
 */
export function gaussianKernel(size: number, sigma: number, channels = 3, like?: Tensor): Tensor {
  if (!(Number.isInteger(size) && size > 0 && size % 2 === 1)) throw new RangeError(`gaussianKernel: size must be an odd positive integer, got ${size}`);
  if (!(Number.isFinite(sigma) && sigma > 0)) throw new RangeError(`gaussianKernel: sigma must be a finite number > 0, got ${sigma}`);
  const c = (size - 1) / 2;
  const twoVar = 2 * sigma * sigma; // the addon's gaussianWeights computes the same, bit for bit
  const k = new Float64Array(size * size);
  let sum = 0;
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) {
      const d2 = (i - c) ** 2 + (j - c) ** 2;
      // for σ below ~1.6e-162, 2σ² underflows to 0 and the centre tap was 0/0 (NaN): the limit, the centre alone
      const v = twoVar > 0 ? Math.exp(-d2 / twoVar) : d2 === 0 ? 1 : 0;
      k[i * size + j] = v;
      sum += v;
    }
  }
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  const rep = new Float64Array(channels * size * size);
  for (let ch = 0; ch < channels; ch++) rep.set(k, ch * size * size);
  return torch.tensor(rep, { shape: [channels, 1, size, size], dtype: like?.dtype ?? 'float32', device: like?.device });
}

/** Depthwise Gaussian blur with zero padding, as the authors' headline run (kernel 9, σ 1); size and sigma as {@link gaussianKernel} takes them. */
export function gaussianBlur(images: Tensor, size = 9, sigma = 1): Tensor {
  return torch.scope(() => {
    const w = gaussianKernel(size, sigma, images.shape[1], images);
    return F.conv2d(images, w, null, { padding: Math.floor(size / 2), groups: images.shape[1] });
  });
}

/** [B, C, H, W] -> [B, N, P·P·C], pixels of a patch in (row, col, channel) order (MAE's nchpwq→nhwpqc). */
export function patchify(images: Tensor, p: number): Tensor {
  const [B, C, H, W] = images.shape;
  const h = H / p;
  const w = W / p;
  return torch.scope(() =>
    images
      .reshape(B, C, h, p, w, p)
      .permute(0, 2, 4, 3, 5, 1)
      .reshape(B, h * w, p * p * C),
  );
}

/** Inverse of patchify for square images. */
export function unpatchify(x: Tensor, p: number, channels = 3): Tensor {
  const [B, N] = x.shape;
  const h = Math.round(Math.sqrt(N));
  return torch.scope(() =>
    x
      .reshape(B, h, h, p, p, channels)
      .permute(0, 5, 1, 3, 2, 4)
      .reshape(B, channels, h * p, h * p),
  );
}

/** (t − mean)/sqrt(var + 1e-6) over the last dim, unbiased variance. */
export function normalizePatches(t: Tensor): Tensor {
  return torch.scope(() => {
    const mean = t.mean(-1, true);
    const v = t.var(-1, true, true);
    return t.sub(mean).div(v.add(1e-6).sqrt());
  });
}

/** Options of {@link pixelTargets}: the patch size plus the 'pixels' target settings (Gaussian blur, per-patch normalisation). */
export interface PixelTargetOptions {
  patchSize: number;
  normPix: boolean;
  blur: boolean;
  blurKernel: number;
  blurSigma: number;
}

/**
 * Pixel targets [B, N, P²·C] in row-major patch order. On a GPU the same ops run in the addon, which keeps
 * the Gaussian on the device (no upload per step; a CUDA graph can capture it) or, with the `targets`
 * kernel on (torch/fused.ts), run as one kernel.
 */
export function pixelTargets(images: Tensor, o: PixelTargetOptions): Tensor {
  if ((torch.deviceType(images.device) === 'cuda' || fused.useFused('targets', images)) && images.dtype === 'float32') {
    return fused.pixelTargets(images, { patchSize: o.patchSize, blurKernel: o.blur ? o.blurKernel : 0, blurSigma: o.blurSigma, normPix: o.normPix });
  }
  return torch.scope(() => {
    const src = o.blur ? gaussianBlur(images, o.blurKernel, o.blurSigma) : images;
    const t = patchify(src, o.patchSize);
    return o.normPix ? normalizePatches(t) : t;
  });
}

/** Squared error averaged over the last dim: per-patch loss [B, N]. */
export function pixelPatchLoss(pred: Tensor, target: Tensor): Tensor {
  return torch.scope(() => pred.sub(target).square().mean(-1));
}

/** Sum over features of squared differences of L2-normalised vectors (= 2 − 2·cos): [B, N]. */
export function featurePatchLoss(pred: Tensor, target: Tensor): Tensor {
  return torch.scope(() =>
    F.normalize(pred, 2, -1)
      .sub(F.normalize(target, 2, -1))
      .square()
      .sum(-1),
  );
}
