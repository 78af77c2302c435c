// ShardLoader: batches from tar shards, streamed by worker threads (see plan.ts for who reads
// what). The same batches and options as the DataLoader, plus `shuffleBuffer`; batch j of an
// epoch comes from worker j mod K with at most `prefetch` batches per worker in flight.
//
// Determinism: the batches depend on (seed, epoch, rank, worldSize, workers, batchSize,
// shuffleBuffer); the set of samples an epoch uses depends on (seed, epoch, worldSize, batchSize)
// only. Resume (`iterate(epoch, { batch })`) gives exactly the batches an uninterrupted epoch
// gives from there when those are unchanged (each worker replays its shuffle buffer over sample
// positions and re-reads only the shards its buffer still held; samples replaced because they
// were unusable may differ right after the resume point).

import { join } from 'node:path';
import { staticOutputSize, validateTransforms } from '../transforms';
import { batchFromRaw, defaultWorkers, endBatch, type Batch, type EpochStart, type EpochSummary, type LoaderOptions } from '../loader';
import type { RawBatch, SkipRecord } from '../batch';
import { ShardBatchBuilder, type EpochTask, type ShardBuilderConfig } from './builder';
import type { StreamContext } from './stream';
import { shardEpochPlan, shardEpochSize, type ShardEpochPlan } from './plan';
import { isShardDataset, type ShardDataset } from './dataset';
import { backgroundLevel, checkEpoch, checkLoaderOptions, targetClasses } from '../loader-options';
import { imageMemberCap } from './tar-samples';
import type { FromShardWorker, ToShardWorker } from './worker';
import { checkRankSlice } from '../sharding';
import { WorkerPool, builtInOrder } from '../worker-pool';
import { SkipLog } from '../skip-log';
import { OptionError } from '../../util/options';
import { formatBytes } from '../../util/disk-space';
import { estimateShuffleMemory, shuffleMemoryBudget, shuffleMemoryProblem } from './memory';
import { stderrLine } from '../../util/console-line';
import { quotedPath } from '../../util/printable';

/**
 * Settings of a {@link ShardLoader}: the DataLoader's options but `cache`, `masks` and `replace` (an unusable
 * sample is always replaced: a stream has no index to leave blank), plus the shuffle buffer and its memory budget.
 */
export interface ShardLoaderOptions extends Omit<LoaderOptions, 'cache' | 'masks' | 'replace'> {
  /** Samples each worker's shuffle buffer holds (default 1000; 1 = no shuffling inside shards). */
  shuffleBuffer?: number;
  /** Bytes of encoded images all shuffle buffers may hold (default: $SEMAIM_SHUFFLE_MEMORY, else half of the memory; memory.ts). */
  shuffleMemory?: number;
}

/** The keys of ShardLoaderOptions the DataLoader does not take (tsc wants every one listed). */
const SHARD_LOADER_KEYS: Record<Exclude<keyof ShardLoaderOptions, keyof LoaderOptions>, true> = { shuffleBuffer: true, shuffleMemory: true };

/** A ShardLoader's {@link EpochSummary}, plus the number of shards the index found truncated, corrupt or empty. */
export interface ShardEpochSummary extends EpochSummary {
  /** Shards of the dataset skipped in whole or in part (truncated, corrupt, empty). */
  badShards: number;
}

/** Samples each ShardLoader worker's shuffle buffer holds unless `shuffleBuffer` says otherwise. */
export const DEFAULT_SHUFFLE_BUFFER = 1000;

/**
 * Iterates tar shards ({@link ShardDataset}) in batches streamed by worker threads, each reading its part of
 * the epoch's shards through a shuffle buffer; yields {@link Batch}es as the DataLoader does. Unusable
 * samples are replaced by recent good ones and counted, not thrown; the constructor throws on invalid options,
 * transforms without a fixed output size, or shuffle buffers over their memory budget.
 */
export class ShardLoader implements AsyncIterable<Batch> {
  readonly dataset: ShardDataset;
  readonly batchSize: number;
  /** Batches per epoch (per rank). */
  readonly length: number;
  readonly outputSize: [number, number];
  readonly numWorkers: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly shuffleBuffer: number;
  epoch = 0;
  lastSummary: ShardEpochSummary | null = null;

  private readonly opts: ShardLoaderOptions;
  private readonly cfg: ShardBuilderConfig;
  private readonly prefetch: number;
  private pool: WorkerPool<FromShardWorker, number> | null = null;
  private local: ShardBatchBuilder | null = null;
  private gen = 0;
  private active = false;
  private closed = false;
  private readonly skips: SkipLog;

  constructor(dataset: ShardDataset, opts: ShardLoaderOptions) {
    if (!isShardDataset(dataset)) {
      const root = (dataset as { root?: unknown } | null)?.root;
      const given = root === undefined ? String(dataset) : `${String(root)}, an indexed Dataset: read it with a DataLoader`;
      throw new TypeError(`ShardLoader: expected a ShardDataset (tar shards, from shardDataset), got ${given}`);
    }
    checkLoaderOptions(opts, 'ShardLoader', [...Object.keys(SHARD_LOADER_KEYS), 'replace']); // (replace: false is refused below, with its reason)
    // (a caller's replace: false was ignored: its batches still held stand-ins where it expected blanks)
    if ((opts as LoaderOptions).replace === false)
      throw new RangeError(
        'ShardLoader: replace: false is not supported: an unusable sample of a stream is always replaced by another, and Batch.standIns lists the rows that stand in',
      );
    const transforms = opts.transforms ?? [];
    validateTransforms(transforms);
    this.dataset = dataset;
    this.opts = opts;
    this.batchSize = opts.batchSize;
    this.rank = opts.rank ?? 0;
    this.worldSize = opts.worldSize ?? 1;
    checkRankSlice(this, 'ShardLoader');
    this.length = shardEpochSize(dataset.length, this.worldSize, this.batchSize, !!opts.dropLast).batches;
    if (this.length === 0) {
      throw new Error(
        `ShardLoader: ${quotedPath(dataset.root)} has ${dataset.length} samples, fewer than one global batch of ${this.worldSize}×${this.batchSize} with dropLast`,
      );
    }
    const size = staticOutputSize(transforms);
    if (!size)
      throw new Error(`ShardLoader: images of ${quotedPath(dataset.root)} may differ in size; add centerCrop(...), randomResizedCrop(...) or resize([h, w])`);
    this.outputSize = size;
    this.numWorkers = opts.workers ?? defaultWorkers();
    this.shuffleBuffer = opts.shuffleBuffer ?? DEFAULT_SHUFFLE_BUFFER;
    if (!(Number.isInteger(this.shuffleBuffer) && this.shuffleBuffer >= 1))
      throw new RangeError(`ShardLoader: shuffleBuffer must be an integer >= 1, got ${this.shuffleBuffer}`);
    this.prefetch = opts.prefetch ?? 2;
    this.skips = new SkipLog(opts.onWarning ?? stderrLine);
    const numClasses = targetClasses(opts, dataset, 'ShardLoader');
    const background = backgroundLevel(opts.alphaBackground);
    const t = dataset.table;
    this.cfg = {
      transforms,
      uint8: !!opts.uint8,
      dctScaling: opts.dctScaling ?? true,
      exactDecode: opts.exactDecode,
      background,
      maxPixels: opts.maxImagePixels,
      exifOrientation: opts.exifOrientation,
      size: this.outputSize,
      seed: opts.seed ?? 0,
      mix: opts.mixup ?? null,
      labelSmoothing: opts.labelSmoothing ?? 0,
      numClasses,
      maxReplacements: opts.maxReplacements ?? 50,
      stream: {
        paths: t.paths,
        bases: t.bases,
        seed: opts.seed ?? 0,
        labelled: dataset.classes.length > 0,
        maxImageBytes: imageMemberCap(opts.maxImagePixels),
      },
    };
    if (opts.shuffle !== false && this.shuffleBuffer > 1) this.cfg.stream.bufferMemory = this.checkShuffleMemory();
  }

  /** Refuses buffers that would not fit their memory budget at the shards' mean sample size; returns each buffer's share. */
  private checkShuffleMemory(): StreamContext['bufferMemory'] {
    const given = this.opts.shuffleMemory;
    if (given !== undefined && !(given >= 0)) throw new RangeError(`ShardLoader: shuffleMemory must be a number of bytes >= 0, got ${given}`);
    const budget = given !== undefined ? { bytes: given, source: 'the shuffleMemory option' } : shuffleMemoryBudget();
    const buffers = Math.max(1, this.numWorkers);
    const held = Math.min(this.shuffleBuffer, Math.max(...this.plan(0).pieces.map((p) => p.length)));
    const estimate = estimateShuffleMemory(this.dataset.table.entries, held, buffers, this.cfg.stream.maxImageBytes);
    const problem = shuffleMemoryProblem(estimate, budget, this.opts.shuffleBuffer);
    // the CLI's flag: --shuffle-buffer where the command has one, else the workers are what can change
    if (problem) throw new OptionError(this.opts.shuffleBuffer !== undefined ? 'shuffleBuffer' : 'numWorkers', `${quotedPath(this.dataset.root)}: ${problem}`);
    return {
      share: Math.floor(budget.bytes / buffers),
      buffers,
      shuffleOption: this.opts.shuffleBuffer !== undefined,
      budget: `shuffle-buffer budget of ${formatBytes(budget.bytes)} for ${buffers} worker${buffers === 1 ? '' : 's'} (${budget.source})`,
    };
  }

  /** What this rank's workers read in an epoch. */
  plan(epoch: number): ShardEpochPlan {
    return shardEpochPlan({
      counts: this.dataset.table.entries.map((e) => e.samples),
      epoch,
      seed: this.cfg.seed,
      shuffle: this.opts.shuffle !== false,
      rank: this.rank,
      worldSize: this.worldSize,
      workers: this.numWorkers,
      batchSize: this.batchSize,
      dropLast: !!this.opts.dropLast,
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<Batch> {
    return this.iterate(this.epoch);
  }

  /**
   * Iterates one epoch from `start`: a batch of this loader, or a number of samples of the epoch
   * consumed (converted to the nearest batch boundary at this world size and batch size: only an
   * approximation of the same position when those changed).
   */
  async *iterate(epoch: number = this.epoch, start: EpochStart = {}): AsyncGenerator<Batch, void, undefined> {
    if (this.closed) throw new Error('ShardLoader: closed');
    checkEpoch(epoch, 'ShardLoader');
    if (this.active) throw new Error('ShardLoader: an epoch is already being iterated (finish or break it first)');
    // checked before the loader moves on: a refused start leaves the epoch and the last summary as they were
    const plan = this.plan(epoch);
    const end = Math.min(plan.count, endBatch(start, 'ShardLoader'));
    const endsEarly = end < plan.count;
    const first = this.startBatch(start, end);
    this.active = true;
    this.epoch = epoch + 1;
    const gen = ++this.gen;
    const t0 = performance.now();
    const tally = new Map<number, SkipRecord>();
    let batches = 0;
    let samples = 0;
    let complete = false;
    try {
      const task = (w: number): EpochTask => ({
        epoch,
        segments: plan.pieces[w].segments,
        length: plan.pieces[w].length,
        skip: plan.emittedBefore(w, first),
        bufferSize: this.opts.shuffle === false ? 1 : this.shuffleBuffer,
        rngKeys: ['buffer', epoch, this.rank, w],
        rank: this.worldSize > 1 ? this.rank : undefined,
      });
      let raws: AsyncIterable<RawBatch>;
      if (this.numWorkers === 0) {
        const local = (this.local ??= new ShardBatchBuilder(this.cfg));
        await local.start(task(0));
        raws = builtInOrder(first, end, (j) => {
          // (close() ended the stream: a batch after it would be refused as one of no epoch)
          if (this.closed) throw new Error('ShardLoader: closed');
          return local.build(j, plan.sizeOf(j));
        });
      } else {
        const pool = (this.pool ??= this.startWorkers());
        pool.slots.forEach((s, w) => s.worker.postMessage({ type: 'epoch', gen, task: task(w) } satisfies ToShardWorker));
        raws = pool.inOrder(
          first,
          end,
          this.prefetch,
          (j) => pool.slots[plan.workerOf(j)],
          (s, j) => pool.request<RawBatch>(s, j, { type: 'batch', gen, batch: j, size: plan.sizeOf(j) } satisfies ToShardWorker),
        );
      }
      for await (const raw of raws) {
        batches++;
        samples += raw.indices.length;
        // handed out, the last batch completes the epoch: a training loop breaks right after its last step
        const batch = this.finish(raw, tally);
        complete = batches === end - first;
        yield batch;
      }
      complete = true;
    } finally {
      this.active = false;
      // a stream stopped before its end (a break, or the caller's end batch) is dropped, not continued
      const drained = complete && !endsEarly;
      if (!drained) this.gen++;
      this.pool?.forgetRequests();
      if (this.local && !drained) await this.local.close();
      this.lastSummary = this.summarise(epoch, batches, samples, tally, (performance.now() - t0) / 1000, complete);
      if (this.opts.persistentWorkers === false || this.pool?.failed) await this.terminate();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.pool?.fail(new Error('ShardLoader: closed'));
    await this.local?.close();
    await this.terminate();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private startBatch(start: EpochStart, count: number): number {
    if (start.batch !== undefined && start.sample !== undefined) throw new Error('ShardLoader: give the epoch start as a batch or as a sample, not both');
    const s = start.sample;
    // (checked before rounding: -1 and 1.5 rounded to a batch and started there)
    if (s !== undefined && !(Number.isInteger(s) && s >= 0 && s <= this.dataset.length))
      throw new RangeError(`ShardLoader: start sample ${s} is outside the epoch (0..${this.dataset.length})`);
    const b = start.sample !== undefined ? Math.round(start.sample / (this.worldSize * this.batchSize)) : (start.batch ?? 0);
    if (!(Number.isInteger(b) && b >= 0)) throw new RangeError(`ShardLoader: start must be >= 0, got ${b}`);
    return Math.min(b, count);
  }

  private startWorkers(): WorkerPool<FromShardWorker, number> {
    return new WorkerPool<FromShardWorker, number>({
      script: join(__dirname, 'worker.js'),
      owner: 'ShardLoader',
      what: 'shard worker',
      count: this.numWorkers,
      workerData: { cfg: this.cfg },
      generation: () => this.gen,
      keyOf: (m) => (m.type === 'batch' ? m.batch.batch : m.batch),
      valueOf: (m) => (m.type === 'batch' ? m.batch : undefined),
    });
  }

  private finish(raw: RawBatch, tally: Map<number, SkipRecord>): Batch {
    this.skips.count(raw.skipped, tally);
    return batchFromRaw(raw);
  }

  private summarise(epoch: number, batches: number, samples: number, tally: Map<number, SkipRecord>, seconds: number, complete: boolean): ShardEpochSummary {
    const skips = this.skips.epochSkips(epoch, complete, tally, 'sample', 'replaced by another sample');
    return { epoch, batches, samples, ...skips, seconds, complete, badShards: this.dataset.table.problems.length };
  }

  private async terminate(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    await pool?.stop();
  }
}
