// CIFAR-10/100 in the standard binary format, and CIFAR-10 as JPEG folders extracted from an
// archive (`cifar10/{train,test}/<class>/*.jpg`, e.g. ../shared/data/cifar10-jpeg.tar.gz) into a
// cache directory keyed by the archive's content, with the system `tar` (never into the repository).

import { refuseNonBoolean, refuseUnknownKeys } from '../../util/options';
import { closeSync, existsSync, lstatSync, openSync, readSync, readdirSync, statSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, join, resolve, dirname } from 'node:path';
import { homedir, userInfo } from 'node:os';
import { spawnSync } from 'node:child_process';
import { sharedInt32 } from '../dataset';
import { MemoryDataset, uniformImages } from './memory';
import { namesOfDeadProcesses } from '../../util/process-alive';
import { imageFolder, type FolderOptions, type ImageFolderDataset } from './folder';
import { makeFolder } from '../../util/make-folder';
import { readRegularFile } from '../../util/regular-file';
import { quotedPath } from '../../util/printable';

/**
 * CIFAR-10's class names in label order (0 airplane … 9 truck): the names {@link cifarBinary} gives CIFAR-10
 * when its folder has no batches.meta.txt.
 */
export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

/** Options of {@link cifarBinary}: the split and, for CIFAR-100, fine or coarse labels. */
export interface CifarBinaryOptions {
  /** Training split (default) or test split. */
  train?: boolean;
  /** CIFAR-100: use the 100 fine labels (default) or the 20 coarse labels (CIFAR-10, which has no coarse labels, refuses 'coarse'). */
  labels?: 'fine' | 'coarse';
}

/** The bytes of a regular file (a FIFO would block the read for ever), errors naming the format. */
function readCifarFile(path: string): Buffer {
  try {
    return readRegularFile(path);
  } catch (e) {
    throw new Error(`CIFAR binary: ${(e as Error).message}`, { cause: e });
  }
}

function readLines(path: string): string[] | null {
  if (!existsSync(path)) return null;
  return readCifarFile(path)
    .toString('utf8')
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/**
 * CIFAR-10 (`data_batch_1..5.bin`, `test_batch.bin`) or CIFAR-100 (`train.bin`, `test.bin`) binary
 * files. `root` may be the folder holding them or its parent (cifar-10-batches-bin /
 * cifar-100-binary).
 */
export function cifarBinary(root: string, opts: CifarBinaryOptions = {}): MemoryDataset {
  refuseUnknownKeys(opts, ['train', 'labels'] satisfies (keyof CifarBinaryOptions)[]);
  refuseNonBoolean('CIFAR binary', 'train', opts.train);
  // (a caller in plain JS: 'Coarse' or 'coarse ' was read as the fine labels)
  if (opts.labels !== undefined && opts.labels !== 'fine' && opts.labels !== 'coarse')
    throw new RangeError(`CIFAR binary: labels must be 'fine' or 'coarse', got ${JSON.stringify(opts.labels)}`);
  root = resolve(root);
  const train = opts.train ?? true;
  const candidates = [root, join(root, 'cifar-10-batches-bin'), join(root, 'cifar-100-binary')];
  let dir: string | null = null;
  let variant: 10 | 100 = 10;
  for (const c of candidates) {
    if (existsSync(join(c, train ? 'data_batch_1.bin' : 'test_batch.bin'))) {
      dir = c;
      variant = 10;
      break;
    }
    if (existsSync(join(c, train ? 'train.bin' : 'test.bin'))) {
      dir = c;
      variant = 100;
      break;
    }
  }
  if (!dir) {
    throw new Error(
      `CIFAR binary: no ${train ? 'data_batch_1.bin (CIFAR-10) or train.bin (CIFAR-100)' : 'test_batch.bin (CIFAR-10) or test.bin (CIFAR-100)'} found in ${quotedPath(root)} (expected the extracted cifar-10-batches-bin or cifar-100-binary folder)`,
    );
  }
  // CIFAR-10 has one label per image: 'coarse' gave its 10 classes, not the 20 superclasses asked for
  if (variant === 10 && opts.labels === 'coarse')
    throw new RangeError(`CIFAR binary: ${quotedPath(dir)} holds CIFAR-10, which has no coarse labels (labels: 'coarse' is CIFAR-100's 20 superclasses)`);
  let files: string[];
  if (variant === 10) {
    files = train ? [1, 2, 3, 4, 5].map((k) => join(dir!, `data_batch_${k}.bin`)) : [join(dir, 'test_batch.bin')];
  } else files = [join(dir, train ? 'train.bin' : 'test.bin')];
  // a partial copy (an interrupted download or extraction) trained on a fraction of the set without a
  // word; refused after the files present are read, so that a broken one is named first
  const missing = files.filter((f) => !existsSync(f)).map((f) => basename(f));
  files = files.filter((f) => existsSync(f));
  const rec = variant === 10 ? 3073 : 3074;
  const buffers = files.map((f) => {
    const b = readCifarFile(f);
    if (b.length === 0 || b.length % rec !== 0) {
      throw new Error(
        `CIFAR binary: ${f} has ${b.length} bytes, expected a multiple of ${rec} (1${variant === 100 ? '+1' : ''} label byte + 3072 pixel bytes per image)`,
      );
    }
    return b;
  });
  const n = buffers.reduce((s, b) => s + b.length / rec, 0);
  const mem = uniformImages(n, 32, 32, 3);
  const labels = sharedInt32(n);
  const coarse = opts.labels === 'coarse';
  const nc = variant === 10 ? 10 : coarse ? 20 : 100;
  let k = 0;
  buffers.forEach((b, f) => {
    for (let o = 0; o < b.length; o += rec, k++) {
      const label = variant === 10 ? b[o] : coarse ? b[o] : b[o + 1];
      if (label >= nc) {
        throw new Error(
          `CIFAR binary: ${quotedPath(files[f])}: image ${o / rec} has label ${label}, but CIFAR-${variant}${variant === 100 ? (coarse ? ' (coarse)' : ' (fine)') : ''} has ${nc} classes (not a CIFAR batch file?)`,
        );
      }
      labels[k] = label;
      mem.data.set(b.subarray(o + rec - 3072, o + rec), k * 3072);
    }
  });
  // A names file with fewer names than classes would leave labels without a class: the numbered or built-in names then.
  const names = readLines(join(dir, variant === 10 ? 'batches.meta.txt' : coarse ? 'coarse_label_names.txt' : 'fine_label_names.txt'));
  const classes = names && names.length >= nc ? names.slice(0, nc) : variant === 10 ? [...CIFAR10_CLASSES] : Array.from({ length: nc }, (_, i) => String(i));
  if (missing.length) {
    throw new Error(
      `CIFAR binary: ${quotedPath(dir)} has data_batch_1.bin but not ${missing.join(', ')}: CIFAR-10's training set is data_batch_1..5.bin (50,000 images; an incomplete download or extraction?)`,
    );
  }
  return new MemoryDataset(`${dir} (CIFAR-${variant} ${train ? 'train' : 'test'})`, mem, labels, classes, [32, 32]);
}

// ------------------------------------------------------------------ JPEG archive

/** The repository root (folder holding package.json) above this file, or cwd. */
function repoRoot(): string {
  let d = __dirname;
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(d, 'package.json'))) return d;
    const up = dirname(d);
    if (up === d) break;
    d = up;
  }
  return process.cwd();
}

/** Default location of cifar10-jpeg.tar.gz ($SEMAIM_CIFAR10_TAR, else ../shared/data next to the repo). */
export function defaultCifar10Archive(): string {
  if (process.env.SEMAIM_CIFAR10_TAR) return resolve(process.env.SEMAIM_CIFAR10_TAR);
  const root = repoRoot();
  const candidates = [
    join(root, '..', 'shared', 'data', 'cifar10-jpeg.tar.gz'),
    join(root, 'shared', 'data', 'cifar10-jpeg.tar.gz'),
    join(process.cwd(), '..', 'shared', 'data', 'cifar10-jpeg.tar.gz'),
  ];
  return resolve(candidates.find((c) => existsSync(c)) ?? candidates[0]);
}

/** Default cache folder for extracted data ($SEMAIM_DATA_CACHE, else ~/.cache/semaim/data). */
export function defaultDataCache(): string {
  // an empty variable is an unset one: '' resolved to the current folder, and a cache grew in whatever folder a
  // command ran from (HOME="" in some containers and service units; the account's home is then the passwd entry's)
  if (process.env.SEMAIM_DATA_CACHE) return resolve(process.env.SEMAIM_DATA_CACHE);
  return resolve(homedir() || userInfo().homedir, '.cache', 'semaim', 'data');
}

/** SHA-256 of a file's content (streamed in 4 MiB reads; CIFAR-10's 19 MB archive takes ~0.1 s). */
export function fileSha256(path: string): string {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(4 << 20);
  const fd = openSync(path, 'r');
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * Removes the temporary folders of extractions whose process died (a signal ends tar and node before any cleanup).
 * As far as it can: a kill -9 of node alone leaves its tar writing on into its folder for a while, whose removal
 * then fails (ENOTEMPTY); that folder is no reason to fail this extraction, and a later one removes it.
 */
function removeDeadExtractions(cacheDir: string): void {
  for (const name of namesOfDeadProcesses(cacheDir, /^\.extract-(\d+)-\d+$/)) {
    try {
      rmSync(join(cacheDir, name), { recursive: true, force: true });
    } catch {
      /* still written by the orphaned tar of that process: left for a later extraction */
    }
  }
}

/**
 * Extracts `archive` (a .tar.gz holding `<top>/`) with the system tar into
 * `cacheDir/<top>-<first 16 hex digits of the archive's SHA-256>` unless that folder is already
 * complete (marked by `.complete` inside it). The cache is keyed by the archive's content, so
 * another or a changed archive never reuses a cache extracted from a different one, and a missing
 * archive is an error even when some cache exists. Extraction goes to a temporary folder, is marked
 * complete there and renamed into place, so an interrupted run never leaves a half folder that looks
 * complete, and processes extracting at once never remove the folder another one reads (commitExtraction).
 * Returns the path of the extracted `<top>` folder.
 */
export function extractArchive(archive: string, cacheDir: string, top: string): string {
  if (!existsSync(archive)) {
    throw new Error(`archive ${quotedPath(archive)} not found (expected a .tar.gz containing ${top}/; set SEMAIM_CIFAR10_TAR or pass its path)`);
  }
  if (!statSync(archive).isFile()) throw new Error(`archive ${quotedPath(archive)} is not a file (expected a .tar.gz containing ${top}/)`);
  const sha256 = fileSha256(archive);
  const target = join(cacheDir, `${top}-${sha256.slice(0, 16)}`);
  const marker = join(target, '.complete');
  if (existsSync(marker)) return target;
  const tmp = join(cacheDir, `.extract-${process.pid}-${Date.now()}`);
  try {
    makeFolder(cacheDir);
    removeDeadExtractions(cacheDir);
    makeFolder(tmp);
  } catch (e) {
    // the default cache is under $HOME, which may be read-only (a service account, a container)
    throw new Error(
      `cannot extract ${quotedPath(archive)} into the data cache ${quotedPath(cacheDir)} (${(e as Error).message}): set SEMAIM_DATA_CACHE to a writable folder`,
      {
        cause: e,
      },
    );
  }
  try {
    // an absolute path: GNU tar takes a name with a ':' before its first '/' ('cifar:v1.tar.gz') for a remote host's file
    const r = spawnSync('tar', ['-xzf', resolve(archive), '-C', tmp], { encoding: 'utf8' });
    if (r.error) throw new Error(`cannot run tar to extract ${quotedPath(archive)}: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`tar failed to extract ${quotedPath(archive)}: ${(r.stderr || '').trim().split('\n')[0]}`);
    const extracted = join(tmp, top);
    // a folder of the archive's own, not a link it holds to a folder elsewhere (the marker goes into it)
    if (!lstatSync(extracted, { throwIfNoEntry: false })?.isDirectory()) {
      const found =
        readdirSync(tmp)
          .map((n) => (lstatSync(join(tmp, n)).isSymbolicLink() ? `${n}, a symbolic link` : n))
          .join(', ') || 'nothing';
      throw new Error(`archive ${quotedPath(archive)} does not contain ${top}/ (found: ${found})`);
    }
    // a new file: what the archive put at the name (a link to a file elsewhere) goes, never written through
    const completeMark = join(extracted, '.complete');
    rmSync(completeMark, { recursive: true, force: true });
    writeFileSync(completeMark, JSON.stringify({ archive: resolve(archive), sha256, extracted: new Date().toISOString() }) + '\n', { flag: 'wx' });
    commitExtraction(extracted, target);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return target;
}

/**
 * Moves the complete folder `extracted` (its `.complete` written) to `target`. Processes started together
 * (the ablation's) extract at once: the first rename wins, and a later one finds a complete `target` that
 * others are reading already, so it keeps that one and its own copy is removed with its temporary folder.
 * A `target` without `.complete` (a rename of older versions, or a removal, that was interrupted) is replaced:
 * moved into this extraction's temporary folder first, which one process alone can do, then removed with it.
 * (Removed in place, processes replacing it at once failed with ENOTEMPTY, and one removed the folder
 * another had just put there and returned.)
 */
export function commitExtraction(extracted: string, target: string): void {
  const aside = join(dirname(extracted), 'replaced'); // (removed with the temporary folder, also after a kill)
  for (let attempt = 1; ; attempt++) {
    try {
      renameSync(extracted, target);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || attempt > 5) throw e;
    }
    if (existsSync(join(target, '.complete'))) return;
    try {
      renameSync(target, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // moved away by another process meanwhile
      throw e;
    }
    // a complete one another process put in place right after the look above goes back, where its readers find it
    if (existsSync(join(aside, '.complete'))) {
      try {
        renameSync(aside, target);
      } catch {
        /* another complete one is in place now */
      }
    }
    rmSync(aside, { recursive: true, force: true });
  }
}

/**
 * Options of {@link cifar10Jpeg}: the split (default 'train'), the archive (default {@link defaultCifar10Archive}),
 * the cache folder it is extracted into (default {@link defaultDataCache}), and the folder-listing options.
 */
export interface Cifar10JpegOptions extends FolderOptions {
  split?: 'train' | 'test';
  archive?: string;
  cacheDir?: string;
}

/** Path of the extracted CIFAR-10 JPEG folder (extracting on first use). */
export function ensureCifar10Jpeg(opts: { archive?: string; cacheDir?: string } = {}): string {
  return extractArchive(opts.archive ?? defaultCifar10Archive(), opts.cacheDir ?? defaultDataCache(), 'cifar10');
}

/** CIFAR-10 as an ImageFolder of JPEGs (train: 50 000, test: 10 000). */
export function cifar10Jpeg(opts: Cifar10JpegOptions = {}): ImageFolderDataset {
  refuseUnknownKeys(opts, ['split', 'archive', 'cacheDir', 'extensions', 'onWarning'] satisfies (keyof Cifar10JpegOptions)[]);
  const dir = ensureCifar10Jpeg(opts);
  return imageFolder(join(dir, opts.split ?? 'train'), { extensions: opts.extensions, onWarning: opts.onWarning });
}
