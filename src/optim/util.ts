// Small internal helpers shared by the optimisers.

/** A copy of o without the keys whose value is undefined (so they do not override defaults). */
export function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
