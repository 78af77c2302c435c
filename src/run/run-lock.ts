// One writer per run folder. A second semaim process on the same --out-dir (another terminal, a
// scheduler retrying while the first still runs) would move the live run's checkpoints to previous/
// or interleave its metrics; so the writer holds `<outDir>/run.lock` (pid, host, start) while it runs.
// A lock whose process is gone (same host) is taken over; one held on another host is refused with
// the path to delete if that process is known to be gone.
import { join } from 'node:path';
import { quotedPath } from '../util/printable';
import { writeError } from '../util/safe-write';
import { Holder, describeHolder, lockFile } from '../util/file-lock';
import { makeFolder } from '../util/make-folder';

export const LOCK_FILE = 'run.lock';

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
  private constructor(
    readonly path: string,
    /** Gives the lock up (once); the file goes only while it is still this process's (lockFile's). */
    readonly release: () => void,
  ) {}

  /** Takes the lock of `outDir` (creating the folder), or throws naming the process that holds it. */
  static acquire(outDir: string): RunLock {
    const path = join(outDir, LOCK_FILE);
    let taken: (() => void) | Holder;
    try {
      makeFolder(outDir);
      taken = lockFile(path); // (drafts of processes killed while writing them are removed first)
    } catch (e) {
      throw writeError(path, e);
    }
    if (typeof taken === 'function') return new RunLock(path, taken);
    throw new RunInUseError(
      outDir,
      taken,
      `${quotedPath(outDir)} is in use by another semaim run (${describeHolder(taken)}): wait for it, or use another --out-dir; if that process is gone, delete ${quotedPath(path)}`,
    );
  }
}
