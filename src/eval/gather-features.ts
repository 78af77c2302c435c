// Features extracted data-parallel, put back in the dataset's order. Each rank extracted its slices of
// the global batches (src/data/sharding.ts: rank r's batch j is positions [j·B + r·p_j, j·B + (r+1)·p_j)
// of the natural order, p_j the same on every rank), so the ranks' rows for batch j, in rank order, are
// the global batch j, and the global batches in order are the dataset followed by the padding that
// made the last one divisible by the world size (repeats of the first images, dropped here). Or each
// rank keeps its own rows, padding dropped, with their dataset positions (a shard: no rank holds all).
import * as torch from '../torch';
import { Tensor } from '../torch';
import { rankPlan } from '../data';
import type { ProcessGroup } from '../dist';

/** Rows per batch of every rank (the same on all ranks) when `size` images are split in batches of `batchSize` per rank. */
export function rowsPerRankBatch(size: number, batchSize: number, worldSize: number): number[] {
  const plan = rankPlan({ length: size, batchSize, worldSize, rank: 0, dropLast: false });
  return Array.from({ length: plan.count }, (_, j) => {
    const [a, b] = plan.range(j);
    return b - a;
  });
}

/**
 * Dataset positions of rank `rank`'s rows (its batches one after the other). A position ≥ size is
 * padding: a repeat of one of the first images, added to make the last global batch divisible.
 */
export function rankRowPositions(size: number, batchSize: number, worldSize: number, rank: number): Int32Array {
  const plan = rankPlan({ length: size, batchSize, worldSize, rank, dropLast: false });
  const out: number[] = [];
  for (let j = 0; j < plan.count; j++) {
    const [a, b] = plan.range(j);
    for (let p = a; p < b; p++) out.push(p);
  }
  return Int32Array.from(out);
}

/**
 * The rows of every rank (parts[r]: rank r's rows, its batches one after the other) in dataset order:
 * for each batch j, rank 0's rows of it, then rank 1's, …; the first `size` rows of that.
 */
export function interleaveRankRows(parts: Tensor[], perBatch: number[], size: number): Tensor {
  const rows = perBatch.reduce((s, p) => s + p, 0);
  parts.forEach((p, r) => {
    if (p.shape[0] !== rows) throw new Error(`features: rank ${r} has ${p.shape[0]} rows, expected ${rows}`);
  });
  if (size > rows * parts.length) throw new Error(`features: the ranks hold ${rows * parts.length} rows, fewer than the ${size} images`);
  return torch.scope(() => {
    const pieces: Tensor[] = [];
    let offset = 0;
    for (const p of perBatch) {
      for (const part of parts) pieces.push(part.narrow(0, offset, p));
      offset += p;
    }
    return torch.cat(pieces, 0).narrow(0, 0, size).contiguous();
  });
}

/** Labels in dataset order from every rank's labels (the same interleaving as interleaveRankRows). */
export function interleaveRankLabels(parts: Int32Array[], perBatch: number[], size: number): Int32Array {
  const out = new Int32Array(size);
  let at = 0;
  let offset = 0;
  for (const p of perBatch) {
    for (const part of parts) {
      for (let i = 0; i < p && at < size; i++) out[at++] = part[offset + i];
    }
    offset += p;
  }
  if (at !== size) throw new Error(`features: the ranks hold ${at} labels, expected ${size}`);
  return out;
}

/** Where gathered rows end: on every rank, or on one rank (null elsewhere: one copy instead of one per rank). */
export type GatherTarget = 'all' | { root: number };

/**
 * Every rank's rows and one number per row (a label, a row code), in rank order, on the target ranks;
 * null on the others. The caller disposes the returned row tensors.
 */
export async function gatherRows(
  group: ProcessGroup,
  rows: Tensor,
  perRow: ArrayLike<number>,
  to: GatherTarget,
): Promise<{ rows: Tensor[]; perRow: Float64Array[] } | null> {
  const collect = (t: Tensor): Promise<Tensor[]> => (to === 'all' ? group.allGather(t) : group.gather(t, to.root));
  const send = torch.tensor(Float64Array.from(perRow), { dtype: 'float64', device: group.device });
  try {
    const parts = await collect(rows);
    let numbers: Tensor[] = [];
    try {
      numbers = await collect(send);
      if (to !== 'all' && group.rank !== to.root) return null;
      return { rows: parts, perRow: numbers.map((t) => torch.scope(() => Float64Array.from(t.cpu().data() as Float64Array))) };
    } catch (e) {
      for (const t of parts) t.dispose();
      throw e;
    } finally {
      for (const t of numbers) t.dispose();
    }
  } finally {
    send.dispose();
  }
}

/** Every rank's features and labels, gathered and put in dataset order on the target ranks (null on the others). */
export async function gatherRankFeatures(
  group: ProcessGroup,
  mine: { features: Tensor; labels: Int32Array },
  perBatch: number[],
  size: number,
  to: GatherTarget = 'all',
): Promise<{ features: Tensor; labels: Int32Array } | null> {
  const all = await gatherRows(group, mine.features, mine.labels, to);
  if (!all) return null;
  try {
    const labels = interleaveRankLabels(
      all.perRow.map((l) => Int32Array.from(l)),
      perBatch,
      size,
    );
    return { features: torch.keep(interleaveRankRows(all.rows, perBatch, size)), labels };
  } finally {
    for (const t of all.rows) t.dispose();
  }
}
