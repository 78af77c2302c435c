// Splitting one epoch's sample order over data-parallel ranks.
//
// Every rank computes the same seeded order of the epoch (it depends on seed and epoch only) and
// takes its slice of each *global* batch of `worldSize × batchSize` samples:
//
//   global batch j = order[s + j·B, s + (j+1)·B)          B = worldSize · batchSize
//   rank r's batch j = order[s + j·B + r·b, s + j·B + (r+1)·b)
//
// so the concatenation of the ranks' batch j, in rank order, is exactly the batch j that one
// process with batch size B gets (same images, same order, same per-sample augmentation). `s` is
// the number of samples of the epoch's order already consumed (0 at the start of an epoch): a
// position that does not depend on the world size, so a run can resume at another world size.
//
// Without dropLast the order is padded as torch's DistributedSampler pads it: repeated from its
// start up to a multiple of worldSize, so every sample is used at least once and every rank gets
// the same number of batches; the last global batch is split evenly (each rank gets size/W).
// With dropLast the incomplete global batch at the end is dropped (fewer than B samples).

/** A process's place in data-parallel work: its rank in [0, worldSize). */
export interface RankSlice {
  rank: number;
  worldSize: number;
}

/**
 * What {@link rankPlan} splits: the epoch's length, the per-rank batch size, dropLast, the rank slice and
 * where the epoch resumes.
 */
export interface RankPlanOptions extends RankSlice {
  /** Samples in the epoch's order. */
  length: number;
  /** Per-rank batch size. */
  batchSize: number;
  dropLast: boolean;
  /** Samples of the epoch's order already consumed (default 0). */
  startSample?: number;
}

/** Batches of one rank over the rest of an epoch. */
export interface RankPlan {
  /** Batches this rank gets (the same on every rank). */
  count: number;
  /** Global batch size (worldSize × batchSize). */
  globalBatch: number;
  /** Positions [start, end) in the (padded) order of this rank's batch j; positions ≥ length wrap to the start. */
  range(j: number): [number, number];
}

export function checkRankSlice(s: RankSlice, what = 'data'): void {
  if (!(Number.isInteger(s.worldSize) && s.worldSize >= 1)) throw new RangeError(`${what}: worldSize must be an integer >= 1, got ${s.worldSize}`);
  if (!(Number.isInteger(s.rank) && s.rank >= 0 && s.rank < s.worldSize)) {
    throw new RangeError(`${what}: rank must be an integer in [0, ${s.worldSize - 1}], got ${s.rank}`);
  }
}

/**
 * Plans one rank's batches over the rest of an epoch: rank r takes its slice of every global batch of
 * worldSize × batchSize samples, so the ranks together read what one process with the global batch reads.
 * Without dropLast the order is padded as torch's DistributedSampler pads it. Throws a RangeError for an
 * invalid rank, worldSize or startSample.
 */
export function rankPlan(o: RankPlanOptions): RankPlan {
  checkRankSlice(o);
  const { length: n, batchSize: b, worldSize: W, rank: r } = o;
  const s = o.startSample ?? 0;
  if (!(Number.isInteger(s) && s >= 0 && s <= n)) throw new RangeError(`data: start sample ${s} is outside the epoch (0..${n})`);
  const B = W * b;
  const rest = n - s;
  if (o.dropLast) {
    return {
      count: Math.floor(rest / B),
      globalBatch: B,
      range: (j) => [s + j * B + r * b, s + j * B + (r + 1) * b],
    };
  }
  const padded = Math.ceil(rest / W) * W;
  const count = Math.ceil(padded / B);
  return {
    count,
    globalBatch: B,
    range(j) {
      const size = Math.min(B, padded - j * B);
      const per = size / W;
      const a = s + j * B + r * per;
      return [a, a + per];
    },
  };
}

/**
 * Which pass over an order of `n` each position of [start, end) is: 0 for the order itself, 1 (and on, when
 * there are more ranks than samples) for the padding's repeats; undefined when nothing in the range wraps.
 */
export function wrapPasses(n: number, start: number, end: number): Int32Array | undefined {
  if (end <= n) return undefined;
  return Int32Array.from({ length: end - start }, (_, k) => Math.floor((start + k) / n));
}

/** order[start..end) with positions past the end wrapping to the start (DistributedSampler's padding). */
export function sliceWrapped(order: Int32Array, start: number, end: number): Int32Array {
  const n = order.length;
  if (end <= n) return order.slice(start, end);
  const out = new Int32Array(end - start);
  for (let t = start; t < end; t++) out[t - start] = order[t % n];
  return out;
}
