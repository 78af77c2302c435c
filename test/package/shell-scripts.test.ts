// The shell scripts parse (bash -n): the GPU session runs them on a machine lent for minutes, where a
// quote broken by an edit (an apostrophe inside a single-quoted `node -e` program) wastes the session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeExecTempDir } from '../temp-dir';

const SCRIPTS = join(__dirname, '..', '..', '..', 'scripts');

test('every scripts/*.sh and .ci/run parses with bash -n', () => {
  const files = [
    ...readdirSync(SCRIPTS)
      .filter((n) => n.endsWith('.sh'))
      .map((n) => join(SCRIPTS, n)),
    join(SCRIPTS, '..', '.ci', 'run'),
  ];
  assert.ok(files.length > 5, `found ${files.length} scripts in ${SCRIPTS}`);
  for (const file of files) {
    const r = spawnSync('bash', ['-n', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${file}: ${r.stderr}`);
  }
});

test('find-torch-python.sh: a $SEMAIM_PYTHON that is missing or cannot import torch is an error naming it, never another Python in its place', (t) => {
  const dir = makeExecTempDir('semaim-find-python-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const noTorch = join(dir, 'python-without-torch');
  writeFileSync(noTorch, '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  const withTorch = join(dir, 'python-with-torch');
  writeFileSync(withTorch, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  const run = (python: string) =>
    spawnSync('bash', [join(SCRIPTS, 'find-torch-python.sh')], { encoding: 'utf8', env: { ...process.env, SEMAIM_PYTHON: python } });
  for (const bad of [join(dir, 'missing', 'python3'), noTorch]) {
    const r = run(bad);
    assert.equal(r.status, 1, `${bad}: ${r.stdout}`);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`SEMAIM_PYTHON=${bad.replace(/[/.]/g, '\\$&')}`));
  }
  const good = run(withTorch);
  assert.equal(good.status, 0, good.stderr);
  assert.equal(good.stdout, `${withTorch}\n`);
});
