// JSON files a command reads back (its own state, results, plans): what they hold is checked before
// use, and every error names the file.
import { readRegularFile } from './regular-file';

/** Whether a parsed JSON value is an object with keys (not null, an array or a scalar). */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The JSON object in `path`; throws `<path>: ...` when it cannot be read, is not JSON or not an object. */
export function readJsonObject(path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readRegularFile(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`, { cause: e });
  }
  if (!isJsonObject(value)) throw new Error(`${path}: not a JSON object`);
  return value;
}

/** The same, with the keys `required` holding objects; throws naming the first missing one. */
export function readJsonWith(path: string, required: string[]): Record<string, unknown> {
  const o = readJsonObject(path);
  const missing = required.find((k) => !isJsonObject(o[k])); // an array is no object of keys either
  if (missing !== undefined) throw new Error(`${path}: '${missing}' is missing or not an object`);
  return o;
}

/**
 * A JSON value read from a file, for an error message: at most `max` characters, and a value nested too
 * deeply for JSON.stringify (which JSON.parse reads without complaint) is named, not a RangeError.
 */
export function jsonBrief(value: unknown, max = 200): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    return '(a value nested too deeply to print)';
  }
  if (text === undefined) return String(value);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
