// bench/pretrain.ts's command line: what it refuses before measuring (it runs as a script, so it is
// started as one: dist/bench/pretrain.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

const SCRIPT = path.join(__dirname, '..', '..', 'bench', 'pretrain.js');

test('bench:pretrain: an --only or --only-batch that selects no configuration is refused before anything is measured', () => {
  // Before: nothing ran, the tables came out empty and exit 0; with --write-docs the recorded section was
  // replaced by them. (No --write-docs here: the refusal must come before any of that.)
  for (const args of [
    ['--only', 'bogus'],
    ['--only', 'large'],
    ['--only-batch', '128'],
  ]) {
    const r = spawnSync(process.execPath, [SCRIPT, ...args, '--threads', '1'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, /no configuration/, args.join(' '));
    assert.doesNotMatch(r.stderr, /peak matmul rate/, `${args.join(' ')}: measured before refusing`);
    assert.equal(r.stdout, '', args.join(' '));
  }
});

test('bench:pretrain: a count that is not a whole number in range is refused before anything is measured', () => {
  // Before: --rounds 0 (or 'two', NaN) ran no side, printed empty tables with exit 0, and with --write-docs
  // replaced the recorded section by them; --threads two reached the children as 'NaN'.
  for (const args of [
    ['--rounds', '0'],
    ['--rounds', 'two'],
    ['--threads', 'two'],
    ['--warmup', '-1'],
    ['--steps-tiny', '0'],
  ]) {
    const r = spawnSync(process.execPath, [SCRIPT, '--only', 'tiny', ...args], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${args.join(' ')}: a whole number`), args.join(' '));
    assert.doesNotMatch(r.stderr, /peak matmul rate/, `${args.join(' ')}: measured before refusing`);
  }
});
