// `semaim ablate` options: the order ablation's recipe overrides, evaluation and data options.
import { OptionError, Options, checkSeedList, defineOptions, didYouMean } from '../util/options';
import { precisionOption } from '../run/precision';
import { parseKs } from '../eval/knn';
import { DATA_OPTIONS, RUN_OPTIONS, validateEval } from '../eval/options';
import { SEG_DATA_OPTIONS } from '../eval/segprobe-options';
import { ablationSegRecipe } from './ablate-segprobe';
import { GPU_STEP_OPTIONS } from '../train/pretrain-options';

export const ABLATE_ORDERS = ['raster', 'stochastic', 'similarity', 'semantic', 'multicenter'] as const;

export const ABLATE_OPTIONS = defineOptions({
  orders: {
    type: 'string',
    default: ABLATE_ORDERS.join(','),
    help: "orders to compare, comma-separated (also: snake); an S-based order may name its tokens: 'semantic:self', 'semantic:gap', 'similarity:self' (one row each)",
  },
  seeds: { type: 'int', default: 1, min: 1, max: 1000, help: 'pre-train each order with seeds seed..seed+N-1 and report mean ± std' },
  budget: {
    type: 'string',
    default: 'full',
    choices: ['full', 'small'],
    help: "recipe: 'full' (CIFAR-10 32², ViT 192×6, patch 4: a GPU job) or 'small' (CPU-friendly)",
  },
  epochs: { type: 'number', min: 0.001, help: 'override the recipe: pre-training epochs' },
  maxSteps: { type: 'int', min: 1, help: 'override the recipe: pre-training step cap' },
  batchSize: { type: 'int', min: 1, help: 'override the recipe: pre-training batch' },
  embedDim: { type: 'int', min: 4, help: 'override the recipe: encoder width' },
  depth: { type: 'int', min: 1, help: 'override the recipe: encoder depth' },
  numHeads: { type: 'int', min: 1, help: 'override the recipe: attention heads' },
  decoderDepth: { type: 'int', min: 1, help: 'override the recipe: decoder blocks' },
  patchSize: { type: 'int', min: 1, help: 'override the recipe: patch size' },
  imgSize: { type: 'int', min: 1, max: 8192, help: 'override the recipe: image size' },
  pretrainLimit: { type: 'int', min: 1, help: 'override the recipe: images per pre-training epoch (a seeded random subset each epoch)' },
  linprobeEpochs: { type: 'number', min: 0.001, help: 'override the recipe: linear-probe epochs' },
  linprobeBatchSize: { type: 'int', min: 2, help: "override the recipe: linear-probe batch (lr = blr × batch / 256; the authors': 4096)" },
  blr: { type: 'number', min: 0, help: 'override the recipe: pre-training base lr' },
  decayClsToken: { type: 'boolean', help: "override: weight decay on cls_token (pretrain's default: on, as the authors')" },
  orderPrecision: {
    type: 'string',
    choices: ['same', 'fp32'],
    help: "override: precision of the similarity pass ('fp32' as the authors; pretrain's default 'same')",
  },
  orderVariant: {
    type: 'string',
    choices: ['paper', 'authors'],
    help: "override: semantic centre 'paper' (3×3 filter, λ 0.01, default) or 'authors' (argmax, λ 1e-3)",
  },
  // planning and running
  budgetMinutes: {
    type: 'number',
    min: 0.5,
    help:
      'plan the pre-training length so that the whole ablation takes about this long: times a few steps of every row and the evaluation, ' +
      'then sets the epochs (the same number of steps for every order); the plan is kept in <out-dir>/plan.json and reused when run again',
  },
  planOnly: { type: 'boolean', default: false, help: 'with --budget-minutes: measure, write plan.json, print the plan and stop' },
  jobs: {
    mayChangeOnResume: true,
    type: 'int',
    default: 1,
    min: 1,
    help: 'pre-train in this many processes at once (--threads each, default: cores / N); small models on a few cores: N processes of 1 thread never wait on each other',
  },
  shard: { type: 'string', help: "internal (started by --jobs): 'i/n', run only this process's share of the runs and write no table" },
  planMeasure: {
    type: 'boolean',
    default: false,
    help: 'internal (started by --jobs with --budget-minutes): time the steps and the evaluation, print them as JSON, stop',
  },
  stopAfterMinutes: {
    type: 'number',
    min: 0.1,
    help: 'stop at a checkpoint once this much time has passed (for time-limited machines) and write the table of the runs done so far; the same command continues',
  },
  cacheEvalImages: { type: 'boolean', default: true, help: 'decode the evaluation images once into memory for all runs (CIFAR-10 at 32²: 12 KiB per image)' },
  k: { type: 'string', default: '10,20,30', help: 'k-NN neighbour counts (the table shows k = 20 when present)' },
  pooling: { type: 'string', default: 'both', choices: ['cls', 'mean', 'both'], help: 'features evaluated: [CLS], mean of patch tokens, or both' },
  baseline: { type: 'boolean', default: true, help: 'also evaluate the same architecture randomly initialised (no pre-training)' },
  eval: {
    type: 'string',
    default: 'none',
    choices: ['none', 'segprobe'],
    help: "extra column: 'segprobe' = the segmentation probe's mIoU on data with masks (see --seg-dataset)",
  },
  segDataset: {
    type: 'string',
    default: 'auto',
    choices: ['auto', 'synthetic', 'seg-folder'],
    help: '--eval segprobe: data with masks; auto = the synthetic objects when --dataset synthetic',
  },
  segDataPath: { type: 'string', help: '--eval segprobe with --seg-dataset seg-folder: its root ({train,test}/images, {train,test}/masks, classes.txt)' },
  segprobeEpochs: { type: 'number', min: 0.001, help: 'override the recipe: segmentation-probe epochs' },
  ...SEG_DATA_OPTIONS,
  ...DATA_OPTIONS,
  ...RUN_OPTIONS,
  threads: { ...RUN_OPTIONS.threads, help: 'CPU threads for libtorch, per process (default: all cores; with --jobs N, cores / N each)' },
  precision: precisionOption('pre-training and feature precision; auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)'),
  ...GPU_STEP_OPTIONS,
  outDir: { type: 'string', default: 'runs/ablate', help: 'output folder (ablation.md, ablation.json, one pre-training run per order and seed)' },
});

export type AblateOptions = Options<typeof ABLATE_OPTIONS>;

export function validateAblate(o: AblateOptions): void {
  validateEval(o);
  checkSeedList(o);
  parseOrders(o.orders);
  const ks = parseKs(o.k);
  // the k-NN of every run would fail only after its pre-training
  if (o.trainLimit !== undefined && ks[ks.length - 1] > o.trainLimit)
    throw new OptionError('k', `k = ${ks[ks.length - 1]} exceeds the ${o.trainLimit} training images of --train-limit (lower --k or raise --train-limit)`);
  // and so would its linear probe, which needs two training features
  if (o.trainLimit !== undefined && o.trainLimit < 2)
    throw new OptionError('trainLimit', `must be at least 2: the linear probe of every run trains on at least 2 images, got ${o.trainLimit}`);
  ablationSegRecipe(o, o.budget);
  if (o.budgetMinutes !== undefined) {
    if (o.epochs !== undefined) throw new OptionError('budgetMinutes', 'sets the epochs itself: give --budget-minutes or --epochs, not both');
    if (o.maxSteps !== undefined) throw new OptionError('budgetMinutes', 'sets the length itself: give --budget-minutes or --max-steps, not both');
  } else if (o.planOnly) throw new OptionError('planOnly', 'needs --budget-minutes');
  if (o.shard !== undefined) parseShard(o.shard);
  if (o.jobs > 1 && o.shard !== undefined) throw new OptionError('jobs', 'a shard runs in one process (--shard is set by --jobs)');
}

/** The shard 'i/n' as numbers (0 ≤ i < n). */
export function parseShard(text: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!(count >= 1 && index >= 0 && index < count)) throw new OptionError('shard', `expected 'i/n' with 0 ≤ i < n, got '${text}'`);
  return { index, count };
}

/** One row of the ablation: an order, and for S-based orders the tokens of S ('cls' unless named). */
export interface OrderSpec {
  /** The row name ('semantic', 'semantic:self'). */
  name: string;
  order: string;
  tokens?: 'cls' | 'gap' | 'self';
}

const S_ORDERS = ['similarity', 'semantic', 'multicenter'];

/** Parses one row name. */
export function parseOrderSpec(text: string): OrderSpec {
  const known = ['raster', 'snake', 'stochastic', ...S_ORDERS];
  const [order, tokens, ...rest] = text.split(':');
  if (!known.includes(order)) throw new OptionError('orders', `unknown order '${order}'${didYouMean(order, known)} (known: ${known.join(', ')})`);
  if (rest.length || tokens === '') throw new OptionError('orders', `'${text}' is not 'order' or 'order:tokens'`);
  if (tokens === undefined) return { name: text, order };
  if (!S_ORDERS.includes(order)) throw new OptionError('orders', `'${text}': only ${S_ORDERS.join(', ')} use a similarity map`);
  if (tokens !== 'cls' && tokens !== 'gap' && tokens !== 'self') throw new OptionError('orders', `'${text}': tokens must be cls, gap or self`);
  return { name: text, order, tokens };
}

/** Parses the ablation's order list (row names). */
export function parseOrders(text: string): string[] {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!list.length) throw new OptionError('orders', 'is empty');
  const rows = new Map<string, string>();
  for (const s of list) {
    const spec = parseOrderSpec(s);
    // 'semantic' is 'semantic:cls': one model, trained twice
    const row = S_ORDERS.includes(spec.order) ? `${spec.order}:${spec.tokens ?? 'cls'}` : spec.order;
    const before = rows.get(row);
    if (before === s) throw new OptionError('orders', `lists an order twice: ${text}`);
    if (before !== undefined) throw new OptionError('orders', `'${before}' and '${s}' are the same row (S from [CLS] unless named): ${text}`);
    rows.set(row, s);
  }
  return list;
}
