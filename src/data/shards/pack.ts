// Packs an ImageFolder (one sub-folder per class, as the folder source reads it) into
// WebDataset-style tar shards: `shard-NNNNNN.tar`, each holding for every image `KEY.<ext>` (the
// file's bytes, unchanged), `KEY.cls` (class index as text) and, with `json`, `KEY.json` ({label,
// class, path}: where it came from; one more tar member per sample to read); KEY is the image's
// 9-digit position in the packed order. An `index.json` beside the shards
// lists the class names and the samples per shard, so readers need not scan them.
//
// Each shard is written to a temporary file and renamed into place when complete, and the index
// last, so an interrupted run never leaves a shard that looks complete; the temporary file goes on
// Ctrl-C / SIGTERM, and one left by a killed packer goes when the next one starts in that folder.

import { createWriteStream, readdirSync, readFileSync, rmSync, renameSync, statSync, mkdirSync } from 'node:fs';
import { AbortError, throwIfAborted } from '../../util/errors';
import { OptionError } from '../../util/options';
import { extname, join, resolve } from 'node:path';
import { pack as tarPack } from 'tar-stream';
import { imageFolder } from '../sources/folder';
import { permutation } from '../rng';
import { INDEX_FILE, INDEX_FORMAT, type ShardEntry, type ShardIndexFile } from './shard-index';
import { writeError, writeFileAtomic } from '../../util/safe-write';
import { isShardFile } from './paths';
import { namesOfDeadProcesses } from '../../util/process-alive';

export interface PackOptions {
  input: string;
  output: string;
  /** Samples per shard (default 1000). */
  shardSize?: number;
  /** Pack the images in a seeded random order instead of class by class (default false). */
  shuffle?: boolean;
  seed?: number;
  /** Also write KEY.json with the label, class name and source path (default false). */
  json?: boolean;
  /** Replace shards already in the output folder (default: refuse). */
  overwrite?: boolean;
  onProgress?: (done: number, total: number) => void;
  onWarning?: (line: string) => void;
  /**
   * Aborting it stops the pack before its next image: it rejects with an AbortError (code 'ERR_ABORTED')
   * and removes the shards it wrote, as a pack that fails does (no index.json is written).
   */
  signal?: AbortSignal;
}

export interface PackResult {
  output: string;
  shards: string[];
  samples: number;
  classes: string[];
  bytes: number;
  index: string;
  /** The --data-path that reads them back. */
  pattern: string;
}

export const DEFAULT_SHARD_SIZE = 1000;

export function shardName(k: number): string {
  return `shard-${String(k).padStart(6, '0')}.tar`;
}

export function sampleKey(i: number): string {
  return String(i).padStart(9, '0');
}

/** The temporary name of a shard being written by process `pid` (TEMP_SHARD reads the pid back). */
const tempShard = (path: string, pid: number) => `${path}.tmp-${pid}`;
const TEMP_SHARD = /^shard-\d+\.tar\.tmp-(\d+)$/;
const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

async function writeShard(path: string, members: Array<{ name: string; data: Buffer }>, signal?: AbortSignal): Promise<void> {
  const tmp = tempShard(path, process.pid);
  // Ctrl-C / SIGTERM while the shard is written: the temporary file goes, then the signal takes its
  // default course (unless the process handles it itself, and then the stream error path cleans up).
  const onSignal = (signal: NodeJS.Signals): void => {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
    if (process.listenerCount(signal) > 0) return;
    rmSync(tmp, { force: true });
    process.kill(process.pid, signal);
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);
  const p = tarPack();
  const out = createWriteStream(tmp);
  const done = new Promise<void>((res, rej) => {
    out.on('finish', () => res());
    out.on('error', rej);
    p.on('error', rej);
  });
  p.pipe(out);
  const mtime = new Date(0); // reproducible shards
  try {
    for (const m of members) {
      throwIfAborted(signal);
      await new Promise<void>((res, rej) => p.entry({ name: m.name, size: m.data.length, mode: 0o644, mtime }, m.data, (e) => (e ? rej(e) : res())));
    }
    p.finalize();
    await done;
    renameSync(tmp, path);
  } catch (e) {
    p.destroy();
    out.destroy();
    rmSync(tmp, { force: true });
    throw e instanceof AbortError ? e : writeError(path, e);
  } finally {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
  }
}

export async function packImageFolder(o: PackOptions): Promise<PackResult> {
  const input = resolve(o.input);
  const output = resolve(o.output);
  const shardSize = o.shardSize ?? DEFAULT_SHARD_SIZE;
  if (!(Number.isInteger(shardSize) && shardSize >= 1)) throw new RangeError(`shards: shard size must be an integer >= 1, got ${shardSize}`);
  if (output === input || output.startsWith(input + '/')) throw new Error(`shards: the output folder ${output} must not be inside the input folder ${input}`);
  const ds = imageFolder(input, { onWarning: o.onWarning });
  mkdirSync(output, { recursive: true });
  // shards half written by a packer that was killed (kill -9 leaves them; a signal's handler removes its own)
  for (const f of namesOfDeadProcesses(output, TEMP_SHARD)) rmSync(join(output, f), { force: true });
  const existing = readdirSync(output).filter((f) => isShardFile(f) || f === INDEX_FILE);
  if (existing.length) {
    if (!o.overwrite)
      throw new OptionError(
        'output',
        `${output} already holds ${existing.length} shard/index file(s) (e.g. ${existing[0]}); choose an empty folder or pass --overwrite`,
        undefined,
        'ERR_OUTPUT_EXISTS',
      );
    for (const f of existing) rmSync(join(output, f), { force: true });
  }
  const n = ds.length;
  const order = o.shuffle ? permutation(n, o.seed ?? 0, 'pack', 0) : Int32Array.from({ length: n }, (_, i) => i);
  const entries: ShardEntry[] = [];
  const shards: string[] = [];
  let bytes = 0;
  // A pack that fails (a full disk, an unreadable image) removes the shards it wrote: a part of the set
  // without index.json would read as a smaller data set, and made the next start ask for --overwrite.
  try {
    return await packShards();
  } catch (e) {
    for (const p of shards) rmSync(p, { force: true });
    throw e;
  }

  async function packShards(): Promise<PackResult> {
    for (let start = 0, k = 0; start < n; start += shardSize, k++) {
      const members: Array<{ name: string; data: Buffer }> = [];
      let maxLabel = -1;
      for (let t = start; t < Math.min(n, start + shardSize); t++) {
        throwIfAborted(o.signal);
        const i = order[t];
        const rel = ds.relativePath(i);
        const label = ds.label(i);
        const key = sampleKey(t);
        let ext = extname(rel).slice(1).toLowerCase();
        if (ext === 'jfif') ext = 'jpg';
        members.push({ name: `${key}.${ext}`, data: readFileSync(join(input, rel)) });
        members.push({ name: `${key}.cls`, data: Buffer.from(`${label}\n`) });
        if (o.json) members.push({ name: `${key}.json`, data: Buffer.from(JSON.stringify({ label, class: ds.classes[label], path: rel }) + '\n') });
        maxLabel = Math.max(maxLabel, label);
      }
      const file = shardName(k);
      const path = join(output, file);
      await writeShard(path, members, o.signal);
      shards.push(path);
      const size = statSync(path).size;
      bytes += size;
      const count = Math.min(n, start + shardSize) - start;
      entries.push({ file, bytes: size, samples: count, labelled: count, maxLabel });
      o.onProgress?.(Math.min(n, start + shardSize), n);
    }
    throwIfAborted(o.signal);
    const index: ShardIndexFile = { format: INDEX_FORMAT, classes: [...ds.classes], source: input, samples: n, shards: entries };
    const indexPath = join(output, INDEX_FILE);
    writeFileAtomic(indexPath, JSON.stringify(index, null, 1) + '\n');
    const last = shards.length - 1;
    const pattern =
      shards.length === 1 ? join(output, shardName(0)) : join(output, `shard-{${String(0).padStart(6, '0')}..${String(last).padStart(6, '0')}}.tar`);
    return { output, shards, samples: n, classes: [...ds.classes], bytes, index: indexPath, pattern };
  }
}
