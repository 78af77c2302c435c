// The peak lr of a training command, from --lr or from --blr × effective batch / 256, checked before any
// work: the optimisers compute in float32, and an lr it cannot hold stopped them only in their first step
// ("value cannot be converted to type float without overflow"), and a --min-lr above the peak only after
// the features were extracted.
import { OptionError } from '../util/options';
import { minLrProblem, scaleLr } from './schedule';

/** The largest finite float32. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * The peak lr: `lr` when given, else `blr` scaled to `effectiveBatch`. An OptionError names the option
 * (lr, blr or minLr) when float32 cannot hold it or min-lr lies above it.
 */
export function peakLr(o: { lr?: number; blr?: number; minLr?: number }, effectiveBatch: number): number {
  const lr = o.lr ?? scaleLr(o.blr ?? NaN, effectiveBatch);
  if (!(lr <= FLOAT32_MAX)) {
    const how = o.lr !== undefined ? `${lr} is` : `gives lr = ${o.blr} × ${effectiveBatch} / 256 = ${lr},`;
    throw new OptionError(o.lr !== undefined ? 'lr' : 'blr', `${how} above the largest float32 (${FLOAT32_MAX}), which the optimisers compute in`);
  }
  const minLrTooHigh = minLrProblem(o.minLr, lr);
  if (minLrTooHigh) throw new OptionError('minLr', minLrTooHigh);
  return lr;
}
