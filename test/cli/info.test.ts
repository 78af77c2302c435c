// `semaim info` reports the threads the commands use by default (--threads: every core), not
// libtorch's own default, which OMP_NUM_THREADS or a container's limits can make smaller.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

const MAIN = join(__dirname, '..', '..', 'src', 'cli', 'main.js');

test("semaim info: the threads line is --threads' default (every core), whatever libtorch's own default", () => {
  const r = spawnSync(process.execPath, [MAIN, 'info'], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  assert.equal(r.status, 0, r.stderr);
  const m = /^threads (\d+)/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.equal(Number(m[1]), availableParallelism());
});
