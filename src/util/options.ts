// Declarative option tables shared by every command: defaults, --help text, config files (JSON or
// YAML) with command-line overrides, and validation that names the offending key before any work.
import { readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isMap, isScalar, parseDocument } from 'yaml';
import { printable, quotedPath } from './printable';
import { jsonBrief } from './json-file';

export type OptionType = 'number' | 'int' | 'string' | 'boolean';

export interface OptionSpec {
  type: OptionType;
  default?: number | string | boolean;
  help: string;
  /** Allowed values for strings. */
  choices?: readonly string[];
  min?: number;
  max?: number;
  /** An exclusive upper bound (an AdamW beta of 1 never forgets: its bias correction divides by 0). */
  below?: number;
  /** An exclusive lower bound (a share of 0 that every patch reaches). */
  above?: number;
  /** What the maximum is, when the number alone does not say (e.g. 'the cores of this machine'). */
  maxIs?: string;
  /** Required unless it has a default. */
  required?: boolean;
  /** Resolves the value 'auto' from the other options once they are all known (e.g. from --device). */
  auto?: (o: OptionValues) => number | string | boolean;
  /**
   * A resumed run may take a different value than the one it started with: the option changes where
   * or how fast a run goes, or how long it runs, not what each step computes (see src/run/recipe.ts).
   */
  mayChangeOnResume?: boolean;
  /**
   * Why the option changes nothing under these options ('with --order raster: …'), or undefined where it is
   * read. Given there, a command refuses it (refuseNoEffectOptions); a resumed run passes over a difference in
   * it when it changed nothing in the stored run either (src/run/recipe.ts), so a run started before an option
   * was refused resumes without it.
   */
  noEffect?: (o: OptionValues) => string | undefined;
  /**
   * What a run stored before this option existed did (when that differs from the default): a resumed
   * run whose stored options lack the key is compared against this value, not the default.
   */
  absentMeans?: number | string | boolean;
  /** A file or folder (or a comma-separated list of them): a resumed run compares where it points, not how it was written. */
  path?: boolean;
}

/** The limits of --threads (more threads than cores made every op ~100× slower) and --num-workers (each holds its own buffers). */
export const MAX_THREADS = availableParallelism();
export const MAX_THREADS_IS = 'the cores of this machine';
export const MAX_WORKERS = 64;

/**
 * The range of every `seed` option: numpy's (the authors' scripts seed numpy with it). The jobs derive
 * generator seeds from it (seed × 1,000,003 + epoch shuffles a probe's features), which must stay within
 * libtorch's int64: a larger --seed passed the table and failed once the features were extracted.
 */
export const SEED_RANGE = { min: 0, max: 2 ** 32 - 1, maxIs: "numpy's seed range, as in the authors' scripts" } as const;

/** `--seeds N` runs seeds seed..seed+N-1 (ablate, object-start): the last of them is in {@link SEED_RANGE} too. */
export function checkSeedList(o: { seed: number; seeds: number }): void {
  const last = o.seed + o.seeds - 1;
  if (last > SEED_RANGE.max)
    throw new OptionError('seeds', `runs seeds ${o.seed}..${last}, beyond ${SEED_RANGE.max} (${SEED_RANGE.maxIs}): lower --seed or --seeds`);
}

/**
 * An option table: each option's key (camelCase) and its {@link OptionSpec}. The commands' tables (PRETRAIN_OPTIONS, KNN_OPTIONS…)
 * give the CLI its flags, --help and config-file keys, and resolveOptions/jobOptions check a library caller's options against them.
 */
export type OptionTable = Record<string, OptionSpec>;
/**
 * Option values by key, untyped (undefined: not set): what resolveOptions fills before typing
 * it, what an OptionSpec's `auto` reads, and what a result file records as its `config`.
 */
export type OptionValues = Record<string, number | string | boolean | undefined>;

/** The value type one spec gives: numbers, booleans, a union of its choices ('auto' resolved away), or a string. */
type ValueOf<S> = S extends { type: 'boolean' }
  ? boolean
  : S extends { type: 'number' | 'int' }
    ? number
    : S extends { choices: readonly (infer C)[] }
      ? S extends { auto: unknown }
        ? Exclude<C, 'auto'>
        : C
      : string;
type AlwaysSet<S> = S extends { default: number | string | boolean } ? true : S extends { required: true } ? true : false;

/** The typed options object a table resolves to: an option without a default or `required` may be undefined. */
export type Options<T extends OptionTable> = {
  -readonly [K in keyof T]: AlwaysSet<T[K]> extends true ? ValueOf<T[K]> : ValueOf<T[K]> | undefined;
};

/** The value type a caller may give for one spec: as ValueOf, with 'auto' where the spec resolves it. */
type GivenValueOf<S> = S extends { choices: readonly (infer C)[] } ? C : ValueOf<S>;

/**
 * The options a caller gives for a table, the plain object a job resolves itself (README "Library use"):
 * the `required` ones, and any of the others (a missing one takes its default). Options<T> is one too.
 */
export type OptionsInput<T extends OptionTable> = {
  -readonly [K in keyof T as T[K] extends { required: true } ? K : never]: GivenValueOf<T[K]>;
} & {
  -readonly [K in keyof T as T[K] extends { required: true } ? never : K]?: GivenValueOf<T[K]>;
};

/** Declares an option table, keeping its literal types (choices, defaults) so that `Options<typeof T>` is exact. */
export function defineOptions<const T extends OptionTable>(table: T): T {
  return table;
}

/**
 * What an OptionError says is wrong: 'ERR_OPTION' a bad or missing value (also one that only the data
 * or the checkpoint shows to be impossible), 'ERR_OUTPUT_EXISTS' an output that exists and may not be
 * replaced (no `overwrite`), 'ERR_DEVICE_UNAVAILABLE' a device this libtorch or machine does not have.
 */
export type OptionErrorCode = 'ERR_OPTION' | 'ERR_OUTPUT_EXISTS' | 'ERR_DEVICE_UNAVAILABLE';

/** A bad option, named by its key (`imgSize`); the command line names it by its flag (`--img-size`), see `flagMessage`. */
export class OptionError extends Error {
  constructor(
    readonly key: string,
    readonly detail: string,
    /** Where the value was written when not on the command line, e.g. `img_size in run.yaml`. */
    readonly source?: string,
    readonly code: OptionErrorCode = 'ERR_OPTION',
  ) {
    super(`option '${key}': ${detail}`);
    this.name = 'OptionError';
  }

  /**
   * Whether the line breaks of `detail` are the message's own (a table, as a refused resume's): its writer
   * put every path and value in it escaped (quotedPath, JSON), so that no line of it can read as another's.
   */
  multiline = false;

  /**
   * The message as a command-line user reads it: the flag they typed (or its kebab-case config key), on one
   * line (a control character of a value or a path, e.g. from a system error's message, is shown escaped);
   * a `multiline` one keeps its own line breaks, each line escaped so.
   */
  get flagMessage(): string {
    const text = `option ${this.source ?? `--${kebab(this.key)}`}: ${this.detail}`;
    return this.multiline ? text.split('\n').map(printable).join('\n') : printable(text);
  }
}

export const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
/** `img-size` and `img_size` (the authors' argparse spelling) are `imgSize`; other keys are left as written. */
const camel = (k: string) => (/^[a-z][a-zA-Z0-9]*([-_][a-z0-9]+)+$/.test(k) ? k.replace(/[-_]([a-z0-9])/g, (_, c: string) => c.toUpperCase()) : k);

/** The authors' (MAE-style argparse) names for options semaim names differently. */
const AUTHORS_NAMES: Record<string, string> = { inputSize: 'imgSize', outputDir: 'outDir', logDir: 'outDir', normPixLoss: 'normPix' };

/**
 * How a message names an option: as the command line does ('flag': `--img-size`, a config file's key
 * `img-size`), or as a library caller writes it ('key': `imgSize`).
 */
type Spelling = 'flag' | 'key';

/**
 * `unknown option`, with the option the user most likely meant (the authors' name for it, or one a typo
 * away) and, unless `typed` on the command line (then --help lists them), the `known` options.
 */
function unknownOption(key: string, known: readonly string[], spelling: Spelling, typed?: string): OptionError {
  const meant =
    Object.hasOwn(AUTHORS_NAMES, key) && known.includes(AUTHORS_NAMES[key])
      ? AUTHORS_NAMES[key]
      : (closest(kebab(key).toLowerCase(), known, kebab) ?? wordOf(kebab(key).toLowerCase(), known));
  const hint = meant ? `; did you mean ${spelling === 'flag' ? `--${kebab(meant)}` : `'${meant}'`}?` : '';
  const list = typed ? '(see --help)' : `(known: ${known.map((k) => (spelling === 'flag' ? kebab(k) : k)).join(', ')})`;
  return new OptionError(key, `unknown option${hint} ${list}`, typed);
}

/** The one option whose name starts or ends with the word `typed` ('warmup' is warmup-epochs, 'workers' num-workers), if only one does. */
function wordOf(typed: string, known: readonly string[]): string | undefined {
  const named = known.filter((k) => kebab(k).startsWith(`${typed}-`) || kebab(k).endsWith(`-${typed}`));
  return named.length === 1 ? named[0] : undefined;
}

/** The candidate a typo away from `typed` (at most one edit per four letters), if any. */
export function closest(typed: string, candidates: readonly string[], spelled: (c: string) => string = (c) => c): string | undefined {
  const near = candidates.map((c) => ({ c, d: editDistance(typed, spelled(c)) })).sort((a, b) => a.d - b.d)[0];
  return near && near.d <= Math.max(1, Math.floor(typed.length / 4)) ? near.c : undefined;
}

/**
 * `; did you mean 'x'?` when `typed` is a typo (or only its letter case) away from one of `candidates`, else '';
 * `prefix` goes in front of the one named (a nested field's path, `encoder.`).
 */
export function didYouMean(typed: string, candidates: readonly string[], prefix = ''): string {
  const meant = closest(typed.toLowerCase(), candidates, (c) => c.toLowerCase());
  return meant === undefined ? '' : `; did you mean '${prefix}${meant}'?`;
}

/** Edit distance counting two swapped neighbours as one edit ('depht' is one from 'depth'); option names are short. */
function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) next[j] = Math.min(next[j], before[j - 2] + 1);
    }
    [before, row] = [row, next];
  }
  return row[b.length];
}

/** The table's own spec for `key` (never an Object.prototype member such as 'constructor' or '__proto__'). */
const specOf = (table: OptionTable, key: string): OptionSpec | undefined => (Object.hasOwn(table, key) ? table[key] : undefined);

/** Options a config file cannot set: they say how the command line is read. */
const COMMAND_LINE_ONLY = ['config', 'help'];

/** A library caller's `config` or `help`: neither is read outside the command line (they were skipped unread). */
function commandLineOnly(key: string): OptionError {
  if (key === 'config')
    return new OptionError(
      key,
      "'config' is a command-line option: read the file with readConfigFile(path) and pass its fields (resolveOptions(table, readConfigFile(path), { ... }))",
    );
  return new OptionError(key, "'help' is a command-line option: a command's --help lists its options");
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** Larger config files are refused unread (a device or a stray data file given by mistake). */
export const MAX_CONFIG_BYTES = 1 << 20;

// (a value is shown by jsonBrief: a config file's list nested too deeply for JSON.stringify was a bare RangeError)
function coerce(key: string, spec: OptionSpec, raw: unknown): number | string | boolean {
  // null (YAML '~' or an empty 'key:', JSON null) is not "the default": the key was written, with no value
  if (raw === null) {
    const left = spec.default === undefined ? 'to leave it unset' : `for its default (${JSON.stringify(spec.default)})`;
    throw new OptionError(key, `has no value (null): give one, or leave the key out ${left}`);
  }
  if (spec.type === 'boolean') {
    if (typeof raw === 'boolean') return raw;
    // a config file's `blur: 1` is the number 1: taken as the flag's --blur=1 is
    if (raw === 'true' || raw === '1' || raw === 1 || raw === 'yes') return true;
    if (raw === 'false' || raw === '0' || raw === 0 || raw === 'no') return false;
    throw new OptionError(key, `expected true or false, got ${jsonBrief(raw)}`);
  }
  if (spec.type === 'number' || spec.type === 'int') {
    // decimal notation only: Number() would also take '0x10', '0b11' and ''
    const v = typeof raw === 'number' ? raw : typeof raw === 'string' && DECIMAL.test(raw.trim()) ? Number(raw) : NaN;
    if (!Number.isFinite(v)) throw new OptionError(key, `expected a number, got ${typeof raw === 'number' ? raw : jsonBrief(raw)}`);
    if (spec.type === 'int' && !Number.isInteger(v)) throw new OptionError(key, `expected an integer, got ${v}`);
    if (spec.type === 'int' && !Number.isSafeInteger(v))
      throw new OptionError(key, `${v} is beyond the integers a double holds exactly (±${Number.MAX_SAFE_INTEGER})`);
    if (spec.min !== undefined && v < spec.min) throw new OptionError(key, `must be >= ${spec.min}, got ${v}`);
    if (spec.max !== undefined && v > spec.max) throw new OptionError(key, `must be <= ${spec.max}${spec.maxIs ? ` (${spec.maxIs})` : ''}, got ${v}`);
    if (spec.below !== undefined && v >= spec.below) throw new OptionError(key, `must be < ${spec.below}, got ${v}`);
    if (spec.above !== undefined && v <= spec.above) throw new OptionError(key, `must be > ${spec.above}, got ${v}`);
    return v;
  }
  if (typeof raw !== 'string' && typeof raw !== 'number') throw new OptionError(key, `expected a string, got ${jsonBrief(raw)}`);
  const s = String(raw);
  // '' is no value: as a path it means the current folder to some calls and nothing to others ('--out ""' wrote ./.json)
  if (!s.trim()) throw new OptionError(key, `must not be empty${s ? ' (only spaces)' : ''}`);
  if (spec.choices && !spec.choices.includes(s))
    throw new OptionError(key, `must be one of ${spec.choices.join(', ')}, got '${s}'${didYouMean(s, spec.choices)}`);
  return s;
}

/** Reads a JSON or YAML config file into a flat object (keys in camelCase, kebab-case or snake_case). */
export function readConfigFile(path: string): Record<string, unknown> {
  // '--config ""' (an unset "$CONFIG") ran with the defaults, as if no file had been given
  if (!path.trim()) throw new OptionError('config', `must not be empty${path ? ' (only spaces)' : ''}: give the file, e.g. --config run.yaml`);
  let text: string;
  try {
    // stat before opening: /dev/zero never ends and a FIFO blocks the open itself
    const st = statSync(path);
    if (!st.isFile()) throw new OptionError('config', `${quotedPath(path)} is not a regular file`);
    if (st.size > MAX_CONFIG_BYTES) throw new OptionError('config', `${quotedPath(path)} is ${st.size} bytes; a config file holds at most ${MAX_CONFIG_BYTES}`);
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof OptionError) throw e;
    throw new OptionError('config', `cannot read ${quotedPath(path)}: ${(e as Error).message}`);
  }
  let data: unknown;
  // each number's text as written ('name: 1.10' is the string option's '1.10', not the number's '1.1')
  const numbers = new Map<string, string>();
  try {
    if (/\.ya?ml$/i.test(path)) {
      const doc = parseDocument(text);
      if (doc.errors.length) throw doc.errors[0];
      data = doc.toJS();
      if (isMap(doc.contents))
        for (const { key, value } of doc.contents.items)
          if (isScalar(key) && isScalar(value) && typeof value.value === 'number' && value.source !== undefined)
            numbers.set(camel(String(key.value)), String(value.source));
    } else data = JSON.parse(text);
  } catch (e) {
    throw new OptionError('config', `${quotedPath(path)} is not valid ${/\.ya?ml$/i.test(path) ? 'YAML' : 'JSON'}: ${(e as Error).message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new OptionError('config', `${quotedPath(path)} must hold an object of options`);
  const keys = new Map<string, string>(); // each option's key as written in the file
  // (JSON.parse keeps the last of a key written twice, where YAML refuses it: the file's text has them all)
  for (const written of /\.ya?ml$/i.test(path) ? Object.keys(data as object) : topLevelKeys(text, numbers)) {
    const k = camel(written);
    if (COMMAND_LINE_ONLY.includes(k)) throw new OptionError(k, `${quotedPath(path)}: '${k}' cannot be set in a config file (give it on the command line)`);
    // out_dir and out-dir are one option: which of the two would win is not what the file says
    const other = keys.get(k);
    if (other !== undefined)
      throw new OptionError(
        k,
        `${quotedPath(path)} sets it twice, as ${other === written ? `'${other}' both times` : `'${other}' and as '${written}'`}: keep one`,
      );
    keys.set(k, written);
  }
  const values = Object.fromEntries(Object.entries(data as Record<string, unknown>).map(([k, v]) => [camel(k), v]));
  writtenAs.set(values, { path, keys, numbers });
  return values;
}

/**
 * The keys of the top-level object of a JSON text that JSON.parse read, in order, each as often as it is
 * written (JSON.parse keeps one of them): the strings at depth 1 that a ':' follows. A key whose value is
 * a number has that number's text put in `numbers` (by its camelCase key).
 */
function topLevelKeys(text: string, numbers: Map<string, string>): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      let next = end + 1;
      while (/\s/.test(text[next] ?? '')) next++;
      if (depth === 1 && text[next] === ':') {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        keys.push(key);
        const number = /\s*(-?\d+(\.\d+)?([eE][+-]?\d+)?)/y;
        number.lastIndex = next + 1;
        const m = number.exec(text);
        if (m) numbers.set(camel(key), m[1]);
      }
      i = end;
    }
  }
  return keys;
}

/**
 * Each config file's values: the file, each key as written there (img_size, img-size or imgSize), and the
 * text of each number written as a value (a string option takes that text: YAML reads 1.10, 007 and 0x10 as numbers).
 */
const writtenAs = new WeakMap<object, { path: string; keys: Map<string, string>; numbers: Map<string, string> }>();

/**
 * An OptionError names the option as the user wrote it: a flag as typed (`--img_size`) where that is not
 * the table's spelling, a value from the config file `values` (and not from `flags`, which win) by its key
 * as written in that file; other errors are returned as they are.
 */
export function asWritten(e: unknown, values: Record<string, unknown>, flags: Record<string, unknown>): unknown {
  if (!(e instanceof OptionError) || e.source) return e;
  const typed = flagsTypedAs.get(flags)?.get(e.key);
  if (typed && e.key in flags) return new OptionError(e.key, e.detail, typed, e.code);
  const file = writtenAs.get(values);
  if (!file || !(e.key in values) || e.key in flags) return e;
  return new OptionError(e.key, e.detail, `${file.keys.get(e.key) ?? e.key} in ${quotedPath(file.path)}`, e.code);
}

/** An OptionError about a value of one layer of resolveOptions, named where that layer wrote it: a config file's key, or the flag as typed. */
function inLayer(e: unknown, layer: Record<string, unknown>): unknown {
  if (!(e instanceof OptionError) || e.source) return e;
  const file = writtenAs.get(layer);
  const source = file ? `${file.keys.get(e.key) ?? e.key} in ${quotedPath(file.path)}` : flagsTypedAs.get(layer)?.get(e.key);
  return source ? new OptionError(e.key, e.detail, source, e.code) : e;
}

/** The flags parseArgv read, each as typed where that is not the table's spelling (--img_size for imgSize). */
const flagsTypedAs = new WeakMap<object, Map<string, string>>();

/** Whether a layer of options is the command line's (its flags, or its config file): else a library caller's object. */
const fromCommandLine = (layer: object) => flagsTypedAs.has(layer) || writtenAs.has(layer);

/**
 * The value of `--help=value` (or `--help true|false`), read as an on/off flag's: true shows the help; false
 * (which printed the help and exited 0 as if asked) asks for nothing a bare command line does not, and is refused.
 */
export function helpAsked(value: string, typed = '--help'): 'true' {
  if (coerce('help', { type: 'boolean', help: '' }, value)) return 'true';
  throw new OptionError('help', `${value} asks for nothing: give --help alone to see the options, or leave it out to run the command`, typed);
}

/**
 * Splits argv into `--key value` / `--key=value` / `--flag` (or `--flag true|false`) / `--no-flag` (or `--no-flag true|false`,
 * the negation of that value, as `--no-flag=false` is) options and positionals;
 * `-h` is `--help`.
 * Keys are returned in camelCase.
 */
export function parseArgv(argv: string[], table: OptionTable): { options: Record<string, unknown>; positionals: string[] } {
  const options: Record<string, unknown> = {};
  const positionals: string[] = [];
  const typedAs = new Map<string, string>();
  flagsTypedAs.set(options, typedAs);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positionals.push(...argv.slice(i + 1)); // the usual end of options
      break;
    }
    if (a === '-h') {
      options.help = 'true'; // as the top level takes it ('knn -h' was a missing --checkpoint, 'report -h' a run folder)
      continue;
    }
    if (!a.startsWith('--')) {
      positionals.push(a);
      continue;
    }
    let [k, v] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const typed = `--${k}`;
    k = camel(k);
    const negated = k.startsWith('no') ? k[2]?.toLowerCase() + k.slice(3) : undefined;
    const negatedSpec = negated !== undefined && !specOf(table, k) ? specOf(table, negated) : undefined;
    if (negatedSpec?.type === 'boolean') {
      // an explicit true/false after it is its value, as after --flag ('--no-blur false' left 'false' a positional)
      if (v === undefined && (argv[i + 1] === 'true' || argv[i + 1] === 'false')) v = argv[++i];
      options[negated!] = v === undefined ? false : !coerce(negated!, negatedSpec, v);
      typedAs.set(negated!, typed); // an error about it names --no-attention, as typed, not --attention
      continue;
    }
    // '--no-lr' was an 'unknown option' while --help lists --lr
    if (negatedSpec)
      throw new OptionError(
        negated!,
        `--${kebab(negated!)} takes a value (<${negatedSpec.choices?.join('|') ?? negatedSpec.type}>), and only on/off options have a --no- form: give it a value, or leave it out for its default`,
        typed,
      );
    const spec = specOf(table, k);
    if (!spec && !COMMAND_LINE_ONLY.includes(k)) throw unknownOption(k, Object.keys(table), 'flag', typed);
    if (typed !== `--${kebab(k)}`) typedAs.set(k, typed);
    if (v === undefined) {
      // a flag may be followed by an explicit true/false ('--blur false' must not leave blur on)
      if ((spec?.type === 'boolean' || k === 'help') && (argv[i + 1] === 'true' || argv[i + 1] === 'false')) v = argv[++i];
      else if (spec?.type === 'boolean' || k === 'help') v = 'true';
      else if (i + 1 < argv.length) {
        // '--out-dir --no-resume' would otherwise train into a folder named '--no-resume'
        if (argv[i + 1].startsWith('--'))
          throw new OptionError(k, `expects a value, got the flag ${argv[i + 1]} (write ${typed}=${argv[i + 1]} if that is the value)`, typed);
        v = argv[++i];
      } else throw new OptionError(k, 'expects a value', typed);
    }
    options[k] = k === 'help' ? helpAsked(v, typed) : v;
  }
  return { options, positionals };
}

/**
 * Merges defaults < config file < command line and validates every value of every layer, one a later
 * layer overrides too (an error names the layer's spelling: a config file's key, a flag as typed).
 * Unknown keys are refused, naming the key; an undefined value is no value, a null one is refused.
 */
export function resolveOptions<T extends OptionTable>(table: T, ...layers: Record<string, unknown>[]): Options<T> {
  const out: OptionValues = {};
  for (const [k, spec] of Object.entries(table)) out[k] = spec.default;
  for (const layer of layers) {
    // a caller in plain JS may pass anything: null was 'Cannot convert undefined or null to object'
    if (layer === null || typeof layer !== 'object' || Array.isArray(layer))
      throw new OptionError('options', `expected an object of options, got ${Array.isArray(layer) ? 'an array' : String(layer)}`);
    for (const [k, v] of Object.entries(layer)) {
      if (COMMAND_LINE_ONLY.includes(k)) {
        if (fromCommandLine(layer)) continue; // parseCommand read them (the config file is a layer of its own)
        throw commandLineOnly(k);
      }
      try {
        const spec = specOf(table, k);
        if (!spec) throw unknownOption(k, Object.keys(table), fromCommandLine(layer) ? 'flag' : 'key');
        if (v === undefined) continue; // a library caller's `{ imgSize: o.imgSize }` with none given
        // a number a config file wrote is its text there, as it would be after the flag: a string option's
        // name (1.10, not 1.1), and a number option's notation (YAML reads 0x10 and 0o17 as 16 and 15, which
        // --batch-size 0x10 refuses)
        const text = spec.type !== 'boolean' && typeof v === 'number' ? writtenAs.get(layer)?.numbers.get(k) : undefined;
        out[k] = coerce(k, spec, text ?? v);
      } catch (e) {
        // every layer is checked, an overridden one too (a typo in a config file stays visible), so its
        // error names the layer the value came from: a file's key, not the flag that overrode it
        throw inLayer(e, layer);
      }
    }
  }
  for (const [k, spec] of Object.entries(table)) {
    if (spec.required && out[k] === undefined) throw new OptionError(k, 'is required');
    if (spec.auto && out[k] === 'auto') out[k] = spec.auto(out);
  }
  return out as Options<T>;
}

/**
 * The options a library job receives (README "Library use"): resolved again against its table, so that a
 * plain object is checked as the command line checks it (a missing option takes its default or is named,
 * a wrong value is an OptionError naming it) before the job does any work. Options resolveOptions gave
 * come back equal (every value is already one the table takes; an 'auto' is resolved already): a pass over the keys.
 */
export function jobOptions<T extends OptionTable>(table: T, o: unknown): Options<T> {
  return resolveOptions(table, o as Record<string, unknown>);
}

/**
 * The keys of a library job's options type `O` that its field table `T` does not check (callbacks, a
 * signal, a process group: no option values), each marked with the kind of value it takes (checked as
 * {@link checkJobHooks} checks it), or true where the job checks it itself; tsc wants every such key of `O` listed.
 */
export type OtherKeys<O, T extends OptionTable> = Record<Exclude<keyof O, keyof T>, true | HookKind | readonly HookKind[]>;

/**
 * The options of a library job that are not a command's table (embed, predict, the exports, visualize):
 * the keys of `fields` are checked and filled in as jobOptions does; the job's `others` (see OtherKeys)
 * pass as they are; any other key is refused as resolveOptions refuses one (README "Library use").
 */
export function jobFields<O extends object, T extends OptionTable>(o: O, fields: T, others: OtherKeys<O, T>): O & Options<T> {
  const given = o as Record<string, unknown>;
  if (given === null || typeof given !== 'object' || Array.isArray(given)) resolveOptions(fields, given); // (refuses it)
  refuseUnknownKeys(given, [...Object.keys(fields), ...Object.keys(others)]);
  for (const [k, kinds] of Object.entries(others) as [string, true | HookKind | readonly HookKind[]][])
    if (kinds !== true && Object.hasOwn(given, k)) checkHookValue(k, given[k], kinds);
  const values = Object.fromEntries(Object.keys(fields).flatMap((k) => (Object.hasOwn(given, k) ? [[k, given[k]]] : [])));
  return { ...o, ...resolveOptions(fields, values) };
}

/**
 * Refuses an option given where it changes nothing (its `noEffect` says why), `keys` or every option of the
 * table. Given: other than its default, or than what its 'auto' resolves to; an option without either, set.
 */
export function refuseNoEffectOptions(table: OptionTable, o: OptionValues, keys: readonly string[] = Object.keys(table)): void {
  for (const key of keys) {
    const spec = table[key];
    const why = spec.noEffect?.(o);
    if (why === undefined) continue;
    const unset = spec.auto ? spec.auto(o) : spec.default;
    if (o[key] !== unset) throw new OptionError(key, `has no effect ${why}`);
  }
}

/**
 * Refuses the first key of a library caller's options object that is not one of `known` (an undefined
 * value too: the key was written), as {@link unknownOption} names it: `batch_size` is not `batchSize`,
 * and an option ignored unread would leave the caller believing it took effect.
 */
export function refuseUnknownKeys(given: object, known: readonly string[]): void {
  const unknown = Object.keys(given).find((k) => !known.includes(k));
  if (unknown !== undefined) throw unknownOption(unknown, known, 'key');
}

/**
 * Refuses a library caller's on/off option that is given but not true or false: from plain JS, the
 * string 'false' is truthy, and `train: 'false'` read the training split as the test split.
 */
export function refuseNonBoolean(what: string, key: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'boolean')
    throw new RangeError(`${what}: ${key} must be true or false, got ${JSON.stringify(value) ?? String(value)}`);
}

/** The --help text: one line per option with its type, default and meaning. */
export function formatHelp(usage: string, description: string, table: OptionTable): string {
  const rows = Object.entries(table).map(([k, s]) => {
    const flag = s.type === 'boolean' ? `--${kebab(k)} / --no-${kebab(k)}` : `--${kebab(k)} <${s.choices ? s.choices.join('|') : s.type}>`;
    const def = s.default === undefined ? (s.required ? ' (required)' : '') : ` (default: ${JSON.stringify(s.default)})`;
    return [flag, s.help + def];
  });
  const width = Math.min(44, Math.max(2, ...rows.map(([f]) => f.length)) + 2); // 2 + 2: under --config when it is the only option
  const lines = rows.map(([f, h]) => (f.length + 2 > width ? `  ${f}\n  ${' '.repeat(width)}${h}` : `  ${f.padEnd(width)}${h}`));
  return (
    `${usage}\n\n${description}\n\nOptions:\n  --config <file.json|file.yaml>`.padEnd(0) +
    `\n  ${''.padEnd(width)}read options from a file; flags override it\n${lines.join('\n')}\n`
  );
}

/** What one key of a job's hooks or job options holds (see {@link checkJobHooks}). */
export type HookKind = 'function' | 'boolean' | 'string' | 'number' | 'object' | 'signal' | 'null';

const HOOK_KIND_TEXT: Record<HookKind, string> = {
  function: 'a function',
  boolean: 'true or false',
  string: 'a string',
  number: 'a number',
  object: 'an object',
  signal: "an AbortSignal (an AbortController's .signal)",
  null: 'null',
};

function isHookKind(v: unknown, kind: HookKind): boolean {
  switch (kind) {
    case 'function':
      return typeof v === 'function';
    case 'boolean':
    case 'string':
    case 'number':
      return typeof v === kind;
    case 'object':
      return typeof v === 'object' && v !== null && !Array.isArray(v);
    case 'signal':
      // (by its shape: an AbortSignal of another realm, a worker's or a vm context's, is one too)
      return (
        typeof v === 'object' && v !== null && typeof (v as AbortSignal).aborted === 'boolean' && typeof (v as AbortSignal).addEventListener === 'function'
      );
    case 'null':
      return v === null;
  }
}

/** A value as a message names it: JSON where it has one, else its type (and class: `an object (AbortController)`). */
function describeValue(v: unknown): string {
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) !== Object.prototype && Object.getPrototypeOf(v) !== null)
    return `an object (${(v as object).constructor?.name ?? 'of a class'})`;
  return JSON.stringify(v) ?? String(v);
}

/**
 * Checks a library job's hooks or job options (callbacks, a signal, switches: no option values, which
 * resolveOptions checks), or a data request, before any work, as a job's options are checked: a key not in
 * `table` is refused as an unknown option (`onstep`: did you mean 'onStep'?), and a value of another kind than
 * the table's is an OptionError naming the key (an AbortController given as `signal` failed as a TypeError once
 * the run had taken its folder's lock; `progress: false` where the job takes `null` kept its bars on).
 * An undefined value is no value. `what` names the object in messages: hooks (undefined or null: none), or a
 * request or options, which must be an object.
 */
export function checkJobHooks(given: unknown, table: Record<string, HookKind | readonly HookKind[]>, what: 'hooks' | 'request' | 'options' = 'hooks'): void {
  if (what === 'hooks' && (given === undefined || given === null)) return;
  if (typeof given !== 'object' || given === null || Array.isArray(given))
    throw new OptionError(what, `expected an object of ${what === 'hooks' ? 'hooks' : 'keys'} (${Object.keys(table).join(', ')}), got ${describeValue(given)}`);
  refuseUnknownKeys(given, Object.keys(table));
  for (const [k, v] of Object.entries(given)) checkHookValue(k, v, table[k]);
}

/**
 * Refuses a `signal` that is not an AbortSignal, for the functions that take it among options they check
 * themselves (knnClassifyAsync, extractFeatures): an AbortController given as one never stopped them.
 */
export function checkSignalOption(signal: unknown): void {
  checkHookValue('signal', signal, 'signal');
}

/** Refuses a hook's value `v` (undefined: none) that is not of `kinds`, naming its key `k`. */
function checkHookValue(k: string, v: unknown, kinds: HookKind | readonly HookKind[]): void {
  const all = ([] as HookKind[]).concat(kinds);
  if (v !== undefined && !all.some((kind) => isHookKind(v, kind)))
    throw new OptionError(k, `expected ${all.map((kind) => HOOK_KIND_TEXT[kind]).join(' or ')}, got ${describeValue(v)}`);
}
