// A file written piece by piece as a job produces it (the rows of a table, the lines of a list) under a
// temporary name beside its path, then staged whole for a commit (commitFiles) or removed: memory holds
// one piece however long the file grows, and no reader sees it half written. The temporary name is
// stageFile's, `<path>.tmp-<pid>-<n>`: one a killed process left is removed by the next writer of the
// same path when it opens its own (removeDeadTemps), and a commit journal of this process may rename it.
// Ctrl-C / SIGTERM in a process that does not handle them removes the open streams' files, as
// SafetensorsRowWriter does its partial file; a process that handles them aborts its streams itself.
import { closeSync, constants, fsyncSync, openSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { makeFolder } from './make-folder';
import { removeDeadTemps, stagedAt, tempPath, writeError, type StagedFile } from './safe-write';
import { removeOnStopSignal } from './remove-on-stop-signal';

/** Bytes read and written at a time when one stream's bytes are copied into another. */
const COPY_BYTES = 1 << 20;

/**
 * The streams whose temporary file is open, each with its removeOnStopSignal registration: the one
 * handler shared with the other writers (a handler of its own and theirs each took the other for the
 * process's own, and a stop signal was ignored).
 */
const open = new Map<StagedStream, () => void>();

function opened(s: StagedStream): void {
  open.set(
    s,
    removeOnStopSignal(() => s.abort()),
  );
}

function closed(s: StagedStream): void {
  open.get(s)?.();
  open.delete(s);
}

export interface StagedStreamOptions {
  /** The text the file starts with (written when it is created). */
  initial?: string;
  /** The file errors name (default `path`): the output a scratch file is for. */
  names?: string;
}

export class StagedStream {
  /** Where the file goes when committed. */
  readonly path: string;
  /** Its temporary name, in the same folder. */
  readonly tmp: string;
  private readonly names: string;
  private fd: number | null = null;
  private staged = false;
  private length = 0;

  /** Creates the temporary file (and the folder) with `initial`, after removing those a killed process left for `path`. */
  constructor(path: string, o: StagedStreamOptions = {}) {
    this.path = path;
    this.names = o.names ?? path;
    this.tmp = tempPath(path);
    const initial = o.initial ?? '';
    try {
      makeFolder(dirname(path));
      removeDeadTemps(path);
      writeFileSync(this.tmp, initial, { flag: 'wx' }); // O_EXCL: never through a link planted at the name
      this.fd = openSync(this.tmp, constants.O_RDWR | constants.O_APPEND | constants.O_NOFOLLOW);
    } catch (e) {
      rmSync(this.tmp, { force: true });
      throw writeError(this.names, e);
    }
    this.length = Buffer.byteLength(initial);
    opened(this);
  }

  /** Bytes written so far. */
  get bytes(): number {
    return this.length;
  }

  private live(): number {
    if (this.fd === null) throw new Error(`StagedStream: ${this.tmp} is already staged or aborted`);
    return this.fd;
  }

  /** Appends all of `data` (a disk that fills is an error naming the file, as writeError words it). */
  write(data: string | Uint8Array): void {
    const fd = this.live();
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    try {
      for (let done = 0; done < bytes.byteLength;) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    } catch (e) {
      throw writeError(this.names, e);
    }
    this.length += bytes.byteLength;
  }

  /** Appends the bytes written to `from` so far, a chunk at a time (never all of them in memory). */
  append(from: StagedStream): void {
    const src = from.live();
    const chunk = Buffer.allocUnsafe(Math.min(COPY_BYTES, Math.max(from.length, 1)));
    for (let at = 0; at < from.length;) {
      let k: number;
      try {
        k = readSync(src, chunk, 0, Math.min(chunk.byteLength, from.length - at), at);
      } catch (e) {
        throw new Error(`cannot read ${from.tmp} back (the temporary file of ${from.names}): ${(e as Error).message}`, { cause: e });
      }
      if (k <= 0) throw new Error(`cannot read ${from.tmp} back (the temporary file of ${from.names}): it ended at ${at} of ${from.length} bytes`);
      this.write(chunk.subarray(0, k));
      at += k;
    }
  }

  /**
   * The file complete and flushed, to commit (commitFiles, beside the files written with it) or abort; the
   * stream's own abort leaves it from here on. A failure removes it.
   */
  stage(): StagedFile {
    const fd = this.live();
    try {
      fsyncSync(fd);
    } catch (e) {
      this.abort();
      throw writeError(this.names, e);
    }
    closeSync(fd);
    this.fd = null;
    this.staged = true;
    closed(this);
    return stagedAt(this.path, this.tmp);
  }

  /** Closes and removes the temporary file, unless it was staged (it is the StagedFile's then). Idempotent. */
  abort(): void {
    closed(this);
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    if (!this.staged) rmSync(this.tmp, { force: true });
  }
}
