// Writing files where a user points a command. A whole file goes through a temporary name and a
// rename: a reader never sees half a file, and a symlink someone placed at the name is replaced, not
// followed to a file elsewhere. An append refuses to go through a symlink.
import { closeSync, constants, mkdirSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

let serial = 0;

/** Writes `path` through a temporary file in the same folder and a rename (its folder is created). */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${serial++}`;
  try {
    writeFileSync(tmp, data, { flag: 'wx' }); // O_EXCL: never through a link planted at the temporary name
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** A descriptor appending to `path` (created if missing); refuses when `path` is a symbolic link. */
export function openAppendNoFollow(path: string): number {
  try {
    return openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP')
      throw new Error(`${path} is a symbolic link: semaim does not write through it (move it away)`, { cause: e });
    throw e;
  }
}

/** Appends `text` to `path` (created if missing), refusing when `path` is a symbolic link. */
export function appendNoFollow(path: string, text: string): void {
  const fd = openAppendNoFollow(path);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** Writes `value` as indented JSON (non-finite numbers as null, as JSON has none) with writeFileAtomic. */
export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
}
