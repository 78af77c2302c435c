// mkdir -p, one part at a time. Node's own recursive mkdirSync loops forever (100 % CPU, deaf to
// signals) where mkdir answers ENOENT under a parent that exists, as in /proc: `--out-dir /proc/x` hung.
import { lstatSync, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Makes `dir` and its missing parents; returns the first folder it made (undefined when `dir` was there), as mkdirSync does. */
export function makeFolder(dir: string): string | undefined {
  const missing: string[] = [];
  for (let p = resolve(dir); !occupied(p); p = dirname(p)) {
    missing.unshift(p);
    if (dirname(p) === p) break;
  }
  let first: string | undefined;
  for (const p of missing) {
    try {
      mkdirSync(p);
      first ??= p;
    } catch (e) {
      // made meanwhile by another process: fine if it is a folder
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && isFolder(p)) continue;
      // the folder asked for, as Node's recursive mkdir names it (mkdirError says which part failed, and why)
      throw Object.assign(e as NodeJS.ErrnoException, { path: dir });
    }
  }
  if (!missing.length && !isFolder(dir)) mkdirSync(dir); // a file or a dangling link there: mkdir's own error names it
  return first;
}

/** Whether something is at `p`, a dangling symlink included (writing there would create its target). */
export function occupied(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function isFolder(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
