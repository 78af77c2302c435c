// Names from the file system or from data files, made safe to print on a terminal or in a Markdown
// table: control characters (which can clear a terminal, start a forged line or overwrite one) and
// bidirectional overrides (which reorder what is shown) appear as escapes instead of acting.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
