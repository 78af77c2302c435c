// What the benchmarks share when they write their results (bench/docs-section.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { causeOf } from '../../bench/docs-section';

test("causeOf: a failed side's cause is its error, not Node's version line after an uncaught exception's stack", () => {
  // A worker that throws while loading (here: an unknown --fused kind) dies with Node's uncaught-exception
  // report, whose last line is 'Node.js v20…': that was written into the table as the side's cause.
  const worker = path.join(__dirname, '..', '..', 'bench', 'pretrain_worker.js');
  const r = spawnSync(process.execPath, [worker, '--fused', 'bogus'], { encoding: 'utf8', timeout: 60_000 });
  assert.notEqual(r.status, 0);
  const e = new Error(`node pretrain_worker.js --fused bogus failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}`);
  assert.match(causeOf(e), /^RangeError: unknown fused kernel kind\(s\) bogus/);
  // caught and printed by the worker itself (its stack, nothing after it), and a Python traceback
  assert.equal(causeOf(new Error('x failed (status 1, signal null):\nError: out of memory\n    at main (w.js:1:1)\n')), 'Error: out of memory');
  assert.equal(
    causeOf(
      new Error('python3 a.py failed (status 1, signal null):\nTraceback (most recent call last):\n  File "a.py", line 1\nRuntimeError: CUDA out of memory.\n'),
    ),
    'RuntimeError: CUDA out of memory.',
  );
});
