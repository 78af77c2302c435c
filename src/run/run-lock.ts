// One writer per run folder. A second semaim process on the same --out-dir (another terminal, a
// scheduler retrying while the first still runs) would move the live run's checkpoints to previous/
// or interleave its metrics; so the writer holds `<outDir>/run.lock` (pid, host, start) while it runs.
// A lock whose process is gone (same host) is taken over; one held on another host is refused with
// the path to delete if that process is known to be gone.
import { hostname } from 'node:os';
import { join } from 'node:path';
import { mkdirSync, rmSync, unlinkSync } from 'node:fs';
import { namesOfDeadProcesses } from '../util/process-alive';
import { writeError } from '../util/safe-write';
import { Holder, held, parseHolder, readText, take } from '../util/file-lock';

export const LOCK_FILE = 'run.lock';
/** The lock's (or a takeover marker's) text before it is linked or renamed into place: `<name>.<pid>.draft`. */
const DRAFT = /^run\.lock(?:\.takeover-[0-9a-f]{16})?\.(\d+)\.draft$/;

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
