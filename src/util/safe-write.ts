// Writing files where a user points a command. A whole file goes through a temporary name and a
// rename: a reader never sees half a file, and a symlink someone placed at the name is replaced, not
// followed to a file elsewhere. An append refuses to go through a symlink, and is whole or absent.
// Every error names the file (Node's ENOSPC says only 'write') and what to do on a full or read-only disk.
import {
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { namesOfDeadProcesses } from './process-alive';

let serial = 0;
const NAMED = Symbol('semaim.writeError');

/**
 * The error of writing `path`, naming it: `cannot write <path>: <Node's message> (<what to do>)`, with
 * the errno `code` kept. Errors without a code pass through; one named already is named again for `path`
 * (the checkpoint writer names its temporary folder's file), `fullDisk` saying what to do on ENOSPC.
 */
export function writeError(path: string, e: unknown, fullDisk = 'free space, or write elsewhere'): Error {
  const err = mkdirError((e as { [NAMED]?: boolean })?.[NAMED] ? (e as Error).cause : e) as NodeJS.ErrnoException;
  if (!(err instanceof Error) || typeof err.code !== 'string') return e as Error;
  const hint =
    err.code === 'ENOSPC' || err.code === 'EDQUOT'
      ? ` (the disk is full: ${fullDisk})`
      : err.code === 'EROFS'
        ? ' (the file system is read-only: write elsewhere)'
        : '';
  return Object.assign(new Error(`cannot write ${path}: ${err.message}${hint}`, { cause: err }), { code: err.code, [NAMED]: true });
}

/**
 * What stands in the way of folder `dir` (its path resolved from the root): a part of it that is a file
 * or a symbolic link to nothing; `missing` is the first part that does not exist (null when all do).
 */
export function folderObstacle(dir: string): { why: string | null; missing: string | null } {
  const parts: string[] = [];
  for (let p = resolve(dir); ; p = dirname(p)) {
    parts.unshift(p);
    if (dirname(p) === p) break;
  }
  for (const p of parts) {
    let link: boolean;
    try {
      link = lstatSync(p).isSymbolicLink();
    } catch {
      return { why: null, missing: p };
    }
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch {
      return { why: `${p} is a symbolic link to ${readlinkSync(p)}, which does not exist`, missing: null };
    }
    if (!isDir) return { why: `${p} exists and is not a folder${link ? ` (a symbolic link to ${readlinkSync(p)})` : ''}`, missing: null };
  }
  return { why: null, missing: null };
}

/**
 * Why a recursive mkdir failed, in words, or `e` as it is. Node names only the folder asked for, with
 * ENOENT for a part of its path that is a dangling symlink or lies on a read-only file system, and EEXIST
 * or ENOTDIR for one that is a file: this finds that part and says what it is (for the read-only or full
 * disk, the errno of making the first missing folder).
 */
export function mkdirError(e: unknown): unknown {
  const err = e as NodeJS.ErrnoException;
  if (!(err instanceof Error) || err.syscall !== 'mkdir' || typeof err.path !== 'string') return e;
  if (err.code !== 'ENOENT' && err.code !== 'EEXIST' && err.code !== 'ENOTDIR') return e;
  const named = (why: string, code = err.code) => Object.assign(new Error(`cannot create the folder ${err.path}: ${why}`, { cause: e }), { code });
  const { why, missing } = folderObstacle(err.path);
  if (why) return named(why, err.code === 'ENOENT' ? 'ENOENT' : 'ENOTDIR');
  if (missing === null) return e;
  try {
    mkdirSync(missing); // the first missing part: making it alone gives the real error
  } catch (e2) {
    const m = e2 as NodeJS.ErrnoException;
    return named(m.message, m.code);
  }
  return e;
}

/**
 * Removes the temporary files of `path` (`<name>.tmp-<pid>-<id>`, writeFileAtomic's and
 * writeSafetensors's, and the latter's `.data` staging file) that a process killed while writing it
 * left: the next write of the same file clears them.
 */
export function removeDeadTemps(path: string): void {
  const dir = dirname(path);
  const name = basename(path).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  let dead: string[];
  try {
    dead = namesOfDeadProcesses(dir, new RegExp(`^${name}\\.tmp-(\\d+)-[0-9a-f]+(?:\\.data)?$`));
  } catch {
    return; // no folder yet: nothing left there
  }
  for (const f of dead) rmSync(join(dir, f), { force: true });
}

/** A file written under a temporary name, not yet in place: `commit` renames it to its path, `abort` removes it. */
export interface StagedFile {
  commit(): void;
  abort(): void;
}

/** Writes `data` to a temporary file beside `path` (its folder is created), to be renamed into place later. */
export function stageFile(path: string, data: string | Uint8Array): StagedFile {
  const tmp = `${path}.tmp-${process.pid}-${serial++}`;
  const fail = (e: unknown) => {
    rmSync(tmp, { force: true });
    return writeError(path, e);
  };
  try {
    mkdirSync(dirname(path), { recursive: true });
    removeDeadTemps(path);
    writeFileSync(tmp, data, { flag: 'wx' }); // O_EXCL: never through a link planted at the temporary name
  } catch (e) {
    throw fail(e);
  }
  return {
    commit: () => {
      try {
        renameSync(tmp, path);
      } catch (e) {
        throw fail(e);
      }
    },
    abort: () => rmSync(tmp, { force: true }),
  };
}

/** Writes `path` through a temporary file in the same folder and a rename (its folder is created). */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  stageFile(path, data).commit();
}

/**
 * Writes files that belong together (weights and the config that describes them): every one under its
 * temporary name first, then the renames, so a full disk changes none of them rather than some.
 */
export function writeFilesAtomic(files: [path: string, data: string | Uint8Array][]): void {
  const staged: StagedFile[] = [];
  try {
    for (const [path, data] of files) staged.push(stageFile(path, data));
  } catch (e) {
    for (const f of staged) f.abort();
    throw e;
  }
  for (const f of staged) f.commit();
}

/** A descriptor appending to `path` (created if missing); refuses when `path` is a symbolic link. */
export function openAppendNoFollow(path: string): number {
  try {
    return openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP')
      throw new Error(`${path} is a symbolic link: semaim does not write through it (move it away)`, { cause: e });
    throw writeError(path, e);
  }
}

/**
 * Appends `text` to `path` (created if missing), refusing when `path` is a symbolic link. All of it or
 * nothing: a write cut short (a disk that fills mid-line returns fewer bytes, then ENOSPC) is cut back
 * off, so no torn line is left for the next append to run into.
 */
export function appendNoFollow(path: string, text: string): void {
  const fd = openAppendNoFollow(path);
  try {
    const bytes = Buffer.from(text);
    const start = fstatSync(fd).size;
    try {
      for (let done = 0; done < bytes.byteLength;) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    } catch (e) {
      try {
        ftruncateSync(fd, start);
      } catch {
        /* the error below says what failed */
      }
      throw writeError(path, e);
    }
  } finally {
    closeSync(fd);
  }
}

/** Writes `value` as indented JSON (non-finite numbers as null, as JSON has none) with writeFileAtomic. */
export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
}
