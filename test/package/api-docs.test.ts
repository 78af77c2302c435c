// docs/API.md lists every public export with the first sentence of its doc comment
// (scripts/api-docs.js): every export has one, and the file is what the sources generate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './type-check';

const { firstSentence } = require(join(ROOT, 'scripts', 'api-docs.js')) as { firstSentence: (text: string) => string };

test('every public export has a doc comment and docs/API.md is current (node scripts/api-docs.js regenerates it)', { timeout: 3 * 60_000 }, () => {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'api-docs.js'), '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test("API.md's summary is the doc's first sentence, on one line, with links as code and table bars escaped", () => {
  assert.equal(firstSentence('Weighted k-NN (DINO). Extra detail.'), 'Weighted k-NN (DINO).');
  assert.equal(firstSentence('Loads an encoder\nfrom a {@link EncoderSource} or a path. More.'), 'Loads an encoder from a `EncoderSource` or a path.');
  assert.equal(firstSentence('Tokens, e.g. the patches. Rest.'), 'Tokens, e.g. the patches.');
  assert.equal(firstSentence('x / max(||x||, eps)'), 'x / max(\\|\\|x\\|\\|, eps)');
  assert.equal(firstSentence('First paragraph\n\nSecond. More.'), 'First paragraph');
  assert.equal(firstSentence('See {@link Foo | the foo}. Then.'), 'See `the foo`.');
});
