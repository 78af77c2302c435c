// The index of a shard dataset: samples per shard (and whether they are labelled), built once by
// reading every shard (labels only, image bytes skipped) and kept as `index.json` beside the
// shards (`semaim shards` writes it while packing). It lets every rank know the epoch's size,
// and so give the same number of batches, without reading the shards first.
//
// An entry is trusted while its shard file keeps its size; a shard that is new or changed is
// scanned again. The scan runs in a child process so that opening a dataset stays synchronous.
// When the shard folder is not writable (or holds another tool's index.json), the index goes to
// the data cache (~/.cache/semaim/data/shard-index/).

import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { defaultDataCache } from '../sources/cifar';
import { IMAGE_MEMBER_EXTENSIONS, isGzipShard, MAX_CLASSES, readShard, ShardReadError } from './tar-samples';
import { writeFileAtomic } from '../../util/safe-write';
import { isJsonObject } from '../../util/json-file';
import { readRegularFile } from '../../util/regular-file';
import { printable, quotedPath } from '../../util/printable';
import { stderrLine } from '../../util/console-line';

export const INDEX_FILE = 'index.json';
export const INDEX_FORMAT = 'semaim.shards/1';

export interface ShardEntry {
  /** File name (in the index's folder). */
  file: string;
  /** File size when indexed. */
  bytes: number;
  /** Complete samples (runs of members with an image). */
  samples: number;
  /** Samples with a readable class index. */
  labelled: number;
  /** Largest class index (-1 when none). */
  maxLabel: number;
  /** Why reading stopped early (truncated or corrupt shard); its first `samples` samples are used. */
  error?: string;
  /** Runs of members with a label (.cls / .json) but no image member (not samples), and the first one's key; absent when none. */
  labelOnly?: number;
  labelOnlyKey?: string;
}

export interface ShardIndexFile {
  format: typeof INDEX_FORMAT;
  /** Class names (index = label), when known (the packer writes them). */
  classes?: string[];
  /** What the shards were made from. */
  source?: string;
  samples: number;
  shards: ShardEntry[];
}

/** Reads a shard once (labels only) and describes it. Never throws for a bad shard. */
export async function scanShard(path: string): Promise<ShardEntry> {
  const e: ShardEntry = { file: basename(path), bytes: 0, samples: 0, labelled: 0, maxLabel: -1 };
  try {
    e.bytes = statSync(path).size;
    const onLabelOnly = (key: string) => {
      e.labelOnly = (e.labelOnly ?? 0) + 1;
      e.labelOnlyKey ??= key;
    };
    for await (const s of readShard(path, { images: false, onLabelOnly })) {
      e.samples++;
      if (s.label !== null) {
        e.labelled++;
        e.maxLabel = Math.max(e.maxLabel, s.label);
      }
    }
  } catch (err) {
    e.error = err instanceof ShardReadError ? err.message : `${basename(path)}: unreadable (${(err as Error).message})`;
  }
  return e;
}

export async function scanShards(paths: readonly string[], onProgress?: (done: number, total: number) => void): Promise<ShardEntry[]> {
  const out: ShardEntry[] = [];
  for (const p of paths) {
    out.push(await scanShard(p));
    onProgress?.(out.length, paths.length);
  }
  return out;
}

/** scanShards in a child process (scan-main.js), for callers that must stay synchronous. */
export function scanShardsSync(paths: readonly string[]): ShardEntry[] {
  const script = join(__dirname, 'scan-main.js');
  if (!existsSync(script)) throw new Error(`shards: scanner ${script} not found (run the compiled JavaScript)`);
  const r = spawnSync(process.execPath, [script], {
    input: JSON.stringify(paths),
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, SEMAIM_SCAN_PARENT: String(process.pid) }, // it ends when this process is gone
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.error) throw new Error(`shards: cannot run the shard scanner: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`shards: the shard scanner failed (exit ${r.status}${r.signal ? `, ${r.signal}` : ''})`);
  return JSON.parse(r.stdout) as ShardEntry[];
}

const count = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

export function readIndexFile(path: string): ShardIndexFile | null {
  let text: string;
  try {
    text = readRegularFile(path, 'utf8'); // (a FIFO or a device planted at index.json is no index: the folder is scanned)
  } catch {
    return null;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isJsonObject(v) || v.format !== INDEX_FORMAT || !Array.isArray(v.shards)) return null;
  // A hand-edited or hostile index is used only for what it can say: entries of the fields a scan
  // writes (the rest are left out, so a saved index never carries them on), class names as strings.
  const shards: ShardEntry[] = v.shards.filter(isJsonObject).flatMap((e) => {
    if (typeof e.file !== 'string') return [];
    const num = (x: unknown) => (typeof x === 'number' ? x : NaN); // NaN: not plausible, the shard is scanned again
    const error = typeof e.error === 'string' ? { error: e.error } : {};
    const labelOnly =
      e.labelOnly !== undefined ? { labelOnly: num(e.labelOnly), ...(typeof e.labelOnlyKey === 'string' ? { labelOnlyKey: e.labelOnlyKey } : {}) } : {};
    return [{ file: e.file, bytes: num(e.bytes), samples: num(e.samples), labelled: num(e.labelled), maxLabel: num(e.maxLabel), ...error, ...labelOnly }];
  });
  // (no more names than labels can have: a list of millions sized every per-class table, output and head by it)
  const classes =
    Array.isArray(v.classes) && v.classes.length <= MAX_CLASSES && v.classes.every((c) => typeof c === 'string') ? { classes: v.classes as string[] } : {};
  const source = typeof v.source === 'string' ? { source: v.source } : {};
  return { format: INDEX_FORMAT, ...classes, ...source, samples: shards.reduce((a, e) => a + (count(e.samples) ? e.samples : 0), 0), shards };
}

/** Where the cached index of a shard folder lives when the folder itself is not used. */
export function cachedIndexPath(dir: string): string {
  const h = createHash('sha1').update(dir).digest('hex').slice(0, 16);
  return join(defaultDataCache(), 'shard-index', `${h}.json`);
}

/** Saves an index beside its shards when possible, else in the data cache; returns where (null: nowhere). */
export function saveIndex(dir: string, index: ShardIndexFile): string | null {
  const beside = join(dir, INDEX_FILE);
  const text = JSON.stringify(index, null, 1) + '\n';
  if (!existsSync(beside) || readIndexFile(beside)) {
    try {
      writeFileAtomic(beside, text);
      return beside;
    } catch {
      /* read-only folder: fall through to the cache */
    }
  }
  try {
    const cached = cachedIndexPath(dir);
    writeFileAtomic(cached, text);
    return cached;
  } catch {
    return null;
  }
}

/** What a dataset of shards holds, in the order its paths were given. */
export interface ShardTable {
  paths: string[];
  entries: ShardEntry[];
  /** Global index of each shard's first sample (samples are numbered shard by shard). */
  bases: number[];
  total: number;
  /** Class names: from the index, else '0'..'max label'; empty when unlabelled. */
  classes: string[];
  /** Shards skipped in whole or in part (truncated, corrupt, empty). */
  problems: string[];
}

export interface TableOptions {
  onWarning?: (line: string) => void;
}

/** Bytes of tar a sample needs at least: its image member's 512-byte header. */
const TAR_HEADER_BYTES = 512;
/** Deflate's largest expansion (258 bytes from a 1-bit length and a 1-bit distance code): a gzip file's tar is at most this many times its size. */
const MAX_DEFLATE_RATIO = 1032;

/**
 * An index entry whose counts could come from a scan of a file of its size (an older semaim or a
 * hand-edited file may hold any maxLabel; a hostile one any count, which the epoch plan would trust).
 */
function plausible(e: ShardEntry): boolean {
  const tarBytes = isGzipShard(e.file) ? e.bytes * MAX_DEFLATE_RATIO : e.bytes;
  return (
    count(e.bytes) &&
    count(e.samples) &&
    e.samples * TAR_HEADER_BYTES <= tarBytes &&
    (e.labelOnly === undefined || (count(e.labelOnly) && (e.samples + e.labelOnly) * TAR_HEADER_BYTES <= tarBytes)) &&
    count(e.labelled) &&
    e.labelled <= e.samples &&
    Number.isSafeInteger(e.maxLabel) &&
    e.maxLabel >= -1 &&
    e.maxLabel < MAX_CLASSES &&
    (e.maxLabel === -1) === (e.labelled === 0)
  );
}

/** The index entries of `paths`, from their folders' index files, scanning what is missing or changed. */
export function loadShardTable(paths: readonly string[], opts: TableOptions = {}): ShardTable {
  const warn = opts.onWarning ?? stderrLine;
  const byDir = new Map<string, string[]>();
  for (const p of paths) {
    const d = dirname(p);
    if (!byDir.has(d)) byDir.set(d, []);
    byDir.get(d)!.push(p);
  }
  const entries = new Map<string, ShardEntry>();
  /** Where the entries not scanned now come from (a problem an index file reports is its word, not a read). */
  const recorded = new Map<string, string>();
  let classes: string[] | undefined;
  for (const [dir, files] of byDir) {
    // Both index files are read: where index.json beside the shards is stale and its folder read-only, the
    // entries scanned since are kept in the cache's, and are not scanned again on every run.
    const indexes = [join(dir, INDEX_FILE), cachedIndexPath(dir)].flatMap((path) => {
      const file = readIndexFile(path);
      return file ? [{ path, file, byName: new Map(file.shards.map((e) => [e.file, e])) }] : [];
    });
    const index = indexes[0]?.file ?? null;
    const known = new Map((index?.shards ?? []).map((e) => [e.file, e]));
    const stale: string[] = [];
    for (const p of files) {
      let size = -1;
      try {
        size = statSync(p).size;
      } catch {
        /* scanned below: reports it unreadable */
      }
      const fits = (e: ShardEntry | undefined): e is ShardEntry => e !== undefined && e.bytes === size && plausible(e);
      const from = indexes.find((x) => fits(x.byName.get(basename(p))));
      if (from) {
        const e = from.byName.get(basename(p))!;
        entries.set(p, e);
        known.set(e.file, e);
        recorded.set(p, from.path);
      } else stale.push(p);
    }
    if (index?.classes && !classes) classes = index.classes;
    else if (index?.classes && classes && index.classes.join('\n') !== classes.join('\n')) {
      warn(`data: warning: ${quotedPath(join(dir, INDEX_FILE))} names other classes than the first shard folder; using the first folder's names`);
    }
    if (stale.length) {
      warn(`data: indexing ${stale.length} shard(s) in ${quotedPath(dir)} (samples per shard; read once, kept in ${INDEX_FILE}) ...`);
      const t0 = performance.now();
      const scanned = scanShardsSync(stale);
      stale.forEach((p, i) => {
        entries.set(p, scanned[i]);
        known.set(basename(p), scanned[i]);
      });
      const merged = [...known.values()].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
      const where = saveIndex(dir, {
        format: INDEX_FORMAT,
        ...(index?.classes ? { classes: index.classes } : {}),
        ...(index?.source ? { source: index.source } : {}),
        samples: merged.reduce((a, e) => a + e.samples, 0),
        shards: merged,
      });
      warn(
        `data: indexed ${stale.length} shard(s) in ${((performance.now() - t0) / 1000).toFixed(1)} s${where ? `; saved ${quotedPath(where)}` : ' (could not save the index)'}`,
      );
    }
  }
  const list = paths.map((p) => entries.get(p)!);
  const bases: number[] = [];
  let total = 0;
  let labelled = 0;
  let maxLabel = -1;
  const problems: string[] = [];
  let labelOnly = 0;
  let firstLabelOnly = '';
  list.forEach((e, i) => {
    if (e.labelOnly) {
      labelOnly += e.labelOnly;
      firstLabelOnly ||= `${basename(paths[i])}:${(e.labelOnlyKey ?? '?').slice(0, 200)}`;
    }
    bases.push(total);
    total += e.samples;
    labelled += e.labelled;
    maxLabel = Math.max(maxLabel, e.maxLabel);
    const name = basename(paths[i]);
    const where = recorded.has(paths[i]) ? ` (as ${quotedPath(recorded.get(paths[i])!)} records; delete it to read the shard again)` : '';
    // an index file's error is any text: the shard is named here, and the text shown as printable
    const error = e.error?.startsWith(`${name}: `) ? e.error.slice(name.length + 2) : e.error;
    if (error !== undefined) problems.push(`${quotedPath(name)}: ${printable(error)}: using its ${e.samples} complete sample(s), skipping the rest${where}`);
    else if (e.samples === 0) problems.push(`${quotedPath(name)}: holds no samples (no member with an image extension)${where}`);
  });
  for (const p of problems) warn(`data: skipping shard ${p}`);
  // (a sample whose image member is missing or has an extension that is not read: not a sample, and said so)
  if (labelOnly > 0)
    warn(
      `data: warning: ${labelOnly} run(s) of members have a label (.cls or .json) but no image member, so are not samples (first: ${printable(firstLabelOnly)}); image members are read by the extensions ${IMAGE_MEMBER_EXTENSIONS.map((x) => `.${x}`).join(' ')}`,
    );
  if (total === 0) throw new Error(`shards: no usable samples in ${paths.length} shard(s) (first: ${quotedPath(paths[0])})`);
  if (labelled > 0 && labelled < total) {
    warn(`data: warning: ${total - labelled} of ${total} samples have no class label (.cls or .json); they will be skipped when read`);
  }
  const names = labelled === 0 ? [] : classes && classes.length > maxLabel ? classes : Array.from({ length: maxLabel + 1 }, (_, k) => String(k));
  return { paths: [...paths], entries: list, bases, total, classes: names, problems };
}
