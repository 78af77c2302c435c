// Image folders: `ImageFolder` (one sub-folder per class, like torchvision) and an unlabelled
// folder of images. Only the listing happens here; decoding happens in the loader's workers.

import { readdirSync, statSync, type Dirent } from 'node:fs';
import { join, resolve, extname } from 'node:path';
import { packStrings, sharedInt32, unpackString, type Dataset, type FilesSpec } from '../dataset';

/** File extensions listed (case-insensitive); files are identified by content when decoded. */
export const IMAGE_EXTENSIONS = [
  '.jpg',
  '.jpeg',
  '.jfif',
  '.png',
  '.bmp',
  '.gif',
  '.webp',
  '.tif',
  '.tiff',
  '.avif',
  '.ppm',
  '.pgm',
];

export interface FolderOptions {
  /** Extensions to list (default IMAGE_EXTENSIONS). */
  extensions?: readonly string[];
  /** Called with warnings found while listing (default: stderr). */
  onWarning?: (line: string) => void;
}

function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function checkRoot(root: string, what: string, expected: string): void {
  let st;
  try {
    st = statSync(root);
  } catch {
    throw new Error(`${what}: ${root} does not exist (expected ${expected})`);
  }
  if (!st.isDirectory()) throw new Error(`${what}: ${root} is not a folder (expected ${expected})`);
}

/** Recursively lists files under dir (following symlinks), relative to base, sorted. */
function listImages(dir: string, rel: string, exts: Set<string>, out: string[]): void {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    throw new Error(`cannot list ${dir}: ${(e as Error).message}`);
  }
  entries.sort((a, b) => byteOrder(a.name, b.name));
  for (const ent of entries) {
    const name = ent.name;
    if (name.startsWith('.')) continue;
    const r = rel ? `${rel}/${name}` : name;
    let isDir = ent.isDirectory();
    let isFile = ent.isFile();
    if (ent.isSymbolicLink() || (!isDir && !isFile)) {
      try {
        const st = statSync(join(dir, name));
        isDir = st.isDirectory();
        isFile = st.isFile();
      } catch {
        continue; // dangling link
      }
    }
    if (isDir) listImages(join(dir, name), r, exts, out);
    else if (isFile && exts.has(extname(name).toLowerCase())) out.push(r);
  }
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
  ) {
    this.spec = { kind: 'files', root, paths: packStrings(paths), labels };
    this.length = paths.length;
  }

  label(i: number): number {
    return this.spec.labels ? this.spec.labels[i] : -1;
  }

  name(i: number): string {
    return join(this.root, unpackString(this.spec.paths, i));
  }

  /** Path of sample i relative to the root. */
  relativePath(i: number): string {
    return unpackString(this.spec.paths, i);
  }
}

export type ImageFolderDataset = FilesDataset;

/**
 * torchvision-style ImageFolder: `root/<class>/**\/<image>`; classes are the sorted sub-folder
 * names and labels their indices.
 */
export function imageFolder(root: string, opts: FolderOptions = {}): ImageFolderDataset {
  root = resolve(root);
  const expected = 'a folder with one sub-folder per class, e.g. <root>/cat/0001.jpg';
  checkRoot(root, 'ImageFolder', expected);
  const exts = new Set((opts.extensions ?? IMAGE_EXTENSIONS).map((e) => e.toLowerCase()));
  const classes = readdirSync(root)
    .filter((n) => !n.startsWith('.'))
    .filter((n) => {
      try {
        return statSync(join(root, n)).isDirectory();
      } catch {
        return false;
      }
    })
    .sort(byteOrder);
  if (classes.length === 0) throw new Error(`ImageFolder: ${root} has no class sub-folders (expected ${expected})`);
  const paths: string[] = [];
  const labelList: number[] = [];
  const empty: string[] = [];
  classes.forEach((cls, k) => {
    const before = paths.length;
    listImages(join(root, cls), cls, exts, paths);
    for (let i = before; i < paths.length; i++) labelList.push(k);
    if (paths.length === before) empty.push(cls);
  });
  if (paths.length === 0) {
    throw new Error(
      `ImageFolder: found no images under ${root} (looked for ${[...exts].join(' ')} files in ${classes.length} class folders)`,
    );
  }
  if (empty.length) {
    const warn = opts.onWarning ?? ((l: string) => process.stderr.write(l + '\n'));
    warn(`data: warning: ImageFolder ${root}: ${empty.length} class folder(s) contain no images: ${empty.slice(0, 5).join(', ')}${empty.length > 5 ? ', ...' : ''}`);
  }
  const labels = sharedInt32(labelList.length);
  labels.set(labelList);
  return new FilesDataset(root, paths, labels, classes);
}

/** An unlabelled folder of images (recursively listed); labels are -1. */
export function imageFiles(root: string, opts: FolderOptions & { recursive?: boolean } = {}): ImageFolderDataset {
  root = resolve(root);
  const expected = 'a folder containing image files';
  checkRoot(root, 'image folder', expected);
  const exts = new Set((opts.extensions ?? IMAGE_EXTENSIONS).map((e) => e.toLowerCase()));
  const paths: string[] = [];
  if (opts.recursive === false) {
    for (const name of readdirSync(root).sort(byteOrder)) {
      if (name.startsWith('.') || !exts.has(extname(name).toLowerCase())) continue;
      try {
        if (statSync(join(root, name)).isFile()) paths.push(name);
      } catch {
        /* dangling link */
      }
    }
  } else listImages(root, '', exts, paths);
  if (paths.length === 0) {
    throw new Error(`image folder: found no images in ${root} (looked for ${[...exts].join(' ')} files)`);
  }
  return new FilesDataset(root, paths, null, []);
}
