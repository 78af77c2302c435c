// One writer per run folder. A second semaim process on the same --out-dir (another terminal, a
// scheduler retrying while the first still runs) would move the live run's checkpoints to previous/
// or interleave its metrics; so the writer holds `<outDir>/run.lock` (pid, host, start) while it runs.
// A lock whose process is gone (same host) is taken over; one held on another host is refused with
// the path to delete if that process is known to be gone.
import { hostname } from 'node:os';
import { join } from 'node:path';
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { processAlive } from '../util/process-alive';

export const LOCK_FILE = 'run.lock';

interface Holder {
  pid: number;
  host: string;
  since: string;
}

/** Locks this process holds (a lock of this pid not among them was left by an earlier, failed run in it). */
const held = new Set<string>();

function readHolder(path: string): Holder | null {
  try {
    const h = JSON.parse(readFileSync(path, 'utf8')) as Holder;
    return Number.isSafeInteger(h.pid) && typeof h.host === 'string' ? h : null;
  } catch {
    return null; // unreadable (a crash while writing it): nobody holds it
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
    mkdirSync(outDir, { recursive: true });
    const path = join(outDir, LOCK_FILE);
    for (let attempt = 0; attempt < 2; attempt++) {
      let fd: number | null = null;
      try {
        fd = openSync(path, 'wx');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      if (fd === null) {
        const h = readHolder(path);
        const ours = h?.pid === process.pid && h.host === hostname();
        const gone = !h || (h.host === hostname() && (ours ? !held.has(path) : !processAlive(h.pid)));
        if (!gone) {
          const who = `process ${h!.pid} on ${h!.host === hostname() ? 'this machine' : `host ${h!.host}`}, since ${h!.since}`;
          throw new Error(`${outDir} is in use by another semaim run (${who}): wait for it, or use another --out-dir; if that process is gone, delete ${path}`);
        }
        unlinkSync(path); // left by a process that died; taken over
        continue;
      }
      try {
        writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
      } finally {
        closeSync(fd);
      }
      return new RunLock(path);
    }
    throw new Error(`cannot take ${path}: another process took it at the same moment`);
  }

  /** Gives the lock up (once); the file goes only while it is still this process's. */
  release(): void {
    if (this.released) return;
    this.released = true;
    held.delete(this.path);
    process.off('exit', this.onExit);
    const h = readHolder(this.path);
    if (h && h.pid === process.pid && h.host === hostname()) unlinkSync(this.path);
  }
}
