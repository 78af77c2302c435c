// Files a command writes where a user points it: a symlink planted at an output name is replaced,
// never followed to a file elsewhere; appends refuse links; names print without acting on a terminal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendNoFollow, writeFileAtomic } from '../../src/util/safe-write';
import { codeFence, printable, shellQuote } from '../../src/util/printable';
import { checkOutputs } from '../../src/io/outputs';
import { MetricsLog } from '../../src/run/metrics';
import { markdownTable } from '../../src/eval/result';

test('writeFileAtomic replaces a planted symlink (existing or dangling target) instead of writing through it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-safe-write-'));
  try {
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, join(dir, 'config.json'));
    writeFileAtomic(join(dir, 'config.json'), '{}');
    assert.equal(readFileSync(victim, 'utf8'), 'precious');
    assert.ok(lstatSync(join(dir, 'config.json')).isFile(), 'the link itself was replaced');

    symlinkSync(join(dir, 'elsewhere.txt'), join(dir, 'grid.png'));
    writeFileAtomic(join(dir, 'grid.png'), 'png');
    assert.equal(existsSync(join(dir, 'elsewhere.txt')), false, 'no file created at a dangling link’s target');
    writeFileAtomic(join(dir, 'sub', 'new.json'), 'x');
    assert.equal(readFileSync(join(dir, 'sub', 'new.json'), 'utf8'), 'x', 'the folder is created');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('appends (metrics.jsonl) refuse a symlink, dangling or not, and never create its target', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-safe-append-'));
  try {
    symlinkSync(join(dir, 'outside.txt'), join(dir, 'metrics.jsonl'));
    assert.throws(() => new MetricsLog(join(dir, 'metrics.jsonl')).write({ step: 1 }), /metrics\.jsonl is a symbolic link: semaim does not write through it/);
    assert.equal(existsSync(join(dir, 'outside.txt')), false);
    appendNoFollow(join(dir, 'log.txt'), 'a\n');
    appendNoFollow(join(dir, 'log.txt'), 'b\n');
    assert.equal(readFileSync(join(dir, 'log.txt'), 'utf8'), 'a\nb\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('names print as escapes, not terminal controls: ESC, CR, LF, bidi overrides; Markdown cells stay one row', () => {
  assert.equal(printable('z\x1b[2J\nFORGED\r.png'), 'z\\x1b[2J\\x0aFORGED\\x0d.png');
  assert.equal(printable('cat\u202Egnp.exe'), 'cat\\u202egnp.exe');
  assert.equal(printable('plain name é 猫'), 'plain name é 猫');
  const table = markdownTable(
    ['class', 'top-1'],
    [
      ['a\rb', '1'],
      ['c\x1b[2Jd|e', '2'],
    ],
  );
  assert.equal(table.split('\n').filter((l) => l).length, 4, table);
  assert.ok(!table.includes('\r') && !table.includes('\x1b'), table);
  assert.match(table, /c\\x1b\[2Jd\\\|e/);
});

test('a command quoted for ablation.md reads back as typed: shell-quoted arguments inside a fence no backtick run closes', () => {
  assert.equal(['--out-dir', 'runs/a b', "it's", '--k', '10,20'].map(shellQuote).join(' '), "--out-dir 'runs/a b' 'it'\\''s' --k 10,20");
  assert.equal(codeFence('semaim ablate --out-dir x'), '```');
  assert.equal(codeFence('--out-dir "a```b"'), '````');
});

test('an output name held by a dangling symlink counts as existing (writing there would create its target)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-outputs-link-'));
  try {
    symlinkSync(join(dir, 'target.html'), join(dir, 'index.html'));
    assert.throws(() => checkOutputs([join(dir, 'index.html')], { overwrite: false }), /index\.html exists: choose another output, or pass --overwrite/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
