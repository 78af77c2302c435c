// Patch tokens of a frozen encoder for dense probing: the output of the chosen blocks, each through
// the encoder's final norm (DINOv2's get_intermediate_layers(norm=True)), [CLS] dropped, several
// blocks concatenated along the feature dimension. Extracted once per dataset with the masks beside
// them (the probe's fast path); data-parallel, each rank keeps the rows it encoded (a shard).
import * as torch from '../torch';
import { Tensor } from '../torch';
import { VisionTransformer } from '../semaim';
import { Progress, perSecond } from '../run/progress';
import { withPrecision, type Precision } from '../run/precision';
import type { SegData } from '../data/seg-streams';
import { checkSegBatch } from '../data/check-batch';
import { severalRanks, type ProcessGroup } from '../dist';
import { StopAgreement } from '../dist/agree';
import { FeatureOverflowCheck } from './feature-overflow';

/**
 * Parses a block selection against an encoder of `depth` blocks: 'last' (the final block, after the
 * final norm), 'lastN' (the last N, DINOv2's n=4 is 'last4'), or a comma list of 0-based indices.
 * Returns sorted, distinct indices.
 */
export function parseBlocks(text: string, depth: number): number[] {
  const t = text.trim();
  let list: number[];
  const m = /^last(\d*)$/.exec(t);
  if (m) {
    const n = m[1] === '' ? 1 : Number(m[1]);
    if (n < 1) throw new RangeError(`blocks '${text}' names no block (lastN takes N >= 1)`);
    if (n > depth) throw new RangeError(`blocks '${text}' asks for the last ${n} blocks, but the encoder has ${depth} (blocks 0..${depth - 1})`);
    list = Array.from({ length: n }, (_, i) => depth - n + i);
  } else {
    list = t
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s) => {
        if (!/^\d+$/.test(s)) throw new RangeError(`blocks '${text}': expected 'last', 'lastN' or 0-based block indices such as '1,3'`);
        const i = Number(s);
        if (i >= depth) throw new RangeError(`blocks '${text}': block ${i} does not exist (the encoder has blocks 0..${depth - 1})`);
        return i;
      });
    if (!list.length) throw new RangeError(`blocks '${text}' names no block`);
  }
  return [...new Set(list)].sort((a, b) => a - b);
}

/** Patch tokens [B, N, D × blocks.length] (float32) of images already on the encoder's device; no gradients. */
export function patchTokens(encoder: VisionTransformer, images: Tensor, blocks: number[], precision: Precision = 'fp32'): Tensor {
  const wanted = new Set(blocks);
  const lastNeeded = Math.max(...blocks);
  return torch.noGrad(() =>
    torch.scope(() =>
      withPrecision(precision, images.device, () => {
        const N = encoder.numPatches;
        let x = torch.cat([encoder.clsTokens(images.shape[0]), encoder.embedPatches(images)], 1);
        const outs: Tensor[] = [];
        let i = 0;
        for (const b of encoder.blocks) {
          x = b.forward(x);
          if (wanted.has(i)) outs.push(encoder.norm.forward(x).narrow(1, 1, N));
          if (i++ === lastNeeded) break;
        }
        return (outs.length === 1 ? outs[0] : torch.cat(outs, 2)).float();
      }),
    ),
  );
}

/** Cached patch features of a segmentation dataset. */
export interface SegFeatureSet {
  /** [n, N, D'] float32 on the encoder's device (kept: dispose when done). */
  features: Tensor;
  /** n × H × W class indices on the host. */
  masks: Uint8Array;
  /** Dataset index of each row. */
  indices: Int32Array;
  grid: [number, number];
  size: [number, number];
  /** The first `keepImages` images of the whole set (normalised NCHW), for figures. */
  images: Float32Array;
  /** Their masks (keepImages × H × W). */
  keptMasks: Uint8Array;
  /**
   * Set when the rows are one rank's share of a data-parallel set: the row each holds in the whole set
   * (the usable samples in dataset order) and the size of the whole set.
   */
  shard?: { rows: Int32Array; size: number };
}

/** The number of rows of the whole set (all shards together). */
export function segSetSize(set: SegFeatureSet): number {
  return set.shard ? set.shard.size : set.features.shape[0];
}

export interface SegExtractOptions {
  batchSize: number;
  blocks: number[];
  precision?: Precision;
  /** Keep the pixels of the first N images (default 0). */
  keepImages?: number;
  /** Progress bar label; null for none. */
  label?: string | null;
  /**
   * Data-parallel: each rank encodes its slices of the global batches (`batchSize` per rank) and
   * keeps its rows as a shard; the figure's images are gathered on every rank.
   */
  group?: ProcessGroup | null;
  /** Aborting it stops the extraction before its next batch: it rejects with an AbortError (code 'ERR_ABORTED'). */
  signal?: AbortSignal;
  /** The encoder's weights file, named when its features are NaN/Inf (a CheckpointError, before any result). */
  encoderName?: string;
}

/** Runs the encoder once over every usable sample of `data` (evaluation transform, natural order). */
export async function extractSegFeatures(encoder: VisionTransformer, data: SegData, o: SegExtractOptions): Promise<SegFeatureSet> {
  const group = severalRanks(o.group);
  const wasTraining = encoder.training;
  encoder.eval();
  const device = encoder.cls_token.device;
  const [C, H, W] = data.imageShape;
  const hw = H * W;
  const parts: Tensor[] = [];
  const maskParts: Uint8Array[] = [];
  const indexParts: Int32Array[] = [];
  const keep = o.keepImages ?? 0;
  const kept: Float32Array[] = [];
  let keptCount = 0;
  let n = 0;
  const label = group && group.rank !== 0 ? null : o.label === undefined ? 'features' : o.label;
  const progress = label === null ? null : new Progress(label, group ? Math.ceil(data.size / group.worldSize) : data.size);
  const slice = group ? { rank: group.rank, worldSize: group.worldSize } : undefined;
  const overflow = new FeatureOverflowCheck();
  const start = performance.now();
  try {
    const stop = new StopAgreement(group); // (every rank has the same number of batches)
    await stop.throwIfAborted(o.signal);
    for await (const b of data.batches({ batchSize: o.batchSize, shuffle: false, epoch: 0, augment: 'none', slice })) {
      await stop.throwIfAborted(o.signal);
      if (b.shape[0] === 0) continue;
      const B = checkSegBatch(b, data.imageShape, data.numClasses, data.ignoreIndex);
      parts.push(
        torch.keep(
          torch.scope(() => {
            const images = torch.tensor(b.images, { shape: b.shape, device });
            encoder.checkImages(images);
            const tokens = patchTokens(encoder, images, o.blocks, o.precision);
            overflow.add(tokens);
            return tokens;
          }),
        ),
      );
      maskParts.push(b.masks.slice(0, B * hw));
      indexParts.push(b.indices.slice(0, B));
      // one process: the set's first images; a rank: its own first ones (the set's first are among them)
      if (keptCount < keep) {
        const take = Math.min(keep - keptCount, B);
        kept.push(b.images.slice(0, take * C * hw));
        keptCount += take;
      }
      n += B;
      progress?.update(n, { 'img/s': perSecond(n * (group?.worldSize ?? 1), start) });
    }
    await overflow.throwIfOverflowed(o.encoderName, `its patch features of ${data.name}`, group);
    const indices = concat(indexParts, (l) => new Int32Array(l));
    const shard = group ? shardRows(group, indices, data.size) : undefined;
    if (!(shard ? shard.size : parts.length)) throw new Error(`${data.name}: no usable sample`);
    const features = torch.keep(parts.length ? torch.cat(parts, 0) : torch.zeros([0, encoder.numPatches, encoder.cfg.embedDim * o.blocks.length], { device }));
    const masks = concat(maskParts, (l) => new Uint8Array(l));
    let images = concat(kept, (l) => new Float32Array(l));
    let keptMasks: Uint8Array = masks.slice(0, keptCount * hw);
    try {
      if (group && shard) ({ images, masks: keptMasks } = firstImages(group, images, keptMasks, shard.rows, Math.min(keep, shard.size), [C, H, W]));
    } catch (e) {
      features.dispose(); // (kept above: nobody else holds it yet)
      throw e;
    }
    return { features, masks, indices, grid: [encoder.gridH, encoder.gridW], size: [H, W], images, keptMasks, shard };
  } finally {
    for (const p of parts) p.dispose();
    overflow.dispose();
    progress?.done();
    encoder.train(wasTraining);
  }
}

function concat<T extends Uint8Array | Int32Array | Float32Array>(arrs: T[], make: (len: number) => T): T {
  const out = make(arrs.reduce((a, x) => a + x.length, 0));
  let off = 0;
  for (const a of arrs) {
    out.set(a as never, off);
    off += a.length;
  }
  return out;
}

/**
 * Where this rank's rows (dataset `indices`, ascending) stand in the whole set: the usable samples of all
 * ranks in dataset order, found with one sum all-reduce of a 0/1 flag per dataset sample.
 */
function shardRows(group: ProcessGroup, indices: Int32Array, datasetSize: number): { rows: Int32Array; size: number } {
  const flags = new Float32Array(datasetSize);
  for (const i of indices) flags[i] = 1;
  const all = group.sumNumbers(flags);
  const rowOf = new Int32Array(datasetSize);
  let size = 0;
  for (let i = 0; i < datasetSize; i++) {
    rowOf[i] = size;
    if (all[i] > 0) size++;
  }
  return { rows: Int32Array.from(indices, (i) => rowOf[i]), size };
}

/** The whole set's first `count` images and masks on every rank, from each rank's own first ones (rows `rows`). */
function firstImages(
  group: ProcessGroup,
  images: Float32Array,
  masks: Uint8Array,
  rows: Int32Array,
  count: number,
  [C, H, W]: number[],
): { images: Float32Array; masks: Uint8Array } {
  const hw = H * W;
  const per = C * hw + hw; // the pixels, then the mask (0–255: exact in float32)
  const out = new Float32Array(count * per);
  for (let k = 0; k * hw < masks.length; k++) {
    if (rows[k] >= count) break;
    out.set(images.subarray(k * C * hw, (k + 1) * C * hw), rows[k] * per);
    out.set(masks.subarray(k * hw, (k + 1) * hw), rows[k] * per + C * hw);
  }
  const all = group.sumNumbers(out); // each image comes from one rank, zeros from the others: x + 0 is exact
  const got = { images: new Float32Array(count * C * hw), masks: new Uint8Array(count * hw) };
  for (let k = 0; k < count; k++) {
    got.images.set(all.subarray(k * per, k * per + C * hw), k * C * hw);
    got.masks.set(all.subarray(k * per + C * hw, (k + 1) * per), k * hw);
  }
  return got;
}
