// Small internal helpers shared by the optimisers.

/** A copy of o without the keys whose value is undefined (so they do not override defaults). */
export function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Whether x is a finite number ≥ 0 (null, NaN and Infinity are not: `null >= 0` is true in JavaScript). */
export function isFiniteNonNegative(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x) && x >= 0;
}
