// Lines written to a terminal while a progress line (src/run/progress.ts) is drawn on it: the progress
// line has no line break (each update redraws it in place), so a message written after it would be glued
// to its end. A message first clears it; the next update draws it again below the message.

const drawn = new WeakSet<NodeJS.WriteStream>();

/** Progress marks `out` as showing its line (true after a redraw, false once it ended the line). */
export function markProgressLine(out: NodeJS.WriteStream, shown: boolean): void {
  if (shown) drawn.add(out);
  else drawn.delete(out);
}

/** Whether a progress line is drawn on `out` now (without a line break after it). */
export function progressLineShown(out: NodeJS.WriteStream): boolean {
  return drawn.has(out);
}

/** What a line written to `out` starts with: clearing a progress line drawn there, if one is. */
export function clearProgressLine(out: NodeJS.WriteStream = process.stderr): string {
  if (!drawn.has(out)) return '';
  drawn.delete(out);
  return '\r\x1b[K';
}

/** Writes one line to stderr (messages, warnings), on a line of its own even under a progress line. */
export function stderrLine(line: string): void {
  process.stderr.write(`${clearProgressLine(process.stderr)}${line}\n`);
}

/** A caller's log function that first clears a progress line drawn on stderr (it may write there too). */
export function besideProgress(log: (line: string) => void): (line: string) => void {
  return (line) => {
    const clear = clearProgressLine(process.stderr);
    if (clear) process.stderr.write(clear);
    log(line);
  };
}
