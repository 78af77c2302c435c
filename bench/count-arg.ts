// What the benchmarks' command lines share: a count given on them is a whole number in range, or nothing runs.

/**
 * Exits 2 naming the flag as written unless `value` is a whole number ≥ min: --rounds 0 (or 'two', NaN)
 * would measure nothing and, with --write-docs, replace the recorded section by empty tables; other counts
 * would reach the child processes as NaN.
 */
export function exitUnlessCount(flag: string, written: string, value: number, min: number): void {
  if (Number.isInteger(value) && value >= min) return;
  process.stderr.write(`${flag} ${written}: a whole number ≥ ${min}; nothing measured\n`);
  process.exit(2);
}
