// `semaim ablate` options: the order ablation's recipe overrides, evaluation and data options.
import { OptionError, Options, defineOptions } from '../util/options';
import { autoPrecision } from '../run/precision';
import { DATA_OPTIONS, RUN_OPTIONS, validateEval } from '../eval/options';
import { SEG_DATA_OPTIONS } from '../eval/segprobe-options';
import { ablationSegRecipe } from './ablate-segprobe';

export const ABLATE_ORDERS = ['raster', 'stochastic', 'similarity', 'semantic', 'multicenter'] as const;

export const ABLATE_OPTIONS = defineOptions({
  orders: { type: 'string', default: ABLATE_ORDERS.join(','), help: 'orders to compare, comma-separated (also: snake)' },
  seeds: { type: 'int', default: 1, min: 1, help: 'pre-train each order with seeds seed..seed+N-1 and report mean ± std' },
  budget: { type: 'string', default: 'full', choices: ['full', 'small'], help: "recipe: 'full' (CIFAR-10 32², ViT 192×6, patch 4: a GPU job) or 'small' (CPU-friendly)" },
  epochs: { type: 'number', min: 0.001, help: 'override the recipe: pre-training epochs' },
  maxSteps: { type: 'int', min: 1, help: 'override the recipe: pre-training step cap' },
  batchSize: { type: 'int', min: 1, help: 'override the recipe: pre-training batch' },
  embedDim: { type: 'int', min: 4, help: 'override the recipe: encoder width' },
  depth: { type: 'int', min: 1, help: 'override the recipe: encoder depth' },
  numHeads: { type: 'int', min: 1, help: 'override the recipe: attention heads' },
  decoderDepth: { type: 'int', min: 1, help: 'override the recipe: decoder blocks' },
  patchSize: { type: 'int', min: 1, help: 'override the recipe: patch size' },
  imgSize: { type: 'int', min: 1, help: 'override the recipe: image size' },
  pretrainLimit: { type: 'int', min: 1, help: 'override the recipe: images per pre-training epoch (a seeded random subset each epoch)' },
  linprobeEpochs: { type: 'number', min: 0.001, help: 'override the recipe: linear-probe epochs' },
  k: { type: 'string', default: '10,20,30', help: 'k-NN neighbour counts (the table shows k = 20 when present)' },
  pooling: { type: 'string', default: 'both', choices: ['cls', 'mean', 'both'], help: 'features evaluated: [CLS], mean of patch tokens, or both' },
  baseline: { type: 'boolean', default: true, help: 'also evaluate the same architecture randomly initialised (no pre-training)' },
  eval: { type: 'string', default: 'none', choices: ['none', 'segprobe'], help: "extra column: 'segprobe' = the segmentation probe's mIoU on data with masks (see --seg-dataset)" },
  segDataset: { type: 'string', default: 'auto', choices: ['auto', 'synthetic', 'seg-folder'], help: "--eval segprobe: data with masks; auto = the synthetic objects when --dataset synthetic" },
  segDataPath: { type: 'string', help: '--eval segprobe with --seg-dataset seg-folder: its root ({train,test}/images, {train,test}/masks, classes.txt)' },
  segprobeEpochs: { type: 'number', min: 0.001, help: 'override the recipe: segmentation-probe epochs' },
  ...SEG_DATA_OPTIONS,
  ...DATA_OPTIONS,
  ...RUN_OPTIONS,
  precision: { type: 'string', default: 'auto', choices: ['auto', 'fp32', 'bf16', 'fp16'], auto: autoPrecision, help: 'pre-training and feature precision; auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)' },
  outDir: { type: 'string', default: 'runs/ablate', help: 'output folder (ablation.md, ablation.json, one pre-training run per order and seed)' },
});


export type AblateOptions = Options<typeof ABLATE_OPTIONS>;

export function validateAblate(o: AblateOptions): void {
  validateEval(o);
  parseOrders(o.orders);
  ablationSegRecipe(o, o.budget);
}

/** Parses the ablation's order list. */
export function parseOrders(text: string): string[] {
  const known = ['raster', 'snake', 'stochastic', 'similarity', 'semantic', 'multicenter'];
  const list = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (!list.length) throw new OptionError('orders', 'is empty');
  for (const s of list) if (!known.includes(s)) throw new OptionError('orders', `unknown order '${s}' (known: ${known.join(', ')})`);
  if (new Set(list).size !== list.length) throw new OptionError('orders', `lists an order twice: ${text}`);
  return list;
}
