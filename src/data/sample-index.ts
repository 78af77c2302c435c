// The check of a sample index a dataset's label(i), name(i) or sample(i) is given: out of range, a typed
// array read gave `undefined` for a label and a synthetic dataset rendered a sample it does not hold.

import { quotedPath } from '../util/printable';

/** Refuses a sample index that is not an integer in [0, length) of the dataset `root`. */
export function checkSampleIndex(i: number, ds: { readonly length: number; readonly root: string }): void {
  if (!(Number.isInteger(i) && i >= 0 && i < ds.length))
    throw new RangeError(`${quotedPath(ds.root)}: sample index must be an integer in [0, ${ds.length - 1}], got ${i}`);
}
