// Fixed 2-D sin-cos position embedding in MAE's layout.
import * as torch from '../torch';
import { Tensor } from '../torch';

function sincos1d(dim: number, positions: number[]): Float64Array[] {
  // dim/2 frequencies omega_i = 1/10000^(i/(dim/2)); each row is [sin(pos·omega), cos(pos·omega)].
  const half = dim / 2;
  return positions.map((pos) => {
    const row = new Float64Array(dim);
    for (let i = 0; i < half; i++) {
      const omega = 1 / Math.pow(10000, i / half);
      row[i] = Math.sin(pos * omega);
      row[half + i] = Math.cos(pos * omega);
    }
    return row;
  });
}

/**
 * [1, 1 + gh·gw, dim]: row 0 ([CLS]) is zeros; patch (r, c) gets the column code in the first dim/2
 * channels and the row code in the second dim/2, as MAE's get_2d_sincos_pos_embed.
 */
export function sincosPosEmbed2d(dim: number, gridH: number, gridW: number): Tensor {
  if (dim % 4 !== 0) throw new Error(`2-D sin-cos position embedding needs a width divisible by 4, got ${dim}`);
  const out = new Float32Array((1 + gridH * gridW) * dim);
  for (let r = 0; r < gridH; r++) {
    for (let c = 0; c < gridW; c++) {
      const [col] = sincos1d(dim / 2, [c]);
      const [row] = sincos1d(dim / 2, [r]);
      const base = (1 + r * gridW + c) * dim;
      out.set(col, base);
      out.set(row, base + dim / 2);
    }
  }
  return torch.tensor(out, { shape: [1, 1 + gridH * gridW, dim] });
}
