// JSON files a command reads back: what they hold is checked before use, and every error names the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readJsonObject, readJsonWith } from '../../src/util/json-file';

test('readJsonWith refuses a required key that holds no object (null, a number, an array), naming the file and the key, as readJsonObject refuses the whole', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-json-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'plan.json');
  for (const shards of [null, 3, [], [1, 2]]) {
    writeFileSync(path, JSON.stringify({ inputs: {}, shards }));
    assert.throws(() => readJsonWith(path, ['inputs', 'shards']), { message: `${path}: 'shards' is missing or not an object` }, JSON.stringify(shards));
  }
  writeFileSync(path, JSON.stringify({ inputs: {}, shards: { a: 1 } }));
  assert.deepEqual(readJsonWith(path, ['inputs', 'shards']).shards, { a: 1 });
  writeFileSync(path, '[]');
  assert.throws(() => readJsonObject(path), { message: `${path}: not a JSON object` });
});
