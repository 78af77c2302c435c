// Features extracted data-parallel, put back in the dataset's order. Each rank extracted its part of an
// unshuffled pass: its slices of the global batches (src/data/sharding.ts) or, over tar shards, a
// contiguous range of the stream (src/data/shards/plan.ts). Either way every rank has as many rows, the
// last ranks padded with repeats of images a lower rank holds. Each row carries its dataset index, so the
// ranks' rows are gathered, the repeats dropped and the rest sorted by index. Or each rank keeps its own
// rows, repeats dropped, with their dataset positions (a shard: no rank holds all).
import * as torch from '../torch';
import { Tensor } from '../torch';
import { rankPlan } from '../data';
import type { ProcessGroup } from '../dist';

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

/** Rows of every rank's part of an unshuffled pass over `size` images, padding included (either layout). */
export function rowsPerRank(size: number, worldSize: number): number {
  return Math.ceil(size / worldSize);
}

/**
 * Dataset indices of rank `rank`'s rows under the slices-of-global-batches layout (rankRowPositions), for
 * data whose batches do not carry their indices: a padding row (position ≥ size) repeats image
 * `position mod size`.
 */
export function slicedRowIndices(size: number, batchSize: number, worldSize: number, rank: number): Int32Array {
  return rankRowPositions(size, batchSize, worldSize, rank).map((p) => p % size);
}

/**
 * Which rows of a data-parallel pass count, so that every image counts once: `parts[r]` holds the dataset
 * index of each of rank r's rows (-1: a row without an image, e.g. in place of an unusable one). A row
 * counts (1) unless it has no image or repeats an image that a lower rank, or an earlier row, holds: the
 * padding that gave every rank as many rows. Both layouts put a repeat after the image it repeats, in
 * rank order: the slices of global batches pad the last global batch with the first images, which rank 0
 * holds (src/data/sharding.ts); tar shards give each rank a contiguous range of the stream, the last ranks'
 * ranges wrapping to its start, which rank 0 holds (src/data/shards/plan.ts).
 */
export function firstOccurrences(parts: readonly Int32Array[], size: number): Uint8Array[] {
  const seen = new Uint8Array(size);
  return parts.map((indices, r) => {
    const counts = new Uint8Array(indices.length);
    indices.forEach((v, i) => {
      if (v < 0) return;
      if (v >= size) throw new Error(`features: rank ${r} has a row of image ${v}, past the ${size} images`);
      if (!seen[v]) counts[i] = seen[v] = 1;
    });
    return counts;
  });
}

/** Every rank's row indices (the same number of rows on every rank), in rank order, on every rank. */
export async function allRowIndices(group: ProcessGroup, indices: Int32Array): Promise<Int32Array[]> {
  const send = torch.tensor(Float64Array.from(indices), { dtype: 'float64', device: group.device });
  let parts: Tensor[] = [];
  try {
    parts = await group.allGather(send);
    return parts.map((t) => torch.scope(() => Int32Array.from(t.cpu().data() as Float64Array)));
  } finally {
    send.dispose();
    for (const t of parts) t.dispose();
  }
}

/** Where gathered rows end: on every rank, or on one rank (null elsewhere: one copy instead of one per rank). */
export type GatherTarget = 'all' | { root: number };

/**
 * Every rank's rows and some numbers per row (columns: a label, a row code, a dataset index), in rank
 * order, on the target ranks; null on the others. perRow[r][c]: rank r's column c. The caller disposes the
 * returned row tensors.
 */
export async function gatherRows(
  group: ProcessGroup,
  rows: Tensor,
  columns: ArrayLike<number>[],
  to: GatherTarget,
): Promise<{ rows: Tensor[]; perRow: Float64Array[][] } | null> {
  const collect = (t: Tensor): Promise<Tensor[]> => (to === 'all' ? group.allGather(t) : group.gather(t, to.root));
  const n = rows.shape[0];
  const table = new Float64Array(n * columns.length);
  columns.forEach((col, c) => {
    if (col.length !== n) throw new Error(`features: ${col.length} numbers for ${n} rows`);
    for (let i = 0; i < n; i++) table[i * columns.length + c] = col[i];
  });
  const send = torch.tensor(table, { shape: [n, columns.length], dtype: 'float64', device: group.device });
  try {
    const parts = await collect(rows);
    let numbers: Tensor[] = [];
    try {
      numbers = await collect(send);
      if (to !== 'all' && group.rank !== to.root) return null;
      const perRow = numbers.map((t) => {
        const flat = torch.scope(() => Float64Array.from(t.cpu().data() as Float64Array));
        return columns.map((_, c) => Float64Array.from({ length: n }, (_, i) => flat[i * columns.length + c]));
      });
      return { rows: parts, perRow };
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

/**
 * Every rank's features and labels on the target ranks (null on the others): each image once (see
 * firstOccurrences; rows of index -1, stand-ins, left out), in the order of the dataset indices.
 */
export async function gatherRankFeatures(
  group: ProcessGroup,
  mine: { features: Tensor; labels: Int32Array; indices: Int32Array },
  size: number,
  to: GatherTarget = 'all',
): Promise<{ features: Tensor; labels: Int32Array } | null> {
  const all = await gatherRows(group, mine.features, [mine.labels, mine.indices], to);
  if (!all) return null;
  try {
    const [labels, indices] = [0, 1].map((c) => all.perRow.map((cols) => Int32Array.from(cols[c])));
    const counted = firstOccurrences(indices, size);
    const picks: { row: number; index: number; label: number }[] = [];
    let offset = 0;
    counted.forEach((c, r) => {
      c.forEach((yes, i) => yes && picks.push({ row: offset + i, index: indices[r][i], label: labels[r][i] }));
      offset += c.length;
    });
    picks.sort((a, b) => a.index - b.index);
    const features = torch.scope(() =>
      torch.cat(all.rows, 0).indexSelect(
        0,
        torch.tensor(
          Int32Array.from(picks, (p) => p.row),
          { dtype: 'int64', device: all.rows[0].device },
        ),
      ),
    );
    return { features: torch.keep(features), labels: Int32Array.from(picks, (p) => p.label) };
  } finally {
    for (const t of all.rows) t.dispose();
  }
}
