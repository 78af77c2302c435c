// What a resumed run may change and what it must keep: the options flagged mayChangeOnResume in the
// training tables (where and how fast a run goes, how long it runs, how often it logs or saves), and
// recipeChanges / refuseRecipeChanges, which compare the rest with the stored run's config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { recipeChanges, refuseRecipeChanges } from '../../src/run/recipe';
import { PRETRAIN_OPTIONS } from '../../src/train/pretrain-options';
import { FINETUNE_OPTIONS } from '../../src/eval/options';
import { OptionError, OptionTable, defineOptions, resolveOptions } from '../../src/util/options';
import { errorText } from '../../src/util/error-text';

const mayChange = (table: OptionTable) =>
  Object.keys(table)
    .filter((k) => table[k].mayChangeOnResume)
    .sort();

/** What either training run may change on resume: where and with how many processes it runs, how long, how often it logs or saves. */
const EITHER = [
  'checkpointEvery',
  'device',
  'epochs',
  'gradCompress',
  'keepLast',
  'logEvery',
  'masterAddr',
  'masterPort',
  'maxSteps',
  'nnodes',
  'nodeRank',
  'nprocPerNode',
  'numWorkers',
  'outDir',
  'resume',
  'threads',
];

test('a resumed pre-training run may change only where and how fast it runs, how long, and how often it logs or saves', () => {
  // Each of the others changes what a step computes (the seed, the batch, the lr schedule, the data,
  // the model): one flagged by mistake would resume a different recipe into the same run, silently.
  // (how a GPU executes the same step: a captured graph, fused kernels, the input upload)
  assert.deepEqual(mayChange(PRETRAIN_OPTIONS), [...EITHER, 'cudaGraphs', 'fused', 'upload'].sort());
});

test('a resumed fine-tuning run may change only where and how fast it runs, how long, and how often it evaluates, logs or saves', () => {
  // (its evaluation's batch and cadence, and whether a checkpoint it reads is verified)
  assert.deepEqual(mayChange(FINETUNE_OPTIONS), [...EITHER, 'evalBatchSize', 'evalEvery', 'verify'].sort());
});

const TABLE = defineOptions({
  seed: { type: 'int', default: 0, help: 'seed' },
  lr: { type: 'number', help: 'absolute lr' },
  schedule: { type: 'string', default: 'ramp', absentMeans: 'constant', help: 'a later option' },
  epochs: { mayChangeOnResume: true, type: 'number', default: 10, help: 'epochs' },
  logEvery: { mayChangeOnResume: true, type: 'int', default: 10, help: 'log cadence' },
});

test('recipeChanges: a stored value is compared, an unset one as unset, a missing one as its absentMeans; options that may change are not', () => {
  const stored = { seed: 1, lr: null, schedule: 'constant', epochs: 10, logEvery: 10 };
  assert.deepEqual(recipeChanges(TABLE, stored, { seed: 1, lr: undefined, schedule: 'constant', epochs: 99, logEvery: 1 }), []);
  // the stored seed, not the default, is what the run was started with
  assert.deepEqual(recipeChanges(TABLE, stored, { seed: 0, lr: undefined, schedule: 'constant', epochs: 10, logEvery: 10 }), [
    { key: 'seed', before: 1, now: 0 },
  ]);
  // a config.json written before `schedule` existed ran it as its absentMeans, not as today's default
  const { schedule: _, ...older } = stored;
  assert.deepEqual(recipeChanges(TABLE, older, { seed: 1, schedule: 'constant', epochs: 10, logEvery: 10 }), []);
  assert.deepEqual(
    recipeChanges(TABLE, older, { seed: 1, schedule: 'ramp', epochs: 10, logEvery: 10 }).map((c) => c.key),
    ['schedule'],
  );
  assert.deepEqual(
    recipeChanges(TABLE, stored, { seed: 1, lr: 0.1, schedule: 'constant' }).map((c) => c.key),
    ['lr'],
  );
});

test('refuseRecipeChanges names each change and lists the options that may change, and only those', () => {
  refuseRecipeChanges(TABLE, [], '/runs/a'); // nothing changed: no error
  assert.throws(
    () => refuseRecipeChanges(TABLE, recipeChanges(TABLE, { seed: 1 }, { seed: 2, schedule: 'constant', epochs: 10, logEvery: 10 }), '/runs/a'),
    (e: unknown) => {
      assert.ok(e instanceof OptionError);
      assert.equal(e.key, 'seed');
      assert.match(e.message, /the run in \/runs\/a was started with other settings/);
      assert.match(e.message, /--seed +1 +2/);
      assert.match(e.message, /\nOptions that may change when resuming: --epochs, --log-every\.$/);
      return true;
    },
  );
});

test('the refusal reads as a table on the command line: its own line breaks kept, a control character of the folder or a value escaped', () => {
  const changes = recipeChanges(TABLE, { seed: 1, schedule: 'a\u001b[2Jb' }, { seed: 2, schedule: 'constant', epochs: 10, logEvery: 10 });
  assert.throws(
    () => refuseRecipeChanges(TABLE, changes, '/runs/a\nsemaim: forged'),
    (e: unknown) => {
      assert.ok(e instanceof OptionError);
      // errorText (what `semaim pretrain` prints) showed the table as one line of '\x0a'
      const lines = errorText(e).split('\n');
      assert.match(lines[0], /^option --seed: the run in "\/runs\/a\\nsemaim: forged" was started with other settings/);
      assert.match(lines[1], /^ {2}option +run +now *$/);
      assert.match(lines[2], /^ {2}--seed +1 +2 *$/);
      assert.match(lines[3], /^ {2}--schedule +"a\\u001b\[2Jb" +"constant" *$/);
      assert.match(lines.at(-1)!, /^Options that may change when resuming: --epochs, --log-every\.$/);
      assert.ok(![...errorText(e)].some((c) => c !== '\n' && c.charCodeAt(0) < 0x20), 'no control character but the line breaks');
      return true;
    },
  );
});

test('recipeChanges passes over an option that changed nothing before and changes nothing now, and only that', () => {
  const pretrainRun = (o: Record<string, unknown>) => resolveOptions(PRETRAIN_OPTIONS, o) as unknown as Record<string, unknown>;
  const keys = (stored: Record<string, unknown>, now: Record<string, unknown>) =>
    recipeChanges(PRETRAIN_OPTIONS, pretrainRun(stored), pretrainRun(now)).map((c) => c.key);
  // started (before these were refused) with options the raster order, --no-blur and no EMA never read
  const inert = { orderPrecision: 'fp32', similarityTokens: 'gap', orderLambda: 0.5, centers: 7, blurKernel: 5, emaDecay: 0.5, shuffleBuffer: 10 };
  assert.deepEqual(keys({ order: 'raster', blur: false, ...inert }, { order: 'raster', blur: false }), []);
  // read by either run: a change
  assert.deepEqual(keys({ order: 'semantic', orderPrecision: 'fp32' }, { order: 'semantic' }), ['orderPrecision']);
  assert.deepEqual(keys({ order: 'raster', orderPrecision: 'fp32' }, { order: 'semantic' }), ['order', 'orderPrecision']);
  assert.deepEqual(keys({ blur: false, blurKernel: 5 }, { blur: true }), ['blur', 'blurKernel']);
  assert.deepEqual(keys({ dataset: 'synthetic', dataPath: '/data' }, { dataset: 'synthetic' }), []);
  // fine-tuning: --ema-decay without --ema, the mixing probabilities with the mixing off
  const finetuneRun = (o: Record<string, unknown>) => resolveOptions(FINETUNE_OPTIONS, { checkpoint: 'run', ...o }) as unknown as Record<string, unknown>;
  const off = { mixup: 0, cutmix: 0 };
  assert.deepEqual(recipeChanges(FINETUNE_OPTIONS, finetuneRun({ ...off, emaDecay: 0.5, mixupProb: 0.3, mixupSwitchProb: 0.1 }), finetuneRun(off)), []);
  assert.deepEqual(
    recipeChanges(FINETUNE_OPTIONS, finetuneRun({ ema: true, emaDecay: 0.5 }), finetuneRun({ ema: true })).map((c) => c.key),
    ['emaDecay'],
  );
});

test('a pre-training stored before --order-precision existed ran its similarity pass in float32: resumed as the default (same) it is another recipe', () => {
  // (a2a632b, 2026-11-26: the pass had run in float32; since, it runs under --precision unless --order-precision fp32)
  const now = resolveOptions(PRETRAIN_OPTIONS, { order: 'semantic', precision: 'bf16' }) as unknown as Record<string, unknown>;
  const { orderPrecision: _, ...older } = now;
  assert.deepEqual(
    recipeChanges(PRETRAIN_OPTIONS, older, now).map((c) => [c.key, c.before, c.now]),
    [['orderPrecision', 'fp32', 'same']],
  );
  assert.deepEqual(recipeChanges(PRETRAIN_OPTIONS, older, { ...now, orderPrecision: 'fp32' }), []);
  // an order without a similarity pass: nothing to compare
  const raster: Record<string, unknown> = { ...now, order: 'raster' };
  const { orderPrecision: __, ...olderRaster } = raster;
  assert.deepEqual(recipeChanges(PRETRAIN_OPTIONS, olderRaster, raster), []);
});
