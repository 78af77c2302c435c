// Builds batches from a worker's sample stream (stream.ts): decodes and transforms each sample
// into the batch arrays with the project's decoders and transform pipeline, as the index-based
// BatchBuilder does; per-sample augmentation is seeded by (seed, epoch, global sample index).
//
// A sample that cannot be used (corrupt image, missing label, not delivered by its shard) is
// reported and replaced so the batch keeps its size: by one of the last 16 good samples of this
// stream (seeded choice, new augmentation draw), or, before any sample has been good, by the next
// good one ahead in the stream (which is still emitted in its own place later), or, when this
// worker's piece holds none (a whole unusable shard as its piece), by the first good sample of the
// dataset's shards from the failed sample's shard on (read for that alone; it stands in, never counted).

import { Rng } from '../rng';
import { DecodeError } from '../codecs/errors';
import { openImage } from '../codecs/decode';
import { Pipeline, SizeMismatchError } from '../pipeline';
import { mixedTargets } from '../mix';
import type { BuilderConfig, RawBatch, SkipRecord } from '../batch';
import { PieceStream, spareItems, type PieceTask, type StreamContext, type StreamItem } from './stream';

export interface ShardBuilderConfig extends Omit<BuilderConfig, 'spec' | 'masks' | 'replace'> {
  stream: StreamContext;
}

export interface EpochTask extends PieceTask {
  /** Data-parallel rank when the world has more than one (keys the batch-level mixing draws). */
  rank?: number;
}

const RING = 16;

export class ShardBatchBuilder {
  private readonly pipeline: Pipeline;
  private stream: PieceStream | null = null;
  private task: EpochTask | null = null;
  private ring: StreamItem[] = [];
  private ahead: StreamItem[] = [];
  private bad = new Set<number>();
  /** Samples from outside the piece, for a piece without a good one (opened at the first need). */
  private spare: AsyncGenerator<StreamItem, void, undefined> | null = null;

  constructor(private readonly cfg: ShardBuilderConfig) {
    this.pipeline = new Pipeline(cfg.transforms, { uint8: cfg.uint8, dctScaling: cfg.dctScaling, exactDecode: cfg.exactDecode });
  }

  /** Starts a worker's piece of an epoch (closing the previous stream). */
  async start(task: EpochTask): Promise<void> {
    await this.close();
    this.task = task;
    this.stream = new PieceStream(this.cfg.stream, task);
  }

  async close(): Promise<void> {
    const s = this.stream;
    this.stream = null;
    this.ring = [];
    this.ahead = [];
    this.bad = new Set();
    const spare = this.spare;
    this.spare = null;
    await spare?.return(undefined);
    if (s) await s.close();
  }

  async build(batch: number, n: number): Promise<RawBatch> {
    const { cfg } = this;
    const task = this.task;
    if (!task || !this.stream) throw new Error('shards: batch requested before the epoch was started');
    const [h, w] = cfg.size;
    const per = 3 * h * w;
    const images = cfg.uint8 ? new Uint8Array(n * per) : new Float32Array(n * per);
    const labels = new Int32Array(n);
    const indices = new Int32Array(n);
    const skipped: SkipRecord[] = [];
    const standIns: number[] = [];
    for (let s = 0; s < n; s++) {
      const item = this.ahead.shift() ?? (await this.stream.next());
      if (!item) throw new Error(`shards: the stream of epoch ${task.epoch} ended before batch ${batch} was complete`);
      let used = item;
      if (!(await this.run(item, 0, images, s * per, skipped))) {
        used = await this.replace(item, images, s * per, skipped);
        standIns.push(s);
      }
      labels[s] = used.label;
      indices[s] = used.index;
    }
    const shape: [number, number, number, number] = [n, 3, h, w];
    const { lam, targets } = mixedTargets(images, shape, null, labels, cfg, { epoch: task.epoch, batch, rank: task.rank });
    return { epoch: task.epoch, batch, images, shape, labels, indices, masks: null, targets, lam, skipped, standIns };
  }

  /** Transforms an item into a batch slot; false (and a skip record) when it cannot be used. */
  private async run(item: StreamItem, attempt: number, out: Float32Array | Uint8Array, offset: number, skipped: SkipRecord[]): Promise<boolean> {
    const { cfg } = this;
    let fail = item.error ?? (item.image ? null : { reason: 'unreadable' as const, message: 'no image bytes' });
    if (!fail && this.bad.has(item.index)) fail = { reason: 'corrupt', message: 'unusable (seen before)' };
    if (!fail) {
      try {
        const opened = openImage(item.image!, { background: cfg.background, maxPixels: cfg.maxPixels, exifOrientation: cfg.exifOrientation });
        const handle = opened instanceof Promise ? await opened : opened;
        this.pipeline.run(handle, new Rng(cfg.seed, this.task!.epoch, item.index, attempt), out, offset, cfg.size[0], cfg.size[1], null, 0);
        if (!this.ring.includes(item)) {
          this.ring.push(item);
          if (this.ring.length > RING) this.ring.shift();
        }
        return true;
      } catch (e) {
        if (e instanceof SizeMismatchError) throw new Error(`${item.name}: ${e.message}`, { cause: e });
        fail = e instanceof DecodeError ? e : new DecodeError('corrupt', `cannot decode (${(e as Error).message})`);
      }
    }
    this.bad.add(item.index);
    this.ring = this.ring.filter((r) => r !== item);
    skipped.push({ index: item.index, name: item.name, reason: fail.reason, message: fail.message });
    return false;
  }

  private async replace(failed: StreamItem, out: Float32Array | Uint8Array, offset: number, skipped: SkipRecord[]): Promise<StreamItem> {
    const { cfg } = this;
    // maxReplacements counts the unusable sample itself, as the DataLoader's does: that many unusable in a row give up
    for (let attempt = 1; attempt < cfg.maxReplacements; attempt++) {
      const cand = this.ring.length
        ? this.ring[new Rng(cfg.seed, 'replace', this.task!.epoch, failed.index, attempt).int(this.ring.length)]
        : ((await this.goodAhead()) ?? (await this.goodElsewhere(failed)));
      if (!cand) break;
      if (await this.run(cand, attempt, out, offset, skipped)) return cand;
    }
    const last = skipped[skipped.length - 1];
    throw new Error(`shards: no usable sample to replace ${failed.name} (last: ${last.name}: ${last.message}); are the shards readable?`);
  }

  /**
   * When the piece holds no good sample behind or ahead: the next sample that may be usable from the dataset's
   * shards, from the failed one's shard on (a stand-in only: the piece's own samples are still all emitted).
   */
  private async goodElsewhere(failed: StreamItem): Promise<StreamItem | undefined> {
    const { bases } = this.cfg.stream;
    let shard = 0;
    while (shard + 1 < bases.length && bases[shard + 1] <= failed.index) shard++;
    this.spare ??= spareItems(this.cfg.stream, shard);
    for (;;) {
      const r = await this.spare.next();
      if (r.done) return undefined;
      if (!this.bad.has(r.value.index)) return r.value;
    }
  }

  /** The next item ahead in the stream that may be usable (read ahead and kept for later). */
  private async goodAhead(): Promise<StreamItem | undefined> {
    for (const it of this.ahead) if (!it.error && it.image && !this.bad.has(it.index)) return it;
    for (;;) {
      const it = await this.stream!.next();
      if (!it) return undefined;
      this.ahead.push(it);
      if (!it.error && it.image && !this.bad.has(it.index)) return it;
    }
  }
}
