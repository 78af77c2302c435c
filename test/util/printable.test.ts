import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quotedPath, shellQuote } from '../../src/util/printable';

test('quotedPath leaves a plain path as it is and quotes, with JSON escapes, one holding a control character or a bidirectional override', () => {
  for (const plain of ['runs/a', 'runs/my run', "it's/ü", 'C:\\runs', 'runs/"x"']) assert.equal(quotedPath(plain), plain);
  assert.equal(quotedPath('runs/a\nb'), '"runs/a\\nb"');
  assert.equal(quotedPath('a\tb\x1b[2Jc'), '"a\\tb\\u001b[2Jc"');
  assert.equal(quotedPath('a\u202eb\u0085'), '"a\\u202eb\\u0085"');
  // a path that starts with a quote would read as a quoted one
  assert.equal(quotedPath('"a\\nb"'), '"\\"a\\\\nb\\""');
  for (const p of ['runs/a\nb', 'a\u202eb\u0085', '"x']) assert.equal(JSON.parse(quotedPath(p)), p);
});

test("shellQuote writes an argument holding a control character as $'…' (a newline in '…' split the printed command line)", () => {
  assert.equal(shellQuote('runs/a'), 'runs/a');
  assert.equal(shellQuote("my run's"), `'my run'\\''s'`);
  assert.equal(shellQuote("a\nb'c\\d"), "$'a\\x0ab\\'c\\\\d'");
});
