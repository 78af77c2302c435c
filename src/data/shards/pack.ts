// Packs an ImageFolder (one sub-folder per class, as the folder source reads it) into
// WebDataset-style tar shards: `shard-NNNNNN.tar`, each holding for every image `KEY.<ext>` (the
// file's bytes, unchanged), `KEY.cls` (class index as text) and, with `json`, `KEY.json` ({label,
// class, path}: where it came from; one more tar member per sample to read); KEY is the image's
// 9-digit position in the packed order. An `index.json` beside the shards
// lists the class names and the samples per shard, so readers need not scan them.
//
// A file larger than an image within the pixel limit can be (imageMemberCap, as the loaders and the folder
// reader apply it) is left out, counted in the result: every reader would skip it unread. That is decided
// from the sizes before the first shard is written, so the keys stay contiguous.
//
// Images are streamed into their shard a chunk at a time, never held whole (memory stays flat whatever
// the images' or the shard's size). Every shard is written to a temporary file; when all are, the set (index.json first) is renamed into
// place under one commit journal, which also moves an earlier set's other shards to temporary names, removed
// after it (--overwrite; a reader never takes one of them for part of the new set):
// a pack that fails or is stopped leaves no part of a set and the earlier set as it was. The staged
// files go on Ctrl-C / SIGTERM; ones left by a killed packer go when the next one starts in that folder.

import {
  closeSync,
  createWriteStream,
  existsSync,
  fstatSync,
  lstatSync,
  readdirSync,
  readSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
} from 'node:fs';
import { AbortError, throwIfAborted } from '../../util/errors';
import { OptionError, checkJobHooks, type HookKind } from '../../util/options';
import { basename, dirname, extname, join, resolve, sep } from 'node:path';
import { pack as tarPack, type Pack } from 'tar-stream';
import { imageFolder, splitKind, splitLayout, type ImageFolderDataset } from '../sources/folder';
import { permutation } from '../rng';
import { INDEX_FILE, INDEX_FORMAT, type ShardEntry, type ShardIndexFile } from './shard-index';
import { commitFiles, finishInterruptedCommits, fsyncPath, stagedAt, stageFile, writeError, type StagedFile } from '../../util/safe-write';
import { claimOutputs } from '../../io/outputs';
import { checkFreeSpace, formatBytes } from '../../util/disk-space';
import { isShardFile } from './paths';
import { namesOfDeadProcesses } from '../../util/process-alive';
import { openRegularFile } from '../../util/regular-file';
import { imageMemberCap } from '../codecs/limits';
import { printable, quotedPath, shellQuote } from '../../util/printable';
import { stderrLine } from '../../util/console-line';
import { makeFolder } from '../../util/make-folder';
import { removeOnStopSignal } from '../../util/remove-on-stop-signal';

/**
 * What {@link packImageFolder} packs and how: input ImageFolder, output folder, shard size, order, overwrite,
 * pixel limit, progress callbacks and an abort signal.
 */
export interface PackOptions {
  input: string;
  output: string;
  /** Samples per shard (default 1000). */
  shardSize?: number;
  /** Pack the images in a seeded random order instead of class by class (default false). */
  shuffle?: boolean;
  /** Seed of the shuffled order (default 0). */
  seed?: number;
  /** Also write KEY.json with the label, class name and source path (default false). */
  json?: boolean;
  /** Replace shards already in the output folder (default: refuse). */
  overwrite?: boolean;
  /**
   * The readers' pixel limit (--max-image-pixels; undefined = the default, 0 = none): a file larger than
   * an image within it can be (imageMemberCap) is left out and listed in `tooLarge`.
   */
  maxImagePixels?: number;
  /** Called once the images to pack are counted, before the first shard is written: `total` images. */
  onStart?: (total: number) => void;
  /** Called after each shard is staged: `done` of `total` images packed. */
  onProgress?: (done: number, total: number) => void;
  onWarning?: (line: string) => void;
  /**
   * Aborting it stops the pack before its next image: it rejects with an AbortError (code 'ERR_ABORTED')
   * and removes the shards it wrote, as a pack that fails does (no index.json is written), and the output
   * folder it made, if left empty.
   */
  signal?: AbortSignal;
}

/**
 * What {@link packImageFolder} wrote: the shard paths, samples, classes, total shard bytes, the index.json
 * path, the --data-path pattern that reads them back, and the files left out.
 */
export interface PackResult {
  output: string;
  shards: string[];
  samples: number;
  classes: string[];
  bytes: number;
  index: string;
  /** The --data-path that reads them back. */
  pattern: string;
  /** Files left out as too large for an image within the pixel limit (paths relative to the input), in folder order. */
  tooLarge: Array<{ path: string; bytes: number }>;
  /** Files left out as unreadable (gone, not a regular file, no permission: `reason`), in the order met. */
  unreadable: Array<{ path: string; reason: string }>;
}

/** Samples per shard that {@link packImageFolder} writes unless `shardSize` says otherwise. */
export const DEFAULT_SHARD_SIZE = 1000;

export function shardName(k: number): string {
  return `shard-${String(k).padStart(6, '0')}.tar`;
}

export function sampleKey(i: number): string {
  return String(i).padStart(9, '0');
}

/** The temporary name of a shard staged by process `pid` (TEMP_SHARD reads the pid back; `-0`: a journal's temporary name). */
const tempShard = (path: string, pid: number) => `${path}.tmp-${pid}-0`;
const TEMP_SHARD = /^shard-\d+\.tar\.tmp-(\d+)(?:-0)?$/;
/** A shard of an earlier set (shardName's names): with index.json, what --overwrite replaces; other archives are left alone. */
const SET_SHARD = /^shard-\d{6,}\.tar$/;
/** Bytes a tar member adds to its data (a 512-byte header, padding to 512), and a tar's end (two 512-byte blocks). */
const TAR_MEMBER_BYTES = 1024;
const TAR_END_BYTES = 1024;
const MTIME = new Date(0); // reproducible shards

/** Bytes of an image read and written at a time: a shard is written as its files are read, never held whole. */
const CHUNK_BYTES = 1 << 20;

/** Why a file cannot be packed, for the summary ('EACCES', 'a FIFO, not a regular file', ...). */
function unreadableReason(path: string, e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code === 'ENOTREGULAR' ? err.message.replace(`${path} is `, '') : (err.code ?? err.message);
}

/**
 * Writes `size` bytes of the regular file `fd` as one member, a chunk at a time as the tar takes them (the
 * size fstat gave when the file was opened: a file shortened since is padded with zeros, and a reader skips
 * it as corrupt; one grown since is cut).
 */
function streamMember(p: Pack, name: string, { fd, size, path }: { fd: number; size: number; path: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const sink = p.entry({ name, size, mode: 0o644, mtime: MTIME }, (e) => (e ? reject(e) : resolve()));
    // a failed write of the shard destroys the pack and this entry with its error: taken here, not thrown
    // uncaught past the cleanup of stageShard (the callback above has it too)
    sink.on('error', reject);
    let at = 0;
    const pump = (): void => {
      try {
        while (at < size) {
          const chunk = Buffer.alloc(Math.min(CHUNK_BYTES, size - at));
          for (let n = 0, k = 1; n < chunk.length && k > 0; n += k) k = readSync(fd, chunk, n, chunk.length - n, at + n);
          at += chunk.length;
          if (!sink.write(chunk)) return void sink.once('drain', pump);
        }
        sink.end(null);
      } catch (e) {
        sink.destroy(new Error(`shards: cannot read ${quotedPath(path)}: ${(e as Error).message}`, { cause: e })); // (no code: not taken for a write error)
      }
    };
    pump();
  });
}

/** Adds a member to the shard being staged: bytes, or the first `size` bytes of an open regular file. */
type AddMember = (name: string, data: Buffer | { fd: number; size: number; path: string }) => Promise<void>;

/** Writes one shard, complete and flushed, under its temporary name (tempShard), from the members `fill` adds; renamed at the commit. */
async function stageShard(path: string, fill: (add: AddMember) => Promise<void>): Promise<StagedFile> {
  const tmp = tempShard(path, process.pid);
  const p = tarPack();
  // a new file: what is at the name (a link planted there, a file left by an earlier process with this
  // pid) goes first, and O_EXCL never writes through a link created since
  rmSync(tmp, { force: true });
  const out = createWriteStream(tmp, { flags: 'wx' });
  const done = new Promise<void>((res, rej) => {
    out.on('finish', () => res());
    out.on('error', rej);
    p.on('error', rej);
  });
  p.pipe(out);
  try {
    // a write error ends the stage at once (also while `fill` waits for the tar to drain); `done` is
    // awaited from the start, so its error is never an unhandled rejection
    await Promise.race([
      done,
      fill((name, data) =>
        Buffer.isBuffer(data)
          ? new Promise<void>((res, rej) => p.entry({ name, size: data.length, mode: 0o644, mtime: MTIME }, data, (e) => (e ? rej(e) : res())).on('error', rej))
          : streamMember(p, name, data),
      ),
    ]);
    p.finalize();
    await done;
    fsyncPath(tmp); // complete on the disk before the commit journal names it
    return stagedAt(path, tmp);
  } catch (e) {
    p.destroy();
    out.destroy();
    rmSync(tmp, { force: true });
    throw e instanceof AbortError ? e : writeError(path, e);
  }
}

/**
 * The earlier set's shards the new set does not replace, each moved to a temporary name (which no reader
 * lists) by the same commit as the new set: a packer killed before removing them leaves no shard of the
 * earlier set for a reader of the folder to take as part of the new one (the next packer removes them).
 * Nothing is removed if the commit fails: the earlier set stays as it was.
 */
function supersededShards(output: string, existing: readonly string[], entries: readonly ShardEntry[]): StagedFile[] {
  const written = new Set([INDEX_FILE, ...entries.map((e) => e.file)]);
  return existing
    .filter((f) => !written.has(f) && !lstatSync(join(output, f), { throwIfNoEntry: false })?.isDirectory())
    .map((f) => {
      const path = join(output, f);
      const moved = tempShard(path, process.pid);
      return { path: moved, tmp: path, commit: () => renameSync(path, moved), abort: () => {} };
    });
}

/**
 * Every option {@link packImageFolder} takes (the type has TypeScript list them all) and the kind of its value: a key
 * not among them (`shard_size`) was ignored, and `overwrite: 'false'` (a truthy string) replaced the set in the output.
 */
const PACK_OPTION_KEYS: Record<keyof PackOptions, HookKind> = {
  input: 'string',
  output: 'string',
  shardSize: 'number',
  shuffle: 'boolean',
  seed: 'number',
  json: 'boolean',
  overwrite: 'boolean',
  maxImagePixels: 'number',
  onStart: 'function',
  onProgress: 'function',
  onWarning: 'function',
  signal: 'signal',
};

/** Refuses options that are not an object, and unknown keys as the jobs refuse them (an OptionError naming the key, and the one it likely meant). */
function checkPackKeys(o: PackOptions): void {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new OptionError('options', `expected an object of options, got ${String(o)}`);
  checkJobHooks(o, PACK_OPTION_KEYS, 'options');
}

/** `path` with the links of its nearest existing ancestor resolved (an output folder may not exist yet). */
function realPathOf(path: string): string {
  const rest: string[] = [];
  for (let p = path; ; p = dirname(p)) {
    try {
      return join(realpathSync(p), ...rest.reverse());
    } catch {
      if (p === dirname(p)) return path;
      rest.push(basename(p));
    }
  }
}

/**
 * Packs an ImageFolder (one sub-folder per class) into WebDataset-style tar shards with an index.json, as
 * `semaim shards` does. Files too large for the pixel limit, or unreadable, are left out and listed in the
 * result; it throws when the output already holds a set (without `overwrite`), lies inside the input, or
 * nothing can be packed. A failed or aborted pack leaves an earlier set as it was.
 */
export async function packImageFolder(o: PackOptions): Promise<PackResult> {
  checkPackKeys(o);
  const input = resolve(o.input);
  const output = resolve(o.output);
  if (!existsSync(input)) throw new OptionError('input', `${o.input} does not exist (expected an ImageFolder: one sub-folder per class)`);
  if (!statSync(input).isDirectory()) throw new OptionError('input', `${o.input} is not a folder (expected an ImageFolder: one sub-folder per class)`);
  // a dataset root of split folders packed as an ImageFolder made its splits the classes: the training and
  // test images mixed in one set, labelled 'train' and 'val'
  const splits = splitLayout(input);
  if (splits)
    throw new OptionError(
      'input',
      `${quotedPath(o.input)} holds the splits ${splits.map((n) => `${n}/`).join(', ')}, not class folders: pack each split into a folder of its own (--input ${shellQuote(join(o.input, 'train'))} --output OUT/train, and ${shellQuote(join(o.input, ['test', 'val'].find((n) => splitKind(input, n) === 'labelled') ?? 'test'))} into OUT/test) and read them with --data-path 'OUT/{split}'`,
    );
  if (existsSync(output) && !statSync(output).isDirectory())
    throw new OptionError('output', `${quotedPath(o.output)} is not a folder (the shards are written into one)`);
  const shardSize = o.shardSize ?? DEFAULT_SHARD_SIZE;
  if (!(Number.isInteger(shardSize) && shardSize >= 1)) throw new RangeError(`shards: shard size must be an integer >= 1, got ${shardSize}`);
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) throw new RangeError(`shards: seed must be an integer, got ${o.seed}`);
  if (o.maxImagePixels !== undefined && !(Number.isSafeInteger(o.maxImagePixels) && o.maxImagePixels >= 0))
    throw new RangeError(`shards: maxImagePixels must be an integer >= 0 (0 = no limit), got ${o.maxImagePixels}`);
  const [realIn, realOut] = [realPathOf(input), realPathOf(output)]; // a link must not hide that one is in the other
  if (realOut === realIn || realOut.startsWith(realIn + sep))
    throw new OptionError('output', `the output folder ${quotedPath(output)} must not be inside the input folder ${quotedPath(input)}`);
  const ds = imageFolder(input, { onWarning: o.onWarning });
  const indexPath = join(output, INDEX_FILE);
  const made = makeFolder(output);
  // one packer per folder (`index.json.lock`): two would commit shards of the same names over each other
  const unlock = claimOutputs([indexPath], 'output');
  let packed = false;
  // a pack that fails or is stopped leaves no folder it made for its output, once its lock is gone from it
  const release = () => {
    unlock();
    if (!packed && made) removeEmptyFolders(output, made);
  };
  try {
    const r = await packInto(ds, { input, output, indexPath, shardSize, release }, o);
    packed = true;
    return r;
  } finally {
    release();
  }
}

/** Removes `dir`, then its parents up to `top`, each while it is empty (something else may have been put there meanwhile). */
function removeEmptyFolders(dir: string, top: string): void {
  for (let p = dir; ; p = dirname(p)) {
    try {
      rmdirSync(p);
    } catch {
      return;
    }
    if (p === top) return;
  }
}

/**
 * Every shard is staged under its temporary name; the set (index.json first) is committed under one
 * journal when all are written, and only then are the earlier set's other shards removed. A pack that
 * fails, is aborted or stopped by a signal removes what it staged, so an earlier set (--overwrite) stays
 * as it was and an empty folder stays empty.
 */
async function packInto(
  ds: ImageFolderDataset,
  { input, output, indexPath, shardSize, release }: { input: string; output: string; indexPath: string; shardSize: number; release: () => void },
  o: PackOptions,
): Promise<PackResult> {
  // a commit a killed packer left half made is completed; shards a killed packer staged are removed
  finishInterruptedCommits(output);
  for (const f of namesOfDeadProcesses(output, TEMP_SHARD)) rmSync(join(output, f), { force: true });
  const names = readdirSync(output);
  const existing = names.filter((f) => SET_SHARD.test(f) || f === INDEX_FILE);
  if (existing.length && !o.overwrite)
    throw new OptionError(
      'output',
      `${quotedPath(output)} already holds a shard set (${existing.length} shard-NNNNNN.tar/index.json file(s), e.g. ${quotedPath(existing[0])}); choose an empty folder or pass --overwrite to replace the set`,
      undefined,
      'ERR_OUTPUT_EXISTS',
    );
  const others = names.filter((f) => !f.startsWith('.') && isShardFile(f) && !SET_SHARD.test(f));
  if (others.length)
    (o.onWarning ?? stderrLine)(
      `shards: warning: ${quotedPath(output)} also holds ${others.length} other archive(s) (e.g. ${quotedPath(others[0])}), left alone; ` +
        `a --data-path naming the folder would read them as shards too, so give the new shards' pattern`,
    );
  const cap = imageMemberCap(o.maxImagePixels);
  const kept: number[] = [];
  const tooLarge: PackResult['tooLarge'] = [];
  const unreadable: PackResult['unreadable'] = [];
  let imageBytes = 0;
  for (let i = 0; i < ds.length; i++) {
    const path = ds.relativePath(i);
    let size: number;
    try {
      size = statSync(join(input, path)).size;
    } catch (e) {
      unreadable.push({ path, reason: unreadableReason(join(input, path), e) }); // gone since the listing
      continue;
    }
    if (size > cap) tooLarge.push({ path, bytes: size });
    else {
      kept.push(i);
      imageBytes += size;
    }
  }
  const n = kept.length;
  if (n === 0 && tooLarge.length)
    throw new Error(
      `shards: every image of ${quotedPath(input)} (${tooLarge.length}) is larger than the ${formatBytes(cap)} an image within the pixel limit can take, ` +
        `e.g. ${printable(tooLarge[0].path)} (${formatBytes(tooLarge[0].bytes)}); nothing to pack (raise it with --max-image-pixels, 0 = no limit)`,
    );
  const members = o.json ? 3 : 2;
  checkFreeSpace(output, imageBytes + n * members * TAR_MEMBER_BYTES + Math.ceil(n / shardSize) * TAR_END_BYTES, 'the shards', {
    how: `the images' ${formatBytes(imageBytes)} and tar headers${existing.length ? ', beside the earlier set, which is removed only once the new one is complete' : ''}`,
    remedy: existing.length ? 'free space, or pack into an empty folder on another disk' : 'free space, or pack onto another disk',
  });
  o.onStart?.(n);
  // the order of the images packed: as for a folder without the files left out
  const order = o.shuffle ? Array.from(permutation(n, o.seed ?? 0, 'pack', 0), (t) => kept[t]) : kept;
  const entries: ShardEntry[] = [];
  const staged: StagedFile[] = [];
  let writing: string | null = null;
  let handedOver = false;
  let bytes = 0;
  let samples = 0;
  const stopWatching = removeOnStopSignal(() => {
    for (const f of staged) f.abort();
    if (writing) rmSync(writing, { force: true });
    release(); // the folder's lock too: the process ends by the signal, and no exit handler runs
  });
  try {
    // keys count the images packed: a file that cannot be read when its turn comes is left out, named in `unreadable`
    let next = 0;
    for (let k = 0; next < n; k++) {
      const file = shardName(k);
      const path = join(output, file);
      let count = 0;
      let maxLabel = -1;
      writing = tempShard(path, process.pid);
      const f = await stageShard(path, async (add) => {
        for (; count < shardSize && next < n; next++) {
          throwIfAborted(o.signal);
          const i = order[next];
          const rel = ds.relativePath(i);
          const label = ds.label(i);
          const key = sampleKey(samples);
          let ext = extname(rel).slice(1).toLowerCase();
          if (ext === 'jfif') ext = 'jpg';
          let fd: number;
          try {
            fd = openRegularFile(join(input, rel)); // (a FIFO put at its name since the listing fails instead of blocking)
          } catch (e) {
            unreadable.push({ path: rel, reason: unreadableReason(join(input, rel), e) });
            continue;
          }
          try {
            const size = fstatSync(fd).size;
            if (size > cap) {
              unreadable.push({
                path: rel,
                reason: `grew to ${formatBytes(size)} during the pack, over the ${formatBytes(cap)} an image within the pixel limit can take`,
              });
              continue;
            }
            await add(`${key}.${ext}`, { fd, size, path: join(input, rel) });
          } finally {
            closeSync(fd);
          }
          await add(`${key}.cls`, Buffer.from(`${label}\n`));
          if (o.json) await add(`${key}.json`, Buffer.from(JSON.stringify({ label, class: ds.classes[label], path: rel }) + '\n'));
          maxLabel = Math.max(maxLabel, label);
          count++;
          samples++;
        }
      });
      writing = null;
      if (count === 0) {
        f.abort(); // the files left for it were all unreadable
        o.onProgress?.(next, n); // (every image has had its turn: the line ends at the total)
        break;
      }
      staged.push(f);
      const size = statSync(f.tmp).size;
      bytes += size;
      entries.push({ file, bytes: size, samples: count, labelled: count, maxLabel });
      o.onProgress?.(next, n);
    }
    if (samples === 0)
      throw new Error(
        `shards: no image of ${quotedPath(input)} could be read, e.g. ${printable(unreadable[0].path)} (${unreadable[0].reason}); nothing to pack`,
      );
    throwIfAborted(o.signal);
    const index: ShardIndexFile = { format: INDEX_FORMAT, classes: [...ds.classes], source: input, samples, shards: entries };
    const stagedIndex = stageFile(indexPath, JSON.stringify(index, null, 1) + '\n');
    handedOver = true; // from here on commitFiles owns the staged files (a journal it leaves names them)
    commitFiles([stagedIndex, ...staged, ...supersededShards(output, existing, entries)]);
  } catch (e) {
    if (!handedOver) for (const f of staged) f.abort();
    throw e;
  } finally {
    stopWatching();
  }
  // the new set is in place: the earlier set's shards it did not replace were moved to temporary names by the commit
  for (const f of existing) rmSync(tempShard(join(output, f), process.pid), { force: true });
  const shards = staged.map((f) => f.path);
  const last = shards.length - 1;
  const pattern =
    shards.length === 1 ? join(output, shardName(0)) : join(output, `shard-{${String(0).padStart(6, '0')}..${String(last).padStart(6, '0')}}.tar`);
  return { output, shards, samples, classes: [...ds.classes], bytes, index: indexPath, pattern, tooLarge, unreadable };
}
