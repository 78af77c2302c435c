// The two paths every export takes, checked as `semaim export` checks --checkpoint and --out: a library
// caller's missing or non-text path failed inside Node ('"paths[0]" argument must be of type string').
import { OptionError } from '../util/options';

/** Refuses a `source` or `out` that is not a non-empty string, naming the flag it stands for. */
export function checkExportPaths(source: unknown, out: unknown): void {
  for (const [key, value] of [
    ['checkpoint', source],
    ['out', out],
  ] as const)
    if (typeof value !== 'string' || value === '')
      throw new OptionError(key, `expected a path (the run, checkpoint or encoder file to export; the output), got ${value === '' ? "''" : String(value)}`);
}
