// The jobs called from plain JS with missing or wrong options (README "Library use": a job's options are
// checked as on the command line): each names the option with an OptionError (code 'ERR_OPTION') before
// any work, or takes the option's default, instead of failing inside with an internal error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ConfigError,
  DataError,
  FINETUNE_OPTIONS,
  KNN_OPTIONS,
  LINPROBE_OPTIONS,
  OptionError,
  PRETRAIN_OPTIONS,
  SEGPROBE_OPTIONS,
  SemAIM,
  VisionTransformer,
  data,
  embed,
  exportEncoder,
  exportOnnx,
  exportWeb,
  io,
  knnClassify,
  makeConfig,
  predict,
  pretrain,
  resolveOptions,
  runFinetune,
  runKnn,
  runLinprobe,
  torch,
  viz,
} from '../../src';
import { inTempDir } from '../temp-dir';

torch.setNumThreads(1);

const CFG = { imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 2, numHeads: 2, mlpRatio: 2 };

/** Calls from plain JS: any arguments. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const untyped = (f: unknown) => f as (...a: any[]) => Promise<unknown>;

function optionError(key: string, message?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof OptionError, `an OptionError, got ${String((e as Error)?.stack ?? e)}`);
    assert.equal(e.code, 'ERR_OPTION');
    assert.equal(e.key, key);
    if (message) assert.match(e.message, message);
    return true;
  };
}

const withDir = (fn: (dir: string) => Promise<void> | void) => inTempDir('semaim-libopts-', fn);

function writeEncoder(dir: string): string {
  const enc = new VisionTransformer(CFG).initWeights();
  const path = join(dir, 'enc.safetensors');
  io.saveTensors(path, enc.stateDict(), { config: JSON.stringify(CFG) });
  writeFileSync(join(dir, 'enc.json'), JSON.stringify(CFG));
  enc.dispose();
  return path;
}

/** Data factories that stop the job where it opens its data: the options were taken (or refused before). */
class Opened extends Error {}
const opening = {
  makeEvalData: () => {
    throw new Opened('opened');
  },
  makeTrainData: () => {
    throw new Opened('opened');
  },
} as unknown as typeof data.DATA_FACTORIES;

test('resolveOptions of resolved options gives them back as they are; null is an OptionError', () => {
  const cases = [
    [PRETRAIN_OPTIONS, { dataset: 'synthetic', model: 'vit_tiny' }],
    [KNN_OPTIONS, { checkpoint: 'x', k: '5,10' }],
    [LINPROBE_OPTIONS, { checkpoint: 'x' }],
    [FINETUNE_OPTIONS, { checkpoint: 'x' }],
    [SEGPROBE_OPTIONS, { checkpoint: 'x' }],
  ] as const;
  for (const [table, raw] of cases) {
    const o = resolveOptions(table, raw);
    assert.deepEqual(resolveOptions(table, o), o);
  }
  for (const bad of [null, 5, [1]])
    assert.throws(() => resolveOptions(PRETRAIN_OPTIONS, bad as never), optionError('options', /expected an object of options/));
});

test('pretrain: no data is a DataError; a bad option an OptionError, and the data is closed (a failing close hides nothing)', async () => {
  const call = untyped(pretrain);
  await assert.rejects(call(), (e: unknown) => e instanceof DataError && e.code === 'ERR_DATA' && /training data as the second argument/.test(e.message));
  await assert.rejects(call({}), DataError);
  let closed = 0;
  const spy = {
    batchesPerEpoch: 1,
    close: () => {
      closed++;
      throw new Error('close failed');
    },
  };
  await assert.rejects(call({ batchSize: 'x' }, spy), optionError('batchSize', /expected a number/));
  await assert.rejects(call(null, spy), optionError('options'));
  assert.equal(closed, 2);
});

test(
  'runKnn, runLinprobe, runFinetune on plain objects: defaults filled in; a wrong value named before any data is opened',
  withDir(async (dir) => {
    const checkpoint = writeEncoder(dir);
    const raw = { checkpoint, dataset: 'synthetic', trainLimit: 8, testLimit: 4, outDir: join(dir, 'out'), threads: 1 };
    // every missing option (device, k, batchSize, ...) takes its default: the job goes on to open its data
    for (const job of [runKnn, runLinprobe, runFinetune]) await assert.rejects(untyped(job)(raw, opening), Opened, job.name);
    await assert.rejects(untyped(runKnn)({ ...raw, device: 'cpu' }, opening), Opened);
    await assert.rejects(untyped(runKnn)({ ...raw, k: [5] }, opening), optionError('k', /expected a string, got \[5\]/));
    await assert.rejects(untyped(runKnn)({ ...raw, k: '0' }, opening), optionError('k', /positive integers/));
    await assert.rejects(untyped(runKnn)({ ...resolveOptions(KNN_OPTIONS, raw), temperature: 'warm' }, opening), optionError('temperature'));
    await assert.rejects(untyped(runKnn)({ ...raw, dataset: undefined, checkpoint: undefined }, opening), optionError('checkpoint', /is required/));
    await assert.rejects(untyped(runKnn)({ ...raw, kk: 5 }, opening), optionError('kk', /unknown option/));
    await assert.rejects(untyped(runLinprobe)({ ...raw, batchSize: 'many' }, opening), optionError('batchSize'));
    await assert.rejects(untyped(runFinetune)({ ...raw, epochs: Number.NaN }, opening), optionError('epochs', /got NaN/));
    await assert.rejects(untyped(runKnn)(raw), (e: unknown) => e instanceof DataError && /data factories/.test(e.message));
    // a resolved object whose number was set as text is read as the command line reads it
    const r = await runKnn({ ...resolveOptions(KNN_OPTIONS, { ...raw, k: '2' }), temperature: '0.07' as unknown as number }, data.DATA_FACTORIES, {
      progress: null,
    });
    assert.equal(r.result.config.temperature, 0.07);
    assert.deepEqual(readdirSync(join(dir, 'out')), ['knn.json']);
  }),
);

test(
  'embed and predict: a missing checkpoint or out, a bad topK, are named before any file is read',
  withDir(async (dir) => {
    const call = { embed: untyped(embed), predict: untyped(predict) };
    await assert.rejects(call.embed({}), optionError('checkpoint', /is required/));
    await assert.rejects(call.embed({ checkpoint: 'nowhere', images: dir }), optionError('out', /is required/));
    await assert.rejects(call.embed({ out: join(dir, 'f.safetensors'), images: dir }), optionError('checkpoint'));
    await assert.rejects(call.embed({ checkpoint: 'nowhere', out: join(dir, 'f.safetensors'), images: dir, batchSize: 0 }), optionError('batchSize'));
    await assert.rejects(call.predict({}), optionError('checkpoint', /is required/));
    const p = { checkpoint: join(dir, 'nowhere'), out: join(dir, 'p.json'), images: dir };
    for (const topK of [Number.NaN, -1, 2.5, 0, 'five']) await assert.rejects(call.predict({ ...p, topK }), optionError('topK'), String(topK));
    assert.deepEqual(readdirSync(dir), []);
  }),
);

test(
  'embed, predict, the exports and visualizeCheckpoint refuse an unknown key, naming the option it likely means as a key, before any work',
  withDir(async (dir) => {
    // each was ignored: embed wrote [CLS] features for poolng: 'mean', predict listed 5 classes for top_k: 2
    const enc = writeEncoder(dir);
    const out = join(dir, 'out');
    const call = { embed: untyped(embed), predict: untyped(predict), visualize: untyped(viz.visualizeCheckpoint) };
    const meant = (key: string, option: string) => optionError(key, new RegExp(`unknown option; did you mean '${option}'\\? \\(known: `));
    await assert.rejects(call.embed({ checkpoint: enc, images: dir, out: join(out, 'f.safetensors'), poolng: 'mean' }), meant('poolng', 'pooling'));
    await assert.rejects(call.predict({ checkpoint: enc, images: dir, out: join(out, 'p.json'), top_k: 2 }), meant('top_k', 'topK'));
    await assert.rejects(untyped(exportEncoder)(enc, join(out, 'e'), { overwite: true }), meant('overwite', 'overwrite'));
    await assert.rejects(untyped(exportOnnx)(enc, out, { overwite: true }), meant('overwite', 'overwrite'));
    await assert.rejects(untyped(exportWeb)(enc, out, { overwite: true }), meant('overwite', 'overwrite'));
    // the page always has the attention output: exportWeb has no such option (it was accepted, and did nothing)
    await assert.rejects(untyped(exportWeb)(enc, out, { attention: false }), optionError('attention', /unknown option/));
    await assert.rejects(call.visualize({ checkpoint: enc, images: [dir], out, orders: ['raster'], lossorder: 'raster' }), meant('lossorder', 'lossOrder'));
    assert.equal(existsSync(out), false);
    // the jobs' other keys (callbacks, a signal, a process group) are no unknown options: embed runs
    const r = await embed({ checkpoint: enc, dataset: 'synthetic', limit: 2, out: join(out, 'f.safetensors'), progress: null, onProgress: () => {} });
    assert.equal(r.count, 2);
    await assert.rejects(
      call.embed({ checkpoint: enc, out: join(out, 'g.safetensors') }),
      optionError('images', /needs a folder of images or an image file \(images\) or a dataset \(dataset\): give one/),
    );
  }),
);

test('visualizeCheckpoint refuses an unknown order type as the command does, before the model is loaded', async () => {
  const job = { checkpoint: 'nowhere', images: ['a.png'], out: 'viz-out', orders: ['zigzag'] };
  await assert.rejects(untyped(viz.visualizeCheckpoint)(job), optionError('orders', /unknown order type 'zigzag' \(known: raster,snake/));
  await assert.rejects(untyped(viz.visualizeCheckpoint)({ ...job, orders: undefined }), optionError('orders'));
  await assert.rejects(untyped(viz.visualizeCheckpoint)({ ...job, orders: ['raster'], lossOrder: 'zigzag' }), optionError('lossOrder'));
  assert.equal(existsSync('viz-out'), false);
});

test(
  'exportOnnx refuses a dtype the command does not take (it wrote int8 into config.json of a float32 model); the exports name a missing path',
  withDir(async (dir) => {
    const enc = writeEncoder(dir);
    await assert.rejects(exportOnnx(enc, join(dir, 'onnx'), { dtype: 'int8' as never, attention: false }), optionError('dtype', /float32, float16/));
    assert.equal(existsSync(join(dir, 'onnx')), false);
    // a missing path is named as the flag it stands for (Node's '"paths[0]" argument' before)
    await assert.rejects(
      exportOnnx(undefined as never, join(dir, 'onnx'), { dtype: 'float32', attention: false }),
      optionError('checkpoint', /expected a path/),
    );
    await assert.rejects(exportWeb(enc, undefined as never, { dtype: 'float32' }), optionError('out', /expected a path/));
    await assert.rejects(exportEncoder(enc, '' as never), optionError('out', /got ''/));
  }),
);

test('makeConfig prints a NaN as written; knnClassify names ks; SemAIM#forward without an order names it', () => {
  assert.throws(
    () => makeConfig('vit_tiny', { imgSize: Number.NaN }),
    (e: unknown) => e instanceof ConfigError && /got NaN/.test(e.message),
  );
  const set = (n: number) => ({ features: torch.randn([n, 4]), labels: Int32Array.from({ length: n }, (_, i) => i % 2), numClasses: 2 });
  const [train, test] = [set(6), set(3)];
  assert.throws(
    () => knnClassify(train, test, { k: [-1], numClasses: 2 } as never),
    /ks must be a list of positive integers, got undefined \(the option is 'ks'/,
  );
  assert.throws(() => knnClassify(train, test, { ks: [-1], numClasses: 2 }), /k must be positive integers, got -1/);
  assert.throws(() => knnClassify(train, test, { ks: [1], numClasses: 2, temperature: '0.07' as never }), /temperature must be a number > 0, got '0\.07'/);
  const model = new SemAIM(makeConfig('vit_tiny', { imgSize: 16, patchSize: 8, embedDim: 16, depth: 1, numHeads: 2, decoderDepth: 1 }));
  try {
    assert.throws(() => (model.forward as (x: torch.Tensor) => unknown)(torch.zeros([1, 3, 16, 16])), /order values must be a tensor \[1, 4\]/);
  } finally {
    model.dispose();
  }
});
