// The data options of the commands: every command that reads image files takes --max-image-pixels
// and --exif-orientation and hands them to the loader, and a --data-path that does not exist is an
// option error before any work (it used to train from a cache of some other archive).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { commands } from '../../src/cli/commands';
import { OptionError, resolveOptions } from '../../src/util/options';
import { PRETRAIN_OPTIONS, trainDataRequest } from '../../src/train/pretrain-options';
import { ABLATE_OPTIONS } from '../../src/experiments/ablate-options';
import { ablationRecipe, fingerprint, pretrainOptionsFor } from '../../src/experiments/ablate';
import { makeEvalData, makeTrainData, openDataset, packImageFolder } from '../../src/data';
import { checkDataPath } from '../../src/data/options';
import { claimedSizePng } from '../data/hostile-files';
import { encode, picture, write } from '../data/helpers';

const IMAGE_COMMANDS = ['pretrain', 'knn', 'linprobe', 'finetune', 'ablate', 'visualize', 'report', 'embed', 'segprobe', 'predict'];

function withTemp<T>(fn: (root: string) => Promise<T>): Promise<T> {
  const root = mkdtempSync(join(tmpdir(), 'semaim-data-options-'));
  return fn(root).finally(() => rmSync(root, { recursive: true, force: true }));
}

/** Runs fn with stderr captured. */
async function captureStderr<T>(fn: () => Promise<T>): Promise<{ result: T; stderr: string }> {
  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    return { result: await fn(), stderr: lines.join('') };
  } finally {
    process.stderr.write = write;
  }
}

test('every command that reads images takes --max-image-pixels (PIL default, 0 = none) and --exif-orientation', () => {
  for (const name of IMAGE_COMMANDS) {
    const table = commands[name].options;
    assert.equal(table.maxImagePixels?.default, 178_956_970, name);
    assert.equal(table.maxImagePixels?.min, 0, name);
    assert.equal(table.exifOrientation?.default, 'ignore', name);
    assert.deepEqual(table.exifOrientation?.choices, ['ignore', 'apply'], name);
  }
});

test('a --data-path that does not exist is an option error before any work (cifar10 archive, folder)', () =>
  withTemp(async (root) => {
    const out = join(root, 'run');
    const runs: Array<[string, string[]]> = [
      ['pretrain', ['--dataset', 'cifar10', '--data-path', '/nonexistent.tar.gz', '--out-dir', out, '--model', 'vit_tiny']],
      ['pretrain', ['--dataset', 'folder', '--data-path', join(root, 'nope'), '--out-dir', out]],
      ['knn', ['--checkpoint', join(root, 'missing-run'), '--dataset', 'cifar10', '--data-path', '/nonexistent.tar.gz', '--out-dir', out]],
      ['linprobe', ['--checkpoint', join(root, 'missing-run'), '--data-path', '/nonexistent.tar.gz', '--out-dir', out]],
      ['finetune', ['--checkpoint', join(root, 'missing-run'), '--data-path', '/nonexistent.tar.gz', '--out-dir', out]],
      ['ablate', ['--dataset', 'cifar10', '--data-path', '/nonexistent.tar.gz', '--out-dir', out]],
    ];
    for (const [name, argv] of runs) {
      await assert.rejects(commands[name].run(argv), (e: Error) => e instanceof OptionError && e.key === 'dataPath' && /does not exist/.test(e.message), name);
      assert.equal(existsSync(out), false, `${name}: nothing written`);
    }
    // a file where a folder is read: the same, before any work (it was a plain error from the loader)
    const file = join(root, 'file.txt');
    writeFileSync(file, 'x');
    for (const dataset of ['folder', 'flat', 'cifar10'])
      await assert.rejects(
        commands.pretrain.run(['--dataset', dataset, '--data-path', file, '--out-dir', out]),
        (e: Error) => e instanceof OptionError && e.key === 'dataPath' && /file\.txt is not a folder/.test(e.message),
        dataset,
      );
    assert.equal(existsSync(out), false, 'nothing written');
  }));

test('pretrain and evaluation data pass the image options to the loader', () =>
  withTemp(async (root) => {
    for (const cls of ['a', 'b'])
      for (let i = 0; i < 4; i++) write(join(root, 'data', 'train', cls, `${i}.png`), await encode(picture(20, 20, i), 20, 20, 3, 'png'));
    write(join(root, 'data', 'train', 'a', 'bomb.png'), claimedSizePng(30000, 30000));
    write(join(root, 'data', 'train', 'b', 'big.png'), await encode(picture(40, 40), 40, 40, 3, 'png'));
    const o = resolveOptions(PRETRAIN_OPTIONS, {
      dataset: 'folder',
      dataPath: join(root, 'data'),
      imgSize: 16,
      batchSize: 5,
      numWorkers: 0,
      maxImagePixels: 1000,
      outDir: join(root, 'run'),
    });
    const { stderr } = await captureStderr(async () => {
      const data = makeTrainData(trainDataRequest(o));
      try {
        for await (const b of data.epoch(0, 0)) void b;
      } finally {
        await data.close();
      }
    });
    assert.match(stderr, /bomb\.png: PNG of 30000×30000 = 900,000,000 pixels exceeds the limit of 1,000 pixels/);
    assert.match(stderr, /big\.png: PNG of 40×40 = 1,600 pixels exceeds the limit of 1,000 pixels/);
    const evalRun = await captureStderr(async () => {
      const data = makeEvalData({
        split: 'train',
        dataset: 'folder',
        dataPath: join(root, 'data'),
        imgSize: 16,
        seed: 0,
        numWorkers: 0,
        imageInput: { maxImagePixels: 0, exifOrientation: 'ignore' },
      });
      try {
        for await (const b of data.batches({ batchSize: 10, shuffle: false, epoch: 0, augment: 'none' })) void b;
      } finally {
        await data.close();
      }
    });
    assert.doesNotMatch(evalRun.stderr, /big\.png/, 'no limit: the 40×40 image is used');
    assert.match(evalRun.stderr, /bomb\.png: truncated PNG data/, 'no limit: the bomb header is read further and found truncated');
  }));

test('ablate forwards the image and GPU-execution options to its pre-trains; they stay out of the run fingerprint at their defaults (GPU ones always)', () => {
  const recipe = ablationRecipe('small');
  const at = (extra: Record<string, unknown>) => pretrainOptionsFor(resolveOptions(ABLATE_OPTIONS, extra), recipe, 'semantic', 0, '/tmp/x');
  const defaults = at({});
  assert.equal(defaults.maxImagePixels, 178_956_970);
  // a finished run recorded before these options existed must still match
  const laterKeys = ['maxImagePixels', 'exifOrientation', 'cudaGraphs', 'fused', 'gradCompress'];
  const before = fingerprint(Object.fromEntries(Object.entries(defaults).filter(([k]) => !laterKeys.includes(k))), recipe, [20]);
  assert.deepEqual(fingerprint(defaults, recipe, [20]), before);
  // how a GPU executes the step (a captured graph, fused kernels) is not part of the recipe
  const graphs = at({ cudaGraphs: true, fused: 'all' });
  assert.deepEqual([graphs.cudaGraphs, graphs.fused], [true, 'all']);
  assert.deepEqual(fingerprint(graphs, recipe, [20]), before);
  const changed = at({ maxImagePixels: 1000, exifOrientation: 'apply' });
  assert.deepEqual([changed.maxImagePixels, changed.exifOrientation], [1000, 'apply']);
  const fp = fingerprint(changed, recipe, [20]).pretrain as Record<string, unknown>;
  assert.deepEqual([fp.maxImagePixels, fp.exifOrientation], [1000, 'apply']);
  // a --data-path is where it points: the relative and the absolute spelling are one recipe
  const relative = fingerprint(at({ dataset: 'folder', dataPath: 'imgs' }), recipe, [20]);
  assert.deepEqual(fingerprint(at({ dataset: 'folder', dataPath: join(process.cwd(), 'imgs') }), recipe, [20]), relative);
  assert.notDeepEqual(fingerprint(at({ dataset: 'folder', dataPath: '/elsewhere/imgs' }), recipe, [20]), relative);
});

test('--dataset shards: brace patterns and {split} (as `semaim shards` prints and DATA-SHARDING.md shows) pass the data-path check; a missing shard is named', () =>
  withTemp(async (root) => {
    for (const split of ['train', 'test']) for (const i of [0, 1, 2]) write(join(root, 'sh', split, `shard-00000${i}.tar`), '');
    assert.doesNotThrow(() => checkDataPath({ dataset: 'shards', dataPath: join(root, 'sh', 'train', 'shard-{000000..000002}.tar') }));
    assert.doesNotThrow(() => checkDataPath({ dataset: 'shards', dataPath: join(root, 'sh', '{split}') }, ['train', 'test']));
    assert.throws(
      () => checkDataPath({ dataset: 'shards', dataPath: join(root, 'sh', 'train', 'shard-{000000..000003}.tar') }),
      (e: Error) => e instanceof OptionError && e.key === 'dataPath' && /shard-000003\.tar/.test(e.message),
    );
    // an evaluation command gets past the data check to the checkpoint
    const out = join(root, 'run');
    await assert.rejects(
      commands.knn.run(['--checkpoint', join(root, 'missing-run'), '--dataset', 'shards', '--data-path', join(root, 'sh', '{split}'), '--out-dir', out]),
      (e: Error) => !(e instanceof OptionError && e.key === 'dataPath') && /missing-run/.test(e.message),
    );
    await assert.rejects(
      commands.knn.run(['--checkpoint', join(root, 'missing-run'), '--dataset', 'shards', '--data-path', join(root, 'sh', 'train'), '--out-dir', out]),
      (e: Error) => e instanceof OptionError && e.key === 'dataPath',
      'a folder of training shards has no test split',
    );
  }));

test('an image folder without test/ is training data only: evaluation refuses it rather than test on the training images', () =>
  withTemp(async (root) => {
    for (const c of ['a', 'b']) write(join(root, 'imgs', c, '0.png'), await encode(picture(8, 8), 8, 8, 3, 'png'));
    const open = (split: 'train' | 'test') => openDataset('folder', { split, dataPath: join(root, 'imgs'), imgSize: 8 });
    assert.equal(open('train').length, 2);
    assert.throws(() => open('test'), /has no test\/ \(or val\/\) folder: evaluation reads .*train and .*test/);
    // ImageNet's layout: train/ and val/
    for (const [split, c] of [
      ['train', 'a'],
      ['train', 'b'],
      ['val', 'a'],
    ])
      write(join(root, 'in', split, c, '0.png'), await encode(picture(8, 8), 8, 8, 3, 'png'));
    const imagenet = (split: 'train' | 'test') => openDataset('folder', { split, dataPath: join(root, 'in'), imgSize: 8 });
    assert.deepEqual([imagenet('train').length, imagenet('test').length], [2, 1]);
    // CIFAR-10 from a folder reads its splits as --dataset folder does
    const cifar = (split: 'train' | 'test') => openDataset('cifar10', { split, dataPath: join(root, 'in'), imgSize: 8 });
    assert.deepEqual([cifar('train').length, cifar('test').length], [2, 1]);
  }));

test('CIFAR-10 with no archive where it is looked for: the error names --data-path, the option a command line gives it with', () =>
  withTemp(async (root) => {
    const before = process.env.SEMAIM_CIFAR10_TAR;
    process.env.SEMAIM_CIFAR10_TAR = join(root, 'missing.tar.gz');
    try {
      assert.throws(
        () => openDataset('cifar10', { split: 'train', imgSize: 8 }),
        (e: Error & { code?: string }) =>
          e.code === 'ERR_DATA' && /dataset 'cifar10': no archive at .*missing\.tar\.gz: give --data-path .* or set SEMAIM_CIFAR10_TAR/.test(e.message),
      );
    } finally {
      if (before === undefined) delete process.env.SEMAIM_CIFAR10_TAR;
      else process.env.SEMAIM_CIFAR10_TAR = before;
    }
  }));

test("Kaggle's ImageNet layout (train/ and val/ with class folders, test/ of unlabelled images): evaluation reads val/", () =>
  withTemp(async (root) => {
    const png = await encode(picture(8, 8), 8, 8, 3, 'png');
    for (const split of ['train', 'val']) for (const c of ['a', 'b']) write(join(root, 'kaggle', split, c, '0.png'), png);
    write(join(root, 'kaggle', 'test', 'x1.png'), png);
    write(join(root, 'kaggle', 'test', 'x2.png'), png);
    const test = openDataset('folder', { split: 'test', dataPath: join(root, 'kaggle'), imgSize: 8 });
    assert.equal(test.root, join(root, 'kaggle', 'val'));
    assert.deepEqual(test.classes, ['a', 'b']);
    // with no labelled val/, the unlabelled test/ is named as such
    rmSync(join(root, 'kaggle', 'val'), { recursive: true });
    assert.throws(
      () => openDataset('folder', { split: 'test', dataPath: join(root, 'kaggle'), imgSize: 8 }),
      /kaggle\/test holds no class folders \(unlabelled images\)/,
    );
  }));

test('a class-folder dataset with a class named train, test or val (vehicles: bus/, car/, train/) is read as classes, not as a split', () =>
  withTemp(async (root) => {
    const png = await encode(picture(8, 8), 8, 8, 3, 'png');
    for (const c of ['bus', 'car', 'train', 'val']) for (const i of [0, 1]) write(join(root, 'veh', c, `${i}.png`), png);
    const train = openDataset('folder', { split: 'train', dataPath: join(root, 'veh'), imgSize: 8 });
    // torchvision's ImageFolder(root): the same classes and indices
    assert.equal(train.root, join(root, 'veh'));
    assert.deepEqual(train.classes, ['bus', 'car', 'train', 'val']);
    assert.equal(train.length, 8);
    // a layout of split folders only is still a split layout: a train/ of images alone is refused, not read as one class
    for (const s of ['train', 'test']) write(join(root, 'flat', s, '0.png'), png);
    assert.throws(() => openDataset('folder', { split: 'train', dataPath: join(root, 'flat'), imgSize: 8 }), /flat\/train has no class sub-folders/);
  }));

test('bare arguments are refused by commands that take none (a pasted "[--dtype float16]" was ignored), exit code 2', async () => {
  const cases: string[][] = [
    ['export', '--checkpoint', 'x', '--out', 'y', '[--dtype', 'float16]'],
    // (an on/off flag takes a following true/false as its value, --no-verify false as --verify; any other word is bare)
    ['knn', '--checkpoint', 'x', '--no-verify', 'later'],
  ];
  for (const [name, ...argv] of cases) {
    await assert.rejects(commands[name].run(argv), (e: Error & { exitCode?: number }) => {
      assert.equal(e.exitCode, 2);
      assert.match(e.message, /unexpected argument '(\[--dtype|later)': this command takes only options/);
      return true;
    });
  }
  assert.deepEqual(commands.visualize.parse(['--checkpoint', 'x', '--images', 'a.png', 'b.png', '--out', 'o'])?.positionals, ['b.png']);
  assert.deepEqual(commands.report.parse(['runs/x'])?.positionals, ['runs/x']);
});

test('options that would have no effect are refused, saying why (they were ignored silently)', async () => {
  const { segprobeCommand } = await import('../../src/cli/segprobe-command');
  const cases: Array<[() => unknown, string, RegExp]> = [
    [() => commands.pretrain.parse(['--dataset', 'synthetic', '--data-path', '/tmp']), 'dataPath', /has no effect with --dataset synthetic/],
    [() => commands.pretrain.parse(['--teacher', '/tmp/t.safetensors']), 'teacher', /has no effect with --target pixels/],
    [() => commands.ablate.parse(['--seg-dataset', 'seg-folder']), 'segDataset', /has no effect without --eval segprobe/],
    [() => commands.ablate.parse(['--segprobe-epochs', '2']), 'segprobeEpochs', /has no effect without --eval segprobe/],
    [() => commands.pretrain.parse(['--order', 'raster', '--centers', '7']), 'centers', /has no effect with --order raster: it is the multicenter order's/],
    [() => commands.pretrain.parse(['--order', 'raster', '--order-lambda', '0.5']), 'orderLambda', /has no effect with --order raster/],
    [() => commands.pretrain.parse(['--order', 'similarity', '--order-variant', 'authors']), 'orderVariant', /has no effect with --order similarity/],
    [() => commands.pretrain.parse(['--order', 'raster', '--similarity-tokens', 'gap']), 'similarityTokens', /has no effect with --order raster/],
    [
      () => commands.pretrain.parse(['--order', 'stochastic', '--similarity-source', 'ema', '--ema']),
      'similaritySource',
      /has no effect with --order stochastic/,
    ],
    [() => commands.pretrain.parse(['--order', 'stochastic', '--order-precision', 'fp32']), 'orderPrecision', /has no effect with --order stochastic/],
    [() => commands.pretrain.parse(['--order', 'raster', '--order-precision', 'fp32']), 'orderPrecision', /has no effect with --order raster/],
    [
      () => commands.pretrain.parse(['--dataset', 'folder', '--data-path', '/tmp', '--synthetic-size', '77']),
      'syntheticSize',
      /has no effect with --dataset folder/,
    ],
    [() => commands.pretrain.parse(['--shuffle-buffer', '10']), 'shuffleBuffer', /has no effect with --dataset synthetic: it is the tar shards'/],
    [() => commands.pretrain.parse(['--no-blur', '--blur-kernel', '33']), 'blurKernel', /has no effect with --no-blur/],
    [() => commands.pretrain.parse(['--ema-decay', '0.5']), 'emaDecay', /has no effect without --ema/],
    [() => commands.pretrain.parse(['--ema-schedule', 'authors']), 'emaSchedule', /has no effect without --ema/],
    [() => commands.pretrain.parse(['--img-size', '32', '--blur-kernel', '65']), 'blurKernel', /must be at most 2 × --img-size − 1 = 63/],
    [() => commands.ablate.parse(['--seg-classes', 'object']), 'segClasses', /has no effect without --eval segprobe/],
    [() => commands.ablate.parse(['--reduce-zero-label']), 'reduceZeroLabel', /has no effect without --eval segprobe/],
    [
      () => commands.ablate.parse(['--eval', 'segprobe', '--seg-dataset', 'synthetic', '--reduce-zero-label']),
      'reduceZeroLabel',
      /has no effect with dataset 'synthetic'/,
    ],
    [
      () => commands.ablate.parse(['--eval', 'segprobe', '--seg-dataset', 'synthetic', '--num-classes', '3']),
      'numClasses',
      /has no effect with dataset 'synthetic'/,
    ],
    [
      () => commands.ablate.parse(['--eval', 'segprobe', '--seg-dataset', 'seg-folder', '--seg-data-path', '/tmp', '--seg-classes', 'object']),
      'segClasses',
      /has no effect with dataset 'seg-folder'/,
    ],
  ];
  for (const [parse, key, message] of cases) assert.throws(parse, (e: unknown) => e instanceof OptionError && e.key === key && message.test(e.message), key);
  // where they do apply, or given as they would be anyway, they pass
  for (const args of [
    ['--order', 'raster', '--similarity-source', 'online', '--order-variant', 'paper'],
    ['--order', 'multicenter', '--centers', '7', '--order-lambda', '0.5', '--similarity-tokens', 'gap'],
    ['--order', 'similarity', '--similarity-tokens', 'self'],
    ['--order', 'semantic', '--order-precision', 'fp32'],
    ['--order', 'raster', '--order-precision', 'same'],
    ['--synthetic-size', '77', '--shuffle-buffer', '1000'],
    ['--dataset', 'folder', '--data-path', '/tmp', '--synthetic-size', '5000'],
    ['--ema', '--ema-decay', '0.5', '--ema-schedule', 'constant'],
    ['--ema-schedule', 'constant', '--no-blur', '--blur-kernel', '9'],
  ])
    assert.ok(commands.pretrain.parse(args), args.join(' '));
  await assert.rejects(
    segprobeCommand.run(['--checkpoint', '/nonexistent.safetensors', '--dataset', 'synthetic', '--num-classes', '5']),
    (e: unknown) => e instanceof OptionError && e.key === 'numClasses' && /has no effect with dataset 'synthetic'/.test(e.message),
  );
  await assert.rejects(
    segprobeCommand.run(['--checkpoint', '/nonexistent.safetensors', '--dataset', 'synthetic', '--reduce-zero-label']),
    (e: unknown) => e instanceof OptionError && e.key === 'reduceZeroLabel' && /has no effect with dataset 'synthetic'/.test(e.message),
  );
  await assert.rejects(
    segprobeCommand.run(['--checkpoint', '/nonexistent.safetensors', '--dataset', 'seg-folder', '--data-path', '/tmp', '--seg-classes', 'object']),
    (e: unknown) => e instanceof OptionError && e.key === 'segClasses' && /has no effect with dataset 'seg-folder'/.test(e.message),
  );
});

test('figure options of a report without --images, export --no-attention but for onnx, and shards --seed without --shuffle are refused (they were ignored)', () => {
  const cases: Array<[string, string[], string, RegExp]> = [
    ['report', ['run', '--checkpoint', 'run/checkpoints/step-00000004'], 'checkpoint', /has no effect without --images: the report draws no figures/],
    ['report', ['run', '--viz-out', 'figures'], 'vizOut', /has no effect without --images/],
    ['report', ['run', '--orders', 'raster'], 'orders', /has no effect without --images/],
    ['report', ['run', '--max-images', '4'], 'maxImages', /has no effect without --images/],
    ['report', ['run', '--device', 'cuda'], 'device', /has no effect without --images/],
    ['export', ['--checkpoint', 'run', '--out', 'enc', '--no-attention'], 'attention', /--no-attention is for --format onnx/],
    ['export', ['--checkpoint', 'run', '--out', 'page', '--format', 'web', '--no-attention'], 'attention', /--no-attention is for --format onnx/],
    ['shards', ['--input', 'train', '--output', 'shards', '--seed', '5'], 'seed', /has no effect without --shuffle/],
  ];
  for (const [name, argv, key, message] of cases)
    assert.throws(
      () => commands[name].parse(argv),
      (e: unknown) => e instanceof OptionError && e.key === key && message.test(e.message),
      `${name} ${argv.join(' ')}`,
    );
  // named as typed: --no-attention, not --attention
  assert.throws(
    () => commands.export.parse(['--checkpoint', 'run', '--out', 'enc', '--no-attention']),
    (e: unknown) => e instanceof OptionError && e.flagMessage.startsWith('option --no-attention: --no-attention is for --format onnx'),
  );
  // where they apply, or at their defaults, they pass
  for (const [name, argv] of [
    ['report', ['run', '--images', 'a.png', '--checkpoint', 'c', '--viz-out', 'figures', '--orders', 'raster', '--max-images', '4']],
    ['report', ['run', '--max-images', '16', '--title', 'T', '--out', 'r.html']],
    ['export', ['--checkpoint', 'run', '--out', 'onnx', '--format', 'onnx', '--no-attention']],
    ['shards', ['--input', 'train', '--output', 'shards', '--seed', '5', '--shuffle']],
    ['shards', ['--input', 'train', '--output', 'shards', '--seed', '0']],
  ] as const)
    assert.ok(commands[name].parse([...argv]), `${name} ${argv.join(' ')}`);
});

test("export has no --encoder-only: its only other value (--no-encoder-only) always failed, and the whole model is the run's checkpoint folder", () => {
  assert.ok(!('encoderOnly' in commands.export.options));
  const help = spawnSync(process.execPath, [join(__dirname, '..', '..', 'src', 'cli', 'main.js'), 'export', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /--format <safetensors\|onnx\|web>/);
  assert.doesNotMatch(help.stdout, /encoder-only/);
  for (const flag of ['--encoder-only', '--no-encoder-only'])
    assert.throws(
      () => commands.export.parse(['--checkpoint', 'r', '--out', 'o', flag]),
      (e: unknown) => e instanceof OptionError && e.flagMessage.startsWith(`option ${flag}: unknown option`),
      flag,
    );
});

test('--threads × --nproc-per-node above the cores is refused before the workers start', async (t) => {
  const cores = availableParallelism();
  if (cores < 2) return t.skip('one core: every --threads is the share');
  const out = join(mkdtempSync(join(tmpdir(), 'semaim-threads-')), 'run');
  try {
    await assert.rejects(
      commands.pretrain.run(['--dataset', 'synthetic', '--nproc-per-node', '2', '--threads', String(cores), '--out-dir', out]),
      (e: Error) =>
        e instanceof OptionError &&
        e.key === 'threads' &&
        new RegExp(`is ${2 * cores} on ${cores} cores: give at most ${Math.floor(cores / 2)}`).test(e.message),
    );
    assert.equal(existsSync(out), false, 'nothing written');
    // with the other options, as ablate's --jobs is: it was checked only as the launcher started the workers (after the
    // preflight, and outside what a launcher of one of several machines tells the others), so parse took it
    const workers = ['--nproc-per-node', '2', '--threads', String(cores)];
    for (const [name, argv] of [
      ['pretrain', workers],
      ['knn', ['--checkpoint', 'c', ...workers]],
      ['embed', ['--checkpoint', 'c', '--images', 'i', ...workers]],
    ] as const)
      assert.throws(
        () => commands[name].parse([...argv]),
        (e: Error) => e instanceof OptionError && e.key === 'threads' && /give at most/.test(e.message),
        name,
      );
  } finally {
    rmSync(join(out, '..'), { recursive: true, force: true });
  }
});

test("a torchrun worker's --threads × LOCAL_WORLD_SIZE above the cores is refused as --nproc-per-node's is (torchrun passes no --nproc-per-node)", (t) => {
  const cores = availableParallelism();
  if (cores < 2) return t.skip('one core: every --threads is the share');
  const worker = { RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500' };
  const saved = Object.fromEntries(Object.keys(worker).map((k) => [k, process.env[k]]));
  Object.assign(process.env, worker);
  try {
    for (const [name, argv] of [
      ['pretrain', []],
      ['knn', ['--checkpoint', 'c']],
    ] as const)
      assert.throws(
        () => commands[name].parse([...argv, '--threads', String(cores)]),
        (e: Error) =>
          e instanceof OptionError &&
          e.key === 'threads' &&
          new RegExp(`${cores} threads in each of this machine's 2 processes is ${2 * cores} on ${cores} cores: give at most ${Math.floor(cores / 2)}`).test(
            e.message,
          ),
        name,
      );
    assert.ok(commands.pretrain.parse(['--threads', String(Math.floor(cores / 2))]), 'its share is taken');
    delete process.env.LOCAL_WORLD_SIZE; // started by hand: perhaps alone on its machine
    assert.ok(commands.pretrain.parse(['--threads', String(cores)]), 'no LOCAL_WORLD_SIZE: not refused');
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test('ablate: --threads × --jobs above the cores is refused as --nproc-per-node is (each shard process took --threads threads)', (t) => {
  const cores = availableParallelism();
  if (cores < 2) return t.skip('one core: every --threads is the share');
  assert.throws(
    () => commands.ablate.parse(['--jobs', '2', '--threads', String(cores)]),
    (e: Error) =>
      e instanceof OptionError &&
      e.key === 'threads' &&
      new RegExp(`${cores} threads in each of --jobs 2 processes is ${2 * cores} on ${cores} cores: give at most ${Math.floor(cores / 2)}`).test(e.message),
  );
  assert.ok(commands.ablate.parse(['--jobs', '2', '--threads', String(Math.floor(cores / 2))]));
  assert.ok(commands.ablate.parse(['--jobs', '1', '--threads', String(cores)]));
  // more processes than cores: each still may take one thread (the share is at least 1)
  assert.ok(commands.ablate.parse(['--jobs', String(2 * cores), '--threads', '1']));
});

test('pretrain on a set smaller than one batch is an option error naming --batch-size, before any folder exists', () =>
  withTemp(async (root) => {
    for (let i = 0; i < 3; i++) write(join(root, 'data', 'c', `${i}.png`), await encode(picture(20, 20, i), 20, 20, 3, 'png'));
    const out = join(root, 'run');
    const args = ['--dataset', 'folder', '--data-path', join(root, 'data'), '--img-size', '16', '--patch-size', '8', '--model', 'vit_tiny'];
    await assert.rejects(
      commands.pretrain.run([...args, '--batch-size', '4', '--out-dir', out]),
      (e: unknown) =>
        e instanceof OptionError &&
        e.key === 'batchSize' &&
        /the training set \(3 images in .*data\) gives no full batch of 4 × 1 images \(--batch-size × processes\)/.test(e.message) &&
        e.flagMessage.startsWith('option --batch-size: the training set'),
    );
    assert.ok(!existsSync(out), 'nothing written');
  }));

test('a --data-path the synthetic data never reads is refused: segprobe (whose default dataset is synthetic) and ablate --eval segprobe', () => {
  const cases: Array<[string, string[], string]> = [
    ['segprobe', ['--checkpoint', 'enc.safetensors', '--data-path', '/tmp'], 'dataPath'],
    ['segprobe', ['--checkpoint', 'enc.safetensors', '--dataset', 'synthetic', '--data-path', '/tmp'], 'dataPath'],
    ['ablate', ['--dataset', 'synthetic', '--eval', 'segprobe', '--seg-data-path', '/tmp'], 'segDataPath'],
    ['ablate', ['--dataset', 'synthetic', '--eval', 'segprobe', '--seg-dataset', 'synthetic', '--seg-data-path', '/tmp'], 'segDataPath'],
  ];
  for (const [name, argv, key] of cases)
    assert.throws(
      () => commands[name].parse(argv),
      (e: unknown) => e instanceof OptionError && e.key === key && /has no effect with dataset 'synthetic'/.test(e.message),
      `${name} ${argv.join(' ')}`,
    );
  // with seg-folder it is the data
  assert.ok(commands.segprobe.parse(['--checkpoint', 'enc.safetensors', '--dataset', 'seg-folder', '--data-path', '/tmp']));
  assert.ok(commands.ablate.parse(['--dataset', 'synthetic', '--eval', 'segprobe', '--seg-dataset', 'seg-folder', '--seg-data-path', '/tmp']));
});

test('a --data-path that --dataset synthetic never reads is refused by the evaluations, embed and predict, as pretrain refuses it', () => {
  const cases: Array<[string, string[]]> = [
    ['knn', ['--checkpoint', 'enc.safetensors', '--dataset', 'synthetic', '--data-path', '/tmp']],
    ['linprobe', ['--checkpoint', 'enc.safetensors', '--dataset', 'synthetic', '--data-path', '/tmp']],
    ['finetune', ['--checkpoint', 'enc.safetensors', '--dataset', 'synthetic', '--data-path', '/tmp']],
    ['ablate', ['--dataset', 'synthetic', '--data-path', '/tmp']],
    ['embed', ['--checkpoint', 'enc.safetensors', '--dataset', 'synthetic', '--data-path', '/tmp']],
    ['predict', ['--checkpoint', 'run', '--dataset', 'synthetic', '--data-path', '/tmp']],
  ];
  for (const [name, argv] of cases)
    assert.throws(
      () => commands[name].parse(argv),
      (e: unknown) => e instanceof OptionError && e.key === 'dataPath' && /has no effect with --dataset synthetic/.test(e.message),
      `${name} ${argv.join(' ')}`,
    );
  assert.ok(commands.knn.parse(['--checkpoint', 'enc.safetensors', '--dataset', 'folder', '--data-path', '/tmp']));
  assert.ok(commands.embed.parse(['--checkpoint', 'enc.safetensors', '--dataset', 'folder', '--data-path', '/tmp']));
});

test('finetune --ema-decay without --ema is refused (it was ignored silently), as pretrain refuses it', () => {
  assert.throws(
    () => commands.finetune.parse(['--checkpoint', 'enc.safetensors', '--ema-decay', '0.5']),
    (e: unknown) => e instanceof OptionError && e.key === 'emaDecay' && /has no effect without --ema/.test(e.message),
  );
  // with --ema, or at its default, it passes
  assert.ok(commands.finetune.parse(['--checkpoint', 'enc.safetensors', '--ema', '--ema-decay', '0.5']));
  assert.ok(commands.finetune.parse(['--checkpoint', 'enc.safetensors', '--ema-decay', '0.9999']));
});

test('finetune --mixup-prob without mixing and --mixup-switch-prob without both kinds are refused (they were ignored silently)', () => {
  const enc = ['--checkpoint', 'enc.safetensors'];
  for (const [argv, key, message] of [
    [['--mixup', '0', '--cutmix', '0', '--mixup-prob', '0.5'], 'mixupProb', /has no effect with --mixup 0 and --cutmix 0/],
    [['--mixup', '0', '--mixup-switch-prob', '0.2'], 'mixupSwitchProb', /has no effect unless both --mixup and --cutmix are above 0/],
    [['--cutmix', '0', '--mixup-switch-prob', '0.2'], 'mixupSwitchProb', /has no effect unless both --mixup and --cutmix are above 0/],
  ] as const)
    assert.throws(
      () => commands.finetune.parse([...enc, ...argv]),
      (e: unknown) => e instanceof OptionError && e.key === key && message.test(e.message),
      argv.join(' '),
    );
  // where they apply, or at their defaults, they pass
  for (const argv of [
    ['--mixup-prob', '0.5', '--mixup-switch-prob', '0.2'],
    ['--mixup', '0', '--mixup-prob', '0.5'],
    ['--mixup', '0', '--cutmix', '0', '--mixup-prob', '1', '--mixup-switch-prob', '0.5'],
  ])
    assert.ok(commands.finetune.parse([...enc, ...argv]), argv.join(' '));
});

test("segprobe --momentum with --optimizer adamw (the default) is refused (it was ignored silently: AdamW's betas are fixed)", () => {
  for (const argv of [
    ['--checkpoint', 'enc.safetensors', '--momentum', '0.5'],
    ['--checkpoint', 'enc.safetensors', '--optimizer', 'adamw', '--momentum', '0'],
  ])
    assert.throws(
      () => commands.segprobe.parse(argv),
      (e: unknown) => e instanceof OptionError && e.key === 'momentum' && /has no effect with --optimizer adamw/.test(e.message),
      argv.join(' '),
    );
  // with SGD, or at its default, it passes
  assert.ok(commands.segprobe.parse(['--checkpoint', 'enc.safetensors', '--optimizer', 'sgd', '--momentum', '0.5']));
  assert.ok(commands.segprobe.parse(['--checkpoint', 'enc.safetensors', '--momentum', '0.9']));
});

test('--train-limit/--test-limit on streamed shards is an option error (it was ERR_DATA, exit 1), naming the flag; without it the data opens', () =>
  withTemp(async (root) => {
    for (const split of ['train', 'test'])
      for (let i = 0; i < 4; i++) write(join(root, 'imgs', split, `c${i % 2}`, `${i}.png`), await encode(picture(12, 10, i), 12, 10, 3, 'png'));
    for (const split of ['train', 'test']) await packImageFolder({ input: join(root, 'imgs', split), output: join(root, 'sh', split), onWarning: () => {} });
    const req = { dataset: 'shards', dataPath: join(root, 'sh', '{split}'), imgSize: 8, seed: 0, numWorkers: 0 };
    for (const [split, key] of [
      ['train', 'trainLimit'],
      ['test', 'testLimit'],
    ] as const) {
      await assert.rejects(
        async () => makeEvalData({ ...req, split, limit: 2 }),
        (e: Error & { code?: string }) => e instanceof OptionError && e.key === key && e.code === 'ERR_OPTION' && /streamed shards/.test(e.message),
      );
      const data = makeEvalData({ ...req, split }); // as the advice says: left out
      assert.equal(data.size, 4);
      await data.close();
    }
  }));
