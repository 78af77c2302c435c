// @ts-check
// The maps the page shows, computed from the encoder's outputs exactly as semaim defines them
// (src/semaim/orders.ts): the similarity map S_i = softmax_i(cos(z_cls, z_i)) over the patch
// tokens after the final norm, its 3×3 mean filter (border windows average only the patches
// inside), the semantic centre = argmax of the filtered map, and the semantic order = distance of
// every patch to that centre (smaller = predicted earlier). No noise is added (λ = 0).

/**
 * @param {Float32Array} tokens last_hidden_state of one image, [1 + N, D] row-major
 * @param {number} numPatches N
 * @param {number} dim D
 * @returns {Float64Array} S, [N]
 */
export function similarityMap(tokens, numPatches, dim) {
  const unit = (/** @type {number} */ t) => {
    let s = 0;
    for (let d = 0; d < dim; d++) s += tokens[t * dim + d] ** 2;
    return 1 / Math.max(Math.sqrt(s), 1e-12);
  };
  const clsScale = unit(0);
  const cos = new Float64Array(numPatches);
  for (let i = 0; i < numPatches; i++) {
    const t = i + 1;
    let dot = 0;
    for (let d = 0; d < dim; d++) dot += tokens[d] * tokens[t * dim + d];
    cos[i] = dot * clsScale * unit(t);
  }
  return softmax(cos);
}

/** @param {Float64Array} x */
function softmax(x) {
  let max = -Infinity;
  for (const v of x) max = Math.max(max, v);
  const out = new Float64Array(x.length);
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += out[i] = Math.exp(x[i] - max);
  for (let i = 0; i < x.length; i++) out[i] /= sum;
  return out;
}

/**
 * 3×3 mean over the patch grid; windows at the border average only the patches inside.
 * @param {ArrayLike<number>} map [gridH * gridW]
 * @param {number} gridH
 * @param {number} gridW
 */
export function meanFilter3x3(map, gridH, gridW) {
  const out = new Float64Array(gridH * gridW);
  for (let r = 0; r < gridH; r++) {
    for (let c = 0; c < gridW; c++) {
      let sum = 0;
      let count = 0;
      for (let dr = -1; dr <= 1; dr++) {
        for (let dc = -1; dc <= 1; dc++) {
          const rr = r + dr;
          const cc = c + dc;
          if (rr < 0 || rr >= gridH || cc < 0 || cc >= gridW) continue;
          sum += map[rr * gridW + cc];
          count++;
        }
      }
      out[r * gridW + c] = sum / count;
    }
  }
  return out;
}

/** Index of the largest value (the first one on ties). @param {ArrayLike<number>} x */
export function argmax(x) {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/**
 * The semantic order of one image: centre = argmax of the 3×3-filtered S, order value = Euclidean
 * distance (in patches) to the centre.
 * @param {ArrayLike<number>} S [gridH * gridW]
 * @param {number} gridH
 * @param {number} gridW
 */
export function semanticOrder(S, gridH, gridW) {
  const centre = argmax(meanFilter3x3(S, gridH, gridW));
  const cy = Math.floor(centre / gridW);
  const cx = centre % gridW;
  const distance = new Float64Array(gridH * gridW);
  for (let i = 0; i < distance.length; i++) distance[i] = Math.hypot(Math.floor(i / gridW) - cy, (i % gridW) - cx);
  return { centre, distance };
}

/** All maps of one image from the model's outputs. */
export function imageMaps(/** @type {{ tokens: Float32Array, attention: Float32Array | null, gridH: number, gridW: number, dim: number }} */ o) {
  const N = o.gridH * o.gridW;
  const similarity = similarityMap(o.tokens, N, o.dim);
  const { centre, distance } = semanticOrder(similarity, o.gridH, o.gridW);
  return { similarity, centre, order: distance, attention: o.attention };
}

/**
 * Order values -> earliness in [0, 1]: the first predicted patch 1, the last 0 (ranks; ties keep
 * patch-index order), as semaim's figures colour orders.
 * @param {ArrayLike<number>} order
 */
export function orderEarliness(order) {
  const n = order.length;
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => order[a] - order[b] || a - b);
  const out = new Float64Array(n);
  idx.forEach((patch, rank) => { out[patch] = n > 1 ? 1 - rank / (n - 1) : 1; });
  return out;
}

/**
 * Values scaled to [0, 1] by the min and max of their finite entries (a constant map becomes 0.5), as
 * semaim's figures scale them. @param {ArrayLike<number>} x
 */
export function minMax(x) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < x.length; i++) {
    if (Number.isFinite(x[i])) { lo = Math.min(lo, x[i]); hi = Math.max(hi, x[i]); }
  }
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = hi > lo ? (x[i] - lo) / (hi - lo) : 0.5;
  return out;
}

/** The turbo colour map (polynomial fit by its authors, Apache-2.0), as semaim's figures use. @param {number} v */
export function turbo(v) {
  const x = Math.min(1, Math.max(0, Number.isFinite(v) ? Math.round(v * 255) / 255 : 0));
  const x2 = x * x;
  const x3 = x2 * x;
  const x4 = x2 * x2;
  const x5 = x4 * x;
  const r = 0.13572138 + 4.6153926 * x - 42.66032258 * x2 + 132.13108234 * x3 - 152.94239396 * x4 + 59.28637943 * x5;
  const g = 0.09140261 + 2.19418839 * x + 4.84296658 * x2 - 14.18503333 * x3 + 4.27729857 * x4 + 2.82956604 * x5;
  const b = 0.1066733 + 12.64194608 * x - 60.58204836 * x2 + 110.36276771 * x3 - 89.90310912 * x4 + 27.34824973 * x5;
  const q = (/** @type {number} */ c) => Math.round(Math.min(1, Math.max(0, c)) * 255);
  return [q(r), q(g), q(b)];
}
