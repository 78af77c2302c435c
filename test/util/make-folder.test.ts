// makeFolder is mkdir -p without Node's recursive mkdir, which spins forever at 100 % CPU, deaf to
// SIGTERM, where mkdir answers ENOENT under a parent that exists (/proc): `knn --out-dir /proc/x` hung.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeFolder } from '../../src/util/make-folder';

test('makeFolder makes the missing parts and returns the first it made, as mkdirSync({ recursive }) does', () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-mkdir-'));
  try {
    assert.equal(makeFolder(join(root, 'a', 'b', 'c')), join(root, 'a'));
    assert.ok(statSync(join(root, 'a', 'b', 'c')).isDirectory());
    assert.equal(makeFolder(join(root, 'a', 'b')), undefined, 'there already');
    writeFileSync(join(root, 'file'), 'x');
    assert.throws(() => makeFolder(join(root, 'file')), { code: 'EEXIST' });
    assert.throws(() => makeFolder(join(root, 'file', 'below')), { code: 'ENOTDIR' });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a folder under /proc is an error at once, not an endless loop', { skip: !existsSync('/proc/self') }, () => {
  const script = `require(${JSON.stringify(require.resolve('../../src/util/make-folder'))}).makeFolder('/proc/semaim-x/y')`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.signal, null, 'it returned (the recursive mkdir was killed by the timeout)');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /ENOENT: no such file or directory, mkdir '\/proc\/semaim-x'/);
});

test('a folder another process makes between the look and the mkdir is fine (two runs starting at once); a file made there is not', () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-mkdir-'));
  const fs = require('node:fs') as { mkdirSync: (p: string) => void }; // the module object makeFolder calls through
  const mkdir = fs.mkdirSync;
  const racing = (make: (p: string) => void) => (p: string) => {
    fs.mkdirSync = mkdir; // the other process is first, once
    make(p);
    mkdir(p); // EEXIST
  };
  try {
    fs.mkdirSync = racing((p) => mkdir(p));
    assert.equal(makeFolder(join(root, 'run', 'logs')), join(root, 'run', 'logs'));
    assert.ok(statSync(join(root, 'run', 'logs')).isDirectory());
    fs.mkdirSync = racing((p) => writeFileSync(p, 'x'));
    assert.throws(() => makeFolder(join(root, 'other')), { code: 'EEXIST' });
  } finally {
    fs.mkdirSync = mkdir;
    rmSync(root, { recursive: true, force: true });
  }
});
