// bench/eval.ts's command line: what it refuses before measuring (it runs as a script: dist/bench/eval.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

const SCRIPT = path.join(__dirname, '..', '..', 'bench', 'eval.js');

test('bench:eval: an --only naming no benchmark of it is refused before anything is measured', () => {
  // Before: unknown names were skipped in silence; with none left the tables came out empty, exit 0,
  // and --write-docs replaced the recorded "## Evaluation" section by them.
  for (const only of ['bogus', 'knn,bogus']) {
    const r = spawnSync(process.execPath, [SCRIPT, '--quick', '--threads', '1', '--only', only], { encoding: 'utf8', timeout: 300_000 });
    assert.equal(r.status, 2, `--only ${only}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, /'bogus' is not one of features, knn, linprobe, finetune/);
    assert.equal(r.stdout, '');
  }
});

test('bench:eval: --rounds or --threads that is not a whole number ≥ 1 is refused before anything is measured', () => {
  // Before: --rounds 0 ran the warm-up only, kept no measurement, printed an empty table with exit 0 (and
  // --write-docs replaced the recorded one by it).
  for (const args of [
    ['--rounds', '0'],
    ['--threads', 'two'],
  ]) {
    const r = spawnSync(process.execPath, [SCRIPT, '--quick', '--only', 'knn', ...args], { encoding: 'utf8', timeout: 300_000 });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${args.join(' ')}: a whole number`));
    assert.equal(r.stdout, '');
  }
});
