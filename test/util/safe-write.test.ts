// Files a command writes where a user points it: a symlink planted at an output name is replaced,
// never followed to a file elsewhere; appends refuse links; names print without acting on a terminal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  appendNoFollow,
  commitStaged,
  commitStagedUnlessAborted,
  commitUnlessTaken,
  folderObstacle,
  mkdirError,
  stageFile,
  tempPath,
  writeError,
  writeFileAtomic,
} from '../../src/util/safe-write';
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

test('a symlink planted at the temporary name writeFileAtomic will use next is not written through: the write fails and the link goes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-safe-write-'));
  try {
    const [victim, target] = [join(dir, 'victim.txt'), join(dir, 'config.json')];
    writeFileSync(victim, 'precious');
    const probe = tempPath(target); // <target>.tmp-<pid>-<n>: the next one is n + 1
    const next = probe.replace(/\d+$/, (n) => String(Number(n) + 1));
    symlinkSync(victim, next);
    assert.throws(
      () => writeFileAtomic(target, '{}'),
      (e: NodeJS.ErrnoException) => e.code === 'EEXIST' && e.message.includes(target),
    );
    assert.equal(readFileSync(victim, 'utf8'), 'precious');
    assert.equal(existsSync(target), false, 'nothing put in place');
    assert.equal(existsSync(next), false, 'the planted link was removed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the next write of a file removes the temporary files a killed writer of it left (its .data staging file too), not a live process's", () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-safe-write-'));
  try {
    const target = join(dir, 'model.safetensors');
    const dead = [`${target}.tmp-999999999-0`, `${target}.tmp-999999999-1f.data`];
    const kept = [`${target}.tmp-1-0`, join(dir, 'other.json.tmp-999999999-0')]; // pid 1 is alive; another file's temp is not this write's
    for (const f of [...dead, ...kept]) writeFileSync(f, 'half');
    writeFileAtomic(target, 'whole');
    assert.equal(readFileSync(target, 'utf8'), 'whole');
    for (const f of dead) assert.equal(existsSync(f), false, f);
    for (const f of kept) assert.equal(existsSync(f), true, f);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('commitUnlessTaken leaves a file that mayReplace refuses as it was (the staged one goes), replaces one it allows, and places a new one', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-safe-write-'));
  try {
    const [theirs, ours, fresh] = [join(dir, 'theirs.html'), join(dir, 'ours.html'), join(dir, 'new.html')];
    writeFileSync(theirs, "a user's page");
    writeFileSync(ours, 'an earlier report');
    const asked: string[] = [];
    const mayReplace = (p: string) => (asked.push(p), p === ours);
    assert.equal(commitUnlessTaken(stageFile(theirs, 'report'), mayReplace), false);
    assert.equal(readFileSync(theirs, 'utf8'), "a user's page");
    assert.equal(commitUnlessTaken(stageFile(ours, 'report'), mayReplace), true);
    assert.equal(readFileSync(ours, 'utf8'), 'report');
    assert.equal(commitUnlessTaken(stageFile(fresh, 'report'), mayReplace), true);
    assert.equal(readFileSync(fresh, 'utf8'), 'report');
    assert.deepEqual(asked, [theirs, ours], 'asked only where something stands');
    assert.deepEqual(readdirSync(dir).sort(), ['new.html', 'ours.html', 'theirs.html'], 'no temporary file left');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('commitUnlessTaken: a file created at the name between its look and its link is looked at again, not replaced nor an error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-safe-write-'));
  const fs = require('node:fs') as { lstatSync: (p: string, o?: object) => unknown }; // the module object the writer calls through
  const lstat = fs.lstatSync;
  try {
    const target = join(dir, 'report.html');
    const staged = stageFile(target, 'report');
    let raced = false;
    fs.lstatSync = (p: string, o?: object) => {
      if (p !== target || raced) return lstat(p, o);
      raced = true;
      writeFileSync(target, "another process's page"); // made just after the look found nothing
      return undefined;
    };
    assert.equal(
      commitUnlessTaken(staged, () => false),
      false,
    );
    assert.equal(readFileSync(target, 'utf8'), "another process's page");
    assert.deepEqual(readdirSync(dir), ['report.html']);
  } finally {
    fs.lstatSync = lstat;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a set of files whose later one cannot be staged, or that is stopped after its last one is staged, changes none of them and leaves no temporary file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-safe-write-'));
  try {
    const [weights, config] = [join(dir, 'model.safetensors'), join(dir, 'config.json')];
    writeFileSync(weights, 'old weights');
    assert.throws(
      () =>
        commitStaged([
          () => stageFile(weights, 'new weights'),
          () => {
            throw new Error('the config cannot be written');
          },
        ]),
      /the config cannot be written/,
    );
    assert.deepEqual(readdirSync(dir), ['model.safetensors']);
    const stop = new AbortController();
    await assert.rejects(
      commitStagedUnlessAborted(
        [
          () => stageFile(weights, 'new weights'),
          () => {
            const staged = stageFile(config, '{}');
            stop.abort(); // a SIGINT while the last file was being written
            return staged;
          },
        ],
        stop.signal,
      ),
    );
    assert.deepEqual(readdirSync(dir), ['model.safetensors']);
    assert.equal(readFileSync(weights, 'utf8'), 'old weights');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a rename that fails (a folder at the name) names the file and leaves no temporary file behind', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-safe-write-'));
  try {
    const target = join(dir, 'result.json');
    mkdirSync(join(target, 'inside'), { recursive: true });
    assert.throws(
      () => writeFileAtomic(target, '{}'),
      (e: NodeJS.ErrnoException) => e.code === 'EISDIR' && e.message.startsWith(`cannot write ${target}: `),
    );
    assert.deepEqual(readdirSync(dir), ['result.json']);
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

test('writeError names the file and says why for a full disk (ENOSPC, or a quota: EDQUOT) and a read-only file system, keeping the code', () => {
  const errno = (code: string) => Object.assign(new Error(`${code}: failed, write`), { code, syscall: 'write' });
  for (const code of ['ENOSPC', 'EDQUOT']) {
    const e = writeError('out/a.json', errno(code)) as NodeJS.ErrnoException;
    assert.equal(e.message, `cannot write out/a.json: ${code}: failed, write (the disk is full: free space, or write elsewhere)`);
    assert.equal(e.code, code);
    assert.equal(writeError('out/a.json', errno(code), 'lower --keep').message.endsWith('(the disk is full: lower --keep)'), true);
  }
  assert.equal(writeError('a', errno('EROFS')).message, 'cannot write a: EROFS: failed, write (the file system is read-only: write elsewhere)');
  assert.equal(writeError('a', errno('EACCES')).message, 'cannot write a: EACCES: failed, write');
  // an error it named already is named again from its cause, not wrapped twice
  assert.equal(writeError('b', writeError('a', errno('EIO'))).message, 'cannot write b: EIO: failed, write');
});

test('mkdirError names what blocks a folder, however far up the path it is: a file at a part is ENOTDIR, the part missing below it is not what is named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-mkdir-error-'));
  try {
    writeFileSync(join(dir, 'file'), 'x');
    const deep = join(dir, 'file', 'a', 'b', 'c', 'd');
    assert.deepEqual(folderObstacle(deep), { why: `${join(dir, 'file')} exists and is not a folder`, missing: null });
    assert.deepEqual(folderObstacle(join(dir, 'new', 'a')), { why: null, missing: join(dir, 'new') });
    // mkdir of the file itself fails EEXIST: the folder cannot be made because a file is there, ENOTDIR
    let thrown: unknown;
    try {
      mkdirSync(join(dir, 'file'));
    } catch (e) {
      thrown = e;
    }
    const e = mkdirError(thrown) as NodeJS.ErrnoException;
    assert.equal(e.code, 'ENOTDIR');
    assert.equal(e.message, `cannot create the folder ${join(dir, 'file')}: ${join(dir, 'file')} exists and is not a folder`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
