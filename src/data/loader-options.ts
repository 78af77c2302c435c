// Checks of the options the DataLoader and the ShardLoader share (LoaderOptions), one set used by both
// constructors: a value an option does not take is a RangeError naming the option and what it takes,
// never clamped or read as another value (seed NaN shuffled as seed 0, labelSmoothing 2 inverted the
// targets, alphaBackground 'red' composited onto black).

import { EXIF_ORIENTATION_POLICIES } from './codecs/orientation';
import type { LoaderOptions } from './loader';
import type { CacheOptions } from './cache';
import type { MixupOptions } from './mix';
import { refuseUnknownKeys } from '../util/options';
import { quotedPath } from '../util/printable';

/** The options of LoaderOptions the ShardLoader takes too. */
type SharedOptions = Omit<LoaderOptions, 'cache' | 'masks' | 'replace'>;

/** The keys of the options both loaders take (tsc wants every one of SharedOptions listed). */
const SHARED_KEYS: Record<keyof SharedOptions, true> = {
  batchSize: true,
  shuffle: true,
  seed: true,
  dropLast: true,
  transforms: true,
  workers: true,
  prefetch: true,
  uint8: true,
  mixup: true,
  labelSmoothing: true,
  numClasses: true,
  dctScaling: true,
  exactDecode: true,
  maxImagePixels: true,
  exifOrientation: true,
  alphaBackground: true,
  persistentWorkers: true,
  maxReplacements: true,
  onWarning: true,
  rank: true,
  worldSize: true,
};

/** The options that take true or false (masks and replace: the DataLoader's own). */
const BOOLEAN_OPTIONS = ['shuffle', 'dropLast', 'uint8', 'dctScaling', 'exactDecode', 'persistentWorkers', 'masks', 'replace'] as const;

/** Which loader checks its options, for the messages. */
type Owner = 'DataLoader' | 'ShardLoader';

/** What the checks need of a dataset: its class names and, for messages, where it came from. */
interface LabelledSource {
  readonly classes: readonly string[];
  readonly root: string;
}

const shown = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : Array.isArray(v) ? 'an array' : String(v));

function refuse(owner: Owner, option: string, takes: string, value: unknown): RangeError {
  return new RangeError(`${owner}: ${option} must be ${takes}, got ${shown(value)}`);
}

const isInteger = (v: unknown, min: number): boolean => Number.isSafeInteger(v) && (v as number) >= min;
const isFraction = (v: unknown): boolean => typeof v === 'number' && v >= 0 && v <= 1;
const isPlainObject = (v: unknown): boolean => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Refuses an option both loaders take with a value it does not take, and a key that is neither one of
 * theirs nor one of the loader's `own` (an OptionError naming it, as the jobs refuse one: `batch_size` was
 * ignored); the constructors call it first.
 */
export function checkLoaderOptions(opts: SharedOptions, owner: Owner, own: readonly string[]): void {
  if (!isPlainObject(opts)) throw new TypeError(`${owner}: options must be an object, got ${shown(opts)}`);
  refuseUnknownKeys(opts, [...Object.keys(SHARED_KEYS), ...own]);
  if (!isInteger(opts.batchSize, 1)) throw refuse(owner, 'batchSize', 'a positive integer', opts.batchSize);
  const integers: Array<[keyof SharedOptions, number, string]> = [
    ['seed', -Infinity, 'an integer'],
    ['workers', 0, 'an integer >= 0'],
    ['prefetch', 1, 'an integer >= 1'],
    ['maxImagePixels', 0, 'an integer >= 0 (0 = no limit)'],
    ['maxReplacements', 0, 'an integer >= 0'],
    ['numClasses', 1, 'an integer >= 1'],
  ];
  for (const [option, min, takes] of integers) {
    const v = opts[option];
    if (v !== undefined && !isInteger(v, min)) throw refuse(owner, option, takes, v);
  }
  // (a truthy string or number was read as true: dropLast 'false' dropped the last batch, shuffle 0 shuffled)
  for (const option of BOOLEAN_OPTIONS) {
    const v = (opts as Record<string, unknown>)[option];
    if (v !== undefined && typeof v !== 'boolean') throw refuse(owner, option, 'true or false', v);
  }
  if (opts.onWarning !== undefined && typeof opts.onWarning !== 'function') throw refuse(owner, 'onWarning', 'a function', opts.onWarning);
  if (opts.labelSmoothing !== undefined && !isFraction(opts.labelSmoothing)) throw refuse(owner, 'labelSmoothing', 'a number in [0, 1]', opts.labelSmoothing);
  if (opts.exifOrientation !== undefined && !EXIF_ORIENTATION_POLICIES.includes(opts.exifOrientation))
    throw refuse(owner, 'exifOrientation', `one of ${EXIF_ORIENTATION_POLICIES.map(shown).join(', ')}`, opts.exifOrientation);
  const bg = opts.alphaBackground;
  if (bg !== undefined && bg !== 'white' && bg !== 'black' && !(Number.isInteger(bg) && (bg as number) <= 255 && (bg as number) >= 0))
    throw refuse(owner, 'alphaBackground', "'white', 'black' or a grey level: an integer in [0, 255]", bg);
  if (opts.mixup !== undefined) checkMixup(opts.mixup, owner);
}

/** The keys of MixupOptions (tsc wants every one listed). */
const MIXUP_KEYS: Record<keyof MixupOptions, true> = {
  mixupAlpha: true,
  cutmixAlpha: true,
  prob: true,
  switchProb: true,
  labelSmoothing: true,
  correctLam: true,
};

function checkMixup(mixup: unknown, owner: Owner): void {
  if (!isPlainObject(mixup)) throw refuse(owner, 'mixup', 'an object of mixup/cutmix settings', mixup);
  const m = mixup as Record<string, unknown>;
  refuseUnknownKeys(m, Object.keys(MIXUP_KEYS));
  for (const alpha of ['mixupAlpha', 'cutmixAlpha']) {
    const v = m[alpha];
    if (v !== undefined && !(typeof v === 'number' && v >= 0 && v < Infinity)) throw refuse(owner, `mixup.${alpha}`, 'a number >= 0 (0 = off)', v);
  }
  for (const fraction of ['prob', 'switchProb', 'labelSmoothing']) {
    const v = m[fraction];
    if (v !== undefined && !isFraction(v)) throw refuse(owner, `mixup.${fraction}`, 'a number in [0, 1]', v);
  }
  if (m.correctLam !== undefined && typeof m.correctLam !== 'boolean') throw refuse(owner, 'mixup.correctLam', 'true or false', m.correctLam);
}

/** Refuses a `cache` option (the DataLoader's) that is neither a boolean nor `{ maxBytes }` with a number of bytes >= 0. */
export function checkCacheOption(cache: boolean | CacheOptions | undefined): void {
  if (cache === undefined || typeof cache === 'boolean') return;
  if (!isPlainObject(cache)) throw refuse('DataLoader', 'cache', 'true, false or { maxBytes }', cache);
  refuseUnknownKeys(cache, ['maxBytes'] satisfies (keyof CacheOptions)[]);
  const max = cache.maxBytes;
  if (max !== undefined && !(typeof max === 'number' && max >= 0)) throw refuse('DataLoader', 'cache.maxBytes', 'a number of bytes >= 0', max);
}

/** Refuses an epoch to iterate that is not an integer >= 0 (NaN had batches of epoch NaN with epoch 0's order). */
export function checkEpoch(epoch: number, owner: Owner): void {
  if (!isInteger(epoch, 0)) throw refuse(owner, 'epoch', 'an integer >= 0', epoch);
}

/**
 * The classes of the soft targets (`numClasses`, default: the dataset's classes). With mixup or label smoothing
 * the dataset must have labels, and every one of them a target: a label ≥ numClasses would have none.
 */
export function targetClasses(opts: Pick<LoaderOptions, 'numClasses' | 'mixup' | 'labelSmoothing'>, dataset: LabelledSource, owner: Owner): number {
  const numClasses = opts.numClasses ?? dataset.classes.length;
  if (!opts.mixup && !opts.labelSmoothing) return numClasses;
  if (numClasses < 1) throw new Error(`${owner}: mixup/label smoothing need class labels, but ${quotedPath(dataset.root)} is unlabelled`);
  if (numClasses < dataset.classes.length)
    throw new RangeError(
      `${owner}: numClasses ${numClasses} is fewer than the ${dataset.classes.length} classes of ${quotedPath(dataset.root)}: label ${numClasses} ('${dataset.classes[numClasses]}') would have no soft target`,
    );
  return numClasses;
}

/** The grey level transparent pixels are composited onto (`alphaBackground`, checked; default white). */
export function backgroundLevel(bg: LoaderOptions['alphaBackground']): number {
  return bg === undefined || bg === 'white' ? 255 : bg === 'black' ? 0 : bg;
}
