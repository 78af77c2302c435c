// What two JSON values differ in, for an error message: the differing leaves by their dotted paths.

/** The first `max` leaves `a` and `b` differ in, as 'path: before → now' ('–' where one has none). */
export function jsonDifferences(a: unknown, b: unknown, max = 4): string {
  const flat = (x: unknown, pre: string, out: Record<string, string>): Record<string, string> => {
    if (x !== null && typeof x === 'object' && !Array.isArray(x)) {
      for (const [k, v] of Object.entries(x)) flat(v, `${pre}${k}.`, out);
    } else if (x !== undefined) out[pre.slice(0, -1) || '(value)'] = JSON.stringify(x);
    return out;
  };
  const fa = flat(a, '', {});
  const fb = flat(b, '', {});
  const keys = [...new Set([...Object.keys(fa), ...Object.keys(fb)])].filter((k) => fa[k] !== fb[k]);
  const shown = keys.slice(0, max).map((k) => `${k}: ${fa[k] ?? '–'} → ${fb[k] ?? '–'}`);
  return keys.length > max ? `${shown.join(', ')} and ${keys.length - max} more` : shown.join(', ');
}
