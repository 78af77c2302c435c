// Small internal helpers shared by the optimisers.
import { didYouMean } from '../util/options';

/** A copy of o without the keys whose value is undefined (so they do not override defaults). */
export function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Whether x is a finite number ≥ 0 (null, NaN and Infinity are not: `null >= 0` is true in JavaScript). */
export function isFiniteNonNegative(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x) && x >= 0;
}

/**
 * Refuses an option of an optimiser's constructor that is not one of its hyper-parameters (the keys of its
 * defaults) or `extra`: a misspelt one (PyTorch's weight_decay for weightDecay) was merged into every
 * group beside the real one, which kept its default.
 */
export function checkOptionNames(where: string, opts: object, defaults: object, extra: readonly string[] = []): void {
  const known = [...Object.keys(defaults), ...extra];
  for (const key of Object.keys(opts)) {
    if (!known.includes(key)) throw new RangeError(`${where}: unknown option '${key}'${didYouMean(key, known)} (known: ${known.join(', ')})`);
  }
}
