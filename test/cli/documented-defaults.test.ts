// docs/METHOD.md §3.3–3.4 states the orders' defaults and §6 the authors' recipes, which the commands' defaults follow: each
// phrase below must stand in that section, and the option table's default must be the value it states.
// A default changed in code (or a number changed in the doc) fails here, naming both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OptionTable } from '../../src/util/options';
import { PRETRAIN_OPTIONS } from '../../src/train/pretrain-options';
import { FINETUNE_OPTIONS, KNN_OPTIONS, LINPROBE_OPTIONS } from '../../src/eval/options';

const METHOD = readFileSync(join(__dirname, '..', '..', '..', 'docs', 'METHOD.md'), 'utf8');

/** The text of the section whose heading starts with `### <number> `, up to the next heading. */
function section(number: string): string {
  const start = METHOD.indexOf(`\n### ${number} `);
  assert.ok(start >= 0, `docs/METHOD.md has no section ${number}`);
  const end = METHOD.indexOf('\n#', start + 1);
  return METHOD.slice(start, end < 0 ? undefined : end).replace(/\s+/g, ' ');
}

type Table = OptionTable;
const CLAIMS: [section: string, phrase: string, table: Table, defaults: Record<string, unknown>][] = [
  ['3.3', '`--order-variant paper` (default: filter, λ = 0.01)', PRETRAIN_OPTIONS, { orderVariant: 'paper', orderLambda: undefined }],
  ['3.4', 'takes the `--centers k` highest of them (default 3)', PRETRAIN_OPTIONS, { centers: 3 }],
  ['3.4', 'reach `--min-rel-height` (0.5)', PRETRAIN_OPTIONS, { minRelHeight: 0.5 }],
  ['3.4', '`--min-distance` (2 patches)', PRETRAIN_OPTIONS, { minDistance: 2 }],
  ['6.1', 'batch 64 = **2048**; 800 epochs', PRETRAIN_OPTIONS, { batchSize: 64, epochs: 800 }],
  ['6.1', 'AdamW β = (0.9, 0.95)', PRETRAIN_OPTIONS, { beta1: 0.9, beta2: 0.95 }],
  ['6.1', 'weight decay 0.05', PRETRAIN_OPTIONS, { weightDecay: 0.05, decayClsToken: true }],
  ['6.1', 'blr 2e-4', PRETRAIN_OPTIONS, { blr: 2e-4 }],
  ['6.1', '30 warm-up epochs then half-cosine to 0', PRETRAIN_OPTIONS, { warmupEpochs: 30, minLr: 0 }],
  ['6.1', 'gradient clip 3', PRETRAIN_OPTIONS, { clipGrad: 3 }],
  ['6.1', 'no drop-path', PRETRAIN_OPTIONS, { dropPath: 0 }],
  ['6.1', 'scale 0.2–1', PRETRAIN_OPTIONS, { minScale: 0.2, hflip: true }],
  ['6.1', 'blur 9/σ 1; norm-pix', PRETRAIN_OPTIONS, { blur: true, blurKernel: 9, blurSigma: 1, normPix: true }],
  [
    '6.1',
    'order `attention_center` with `attention_type cls` from the online model',
    PRETRAIN_OPTIONS,
    {
      order: 'semantic',
      similarityTokens: undefined, // undefined = cls
      similaritySource: 'auto', // online for pixel targets (test/train/similarity-source.test.ts)
    },
  ],
  ['6.2', 'blr 5e-4, layer-wise lr decay 0.65', FINETUNE_OPTIONS, { blr: 5e-4, layerDecay: 0.65 }],
  ['6.2', '100 epochs, 20 warm-up, min lr 1e-6', FINETUNE_OPTIONS, { epochs: 100, warmupEpochs: 20, minLr: 1e-6 }],
  ['6.2', 'weight decay 0.05', FINETUNE_OPTIONS, { weightDecay: 0.05 }],
  ['6.2', 'β = (0.9, 0.999)', FINETUNE_OPTIONS, { beta1: 0.9, beta2: 0.999 }],
  ['6.2', 'drop-path 0.1', FINETUNE_OPTIONS, { dropPath: 0.1 }],
  ['6.2', 'mixup 0.8, cutmix 1.0', FINETUNE_OPTIONS, { mixup: 0.8, cutmix: 1 }],
  ['6.2', 'label smoothing 0.1', FINETUNE_OPTIONS, { smoothing: 0.1 }],
  ['6.2', 'global average pooling', FINETUNE_OPTIONS, { pool: 'avg' }],
  ['6.3', 'SGD momentum 0.9, no weight decay', LINPROBE_OPTIONS, { optimizer: 'sgd', momentum: 0.9, weightDecay: 0 }],
  ['6.3', 'blr 0.1, 90 epochs, no warm-up', LINPROBE_OPTIONS, { blr: 0.1, epochs: 90, warmupEpochs: 0 }],
  ['6.3', 'default batch 256 with the lr scaled', LINPROBE_OPTIONS, { batchSize: 256 }],
  ['6.4', 'weight `exp(sim/0.07)`', KNN_OPTIONS, { temperature: 0.07 }],
  ['6.4', '`k = 20, 10, 30`', KNN_OPTIONS, { k: '10,20,30' }],
  ['6.4', '`--pooling cls` (default)', KNN_OPTIONS, { pooling: 'cls' }],
];

test('docs/METHOD.md §3 and §6: the orders and recipes it states are the option tables’ defaults', () => {
  const wrong: string[] = [];
  for (const [no, phrase, table, defaults] of CLAIMS) {
    if (!section(no).includes(phrase)) wrong.push(`§${no} no longer says "${phrase}"`);
    for (const [key, value] of Object.entries(defaults)) {
      const spec = table[key];
      if (!spec) wrong.push(`§${no} "${phrase}": no option ${key}`);
      else if (spec.default !== value) wrong.push(`§${no} "${phrase}": ${key} defaults to ${JSON.stringify(spec.default)}, not ${JSON.stringify(value)}`);
    }
  }
  assert.deepEqual(wrong, []);
});

const README = readFileSync(join(__dirname, '..', '..', '..', 'README.md'), 'utf8').replace(/\s+/g, ' ');
const README_CLAIMS: [phrase: string, table: Table, defaults: Record<string, unknown>][] = [
  ['DINO weighted k-NN (k = 10, 20, 30; T = 0.07)', KNN_OPTIONS, { k: '10,20,30', temperature: 0.07 }],
  ['`--max-image-pixels` (default 178,956,970', PRETRAIN_OPTIONS, { maxImagePixels: 178956970 }],
  ['the EXIF orientation tag is ignored, as torchvision does (default)', PRETRAIN_OPTIONS, { exifOrientation: 'ignore' }],
  ['`semantic` (default; `--order-variant paper` = 3×3 mean filter, λ = 0.01', PRETRAIN_OPTIONS, { order: 'semantic', orderVariant: 'paper' }],
  ['pixels blurred by default (`--blur`, kernel 9, σ 1,', PRETRAIN_OPTIONS, { blur: true, blurKernel: 9, blurSigma: 1 }],
  ['AdamW (β = 0.9, 0.95), weight decay 0.05', PRETRAIN_OPTIONS, { beta1: 0.9, beta2: 0.95, weightDecay: 0.05 }],
  ["`[CLS]` is decayed, as the authors'; `--no-decay-cls-token` exempts it", PRETRAIN_OPTIONS, { decayClsToken: true }],
  ['gradient clip 3', PRETRAIN_OPTIONS, { clipGrad: 3 }],
  ['(`--similarity-source online`, the default for pixel targets)', PRETRAIN_OPTIONS, { similaritySource: 'auto' }],
  ['(`teacher`, the default with `--target features`', PRETRAIN_OPTIONS, { similaritySource: 'auto' }],
];

test("README: the defaults it states are the option tables' defaults", () => {
  const wrong: string[] = [];
  for (const [phrase, table, defaults] of README_CLAIMS) {
    if (!README.includes(phrase)) wrong.push(`README no longer says "${phrase}"`);
    for (const [key, value] of Object.entries(defaults))
      if (table[key]?.default !== value)
        wrong.push(`README "${phrase}": ${key} defaults to ${JSON.stringify(table[key]?.default)}, not ${JSON.stringify(value)}`);
  }
  assert.deepEqual(wrong, []);
});
