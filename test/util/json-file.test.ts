// JSON files a command reads back: what they hold is checked before use, and every error names the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_JSON_DEPTH, jsonDepth, readJsonObject, readJsonWith } from '../../src/util/json-file';

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

test('readJsonObject refuses a file nested deeper than MAX_JSON_DEPTH, naming the file (JSON.parse read it, and the first JSON.stringify over it was a RangeError); up to it, it reads', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-json-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'plan.json');
  const nested = (n: number) => `{"a": ${'['.repeat(n - 1)}"]]{{\\""${']'.repeat(n - 1)}}`; // (brackets in a string are not nesting)
  writeFileSync(path, nested(MAX_JSON_DEPTH));
  assert.equal(jsonDepth(nested(MAX_JSON_DEPTH)), MAX_JSON_DEPTH);
  assert.ok(readJsonObject(path).a);
  writeFileSync(path, nested(20_000));
  assert.throws(() => readJsonObject(path), { message: `${path}: nested 20000 levels deep, more than the ${MAX_JSON_DEPTH} a file of semaim's may` });
  assert.throws(() => readJsonWith(path, ['a']), /nested 20000 levels deep/);
});
