// @ts-check
// semaim's evaluation preprocessing in the browser, per image: an image already size×size is only
// normalised (as src/data treats a dataset whose images all have the model's size); any other is resized (short side to floor(size / 0.875)) and
// centre-cropped in one separable, antialiased pass (PIL's scheme: the filter widens with the
// downscale factor, weights normalised per output pixel), clamped to 0..255 and normalised with
// ImageNet's mean and std. Transparent pixels are composited onto white first.

/**
 * @typedef {{ size: number, resizeShortSide: number, interpolation: 'bicubic' | 'bilinear' | 'nearest',
 *   crop: [number, number], mean: number[], std: number[], alphaBackground: number }} Preprocessing
 * @typedef {{ x0: number, y0: number, x1: number, y1: number, outW: number, outH: number }} Plan
 */

/** Python's round(): halves go to the even neighbour. @param {number} v */
function roundHalfEven(v) {
  const f = Math.floor(v);
  const d = v - f;
  if (d !== 0.5) return Math.round(v);
  return f % 2 === 0 ? f : f + 1;
}

/**
 * The source rectangle that maps onto the output, for resize(short side) + centre crop.
 * @param {number} width @param {number} height @param {Preprocessing} p @returns {Plan}
 */
export function evalPlan(width, height, p) {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const newLong = Math.floor((p.resizeShortSide * long) / short);
  let outW = Math.max(1, width <= height ? p.resizeShortSide : newLong);
  let outH = Math.max(1, width <= height ? newLong : p.resizeShortSide);
  const [ch, cw] = p.crop;
  if (outW < cw || outH < ch) {
    const f = Math.max(cw / outW, ch / outH);
    outW = Math.max(cw, Math.round(outW * f));
    outH = Math.max(ch, Math.round(outH * f));
  }
  const left = roundHalfEven((outW - cw) / 2);
  const top = roundHalfEven((outH - ch) / 2);
  const kx = width / outW;
  const ky = height / outH;
  return { x0: left * kx, y0: top * ky, x1: (left + cw) * kx, y1: (top + ch) * ky, outW: cw, outH: ch };
}

/** @param {number} x */
function bicubic(x) {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** @param {number} x */
function triangle(x) {
  x = Math.abs(x);
  return x < 1 ? 1 - x : 0;
}

/**
 * Taps of one axis: output i covers source [s0 + i·d, s0 + (i+1)·d), d = (s1 − s0) / n.
 * @param {number} n @param {number} s0 @param {number} s1 @param {number} len
 * @param {Preprocessing['interpolation']} interp
 * @returns {{ start: number, weights: number[] }[]}
 */
function axisTaps(n, s0, s1, len, interp) {
  const d = (s1 - s0) / n;
  const taps = [];
  for (let i = 0; i < n; i++) {
    const centre = s0 + (i + 0.5) * d;
    if (interp === 'nearest') {
      taps.push({ start: Math.min(len - 1, Math.max(0, Math.floor(centre))), weights: [1] });
      continue;
    }
    const fs = Math.max(d, 1);
    const support = (interp === 'bicubic' ? 2 : 1) * fs;
    const filter = interp === 'bicubic' ? bicubic : triangle;
    const kmin = Math.max(0, Math.floor(centre - support + 0.5));
    const kmax = Math.min(len, Math.floor(centre + support + 0.5));
    const weights = [];
    let total = 0;
    for (let k = kmin; k < kmax; k++) {
      const w = filter((k - centre + 0.5) / fs);
      weights.push(w);
      total += w;
    }
    if (weights.length === 0 || total === 0) taps.push({ start: Math.min(len - 1, Math.max(0, Math.floor(centre))), weights: [1] });
    else taps.push({ start: kmin, weights: weights.map((w) => w / total) });
  }
  return taps;
}

/**
 * Resamples planar float channels [3][height·width] onto the plan's output (horizontal pass, then
 * vertical), clamped to 0..255.
 * @param {Float64Array[]} planes @param {number} width @param {number} height @param {Plan} plan
 * @param {Preprocessing['interpolation']} interp
 */
function resample(planes, width, height, plan, interp) {
  const xs = axisTaps(plan.outW, plan.x0, plan.x1, width, interp);
  const ys = axisTaps(plan.outH, plan.y0, plan.y1, height, interp);
  return planes.map((src) => {
    const tmp = new Float64Array(height * plan.outW);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < plan.outW; x++) {
        const { start, weights } = xs[x];
        let a = 0;
        for (let t = 0; t < weights.length; t++) a += weights[t] * src[y * width + start + t];
        tmp[y * plan.outW + x] = a;
      }
    }
    const out = new Float64Array(plan.outW * plan.outH);
    for (let y = 0; y < plan.outH; y++) {
      const { start, weights } = ys[y];
      for (let x = 0; x < plan.outW; x++) {
        let a = 0;
        for (let t = 0; t < weights.length; t++) a += weights[t] * tmp[(start + t) * plan.outW + x];
        out[y * plan.outW + x] = Math.min(255, Math.max(0, a));
      }
    }
    return out;
  });
}

/**
 * RGBA pixels (as a canvas's getImageData gives them) -> the model input [3, size, size] and the
 * RGBA image the model sees (for display).
 * @param {Uint8ClampedArray} rgba @param {number} width @param {number} height @param {Preprocessing} p
 */
export function preprocess(rgba, width, height, p) {
  const bg = p.alphaBackground;
  const planes = [0, 1, 2].map(() => new Float64Array(width * height));
  for (let i = 0; i < width * height; i++) {
    const a = rgba[i * 4 + 3];
    for (let c = 0; c < 3; c++) {
      const v = rgba[i * 4 + c];
      planes[c][i] = a === 255 ? v : Math.floor((v * a + bg * (255 - a) + 127) / 255);
    }
  }
  const native = width === p.size && height === p.size;
  const out = native ? planes : resample(planes, width, height, evalPlan(width, height, p), p.interpolation);
  const S = p.size;
  const pixels = new Float32Array(3 * S * S);
  const view = new Uint8ClampedArray(4 * S * S);
  for (let c = 0; c < 3; c++) {
    const scale = Math.fround(1 / (255 * p.std[c]));
    const bias = Math.fround(-p.mean[c] / p.std[c]);
    for (let i = 0; i < S * S; i++) {
      pixels[c * S * S + i] = out[c][i] * scale + bias;
      view[i * 4 + c] = Math.round(out[c][i]);
    }
  }
  for (let i = 0; i < S * S; i++) view[i * 4 + 3] = 255;
  return { pixels, view };
}
