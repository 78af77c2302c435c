// The sample stream of one worker's piece of an epoch (plan.ts): its shard pieces read in order,
// passed through the seeded shuffle buffer. A stream can start after `skip` emitted samples
// (resume): the buffer is replayed over positions alone, then only the shards from the oldest
// sample still buffered on are read again (image bytes kept for the buffered ones only).
//
// Every position of the piece yields exactly one item, so the count per rank never changes: a
// sample the shard does not deliver (it ended early or broke after being indexed) becomes an
// item carrying the error, which the batch builder replaces.

import { basename } from 'node:path';
import { Rng } from '../rng';
import type { SkipReason } from '../codecs/errors';
import { DataError } from '../../util/errors';
import { formatBytes } from '../../util/disk-space';
import { SHUFFLE_MEMORY_ENV } from './memory';
import { readShard, ShardReadError, type TarSample } from './tar-samples';
import { replay } from './shuffle-buffer';
import type { ShardSegment } from './plan';

export interface StreamItem {
  /** Position in the piece. */
  pos: number;
  /** Global sample index (numbered shard by shard in the dataset's order). */
  index: number;
  /** `shard.tar:key` (the shard's name alone for a sample it did not deliver). */
  name: string;
  image: Buffer | null;
  label: number;
  error?: { reason: SkipReason; message: string };
}

export interface PieceTask {
  epoch: number;
  segments: ShardSegment[];
  length: number;
  /** Items already emitted (resume). */
  skip: number;
  /** Shuffle buffer size (1 = stream order). */
  bufferSize: number;
  /** Keys of the buffer's generator after the seed (e.g. ['buffer', epoch, rank, worker]). */
  rngKeys: (string | number)[];
}

export interface StreamContext {
  paths: readonly string[];
  bases: readonly number[];
  seed: number;
  /** Samples without a class label are unusable (labelled dataset). */
  labelled: boolean;
  /** Image members over this many bytes are skipped unread (imageMemberCap of the pixel limit). */
  maxImageBytes: number;
  /**
   * Image bytes one shuffle buffer may hold (its share of the loader's budget, memory.ts), of how many
   * buffers, the budget in words, and whether the command has --shuffle-buffer; none: unbounded.
   */
  bufferMemory?: { share: number; buffers: number; budget: string; shuffleOption: boolean };
}

/** A sample of a shard as a stream item at position `pos`: its error when unusable, its image bytes when kept. */
function streamItem(ctx: StreamContext, s: TarSample, pos: number, base: number, shardName: string, keep: boolean): StreamItem {
  let error: StreamItem['error'];
  const label = ctx.labelled ? (s.label ?? -1) : -1;
  if (s.sampleError) error = { reason: 'corrupt', message: s.sampleError };
  else if (s.imageError) error = { reason: 'too-large', message: s.imageError };
  else if (ctx.labelled && s.label === null) error = { reason: 'corrupt', message: s.labelError ?? 'no class label (.cls or .json)' };
  return { pos, index: base + s.ordinal, name: `${shardName}:${s.key}`, image: keep ? s.image : null, label, error };
}

/**
 * The usable-looking samples (no error, image bytes) of every shard of the dataset, from shard `first` on, wrapping
 * once around: where a worker whose piece holds no good sample takes its stand-ins (a shard that fails is passed over).
 */
export async function* spareItems(ctx: StreamContext, first: number): AsyncGenerator<StreamItem, void, undefined> {
  const n = ctx.paths.length;
  for (let i = 0; i < n; i++) {
    const k = (first + i) % n;
    const shardName = basename(ctx.paths[k]);
    try {
      for await (const s of readShard(ctx.paths[k], { maxImageBytes: ctx.maxImageBytes })) {
        const item = streamItem(ctx, s, -1, ctx.bases[k], shardName, true);
        if (!item.error && item.image) yield item;
      }
    } catch {
      /* a broken shard: its samples before the damage were offered, the next shard goes on */
    }
  }
}

/** Items of positions [from, length) of a piece, in input order. */
async function* pieceInputs(ctx: StreamContext, task: PieceTask, from: number, keepImage: (pos: number) => boolean): AsyncGenerator<StreamItem> {
  let pos = 0;
  for (const seg of task.segments) {
    const len = seg.to - seg.from;
    if (pos + len <= from) {
      pos += len;
      continue;
    }
    const path = ctx.paths[seg.shard];
    const shardName = basename(path);
    const base = ctx.bases[seg.shard];
    const start = seg.from + Math.max(0, from - pos);
    pos += start - seg.from;
    let next = start; // next ordinal expected
    let failure: { reason: SkipReason; message: string } | null = null;
    try {
      for await (const s of readShard(path, { from: start, to: seg.to, maxImageBytes: ctx.maxImageBytes })) {
        yield streamItem(ctx, s, pos++, base, shardName, keepImage(pos - 1));
        next = s.ordinal + 1;
      }
    } catch (e) {
      const m = e instanceof ShardReadError ? e.message : `${shardName}: ${(e as Error).message}`;
      failure = { reason: /truncated/.test(m) ? 'truncated' : 'corrupt', message: m };
    }
    if (next < seg.to && !failure) failure = { reason: 'truncated', message: `${shardName}: ended after ${next} sample(s), the index says ${seg.to}` };
    for (; next < seg.to; next++) yield { pos: pos++, index: base + next, name: shardName, image: null, label: -1, error: failure! };
  }
}

const bytes = (x: StreamItem | null | undefined): number => x?.image?.byteLength ?? 0;

export class PieceStream {
  private readonly gen: AsyncGenerator<StreamItem, void, undefined>;

  constructor(ctx: StreamContext, task: PieceTask) {
    this.gen = PieceStream.items(ctx, task);
  }

  /** The next item (undefined after the last). */
  async next(): Promise<StreamItem | undefined> {
    const r = await this.gen.next();
    return r.done ? undefined : r.value;
  }

  /** Stops reading (closes the shard being read). */
  async close(): Promise<void> {
    await this.gen.return(undefined);
  }

  private static async *items(ctx: StreamContext, task: PieceTask): AsyncGenerator<StreamItem, void, undefined> {
    const rng = new Rng(ctx.seed, ...task.rngKeys);
    const { buffer: positions, consumed } = replay(task.bufferSize, rng, task.length, task.skip);
    // the buffered positions (oldest first read) come back from the shards, then the stream goes on
    const slotOf = new Map<number, number>();
    positions.items.forEach((p, slot) => slotOf.set(p, slot));
    let from = consumed;
    for (const p of slotOf.keys()) from = Math.min(from, p);
    const buffer = positions.map<StreamItem | null>(() => null);
    const inputs = pieceInputs(ctx, task, from, (pos) => pos >= consumed || slotOf.has(pos));
    // image bytes the buffer holds: counted only, never consulted by the draws
    let held = 0;
    const check = (added: StreamItem): void => {
      if (ctx.bufferMemory && task.bufferSize > 1 && held > ctx.bufferMemory.share) throw overBudget(added, held, buffer.length, ctx.bufferMemory);
    };
    try {
      for (let q = from; q < consumed; q++) {
        const r = await inputs.next();
        if (r.done) throw new Error(`shards: stream ended at ${q} while resuming (expected ${task.length} samples)`);
        const slot = slotOf.get(q);
        if (slot !== undefined) {
          buffer.items[slot] = r.value;
          held += bytes(r.value);
          check(r.value);
        }
      }
      for (let q = consumed; q < task.length; q++) {
        const r = await inputs.next();
        if (r.done) throw new Error(`shards: stream ended at ${q} (expected ${task.length} samples)`);
        const out = buffer.push(r.value);
        held += bytes(r.value) - bytes(out);
        check(r.value);
        if (out) yield out;
      }
      for (let out = buffer.pop(); out; out = buffer.pop()) {
        held -= bytes(out);
        yield out;
      }
    } finally {
      await inputs.return(undefined);
    }
  }
}

/** The error of a buffer over its share: shards of images larger than their mean, which the estimate at the start used. */
function overBudget(item: StreamItem, held: number, samples: number, m: NonNullable<StreamContext['bufferMemory']>): DataError {
  const fit = bytes(item) >= m.share ? 1 : Math.max(1, Math.floor((samples * m.share) / held));
  const remedies = [
    ...(m.shuffleOption ? [`a smaller --shuffle-buffer (about ${fit}; a run resumes only with the same one: start it with --no-resume)`] : []),
    ...(m.buffers > 1 ? ['fewer --num-workers'] : []),
    `a larger ${SHUFFLE_MEMORY_ENV} if the machine has the memory`,
  ];
  return new DataError(
    `shards: the shuffle buffer of a loader worker holds ${formatBytes(held)} of encoded images in ${samples} samples after ${item.name} ` +
      `(${formatBytes(bytes(item))}), over its share of ${formatBytes(m.share)} of the ${m.budget}: these shards' images are larger than their mean. ` +
      `Use ${remedies.join(', or ')}`,
  );
}
