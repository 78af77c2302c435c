// An evaluation counts every image once: an unusable image is left out of the features and of the
// accuracy, not stood in for by another image of the split (which training does, to keep batches full).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DATA_FACTORIES, LabelledData, makeEvalData } from '../../src/data';
import { DataError, FINETUNE_OPTIONS, KNN_OPTIONS, LINPROBE_OPTIONS, OptionError, resolveOptions, runFinetune, runKnn, runLinprobe } from '../../src';
import { loadEncoder } from '../../src/semaim';
import { extractFeatures } from '../../src/eval/features';
import { evaluateClassifier } from '../../src/eval/finetune';
import { ViTClassifier } from '../../src/eval/classifier';
import { picture, encode } from '../data/helpers';
import { TINY, toyImages, writeEncoder } from './helpers';

/**
 * A labelled folder: `<root>/<split>/<class>/<i>.png` for each split, class and i < `perClass`, each a small
 * picture or, where `unreadable` says so, a file that is not a PNG.
 */
async function writeSplits(
  root: string,
  splits: string[],
  classes: string[],
  perClass: number,
  unreadable: (split: string, cls: string, i: number) => boolean,
): Promise<void> {
  for (const split of splits)
    for (const [k, cls] of classes.entries()) {
      mkdirSync(join(root, split, cls), { recursive: true });
      for (let i = 0; i < perClass; i++) {
        const file = join(root, split, cls, `${i}.png`);
        if (unreadable(split, cls, i)) writeFileSync(file, 'not a png');
        else writeFileSync(file, await encode(picture(8, 8, 10 * k + i), 8, 8, 3, 'png'));
      }
    }
}

test('features and classifier accuracy leave unusable images out instead of counting a stand-in', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-unusable-'));
  try {
    // 3 classes × 4 images; 2 of class b are not images
    await writeSplits(join(root, 'data'), ['test'], ['a', 'b', 'c'], 4, (_, cls, i) => cls === 'b' && i < 2);
    const data = makeEvalData({ split: 'test', dataset: 'folder', dataPath: join(root, 'data'), imgSize: TINY.imgSize, seed: 0, numWorkers: 0 });
    const { encoder } = loadEncoder(writeEncoder(root));
    try {
      const set = await extractFeatures(encoder, data, { batchSize: 5, pooling: 'cls', label: null });
      assert.equal(set.features.shape[0], 10, 'the 10 readable images, once each');
      assert.deepEqual([...set.labels], [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]);
      set.features.dispose();
      const model = new ViTClassifier({ ...TINY, numClasses: 3, pool: 'avg' });
      const acc = await evaluateClassifier(model, data, { batchSize: 5, label: null });
      assert.equal(acc.n, 10);
      model.dispose();
    } finally {
      encoder.dispose();
      await data.close();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a classifier evaluated on data none of whose images can be read: a DataError, not an accuracy of NaN over 0 images', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-unusable-eval-'));
  try {
    for (const cls of ['a', 'b']) {
      mkdirSync(join(root, 'test', cls), { recursive: true });
      for (let i = 0; i < 2; i++) writeFileSync(join(root, 'test', cls, `${i}.png`), 'not a png');
    }
    const data = makeEvalData({ split: 'test', dataset: 'folder', dataPath: root, imgSize: TINY.imgSize, seed: 0, numWorkers: 0 });
    const model = new ViTClassifier({ ...TINY, numClasses: 2, pool: 'avg' });
    try {
      // fine-tuning trained on, and wrote finetune.json with top1 null (its test split said 4 images)
      await assert.rejects(
        evaluateClassifier(model, data, { batchSize: 3, label: null }),
        (e: unknown) => e instanceof DataError && /none of its 4 images could be read/.test((e as Error).message),
      );
    } finally {
      model.dispose();
      await data.close();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('finetune.json counts the test images evaluated, as knn.json and linprobe.json do: not the unusable ones', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-unusable-ft-'));
  try {
    // 2 classes × 3 images per split; 2 test files of class b are not images
    await writeSplits(root, ['train', 'test'], ['a', 'b'], 3, (split, cls, i) => split === 'test' && cls === 'b' && i < 2);
    const enc = writeEncoder(root);
    const o = resolveOptions(FINETUNE_OPTIONS, {
      ...{ checkpoint: enc, dataset: 'folder', dataPath: root, numWorkers: 0, threads: 1 },
      ...{ batchSize: 2, epochs: 1, warmupEpochs: 0, evalEvery: 0, outDir: join(root, 'ft') },
    });
    const r = await runFinetune(o, DATA_FACTORIES, { progress: false, log: () => {} });
    assert.equal(r.result!.rows[0].accuracy.n, 4, 'the 4 readable test images');
    assert.equal(r.result!.data.test, 4, 'data.test said 6, the files listed');
    assert.equal(JSON.parse(readFileSync(r.path!, 'utf8')).data.test, 4);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a row a batch marks as a stand-in is left out of the accuracy when the batches carry no dataset indices', async () => {
  // LabelledData's contract: standIns alone says which rows evaluation leaves out (indices are optional)
  const images = toyImages(6, 3, 8, 1); // labels 0 1 2 0 1 2
  const data: LabelledData = {
    size: 6,
    numClasses: 3,
    imageShape: [3, 8, 8],
    async *batches(o) {
      let n = 0;
      for await (const b of images.batches(o)) {
        yield { ...b, standIns: Int32Array.from(n === 3 ? [1] : []) }; // row 4 (label 1) stands in for an unusable image
        n += b.shape[0];
      }
    },
    close() {},
  };
  const model = new ViTClassifier({ ...TINY, numClasses: 3, pool: 'avg' });
  try {
    const acc = await evaluateClassifier(model, data, { batchSize: 3, label: null });
    assert.equal(acc.n, 5);
    assert.deepEqual(acc.perClassCount, [2, 1, 2]);
  } finally {
    model.dispose();
  }
});

test('knn and linprobe on a split none of whose images can be read: a DataError naming the split; k above the readable images: an OptionError on k', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-unusable-split-'));
  try {
    // train: 2 classes × 3 files, none an image (one of class a becomes one below); test: readable
    await writeSplits(root, ['train', 'test'], ['a', 'b'], 3, (split) => split === 'train');
    const enc = writeEncoder(root);
    const common = { checkpoint: enc, dataset: 'folder', dataPath: root, numWorkers: 0, threads: 1, evalBatchSize: 4 };
    const unreadable = (e: unknown) => e instanceof DataError && e.code === 'ERR_DATA' && /^train data: none of its 6 images could be read/.test(e.message);
    const knn = () => runKnn(resolveOptions(KNN_OPTIONS, { ...common, k: '1', outDir: join(root, 'knn') }), DATA_FACTORIES, { progress: null });
    await assert.rejects(knn(), unreadable);
    await assert.rejects(
      runLinprobe(resolveOptions(LINPROBE_OPTIONS, { ...common, epochs: 1, batchSize: 2, outDir: join(root, 'lin') }), DATA_FACTORIES, { progress: null }),
      unreadable,
    );
    // the online probe (--no-cache-features) trained and wrote linprobe.json with top1 null over 0 test images
    const noTest = join(root, 'no-test');
    await writeSplits(noTest, ['train', 'test'], ['a', 'b'], 3, (split) => split === 'test');
    const unreadableTest = (e: unknown) => e instanceof DataError && /^test data: none of its 6 images could be read/.test(e.message);
    for (const cacheFeatures of [true, false]) {
      const out = join(root, `lin-${cacheFeatures}`);
      await assert.rejects(
        runLinprobe(resolveOptions(LINPROBE_OPTIONS, { ...common, dataPath: noTest, epochs: 1, batchSize: 2, cacheFeatures, outDir: out }), DATA_FACTORIES, {
          progress: null,
        }),
        unreadableTest,
        `cacheFeatures ${cacheFeatures}`,
      );
      assert.equal(existsSync(join(out, 'linprobe.json')), false, `cacheFeatures ${cacheFeatures}: no result`);
    }
    writeFileSync(join(root, 'train', 'a', '0.png'), await encode(picture(8, 8, 99), 8, 8, 3, 'png'));
    await assert.rejects(
      runKnn(resolveOptions(KNN_OPTIONS, { ...common, k: '2', outDir: join(root, 'knn') }), DATA_FACTORIES, { progress: null }),
      (e: unknown) => e instanceof OptionError && e.key === 'k' && /k = 2 exceeds the 1 training images/.test(e.message),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
