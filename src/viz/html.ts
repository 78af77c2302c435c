// Small helpers for hand-written HTML/SVG: escaping and number formatting.
import { jsonBrief } from '../util/json-file';
import { printable } from '../util/printable';

/** Text for HTML: markup characters as entities, and control characters and bidi overrides (which reorder what is shown) as visible escapes (`\u202e`), as the terminal shows them. */
export function esc(s: unknown): string {
  return printable(String(s)).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A compact, readable number: 4 significant digits, exponent form for very large / small values. */
export function fmt(v: unknown): string {
  if (v !== null && typeof v === 'object') return jsonBrief(v); // String() of a deeply nested array overflows the stack
  if (typeof v !== 'number') return v === undefined || v === null ? '' : String(v);
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}
