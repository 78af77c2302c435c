// Lock files other people or processes left at a lock's name (src/util/file-lock.ts): what is not a lock
// is refused naming it (never read through a FIFO or a device, which would block or never end), and a
// holder that names no process (pid 0 or below: kill() takes those for process groups) is taken over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { hostname, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { heldByAnother, lockFile } from '../../src/util/file-lock';
import { processAlive, processIdentity } from '../../src/util/process-alive';

const FILE_LOCK = join(__dirname, '..', '..', 'src', 'util', 'file-lock.js');

function scratch(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-file-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a folder, a FIFO, a link to a device or to nothing, or a huge file at the lock name is refused naming it, without hanging', (t) => {
  const dir = scratch(t);
  mkdirSync(join(dir, 'folder.lock'));
  assert.equal(spawnSync('mkfifo', [join(dir, 'fifo.lock')]).status, 0);
  symlinkSync('/dev/zero', join(dir, 'zero.lock'));
  writeFileSync(join(dir, 'big.lock'), Buffer.alloc(1 << 20, 0x20));
  symlinkSync(join(dir, 'nowhere'), join(dir, 'dangling.lock'));
  for (const [name, what] of [
    ['dangling.lock', 'a symbolic link to nothing'],
    ['folder.lock', 'a folder'],
    ['fifo.lock', 'a FIFO'],
    ['zero.lock', 'a device or socket'],
    ['big.lock', 'a file of 1048576 bytes'],
  ]) {
    // in a child: a read that blocks (the FIFO) or never ends (/dev/zero) must fail the test, not hang it
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `try { require(${JSON.stringify(FILE_LOCK)}).lockFile(${JSON.stringify(join(dir, name))}); console.log('taken') } catch (e) { console.log(e.message) }`,
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(r.signal, null, `${name}: hung`);
    assert.equal(r.stdout.trim(), `${join(dir, name)} is ${what}, not a lock file of semaim: move it away`, `${name}: ${r.stderr}`);
  }
  assert.equal(readFileSync(join(dir, 'big.lock')).length, 1 << 20, 'the big file is left as it was');
});

test('a lock whose holder is pid 0 or a negative pid (no process) is taken over; processAlive says no process', (t) => {
  const dir = scratch(t);
  for (const pid of [0, -1, -process.pid]) {
    assert.equal(processAlive(pid), false, String(pid));
    const path = join(dir, `p${pid}.lock`);
    writeFileSync(path, JSON.stringify({ pid, host: hostname(), since: '2026-12-03T00:00:00.000Z' }));
    const taken = lockFile(path);
    assert.equal(typeof taken, 'function', `pid ${pid}: ${JSON.stringify(taken)}`);
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).pid, process.pid);
    (taken as () => void)();
  }
  assert.equal(processAlive(process.pid), true);
});

test('a link planted at this process’s draft name (fresh lock and takeover) is replaced, not written through', (t) => {
  const dir = scratch(t);
  const victim = join(dir, 'victim.txt');
  for (const stale of [false, true]) {
    writeFileSync(victim, 'precious');
    const path = join(dir, `x${stale}.lock`);
    if (stale) writeFileSync(path, JSON.stringify({ pid: 2 ** 22 + 1, host: hostname(), since: '2026-12-03T00:00:00.000Z' }));
    symlinkSync(victim, `${path}.${process.pid}.draft`);
    const release = lockFile(path) as () => void;
    assert.equal(typeof release, 'function');
    assert.equal(readFileSync(victim, 'utf8'), 'precious', stale ? 'takeover' : 'fresh');
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).pid, process.pid);
    release();
  }
});

test("heldByAnother: a live process's lock, and what cannot be read as one (a folder at the name), count as held; no lock, a dead holder's and this process's own do not", (t) => {
  const dir = scratch(t);
  const at = (name: string, holder?: { pid: number; host?: string }) => {
    const path = join(dir, name);
    if (holder) writeFileSync(path, JSON.stringify({ host: hostname(), since: '2026-12-03T00:00:00.000Z', ...holder }));
    return path;
  };
  assert.equal(heldByAnother(at('none.lock')), false);
  assert.equal(heldByAnother(at('dead.lock', { pid: 999_999_999 })), false);
  assert.equal(heldByAnother(at('live.lock', { pid: 1 })), true, 'pid 1 is alive');
  assert.equal(heldByAnother(at('remote.lock', { pid: 999_999_999, host: `not-${hostname()}` })), true, "another host's process cannot be checked");
  mkdirSync(join(dir, 'folder.lock'));
  assert.equal(heldByAnother(join(dir, 'folder.lock')), true, 'unreadable: a writer that cannot be ruled out');
  const release = lockFile(join(dir, 'mine.lock')) as () => void;
  assert.equal(heldByAnother(join(dir, 'mine.lock')), false);
  release();
});

test('releasing a lock another process has taken over since leaves that process its lock; releasing twice does nothing', (t) => {
  const dir = scratch(t);
  const path = join(dir, 'run.lock');
  const release = lockFile(path) as () => void;
  const theirs = JSON.stringify({ pid: 1, host: hostname(), since: '2026-12-03T00:00:00.000Z' });
  writeFileSync(path, theirs); // taken over (this process was thought gone)
  release();
  assert.equal(readFileSync(path, 'utf8'), theirs);
  const again = lockFile(join(dir, 'other.lock')) as () => void;
  again();
  writeFileSync(join(dir, 'other.lock'), theirs);
  again();
  assert.equal(readFileSync(join(dir, 'other.lock'), 'utf8'), theirs);
});

test('a lock file that names no holder (JSON of another shape) is taken over, not taken for a holder on another host', (t) => {
  const dir = scratch(t);
  for (const [i, text] of ['{}', '[]', '{"pid":"1","host":"x"}', 'null', '{"pid":1}', '{"pid":1,"host":7}'].entries()) {
    const path = join(dir, `odd${i}.lock`);
    writeFileSync(path, text);
    const taken = lockFile(path);
    assert.equal(typeof taken, 'function', `${text}: ${JSON.stringify(taken)}`);
    (taken as () => void)();
  }
});

test('an empty lock file just created is a holder still writing it: its holder is waited for, not taken over', async (t) => {
  const dir = scratch(t);
  const path = join(dir, 'run.lock');
  writeFileSync(path, '');
  const holder = JSON.stringify({ pid: 1, host: hostname(), since: '2026-12-03T00:00:00.000Z' });
  // another process writes its holder 0.3 s later (lockFile blocks this one's event loop while it waits);
  // the path passed as an argument, not spliced into the script: a $TMPDIR with a quote in it broke the script
  const writer = spawn('sh', ['-c', 'sleep 0.3; printf "%s" "$1" > "$2"', 'sh', holder, path]);
  const done = new Promise((resolve) => writer.on('exit', resolve));
  const taken = lockFile(path);
  await done;
  if (typeof taken === 'function') t.after(taken); // (a lock left held keeps its exit listener, failing the listener count of a later test)
  assert.notEqual(typeof taken, 'function', 'taken over while its holder was writing it');
  assert.equal((taken as { pid: number }).pid, 1);
  assert.equal(readFileSync(path, 'utf8'), holder);
});

test('processAlive: a process of another user (kill answers EPERM) is alive, so its lock is not taken over; ESRCH is gone', () => {
  const kill = process.kill;
  try {
    process.kill = (() => {
      throw Object.assign(new Error('kill EPERM'), { code: 'EPERM' });
    }) as typeof process.kill;
    assert.equal(processAlive(4242), true);
    process.kill = (() => {
      throw Object.assign(new Error('kill ESRCH'), { code: 'ESRCH' });
    }) as typeof process.kill;
    assert.equal(processAlive(4242), false);
  } finally {
    process.kill = kill;
  }
});

test('locks held at once share one exit listener, removed with the last release (no MaxListenersExceededWarning past 10)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-locks-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const before = process.listenerCount('exit');
  const releases = Array.from({ length: 12 }, (_, i) => lockFile(join(dir, `run${i}.lock`)));
  assert.equal(process.listenerCount('exit'), before + 1);
  for (const release of releases) {
    assert.equal(typeof release, 'function');
    (release as () => void)();
  }
  assert.equal(process.listenerCount('exit'), before);
});

test("a lock whose holder's id a later process has (a restarted container's processes reuse small ids) is taken over; the holder itself, and a lock that does not record which process it was, are not", (t) => {
  const dir = scratch(t);
  const other = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => other.kill('SIGKILL'));
  const pid = other.pid!;
  const itself = processIdentity(pid);
  if (itself === null) return t.skip('this machine has no /proc to tell processes apart');
  assert.notEqual(itself, processIdentity(process.pid));
  const at = (name: string, extra: { process?: string }) => {
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify({ pid, host: hostname(), since: '2026-12-03T00:00:00.000Z', ...extra }));
    return path;
  };
  assert.equal(heldByAnother(at('holder.lock', { process: itself })), true);
  assert.equal(heldByAnother(at('older-format.lock', {})), true, 'a live id is held, as before');
  // before, a live process with the holder's id held the lock: the restarted run was refused until someone deleted it
  const reused = at('reused.lock', { process: `${itself.split(':')[0]}:1` });
  assert.equal(heldByAnother(reused), false);
  const release = lockFile(reused);
  assert.equal(typeof release, 'function', 'taken over');
  assert.equal(JSON.parse(readFileSync(reused, 'utf8')).process, processIdentity(process.pid), 'the new holder records which process it is');
  (release as () => void)();
});

test('a lock this process holds is refused to it under another spelling of its path (relative, through a symbolic link): two jobs of one process on one folder', (t) => {
  const dir = scratch(t);
  mkdirSync(join(dir, 'run'));
  symlinkSync(join(dir, 'run'), join(dir, 'alias'));
  const path = join(dir, 'run', 'run.lock');
  const release = lockFile(path);
  assert.equal(typeof release, 'function');
  try {
    for (const other of [relative(process.cwd(), path), join(dir, 'alias', 'run.lock'), join(dir, 'run', '.', 'run.lock')]) {
      const again = lockFile(other);
      if (typeof again === 'function') again();
      assert.notEqual(typeof again, 'function', `${other}: the same lock was taken a second time`);
      assert.equal((again as { pid: number }).pid, process.pid);
    }
  } finally {
    (release as () => void)();
  }
});

test('a lock naming this process that it does not hold (left by an earlier job of it that failed) is taken over', (t) => {
  const dir = scratch(t);
  const path = join(dir, 'own.lock');
  writeFileSync(path, JSON.stringify({ pid: process.pid, host: hostname(), since: '2026-12-03T00:00:00.000Z' }));
  assert.equal(heldByAnother(path), false);
  const taken = lockFile(path);
  assert.equal(typeof taken, 'function', JSON.stringify(taken));
  // held now: a second job of this process is refused it
  assert.equal(typeof lockFile(path), 'object');
  (taken as () => void)();
});

test('a release called again after the lock was taken anew by this process leaves the new lock in place', (t) => {
  const dir = scratch(t);
  const path = join(dir, 'run.lock');
  const first = lockFile(path) as () => void;
  first();
  const second = lockFile(path) as () => void;
  first(); // a stale release (say, the first job's cleanup running twice)
  assert.equal(JSON.parse(readFileSync(path, 'utf8')).pid, process.pid, 'the second lock is still there');
  assert.equal(typeof lockFile(path), 'object', 'and still held');
  second();
  assert.throws(() => readFileSync(path), { code: 'ENOENT' });
});

test('a takeover marker left by a starter killed while holding it is taken over in turn: a dead holder’s lock is still taken', (t) => {
  const dir = scratch(t);
  const path = join(dir, 'run.lock');
  const dead = (since: string) => JSON.stringify({ pid: 999_999_999, host: hostname(), since });
  const text = dead('2026-12-03T00:00:00.000Z');
  writeFileSync(path, text);
  writeFileSync(`${path}.takeover-${createHash('sha256').update(text).digest('hex').slice(0, 16)}`, dead('2026-12-03T00:00:01.000Z'));
  const taken = lockFile(path);
  assert.equal(typeof taken, 'function', JSON.stringify(taken));
  assert.equal(JSON.parse(readFileSync(path, 'utf8')).pid, process.pid);
  assert.deepEqual(readdirSync(dir), ['run.lock'], 'no marker left');
  (taken as () => void)();
});
