import { test } from 'node:test';
import assert from 'node:assert/strict';
import { codeFence, printable, quotedPath, shellQuote } from '../../src/util/printable';

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

test('printable escapes every C0 and C1 control character (NUL included) and each bidirectional mark, as \\xNN below U+0100', () => {
  assert.equal(printable('a\x00b\x1fc\x7fd'), 'a\\x00b\\x1fc\\x7fd');
  // C1 controls (U+0080–U+009F) are one byte in Latin-1 terminals: \x85 is NEL, a line break
  assert.equal(printable('\x80\x85\x9f\xa0'), '\\x80\\x85\\x9f\xa0');
  assert.equal(printable('\u200e\u200f\u202a\u202e\u2066\u2069\u206a'), '\\u200e\\u200f\\u202a\\u202e\\u2066\\u2069\u206a');
  assert.equal(printable('plain ü text'), 'plain ü text');
});

test('shellQuote quotes what a shell would expand or split: $, backticks, globs, spaces, an empty argument', () => {
  for (const arg of ['$HOME', 'a`id`', '*.json', 'a b', '', 'a;b', '~x']) {
    const quoted = shellQuote(arg);
    assert.notEqual(quoted, arg, arg);
    assert.match(quoted, /^'.*'$/s, arg);
  }
  assert.equal(shellQuote('--out-dir=runs/a,b:c@1%+x'), '--out-dir=runs/a,b:c@1%+x');
});

test('codeFence is longer than the longest run of backticks in the text, and at least three', () => {
  assert.equal(codeFence('no ticks'), '```');
  assert.equal(codeFence('a `b` ``c``'), '```');
  assert.equal(codeFence('x ``` y'), '````');
  assert.equal(codeFence('`````'), '``````');
});
