// A lock file: `path` holds its holder (pid, host, start) while a process works on what it guards. A
// lock whose process is gone (same host) is taken over; one held on another host is left to the user.
// (The run folder's run.lock, src/run/run-lock.ts, and an output's lock, src/io/outputs.ts.)
import { createHash } from 'node:crypto';
import { reText } from './regexp-text';
import { hostname } from 'node:os';
import { closeSync, linkSync, lstatSync, openSync, renameSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { namesOfDeadProcesses, ownProcessIdentity, recordedProcessAlive } from './process-alive';
import { readSmallFile } from './small-file';
import { canonicalPath } from './canonical-path';
import { waitUntilSync } from './sleep-sync';
import { onProcessEvent } from './process-events';

export interface Holder {
  pid: number;
  host: string;
  since: string;
  /** The holder's processIdentity where the machine gives one (locks written before 2026-12-06 have none). */
  process?: string;
}

/** Who holds a lock, in words: `process 123 on this machine, since <time>` (or `on host <name>`). */
export function describeHolder(h: Holder): string {
  return `process ${h.pid} on ${h.host === hostname() ? 'this machine' : `host ${h.host}`}, since ${h.since}`;
}

/**
 * Locks this process holds, by canonicalPath: one name however the lock's path is spelled (a relative path, or one
 * through a symbolic link to its folder, was another lock, and a second job of this process took the first one's over).
 * A lock of this pid not among them was left by an earlier, failed run in it.
 */
const held = new Set<string>();

/** A lock holds a line of JSON; a file much larger is not one of ours. */
const LOCK_MAX_BYTES = 64 << 10;

/**
 * The text of lock `path`, or null when there is none. Something else at its name (a folder, a FIFO that
 * would block the read, a device that never ends, a file too large to be a lock, a symbolic link to nothing)
 * is refused, naming it.
 */
function readText(path: string): string | null {
  const read = readSmallFile(path, LOCK_MAX_BYTES);
  let other = read && 'other' in read ? read.other : null;
  // a link to nothing reads as no lock, yet no lock can be created at its name: every try failed with EEXIST
  if (!read && lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink()) other = 'a symbolic link to nothing';
  if (other) throw Object.assign(new Error(`${path} is ${other}, not a lock file of semaim: move it away`), { code: 'EEXIST' });
  return read && 'text' in read ? read.text : null;
}

/** How long an empty lock may be in the middle of its writing (see readSettled); one empty longer is abandoned. */
const EMPTY_LOCK_GRACE_MS = 2000;

/**
 * readText, waiting while the lock is empty and new. Without hard links a starter creates the lock empty
 * and writes it right after (createWhole); a rival that read it in between took it for abandoned, and both
 * held it. An empty lock older than the grace, or still empty after it, was left by a starter killed there.
 */
function readSettled(path: string): string | null {
  let text: string | null = null;
  waitUntilSync(EMPTY_LOCK_GRACE_MS, () => {
    text = readText(path);
    return text !== '' || Date.now() - (lstatSync(path, { throwIfNoEntry: false })?.mtimeMs ?? 0) > EMPTY_LOCK_GRACE_MS;
  });
  return text;
}

function parseHolder(text: string): Holder | null {
  try {
    const h = JSON.parse(text) as Holder;
    return Number.isSafeInteger(h.pid) && typeof h.host === 'string' ? h : null;
  } catch {
    return null;
  }
}

/** Writes a new file `draft` (one planted at the name, a link to a file elsewhere included, is removed first, never written through). */
function writeDraft(draft: string, text: string): void {
  rmSync(draft, { force: true });
  writeFileSync(draft, text, { flag: 'wx' });
}

/** Whether a link() failed because the file system has no hard links (FAT, some FUSE and network mounts). */
export function noHardLinks(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP';
}

/**
 * Creates `path` holding `text`, or returns false if it exists. A hard link of a finished file makes the lock
 * appear whole: a file opened with 'wx' is empty until written, and a rival reading it then took it for abandoned.
 */
function createWhole(path: string, text: string): boolean {
  const draft = `${path}.${process.pid}.draft`;
  try {
    writeDraft(draft, text);
    linkSync(draft, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    if (!noHardLinks(e)) throw e;
    // A file system without hard links: exclusive create, then write (the narrow window is back).
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e2;
    }
    try {
      // whole: a write cut short (a disk that fills) left torn JSON, no holder, which any rival took over
      const bytes = Buffer.from(text);
      for (let done = 0; done < bytes.byteLength;) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    } catch (e2) {
      rmSync(path, { force: true }); // this starter's own empty or torn lock: not left for the next one to wait on
      throw e2;
    } finally {
      closeSync(fd);
    }
    return true;
  } finally {
    rmSync(draft, { force: true });
  }
}

/** True when `h` (a lock's holder, null if unreadable) is a process that is gone. */
function holderGone(h: Holder | null, path: string): boolean {
  if (!h) return true; // unreadable: nobody holds it
  if (h.host !== hostname()) return false; // another machine's process cannot be checked from here
  if (h.pid === process.pid) return !held.has(canonicalPath(path));
  return !recordedProcessAlive(h.pid, h.process);
}

/** How long a starter waits for a live rival, which holds the takeover marker, to replace a dead holder's lock. */
const TAKEOVER_WAIT_MS = 2000;

/** Waits until lock `path` no longer holds `text` or `marker` is gone (true), or TAKEOVER_WAIT_MS has passed (false). */
function awaitChange(path: string, text: string, marker: string): boolean {
  return waitUntilSync(TAKEOVER_WAIT_MS, () => readText(path) !== text || !lstatSync(marker, { throwIfNoEntry: false }));
}

/**
 * Makes `path` hold `mine`: true, or the live holder. A lock left by a dead process is replaced only by
 * the starter that creates the takeover marker of exactly that content, by a rename over it, so the lock
 * file never goes missing (moving it aside let a third starter create a fresh one meanwhile: two holders).
 * The marker is taken the same way, so a starter killed while holding one does not block the folder.
 */
function take(path: string, mine: string, depth: number): true | Holder {
  for (let attempt = 0; attempt < 3; attempt++) {
    if (createWhole(path, mine)) return true;
    const text = readSettled(path);
    if (text === null) continue; // released meanwhile
    const h = parseHolder(text);
    if (!holderGone(h, path)) return h!;
    if (depth >= 4) break;
    const marker = `${path}.takeover-${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;
    const taker = take(marker, mine, depth + 1);
    if (taker !== true) {
      // A live starter is taking it over: read it again once it has (its refusal names the new holder), or name that starter.
      if (!awaitChange(path, text, marker) && !holderGone(taker, marker)) return taker;
      continue;
    }
    try {
      if (readText(path) !== text) continue; // taken over already (this marker is a later one)
      const draft = `${path}.${process.pid}.draft`;
      try {
        writeDraft(draft, mine);
        renameSync(draft, path);
      } catch (e) {
        rmSync(draft, { force: true });
        throw e;
      }
      return true;
    } finally {
      unlinkSync(marker);
    }
  }
  throw new Error(`cannot take ${path}: other processes took it or its takeover markers at the same moment`);
}

/** Drafts of `<name>` (and of its takeover markers) whose writer was killed before removing them. */
function removeDeadDrafts(path: string): void {
  const name = reText(basename(path));
  for (const f of namesOfDeadProcesses(dirname(path), new RegExp(`^${name}(?:\\.takeover-[0-9a-f]{16})?\\.(\\d+)\\.draft$`)))
    rmSync(join(dirname(path), f), { force: true });
}

/**
 * Whether another live process holds lock `path` now (what is at the name and is not a lock counts as
 * held: nobody can take it). A lock this process holds, a missing one or one whose holder is gone does not.
 */
export function heldByAnother(path: string): boolean {
  let text: string | null;
  try {
    text = readSettled(path);
  } catch {
    return true;
  }
  if (text === null) return false;
  const h = parseHolder(text);
  return h !== null && !(h.pid === process.pid && h.host === hostname()) && !holderGone(h, path);
}

/**
 * Takes the lock file `path` (its folder must exist) for this process: returns the function that gives
 * it up (also called when the process exits), or the live process that holds it.
 */
export function lockFile(path: string): (() => void) | Holder {
  removeDeadDrafts(path);
  const me: Holder = { pid: process.pid, host: hostname(), since: new Date().toISOString(), process: ownProcessIdentity() };
  const h = take(path, JSON.stringify(me), 0);
  if (h !== true) return h;
  const key = canonicalPath(path);
  held.add(key);
  let stopListening = () => {};
  let released = false;
  const release = () => {
    // once only: a second call after this process took the lock again (another job) would remove that job's lock
    if (released) return;
    released = true;
    held.delete(key);
    stopListening();
    const text = readText(path);
    const mine = text === null ? null : parseHolder(text);
    if (mine && mine.pid === process.pid && mine.host === hostname()) unlinkSync(path);
  };
  stopListening = onProcessEvent('exit', release);
  return release;
}
