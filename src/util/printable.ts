// Names from the file system or from data files, made safe to print on a terminal or in a Markdown
// table: control characters (which can clear a terminal, start a forged line or overwrite one) and
// bidirectional overrides (which reorder what is shown) appear as escapes instead of acting.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** Whether `text` holds a character {@link printable} escapes. */
const hasUnprintable = (text: string): boolean => new RegExp(UNPRINTABLE.source).test(text);

export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * A path as messages and summaries print it: as it is, or, when it holds a character {@link printable} escapes
 * (a newline in `--out-dir` made one line of output read as two), double-quoted with JSON's escapes, as git
 * quotes such paths. One that starts with a double quote is quoted too, so that a quoted path never reads as a plain one.
 */
export function quotedPath(path: string): string {
  if (!hasUnprintable(path) && !path.startsWith('"')) return path;
  return JSON.stringify(path).replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * An argument as a POSIX shell reads it back: bare when it is plainly safe, else single-quoted; one holding a
 * character {@link printable} escapes, as `$'…'` with that escape (a newline inside '…' split the printed command line).
 */
export function shellQuote(arg: string): string {
  if (hasUnprintable(arg)) return `$'${printable(arg.replace(/[\\']/g, (c) => `\\${c}`))}'`;
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** A Markdown code fence longer than any run of backticks in `text`, so the text cannot close it. */
export function codeFence(text: string): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((m) => m.length));
  return '`'.repeat(Math.max(3, longest + 1));
}
