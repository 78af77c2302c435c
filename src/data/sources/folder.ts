// Image folders: `ImageFolder` (one sub-folder per class, like torchvision) and an unlabelled
// folder of images. Only the listing happens here; decoding happens in the loader's workers.

import { refuseNonBoolean, refuseUnknownKeys } from '../../util/options';
import { lstatSync, readdirSync, statSync, type Dirent } from 'node:fs';
import { basename, dirname, join, resolve, extname } from 'node:path';
import { packStrings, sharedInt32, unpackString, type Dataset, type FilesSpec } from '../dataset';
import { printable, quotedPath } from '../../util/printable';
import { checkSampleIndex } from '../sample-index';
import { stderrLine } from '../../util/console-line';

/** File extensions listed (case-insensitive); files are identified by content when decoded. */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.jfif', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff', '.avif', '.ppm', '.pgm'];

/**
 * Listing options of {@link imageFolder} and {@link imageFiles}: which extensions count as images, and where
 * warnings go.
 */
export interface FolderOptions {
  /** Extensions to list, each with its dot and case-insensitive (default IMAGE_EXTENSIONS); 'jpg' or '.tar.gz' is refused. */
  extensions?: readonly string[];
  /** Called with warnings found while listing (default: stderr). */
  onWarning?: (line: string) => void;
}

/** The keys of FolderOptions (tsc wants every one listed): any other is refused, never ignored. */
const FOLDER_OPTION_KEYS: Record<keyof FolderOptions, true> = { extensions: true, onWarning: true };

/** A UTF-16 code unit moved so that surrogates (characters above U+FFFF) sort after U+E000-U+FFFF, as their code points do. */
function codePointRank(unit: number): number {
  return unit >= 0xe000 ? unit - 0x800 : unit >= 0xd800 ? unit + 0x2000 : unit;
}

/**
 * Python's sorted() order of names: by code point (the order of their UTF-8 bytes). JavaScript's `<` compares
 * UTF-16 code units, which puts U+10000 and above before U+E000-U+FFFF.
 */
function codePointOrder(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

/**
 * The extensions to list, lower-cased. Each is compared with a name's extension (its last '.' and what
 * follows): 'jpg' (torchvision's suffix test takes it) or '.tar.gz' never equals one, and left out that
 * kind of file without a word while the others were listed.
 */
function extensionSet(extensions: readonly string[] = IMAGE_EXTENSIONS): Set<string> {
  if (!Array.isArray(extensions) || extensions.length === 0)
    throw new RangeError(
      `folder listing: extensions must be a non-empty list such as ['.jpg', '.png'], got ${printable(JSON.stringify(extensions) ?? String(extensions))}`,
    );
  for (const e of extensions) {
    if (typeof e !== 'string' || !/^\.[^./\\]+$/.test(e))
      throw new RangeError(
        `folder listing: extension ${printable(JSON.stringify(e) ?? String(e))} is not a file extension: each is a '.' and the characters after a name's last '.', such as '.jpg'`,
      );
  }
  return new Set(extensions.map((e) => e.toLowerCase()));
}

function checkRoot(root: string, what: string, expected: string): void {
  let st;
  try {
    st = statSync(root);
  } catch {
    throw new Error(`${what}: ${quotedPath(root)} does not exist (expected ${expected})`);
  }
  if (!st.isDirectory()) throw new Error(`${what}: ${quotedPath(root)} is not a folder (expected ${expected})`);
}

/** What a listing left out: symlinks that lead back into a folder being listed, other paths to a folder listed already, and entries that cannot be read. */
export interface ListingReport {
  /** Links (relative to the root) to a folder they are inside of; each is listed once, not followed. */
  symlinkLoops: string[];
  /** Paths (relative to the root) to a folder listed already through another path (a link beside it, a second link to it); not followed. */
  aliases: string[];
  /** Entries (relative to the root) that cannot be stat'ed: dangling links, file symlink loops (code: ENOENT, ELOOP, ...). */
  unreadable: Array<{ path: string; code: string }>;
}

interface Walk {
  exts: Set<string>;
  /** The images of each folder listed, by name; in the order walked, put in torchvision's by imagesInTorchvisionOrder. */
  folders: Array<{ rel: string; images: string[] }>;
  report: ListingReport;
  /** dev:ino of the folders on the current path, to detect links back into them. */
  ancestors: Set<string>;
  /** dev:ino of every folder listed (or, for ImageFolder, to be listed as a class): each is listed once. */
  visited: Set<string>;
  /**
   * ImageFolder's first pass: symlinks to folders are put here to be followed after every class's own folders
   * are listed, so that a folder is listed where it lies, not through a link to it that is walked first.
   */
  deferred: DeferredLink[] | null;
}

/** A symlink to a folder met in ImageFolder's first pass, with the folders on its path then. */
interface DeferredLink {
  path: string;
  rel: string;
  ancestors: Set<string>;
}

/**
 * An entry's name as Node shows it (bytes that are not UTF-8 as U+FFFD), and whether its bytes are not
 * UTF-8: no path built from such a name opens the file. Decided on the bytes, since a valid name may
 * hold U+FFFD itself and equal an invalid sibling's shown name.
 */
function entryName(raw: Buffer): { name: string; undecodable: boolean } {
  const name = raw.toString('utf8');
  return { name, undecodable: name.includes('\uFFFD') && !Buffer.from(name, 'utf8').equals(raw) };
}

function folderId(path: string): string {
  const st = statSync(path);
  return `${st.dev}:${st.ino}`;
}

/** Recursively lists image files under dir (following symlinks, but not around a loop), relative to the root, into walk.folders. */
function listImages(dir: string, rel: string, walk: Walk): void {
  let raw: Dirent<Buffer>[];
  try {
    raw = readdirSync(dir, { withFileTypes: true, encoding: 'buffer' });
  } catch (e) {
    throw new Error(`cannot list ${quotedPath(dir)}: ${printable((e as Error).message)}`, { cause: e });
  }
  const entries = raw.map((ent) => ({ ent, ...entryName(ent.name) })).sort((a, b) => codePointOrder(a.name, b.name));
  const images: string[] = [];
  walk.folders.push({ rel, images });
  for (const { ent, name, undecodable } of entries) {
    if (name.startsWith('.')) continue;
    const r = rel ? `${rel}/${name}` : name;
    if (undecodable) {
      walk.report.unreadable.push({ path: r, code: 'EILSEQ' });
      continue;
    }
    const path = join(dir, name);
    let isDir = ent.isDirectory();
    let isFile = ent.isFile();
    let isLink = ent.isSymbolicLink();
    if (isLink || (!isDir && !isFile)) {
      try {
        // a file system that gives no entry types (DT_UNKNOWN): whether it is a link, for ImageFolder's first pass
        if (!isLink && walk.deferred) isLink = lstatSync(path).isSymbolicLink();
        const st = statSync(path);
        isDir = st.isDirectory();
        isFile = st.isFile();
      } catch (e) {
        walk.report.unreadable.push({ path: r, code: (e as NodeJS.ErrnoException).code ?? 'error' });
        continue;
      }
    }
    if (isDir) {
      if (walk.deferred && isLink) walk.deferred.push({ path, rel: r, ancestors: new Set(walk.ancestors) });
      else listFolder(path, r, walk);
    } else if (isFile && walk.exts.has(extname(name).toLowerCase())) images.push(r);
  }
}

/** Lists the folder at path (rel below the root) unless it is on the current path (a loop) or listed already. */
function listFolder(path: string, rel: string, walk: Walk): void {
  const id = folderId(path);
  if (walk.ancestors.has(id)) {
    walk.report.symlinkLoops.push(rel);
    return;
  }
  // without this, links to one folder from each of n nested folders would list its images 2^n times
  if (walk.visited.has(id)) {
    walk.report.aliases.push(rel);
    return;
  }
  walk.visited.add(id);
  walk.ancestors.add(id);
  listImages(path, rel, walk);
  walk.ancestors.delete(id);
}

/**
 * Appends the images listed to out in torchvision's ImageFolder order, `for root, _, fnames in
 * sorted(os.walk(dir)): for fname in sorted(fnames)`: folders by their whole path ('a/b-c' before 'a/b/c', since
 * '-' < '/'), then each folder's own images by name; and empties walk.folders.
 */
function imagesInTorchvisionOrder(walk: Walk, out: string[]): void {
  walk.folders.sort((a, b) => codePointOrder(a.rel, b.rel));
  for (const { images } of walk.folders) for (const image of images) out.push(image);
  walk.folders = [];
}

function newWalk(root: string, exts: Set<string>, report: ListingReport): Walk {
  const id = folderId(root);
  return { exts, folders: [], report, ancestors: new Set([id]), visited: new Set([id]), deferred: null };
}

const REASONS: Record<string, string> = { ELOOP: 'symlink loop', ENOENT: 'dangling link', EILSEQ: 'its name is not valid UTF-8: rename it' };

/** One warning per symlink loop and one for the unreadable entries of a listing. */
function warnListing(root: string, report: ListingReport, warn: (line: string) => void): void {
  for (const l of report.symlinkLoops) {
    warn(`data: warning: ${printable(join(root, l))} is a symlink loop (it leads back into a folder that contains it); listed once, not followed`);
  }
  const a = report.aliases.length;
  if (a > 0) {
    warn(
      `data: warning: ${quotedPath(root)}: ${a} path${a === 1 ? ' leads' : 's lead'} to a folder listed already through a symlink, not listed again: ` +
        `${report.aliases.slice(0, 5).map(printable).join(', ')}${a > 5 ? ', ...' : ''}`,
    );
  }
  const n = report.unreadable.length;
  if (n > 0) {
    const what = (u: { path: string; code: string }): string => `${printable(u.path)} (${REASONS[u.code] ?? u.code})`;
    warn(
      `data: warning: ${quotedPath(root)}: ${n} entr${n === 1 ? 'y' : 'ies'} cannot be read and ${n === 1 ? 'is' : 'are'} left out: ` +
        `${report.unreadable.slice(0, 5).map(what).join(', ')}${n > 5 ? ', ...' : ''}`,
    );
  }
}

function stderrWarn(line: string): void {
  stderrLine(printable(line));
}

class FilesDataset implements Dataset {
  readonly spec: FilesSpec;
  readonly length: number;
  readonly fixedSize = null;
  readonly hasMasks = false;

  constructor(
    readonly root: string,
    paths: string[],
    labels: Int32Array | null,
    readonly classes: readonly string[],
    /** Symlink loops and unreadable entries met while listing (each also reported as a warning). */
    readonly listing: ListingReport = { symlinkLoops: [], aliases: [], unreadable: [] },
  ) {
    this.spec = { kind: 'files', root, paths: packStrings(paths), labels };
    this.length = paths.length;
  }

  label(i: number): number {
    checkSampleIndex(i, this);
    return this.spec.labels ? this.spec.labels[i] : -1;
  }

  name(i: number): string {
    return join(this.root, this.relativePath(i));
  }

  /** Path of sample i relative to the root. */
  relativePath(i: number): string {
    checkSampleIndex(i, this);
    return unpackString(this.spec.paths, i);
  }
}

/**
 * A dataset of image files listed from a folder ({@link imageFolder}, {@link imageFiles}, cifar10Jpeg), decoded
 * by the loader's workers; it adds `relativePath(i)` and the `listing` report of entries left out.
 */
export type ImageFolderDataset = FilesDataset;

/**
 * Whether `root/name` is a split of class folders ('labelled': it holds a sub-folder), a folder of images
 * alone ('unlabelled': Kaggle's ImageNet test/), or no folder ('none'). A folder that cannot be listed counts
 * as labelled: ImageFolder names why it cannot be read.
 */
export function splitKind(root: string, name: string): 'labelled' | 'unlabelled' | 'none' {
  const dir = join(root, name);
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return 'none';
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 'labelled';
  }
  const isFolder = (e: Dirent): boolean => {
    if (e.isDirectory()) return true;
    if (e.isFile()) return false;
    return !!statSync(join(dir, e.name), { throwIfNoEntry: false })?.isDirectory(); // a link, or no entry type
  };
  return entries.some((e) => !e.name.startsWith('.') && isFolder(e)) ? 'labelled' : 'unlabelled';
}

/**
 * splitKind of `root`'s sub-folders, each listed at most once (a Kaggle test/ holds 100 000 images: its listing
 * is read once, however many questions a caller asks about it).
 */
export function splitKinds(root: string): (name: string) => 'labelled' | 'unlabelled' | 'none' {
  const known = new Map<string, 'labelled' | 'unlabelled' | 'none'>();
  return (name) => {
    let k = known.get(name);
    if (k === undefined) known.set(name, (k = splitKind(root, name)));
    return k;
  };
}

/** The folder names of a dataset's splits: the test split is test/ or val/. */
export const SPLIT_NAMES = ['train', 'test', 'val'];

/** Whether root holds a (non-hidden) folder not named like a split. */
export function hasOtherFolder(root: string): boolean {
  let entries: Dirent[];
  try {
    entries = readdirSync(root, { withFileTypes: true });
  } catch {
    return false;
  }
  return entries.some(
    (e) =>
      !e.name.startsWith('.') &&
      !SPLIT_NAMES.includes(e.name) &&
      (e.isDirectory() || (!e.isFile() && !!statSync(join(root, e.name), { throwIfNoEntry: false })?.isDirectory())),
  );
}

/**
 * The split folders of `root` when it is a split layout rather than class folders: one of train/, test/, val/
 * holds class folders (other folders beside them, such as __MACOSX/, do not change that: the datasets read
 * train/ of such a root as its training split); otherwise null.
 */
export function splitLayout(root: string): string[] | null {
  const kind = splitKinds(root);
  const present = SPLIT_NAMES.filter((n) => kind(n) !== 'none');
  return present.some((n) => kind(n) === 'labelled') ? present : null;
}

/**
 * torchvision-style ImageFolder: `root/<class>/**\/<image>`; classes are the sorted sub-folder
 * names and labels their indices. Samples are in torchvision's order (sample i is the same image there): class by
 * class, each class's folders by their path, each folder's images by name, names by code point.
 */
export function imageFolder(root: string, opts: FolderOptions = {}): ImageFolderDataset {
  refuseUnknownKeys(opts, Object.keys(FOLDER_OPTION_KEYS));
  root = resolve(root);
  const expected = 'a folder with one sub-folder per class, e.g. <root>/cat/0001.jpg';
  checkRoot(root, 'ImageFolder', expected);
  const exts = extensionSet(opts.extensions);
  const paths: string[] = [];
  const labelList: number[] = [];
  const empty: string[] = [];
  const report: ListingReport = { symlinkLoops: [], aliases: [], unreadable: [] };
  const walk = newWalk(root, exts, report);
  const classes: string[] = [];
  const classIds: string[] = [];
  const rootBytes = Buffer.from(`${root}/`);
  const entries = readdirSync(root, { encoding: 'buffer' })
    .map((raw) => ({ raw, ...entryName(raw) }))
    .filter((e) => !e.name.startsWith('.'))
    .sort((a, b) => codePointOrder(a.name, b.name));
  for (const { raw, name, undecodable } of entries) {
    let st;
    try {
      // by its bytes: a file at the root that no string path opens is still no class
      st = statSync(Buffer.concat([rootBytes, raw]));
    } catch (e) {
      report.unreadable.push({ path: name, code: (e as NodeJS.ErrnoException).code ?? 'error' });
      continue;
    }
    if (!st.isDirectory()) continue;
    if (undecodable) {
      // left out, every later class index would shift against torchvision's ImageFolder
      throw new Error(`ImageFolder: ${printable(join(root, name))} has a name that is not valid UTF-8, which semaim cannot open: rename it`);
    }
    const id = `${st.dev}:${st.ino}`;
    // a "class" that links back to the root is a loop, not a class
    if (walk.ancestors.has(id)) report.symlinkLoops.push(name);
    else {
      classes.push(name);
      classIds.push(id);
    }
  }
  if (classes.length === 0) throw new Error(`ImageFolder: ${quotedPath(root)} has no class sub-folders (expected ${expected})`);
  const warn = opts.onWarning ?? stderrWarn;
  // a class folder's images are listed in their class, not in another class that links to the folder
  for (const id of classIds) walk.visited.add(id);
  // and so are the images of its sub-folders: every class's own folders are listed first, the links to
  // folders after (a link from a class walked earlier to one of them is another path to a folder listed)
  const listed = new Set<string>();
  const classWalks = classes.map((cls, k) => {
    const id = classIds[k];
    if (listed.has(id)) return null;
    listed.add(id);
    walk.deferred = [];
    walk.ancestors.add(id);
    listImages(join(root, cls), cls, walk);
    walk.ancestors.delete(id);
    const own = { folders: walk.folders, links: walk.deferred };
    walk.folders = [];
    return own;
  });
  walk.deferred = null;
  classes.forEach((cls, k) => {
    const before = paths.length;
    const own = classWalks[k];
    if (!own) report.aliases.push(cls);
    else {
      walk.folders = own.folders;
      for (const link of own.links) {
        walk.ancestors = link.ancestors;
        listFolder(link.path, link.rel, walk);
      }
      imagesInTorchvisionOrder(walk, paths);
    }
    for (let i = before; i < paths.length; i++) labelList.push(k);
    if (paths.length === before) empty.push(cls);
  });
  warnListing(root, report, warn);
  if (paths.length === 0) {
    throw new Error(`ImageFolder: found no images under ${quotedPath(root)} (looked for ${[...exts].join(' ')} files in ${classes.length} class folders)`);
  }
  if (empty.length) {
    warn(
      `data: warning: ImageFolder ${quotedPath(root)}: ${empty.length} class folder(s) contain no images: ${printable(empty.slice(0, 5).join(', '))}${empty.length > 5 ? ', ...' : ''}`,
    );
  }
  const labels = sharedInt32(labelList.length);
  labels.set(labelList);
  return new FilesDataset(root, paths, labels, classes, report);
}

/** An unlabelled folder of images (recursively listed, in {@link imageFolder}'s order); labels are -1. */
export function imageFiles(root: string, opts: FolderOptions & { recursive?: boolean } = {}): ImageFolderDataset {
  refuseUnknownKeys(opts, [...Object.keys(FOLDER_OPTION_KEYS), 'recursive']);
  refuseNonBoolean('image folder', 'recursive', opts.recursive);
  root = resolve(root);
  const expected = 'a folder containing image files';
  checkRoot(root, 'image folder', expected);
  const exts = extensionSet(opts.extensions);
  const paths: string[] = [];
  const report: ListingReport = { symlinkLoops: [], aliases: [], unreadable: [] };
  if (opts.recursive === false) {
    const entries = readdirSync(root, { encoding: 'buffer' })
      .map(entryName)
      .sort((a, b) => codePointOrder(a.name, b.name));
    for (const { name, undecodable } of entries) {
      if (name.startsWith('.') || !exts.has(extname(name).toLowerCase())) continue;
      if (undecodable) {
        report.unreadable.push({ path: name, code: 'EILSEQ' });
        continue;
      }
      try {
        if (statSync(join(root, name)).isFile()) paths.push(name);
      } catch (e) {
        report.unreadable.push({ path: name, code: (e as NodeJS.ErrnoException).code ?? 'error' });
      }
    }
  } else {
    const walk = newWalk(root, exts, report);
    listImages(root, '', walk);
    imagesInTorchvisionOrder(walk, paths);
  }
  warnListing(root, report, opts.onWarning ?? stderrWarn);
  if (paths.length === 0) {
    throw new Error(`image folder: found no images in ${quotedPath(root)} (looked for ${[...exts].join(' ')} files)`);
  }
  return new FilesDataset(root, paths, null, [], report);
}

/**
 * One image file as an unlabelled dataset of that one image (label -1), for `--images FILE`. Its name need not
 * have an image extension: files are identified by content when decoded.
 */
export function imageFile(path: string): ImageFolderDataset {
  path = resolve(path);
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) throw new Error(`image file: ${quotedPath(path)} does not exist`);
  if (!st.isFile()) throw new Error(`image file: ${quotedPath(path)} is not a file`);
  return new FilesDataset(dirname(path), [basename(path)], null, []);
}
