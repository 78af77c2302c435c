// bench/engine.ts's table (the script's main runs only when it is started as a script).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { table } from '../../bench/engine';

test("bench:engine: the table's Command line is the command that ran, options included", () => {
  // Before: always '`npm run bench:engine`', also for a --quick or --threads 1 run written into the docs.
  const argv = process.argv;
  process.argv = [argv[0], 'dist/bench/engine.js', '--quick', '--threads', '1', '--write-docs'];
  try {
    const r = {
      matmul: [{ n: 512, ts: [0.002], py: [0.001] }],
      dispatch: { ts: [1], py: [2] },
      vit: { ts: [10, 12], py: [20, 22], tsRss: [100, 101], pyRss: [100, 100], tsParams: 5, pyParams: 5 },
    };
    const out = table(r, { torch: '1.13.0', threads: 1, python: '3.11' });
    const line = out.split('\n').find((l) => l.startsWith('- Command:'));
    assert.equal(line, '- Command: `npm run bench:engine -- --quick --threads 1` (this table: the same with `--write-docs`)');
    // ratios are time ratios TS/PyTorch: matmul 2 ms vs 1 ms is 2.00, dispatch 1 vs 2 µs 0.50
    assert.match(out, /\| fp32 matmul 512×512 \(GFLOP\/s, best of 1\) \| [\d.]+ \| [\d.]+ \| 2\.00 \|/);
    assert.match(out, /\| 1\.00 \| 2\.00 \| 0\.50 \| ≤ 1\.00: met \|/);
  } finally {
    process.argv = argv;
  }
});
