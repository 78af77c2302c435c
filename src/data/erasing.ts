// timm-style RandomErasing applied to one sample already written into a batch (after
// normalisation): float batches get normal noise ('pixel'/'rand') or zeros ('const'); byte
// batches get uniform random bytes or zeros.

import type { Rng } from './rng';
import type { RandomErasingSpec } from './transforms';
import { roundHalfEven } from './geometry';

/** Erases up to `count` rectangles of the 3×h×w sample at `offset`; returns how many were erased. */
export function randomErase(out: Float32Array | Uint8Array, offset: number, w: number, h: number, spec: RandomErasingSpec, rng: Rng): number {
  if (rng.float() > spec.p) return 0;
  const area = w * h;
  const logLo = Math.log(spec.ratio[0]);
  const logHi = Math.log(spec.ratio[1]);
  const isFloat = out instanceof Float32Array;
  let erased = 0;
  for (let n = 0; n < spec.count; n++) {
    for (let attempt = 0; attempt < 10; attempt++) {
      const target = (rng.uniform(spec.scale[0], spec.scale[1]) * area) / spec.count;
      const ar = Math.exp(rng.uniform(logLo, logHi));
      const eh = roundHalfEven(Math.sqrt(target * ar));
      const ew = roundHalfEven(Math.sqrt(target / ar));
      // as timm: a draw whose side rounds to 0 is taken (it erases nothing) and ends this region's attempts
      if (ew < w && eh < h) {
        const top = rng.int(h - eh + 1);
        const left = rng.int(w - ew + 1);
        for (let c = 0; c < 3; c++) {
          const colour = spec.mode === 'rand' ? (isFloat ? rng.normal() : rng.int(256)) : 0;
          for (let y = top; y < top + eh; y++) {
            const o = offset + c * area + y * w;
            for (let x = left; x < left + ew; x++) {
              if (spec.mode === 'pixel') out[o + x] = isFloat ? rng.normal() : rng.int(256);
              else out[o + x] = colour;
            }
          }
        }
        if (ew > 0 && eh > 0) erased++;
        break;
      }
    }
  }
  return erased;
}
