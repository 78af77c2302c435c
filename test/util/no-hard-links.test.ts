// On a file system without hard links (FAT, some FUSE and network mounts, where link() fails with EPERM,
// ENOTSUP or EOPNOTSUPP) the three writers that place files with a hard link fall back, as their comments
// say: a lock is created exclusively and then written, a file placed unless taken is renamed into place,
// and a set of files committed together replaces the earlier set. Simulated by making fs.linkSync fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { lockFile, noHardLinks, type Holder } from '../../src/util/file-lock';
import { commitFiles, commitUnlessTaken, stageFile } from '../../src/util/safe-write';

// The module object itself (an `import * as` namespace is read-only): the writers call fs.linkSync through it.
const fs = require('node:fs') as typeof import('node:fs');

const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: operation not permitted, link`), { code });

test('noHardLinks names the errors of a file system without hard links, and no other', () => {
  for (const code of ['EPERM', 'ENOTSUP', 'EOPNOTSUPP']) assert.equal(noHardLinks(errno(code)), true, code);
  for (const code of ['EEXIST', 'ENOENT', 'EACCES', 'ENOSPC', undefined]) assert.equal(noHardLinks(errno(String(code))), false, String(code));
});

for (const code of ['EPERM', 'ENOTSUP', 'EOPNOTSUPP']) {
  test(`without hard links (link fails with ${code}) a lock, a file placed unless taken and a committed set still land`, (t) => {
    const dir = fs.mkdtempSync(join(tmpdir(), 'semaim-no-links-'));
    const linkSync = fs.linkSync;
    let links = 0;
    (fs as { linkSync: typeof fs.linkSync }).linkSync = () => {
      links++;
      throw errno(code);
    };
    t.after(() => {
      (fs as { linkSync: typeof fs.linkSync }).linkSync = linkSync;
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const release = lockFile(join(dir, 'run.lock'));
    assert.equal(typeof release, 'function', 'the lock is taken');
    assert.match(fs.readFileSync(join(dir, 'run.lock'), 'utf8'), new RegExp(`${process.pid}`));
    assert.notEqual(typeof lockFile(join(dir, 'run.lock')), 'function', 'and held: a second taker is refused');
    (release as () => void)();

    assert.equal(
      commitUnlessTaken(stageFile(join(dir, 'report.html'), 'new'), () => false),
      true,
    );
    assert.equal(fs.readFileSync(join(dir, 'report.html'), 'utf8'), 'new');

    fs.writeFileSync(join(dir, 'a.json'), 'old a');
    fs.writeFileSync(join(dir, 'b.json'), 'old b');
    commitFiles([stageFile(join(dir, 'a.json'), 'new a'), stageFile(join(dir, 'b.json'), 'new b')]);
    assert.deepEqual([fs.readFileSync(join(dir, 'a.json'), 'utf8'), fs.readFileSync(join(dir, 'b.json'), 'utf8')], ['new a', 'new b']);
    assert.ok(links >= 3, `every writer tried a hard link first (${links})`);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['a.json', 'b.json', 'report.html'], 'no draft, temporary or journal left');
  });
}

test('a lock created but not yet written (the fallback without hard links) is waited for, not taken over; one left empty is', async (t) => {
  const dir = fs.mkdtempSync(join(tmpdir(), 'semaim-empty-lock-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const lock = join(dir, 'run.lock');
  // A rival starter between its exclusive create and its write: the file is there, empty, and filled a moment later.
  fs.writeFileSync(lock, '');
  const writer = spawn(
    process.execPath,
    [
      '-e',
      `setTimeout(() => { require('fs').writeFileSync(${JSON.stringify(lock)}, JSON.stringify({ pid: process.pid, host: require('os').hostname(), since: 'now' })); setTimeout(() => {}, 20000); }, 300)`,
    ],
    { stdio: 'ignore' },
  );
  t.after(() => writer.kill('SIGKILL'));
  await new Promise((resolve) => writer.once('spawn', resolve));
  const r = lockFile(lock);
  assert.notEqual(typeof r, 'function', 'the empty lock was taken over while its starter was writing it');
  assert.equal((r as Holder).pid, writer.pid);

  // Empty since long ago: its starter was killed between the create and the write; taken at once.
  const old = join(dir, 'old.lock');
  fs.writeFileSync(old, '');
  fs.utimesSync(old, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  const t0 = Date.now();
  const release = lockFile(old);
  assert.equal(typeof release, 'function');
  assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
  (release as () => void)();
});

test('without hard links, a lock whose write is cut short (a disk that fills) is written whole, or is not left at all', (t) => {
  const dir = fs.mkdtempSync(join(tmpdir(), 'semaim-short-lock-'));
  const { linkSync, writeSync } = fs;
  const mock = fs as { linkSync: unknown; writeSync: unknown };
  mock.linkSync = () => {
    throw errno('EPERM');
  };
  t.after(() => {
    mock.linkSync = linkSync;
    mock.writeSync = writeSync;
    fs.rmSync(dir, { recursive: true, force: true });
  });
  // a write to the lock that takes only its first 5 bytes (as write(2) does on a disk about to fill), then `next`
  const shortThen = (path: string, next: 'write' | 'ENOSPC') => {
    let calls = 0;
    mock.writeSync = (fd: number, data: string | Uint8Array, ...rest: unknown[]) => {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) !== path) return (writeSync as (...a: unknown[]) => number)(fd, data, ...rest);
      const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const offset = typeof data === 'string' ? 0 : ((rest[0] as number | undefined) ?? 0);
      const length = typeof data === 'string' ? bytes.byteLength : ((rest[1] as number | undefined) ?? bytes.byteLength - offset);
      if (calls++ === 0) return writeSync(fd, bytes, offset, Math.min(5, length));
      if (next === 'ENOSPC') throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      return writeSync(fd, bytes, offset, length);
    };
  };

  const path = join(dir, 'run.lock');
  shortThen(path, 'write');
  const release = lockFile(path);
  mock.writeSync = writeSync;
  assert.equal(typeof release, 'function');
  // a torn lock is no holder: any rival took it over at once, and both held it
  assert.equal(JSON.parse(fs.readFileSync(path, 'utf8')).pid, process.pid, 'the lock names its holder whole');
  (release as () => void)();

  shortThen(path, 'ENOSPC');
  assert.throws(() => lockFile(path), /ENOSPC/);
  mock.writeSync = writeSync;
  assert.deepEqual(fs.readdirSync(dir), [], 'no empty or torn lock is left for the next starter to wait on');
});
