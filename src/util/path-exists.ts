// existsSync answers false for a path it cannot look at: one behind a folder this user may not
// search (EACCES, a run another user wrote with umask 077) or on a symbolic-link loop (ELOOP). A
// caller that then says "does not exist" or "is missing" sends the user looking for a file that is there.
import { statSync } from 'node:fs';

/**
 * Whether `path` exists: false when it, or a folder on the way, is not there (ENOENT, ENOTDIR); a path
 * that cannot be looked at throws the file system's error (EACCES, ELOOP, …), which names it.
 */
export function pathExists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw e;
  }
}
