// The shell scripts parse (bash -n): the GPU session runs them on a machine lent for minutes, where a
// quote broken by an edit (an apostrophe inside a single-quoted `node -e` program) wastes the session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

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
