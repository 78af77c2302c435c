// A path (or any text) spliced into a RegExp, matched as itself: a file name with '+', '[' or '(' in it, or a
// $TMPDIR such as '/tmp/c++', made a pattern built from it fail to match it.

/** `text` with the characters a RegExp gives a meaning escaped. */
export function reText(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
