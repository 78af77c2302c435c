// Samples of one WebDataset-style tar shard, streamed (tar-stream) without unpacking to disk.
//
// A sample is a run of consecutive members sharing a key: the member path up to the first '.' of
// its file name ('n01440764/abc.jpg' and 'n01440764/abc.cls' form sample 'n01440764/abc'). Its
// image is the member with an image extension (jpg, jpeg, png, webp, ...); its label the integer
// text of `.cls`, else the `label` or `cls` field of `.json`. Runs without an image are not
// samples. A shard that ends early or is corrupt yields its complete samples, then throws
// ShardReadError; the sample being read when it broke is dropped. A shard that stops right after a
// member, without the end-of-archive blocks, ended early too (a cut download): its last sample may
// lack members, so it is dropped as well. What follows the end-of-archive block is not read (as
// Python's tarfile, webdataset's reader, stops there). The index (shard-index.ts) and
// the readers use this one function, so they agree on what the samples of a shard are.
//
// A shard is untrusted input: a member over its size cap (MAX_META_BYTES for `.cls`/`.json`,
// imageMemberCap(--max-image-pixels) for images) is skipped in the stream without being buffered, and a label must be
// below MAX_CLASSES; either makes that one sample unusable (labelError / imageError), never the run.

import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import { createGunzip } from 'node:zlib';
import { extract, type Extract } from 'tar-stream';

/** A member being read (tar-stream does not export its type). */
type Source = Extract extends AsyncIterable<infer S> ? S : never;
import { IMAGE_EXTENSIONS } from '../sources/folder';
import { printable } from '../../util/printable';
import { openRegularFile } from '../../util/regular-file';
import { jsonBrief } from '../../util/json-file';

/** Image member extensions, in order of preference when a sample has several. */
export const IMAGE_MEMBER_EXTENSIONS = [
  'jpg',
  'jpeg',
  'png',
  'webp',
  ...IMAGE_EXTENSIONS.map((e) => e.slice(1)).filter((e) => !['jpg', 'jpeg', 'png', 'webp'].includes(e)),
];
const IMAGE_EXT_SET = new Set(IMAGE_MEMBER_EXTENSIONS);

/** Largest `.cls` / `.json` member read (64 KiB). */
export const MAX_META_BYTES = 64 << 10;
/** Largest image member readShard reads when its caller gives no cap (256 MiB). */
export const MAX_IMAGE_BYTES = 256 << 20;

export { imageMemberCap } from '../codecs/limits';

/** Tar's block: a header is one, member data is padded to whole ones, the archive ends with (at least one) zero block. */
const TAR_BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(TAR_BLOCK);

/** Class indices must be below this (2^20), so no per-class table can be made huge by one label. */
export const MAX_CLASSES = 1 << 20;

export interface TarSample {
  /** Position among the samples of the shard (0-based). */
  ordinal: number;
  key: string;
  /** Image bytes (absent when reading labels only, or for samples before `from`). */
  image: Buffer | null;
  imageExt: string;
  /** Class index, or null when the sample has none. */
  label: number | null;
  /** Why the label could not be read (the sample is then unusable in a labelled dataset). */
  labelError?: string;
  /** Why the image cannot be used (its member is over MAX_IMAGE_BYTES and was not read). */
  imageError?: string;
  /** Why the sample as a whole cannot be used (a member repeated: which copy is right is unknown). */
  sampleError?: string;
}

export class ShardReadError extends Error {
  constructor(
    readonly shard: string,
    /** Complete samples read before the error. */
    readonly samplesRead: number,
    readonly reason: string,
  ) {
    super(`${basename(shard)}: ${/unexpected end/i.test(reason) ? 'truncated' : 'corrupt'} after ${samplesRead} sample(s) (${reason})`);
    this.name = 'ShardReadError';
  }
}

export interface ReadShardOptions {
  /** Samples before this ordinal are skipped without keeping their bytes (default 0). */
  from?: number;
  /** Stop after this ordinal (exclusive; default: the whole shard). */
  to?: number;
  /** Keep image bytes (default true); false reads labels only (the index scan). */
  images?: boolean;
  /** Image members over this many bytes are skipped unread (imageError; default MAX_IMAGE_BYTES). */
  maxImageBytes?: number;
  /** Called with the key of each run of members with a label (.cls / .json) but no image member: not a sample. */
  onLabelOnly?: (key: string) => void;
}

/** Splits a member path into its key and (lower-case) extension after the first dot of its name. */
export function splitMemberName(path: string): { key: string; ext: string } {
  const slash = path.lastIndexOf('/');
  const dot = path.indexOf('.', slash + 1);
  if (dot < 0) return { key: path, ext: '' };
  return { key: path.slice(0, dot), ext: path.slice(dot + 1).toLowerCase() };
}

interface Group {
  key: string;
  /** Image members present (extensions) and, when kept, their bytes. */
  imageExts: Set<string>;
  images: Map<string, Buffer>;
  cls: string | null;
  json: string | null;
  /** Members skipped unread for being over their cap: extension → declared size. */
  oversize: Map<string, number>;
  /** Extensions met so far, and the first one met twice (the sample is then refused: which is right?). */
  seen: Set<string>;
  repeated: string | null;
}

const tooBig = (ext: string, bytes: number, cap: number) =>
  `.${ext} member of ${bytes} bytes is over the ${cap >= 1 << 20 ? `${Math.floor(cap / 2 ** 20)} MiB` : `${cap >> 10} KiB`} limit`;
const isClass = (l: unknown): l is number => Number.isSafeInteger(l) && (l as number) >= 0 && (l as number) < MAX_CLASSES;

function parseLabel(g: Group): { label: number | null; labelError?: string } {
  if (g.oversize.has('cls')) return { label: null, labelError: tooBig('cls', g.oversize.get('cls')!, MAX_META_BYTES) };
  if (g.cls !== null) {
    const t = g.cls.trim();
    const digits = /^\d+$/.test(t);
    if (digits && isClass(Number(t))) return { label: Number(t) };
    return { label: null, labelError: `.cls holds '${printable(t.slice(0, 20))}', not a class index${digits ? ` below ${MAX_CLASSES}` : ''}` };
  }
  if (g.oversize.has('json')) return { label: null, labelError: tooBig('json', g.oversize.get('json')!, MAX_META_BYTES) };
  if (g.json !== null) {
    let v: unknown;
    try {
      v = JSON.parse(g.json);
    } catch {
      return { label: null, labelError: '.json is not valid JSON' };
    }
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      const l = o.label ?? o.cls;
      if (isClass(l)) return { label: l };
      const range = Number.isInteger(l) && (l as number) >= 0 ? ` below ${MAX_CLASSES}` : '';
      // (jsonBrief: a label nested too deeply for JSON.stringify ended the whole shard as 'corrupt')
      if (l !== undefined) return { label: null, labelError: `.json label ${jsonBrief(l, 20)} is not a class index${range}` };
    }
  }
  return { label: null };
}

/**
 * A member's bytes in a buffer of their own (a chunk is a view of a whole read block, which a held
 * sample must not keep alive). Events, not async iteration: one promise per member, not per chunk.
 */
function readAll(entry: Source): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    entry.on('data', (c: unknown) => chunks.push(c as Buffer));
    entry.on('end', () => resolve(Buffer.concat(chunks)));
    entry.on('error', reject);
  });
}

/** Whether a shard is read through gunzip (by its name, as readShard decides). */
export const isGzipShard = (path: string): boolean => /\.(tar\.gz|tgz)$/i.test(path);

/** Streams the samples of a shard in order. */
export async function* readShard(path: string, opts: ReadShardOptions = {}): AsyncGenerator<TarSample, void, undefined> {
  const from = opts.from ?? 0;
  const to = opts.to ?? Infinity;
  const images = opts.images ?? true;
  const maxImageBytes = opts.maxImageBytes ?? MAX_IMAGE_BYTES;
  if (from >= to) return;
  // a FIFO or a device (a link to /dev/zero) named as a shard would block or never end: refused at the open
  const source = createReadStream(path, { fd: openRegularFile(path), highWaterMark: 1 << 20 });
  // a pre-POSIX (v7) header has no 'ustar' magic: tar-stream refuses it unless told, where Python's tarfile (webdataset's
  // reader) and GNU tar read it; its checksum is still checked, so a file that is not a tar is still refused
  // (tar-stream's types leave the option out)
  const ex = extract({ allowUnknownFormat: true } as Parameters<typeof extract>[0]);
  const fail = (e: Error) => ex.destroy(e);
  source.on('error', fail);
  let tar: NodeJS.ReadableStream = source;
  if (isGzipShard(path)) {
    const gunzip = createGunzip();
    gunzip.on('error', fail);
    tar = source.pipe(gunzip);
  }
  tar.pipe(ex);
  // tar-stream ends without error when the input stops right after a member: only the end-of-archive
  // blocks after the last member tell a whole shard from a download cut at a member boundary
  let tarBytes = 0;
  let membersEnd = 0; // where the last member's (padded) data ends
  // tar-stream skips a block of zeros where a header should be and reads on: the members of a second tar
  // after the end-of-archive blocks (tar files concatenated) were read as this shard's, where Python's
  // tarfile (webdataset's reader) and GNU tar end the archive at that block. The runs of zero blocks at
  // or after the last member's end are noted as the bytes pass, for the next header's place to be checked.
  const zeroRuns: { start: number; end: number }[] = [];
  let blockZero = true; // whether the bytes seen so far of the block being read are all zero
  tar.on('data', (c: Buffer) => {
    const first = tarBytes;
    tarBytes += c.byteLength;
    for (let at = first; at < tarBytes;) {
      const blockStart = at - (at % TAR_BLOCK);
      const upto = Math.min(tarBytes, blockStart + TAR_BLOCK);
      if (at === blockStart) blockZero = blockStart >= membersEnd; // (a block inside a member's data is no header's place)
      if (blockZero) blockZero = c.compare(ZERO_BLOCK, 0, upto - at, at - first, upto - first) === 0;
      if (blockZero && upto === blockStart + TAR_BLOCK && blockStart >= membersEnd) {
        const last = zeroRuns[zeroRuns.length - 1];
        if (last && last.end === blockStart) last.end = upto;
        else zeroRuns.push({ start: blockStart, end: upto });
      }
      at = upto;
    }
  });
  /** Whether the block at `at` (where a header belongs) holds only zeros: the end of the archive. */
  const endsAt = (at: number): boolean => {
    while (zeroRuns.length && zeroRuns[0].end <= at) zeroRuns.shift();
    return zeroRuns.length > 0 && zeroRuns[0].start <= at;
  };

  let done = 0; // complete samples so far
  let group: Group | null = null;
  const finish = (g: Group): TarSample | null => {
    if (g.imageExts.size === 0) {
      if (g.seen.has('cls') || g.seen.has('json')) opts.onLabelOnly?.(g.key);
      return null;
    }
    const ordinal = done++;
    if (ordinal < from) return null;
    const imageExt = IMAGE_MEMBER_EXTENSIONS.find((e) => g.imageExts.has(e))!;
    const big = g.oversize.get(imageExt);
    const imageError = big === undefined ? {} : { imageError: tooBig(imageExt, big, maxImageBytes) };
    const sampleError = g.repeated === null ? {} : { sampleError: `the member ${g.key}.${g.repeated} appears twice in one sample (two samples with one key?)` };
    return { ordinal, key: g.key, image: g.images.get(imageExt) ?? null, imageExt, ...parseLabel(g), ...imageError, ...sampleError };
  };
  try {
    for await (const entry of ex) {
      const h = entry.header;
      // tar-stream reads a base-256 size field whose first byte is neither 0x80 nor 0xff as null, which
      // passes its own size check; it then never ends that member nor the stream, and the reader hung.
      if (!Number.isSafeInteger(h.size) || h.size! < 0) throw new Error(`member '${printable(h.name.slice(0, 100))}' has an invalid size field`);
      // (a member whose header is not where the last one's data ends follows zero blocks or a pax/long-name header)
      if (entry.offset > membersEnd && endsAt(membersEnd)) {
        entry.resume();
        if (group) {
          const s = finish(group);
          if (s) yield s;
        }
        return;
      }
      membersEnd = entry.offset + TAR_BLOCK + Math.ceil(h.size / TAR_BLOCK) * TAR_BLOCK;
      if (h.type !== 'file' && h.type !== 'contiguous-file') {
        entry.resume();
        continue;
      }
      const { key, ext } = splitMemberName(h.name);
      if (!group || group.key !== key) {
        if (group) {
          const s = finish(group);
          if (s) yield s;
          if (done >= to) return;
        }
        group = { key, imageExts: new Set(), images: new Map(), cls: null, json: null, oversize: new Map(), seen: new Set(), repeated: null };
      }
      if (group.seen.has(ext)) group.repeated ??= ext;
      group.seen.add(ext);
      const keep = done >= from; // this group's ordinal, if it has an image, is `done`
      const isImage = IMAGE_EXT_SET.has(ext);
      if (isImage) group.imageExts.add(ext);
      if (!keep || !(isImage || ext === 'cls' || ext === 'json')) entry.resume();
      else if (h.size > (isImage ? maxImageBytes : MAX_META_BYTES)) {
        group.oversize.set(ext, h.size);
        entry.resume(); // drained chunk by chunk, never held
      } else if (isImage) {
        if (images) group.images.set(ext, await readAll(entry));
        else entry.resume();
      } else if (ext === 'cls') group.cls = (await readAll(entry)).toString('utf8');
      else group.json = (await readAll(entry)).toString('utf8');
    }
    if (membersEnd > 0 && tarBytes < membersEnd + TAR_BLOCK) throw new Error('unexpected end of archive: no end-of-archive blocks after the last member');
    if (group) {
      const s = finish(group);
      if (s) yield s;
    }
  } catch (e) {
    // tar-stream reads on past the end-of-archive block and fails on what follows it; Python's tarfile
    // (webdataset's reader) and GNU tar stop at that block: the shard ended there, its last sample whole
    if (!(e instanceof ShardReadError) && membersEnd > 0 && (await zeroBlockAt(path, membersEnd))) {
      if (group) {
        const s = finish(group);
        if (s) yield s;
      }
      return;
    }
    throw new ShardReadError(path, done, (e as Error).message);
  } finally {
    source.destroy();
    ex.destroy();
  }
}

/** Whether the tar (gunzipped for a .tar.gz) holds a block of zeros at byte `at`: an end-of-archive block where a header would be. */
async function zeroBlockAt(path: string, at: number): Promise<boolean> {
  let source;
  try {
    source = createReadStream(path, { fd: openRegularFile(path), ...(isGzipShard(path) ? {} : { start: at, end: at + TAR_BLOCK - 1 }) });
  } catch {
    return false;
  }
  let pos = isGzipShard(path) ? 0 : at;
  let tar: AsyncIterable<Buffer> = source;
  if (isGzipShard(path)) {
    const gunzip = createGunzip();
    source.on('error', (e) => gunzip.destroy(e)); // (pipe does not pass a read error on)
    tar = source.pipe(gunzip);
  }
  try {
    for await (const c of tar) {
      for (let i = Math.max(at - pos, 0); i < Math.min(at + TAR_BLOCK - pos, c.length); i++) if (c[i] !== 0) return false;
      pos += c.length;
      if (pos >= at + TAR_BLOCK) return true;
    }
    return false; // the data ends first
  } catch {
    return false; // (a gzip stream broken before that block)
  } finally {
    source.destroy();
  }
}
