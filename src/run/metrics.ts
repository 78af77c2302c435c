// Metrics as JSON lines: one object per logged step, appended and flushed as it happens, so in step
// order (a resumed run drops the lines after its checkpoint before it appends). An 800-epoch run logs
// hundreds of thousands of lines: a resume reads only the lines at the end that it drops, and the first
// and last loss, never the whole file.
import { closeSync, constants, copyFileSync, existsSync, fstatSync, readSync, renameSync, rmSync, truncateSync } from 'node:fs';
import { isJsonObject } from '../util/json-file';
import { appendNoFollow, fsyncPath, removeDeadTemps, writeError } from '../util/safe-write';
import { dirname } from 'node:path';
import { openRegularFile } from '../util/regular-file';
import { makeFolder } from '../util/make-folder';
import { quotedPath } from '../util/printable';

const CHUNK = 1 << 16;

/** A line as a record, or null when it is not a JSON object (a torn last line, a stray value). */
function parseRecord(line: string): Record<string, unknown> | null {
  try {
    const r: unknown = JSON.parse(line);
    return isJsonObject(r) ? r : null;
  } catch {
    return null;
  }
}

/**
 * The non-blank lines of a file from its end backwards, each with the byte offset where it starts; reads only
 * as far as iterated. Linear in the bytes read: a line longer than a chunk is kept as its chunks, searched
 * and joined once (joining the pending bytes at each chunk made a multi-MB line quadratic).
 */
export function* linesFromEnd(path: string, chunk = CHUNK): Generator<{ line: string; start: number }> {
  const fd = openRegularFile(path);
  try {
    let at = fstatSync(fd).size;
    let pending: Buffer[] = []; // the bytes after `at` not yet yielded, last chunk first
    const take = (first: Buffer) => {
      const line = Buffer.concat([first, ...pending.reverse()]).toString('utf8');
      pending = [];
      return line;
    };
    while (at > 0) {
      const n = Math.min(chunk, at);
      const bytes = Buffer.alloc(n);
      if (readSync(fd, bytes, 0, n, at - n) !== n) throw new Error(`${quotedPath(path)} changed while it was read`);
      at -= n;
      let end = n;
      for (let nl = bytes.lastIndexOf(0x0a, end - 1); nl >= 0; nl = end > 0 ? bytes.lastIndexOf(0x0a, end - 1) : -1) {
        const line = take(bytes.subarray(nl + 1, end));
        if (line.trim()) yield { line, start: at + nl + 1 };
        end = nl;
      }
      pending.push(bytes.subarray(0, end));
    }
    const line = take(Buffer.alloc(0));
    if (line.trim()) yield { line, start: 0 };
  } finally {
    closeSync(fd);
  }
}

/**
 * The lines of a file from its start, numbered from 1, blank ones too; `unterminated` marks a last line no
 * newline ends. Reads only as far as iterated, a chunk at a time: a metrics file can outgrow a string.
 */
export function* linesFromStart(
  path: string,
  o: { followLinks?: boolean; chunk?: number } = {},
): Generator<{ line: string; number: number; unterminated: boolean }> {
  const chunk = o.chunk ?? CHUNK;
  const fd = openRegularFile(path, o);
  try {
    let carry = '';
    let number = 0;
    const buf = Buffer.alloc(chunk);
    for (;;) {
      const n = readSync(fd, buf, 0, chunk, null);
      if (n === 0) break;
      // (a line split inside a multi-byte character is joined before it is decoded)
      const last = buf.lastIndexOf(0x0a, n - 1);
      if (last < 0) {
        carry += buf.toString('latin1', 0, n);
        continue;
      }
      const text = Buffer.from(carry + buf.toString('latin1', 0, last), 'latin1').toString('utf8');
      carry = buf.toString('latin1', last + 1, n);
      for (const line of text.split('\n')) yield { line, number: ++number, unterminated: false };
    }
    if (carry) yield { line: Buffer.from(carry, 'latin1').toString('utf8'), number: ++number, unterminated: true };
  } finally {
    closeSync(fd);
  }
}

/** The first and the last numeric `loss` of a metrics file (null when it has none), read from its two ends. */
export function lossEnds(path: string): { first: number; last: number } | null {
  if (!existsSync(path)) return null;
  const loss = (line: string): number | null => {
    const l = parseRecord(line)?.loss;
    return typeof l === 'number' ? l : null;
  };
  let first: number | null = null;
  for (const { line } of linesFromStart(path)) if (line.trim() && (first = loss(line)) !== null) break;
  if (first === null) return null;
  for (const { line } of linesFromEnd(path)) {
    const last = loss(line);
    if (last !== null) return { first, last };
  }
  return null;
}

/** Whether a file ends inside a line (a last line no newline ends: a run killed while writing it). */
function endsMidLine(path: string): boolean {
  if (!existsSync(path)) return false;
  const fd = openRegularFile(path);
  try {
    const size = fstatSync(fd).size;
    const last = Buffer.alloc(1);
    return size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
  } finally {
    closeSync(fd);
  }
}

export class MetricsLog {
  /** Whether the file may end inside a line that this log did not write (until its first write). */
  private unchecked = true;

  constructor(readonly path: string) {
    makeFolder(dirname(path));
  }

  /** Appends the record with its time, on a line of its own; returns the line's record as written. */
  write<R extends Record<string, unknown>>(record: R): { time: string } & R {
    const line = { time: new Date().toISOString(), ...record };
    // after a cut-short last line the record would be glued to it, and both unreadable
    const newLine = this.unchecked && endsMidLine(this.path) ? '\n' : '';
    appendNoFollow(this.path, newLine + JSON.stringify(line) + '\n');
    this.unchecked = false;
    return line;
  }

  /** Whether a record of `step` holds `key` (read from the end back to the records before `step`). */
  has(step: number, key: string): boolean {
    if (!existsSync(this.path)) return false;
    for (const { line } of linesFromEnd(this.path)) {
      const r = parseRecord(line) as { step?: unknown } | null;
      if (!r || typeof r.step !== 'number') continue;
      if (r.step < step) break;
      if (r.step === step && Object.hasOwn(r, key)) return true;
    }
    return false;
  }

  /**
   * Drops the records of steps after `step` (a resumed run computes them again), and with `lossLinesAt`
   * the loss lines of that step too (a line a stopped run wrote off the --log-every cadence). Returns how
   * many were dropped. Reads the file from its end back to the last line before `step` (the lines are in
   * step order); when some go, the earlier bytes are copied as they are (by the kernel, not parsed) into
   * a new file that replaces the old one by a rename.
   */
  truncateAfter(step: number, o: { lossLinesAt?: number } = {}): number {
    if (!existsSync(this.path)) return 0;
    const tail: { line: string; keep: boolean }[] = [];
    let cut = -1;
    for (const { line, start } of linesFromEnd(this.path)) {
      const r = parseRecord(line) as { step?: unknown; loss?: unknown } | null;
      // a line this reader cannot parse is kept as it is
      if (r && typeof r.step === 'number' && r.step < step) break;
      const drop = !!r && typeof r.step === 'number' && (r.step > step || (o.lossLinesAt !== undefined && r.step === o.lossLinesAt && 'loss' in r));
      tail.push({ line, keep: !drop });
      cut = start;
    }
    const dropped = tail.filter((t) => !t.keep).length;
    if (dropped === 0) return 0;
    const kept = tail
      .filter((t) => t.keep)
      .reverse()
      .map((t) => t.line + '\n')
      .join('');
    const tmp = `${this.path}.tmp-${process.pid}-0`;
    try {
      removeDeadTemps(this.path); // of a process killed while truncating
      rmSync(tmp, { force: true }); // (a link planted there goes, not what it points to)
      copyFileSync(this.path, tmp, constants.COPYFILE_EXCL); // the kept lines before the cut, byte for byte
      truncateSync(tmp, cut);
      if (kept) appendNoFollow(tmp, kept);
      fsyncPath(tmp); // on the disk before it replaces the log: a power cut after the rename must not leave it torn
      renameSync(tmp, this.path);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw writeError(this.path, e);
    }
    return dropped;
  }
}

/** The records of a metrics file; lines that are not JSON objects (a torn last line, a stray value) are left out. */
export function readMetrics(path: string): Record<string, unknown>[] {
  return readMetricsLines(path).records;
}

export interface MetricsLines {
  records: Record<string, unknown>[];
  /** The line (from 1) of each record. */
  lines: number[];
  /** The lines that are not JSON objects (garbage, `null`, `[1,2]`), but for a cut-short last line. */
  unreadable: number[];
  /** The last line when it is not a JSON object and no newline ends it (a run killed while writing it), else null. */
  cutShort: number | null;
}

/**
 * readMetrics, saying which lines it left out (the report names them). `followLinks: false` refuses a
 * symbolic link at `path` (ELOOP), as a report of someone else's run folder does.
 */
export function readMetricsLines(path: string, o: { followLinks?: boolean } = {}): MetricsLines {
  const r: MetricsLines = { records: [], lines: [], unreadable: [], cutShort: null };
  const bad = scanMetrics(path, o, (record, line) => {
    r.records.push(record);
    r.lines.push(line);
  });
  return { ...r, ...bad };
}

/**
 * Reads a metrics file a line at a time, giving each record and its line (from 1) to `visit`; returns the
 * lines that were not records, as readMetricsLines names them. Nothing is kept but what `visit` keeps.
 */
export function scanMetrics(
  path: string,
  o: { followLinks?: boolean },
  visit: (record: Record<string, unknown>, line: number) => void,
): Pick<MetricsLines, 'unreadable' | 'cutShort'> {
  const r: Pick<MetricsLines, 'unreadable' | 'cutShort'> = { unreadable: [], cutShort: null };
  if (!existsSync(path)) return r;
  for (const { line, number, unterminated } of linesFromStart(path, o)) {
    if (!line.trim()) continue;
    const record = parseRecord(line);
    if (record) visit(record, number);
    else if (unterminated) r.cutShort = number;
    else r.unreadable.push(number);
  }
  return r;
}

/** The number of lines of a file (newlines, and a last line without one), read a chunk at a time. */
export function countLines(path: string, o: { followLinks?: boolean } = {}): number {
  const fd = openRegularFile(path, o);
  try {
    const buf = Buffer.alloc(CHUNK * 16);
    let lines = 0;
    let last = 0x0a;
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) {
      for (let i = buf.indexOf(0x0a, 0); i >= 0 && i < n; i = buf.indexOf(0x0a, i + 1)) lines++;
      last = buf[n - 1];
    }
    return lines + (last === 0x0a ? 0 : 1);
  } finally {
    closeSync(fd);
  }
}
