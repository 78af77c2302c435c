// Writing files where a user points a command. A whole file goes through a temporary name and a
// rename: a reader never sees half a file, and a symlink someone placed at the name is replaced, not
// followed to a file elsewhere. An append refuses to go through a symlink, and is whole or absent.
// Every error names the file (Node's ENOSPC says only 'write') and what to do on a full or read-only disk.
import {
  closeSync,
  constants,
  linkSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { reText } from './regexp-text';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { quotedPath } from './printable';
import { heldByAnother, noHardLinks } from './file-lock';
import { namesOfDeadProcesses, ownProcessIdentity, recordedProcessAlive } from './process-alive';
import { readSmallFile } from './small-file';
import { sleepSync, waitUntilSync } from './sleep-sync';
import { yieldThenThrowIfAborted } from './errors';
import { makeFolder } from './make-folder';
import { stderrLine } from './console-line';

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
      return { why: `${quotedPath(p)} is a symbolic link to ${quotedPath(readlinkSync(p))}, which does not exist`, missing: null };
    }
    if (!isDir)
      return { why: `${quotedPath(p)} exists and is not a folder${link ? ` (a symbolic link to ${quotedPath(readlinkSync(p))})` : ''}`, missing: null };
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
  const named = (why: string, code = err.code) => Object.assign(new Error(`cannot create the folder ${err.path}: ${why}`, { cause: e }), { code });
  // a read-only or full disk, no permission: the errno of the part makeFolder could not make says it
  if (err.code !== 'ENOENT' && err.code !== 'EEXIST' && err.code !== 'ENOTDIR') return named(err.message);
  const { why, missing } = folderObstacle(err.path);
  if (why) return named(why, err.code === 'ENOENT' ? 'ENOENT' : 'ENOTDIR');
  if (missing === null) return e;
  try {
    mkdirSync(missing); // the first missing part: making it alone gives the real error
  } catch (e2) {
    const m = e2 as NodeJS.ErrnoException;
    return named(m.message, m.code);
  }
  // it could be made now (it was missing then): an error message does not leave a folder behind
  try {
    rmdirSync(missing);
  } catch {
    /* filled meanwhile by another process: theirs */
  }
  return e;
}

/**
 * Removes the temporary files of `path` (`<name>.tmp-<pid>-<id>`, writeFileAtomic's and
 * writeSafetensors's, and the latter's `.data` staging file) that a process killed while writing it
 * left: the next write of the same file clears them. A commit journal in that folder left by a killed
 * writer is rolled forward first: its temporary files are complete, and are put in place, not removed.
 */
export function removeDeadTemps(path: string): void {
  const dir = dirname(path);
  finishInterruptedCommits(dir);
  const name = reText(basename(path));
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
  /** Where it goes. */
  readonly path: string;
  /** Its complete (fsynced) bytes, under a temporary name in the same folder. */
  readonly tmp: string;
  commit(): void;
  abort(): void;
}

/** Flushes `path` (a file or a folder) to the disk, where the platform allows. */
export function fsyncPath(path: string): void {
  try {
    const fd = openSync(path, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* not supported everywhere */
  }
}

/** A file already complete at `tmp` (beside `path`), as a StagedFile. */
export function stagedAt(path: string, tmp: string): StagedFile {
  return {
    path,
    tmp,
    commit: () => {
      try {
        renameSync(tmp, path);
      } catch (e) {
        rmSync(tmp, { force: true });
        throw writeError(path, e);
      }
      fsyncPath(dirname(path)); // the new name on the disk too, not only the bytes: durable across a power cut
    },
    abort: () => rmSync(tmp, { force: true }),
  };
}

/**
 * A new temporary name beside `path`: `<path>.tmp-<pid>-<n>`, the name removeDeadTemps clears once this
 * process is gone and a commit journal of this process may rename.
 */
export function tempPath(path: string): string {
  return `${path}.tmp-${process.pid}-${serial++}`;
}

/** Writes `data` to a temporary file beside `path` (its folder is created), to be renamed into place later. */
export function stageFile(path: string, data: string | Uint8Array): StagedFile {
  const tmp = tempPath(path);
  try {
    makeFolder(dirname(path));
    removeDeadTemps(path);
    writeFileSync(tmp, data, { flag: 'wx' }); // O_EXCL: never through a link planted at the temporary name
    fsyncPath(tmp); // complete on the disk before any commit journal names it
  } catch (e) {
    rmSync(tmp, { force: true });
    throw writeError(path, e);
  }
  return stagedAt(path, tmp);
}

/** Writes `path` through a temporary file in the same folder and a rename (its folder is created). */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  stageFile(path, data).commit();
}

/**
 * Puts `staged` in place unless what stands at its path now is something `mayReplace` refuses; then it
 * removes the staged file and returns false. Where nothing stands, the file is placed with a hard link,
 * which fails rather than replace a file created since the check (a file system without hard links:
 * a rename, as writeFileAtomic).
 */
export function commitUnlessTaken(staged: StagedFile, mayReplace: (path: string) => boolean): boolean {
  for (;;) {
    if (lstatSync(staged.path, { throwIfNoEntry: false })) {
      if (!mayReplace(staged.path)) {
        staged.abort();
        return false;
      }
      staged.commit();
      return true;
    }
    try {
      linkSync(staged.tmp, staged.path);
      staged.abort(); // the name stays on the file
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue; // created since the lstat: look at it
      if (noHardLinks(e)) {
        staged.commit();
        return true;
      }
      staged.abort();
      throw writeError(staged.path, e);
    }
  }
}

/**
 * The commit journal of files renamed into place together, named after the first: `<first>.commit`.
 * While it exists the set is being replaced; whoever finds it with its writer gone completes the renames.
 */
export function commitJournalPath(first: string): string {
  return `${first}.commit`;
}

const JOURNAL_FORMAT = 'semaim.commit/1';
const JOURNAL_NAME = /\.commit$/;

interface CommitJournal {
  format: typeof JOURNAL_FORMAT;
  pid: number;
  host: string;
  /** The writer's processIdentity where the machine gives one (journals written before 2026-12-06 have none). */
  process?: string;
  /** [temporary, final] paths, relative to the journal's folder. */
  renames: [string, string][];
}

/**
 * Whether `tmp` is a temporary name that process `pid` gave `final` (stageFile's and writeSafetensors's
 * `.tmp-<pid>-<id>`, or a row writer's `.partial`): a journal renames nothing else (not another, live
 * process's temporary file).
 */
function isTempOf(tmp: string, final: string, pid: number): boolean {
  return tmp === `${final}.partial` || isTmpName(tmp, final, pid);
}

/** Whether `tmp` is `<final>.tmp-<pid>-<hex id>`. */
function isTmpName(tmp: string, final: string, pid: number): boolean {
  return tmp.startsWith(`${final}.tmp-${pid}-`) && /^[0-9a-f]+$/.test(tmp.slice(`${final}.tmp-${pid}-`.length));
}

/**
 * Whether a journal of process `pid` may make the rename [from, to]: a temporary file of `to` put in place,
 * or a file of the earlier set moved off to its own temporary name `<from>.tmp-<pid>-<id>` (a shard set's
 * extra shards that the new set does not replace, removed after the commit). Nothing else.
 */
function isJournalRename(from: string, to: string, pid: number): boolean {
  return isTempOf(from, to, pid) || isTmpName(to, from, pid);
}

/** Whether the relative path `rel` stays in its folder by its text: not absolute, no NUL, no '..', '.' or empty part. */
function staysInFolder(rel: string): boolean {
  return !isAbsolute(rel) && !rel.includes('\0') && !rel.split(/[\\/]/).some((p) => p === '' || p === '.' || p === '..');
}

/**
 * Whether `rel` names a file in the journal's folder `dir` or a real folder below it: it stays in the
 * folder by its text, and no part before the name is a symbolic link (a journal acts in its own folder only).
 */
function insideFolder(dir: string, rel: string): boolean {
  if (!staysInFolder(rel)) return false;
  const parts = rel.split(/[\\/]/);
  for (let i = 1; i < parts.length; i++) {
    const st = lstatSync(join(dir, ...parts.slice(0, i)), { throwIfNoEntry: false });
    if (!st?.isDirectory()) return false;
  }
  return true;
}

/** Journals are a few hundred bytes (a shard set's, about 50 per shard); anything larger at a `.commit` name is not one of ours. */
const JOURNAL_MAX_BYTES = 64 << 20;

function readJournal(dir: string, name: string): CommitJournal | null {
  let j: CommitJournal;
  try {
    const read = readSmallFile(join(dir, name), JOURNAL_MAX_BYTES, { followLinks: false });
    j = JSON.parse(read && 'text' in read ? read.text : '') as CommitJournal;
  } catch {
    return null; // not a journal of ours (a user's file named *.commit, a link, a FIFO), or gone meanwhile
  }
  const ok =
    j?.format === JOURNAL_FORMAT &&
    Number.isSafeInteger(j.pid) &&
    j.pid > 0 &&
    typeof j.host === 'string' &&
    (j.process === undefined || typeof j.process === 'string') &&
    Array.isArray(j.renames) &&
    j.renames.every(
      (r) => Array.isArray(r) && r.length === 2 && r.every((p) => typeof p === 'string' && insideFolder(dir, p)) && isJournalRename(r[0], r[1], j.pid),
    );
  return ok ? j : null;
}

/**
 * Whether the writer of journal `j` (of this host) is another process, alive: it is renaming the set now.
 * Not a live process that got its id since, which would otherwise make every commit of the set wait.
 */
function writerAlive(j: CommitJournal): boolean {
  return j.pid !== process.pid && recordedProcessAlive(j.pid, j.process);
}

/** How long a commit waits for another process's commit of the same set to finish (its renames take milliseconds). */
const COMMIT_WAIT_MS = 30_000;

/**
 * Puts the staged journal `draft` at its name, never over another one: the journal is also the set's lock.
 * A journal of a live process is that process renaming the same set now (two writers' renames interleaved
 * leave one's file beside the other's): this waits until it is gone, up to `waitMs`. One left by a killed
 * writer (or by this process) is completed first; what is at the name and is not a journal of ours is replaced.
 */
function placeJournal(draft: StagedFile, waitMs: number): void {
  const { path } = draft;
  const [dir, name] = [dirname(path), basename(path)];
  const deadline = performance.now() + waitMs; // (the monotonic clock: a wall clock stepped forward ended the wait at once)
  try {
    for (;;) {
      try {
        linkSync(draft.tmp, path); // fails with EEXIST where a journal is: no writer replaces another's
        return;
      } catch (e) {
        if (noHardLinks(e)) {
          draft.commit(); // a file system without hard links: replaced, as before the journal was a lock
          return;
        }
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const j = readJournal(dir, name);
      if (!j) {
        rmSync(path, { force: true }); // not a journal of ours (or gone meanwhile)
        continue;
      }
      const live = j.host !== hostname() || writerAlive(j);
      if (!live) {
        finishInterruptedCommits(dir);
        if (!lstatSync(path, { throwIfNoEntry: false })) continue;
      }
      if (performance.now() >= deadline) {
        const who = j.host === hostname() ? `process ${j.pid}` : `process ${j.pid} on host ${j.host}`;
        throw new Error(
          `cannot commit ${path.replace(JOURNAL_NAME, '')} and the files written with it: ${who} has held their commit journal ${path} for ${Math.round(waitMs / 1000)} s: it is renaming them into place, or its commit stopped part-way; once that process has exited, a rerun completes the journal first (delete ${path} only if the process is gone and the rerun still waits)`,
        );
      }
      sleepSync(20);
    }
  } finally {
    draft.abort();
  }
}

/**
 * Puts `files` (staged, complete) in place together. One file is one rename; for several, a journal
 * listing the renames is written first (atomically), then the renames are made and the journal removed:
 * a process killed between two renames leaves the journal, and the next writer or reader of that folder
 * (finishInterruptedCommits) makes the remaining renames, so a reader never pairs a new file with an old one.
 * Two processes committing the same set take turns (placeJournal): the later one's set replaces the
 * earlier one's whole, waiting at most `waitMs` (default 30 s) for it.
 */
export function commitFiles(files: StagedFile[], o: { waitMs?: number } = {}): void {
  if (files.length <= 1) {
    for (const f of files) f.commit();
    return;
  }
  const journal = commitJournalPath(files[0].path);
  const dir = dirname(journal);
  const renames = files.map((f): [string, string] => [relative(dir, f.tmp), relative(dir, f.path)]);
  // the next writer completes only renames in the journal's folder or below it (finishInterruptedCommits)
  if (renames.some((r) => !r.every(staysInFolder))) {
    for (const f of files) f.abort();
    throw new Error(
      `commitFiles: ${files.map((f) => f.path).join(', ')} do not all lie in the folder of the first or below it: list a file of their common folder first`,
    );
  }
  // a folder at a final name would fail its rename half-way through the set: its rename is tried (and
  // fails, EISDIR) before any other is made or the journal is written
  const folderAt = files.find((f) => lstatSync(f.path, { throwIfNoEntry: false })?.isDirectory());
  try {
    if (folderAt) renameSync(folderAt.tmp, folderAt.path);
    // the names of temporary files below the journal's folder reach the disk before the journal that lists
    // them (its own folder is flushed with it): a power cut could keep the journal and lose such a name,
    // and with it that file's rename
    for (const d of new Set(files.map((f) => dirname(f.tmp)))) if (d !== dir) fsyncPath(d);
    const text = JSON.stringify({ format: JOURNAL_FORMAT, pid: process.pid, host: hostname(), process: ownProcessIdentity(), renames } satisfies CommitJournal);
    placeJournal(stageFile(journal, text), o.waitMs ?? COMMIT_WAIT_MS);
    fsyncPath(dir);
  } catch (e) {
    for (const f of files) f.abort();
    throw writeError(folderAt?.path ?? journal, e);
  }
  // from here on the journal stands for the new set: a rename that fails after another was made leaves it
  // (and the temporary files) for the next writer or reader to complete, rather than half a set with
  // nothing to say so; one that fails first leaves the earlier set as it was
  files.forEach((f, i) => {
    try {
      renameSync(f.tmp, f.path);
    } catch (e) {
      if (i === 0) {
        for (const g of files) g.abort();
        rmSync(journal, { force: true });
      }
      throw writeError(f.path, e);
    }
  });
  for (const d of new Set(files.map((f) => dirname(f.path)))) fsyncPath(d);
  rmSync(journal, { force: true });
}

/** How long finishInterruptedCommits waits for a live process's commit (its renames take microseconds; its fsyncs, on a slow disk, more). */
const LIVE_COMMIT_WAIT_MS = 2000;

/**
 * Completes the commits of folder `dir` whose writer was killed between its renames (its journal is
 * left): each temporary file still there is renamed into place (it is complete: it was flushed before
 * the journal was written), then the journal goes. Nothing is deleted or rolled back. A journal of a
 * live process (it is renaming now) is waited for, up to LIVE_COMMIT_WAIT_MS, and left to it; one of
 * another host is left alone. Returns the files put in place.
 */
export function finishInterruptedCommits(dir: string, note: (msg: string) => void = (m) => stderrLine(`semaim: ${m}`)): string[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => JOURNAL_NAME.test(n));
  } catch {
    return []; // no folder: nothing to complete
  }
  const done: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    const j = readJournal(dir, name);
    if (!j || j.host !== hostname()) continue;
    if (writerAlive(j)) {
      // a live writer between its renames: the reader that called this waits for the set to be whole,
      // rather than read its first file new and the others old (predict would pair a new linprobe.json with the old probe)
      waitUntilSync(LIVE_COMMIT_WAIT_MS, () => !lstatSync(path, { throwIfNoEntry: false }));
      continue;
    }
    // a live writer of that set (its lock, `<first>.lock`) is writing it now: its `.partial` file is half
    // written, whatever a journal naming a dead process says; that writer completed the journal itself
    // when it took the lock (claimOutputs)
    if (heldByAnother(join(dir, name.replace(JOURNAL_NAME, '.lock')))) continue;
    const placed: string[] = [];
    for (const [tmp, final] of j.renames) {
      const [from, to] = [join(dir, tmp), join(dir, final)];
      // renamed before the kill (gone); what is not a regular file there (a link planted at the name) is not the writer's
      if (!lstatSync(from, { throwIfNoEntry: false })?.isFile()) continue;
      try {
        renameSync(from, to);
      } catch (e) {
        const err = writeError(to, e) as NodeJS.ErrnoException;
        const why = `completing the interrupted write that ${path} lists: make that rename possible, or delete ${path} and write these files again`;
        throw Object.assign(new Error(`${err.message} (${why})`, { cause: e }), { code: err.code });
      }
      placed.push(to);
    }
    for (const d of new Set(j.renames.map(([, f]) => dirname(join(dir, f))))) fsyncPath(d);
    rmSync(path, { force: true });
    if (placed.length)
      note(
        `completed the write of ${j.renames.map(([, f]) => join(dir, f)).join(', ')} that process ${j.pid} was killed in (it had renamed ${j.renames.length - placed.length} of ${j.renames.length} files; ${path} listed the rest)`,
      );
    for (const f of placed) done.push(f); // (not push(...placed): a spread of more than ~125,000 names overflows the call stack)
  }
  return done;
}

/**
 * Writes files that belong together (weights and the config that describes them): every one under its
 * temporary name first, then commitFiles, so a full disk changes none of them rather than some, and a
 * kill between the renames is completed by the next writer or reader.
 */
export function writeFilesAtomic(files: [path: string, data: string | Uint8Array][]): void {
  commitStaged(fileStagers(files));
}

/** A stager (stageFile) per file, for commitStaged. */
export function fileStagers(files: [path: string, data: string | Uint8Array][]): (() => StagedFile)[] {
  return files.map(
    ([path, data]) =>
      () =>
        stageFile(path, data),
  );
}

/**
 * Stages the files of one set in turn (each of `stagers` writes one temporary file; the first one's file
 * names the journal) and commits them (commitFiles): when one cannot be staged, those staged before are
 * removed and nothing is renamed.
 */
export function commitStaged(stagers: (() => StagedFile)[]): void {
  const staged: StagedFile[] = [];
  try {
    for (const stage of stagers) staged.push(stage());
  } catch (e) {
    for (const f of staged) f.abort();
    throw e;
  }
  commitFiles(staged);
}

/**
 * commitStaged that stops when `signal` is aborted (a SIGINT): it is checked before each file is staged
 * and before the commit, and an abort removes the files staged so far, leaving the earlier ones in place.
 */
export async function commitStagedUnlessAborted(stagers: (() => StagedFile)[], signal: AbortSignal | undefined): Promise<void> {
  const staged: StagedFile[] = [];
  try {
    for (const stage of stagers) {
      await yieldThenThrowIfAborted(signal);
      staged.push(stage());
    }
    await yieldThenThrowIfAborted(signal);
  } catch (e) {
    for (const f of staged) f.abort();
    throw e;
  }
  commitFiles(staged);
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
  writeFileAtomic(path, jsonText(value));
}

/** `value` as indented JSON text, non-finite numbers as null (JSON has none), with a final newline. */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n';
}
