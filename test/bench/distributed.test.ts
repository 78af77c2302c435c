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
