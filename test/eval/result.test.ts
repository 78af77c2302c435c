import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveOptions, OptionError, parseArgv } from '../../src/util/options';
import { KNN_OPTIONS, LINPROBE_OPTIONS, validateEval } from '../../src/eval/options';
import { ABLATE_OPTIONS, validateAblate } from '../../src/experiments/ablate-options';
import { runKnn, runLinprobe } from '../../src/eval/run';
import { resolveEncoder } from '../../src/semaim';
import { EvalDataRequest } from '../../src/data';
import { quotedPath } from '../../src/util/printable';
import { DataError } from '../../src/util/errors';
import { memoryFactories, runPrunedWhileDataIsMade, toyImages, writeEncoder } from './helpers';

test('knn and linprobe write a result JSON with accuracies, config, checkpoint path and SHA-256', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-result-'));
  const enc = writeEncoder(dir);
  const sha = createHash('sha256').update(readFileSync(enc)).digest('hex');
  const train = toyImages(60, 3, 8, 1);
  const testData = toyImages(30, 3, 8, 2);
  const requests: EvalDataRequest[] = [];
  const f = memoryFactories(train, testData, requests);
  const o = resolveOptions(KNN_OPTIONS, { checkpoint: enc, outDir: join(dir, 'knn'), k: '5,20', pooling: 'mean', threads: 1, testLimit: 21 });
  const r = await runKnn(o, f);
  assert.equal(r.path, join(dir, 'knn', 'knn.json'));
  const json = JSON.parse(readFileSync(r.path, 'utf8'));
  assert.equal(json.format, 'semaim.eval/1');
  assert.equal(json.command, 'knn');
  assert.equal(json.checkpoint.sha256, sha);
  assert.equal(json.checkpoint.path, enc);
  assert.equal(json.checkpoint.kind, 'exported');
  assert.equal(json.rows[0].name, 'k-NN k=20', 'k = 20 is the headline');
  assert.equal(json.top1, json.rows[0].accuracy.top1);
  assert.equal(json.details.perK.length, 2);
  assert.equal(json.perClass.length, 3);
  assert.deepEqual(json.classNames, ['class0', 'class1', 'class2']);
  assert.deepEqual(json.data, { train: 60, test: 21, numClasses: 3 });
  assert.equal(json.config.k, '5,20');
  assert.equal(json.config.temperature, 0.07);
  assert.equal(json.encoder.embedDim, 16);
  assert.deepEqual(
    requests.map((q) => [q.split, q.imgSize, q.limit]),
    [
      ['train', 8, undefined],
      ['test', 8, 21],
    ],
  );
  assert.ok(json.top1 > 0.6, `k-NN top-1 on the toy task ${json.top1}`);
  assert.match(r.table, /\| k-NN k=20 \| +[\d.]+ \| +[\d.]+ \| 21 \|/);
  assert.match(r.table, /\| class \| class0 \| class1 \| class2 \|/);

  const lo = resolveOptions(LINPROBE_OPTIONS, { checkpoint: enc, outDir: join(dir, 'lp'), epochs: 5, batchSize: 16, blr: 0.5, pooling: 'mean', threads: 1 });
  const lr = await runLinprobe(lo, f);
  const lj = JSON.parse(readFileSync(lr.path, 'utf8'));
  assert.equal(lj.command, 'linprobe');
  assert.equal(lj.checkpoint.sha256, sha);
  assert.equal(lj.details.history.length, 5);
  assert.equal(lj.details.lr, (0.5 * 16) / 256);
  assert.ok(existsSync(join(dir, 'lp', 'probe.safetensors')));

  // the same probe again, 3 epochs, on a disk that fills at probe.safetensors: the earlier linprobe.json
  // and probe stay a pair (the new linprobe.json was written first, beside the old probe)
  const sha256 = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
  const pair = () => [sha256(lr.path), sha256(join(dir, 'lp', 'probe.safetensors'))];
  const before = pair();
  const fs = require('node:fs') as typeof import('node:fs');
  const openSync = fs.openSync;
  fs.openSync = ((...args: Parameters<typeof openSync>) => {
    if (/probe\.safetensors\.tmp-/.test(String(args[0])))
      throw Object.assign(new Error(`ENOSPC: no space left on device, open '${args[0]}'`), { code: 'ENOSPC' });
    return openSync(...args);
  }) as typeof fs.openSync;
  try {
    await assert.rejects(runLinprobe({ ...lo, epochs: 3 }, f), /cannot write .*probe\.safetensors: ENOSPC/);
  } finally {
    fs.openSync = openSync;
  }
  assert.deepEqual(pair(), before, 'linprobe.json and probe.safetensors as the first run wrote them');
  rmSync(dir, { recursive: true, force: true });
});

test("knn's and linprobe's result seconds are measured by the monotonic clock: a wall clock stepped back an hour (NTP) once the data opens does not make them negative", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-result-clock-'));
  const realNow = Date.now;
  try {
    const enc = writeEncoder(dir);
    const f = memoryFactories(toyImages(20, 2, 8, 1), toyImages(10, 2, 8, 2));
    const makeEvalData = f.makeEvalData;
    f.makeEvalData = (q, slice) => {
      const back = realNow() - 3_600_000;
      Date.now = () => back;
      return makeEvalData(q, slice);
    };
    const r = await runKnn(resolveOptions(KNN_OPTIONS, { checkpoint: enc, outDir: join(dir, 'knn'), k: '5', pooling: 'mean', threads: 1 }), f);
    Date.now = realNow;
    const lr = await runLinprobe(
      resolveOptions(LINPROBE_OPTIONS, { checkpoint: enc, outDir: join(dir, 'lp'), epochs: 1, batchSize: 8, pooling: 'mean', threads: 1 }),
      f,
    );
    Date.now = realNow;
    for (const { path } of [r, lr]) {
      const { seconds } = JSON.parse(readFileSync(path, 'utf8')) as { seconds: number };
      assert.ok(seconds >= 0 && seconds < 600, `${path}: seconds ${seconds}`);
    }
  } finally {
    Date.now = realNow;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad evaluation options are refused before any work, naming the key', async (t) => {
  assert.throws(
    () => resolveOptions(KNN_OPTIONS, {}),
    (e: unknown) => e instanceof OptionError && e.key === 'checkpoint',
  );
  assert.throws(
    () => validateEval(resolveOptions(KNN_OPTIONS, { checkpoint: 'x', k: '10,abc' })),
    (e: unknown) => e instanceof OptionError && e.key === 'k',
  );
  assert.throws(
    () => validateEval(resolveOptions(KNN_OPTIONS, { checkpoint: 'x', device: 'gpu' })),
    (e: unknown) => e instanceof OptionError && e.key === 'device',
  );
  assert.throws(() => validateAblate(resolveOptions(ABLATE_OPTIONS, { orders: 'raster,spiral' })), /unknown order 'spiral'/);
  assert.throws(() => validateEval(resolveOptions(LINPROBE_OPTIONS, { checkpoint: 'x', epochs: 5, warmupEpochs: 5 })), /warmupEpochs/);
  assert.throws(() => resolveOptions(LINPROBE_OPTIONS, { checkpoint: 'x', optimizer: 'adam' }), /must be one of sgd, lars/);
  assert.throws(() => parseArgv(['--chunk-sise', '3'], KNN_OPTIONS), /option 'chunkSise': unknown option/);
  assert.throws(() => resolveEncoder('/nonexistent/run'), /does not exist/);
  // The command validates and resolves the encoder before it asks for any data. (src/cli/commands.ts
  // needs the data pipeline's src/train/data: skip this part until it exists.)
  let mod: typeof import('../../src/cli/eval-commands');
  try {
    mod = require('../../src/cli/eval-commands');
  } catch (e) {
    t.diagnostic(`CLI part skipped: ${(e as Error).message.split('\n')[0]}`);
    return;
  }
  const { makeEvalCommands } = mod;
  let asked = false;
  const cmds = makeEvalCommands(() => {
    asked = true;
    throw new Error('no data');
  });
  await assert.rejects(cmds.knn.run(['--checkpoint', '/nonexistent/run']), /does not exist/);
  await assert.rejects(cmds.linprobe.run(['--checkpoint', 'x', '--k', '3']), /option 'k': unknown option/);
  assert.equal(asked, false);
});

test('knn refuses a k above the training set before it extracts any feature', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-result-k-'));
  const enc = writeEncoder(dir);
  const f = memoryFactories(toyImages(12, 3, 8, 1), toyImages(6, 3, 8, 2));
  const read: string[] = [];
  const watched = {
    ...f,
    async makeEvalData(r: EvalDataRequest) {
      const d = await f.makeEvalData(r);
      const batches = d.batches.bind(d);
      d.batches = (o) => {
        read.push(r.split);
        return batches(o);
      };
      return d;
    },
  };
  const o = resolveOptions(KNN_OPTIONS, { checkpoint: enc, outDir: join(dir, 'knn'), k: '5,20', threads: 1 });
  await assert.rejects(
    runKnn(o, watched),
    (e: unknown) => e instanceof OptionError && e.key === 'k' && /k = 20 exceeds the 12 training images/.test(e.message),
  );
  assert.deepEqual(read, [], 'no image was read');
  assert.ok(!existsSync(join(dir, 'knn', 'knn.json')));
  rmSync(dir, { recursive: true, force: true });
});

test('linprobe refuses a training split of one image before it extracts any feature (the probe needs 2)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-result-one-'));
  try {
    const enc = writeEncoder(dir);
    const f = memoryFactories(toyImages(1, 2, 8, 1), toyImages(6, 2, 8, 2));
    const read: string[] = [];
    const watched = {
      ...f,
      async makeEvalData(r: EvalDataRequest) {
        const d = await f.makeEvalData(r);
        const batches = d.batches.bind(d);
        d.batches = (o) => {
          read.push(r.split);
          return batches(o);
        };
        return d;
      },
    };
    const o = resolveOptions(LINPROBE_OPTIONS, { checkpoint: enc, outDir: join(dir, 'lp'), epochs: 1, threads: 1 });
    await assert.rejects(
      runLinprobe(o, watched),
      (e: unknown) => e instanceof DataError && /train split has 1 image: the probe trains on at least 2/.test((e as Error).message),
    );
    assert.deepEqual(read, [], 'no image was read');
    // --train-limit 1 asks for such a split: refused with the options, before the encoder or the data is opened
    const limited = resolveOptions(LINPROBE_OPTIONS, { checkpoint: enc, outDir: join(dir, 'lp'), trainLimit: 1, threads: 1 });
    await assert.rejects(
      runLinprobe(limited, memoryFactories(toyImages(8, 2, 8, 1), toyImages(6, 2, 8, 2))),
      (e: unknown) => e instanceof OptionError && e.key === 'trainLimit',
    );
    assert.ok(!existsSync(join(dir, 'lp', 'linprobe.json')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('train and test splits must name their classes alike: a renamed class folder is refused, not scored', async () => {
  const { DATA_FACTORIES } = await import('../../src/data');
  const { encode, picture, write } = await import('../data/helpers');
  const dir = mkdtempSync(join(tmpdir(), 'semaim-classes-'));
  try {
    const enc = writeEncoder(dir);
    const root = join(dir, 'pets');
    for (const [split, names] of [
      ['train', ['cat', 'dog']],
      ['test', ['cat', 'zebra']],
    ] as const) {
      for (const name of names) for (let i = 0; i < 3; i++) write(join(root, split, name, `${i}.png`), await encode(picture(8, 8, i), 8, 8, 3, 'png'));
    }
    const o = resolveOptions(KNN_OPTIONS, { checkpoint: enc, dataset: 'folder', dataPath: root, k: '1', numWorkers: 0, threads: 1, outDir: join(dir, 'knn') });
    await assert.rejects(runKnn(o, DATA_FACTORIES), /class 1 is 'dog' in the train split but 'zebra' in the test split: both splits need the same class names/);
    assert.ok(!existsSync(join(dir, 'knn', 'knn.json')), 'nothing scored');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('train and test splits with other numbers of classes: the message names the classes one split lacks', async () => {
  const { DATA_FACTORIES } = await import('../../src/data');
  const { encode, picture, write } = await import('../data/helpers');
  const dir = mkdtempSync(join(tmpdir(), 'semaim-classes-'));
  try {
    const enc = writeEncoder(dir);
    const root = join(dir, 'pets');
    for (const [split, names] of [
      ['train', ['cat', 'dog', 'eel']],
      ['val', ['cat', 'dog']],
    ] as const) {
      for (const name of names) for (let i = 0; i < 3; i++) write(join(root, split, name, `${i}.png`), await encode(picture(8, 8, i), 8, 8, 3, 'png'));
    }
    const o = resolveOptions(KNN_OPTIONS, { checkpoint: enc, dataset: 'folder', dataPath: root, k: '1', numWorkers: 0, threads: 1, outDir: join(dir, 'knn') });
    await assert.rejects(runKnn(o, DATA_FACTORIES), /the train split has 3 classes, the test split 2: 'eel' only in the train split$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Markdown tables keep their shape whatever the cells hold (class names with a line break or a |)', async () => {
  const { markdownTable } = await import('../../src/eval/result');
  const t = markdownTable(['class', 'cat|dog', 'line\nbreak'], [['top-1 %', '50.0', '25.0']]);
  assert.equal(t, '| class | cat\\|dog | line break |\n| --- | --- | --- |\n| top-1 % | 50.0 | 25.0 |\n');
  // a backslash before the '|' escaped the escape: 'a\\|b' split into two columns; one before other punctuation is
  // escaped too (GFM would drop it: 'c\\*' showed 'c*'), one before a letter stands ('d\\x' shows as typed)
  assert.equal(markdownTable(['x', 'a\\|b', 'c\\*', 'd\\x'], []), '| x | a\\\\\\|b | c\\\\* | d\\x |\n| --- | --- | --- | --- |\n');
});

test("knn and linprobe of a run folder whose checkpoint the run prunes between resolving and loading it read the run's newest checkpoint and record it", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-result-pruned-'));
  const fs = require('node:fs') as typeof import('node:fs');
  const openSync = fs.openSync;
  try {
    const data = memoryFactories(toyImages(16, 2, 8, 1), toyImages(8, 2, 8, 2));
    // k-NN loads its encoder before its data: the run prunes when knn claims knn.json, after the encoder is resolved
    const knnRun = await runPrunedWhileDataIsMade(join(dir, 'knn'), data);
    fs.openSync = ((...args: Parameters<typeof openSync>) => {
      if (/knn\.json\.tmp-/.test(String(args[0]))) knnRun.prune();
      return openSync(...args);
    }) as typeof fs.openSync;
    const knn = await runKnn(resolveOptions(KNN_OPTIONS, { checkpoint: knnRun.run, outDir: join(dir, 'knn-out'), k: '3', threads: 1 }), data);
    fs.openSync = openSync;
    // the online linear probe sets up its data, then loads the encoder
    const lpRun = await runPrunedWhileDataIsMade(join(dir, 'lp'), data);
    const lo = { checkpoint: lpRun.run, outDir: join(dir, 'lp-out'), epochs: 1, batchSize: 8, cacheFeatures: false, threads: 1 };
    const lp = await runLinprobe(resolveOptions(LINPROBE_OPTIONS, lo), lpRun.factories);
    for (const [r, { run, newest, oldest }] of [
      [knn, knnRun],
      [lp, lpRun],
    ] as const) {
      const json = JSON.parse(readFileSync(r.path, 'utf8'));
      assert.equal(json.checkpoint.path, run);
      assert.equal(json.checkpoint.weights, join(newest, 'model.safetensors'), `${json.command} records the checkpoint it read, not ${oldest}`);
      assert.equal(
        json.checkpoint.sha256,
        createHash('sha256')
          .update(readFileSync(join(newest, 'model.safetensors')))
          .digest('hex'),
      );
    }
  } finally {
    fs.openSync = openSync;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runLinprobe refuses an augmentation with cached features before opening any data, as the command does', async () => {
  // (the library path checked the shared options only: the probe trained without the augmentation asked for)
  const dir = mkdtempSync(join(tmpdir(), 'semaim-result-augment-'));
  try {
    const requests: EvalDataRequest[] = [];
    const f = memoryFactories(toyImages(16, 3, 8, 1), toyImages(8, 3, 8, 2), requests);
    const lo = { checkpoint: writeEncoder(dir), outDir: join(dir, 'lp'), augment: 'crop-flip' as const, threads: 1 };
    await assert.rejects(
      runLinprobe(lo, f),
      (e: unknown) => e instanceof OptionError && e.key === 'augment' && /has no effect on cached features/.test(e.message),
    );
    assert.equal(requests.length, 0, 'no data opened');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the table names an encoder whose path holds a newline or an escape character quoted, as one line that sets no terminal mode', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-result-name-'));
  try {
    const enc = writeEncoder(dir, undefined, 1, 'enc\n\x1b[31mred');
    const f = memoryFactories(toyImages(20, 3, 8, 1), toyImages(10, 3, 8, 2), []);
    const r = await runKnn(resolveOptions(KNN_OPTIONS, { checkpoint: enc, outDir: join(dir, 'knn'), k: '5', threads: 1 }), f);
    const line = r.table.split('\n').find((l) => l.startsWith('encoder '));
    assert.ok(line, r.table);
    assert.ok(!r.table.includes('\x1b'), 'no raw ESC');
    assert.ok(line.startsWith(`encoder ${quotedPath(enc)} (sha256 `), line);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
