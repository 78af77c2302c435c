// The `generator` option of the random ops: a torch.Generator, or none for the global generator.
// Checked here because the addon takes anything else as "none" and would draw from the global one.
import { native, NativeGenerator } from './native';
import type { Generator } from './random';
import { describeValue } from './errors';

/** The addon handle of a generator option (null: none given); anything but a Generator is a TypeError. */
export function generatorHandle(generator: Generator | null | undefined, where: string): NativeGenerator | null {
  if (generator === undefined || generator === null) return null;
  const handle = (generator as { native?: unknown }).native;
  if (!(handle instanceof native.Generator)) throw new TypeError(`${where}: generator must be a torch.Generator, got ${describeValue(generator)}`);
  return handle;
}
