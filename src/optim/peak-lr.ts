// The peak lr of a training command, from --lr or from --blr × effective batch / 256, checked before any
// work: the optimisers compute in float32, and an lr it cannot hold stopped them only in their first step
// ("value cannot be converted to type float without overflow"), and a --min-lr above the peak only after
// the features were extracted.
import { OptionError } from '../util/options';
import { minLrProblem, scaleLr } from './schedule';

/** The largest finite float32. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/** What AdamW does with the lr: its first step is lr / (1 − β1). */
export interface AdamWUse {
  beta1: number;
}

/**
 * The peak lr: `lr` when given, else `blr` scaled to `effectiveBatch`. An OptionError names the option
 * (lr, blr or minLr) when float32 cannot hold it or min-lr lies above it; with `adamw`, also when float32
 * cannot hold AdamW's first step (lr / (1 − β1)). (An lr × weight decay above 1, which flips the weights'
 * sign at every step, is left to diverge: the loop's message then names the weight decay.)
 */
export function peakLr(o: { lr?: number; blr?: number; minLr?: number }, effectiveBatch: number, adamw?: AdamWUse): number {
  const lr = o.lr ?? scaleLr(o.blr ?? NaN, effectiveBatch);
  const key = o.lr !== undefined ? 'lr' : 'blr';
  const how = o.lr !== undefined ? `${lr} is` : `gives lr = ${o.blr} × ${effectiveBatch} / 256 = ${lr},`;
  if (!(lr <= FLOAT32_MAX)) throw new OptionError(key, `${how} above the largest float32 (${FLOAT32_MAX}), which the optimisers compute in`);
  if (adamw && !(lr / (1 - adamw.beta1) <= FLOAT32_MAX))
    throw new OptionError(
      key,
      `${how} too large for AdamW: its first step is lr / (1 − beta1) = ${lr / (1 - adamw.beta1)}, above the largest float32 (${FLOAT32_MAX})`,
    );
  const minLrTooHigh = minLrProblem(o.minLr, lr);
  if (minLrTooHigh) throw new OptionError('minLr', minLrTooHigh);
  return lr;
}
