// Loads the libtorch addon. Every other module reaches libtorch through `native`.
import { join } from 'node:path';
import { existsSync } from 'node:fs';

/**
 * An opaque handle to one libtorch tensor (a BigInt id into the addon's handle table), owned by
 * exactly one Tensor wrapper. Ids are never reused: a disposed one stays invalid.
 */
export type TensorHandle = bigint & { readonly __tensorHandle: unique symbol };

/** A libtorch CPU random generator. */
export interface NativeGenerator {
  seed(seed: number): void;
  getState(): TensorHandle;
  setState(state: TensorHandle): void;
}

// The addon's functions are declared loosely here; the typed surface is Tensor and the free
// functions in ops.ts / functional.ts.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeFn = (...args: any[]) => any;
export interface NativeAddon {
  Generator: new (seed?: number) => NativeGenerator;
  cudaBuild: boolean;
  [op: string]: NativeFn | boolean | (new (seed?: number) => NativeGenerator);
}

function load(): NativeAddon {
  const root = join(__dirname, '..', '..', '..');
  const candidates = [
    process.env.SEMAIM_ADDON,
    join(root, 'build', 'Release', 'semaim.node'),
    join(root, 'build', 'Debug', 'semaim.node'),
  ].filter((p): p is string => !!p);
  for (const p of candidates) {
    if (existsSync(p)) return require(p) as NativeAddon;
  }
  throw new Error(
    `semaim native addon not found (looked in ${candidates.join(', ')}). Build it with \`npm run build:native\` ` +
      '(needs libtorch: `apt-get install libtorch-dev libopenblas0-openmp`, $LIBTORCH, or a pip PyTorch).',
  );
}

const addon = load();
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const native = addon as unknown as Record<string, NativeFn> & { Generator: NativeAddon['Generator']; cudaBuild: boolean };
