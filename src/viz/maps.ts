// Everything a figure shows, computed from a model for a batch of images and copied to plain
// arrays: order values per order type, the last-block [CLS] attention, the similarity map S, the
// per-patch loss and the reconstruction (pixel targets) under one chosen order.
import * as torch from '../torch';
import { Tensor } from '../torch';
import {
  SemAIM,
  SemAIMConfig,
  OrderConfig,
  SimilaritySource,
  SimilarityTokens,
  VisionTransformer,
  needsSimilarity,
  orderFromConfig,
  pixelTargets,
  unpatchify,
} from '../semaim';
import { OptionError, defineOptions, didYouMean, jobFields, SEED_RANGE } from '../util/options';
import type { RgbImage } from './canvas';
import { denormalizeImage } from './images';

/** The patch-order types a figure can show (every SemAIM order type): the values `--orders` of `semaim visualize` takes. */
export const ORDER_NAMES = ['raster', 'snake', 'stochastic', 'similarity', 'semantic', 'multicenter'] as const;
/** A patch-order type a figure can show: one of {@link ORDER_NAMES}. */
export type OrderName = (typeof ORDER_NAMES)[number];

/** Refuses, naming --orders, the first of `names` that is not an order type (`semaim visualize` and visualizeCheckpoint). */
export function checkOrderNames(names: readonly unknown[]): OrderName[] {
  const unknown = names.find((n) => !(ORDER_NAMES as readonly unknown[]).includes(n));
  if (unknown !== undefined)
    throw new OptionError('orders', `unknown order type '${String(unknown)}'${didYouMean(String(unknown), ORDER_NAMES)} (known: ${ORDER_NAMES.join(',')})`);
  return names as OrderName[];
}

/** Everything a figure shows of one image, from {@link computeMaps}: the per-patch maps ([N] each, row-major) and the reconstruction. */
export interface ImageMaps {
  /** Order values per order type, [N] in row-major patch order (smaller = earlier). */
  orders: Partial<Record<OrderName, Float32Array>>;
  /** Last-block [CLS] attention (mean over heads), [N]. */
  attention: Float32Array;
  /** Similarity map S used by the similarity-based orders, [N]. */
  similarity: Float32Array;
  /** Per-patch loss under `lossOrder`, [N]. */
  patchLoss: Float32Array;
  /** Reconstruction from the predictions (pixel targets of an RGB model only; null otherwise). */
  recon: RgbImage | null;
}

/** Options of {@link computeMaps}. */
export interface MapOptions {
  /** The order types whose order values to compute. */
  orders: readonly OrderName[];
  /** The order used for the loss map and the reconstruction (default 'semantic'). */
  lossOrder?: OrderName;
  /** Seed of the noise of stochastic / semantic / multicenter orders. */
  seed?: number;
  /** Images per forward pass (default 16). */
  batchSize?: number;
  /** EMA encoder, for configs whose similarity source is 'ema'. */
  ema?: VisionTransformer | null;
}

const MAP_FIELDS = defineOptions({
  lossOrder: { type: 'string', default: 'semantic', choices: ORDER_NAMES, help: 'order of the loss map and the reconstruction' },
  seed: { type: 'int', ...SEED_RANGE, default: 0, help: 'seed of the orders' },
  batchSize: { type: 'int', default: 16, min: 1, help: 'images per forward pass' },
});

/**
 * computeMaps' options checked as a job checks its own (an OptionError naming the key, an unknown key with
 * the one it is a typo of), with the defaults filled in: a batch size of 0 looped forever, and `orders: 'raster'`
 * was read letter by letter.
 */
function mapOptions(o: MapOptions): MapOptions & { lossOrder: OrderName; seed: number; batchSize: number } {
  const j = jobFields(o, MAP_FIELDS, { orders: true, ema: true });
  if (!Array.isArray(j.orders))
    throw new OptionError('orders', `expected a list of order types (${ORDER_NAMES.join(',')}), got ${JSON.stringify(j.orders) ?? 'undefined'}`);
  checkOrderNames(j.orders);
  checkEmaOption(j.ema);
  return j;
}

/** Refuses an `ema` option that is not an encoder (an OptionError naming it); null or undefined: none. */
export function checkEmaOption(ema: unknown): void {
  if (ema != null && !(ema instanceof VisionTransformer)) throw new OptionError('ema', `expected the EMA encoder (a VisionTransformer), got ${String(ema)}`);
}

/**
 * The OrderConfig used to show order type `name` for a model: the model's own order config when it
 * trained with that type; otherwise the paper's defaults (semantic: 3×3 filter, λ 0.01; multicenter:
 * k 3, minimum relative height 0.5, minimum distance 2) with the model's similarity source. An unknown
 * type is a RangeError.
 */
export function orderConfigFor(name: OrderName, cfg: SemAIMConfig): OrderConfig {
  // an unknown name fell through the switch: undefined, read later as an order config
  if (!(ORDER_NAMES as readonly unknown[]).includes(name))
    throw new RangeError(`orderConfigFor: unknown order type '${String(name)}' (known: ${ORDER_NAMES.join(',')})`);
  if (cfg.order.type === name) return cfg.order;
  const source: SimilaritySource = 'source' in cfg.order ? cfg.order.source : 'online';
  switch (name) {
    case 'raster':
    case 'snake':
    case 'stochastic':
      return { type: name };
    case 'similarity':
      return { type: 'similarity', source };
    case 'semantic':
      return { type: 'semantic', source, filter: true, lambda: 0.01 };
    case 'multicenter':
      return { type: 'multicenter', source, k: 3, minRelHeight: 0.5, minDistance: 2, filter: true, lambda: 0.01 };
  }
}

/** S [B, N] as the model trains with it, or from other `tokens` (see SemAIM.similarityMap). */
export function similarityFor(model: SemAIM, images: Tensor, ema?: VisionTransformer | null, tokens?: SimilarityTokens): Tensor {
  return model.similarityMap(images, { ema, tokens });
}

/** Predictions [B, N, P²·C] -> images [B, C, H, W] in normalised units, undoing per-patch normalisation. */
function reconstruct(model: SemAIM, images: Tensor, pred: Tensor): Tensor {
  const t = model.config.target;
  if (t.type !== 'pixels') throw new Error('reconstruction needs pixel targets');
  let patches = pred;
  if (t.normPix) {
    const raw = pixelTargets(images, { patchSize: model.config.patchSize, ...t, normPix: false });
    const mean = raw.mean(-1, true);
    const std = raw.var(-1, true, true).add(1e-6).sqrt();
    patches = pred.mul(std).add(mean);
  }
  return unpatchify(patches, model.config.patchSize, model.config.inChans ?? 3);
}

function rows(t: Tensor): Float32Array[] {
  const [B, N] = t.shape;
  const all = t.float().cpu().toFloat32Array();
  return Array.from({ length: B }, (_, b) => all.slice(b * N, (b + 1) * N));
}

/** A generator seed (31 bits) from the run's seed, an image's pixels and an order's name (FNV-1a). */
export function imageSeed(seed: number, pixels: Float32Array, order: string): number {
  let h = 0x811c9dc5;
  const eat = (byte: number) => (h = Math.imul(h ^ byte, 0x01000193));
  for (const byte of new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength)) eat(byte);
  for (const ch of `${order}:${seed}`) eat(ch.charCodeAt(0) & 0xff);
  return h >>> 1;
}

/** An NCHW float32 image buffer for `model`: channels, side, values per image and images; refused unless whole images. */
export function imageBuffer(model: SemAIM, images: Float32Array): { C: number; imgSize: number; per: number; total: number } {
  const { imgSize } = model.config;
  const C = model.config.inChans ?? 3;
  const per = C * imgSize * imgSize;
  if (images.length % per !== 0) throw new RangeError(`image buffer of ${images.length} values is not a multiple of ${C}×${imgSize}×${imgSize}`);
  return { C, imgSize, per, total: images.length / per };
}

/**
 * Maps for every image of an NCHW float32 batch (normalised like the model's training data). Options are
 * checked first: an OptionError names a bad or unknown one.
 */
export function computeMaps(model: SemAIM, images: Float32Array, opts: MapOptions): ImageMaps[] {
  const o = mapOptions(opts);
  const { C, imgSize, per, total } = imageBuffer(model, images);
  const lossOrder = o.lossOrder;
  const bs = o.batchSize;
  const device = model.cls_token.device;
  const out: ImageMaps[] = [];
  const wasTraining = model.training;
  model.eval();
  try {
    for (let start = 0; start < total; start += bs) {
      const B = Math.min(bs, total - start);
      torch.noGrad(() =>
        torch.scope(() => {
          const x = torch.tensor(images.subarray(start * per, (start + B) * per), { shape: [B, C, imgSize, imgSize], device });
          const S = similarityFor(model, x, o.ema);
          const attention = rows(model.clsAttention(x));
          const similarity = rows(S);
          const orders: Partial<Record<OrderName, Float32Array[]>> = {};
          const orderTensors = new Map<OrderName, Tensor>();
          for (const name of new Set([...o.orders, lossOrder])) {
            const oc = orderConfigFor(name, model.config);
            // each image's order from its own generator (seed, pixels, order): a figure does not change
            // with the other images drawn, the batch size, or the other orders asked for
            const one = (b: number) =>
              orderFromConfig(oc, 1, model.grid, needsSimilarity(oc) ? S.narrow(0, b, 1) : null, {
                generator: new torch.Generator(imageSeed(o.seed, images.subarray((start + b) * per, (start + b + 1) * per), name)),
                device,
              });
            const p =
              B === 1
                ? one(0)
                : torch.cat(
                    Array.from({ length: B }, (_, b) => one(b)),
                    0,
                  );
            orderTensors.set(name, p);
            if (o.orders.includes(name)) orders[name] = rows(p);
          }
          const fwd = model.forward(x, orderTensors.get(lossOrder)!, { outputs: 'all' });
          const patchLoss = rows(fwd.patchLoss);
          let recon: RgbImage[] | null = null;
          // an RGB picture: a 1-channel model's images were read 3 channels at a time (past the batch's end,
          // a RangeError), a 4-channel one's first 3 channels shown as RGB
          if (model.config.target.type === 'pixels' && C === 3) {
            const r = reconstruct(model, x, fwd.pred!).float().cpu().toFloat32Array();
            recon = Array.from({ length: B }, (_, b) => denormalizeImage(r, imgSize, b * per));
          }
          for (let b = 0; b < B; b++) {
            out.push({
              orders: Object.fromEntries(Object.entries(orders).map(([k, v]) => [k, v![b]])),
              attention: attention[b],
              similarity: similarity[b],
              patchLoss: patchLoss[b],
              recon: recon ? recon[b] : null,
            });
          }
        }),
      );
    }
  } finally {
    model.train(wasTraining);
  }
  return out;
}
