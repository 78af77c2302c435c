// What each rank and each of its loader workers reads in one epoch over tar shards.
//
// The epoch's *stream* is every sample of every shard, shards in a seeded per-epoch order
// (permutation(shards, seed, 'shards', epoch)), samples in their order inside a shard. With N
// samples, W ranks and per-rank batch b:
//
// - dropLast (training): each rank gets nb = floor(N / (W·b)) batches; rank r reads stream
//   positions [r·nb·b, (r+1)·nb·b). The < W·b samples at the end of the stream are not used this
//   epoch (the shard order changes every epoch, so different ones each time).
// - otherwise (evaluation): each rank reads m = ceil(N / W) positions [r·m, (r+1)·m), positions
//   past the end wrapping to the stream's start (DistributedSampler's padding: every sample at
//   least once, < W of them twice); nb = ceil(m / b), the last batch smaller.
//
// Inside a rank, batch j is built by worker j mod K (K workers, as the DataLoader does), and the
// rank's range is cut into K contiguous pieces, one per worker, each exactly as long as that
// worker's batches need. A worker streams its piece (at most two shards only partly), shuffles it
// with its buffer and cuts batches from it, so every rank gets the same number of batches and
// every sample of the epoch's stream is used once, with no coordination between readers.

import { permutation } from '../rng';
import { checkRankSlice } from '../sharding';

/** Ordinals [from, to) of one shard (its index in the dataset's shard list). */
export interface ShardSegment {
  shard: number;
  from: number;
  to: number;
}

/** What one worker reads in an epoch (worker w builds the rank's batches w, w + K, w + 2K, ...). */
export interface WorkerPiece {
  /** The shard pieces it streams, in order (positions 0..length-1 of its input). */
  segments: ShardSegment[];
  length: number;
}

export interface ShardPlanOptions {
  /** Samples per shard, in the dataset's shard order. */
  counts: readonly number[];
  epoch: number;
  seed: number;
  shuffle: boolean;
  rank: number;
  worldSize: number;
  /** Loader workers of this rank (0 = the main thread, planned as one). */
  workers: number;
  batchSize: number;
  dropLast: boolean;
}

export interface ShardEpochPlan {
  /** Batches every rank gets this epoch. */
  count: number;
  /** Shard order of the epoch's stream. */
  shardOrder: Int32Array;
  /** Stream positions [start, start + length) of this rank (modulo the total when padded). */
  rankStart: number;
  rankLength: number;
  pieces: WorkerPiece[];
  /** Worker that builds batch j. */
  workerOf(j: number): number;
  /** Samples in batch j (the batch size, except the last batch of an epoch without dropLast). */
  sizeOf(j: number): number;
  /** Samples worker w has emitted before batch `start` (what it skips when an epoch resumes there). */
  emittedBefore(w: number, start: number): number;
}

/** Batches per rank and samples per rank of an epoch (the same for every epoch). */
export function shardEpochSize(total: number, worldSize: number, batchSize: number, dropLast: boolean): { batches: number; samples: number } {
  if (dropLast) {
    const batches = Math.floor(total / (worldSize * batchSize));
    return { batches, samples: batches * batchSize };
  }
  const samples = Math.ceil(total / worldSize);
  return { batches: Math.ceil(samples / batchSize), samples };
}

export function shardEpochPlan(o: ShardPlanOptions): ShardEpochPlan {
  checkRankSlice(o, 'shards');
  const total = o.counts.reduce((a, c) => a + c, 0);
  const { batches: count, samples: perRank } = shardEpochSize(total, o.worldSize, o.batchSize, o.dropLast);
  const S = o.counts.length;
  const shardOrder = o.shuffle ? permutation(S, o.seed, 'shards', o.epoch) : Int32Array.from({ length: S }, (_, i) => i);
  const K = Math.max(1, o.workers);
  const sizeOf = (j: number) => (j < count - 1 ? o.batchSize : perRank - (count - 1) * o.batchSize);
  // computed, not listed per batch: the counts may come from an index file, and one array element
  // per batch would be as large as the epoch it describes
  const emittedBefore = (w: number, start: number) => {
    const end = Math.min(start, count);
    const n = end > w ? Math.ceil((end - w) / K) : 0;
    const last = count - 1;
    return n * o.batchSize - (last < end && last % K === w ? o.batchSize - sizeOf(last) : 0);
  };
  const rankStart = o.rank * perRank;
  const pieces: WorkerPiece[] = [];
  let offset = rankStart;
  for (let w = 0; w < K; w++) {
    const length = emittedBefore(w, count);
    pieces.push({ segments: streamSegments(o.counts, shardOrder, offset, length), length });
    offset += length;
  }
  return { count, shardOrder, rankStart, rankLength: perRank, pieces, workerOf: (j) => j % K, sizeOf, emittedBefore };
}

/** Shard pieces covering stream positions [start, start + length), wrapping past the end. */
export function streamSegments(counts: readonly number[], shardOrder: Int32Array, start: number, length: number): ShardSegment[] {
  const total = counts.reduce((a, c) => a + c, 0);
  const out: ShardSegment[] = [];
  if (length <= 0) return out;
  if (total === 0) throw new Error('shards: the dataset has no samples');
  let pos = start % total;
  let left = length;
  // the shard holding stream position pos is shardOrder[k], its first sample at acc: pos only grows
  // (but where it wraps), so the search goes on from the last shard found (from the first shard for each
  // segment, it read the counts quadratically in the shards: minutes per epoch for 160,000 shards)
  let acc = 0;
  let k = 0;
  while (left > 0) {
    while (acc + counts[shardOrder[k]] <= pos) acc += counts[shardOrder[k++]];
    const shard = shardOrder[k];
    const from = pos - acc;
    const take = Math.min(left, counts[shard] - from);
    const last = out[out.length - 1];
    if (last && last.shard === shard && last.to === from) last.to += take;
    else out.push({ shard, from, to: from + take });
    left -= take;
    pos = (pos + take) % total;
    if (pos === 0) acc = k = 0; // wrapped to the stream's start
  }
  return out;
}
