// One writer per run folder: run.lock names the process that writes there; a second run is refused
// while that process lives, and takes the lock over once it is gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { LOCK_FILE, RunInUseError, RunLock } from '../../src/run/run-lock';
import { reText } from '../../src/util/regexp-text';

const holder = (pid: number, host = hostname()) => JSON.stringify({ pid, host, since: '2026-12-03T00:00:00.000Z' });

test('a run folder has one writer: a second is refused while the first lives; a dead holder’s lock is taken over', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-lock-'));
  const lockPath = join(dir, LOCK_FILE);
  try {
    const a = RunLock.acquire(dir);
    assert.equal(JSON.parse(readFileSync(lockPath, 'utf8')).pid, process.pid);
    assert.throws(
      () => RunLock.acquire(dir),
      /is in use by another semaim run \(process \d+ on this machine, since .*\): wait for it, or use another --out-dir/,
    );
    // a program tells it from other failures by class or code, and reads the holder
    assert.throws(
      () => RunLock.acquire(dir),
      (e: unknown) => e instanceof RunInUseError && e.code === 'ERR_RUN_IN_USE' && e.holder.pid === process.pid && e.outDir === dir,
    );
    a.release();
    assert.ok(!existsSync(lockPath), 'released: the file is gone');
    a.release(); // twice is harmless

    // another live process holds it
    const child = spawn('sleep', ['30']);
    await new Promise((r) => child.once('spawn', r));
    writeFileSync(lockPath, holder(child.pid!));
    assert.throws(() => RunLock.acquire(dir), new RegExp(`process ${child.pid} on this machine`));
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const b = RunLock.acquire(dir); // its holder died: taken over
    assert.equal(JSON.parse(readFileSync(lockPath, 'utf8')).pid, process.pid);
    b.release();

    // a lock of this process that nothing here holds (left by an earlier run that failed in it), or unreadable
    writeFileSync(lockPath, holder(process.pid));
    RunLock.acquire(dir).release();
    writeFileSync(lockPath, '{"pid": 1');
    RunLock.acquire(dir).release();

    // another machine: its process cannot be checked from here
    writeFileSync(lockPath, holder(12345, 'other-host'));
    assert.throws(() => RunLock.acquire(dir), new RegExp(`process 12345 on host other-host.*if that process is gone, delete ${reText(lockPath)}`));
    assert.ok(existsSync(lockPath), "another host's lock is left in place");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a starter killed while taking over a dead holder’s lock leaves a takeover marker that does not block the folder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-lock-marker-'));
  const lockPath = join(dir, LOCK_FILE);
  const markerOf = (path: string, text: string) => `${path}.takeover-${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;
  const dead = 2 ** 22 + 1; // above Linux's pid_max
  try {
    // the lock of a dead run, the marker of a dead starter for it, and even that marker's own marker
    const stale = holder(dead);
    writeFileSync(lockPath, stale);
    const marker = markerOf(lockPath, stale);
    writeFileSync(marker, holder(dead + 1));
    writeFileSync(markerOf(marker, holder(dead + 1)), holder(dead + 2));
    const lock = RunLock.acquire(dir);
    assert.equal(JSON.parse(readFileSync(lockPath, 'utf8')).pid, process.pid);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f !== LOCK_FILE),
      [],
      'the dead markers are gone',
    );
    lock.release();

    // a marker held by a live starter is respected: that starter is taking the lock over, and is named
    writeFileSync(lockPath, stale);
    writeFileSync(marker, holder(process.ppid));
    assert.throws(() => RunLock.acquire(dir), new RegExp(`is in use by another semaim run \\(process ${process.ppid} on this machine`));
    assert.equal(readFileSync(lockPath, 'utf8'), stale, 'the lock is left to the live starter');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a starter that finds a live rival taking over a dead holder’s lock names the rival, once it holds the lock', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-lock-taker-'));
  const lockPath = join(dir, LOCK_FILE);
  const stale = holder(2 ** 22 + 1); // above Linux's pid_max
  const marker = `${lockPath}.takeover-${createHash('sha256').update(stale).digest('hex').slice(0, 16)}`;
  writeFileSync(lockPath, stale);
  // the rival: takes the marker, says so, and replaces the lock a moment later, as take() does; it lives on until killed
  const rival = spawn(process.execPath, [
    '-e',
    `const fs = require('node:fs');
     const me = JSON.stringify({ pid: process.pid, host: require('node:os').hostname(), since: new Date().toISOString() });
     fs.writeFileSync(${JSON.stringify(marker)}, me, { flag: 'wx' });
     console.log('ready');
     setTimeout(() => {
       fs.writeFileSync(${JSON.stringify(lockPath)} + '.draft', me);
       fs.renameSync(${JSON.stringify(lockPath)} + '.draft', ${JSON.stringify(lockPath)});
       fs.unlinkSync(${JSON.stringify(marker)});
     }, 300);
     setInterval(() => {}, 1000);`,
  ]);
  const exited = once(rival, 'exit');
  try {
    assert.equal((await createInterface({ input: rival.stdout })[Symbol.asyncIterator]().next()).value, 'ready');
    assert.throws(
      () => RunLock.acquire(dir),
      (e: unknown) =>
        e instanceof RunInUseError && e.holder.pid === rival.pid && /is in use by another semaim run \(process \d+ on this machine/.test(e.message),
    );
  } finally {
    rival.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A lock-racer.js process on `dir`, and its next line of output (throwing with its stderr once it has ended). */
function startRacer(dir: string) {
  const child = spawn(process.execPath, [join(__dirname, 'lock-racer.js'), dir]);
  const closed = once(child, 'close');
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const line = await lines.next();
    if (!line.done) return line.value;
    await closed;
    throw new Error(`racer ${child.pid} ended with ${child.exitCode}: ${stderr}`);
  };
  return { child, closed, next };
}

test('processes starting at the same moment on one folder: exactly one takes it (fresh, and over a dead holder’s lock)', async () => {
  for (const start of ['fresh', 'dead holder', 'fresh', 'dead holder', 'fresh', 'dead holder']) {
    const dir = mkdtempSync(join(tmpdir(), 'semaim-lock-race-'));
    const racers = Array.from({ length: 5 }, () => startRacer(dir));
    try {
      if (start === 'dead holder') writeFileSync(join(dir, LOCK_FILE), holder(2 ** 22 + 1)); // above Linux's pid_max
      // every racer started and waits: told at once, they all try while the winner holds it (until stdin ends)
      assert.deepEqual(await Promise.all(racers.map((r) => r.next())), Array(5).fill('ready'));
      for (const r of racers) r.child.stdin.write('go\n');
      const got = await Promise.all(racers.map((r) => r.next()));
      assert.equal(got.filter((g) => g === '1').length, 1, `${start}: ${got.join('')}`);
      assert.equal(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')).pid, racers[got.indexOf('1')].child.pid, 'the lock names the winner');
      for (const r of racers) r.child.stdin.end();
      assert.deepEqual(
        (await Promise.all(racers.map((r) => r.closed))).map(([code]) => code),
        Array(5).fill(0),
      );
      assert.deepEqual(readdirSync(dir), [], 'released at its exit, no drafts left');
    } finally {
      for (const r of racers) r.child.stdin.end();
      await Promise.all(racers.map((r) => r.closed));
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('a full disk while taking the lock names run.lock and leaves no draft; drafts of killed starters are removed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-lock-full-'));
  const fs = require('node:fs') as typeof import('node:fs');
  const writeFileSync0 = fs.writeFileSync;
  try {
    fs.writeFileSync = ((path: string) => {
      writeFileSync0(path, ''); // created, nothing written: the disk is full
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
    }) as typeof fs.writeFileSync;
    try {
      assert.throws(() => RunLock.acquire(dir), /^Error: cannot write .*run\.lock: ENOSPC: no space left on device, write \(the disk is full/);
    } finally {
      fs.writeFileSync = writeFileSync0;
    }
    assert.deepEqual(readdirSync(dir), [], 'no draft left');
    const dead = 2 ** 22 + 1; // above Linux's pid_max
    for (const f of [`${LOCK_FILE}.${dead}.draft`, `${LOCK_FILE}.takeover-0123456789abcdef.${dead}.draft`]) writeFileSync(join(dir, f), holder(dead));
    const lock = RunLock.acquire(dir);
    assert.deepEqual(readdirSync(dir), [LOCK_FILE], 'a kill -9 between writing a draft and removing it left them');
    lock.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a run folder that does not exist yet is made, with its parents, and locked', () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-run-lock-'));
  try {
    const outDir = join(root, 'runs', 'first');
    const lock = RunLock.acquire(outDir);
    assert.equal(JSON.parse(readFileSync(join(outDir, LOCK_FILE), 'utf8')).pid, process.pid);
    lock.release();
    assert.equal(existsSync(join(outDir, LOCK_FILE)), false);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
