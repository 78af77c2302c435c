// Patch tokens of a frozen encoder for dense probing: the output of the chosen blocks, each through
// the encoder's final norm (DINOv2's get_intermediate_layers(norm=True)), [CLS] dropped, several
// blocks concatenated along the feature dimension. Extracted once per dataset with the masks beside
// them (the probe's fast path).
import * as torch from '../torch';
import { Tensor } from '../torch';
import { VisionTransformer } from '../semaim';
import { Progress } from '../run/progress';
import { withPrecision, type Precision } from '../run/precision';
import type { SegData } from '../data/seg-streams';

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
    if (!(n >= 1 && n <= depth)) throw new RangeError(`blocks '${text}': the encoder has ${depth} blocks`);
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
  /** The first `keepImages` images (normalised NCHW), for figures. */
  images: Float32Array;
}

export interface SegExtractOptions {
  batchSize: number;
  blocks: number[];
  precision?: Precision;
  /** Keep the pixels of the first N images (default 0). */
  keepImages?: number;
  /** Progress bar label; null for none. */
  label?: string | null;
}

/** Runs the encoder once over every usable sample of `data` (evaluation transform, natural order). */
export async function extractSegFeatures(encoder: VisionTransformer, data: SegData, o: SegExtractOptions): Promise<SegFeatureSet> {
  const wasTraining = encoder.training;
  encoder.eval();
  const device = encoder.cls_token.device;
  const [, H, W] = data.imageShape;
  const hw = H * W;
  const parts: Tensor[] = [];
  const maskParts: Uint8Array[] = [];
  const indexParts: Int32Array[] = [];
  const keep = o.keepImages ?? 0;
  const kept: Float32Array[] = [];
  let keptCount = 0;
  let n = 0;
  const label = o.label === undefined ? 'features' : o.label;
  const progress = label === null ? null : new Progress(label, data.size);
  try {
    for await (const b of data.batches({ batchSize: o.batchSize, shuffle: false, epoch: 0, augment: 'none' })) {
      const B = b.shape[0];
      parts.push(
        torch.keep(
          torch.scope(() => {
            const images = torch.tensor(b.images, { shape: b.shape, device });
            encoder.checkImages(images);
            return patchTokens(encoder, images, o.blocks, o.precision);
          }),
        ),
      );
      maskParts.push(b.masks.slice(0, B * hw));
      indexParts.push(b.indices.slice(0, B));
      if (keptCount < keep) {
        const take = Math.min(keep - keptCount, B);
        kept.push(b.images.slice(0, take * 3 * hw));
        keptCount += take;
      }
      n += B;
      progress?.update(n);
    }
    if (!parts.length) throw new Error(`${data.name}: no usable sample`);
    const features = torch.keep(torch.cat(parts, 0));
    const concat = <T extends Uint8Array | Int32Array | Float32Array>(arrs: T[], make: (len: number) => T): T => {
      const out = make(arrs.reduce((a, x) => a + x.length, 0));
      let off = 0;
      for (const a of arrs) {
        out.set(a as never, off);
        off += a.length;
      }
      return out;
    };
    return {
      features,
      masks: concat(maskParts, (l) => new Uint8Array(l)),
      indices: concat(indexParts, (l) => new Int32Array(l)),
      grid: [encoder.gridH, encoder.gridW],
      size: [H, W],
      images: concat(kept, (l) => new Float32Array(l)),
    };
  } finally {
    for (const p of parts) p.dispose();
    progress?.done();
    encoder.train(wasTraining);
  }
}
