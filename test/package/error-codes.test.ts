// Every error code of the library's table (README "Errors a program can switch on"), provoked through
// the package entry as a program meets it, with its class and its message as the command line prints it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AbortError,
  CheckpointError,
  ConfigError,
  DataError,
  FINETUNE_OPTIONS,
  KNN_OPTIONS,
  MissingPackageError,
  OptionError,
  PRETRAIN_OPTIONS,
  RunInUseError,
  VisionTransformer,
  data,
  embed,
  exportEncoder,
  exportWeb,
  io,
  loadEncoder,
  makeConfig,
  nn,
  pretrain,
  resolveOptions,
  runFinetune,
  runKnn,
  torch,
  trainDataRequest,
  viz,
} from '../../src';
import { inTempDir } from '../temp-dir';
import { dataError, withErrorKind } from '../../src/util/errors';

torch.setNumThreads(1);

const CFG = { imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 2, numHeads: 2, mlpRatio: 2 };

/** A rejection or throw with this class and code (and a message matching `message`). */
function coded(cls: new (...a: never[]) => Error, code: string, message?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof cls, `a ${cls.name}, got ${String(e)}`);
    assert.equal((e as { code?: string }).code, code);
    if (message) assert.match(e.message, message);
    return true;
  };
}

const withDir = (fn: (dir: string) => Promise<void> | void) => inTempDir('semaim-codes-', fn);

/** An exported encoder (weights + config JSON, as `semaim export` writes them). */
function writeEncoder(dir: string, name = 'enc'): string {
  const enc = new VisionTransformer(CFG).initWeights();
  const path = join(dir, `${name}.safetensors`);
  io.saveTensors(path, enc.stateDict(), { config: JSON.stringify(CFG) });
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(CFG));
  enc.dispose();
  return path;
}

/** A one-block pre-training on the built-in synthetic images, `maxSteps` steps into `outDir`. */
const tinyPretrain = (outDir: string, maxSteps: number) =>
  resolveOptions(PRETRAIN_OPTIONS, {
    dataset: 'synthetic',
    model: 'vit_tiny',
    embedDim: 16,
    depth: 1,
    numHeads: 2,
    decoderDepth: 1,
    imgSize: 16,
    patchSize: 8,
    batchSize: 8,
    epochs: 1,
    warmupEpochs: 0,
    maxSteps,
    numWorkers: 0,
    threads: 1,
    outDir,
  });

const knnOptions = (dir: string, extra: Record<string, unknown>) =>
  resolveOptions(KNN_OPTIONS, {
    checkpoint: join(dir, 'enc.safetensors'),
    dataset: 'synthetic',
    trainLimit: 16,
    testLimit: 8,
    outDir: join(dir, 'knn'),
    threads: 1,
    ...extra,
  });

test('ERR_OPTION and ERR_CONFIG: a bad option value; a model config makeConfig or a model refuses', () => {
  assert.throws(
    () => resolveOptions(KNN_OPTIONS, { checkpoint: 'x', evalBatchSize: -1 }),
    coded(OptionError, 'ERR_OPTION', /option 'evalBatchSize': must be >= 1/),
  );
  assert.throws(() => makeConfig('vit_nope'), coded(ConfigError, 'ERR_CONFIG', /unknown preset 'vit_nope'/));
  assert.throws(
    () => new VisionTransformer({ ...CFG, patchSize: 5 }),
    coded(ConfigError, 'ERR_CONFIG', /config 'imgSize': 16 is not divisible by patchSize 5/),
  );
});

test(
  'ERR_OPTION from a job called with a bad option: embed to a file that is not .safetensors, with both images and a dataset',
  withDir(async (dir) => {
    const enc = writeEncoder(dir);
    await assert.rejects(
      embed({ checkpoint: enc, images: dir, out: join(dir, 'f.bin') }),
      coded(OptionError, 'ERR_OPTION', /option 'out': must end in \.safetensors/),
    );
    await assert.rejects(
      embed({ checkpoint: enc, images: dir, dataset: 'synthetic', out: join(dir, 'f.safetensors') }),
      coded(OptionError, 'ERR_OPTION', /option 'images': give either images \(a folder or a file\) or a dataset/),
    );
  }),
);

test(
  'ERR_OUTPUT_EXISTS: an export over an earlier one without overwrite (an OptionError naming out)',
  withDir(async (dir) => {
    const enc = writeEncoder(dir);
    await exportEncoder(enc, join(dir, 'out', 'e'));
    await assert.rejects(
      () => exportEncoder(enc, join(dir, 'out', 'e')),
      coded(OptionError, 'ERR_OUTPUT_EXISTS', /e\.safetensors exists: choose another output/),
    );
  }),
);

test(
  'ERR_DEVICE_UNAVAILABLE: a job asked for a CUDA device this libtorch or machine lacks, before any work',
  withDir(async (dir) => {
    writeEncoder(dir);
    const device = torch.cuda.isAvailable() ? `cuda:${torch.cuda.deviceCount()}` : 'cuda';
    await assert.rejects(runKnn(knnOptions(dir, { device }), data.DATA_FACTORIES), coded(OptionError, 'ERR_DEVICE_UNAVAILABLE', /option 'device': cuda/));
    assert.deepEqual(readdirSync(dir).sort(), ['enc.json', 'enc.safetensors']);
  }),
);

test('ERR_TORCH_NOT_IMPLEMENTED: a CUDA tensor, or a model moved to CUDA, on a libtorch without CUDA', (t) => {
  if (torch.cuda.isAvailable() || !/USE_CUDA=OFF/.test(torch.version().config)) return t.skip('this libtorch has CUDA');
  const isTorch = (e: unknown) => torch.isTorchError(e) && e.code === 'ERR_TORCH_NOT_IMPLEMENTED';
  assert.throws(() => torch.zeros([2], { device: 'cuda' }), isTorch);
  const model = new VisionTransformer(CFG);
  try {
    assert.throws(
      () => model.to({ device: 'cuda' }),
      (e: unknown) => isTorch(e) && /^to: PyTorch is not linked with support for cuda devices/.test((e as Error).message),
    );
  } finally {
    model.dispose();
  }
});

test('ERR_TORCH_OOM: an allocation libtorch cannot make', () => {
  assert.throws(
    () => torch.empty([2 ** 26, 2 ** 20]),
    (e: unknown) => torch.isTorchError(e) && e.code === 'ERR_TORCH_OOM',
  );
});

test(
  'ERR_CHECKPOINT: a missing encoder or run, a corrupt .safetensors or .pth, a checkpoint that fails its SHA-256',
  withDir(async (dir) => {
    await assert.rejects(
      runKnn(knnOptions(dir, { checkpoint: join(dir, 'none') }), data.DATA_FACTORIES),
      coded(CheckpointError, 'ERR_CHECKPOINT', /does not exist/),
    );
    await assert.rejects(() => exportEncoder(join(dir, 'no-run'), join(dir, 'x')), coded(CheckpointError, 'ERR_CHECKPOINT', /no usable checkpoint in/));
    writeFileSync(join(dir, 'bad.safetensors'), 'not a safetensors file');
    assert.throws(() => loadEncoder(join(dir, 'bad.safetensors')), coded(CheckpointError, 'ERR_CHECKPOINT', /bad\.safetensors: header length/));
    assert.throws(() => io.loadTensors(join(dir, 'bad.safetensors')), coded(CheckpointError, 'ERR_CHECKPOINT'));
    // a path that is missing or not a file, to each of the io readers
    for (const read of [io.loadTensors, io.readSafetensors, io.readSafetensorsHeader]) {
      assert.throws(() => read(join(dir, 'missing.safetensors')), coded(CheckpointError, 'ERR_CHECKPOINT', /ENOENT.*missing\.safetensors/));
      assert.throws(() => read(dir), coded(CheckpointError, 'ERR_CHECKPOINT', /is a folder, not a regular file/));
    }
    writeFileSync(join(dir, 'bad.pth'), Buffer.from('PK\u0003\u0004 a truncated zip'));
    assert.throws(() => loadEncoder(join(dir, 'bad.pth')), coded(CheckpointError, 'ERR_CHECKPOINT', /bad\.pth/));
    // a pre-training checkpoint whose weights changed after it was written
    const o = tinyPretrain(join(dir, 'run'), 1);
    await pretrain(o, data.makeTrainData(trainDataRequest(o)), { log: () => {}, progress: false, catchSignals: false });
    const ckpt = join(dir, 'run', 'checkpoints', 'step-00000001');
    const weights = readFileSync(join(ckpt, 'model.safetensors'));
    weights[weights.length - 1] ^= 1;
    writeFileSync(join(ckpt, 'model.safetensors'), weights);
    assert.throws(() => loadEncoder(ckpt), coded(CheckpointError, 'ERR_CHECKPOINT', /is not usable: model\.safetensors/));
    // the run folder, whose only step checkpoint is that one: the error says why it was passed over, and
    // names its 'best', which still passes its check, as the way out (not taken in its place)
    assert.throws(
      () => loadEncoder(join(dir, 'run')),
      coded(
        CheckpointError,
        'ERR_CHECKPOINT',
        /no usable checkpoint in .*run: every step checkpoint fails its check: step-00000001: model\.safetensors.*run\/checkpoints\/best passes its check: name it to use it/,
      ),
    );
    // a good step 1 under a step 2 that fails its check: step 1 is loaded, and the skip reaches onWarning, not the console
    weights[weights.length - 1] ^= 1;
    writeFileSync(join(ckpt, 'model.safetensors'), weights);
    const newer = join(dir, 'run', 'checkpoints', 'step-00000002');
    cpSync(ckpt, newer, { recursive: true }); // its state.json says step 1: it fails its check
    const warnings: string[] = [];
    const loaded = loadEncoder(join(dir, 'run'), { onWarning: (l) => warnings.push(l) });
    loaded.encoder.dispose();
    assert.equal(loaded.source.weights, join(ckpt, 'model.safetensors'));
    assert.deepEqual(warnings, [`warning: skipping checkpoint ${newer}: state.json: step is 1, not 2 as the folder name says`]);
  }),
);

test(
  'ERR_CHECKPOINT_MISMATCH: weights their config does not describe, a state dict that does not fit a module',
  withDir((dir) => {
    writeEncoder(dir, 'wide');
    writeFileSync(join(dir, 'wide.json'), JSON.stringify({ ...CFG, embedDim: 32 }));
    assert.throws(
      () => loadEncoder(join(dir, 'wide.safetensors')),
      coded(CheckpointError, 'ERR_CHECKPOINT_MISMATCH', /the config does not describe these weights/),
    );
    const a = new VisionTransformer(CFG);
    const b = new VisionTransformer({ ...CFG, depth: 3 });
    try {
      assert.throws(() => b.loadStateDict(a.stateDict(), { strict: true }), coded(nn.StateDictError, 'ERR_CHECKPOINT_MISMATCH', /missing: +blocks\.2\./));
    } finally {
      a.dispose();
      b.dispose();
    }
  }),
);

test(
  'ERR_DATA: a data folder that does not exist, one with no images, splits whose classes differ',
  withDir(async (dir) => {
    const enc = writeEncoder(dir);
    const knn = (extra: Record<string, unknown>) => runKnn(knnOptions(dir, extra), data.DATA_FACTORIES);
    await assert.rejects(knn({ dataset: 'folder', dataPath: join(dir, 'none') }), coded(DataError, 'ERR_DATA', /none(\/train)? does not exist/));
    for (const split of ['train', 'test']) mkdirSync(join(dir, 'empty', split, 'cat'), { recursive: true });
    await assert.rejects(knn({ dataset: 'folder', dataPath: join(dir, 'empty') }), coded(DataError, 'ERR_DATA', /found no images under/));
    await assert.rejects(
      embed({ checkpoint: enc, images: join(dir, 'empty', 'train', 'cat'), out: join(dir, 'f.safetensors'), progress: null }),
      coded(DataError, 'ERR_DATA', /found no images in/),
    );
    writeFileSync(join(dir, 'empty', 'train', 'cat', 'broken.png'), 'not a png');
    await assert.rejects(
      embed({ checkpoint: enc, images: join(dir, 'empty', 'train', 'cat'), out: join(dir, 'f.safetensors'), progress: null, onWarning: () => {} }),
      coded(DataError, 'ERR_DATA', /embed: no readable image in .*cat \(1 skipped\)/), // read in a loader worker, left out, none left
    );
    await assert.rejects(knn({ dataset: 'cifar10', dataPath: join(dir, 'none.tar.gz') }), coded(DataError, 'ERR_DATA', /archive .*none\.tar\.gz not found/));
    const twoClasses = (names: string[]) =>
      new data.MemoryLabelledData(new Float32Array(4 * 3 * 16 * 16), [4, 3, 16, 16], Int32Array.from([0, 1, 0, 1]), 2, names);
    const f: data.DataFactories = {
      makeEvalData: (r) => twoClasses(r.split === 'train' ? ['cat', 'dog'] : ['cat', 'fox']),
      makeTrainData: () => {
        throw new Error('not used');
      },
    };
    await assert.rejects(
      runKnn(knnOptions(dir, { k: '1' }), f),
      coded(DataError, 'ERR_DATA', /class 1 is 'dog' in the train split but 'fox' in the test split/),
    );
  }),
);

test(
  'ERR_DATA: an unreadable image handed to the image functions (a DecodeError, with its reason), none readable among those given',
  withDir(async (dir) => {
    const broken = join(dir, 'broken.jpg');
    writeFileSync(broken, 'not a jpeg');
    await assert.rejects(data.decodeImage(readFileSync(broken)), coded(DataError, 'ERR_DATA', /^not an image file \(unrecognised format\)$/));
    await assert.rejects(data.decodeImage(readFileSync(broken)), (e: unknown) => e instanceof data.DecodeError && e.reason === 'unsupported');
    await assert.rejects(viz.loadRgb(broken, 16), coded(data.DecodeError, 'ERR_DATA', /^cannot read image .*broken\.jpg: not an image file/));
    await assert.rejects(viz.loadRgb(join(dir, 'gone.png'), 16), coded(data.DecodeError, 'ERR_DATA', /^cannot read image .*gone\.png: ENOENT/));
    await assert.rejects(
      viz.loadImages([broken], 16, Infinity, {}, () => {}),
      coded(DataError, 'ERR_DATA', /^none of the 1 image\(s\) could be read:\n {2}cannot read image .*broken\.jpg/),
    );
  }),
);

test(
  'ERR_MISSING_PACKAGE: exportWeb without the optional onnxruntime-web, before any file is written',
  withDir(async (dir) => {
    const enc = writeEncoder(dir);
    const Module = require('node:module') as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request: string, ...rest: unknown[]) {
      if (request === 'onnxruntime-web') throw Object.assign(new Error(`Cannot find module '${request}'`), { code: 'MODULE_NOT_FOUND' });
      return resolve.call(this, request, ...rest);
    };
    try {
      await assert.rejects(
        () => exportWeb(enc, join(dir, 'web'), { dtype: 'float32' }),
        coded(MissingPackageError, 'ERR_MISSING_PACKAGE', /needs the npm package onnxruntime-web .*: run 'npm install onnxruntime-web'/),
      );
    } finally {
      Module._resolveFilename = resolve;
    }
    assert.deepEqual(readdirSync(dir).sort(), ['enc.json', 'enc.safetensors']);
  }),
);

test(
  "ERR_DATA: a caller's own data whose batches do not fit: labels outside its classes or not one per image, images of another size or type",
  withDir(async (dir) => {
    writeEncoder(dir);
    /** Data of 3 classes (16 train, 8 test images) whose every batch is changed by `spoil`. */
    const spoiled = (spoil: (b: { images: Float32Array | Uint8Array; shape: number[]; labels: Int32Array }) => void): data.DataFactories => ({
      makeEvalData: (r) => {
        const size = r.split === 'train' ? 16 : 8;
        const inner = new data.MemoryLabelledData(
          new Float32Array(size * 3 * 16 * 16),
          [size, 3, 16, 16],
          Int32Array.from({ length: size }, (_, i) => i % 3),
          3,
        );
        return {
          size,
          numClasses: 3,
          async *batches(o) {
            for await (const b of inner.batches(o)) {
              const copy = { ...b, images: b.images.slice(), labels: b.labels.slice() };
              spoil(copy);
              yield copy as typeof b;
            }
          },
          close: () => {},
        };
      },
      makeTrainData: () => {
        throw new Error('not used');
      },
    });
    const refused = (re: RegExp) => coded(DataError, 'ERR_DATA', new RegExp(`^the data gave a batch that cannot be used: ${re.source}`));
    const knn = (f: data.DataFactories) => runKnn(knnOptions(dir, { k: '1', outDir: join(dir, 'knn') }), f);
    // label = numClasses, the first past the classes, is refused
    await assert.rejects(knn(spoiled((b) => (b.labels[0] = 3))), refused(/label 3 \(row 0\) is outside 0\.\.2: the data says it has 3 classes/));
    await assert.rejects(knn(spoiled((b) => (b.labels = b.labels.subarray(0, 1)))), refused(/it has \d+ images and 1 label$/));
    // one label too many, one image value too many: as refused as too few
    await assert.rejects(knn(spoiled((b) => (b.labels = Int32Array.of(...b.labels, 0)))), refused(/it has (\d+) images and (?!\1 )\d+ labels$/));
    await assert.rejects(
      knn(spoiled((b) => (b.shape = [b.shape[0], 3, 8, 32]))),
      refused(/its shape is \[\d+, 3, 8, 32\], expected \[batch, 3, 16, 16\] \(the model's channels and image size\)/),
    );
    // only the width wrong: refused for its shape, before its value count
    await assert.rejects(
      knn(spoiled((b) => (b.shape = [b.shape[0], 3, 16, 32]))),
      refused(/its shape is \[\d+, 3, 16, 32\], expected \[batch, 3, 16, 16\] \(the model's channels and image size\)/),
    );
    await assert.rejects(
      knn(spoiled((b) => (b.images = b.images.subarray(1)))),
      refused(/its shape \[\d+, 3, 16, 16\] needs \d+ values, its images hold \d+$/),
    );
    await assert.rejects(
      knn(spoiled((b) => (b.images = Float32Array.of(...b.images, 0)))),
      refused(/its shape \[\d+, 3, 16, 16\] needs \d+ values, its images hold \d+$/),
    );
    const finetune = resolveOptions(FINETUNE_OPTIONS, {
      checkpoint: join(dir, 'enc.safetensors'),
      dataset: 'mine',
      epochs: 1,
      warmupEpochs: 0,
      batchSize: 8,
      evalBatchSize: 8,
      threads: 1,
      outDir: join(dir, 'ft'),
    });
    // pre-training data of the caller's making: images of another size than the model's
    const o = tinyPretrain(join(dir, 'run'), 1);
    const small: data.TrainData = {
      batchesPerEpoch: 2,
      async *epoch() {
        yield { images: new Float32Array(8 * 3 * 8 * 8), shape: [8, 3, 8, 8] };
      },
      close: () => {},
    };
    await assert.rejects(
      pretrain(o, small, { log: () => {}, progress: false, catchSignals: false }),
      refused(/its shape is \[8, 3, 8, 8\], expected \[batch, 3, 16, 16\]/),
    );
    await assert.rejects(
      runFinetune(
        finetune,
        spoiled((b) => (b.images = Uint8Array.from(b.images))),
      ),
      refused(/its images are Uint8Array, expected a Float32Array \(NCHW, normalised\)/),
    );
  }),
);

test(
  'ERR_RUN_IN_USE and ERR_ABORTED: a second run into a folder a live run writes; a job whose signal was aborted',
  withDir(async (dir) => {
    const o = tinyPretrain(join(dir, 'run'), 2);
    const quiet = { log: () => {}, progress: false, catchSignals: false } as const;
    const runs = await Promise.allSettled([
      pretrain(o, data.makeTrainData(trainDataRequest(o)), quiet),
      pretrain(o, data.makeTrainData(trainDataRequest(o)), quiet),
    ]);
    assert.deepEqual(runs.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    const refused = runs.find((r): r is PromiseRejectedResult => r.status === 'rejected')!.reason;
    assert.ok(coded(RunInUseError, 'ERR_RUN_IN_USE', /is in use by another semaim run/)(refused));
    writeEncoder(dir);
    await assert.rejects(runKnn(knnOptions(dir, {}), data.DATA_FACTORIES, { signal: AbortSignal.abort() }), coded(AbortError, 'ERR_ABORTED'));
  }),
);

test("withErrorKind gives a kind to an error that describes the input (plain, JSON's SyntaxError, a system error), never to a bug's TypeError or a coded error; AbortError's message", () => {
  const thrown = (e: unknown) => () => {
    throw e;
  };
  const syntax = new SyntaxError('Unexpected token } in JSON');
  const wrapped = (() => {
    try {
      return withErrorKind(thrown(syntax), dataError);
    } catch (e) {
      return e;
    }
  })();
  assert.ok(wrapped instanceof DataError && wrapped.message === syntax.message && wrapped.cause === syntax);
  class SystemError extends Error {
    readonly syscall = 'open';
  }
  assert.throws(() => withErrorKind(thrown(new SystemError('EACCES: permission denied')), dataError), coded(DataError, 'ERR_DATA'));
  assert.throws(() => withErrorKind(thrown(new Error('no images')), dataError), coded(DataError, 'ERR_DATA'));
  const bug = new TypeError("Cannot read properties of undefined (reading 'shape')");
  assert.throws(
    () => withErrorKind(thrown(bug), dataError),
    (e: unknown) => e === bug,
  );
  const own = new CheckpointError('stale', 'ERR_CHECKPOINT_CHANGED');
  assert.throws(
    () => withErrorKind(thrown(own), dataError),
    (e: unknown) => e === own,
  );
  // a signal aborted without a reason of the caller's says so in the library's words; a reason that is an Error gives its message
  assert.equal(new AbortError(AbortSignal.abort().reason).message, 'the job was aborted');
  assert.equal(new AbortError(new Error('disk is going away')).message, 'disk is going away');
  assert.equal(new AbortError('stop').message, 'the job was aborted');
});
