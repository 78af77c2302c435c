// bench/distributed.ts's command line: what it refuses before measuring (it runs as a script:
// dist/bench/distributed.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

const SCRIPT = path.join(__dirname, '..', '..', 'bench', 'distributed.js');

test('bench:distributed: a count that is not a whole number in range is refused before anything is measured', () => {
  // Before: --rounds 0 ran nothing, printed the empty table with exit 0 and, with --write-docs, replaced the
  // recorded data-parallel section by it; --steps 0 left the medians empty.
  for (const args of [
    ['--rounds', '0'],
    ['--steps', '0'],
    ['--batch', 'eight'],
    ['--nosync-steps', '-1'],
  ]) {
    const r = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${args.join(' ')}: a whole number`));
    assert.equal(r.stdout, '');
  }
});

test('bench:distributed: a side that fails is listed as failed, and the table keeps what the other sides measured (exit 1)', () => {
  // Before: the first failing run (here: no Python for the PyTorch sides) ended the benchmark without a table.
  const r = spawnSync(process.execPath, [SCRIPT, '--steps', '1', '--nosync-steps', '1', '--warmup', '0', '--batch', '2'], {
    encoding: 'utf8',
    timeout: 300_000,
    killSignal: 'SIGKILL',
    env: { ...process.env, SEMAIM_PYTHON: '/nonexistent/python3' },
  });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /^\| TypeScript \| 1 \| – \| \d+ \|/m);
  assert.match(r.stdout, /^\| TypeScript, DDP overlap \(c10d Reducer, hooks\) \| 2 \| during backward/m);
  assert.match(r.stdout, /^- \*\*PyTorch DistributedDataParallel, 2 processes: failed\*\* — .*ENOENT/m);
  assert.doesNotMatch(r.stdout, /^\| PyTorch/m);
});
