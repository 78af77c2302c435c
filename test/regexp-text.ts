// A path (or any text) spliced into a RegExp, matched as itself: a $TMPDIR with a regex character in it
// ('/tmp/c++', '/tmp/a [b]') made every pattern built from a temporary path fail to match that path.

/** `text` with the characters a RegExp gives a meaning escaped. */
export function reText(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
