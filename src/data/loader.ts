// DataLoader: seeded shuffling, batching, and decoding/augmentation in worker threads with bounded
// prefetch, yielding plain-array batches through async iteration.
//
// - The order of epoch e is a permutation seeded by (seed, e): it differs per epoch and repeats
//   for the same seed. Each sample's augmentation is seeded by (seed, epoch, index), so results do
//   not depend on the number of workers; a repeat of the data-parallel padding (no dropLast) also by
//   its pass over the order, so that it is another view of its image, as PyTorch's would be.
// - Batch b goes to worker (b - first) mod W, first being the call's first batch; at most `prefetch` batches per worker are in flight or waiting
//   to be consumed. Buffers are transferred, not copied.
// - Idle workers are unref'd, so a program that stops iterating (break, return, throw) exits
//   normally; `close()` stops them after their current task (src/data/worker-stop.ts).
// - An unusable sample is replaced by another one (batches keep their size), or with `replace: false`
//   left as a blank row, reported once with a warning line naming the file, and counted in the
//   end-of-epoch summary.

import { WorkerPool, builtInOrder, type PoolSlot } from './worker-pool';
import { SkipLog, type EpochSkips } from './skip-log';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { permutation, Rng } from './rng';
import { BatchBuilder, type BuilderConfig, type BatchTask, type RawBatch, type PackedChunk, type SkipRecord } from './batch';
import type { Dataset, DatasetSpec } from './dataset';
import type { ExifOrientationPolicy } from './codecs/orientation';
import { staticOutputSize, validateTransforms, isGeometric, type TransformSpec } from './transforms';
import { buildPlan } from './geometry';
import type { MixupOptions } from './mix';
import { assembleCache, cacheRanges, DEFAULT_CACHE_BYTES, type CacheOptions } from './cache';
import type { FromWorker, ToWorker } from './worker';
import { rankPlan, sliceWrapped, wrapPasses, type RankPlan } from './sharding';
import { stderrLine } from '../util/console-line';
import { quotedPath } from '../util/printable';
import { backgroundLevel, checkCacheOption, checkEpoch, checkLoaderOptions, targetClasses } from './loader-options';
import { isShardDataset } from './shards/dataset';

/**
 * Settings of a {@link DataLoader} (and, less `cache` and `masks`, of the ShardLoader); only `batchSize` is
 * required. Invalid values throw from the constructor.
 */
export interface LoaderOptions {
  batchSize: number;
  /** Shuffle every epoch (default true). */
  shuffle?: boolean;
  /** Seed for shuffling and augmentation: an integer (default 0). */
  seed?: number;
  /** Drop the last incomplete batch (default false). */
  dropLast?: boolean;
  /** Transforms (see transforms.ts); empty keeps images as they are (they must share one size). */
  transforms?: TransformSpec[];
  /** Worker threads; 0 runs everything on the calling thread. Default: min(8, cores - 1), at least 1 ({@link defaultWorkers}). */
  workers?: number;
  /** Batches per worker in flight or waiting to be consumed, at least 1 (default 2). */
  prefetch?: number;
  /** Emit Uint8Array batches (0..255, no normalisation) instead of Float32Array. */
  uint8?: boolean;
  /** Also emit object masks [n, h, w] (datasets with masks only, e.g. synthetic objects). */
  masks?: boolean;
  /** Batch-level mixup/cutmix; produces soft `targets`. */
  mixup?: MixupOptions;
  /** Label smoothing for soft `targets` when mixup is off, in [0, 1] (0 = no targets). */
  labelSmoothing?: number;
  /** Number of classes for soft targets (default: dataset.classes.length; not fewer). */
  numClasses?: number;
  /**
   * Decode a file dataset once into shared memory before the first epoch. Images are kept at their full size, so
   * JPEGs are never DCT-downscaled: the batches are those of `dctScaling: false`, which differ (by up to about one
   * normalised unit per pixel) from an uncached loader's wherever a sample shrinks 2× or more.
   */
  cache?: boolean | CacheOptions;
  /** JPEG DCT-domain downscaling when a sample shrinks ≥ 2× on the fused path (default true; exactDecode never uses it). */
  dctScaling?: boolean;
  /**
   * Decode JPEGs as PIL does before resizing (see PipelineOptions.exactDecode; default: on unless the
   * transforms crop at random).
   */
  exactDecode?: boolean;
  /**
   * Refuse (skip and count, like a corrupt file) images whose header declares more pixels than this
   * (default DEFAULT_MAX_IMAGE_PIXELS = 178,956,970, PIL's decompression-bomb limit; 0 = no limit).
   */
  maxImagePixels?: number;
  /** 'ignore' (default, as torchvision) or 'apply' the EXIF orientation of image files. */
  exifOrientation?: ExifOrientationPolicy;
  /** Background that transparent pixels are composited onto: 'white' (default), 'black' or a grey level 0..255. */
  alphaBackground?: 'black' | 'white' | number;
  /** Keep workers between epochs (default true; idle workers never keep the process alive). */
  persistentWorkers?: boolean;
  /** Unusable samples in a row for one slot, its own included, before the loader gives up (default 50; 0 and 1: no replacement). */
  maxReplacements?: number;
  /**
   * Put another sample in place of an unusable one (default true: training keeps its batch size).
   * false (an evaluation, which leaves it out): its row is left blank, with index -1, and listed in
   * `standIns`; no share of unusable files stops the epoch.
   */
  replace?: boolean;
  /** Receives warning and summary lines (default: written to stderr). */
  onWarning?: (line: string) => void;
  /**
   * Data-parallel rank and world size (default 0 / 1). Each rank gets its slice of every global
   * batch of worldSize × batchSize samples of one seeded order (see sharding.ts).
   */
  rank?: number;
  worldSize?: number;
}

/** The keys of LoaderOptions the ShardLoader does not take (tsc wants every one listed). */
const DATA_LOADER_KEYS: Record<'cache' | 'masks' | 'replace', true> = { cache: true, masks: true, replace: true };

/**
 * Where an epoch starts: at a batch of this loader (`batch`), or after `sample` samples of the
 * epoch's order (a position that is the same at any world size: resume after re-sharding).
 */
export interface EpochStart {
  batch?: number;
  sample?: number;
  /**
   * The batch index (of the whole epoch, exclusive) where the caller stops: batches from there on are not
   * built, and the epoch counts as complete after the one before it. A training loop whose optimiser step
   * takes several batches (--accum-iter) stops at a multiple of them.
   */
  end?: number;
}

/** Where `start` says the caller stops (Infinity: at the end of the epoch). */
export function endBatch(start: EpochStart, owner: string): number {
  const e = start.end ?? Infinity;
  if (!(e === Infinity || (Number.isInteger(e) && e >= 0))) throw new RangeError(`${owner}: end batch must be an integer >= 0, got ${e}`);
  return e;
}

/**
 * One batch a {@link DataLoader} or ShardLoader yields: NCHW images as a plain typed array (normalised
 * float32, or uint8), labels, optional soft targets and masks, and which samples stood in for unusable ones.
 */
export interface Batch {
  /** N×3×H×W, normalised float32 (or bytes with `uint8`). */
  images: Float32Array | Uint8Array;
  dtype: 'float32' | 'uint8';
  shape: [number, number, number, number];
  /** Class labels (-1 for unlabelled data); the unmixed labels when mixup is on. */
  labels: Int32Array;
  /** Soft targets N×numClasses (mixup/cutmix and/or label smoothing). */
  targets?: Float32Array;
  /** Object masks N×H×W (0/1) when requested. */
  masks?: Uint8Array;
  /** Dataset index of each sample (after replacement of unusable ones; -1 for a row left blank, see `replace`). */
  indices: Int32Array;
  epoch: number;
  /** Batch number within the epoch (the global batch: the same on every rank). */
  index: number;
  /** Mixing coefficient (1 = no mixing). */
  lam: number;
  /** Samples of this batch that replaced unusable ones. */
  replaced: number;
  /** The rows holding them (another sample of the dataset, in place of an unusable one), or left blank. */
  standIns: Int32Array;
  /** The unusable samples this batch replaced: dataset index, file name and why. */
  skipped: readonly SkipRecord[];
}

/**
 * What a loader reports after an epoch (`lastSummary`): batches and samples handed out, seconds taken, whether
 * the epoch ran to its end, and the unusable samples skipped, counted by reason.
 */
export interface EpochSummary extends EpochSkips {
  epoch: number;
  batches: number;
  samples: number;
  seconds: number;
  /** False when iteration stopped before the epoch's last batch was handed out. */
  complete: boolean;
}

/** One worker per core but one (the training thread's), at least 1 and at most 8. */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(8, availableParallelism() - 1));
}

/**
 * Iterates an indexed {@link Dataset} in seeded, shuffled batches, decoding and augmenting in worker threads;
 * like torch.utils.data.DataLoader, but batches are plain typed arrays (NCHW), not tensors. `for await` runs
 * the next epoch. Unusable images are skipped and counted (replaced, or left blank with `replace: false`);
 * `maxReplacements` of them in a row throw, as do invalid options or an empty dataset in the constructor.
 */
export class DataLoader implements AsyncIterable<Batch> {
  readonly dataset: Dataset;
  readonly batchSize: number;
  /** Batches per epoch. */
  readonly length: number;
  /** Output [height, width]. */
  readonly outputSize: [number, number];
  readonly numWorkers: number;
  readonly rank: number;
  readonly worldSize: number;
  /** The epoch the next `for await` iterates. */
  epoch = 0;
  /** Summary of the last epoch iterated (also when it stopped early). */
  lastSummary: EpochSummary | null = null;

  private readonly opts: LoaderOptions;
  private readonly cfg: BuilderConfig;
  private readonly prefetch: number;
  private readonly persistent: boolean;
  private readonly warn: (line: string) => void;
  private pool: WorkerPool<FromWorker, string> | null = null;
  private local: BatchBuilder | null = null;
  private gen = 0;
  private active = false;
  private closed = false;
  private readonly skips: SkipLog;
  private spec: DatasetSpec;
  private cacheDone = false;

  constructor(dataset: Dataset, opts: LoaderOptions) {
    if (isShardDataset(dataset))
      throw new TypeError(`DataLoader: ${quotedPath(dataset.root)} is a ShardDataset (tar shards, streamed, not indexed): read it with a ShardLoader`);
    if (typeof dataset?.spec !== 'object')
      throw new TypeError(`DataLoader: expected an indexed Dataset (imageFolder, syntheticObjects, ...), got ${String(dataset)}`);
    checkLoaderOptions(opts, 'DataLoader', Object.keys(DATA_LOADER_KEYS));
    checkCacheOption(opts.cache);
    if (dataset.length === 0) throw new Error(`DataLoader: dataset ${quotedPath(dataset.root)} is empty`);
    const transforms = opts.transforms ?? [];
    validateTransforms(transforms);
    this.dataset = dataset;
    this.opts = opts;
    this.batchSize = opts.batchSize;
    const n = dataset.length;
    this.rank = opts.rank ?? 0;
    this.worldSize = opts.worldSize ?? 1;
    this.length = this.plan(0).count;
    if (this.length === 0) {
      const batch = this.worldSize > 1 ? `global batch of ${this.worldSize}×${opts.batchSize}` : `batch of ${opts.batchSize}`;
      throw new Error(`DataLoader: dataset ${quotedPath(dataset.root)} has ${n} samples, fewer than one ${batch} with dropLast`);
    }
    this.outputSize = resolveSize(dataset, transforms);
    this.numWorkers = opts.workers ?? defaultWorkers();
    this.prefetch = opts.prefetch ?? 2;
    this.persistent = opts.persistentWorkers ?? true;
    this.warn = opts.onWarning ?? stderrLine;
    this.skips = new SkipLog(this.warn);
    if (opts.masks && !dataset.hasMasks) throw new Error(`DataLoader: masks requested but ${quotedPath(dataset.root)} has no object masks`);
    const numClasses = targetClasses(opts, dataset, 'DataLoader');
    const background = backgroundLevel(opts.alphaBackground);
    this.spec = dataset.spec;
    this.cfg = {
      spec: dataset.spec,
      transforms,
      uint8: !!opts.uint8,
      dctScaling: opts.dctScaling ?? true,
      exactDecode: opts.exactDecode,
      background,
      maxPixels: opts.maxImagePixels,
      exifOrientation: opts.exifOrientation,
      masks: !!opts.masks,
      size: this.outputSize,
      seed: opts.seed ?? 0,
      mix: opts.mixup ?? null,
      labelSmoothing: opts.labelSmoothing ?? 0,
      numClasses,
      maxReplacements: opts.maxReplacements ?? 50,
      replace: opts.replace ?? true,
    };
  }

  /** Sample order of an epoch. */
  order(epoch: number): Int32Array {
    checkEpoch(epoch, 'DataLoader');
    const n = this.dataset.length;
    if (this.opts.shuffle === false) {
      const p = new Int32Array(n);
      for (let i = 0; i < n; i++) p[i] = i;
      return p;
    }
    return permutation(n, this.cfg.seed, 'shuffle', epoch);
  }

  /** This rank's batches of an epoch from a start position (samples of the epoch's order consumed). */
  plan(startSample: number): RankPlan {
    return rankPlan({
      length: this.dataset.length,
      batchSize: this.batchSize,
      dropLast: !!this.opts.dropLast,
      rank: this.rank,
      worldSize: this.worldSize,
      startSample,
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<Batch> {
    return this.iterate(this.epoch);
  }

  /**
   * Iterates one epoch (default: the next one) from `start` (default: its beginning; earlier
   * batches are not built); afterwards `epoch` is the following one.
   */
  async *iterate(epoch: number = this.epoch, start: EpochStart = {}): AsyncGenerator<Batch, void, undefined> {
    if (this.closed) throw new Error('DataLoader: closed');
    checkEpoch(epoch, 'DataLoader');
    if (this.active) throw new Error('DataLoader: an epoch is already being iterated (finish or break it first)');
    // checked before the loader moves on: a refused start leaves the epoch and the last summary as they were
    const startSample = this.startSample(start);
    const plan = this.plan(startSample);
    const end = endBatch(start, 'DataLoader');
    this.active = true;
    this.epoch = epoch + 1;
    const gen = ++this.gen;
    const t0 = performance.now();
    const tally = new Map<number, SkipRecord>();
    let batches = 0;
    let samples = 0;
    let complete = false;
    try {
      await this.prepare(gen);
      const order = this.order(epoch);
      const first = Math.floor(startSample / plan.globalBatch);
      const nb = Math.max(0, Math.min(plan.count, end - first));
      const rank = this.worldSize > 1 ? this.rank : undefined;
      // batch j of the epoch (first <= j < first + nb)
      const task = (j: number): BatchTask => {
        const [a, b] = plan.range(j - first);
        const passes = wrapPasses(order.length, a, b);
        return { epoch, batch: j, rank, indices: sliceWrapped(order, a, b), ...(passes ? { passes } : {}) };
      };
      const pool = this.pool;
      const raws = pool
        ? // keyed by the batch's index in the epoch, which the worker's reply carries (not its place in this run)
          pool.inOrder(
            first,
            first + nb,
            this.prefetch,
            (j) => pool.slots[(j - first) % pool.slots.length],
            (s, j) => pool.request<RawBatch>(s, `b${j}`, { type: 'batch', gen, task: task(j) } satisfies ToWorker),
          )
        : builtInOrder(first, first + nb, (j) => {
            // (a pool's requests reject once closed; the calling thread checks before each batch)
            if (this.closed) throw new Error('DataLoader: closed');
            return this.local!.build(task(j));
          });
      for await (const raw of raws) {
        batches++;
        samples += raw.indices.length;
        // handed out, the last batch completes the epoch: a training loop breaks right after its last step
        const batch = this.finish(raw, tally);
        complete = batches === nb;
        yield batch;
      }
      complete = true;
    } finally {
      this.active = false;
      if (!complete) this.gen++; // results still in flight belong to a finished generation
      this.pool?.forgetRequests();
      this.lastSummary = this.summarise(epoch, batches, samples, tally, (performance.now() - t0) / 1000, complete);
      if (!this.persistent || this.pool?.failed) await this.terminate();
    }
  }

  /** Terminates the worker threads; the loader cannot be used afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    this.pool?.fail(new Error('DataLoader: closed'));
    await this.terminate();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---------------------------------------------------------------- internals

  private startSample(start: EpochStart): number {
    if (start.batch !== undefined && start.sample !== undefined) throw new Error('DataLoader: give the epoch start as a batch or as a sample, not both');
    if (start.sample !== undefined) return start.sample;
    const b = start.batch ?? 0;
    if (!(Number.isInteger(b) && b >= 0)) throw new RangeError(`DataLoader: start batch must be an integer >= 0, got ${b}`);
    return Math.min(this.dataset.length, b * this.plan(0).globalBatch);
  }

  private async prepare(gen: number): Promise<void> {
    if (this.numWorkers === 0) {
      if (!this.local) this.local = new BatchBuilder({ ...this.cfg, spec: this.spec });
    } else if (!this.pool) {
      this.pool = new WorkerPool<FromWorker, string>({
        script: join(__dirname, 'worker.js'),
        owner: 'DataLoader',
        what: 'data worker',
        count: this.numWorkers,
        workerData: { cfg: { ...this.cfg, spec: this.spec } },
        generation: () => this.gen,
        // a batch's reply carries its index in the epoch, a decoded range its id
        keyOf: (m) => (m.type === 'batch' ? `b${m.batch.batch}` : m.type === 'decoded' ? `d${m.id}` : m.batch !== undefined ? `b${m.batch}` : `d${m.id}`),
        valueOf: (m) => (m.type === 'batch' ? m.batch : m.type === 'decoded' ? m.chunk : undefined),
      });
    }
    if (this.opts.cache && !this.cacheDone && this.spec.kind === 'files') await this.buildCache(gen);
  }

  private async buildCache(gen: number): Promise<void> {
    const files = this.spec;
    if (files.kind !== 'files') return;
    const maxBytes = typeof this.opts.cache === 'object' ? (this.opts.cache.maxBytes ?? DEFAULT_CACHE_BYTES) : DEFAULT_CACHE_BYTES;
    const n = files.paths.offsets.length - 1;
    const ranges = cacheRanges(n);
    const chunks: PackedChunk[] = [];
    let bytes = 0;
    let aborted = false;
    const take = (c: PackedChunk): void => {
      chunks.push(c);
      bytes += c.data.byteLength;
      for (const s of c.skipped) this.skips.note(s);
      if (bytes > maxBytes) aborted = true;
    };
    if (this.pool) {
      const pool = this.pool;
      let next = 0;
      const runSlot = async (s: PoolSlot): Promise<void> => {
        while (next < ranges.length && !aborted) {
          const id = next++;
          const [a, b] = ranges[id];
          take(await pool.request<PackedChunk>(s, `d${id}`, { type: 'decode', gen, id, start: a, end: b } satisfies ToWorker));
        }
      };
      await pool.wait(Promise.all(pool.slots.map(runSlot)));
    } else {
      for (const [a, b] of ranges) {
        if (aborted) break;
        take(await this.local!.decodeRange(a, b));
      }
    }
    this.cacheDone = true;
    if (aborted) {
      this.warn(
        `data: cache disabled: decoded images of ${quotedPath(files.root)} need more than ${(maxBytes / 1024 ** 3).toFixed(1)} GiB; decoding from files instead`,
      );
      return;
    }
    this.spec = assembleCache(chunks, n, files);
    this.pool?.postAll({ type: 'spec', spec: this.spec } satisfies ToWorker);
    if (this.local) this.local.setSpec(this.spec);
  }

  private finish(raw: RawBatch, tally: Map<number, SkipRecord>): Batch {
    this.skips.count(raw.skipped, tally);
    return batchFromRaw(raw);
  }

  private summarise(epoch: number, batches: number, samples: number, tally: Map<number, SkipRecord>, seconds: number, complete: boolean): EpochSummary {
    const fate = this.cfg.replace ? 'replaced by another sample' : 'left out';
    return { epoch, batches, samples, ...this.skips.epochSkips(epoch, complete, tally, 'file', fate), seconds, complete };
  }

  private async terminate(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    await pool?.stop();
  }
}

/** A worker's batch as the loaders yield it. */
export function batchFromRaw(raw: RawBatch): Batch {
  const batch: Batch = {
    images: raw.images,
    dtype: raw.images instanceof Float32Array ? 'float32' : 'uint8',
    shape: raw.shape,
    labels: raw.labels,
    indices: raw.indices,
    epoch: raw.epoch,
    index: raw.batch,
    lam: raw.lam,
    replaced: raw.skipped.length,
    standIns: Int32Array.from(raw.standIns),
    skipped: raw.skipped,
  };
  if (raw.targets) batch.targets = raw.targets;
  if (raw.masks) batch.masks = raw.masks;
  return batch;
}

/** Output size from the transforms, else from the dataset's fixed size. */
function resolveSize(dataset: Dataset, transforms: TransformSpec[]): [number, number] {
  const s = staticOutputSize(transforms);
  if (s) return s;
  if (dataset.fixedSize) {
    const [h, w] = dataset.fixedSize;
    const p = buildPlan(w, h, transforms.filter(isGeometric), new Rng(0));
    return [p.outH, p.outW];
  }
  throw new Error(
    `DataLoader: images of ${quotedPath(dataset.root)} may differ in size and the transforms do not fix one; add centerCrop(...), randomResizedCrop(...) or resize([h, w])`,
  );
}
