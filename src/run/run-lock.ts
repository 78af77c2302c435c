// One writer per run folder. A second semaim process on the same --out-dir (another terminal, a
// scheduler retrying while the first still runs) would move the live run's checkpoints to previous/
// or interleave its metrics; so the writer holds `<outDir>/run.lock` (pid, host, start) while it runs.
// A lock whose process is gone (same host) is taken over; one held on another host is refused with
// the path to delete if that process is known to be gone.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { namesOfDeadProcesses, processAlive } from '../util/process-alive';
import { writeError } from '../util/safe-write';

export const LOCK_FILE = 'run.lock';
/** The lock's (or a takeover marker's) text before it is linked or renamed into place: `<name>.<pid>.draft`. */
const DRAFT = /^run\.lock(?:\.takeover-[0-9a-f]{16})?\.(\d+)\.draft$/;

interface Holder {
  pid: number;
  host: string;
  since: string;
}

/** Locks this process holds (a lock of this pid not among them was left by an earlier, failed run in it). */
const held = new Set<string>();

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

function parseHolder(text: string): Holder | null {
  try {
    const h = JSON.parse(text) as Holder;
    return Number.isSafeInteger(h.pid) && typeof h.host === 'string' ? h : null;
  } catch {
    return null;
  }
}

/**
 * Creates `path` holding `text`, or returns false if it exists. A hard link of a finished file makes the lock
 * appear whole: a file opened with 'wx' is empty until written, and a rival reading it then took it for abandoned.
 */
function createWhole(path: string, text: string): boolean {
  const draft = `${path}.${process.pid}.draft`;
  try {
    writeFileSync(draft, text);
    linkSync(draft, path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
    // A file system without hard links: exclusive create, then write (the narrow window is back).
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e2;
    }
    try {
      writeSync(fd, text);
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
  return h.pid === process.pid ? !held.has(path) : !processAlive(h.pid);
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
    const text = readText(path);
    if (text === null) continue; // released meanwhile
    const h = parseHolder(text);
    if (!holderGone(h, path)) return h!;
    if (depth >= 4) break;
    const marker = `${path}.takeover-${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;
    if (take(marker, mine, depth + 1) !== true) continue; // another starter is taking it over: read it again
    try {
      if (readText(path) !== text) continue; // taken over already (this marker is a later one)
      const draft = `${path}.${process.pid}.draft`;
      try {
        writeFileSync(draft, mine);
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

/** A run folder another live process (or another run in this one) is writing to: wait for it, or use another folder. */
export class RunInUseError extends Error {
  readonly code = 'ERR_RUN_IN_USE';
  constructor(
    readonly outDir: string,
    /** The process that holds the folder's run.lock. */
    readonly holder: { pid: number; host: string; since: string },
    message: string,
  ) {
    super(message);
    this.name = 'RunInUseError';
  }
}

export class RunLock {
  private released = false;
  private readonly onExit = () => this.release();

  private constructor(readonly path: string) {
    held.add(path);
    process.on('exit', this.onExit);
  }

  /** Takes the lock of `outDir` (creating the folder), or throws naming the process that holds it. */
  static acquire(outDir: string): RunLock {
    const path = join(outDir, LOCK_FILE);
    const mine = JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() });
    let h: true | Holder;
    try {
      mkdirSync(outDir, { recursive: true });
      // drafts of processes killed while writing them (a kill -9 between writing and removing one)
      for (const f of namesOfDeadProcesses(outDir, DRAFT)) rmSync(join(outDir, f), { force: true });
      h = take(path, mine, 0);
    } catch (e) {
      throw writeError(path, e);
    }
    if (h === true) return new RunLock(path);
    const who = `process ${h.pid} on ${h.host === hostname() ? 'this machine' : `host ${h.host}`}, since ${h.since}`;
    throw new RunInUseError(
      outDir,
      h,
      `${outDir} is in use by another semaim run (${who}): wait for it, or use another --out-dir; if that process is gone, delete ${path}`,
    );
  }

  /** Gives the lock up (once); the file goes only while it is still this process's. */
  release(): void {
    if (this.released) return;
    this.released = true;
    held.delete(this.path);
    process.off('exit', this.onExit);
    const text = readText(this.path);
    const h = text === null ? null : parseHolder(text);
    if (h && h.pid === process.pid && h.host === hostname()) unlinkSync(this.path);
  }
}
