// What the benchmarks share when they write their results: the CPU's name, the cause of a failed side, and the replacement of a
// benchmark's generated section of docs/BENCHMARKS.md with hand-written notes below it kept.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '../src/util/safe-write';

export const END_MARK = '<!-- end of the generated table: notes below are kept by --write-docs -->';

/** The CPU's model name (/proc/cpuinfo on Linux, else Node's). */
export function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1].trim();
  } catch {
    /* not Linux */
  }
  return os.cpus()[0]?.model ?? 'unknown CPU';
}

/** The last non-empty line of an error's message (where a child process's stderr ends with the cause). */
export function causeOf(e: unknown): string {
  // A child's JavaScript stack trace ends with 'at ...' frames: the cause is the line before them. An
  // exception nobody caught (one thrown while the worker loads) is followed by Node's 'Node.js v20...' line.
  const lines = String((e as Error)?.message ?? e)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('at ') && !/^Node\.js v\d/.test(l));
  return (lines[lines.length - 1] ?? 'unknown error').slice(0, 300);
}

/**
 * Replaces the generated part of the section `title` of docs/BENCHMARKS.md (appending the section when
 * absent); hand-written notes after `endMark` and every other section are kept.
 */
export function writeBenchmarksSection(title: string, body: string, endMark = END_MARK): void {
  const file = path.join(__dirname, '..', '..', 'docs', 'BENCHMARKS.md');
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n';
  body = body.replace(/\n+$/, ''); // one blank line before the mark, whatever the body ends with
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === title);
  let out: string;
  if (start < 0) {
    out = `${text.replace(/\n*$/, '\n')}\n${title}\n\n${body}\n\n${endMark}\n`;
  } else {
    let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
    if (end < 0) end = lines.length;
    const mark = lines.findIndex((l, i) => i > start && i < end && l.trim() === endMark);
    const notes = mark < 0 ? [] : lines.slice(mark + 1, end);
    out = [...lines.slice(0, start), title, '', body, '', endMark, ...notes, ...lines.slice(end)].join('\n');
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // (a temp file and a rename: a benchmark killed at its time limit mid-write left the whole file cut short)
  writeFileAtomic(file, out);
  console.log(`\nwrote the "${title}" section of ${path.relative(process.cwd(), file)}`);
}
