// Features of a frozen encoder over a labelled dataset: batched, no gradients, eval mode,
// '[CLS]', mean-of-patches or the authors' global pooling; the result stays on the encoder's device. Data-parallel, each
// rank encodes its slices of the batches and every rank (or rank 0 alone) ends with all features in
// dataset order, or every rank keeps its own rows as a shard of the set.
import { DataError } from '../util/errors';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { Pooling, VisionTransformer, globalPool } from '../semaim';
import { Progress, perSecond } from '../run/progress';
import { withPrecision, type Precision } from '../run/precision';
import { Augment, LabelledData, indexOrder } from '../data';
import { checkLabelledBatch } from '../data/check-batch';
import { rankSlice, severalRanks, type ProcessGroup } from '../dist';
import { StopAgreement } from '../dist/agree';
import { FeatureOverflowCheck } from './feature-overflow';
import { allRowIndices, firstOccurrences, gatherRankFeatures, rowsPerRank, slicedRowIndices } from './gather-features';
import { stderrLine } from '../util/console-line';
import { checkSignalOption } from '../util/options';

/** 'cls' and 'mean' read the tokens after the final norm; 'gap' is the authors' --global_pool (see Pooling). */
export type FeaturePooling = 'cls' | 'mean' | 'gap';

/** Every {@link FeaturePooling} (one vector per image: not the encoder's 'all'). */
const FEATURE_POOLINGS: readonly FeaturePooling[] = ['cls', 'mean', 'gap'];

/** Features [n, D] (float32, kept: dispose when done) and their labels. */
export interface FeatureSet {
  features: Tensor;
  labels: Int32Array;
  /**
   * Set when the rows are one rank's share of a data-parallel set: their dataset positions (distinct,
   * increasing) and the whole set's size. Absent: the rows are the whole set, in dataset order.
   */
  shard?: { positions: Int32Array; size: number };
}

/**
 * The data-parallel group a k-NN or probe on `train` runs with (null in one process): `train` must be
 * this rank's shard exactly when the group has several ranks, and `test` the whole set.
 */
export function shardGroup(what: string, train: FeatureSet, test: FeatureSet, group: ProcessGroup | null | undefined): ProcessGroup | null {
  const g = severalRanks(group);
  if (g && !train.shard) throw new Error(`${what}: with a group of several ranks, the training features must be this rank’s shard`);
  if (train.shard && !g) throw new Error(`${what}: the training features are one rank’s shard: pass its group`);
  if (test.shard) throw new Error(`${what}: the test features must be the whole set on every rank`);
  return g;
}

/**
 * Refuses (RangeError) labels outside 0..numClasses-1, naming the first: a caller's own feature set would
 * otherwise fail deep in libtorch (the probe's loss), or count a vote or a hit for a class that is not there.
 */
export function checkLabels(what: string, name: string, labels: Int32Array, numClasses: number): void {
  const bad = labels.findIndex((l) => !(l >= 0 && l < numClasses));
  if (bad >= 0) throw new RangeError(`${what}: ${name} label ${labels[bad]} (row ${bad}) is outside 0..${numClasses - 1}`);
}

/** The number of features of the whole set (all shards together). */
export function setSize(set: FeatureSet): number {
  return set.shard ? set.shard.size : set.features.shape[0];
}

/** Options of {@link extractFeatures} and {@link extractPooledFeatures}: batch size, pooling, augmentation, precision and data-parallel gathering. */
export interface ExtractOptions {
  /** Images per batch (a positive integer). */
  batchSize: number;
  pooling: FeaturePooling;
  /** Default 'none' (the evaluation transform). */
  augment?: Augment;
  /** Epoch of the data pass (default 0): which draw of a random `augment`. */
  epoch?: number;
  /** Seed of the data pass's augmentation (default 0). */
  seed?: number;
  /** 'bf16' runs the encoder under autocast (CUDA or CPU); features are returned as float32. */
  precision?: Precision;
  /** Progress bar label; null for none. Default 'features'. */
  label?: string | null;
  /**
   * Data-parallel: `data` gives this rank's slices of the global batches (makeEvalData with the
   * group's rank slice); the features of all ranks are gathered on every rank.
   */
  group?: ProcessGroup | null;
  /**
   * Data-parallel: 'all' (default) gathers every feature on every rank; 'rank0' on rank 0 alone (one
   * copy instead of one per rank), the other ranks getting empty sets (0 rows); 'shard' gathers nothing:
   * each rank keeps the rows it encoded (padding dropped), with their positions (FeatureSet.shard).
   */
  gatherTo?: 'all' | 'rank0' | 'shard';
  /** Aborting it stops the extraction before its next batch: it rejects with an AbortError (code 'ERR_ABORTED'). */
  signal?: AbortSignal;
  /** The encoder's weights file, named when its features are NaN/Inf (a CheckpointError, before any result). */
  encoderName?: string;
}

/** Runs the encoder over one batch of images (already on its device); 'all' gives every token [B, 1 + P, D]. */
export function encodeBatch(encoder: VisionTransformer, images: Tensor, pooling: Pooling, precision: Precision = 'fp32'): Tensor {
  return torch.noGrad(() =>
    torch.scope(() => {
      const f = withPrecision(precision, images.device, () => encoder.features(images, pooling));
      return f.float();
    }),
  );
}

/** Checks that a dataset's images fit the encoder before any work. */
export function checkImageShape(encoder: VisionTransformer, data: LabelledData, what: string): void {
  const want = [encoder.cfg.inChans ?? 3, encoder.cfg.imgSize, encoder.cfg.imgSize];
  const s = data.imageShape;
  if (s && (s.length !== 3 || s.some((v, i) => v !== want[i]))) {
    // (images of the right size in other channels were told to "set the image size of the data" to the size they had)
    const remedy =
      s.length === 3 && s[0] !== want[0]
        ? `it takes ${want[0]} channel(s), the data gives ${s[0]}`
        : `set the image size of the data to ${encoder.cfg.imgSize}`;
    throw new DataError(`${what}: images are [${s}], the encoder expects [${want}] (${remedy})`);
  }
}

/** Extracts features of every image of `data` in its natural order. */
export async function extractFeatures(encoder: VisionTransformer, data: LabelledData, o: ExtractOptions): Promise<FeatureSet> {
  const { pooling, ...rest } = o;
  return (await extractPooledFeatures(encoder, data, [pooling], rest)).get(pooling)!;
}

/**
 * Features of several poolings from ONE encoder pass per batch (the pass is the expensive part;
 * '[CLS]' and the mean of the patch tokens are read from the same final-norm tokens, 'gap' from the
 * tokens before it). Each set equals
 * what extractFeatures gives for that pooling alone.
 */
export async function extractPooledFeatures(
  encoder: VisionTransformer,
  data: LabelledData,
  poolings: readonly FeaturePooling[],
  o: Omit<ExtractOptions, 'pooling'>,
): Promise<Map<FeaturePooling, FeatureSet>> {
  const kinds = [...new Set(poolings)];
  if (!kinds.length) throw new RangeError('extractPooledFeatures: no pooling given');
  const bad = kinds.findIndex((k) => !FEATURE_POOLINGS.includes(k));
  if (bad >= 0) throw new RangeError(`features: pooling must be one of ${FEATURE_POOLINGS.join(', ')}, got ${String(kinds[bad])}`);
  if (!(Number.isInteger(o.batchSize) && o.batchSize > 0)) throw new RangeError(`features: batchSize must be a positive integer, got ${o.batchSize}`);
  checkSignalOption(o.signal);
  const wasTraining = encoder.training;
  encoder.eval();
  const device = encoder.cls_token.device;
  // one [rows, D] float32 tensor per pooling, filled batch by batch: the set is held once (at ImageNet
  // scale 1.28M × 768 floats, 3.9 GB), not as batches and then their concatenation besides
  const filled = new Map<FeaturePooling, Tensor>();
  const group = o.group ?? null;
  const { rank, worldSize } = rankSlice(group);
  const mine = rowsPerRank(data.size, worldSize);
  const labels = new Int32Array(mine);
  const standIns: number[] = []; // rows holding another image in place of an unusable one: left out below
  let indices: Int32Array | null = new Int32Array(mine); // the rows' dataset indices, while every batch gives them
  let n = 0;
  const label = rank !== 0 ? null : o.label === undefined ? 'features' : o.label;
  const progress = label === null ? null : new Progress(label, mine);
  const start = performance.now();
  const mineOf = worldSize > 1 ? ` (rank ${rank} of ${worldSize}: its share of ${data.size})` : '';
  const overflow = new FeatureOverflowCheck();
  try {
    // (data-parallel: every rank has the same number of batches, and all stop at the same one)
    const stop = new StopAgreement(group);
    await stop.throwIfAborted(o.signal);
    for await (const batch of data.batches({ batchSize: o.batchSize, shuffle: false, epoch: o.epoch ?? 0, augment: o.augment ?? 'none', seed: o.seed })) {
      await stop.throwIfAborted(o.signal);
      checkLabelledBatch(batch, { chans: encoder.cfg.inChans ?? 3, size: encoder.cfg.imgSize }, data.numClasses);
      const B = batch.shape[0];
      if (n + B > mine) throw new DataError(`features: the data gave more than its size (${mine}${mineOf}) images`);
      torch.noGrad(() =>
        torch.scope(() => {
          const images = torch.tensor(batch.images, { shape: batch.shape, device });
          encoder.checkImages(images);
          // pooled inside the precision scope, as encoder.features() under encodeBatch
          const pooled = withPrecision(o.precision ?? 'fp32', images.device, () => {
            const h = encoder.forwardTokens(images);
            const z = kinds.some((k) => k !== 'gap') ? encoder.norm.forward(h) : null;
            return kinds.map((k) => (k === 'gap' ? globalPool(h) : encoder.pool(z!, k)));
          });
          kinds.forEach((k, i) => {
            let all = filled.get(k);
            if (!all) filled.set(k, (all = torch.keep(torch.empty([mine, pooled[i].shape[1]], { dtype: 'float32', device }))));
            all.narrow(0, n, B).copy_(pooled[i]); // (copy_ converts a bf16/fp16 batch to float32)
            overflow.add(pooled[i]);
          });
        }),
      );
      labels.set(batch.labels, n);
      if (batch.indices && indices) indices.set(batch.indices, n);
      else indices = null;
      for (const r of batch.standIns ?? []) standIns.push(n + r);
      n += B;
      progress?.update(n, { 'img/s': perSecond(n * worldSize, start) });
    }
    if (n !== mine) throw new DataError(`features: the data gave ${n} images, its size is ${mine}${mineOf}`);
    if (!n) throw new DataError('features: the data is empty');
    await overflow.throwIfOverflowed(o.encoderName, `its features of ${data.size} images`, group);
    // an evaluation counts every image once: a stand-in row (another image of the data, which the
    // loader put in place of an unusable one) is dropped (label -1 in one process, index -1 across ranks),
    // as are repeats (padding), after the gather. A rank's own shard drops them too and numbers its rows
    // among the usable images of the whole set, as one process's rows are: every rank learns every rank's
    // row indices.
    const sharded = !!group && worldSize > 1 && o.gatherTo === 'shard';
    const marked = labels.slice();
    for (const r of standIns) marked[r] = -1;
    const rowIndices = worldSize > 1 ? (indices ?? slicedRowIndices(data.size, o.batchSize, worldSize, rank)).slice() : null;
    for (const r of standIns) if (rowIndices) rowIndices[r] = -1;
    const everyIndex = sharded ? await allRowIndices(group, rowIndices!) : null;
    if (standIns.length && label !== null) {
      stderrLine(`${label}: ${standIns.length} unusable image${standIns.length === 1 ? '' : 's'}${mineOf} left out (not counted twice through a stand-in)`);
    }
    const sets = new Map<FeaturePooling, FeatureSet>();
    try {
      for (const k of kinds) {
        const features = filled.get(k)!;
        filled.delete(k); // handed over: taken by the set, or disposed below
        if (!group || worldSize === 1) {
          sets.set(k, withoutStandIns(inIndexOrder({ features, labels: marked.slice() }, indices)));
          continue;
        }
        if (sharded) {
          sets.set(k, ownRows(features, labels, everyIndex!, rank, data.size));
          continue;
        }
        try {
          const all = await gatherRankFeatures(group, { features, labels, indices: rowIndices! }, data.size, o.gatherTo === 'rank0' ? { root: 0 } : 'all');
          sets.set(k, all ?? { features: torch.keep(torch.zeros([0, features.shape[1]], { device })), labels: new Int32Array(0) });
        } finally {
          features.dispose();
        }
      }
    } catch (e) {
      for (const set of sets.values()) set.features.dispose();
      throw e;
    }
    return sets;
  } finally {
    for (const t of filled.values()) t.dispose();
    overflow.dispose();
    progress?.done();
    encoder.train(wasTraining);
  }
}

/**
 * The rows in the order of their dataset indices, as the set promises (tar shards read by several workers
 * give them in batch order; a linear probe, which shuffles rows by position, would otherwise depend on
 * --num-workers). Stable, so a stand-in row stays beside its image. Takes `set.features` over.
 */
function inIndexOrder(set: FeatureSet, indices: Int32Array | null): FeatureSet {
  const order = indexOrder(indices);
  return order ? selectRows(set.features, set.labels, order) : set;
}

/** The set without its rows labelled -1 (stand-ins). Takes `set.features` over. */
function withoutStandIns(set: FeatureSet): FeatureSet {
  const keep: number[] = [];
  set.labels.forEach((l, i) => l >= 0 && keep.push(i));
  return keep.length === set.labels.length ? set : selectRows(set.features, set.labels, keep);
}

/** Rows `rows` of the features (in that order) with their labels. Takes `features` over. */
function selectRows(features: Tensor, labels: Int32Array, rows: ArrayLike<number>): { features: Tensor; labels: Int32Array } {
  try {
    const picked = torch.scope(() => features.indexSelect(0, torch.tensor(Int32Array.from(rows), { dtype: 'int64', device: features.device })));
    return { features: torch.keep(picked), labels: Int32Array.from(rows, (i) => labels[i]) };
  } finally {
    features.dispose();
  }
}

/**
 * A rank's rows as a shard: the rows that count (firstOccurrences over every rank's row indices, -1 for a
 * stand-in) in dataset order, numbered among the set's usable images (those some rank holds). Takes
 * `features` over.
 */
function ownRows(features: Tensor, labels: Int32Array, everyIndex: Int32Array[], rank: number, size: number): FeatureSet {
  const counted = firstOccurrences(everyIndex, size)[rank];
  const usable = new Uint8Array(size);
  for (const part of everyIndex) for (const v of part) if (v >= 0) usable[v] = 1;
  const before = new Int32Array(size + 1); // usable images below each index
  for (let v = 0; v < size; v++) before[v + 1] = before[v] + usable[v];
  const mine = everyIndex[rank];
  const keep = [...counted.keys()].filter((i) => counted[i]).sort((a, b) => mine[a] - mine[b]);
  const shard = { positions: Int32Array.from(keep, (i) => before[mine[i]]), size: before[size] };
  if (keep.length === mine.length && keep.every((row, i) => row === i)) return { features, labels: labels.slice(), shard };
  return { ...selectRows(features, labels, keep), shard };
}

/** Frees the feature tensors of each set given (null and undefined are skipped). */
export function disposeFeatures(...sets: (FeatureSet | null | undefined)[]): void {
  for (const s of sets) s?.features.dispose();
}
