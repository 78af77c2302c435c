// JSON files a command reads back (its own state, results, plans): what they hold is checked before
// use, and every error names the file.
import { readRegularFile } from './regular-file';

/** Whether a parsed JSON value is an object with keys (not null, an array or a scalar). */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * How deep the files semaim writes and reads back may nest objects and arrays (they nest a few levels).
 * JSON.parse reads any depth, but JSON.stringify and every walk over the value recurse: a file nested
 * thousands deep was a RangeError from deep inside a command (comparing a plan's recipe), naming nothing.
 */
export const MAX_JSON_DEPTH = 100;

/** The deepest nesting of objects and arrays in a valid JSON text, counted without recursion. */
export function jsonDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      while (text[++i] !== '"') if (text[i] === '\\') i++; // (a string's brackets are not nesting)
    } else if (c === '{' || c === '[') deepest = Math.max(deepest, ++depth);
    else if (c === '}' || c === ']') depth--;
  }
  return deepest;
}

/** The JSON object in `path`; throws `<path>: ...` when it cannot be read, is not JSON, not an object or nested deeper than MAX_JSON_DEPTH. */
export function readJsonObject(path: string): Record<string, unknown> {
  let value: unknown;
  let text: string;
  try {
    text = readRegularFile(path, 'utf8');
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`, { cause: e });
  }
  if (!isJsonObject(value)) throw new Error(`${path}: not a JSON object`);
  const depth = jsonDepth(text);
  if (depth > MAX_JSON_DEPTH) throw new Error(`${path}: nested ${depth} levels deep, more than the ${MAX_JSON_DEPTH} a file of semaim's may`);
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
