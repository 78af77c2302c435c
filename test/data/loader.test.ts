// DataLoader: seeded shuffling, drop-last, workers vs. main thread, early stop without hanging,
// decoded cache, uint8 batches, masks, soft targets.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  DataLoader,
  MemoryDataset,
  imageFiles,
  imageFolder,
  syntheticObjects,
  randomResizedCrop,
  horizontalFlip,
  normalize,
  centerCrop,
  resize,
  makeEvalData,
  makeTrainData,
  type Batch,
  type EpochStart,
  type LabelledData,
  type LoaderOptions,
  type TrainData,
} from '../../src/data';
import { tempDir, write, picture, encode } from './helpers';
import { LAYOUT_GRAY } from '../../src/data/dataset';
import { OptionError } from '../../src/util/options';

let root: string;
let cleanup: () => void;

before(async () => {
  ({ dir: root, cleanup } = tempDir());
  for (let i = 0; i < 24; i++) {
    const w = 40 + (i % 5) * 7;
    const h = 30 + (i % 3) * 9;
    write(join(root, 'imgs', `c${i % 3}`, `${i}.jpg`), await encode(picture(w, h, i), w, h, 3, 'jpeg', { quality: 85 }));
  }
  write(join(root, 'imgs', 'c1', 'broken.jpg'), 'not a jpeg');
});

after(() => cleanup());

async function collect(loader: DataLoader, epoch?: number): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of loader.iterate(epoch)) out.push(b);
  return out;
}

test('shuffling repeats per seed and differs per epoch; dropLast and length', async () => {
  const ds = syntheticObjects({ size: 16, count: 50 });
  const mk = (seed: number, dropLast = false) => new DataLoader(ds, { batchSize: 8, seed, workers: 0, dropLast });
  const a = mk(1);
  const b = mk(1);
  assert.equal(a.length, 7);
  assert.equal(mk(1, true).length, 6);
  const e0 = (await collect(a)).flatMap((x) => [...x.indices]);
  const e1 = (await collect(a)).flatMap((x) => [...x.indices]);
  assert.equal(a.epoch, 2);
  assert.deepEqual(
    e0,
    (await collect(b)).flatMap((x) => [...x.indices]),
  );
  assert.notDeepEqual(e0, e1);
  assert.deepEqual(
    [...e0].sort((x, y) => x - y),
    Array.from({ length: 50 }, (_, i) => i),
  );
  assert.notDeepEqual(
    e0,
    (await collect(mk(2))).flatMap((x) => [...x.indices]),
  );
  const last = (await collect(mk(1, true))).at(-1)!;
  assert.equal(last.shape[0], 8);
  const noShuffle = new DataLoader(ds, { batchSize: 8, shuffle: false, workers: 0 });
  assert.deepEqual([...(await collect(noShuffle))[0].indices], [0, 1, 2, 3, 4, 5, 6, 7]);
});

test('worker threads give the same batches as the main thread', async () => {
  const ds = imageFolder(join(root, 'imgs'));
  const opts = {
    batchSize: 5,
    seed: 3,
    transforms: [randomResizedCrop(24, { interpolation: 'bicubic' as const }), horizontalFlip(), normalize()],
    onWarning: () => undefined,
  };
  const main = await collect(new DataLoader(ds, { ...opts, workers: 0 }), 4);
  const pool = new DataLoader(ds, { ...opts, workers: 2, prefetch: 1 });
  try {
    const thr = await collect(pool, 4);
    assert.equal(thr.length, main.length);
    for (let i = 0; i < main.length; i++) {
      assert.deepEqual(thr[i].indices, main[i].indices);
      assert.deepEqual(thr[i].labels, main[i].labels);
      assert.deepEqual(thr[i].images, main[i].images);
    }
    assert.equal(pool.lastSummary!.skipped, 1);
  } finally {
    await pool.close();
  }
});

test('an epoch started at a later batch (a resumed run) gives the same batches from worker threads', { timeout: 60_000 }, async () => {
  const ds = syntheticObjects({ size: 16, count: 60 });
  const opts = { batchSize: 8, seed: 4, transforms: [randomResizedCrop(16), horizontalFlip(), normalize()] };
  const from = async (loader: DataLoader, batch: number) => {
    const out: Batch[] = [];
    for await (const b of loader.iterate(2, { batch })) out.push(b);
    return out;
  };
  const whole = await from(new DataLoader(ds, { ...opts, workers: 0 }), 0);
  for (const workers of [0, 1, 2]) {
    const loader = new DataLoader(ds, { ...opts, workers, prefetch: 2 });
    try {
      const tail = await from(loader, 3);
      assert.equal(tail.length, whole.length - 3, `${workers} workers`);
      tail.forEach((b, i) => {
        assert.deepEqual(b.indices, whole[i + 3].indices, `${workers} workers, batch ${i + 3}`);
        assert.deepEqual(b.images, whole[i + 3].images, `${workers} workers, batch ${i + 3}`);
      });
    } finally {
      await loader.close();
    }
  }
});

test('an invalid epoch start is refused before the loader moves on: the epoch and the last summary stay as they were', async () => {
  const ds = syntheticObjects({ size: 16, count: 20 });
  for (const workers of [0, 1]) {
    const loader = new DataLoader(ds, { batchSize: 8, workers });
    try {
      const refused: Array<[EpochStart, RegExp]> = [
        [{ batch: -1 }, /start batch must be an integer >= 0, got -1/],
        [{ batch: 1, sample: 8 }, /not both/],
        [{ sample: 21 }, /start sample 21 is outside the epoch/],
        [{ end: -1 }, /end batch must be an integer >= 0, got -1/],
      ];
      for (const [start, message] of refused) {
        await assert.rejects(loader.iterate(0, start).next(), message);
        assert.equal(loader.epoch, 0, `${workers} workers, ${JSON.stringify(start)}`);
        assert.equal(loader.lastSummary, null, `${workers} workers, ${JSON.stringify(start)}`);
      }
      assert.equal((await collect(loader)).length, 3);
      assert.equal(loader.lastSummary!.epoch, 0);
    } finally {
      await loader.close();
    }
  }
});

test('breaking out of an epoch leaves no hanging process', () => {
  const mod = join(__dirname, '..', '..', 'src', 'data', 'index.js');
  const script = `
    const d = require(${JSON.stringify(mod)});
    (async () => {
      const loader = new d.DataLoader(d.syntheticObjects({ size: 32, count: 2000 }), { batchSize: 16, workers: 2, prefetch: 4 });
      for await (const b of loader) { if (b.index === 1) break; }
      console.log('broke');
      // an iterator abandoned mid-epoch (neither finished nor returned) must not keep the process alive
      const other = new d.DataLoader(d.syntheticObjects({ size: 32, count: 2000 }), { batchSize: 16, workers: 1 });
      const it = other[Symbol.asyncIterator]();
      await it.next();
      console.log('abandoned');
    })();`;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /broke\nabandoned/);
  assert.ok(Date.now() - t0 < 15000);
});

test('close() during an epoch ends the iteration with an error', async () => {
  const loader = new DataLoader(syntheticObjects({ size: 16, count: 400 }), { batchSize: 8, workers: 1 });
  const it = loader[Symbol.asyncIterator]();
  await it.next();
  const pending = assert.rejects(it.next(), /closed/);
  await loader.close();
  await pending;
});

test('close() during an epoch without worker threads ends the iteration with an error too, never builds on', async () => {
  const loader = new DataLoader(syntheticObjects({ size: 16, count: 400 }), { batchSize: 8, workers: 0 });
  const it = loader[Symbol.asyncIterator]();
  await it.next();
  await loader.close();
  await assert.rejects(it.next(), /DataLoader: closed/);
});

test('a worker that dies mid-epoch fails the epoch with an error naming it, never a hang', { timeout: 30_000 }, async () => {
  const loader = new DataLoader(syntheticObjects({ size: 16, count: 400 }), { batchSize: 8, workers: 2 });
  try {
    const it = loader[Symbol.asyncIterator]();
    await it.next();
    const pool = (loader as unknown as { pool: { slots: { worker: { terminate(): Promise<number> } }[] } }).pool;
    await pool.slots[1].worker.terminate();
    await assert.rejects(async () => {
      while (!(await it.next()).done);
    }, /data worker 1 exited unexpectedly/);
  } finally {
    await loader.close();
  }
});

test(
  'an epoch started right after one broken off midway gets its own batches, not replies still in flight for the one abandoned',
  { timeout: 30_000 },
  async () => {
    const ds = syntheticObjects({ size: 16, count: 64 });
    const opts = { batchSize: 4, seed: 7, transforms: [normalize()] };
    const expected = (await collect(new DataLoader(ds, { ...opts, workers: 0 }), 1)).map((b) => [...b.indices]);
    for (const workers of [1, 2]) {
      // prefetch 4: batches 1.. of epoch 0 are still being built (and keyed as epoch 1's are) when it is abandoned
      const loader = new DataLoader(ds, { ...opts, workers, prefetch: 4 });
      try {
        for await (const b of loader.iterate(0)) {
          assert.equal(b.index, 0);
          break;
        }
        const got = (await collect(loader, 1)).map((b) => [...b.indices]);
        assert.deepEqual(got, expected, `${workers} workers`);
      } finally {
        await loader.close();
      }
    }
  },
);

test('a worker that died between epochs fails the next epoch, never a hang', { timeout: 20_000 }, async () => {
  const loader = new DataLoader(syntheticObjects({ size: 16, count: 32 }), { batchSize: 8, workers: 2 });
  try {
    assert.equal((await collect(loader)).length, 4);
    const pool = (loader as unknown as { pool: { failed: boolean; slots: { worker: { terminate(): Promise<number> } }[] } }).pool;
    await pool.slots[1].worker.terminate();
    while (!pool.failed) await new Promise((r) => setImmediate(r));
    // raced against a timer so that a hang fails this test rather than keeping the process alive
    const hung = new Promise<string>((r) => setTimeout(() => r('hung'), 10_000).unref());
    const outcome = await Promise.race([
      collect(loader).then(
        () => 'finished',
        (e: Error) => e,
      ),
      hung,
    ]);
    assert.match(String(outcome), /data worker 1 exited unexpectedly/);
  } finally {
    await loader.close();
  }
});

test('decoded cache gives the same batches as reading files', async () => {
  const ds = imageFolder(join(root, 'imgs'));
  const opts = { batchSize: 6, seed: 5, transforms: [resize(32), centerCrop(28), normalize()], onWarning: () => undefined };
  const plain = await collect(new DataLoader(ds, { ...opts, workers: 0 }));
  for (const workers of [0, 1]) {
    const cached = new DataLoader(ds, { ...opts, workers, cache: true });
    try {
      const got = await collect(cached);
      for (let i = 0; i < plain.length; i++) assert.deepEqual(got[i].images, plain[i].images);
      assert.equal(cached.lastSummary!.skipped, 1);
    } finally {
      await cached.close();
    }
  }
});

test("the decoded cache keeps images at full size: with random crops that shrink JPEGs 2x its batches are dctScaling false's, as documented", async () => {
  const ds = imageFolder(join(root, 'imgs'));
  const opts = { batchSize: 6, seed: 5, workers: 0, transforms: [randomResizedCrop(8, { scale: [0.5, 1] }), normalize()], onWarning: () => undefined };
  const scaled = await collect(new DataLoader(ds, opts));
  const full = await collect(new DataLoader(ds, { ...opts, dctScaling: false }));
  const cachedLoader = new DataLoader(ds, { ...opts, cache: true });
  try {
    const cached = await collect(cachedLoader);
    for (let i = 0; i < full.length; i++) assert.deepEqual(cached[i].images, full[i].images);
    // (the reason the docs say so: DCT scaling decodes other pixels)
    assert.ok(scaled.some((b, i) => b.images.some((v, j) => v !== full[i].images[j])));
  } finally {
    await cachedLoader.close();
  }
});

test('uint8 batches, masks, label smoothing and mixup targets', async () => {
  const ds = syntheticObjects({ size: 24, count: 20 });
  const u8 = await collect(new DataLoader(ds, { batchSize: 10, workers: 0, uint8: true, masks: true, transforms: [horizontalFlip()] }));
  assert.ok(u8[0].images instanceof Uint8Array);
  assert.equal(u8[0].dtype, 'uint8');
  assert.deepEqual(u8[0].shape, [10, 3, 24, 24]);
  assert.equal(u8[0].masks!.length, 10 * 24 * 24);
  assert.ok(u8[0].masks!.some((v) => v === 1));
  const ls = await collect(new DataLoader(ds, { batchSize: 10, workers: 0, labelSmoothing: 0.1 }));
  const t = ls[0].targets!;
  assert.equal(t.length, 10 * 10);
  assert.ok(Math.abs(t[ls[0].labels[0]] - (0.9 + 0.01)) < 1e-6);
  const mx = await collect(new DataLoader(ds, { batchSize: 10, workers: 0, mixup: { mixupAlpha: 0.8, cutmixAlpha: 1, labelSmoothing: 0.1 } }));
  for (const b of mx) {
    assert.ok(b.lam > 0 && b.lam <= 1);
    for (let i = 0; i < 10; i++) {
      let s = 0;
      for (let c = 0; c < 10; c++) s += b.targets![i * 10 + c];
      assert.ok(Math.abs(s - 1) < 1e-5);
    }
  }
  assert.throws(() => new DataLoader(imageFolder(join(root, 'imgs')), { batchSize: 2, masks: true, transforms: [centerCrop(8)] }), /no object masks/);
});

test('invalid options are a RangeError from the constructor naming the option, never clamped or read as another value', async () => {
  const ds = syntheticObjects({ size: 16, count: 8 });
  const refused: Array<[Partial<LoaderOptions>, RegExp]> = [
    [{ seed: NaN }, /seed must be an integer, got NaN/], // (shuffled as seed 0)
    [{ seed: 1.5 }, /seed must be an integer, got 1\.5/],
    [{ seed: 'x' as never }, /seed must be an integer, got 'x'/],
    [{ prefetch: 0 }, /prefetch must be an integer >= 1, got 0/], // (clamped to 1)
    [{ prefetch: -1 }, /prefetch must be an integer >= 1, got -1/],
    [{ workers: 1.5 }, /workers must be an integer >= 0, got 1\.5/],
    [{ exifOrientation: 'bogus' as never }, /exifOrientation must be one of 'ignore', 'apply', got 'bogus'/],
    [{ alphaBackground: 'red' as never }, /alphaBackground must be 'white', 'black' or a grey level: an integer in \[0, 255\], got 'red'/], // (black)
    [{ alphaBackground: 300 }, /alphaBackground must be .*, got 300/], // (clamped to 255)
    [{ alphaBackground: -5 }, /alphaBackground must be .*, got -5/],
    [{ labelSmoothing: 2 }, /labelSmoothing must be a number in \[0, 1\], got 2/], // (inverted targets)
    [{ labelSmoothing: -1 }, /labelSmoothing must be a number in \[0, 1\], got -1/], // (no targets)
    [{ labelSmoothing: NaN }, /labelSmoothing must be a number in \[0, 1\], got NaN/],
    [{ numClasses: 0, labelSmoothing: 0.1 }, /numClasses must be an integer >= 1, got 0/],
    [{ mixup: { mixupAlpha: -1 } }, /mixup\.mixupAlpha must be a number >= 0 \(0 = off\), got -1/],
    [{ mixup: { prob: 2 } }, /mixup\.prob must be a number in \[0, 1\], got 2/],
    [{ maxReplacements: -1 }, /maxReplacements must be an integer >= 0, got -1/],
    [{ cache: { maxBytes: -1 } }, /cache\.maxBytes must be a number of bytes >= 0, got -1/],
    // (truthy strings and numbers: 'false' dropped the last batch, 0 shuffled, 'false' replaced)
    [{ dropLast: 'false' as never }, /dropLast must be true or false, got 'false'/],
    [{ shuffle: 0 as never }, /shuffle must be true or false, got 0/],
    [{ replace: 'false' as never }, /replace must be true or false, got 'false'/],
    [{ uint8: 'no' as never }, /uint8 must be true or false, got 'no'/],
    [{ masks: 1 as never }, /masks must be true or false, got 1/],
    [{ persistentWorkers: 'false' as never }, /persistentWorkers must be true or false, got 'false'/],
    [{ dctScaling: 0 as never }, /dctScaling must be true or false, got 0/],
    [{ exactDecode: 'yes' as never }, /exactDecode must be true or false, got 'yes'/],
    [{ onWarning: 'x' as never }, /onWarning must be a function, got 'x'/], // (a TypeError at the first unusable file)
  ];
  for (const [o, message] of refused)
    assert.throws(() => new DataLoader(ds, { batchSize: 2, workers: 0, ...o }), { name: 'RangeError', message: new RegExp(`^DataLoader: ${message.source}$`) });
  // the ends of the ranges are taken: smoothing 1 spreads the target evenly over the 10 classes
  const loader = new DataLoader(ds, { batchSize: 2, workers: 0, seed: -1, prefetch: 1, labelSmoothing: 1, alphaBackground: 0, maxReplacements: 0 });
  const [first] = await collect(loader);
  assert.ok(first.targets!.every((t) => Math.abs(t - 0.1) < 1e-6));
  // the epoch to iterate (NaN gave batches of epoch NaN in epoch 0's order)
  await assert.rejects(
    async () => {
      for await (const b of loader.iterate(NaN)) void b;
    },
    { name: 'RangeError', message: 'DataLoader: epoch must be an integer >= 0, got NaN' },
  );
  assert.throws(() => loader.order(-1), { name: 'RangeError', message: 'DataLoader: epoch must be an integer >= 0, got -1' });
  assert.equal((await collect(loader, 1)).length, 4);
});

test('an unknown option of the DataLoader, of its mixup settings, or of a data request is refused naming what was likely meant, never ignored', () => {
  const ds = syntheticObjects({ size: 16, count: 8 });
  const unknown = (key: string, meant: string) => ({
    name: 'OptionError',
    message: new RegExp(`^option '${key}': unknown option; did you mean '${meant}'\\? \\(known: `),
  });
  assert.throws(() => new DataLoader(ds, { batchSize: 2, batch_size: 4 } as never), unknown('batch_size', 'batchSize'));
  assert.throws(() => new DataLoader(ds, { batchSize: 2, worker: 0 } as never), unknown('worker', 'workers'));
  // the ShardLoader's own options are not the DataLoader's (a key written with no value is still written)
  assert.throws(
    () => new DataLoader(ds, { batchSize: 2, shuffleBuffer: undefined } as never),
    /^OptionError: option 'shuffleBuffer': unknown option \(known: .*replace\)$/,
  );
  assert.throws(() => new DataLoader(ds, { batchSize: 2, workers: 0, mixup: { mixup_alpha: 0.8 } as never }), unknown('mixup_alpha', 'mixupAlpha'));
  assert.throws(() => new DataLoader(ds, { batchSize: 2, workers: 0, cache: { maxbytes: 1 << 20 } as never }), unknown('maxbytes', 'maxBytes'));
  const trainReq = { dataset: 'synthetic', imgSize: 16, syntheticSize: 8, seed: 0, minScale: 0.2, hflip: true, batchSize: 4, uint8: false, numWorkers: 0 };
  assert.throws(() => makeTrainData({ ...trainReq, numWorker: 0 } as never), unknown('numWorker', 'numWorkers'));
  assert.throws(() => makeEvalData({ dataset: 'synthetic', split: 'test', imgSize: 16, seed: 0, limt: 8 } as never), unknown('limt', 'limit'));
});

test('a data request value of another kind is refused naming its key, never read as truthy: hflip "false" flipped the images, uint8 "false" gave uint8 batches', () => {
  const trainReq = { dataset: 'synthetic', imgSize: 16, syntheticSize: 8, seed: 0, minScale: 0.2, hflip: false, batchSize: 4, uint8: false, numWorkers: 0 };
  const refused = (key: string, detail: RegExp) => (e: unknown) => e instanceof OptionError && e.key === key && detail.test(e.detail);
  assert.throws(() => makeTrainData({ ...trainReq, hflip: 'false' } as never), refused('hflip', /expected true or false, got "false"/));
  assert.throws(() => makeTrainData({ ...trainReq, uint8: 'false' } as never), refused('uint8', /expected true or false, got "false"/));
  assert.throws(() => makeTrainData({ ...trainReq, imageInput: 'none' } as never), refused('imageInput', /expected an object/));
  assert.throws(
    () => makeEvalData({ dataset: 'synthetic', split: 'test', imgSize: '16', seed: 0 } as never),
    refused('imgSize', /expected a number, got "16"/),
  );
  // no request at all: named as one (it was let through as 'no hooks', then a TypeError reading its imgSize)
  assert.throws(() => makeTrainData(null as never), refused('request', /expected an object of keys \(dataset, .*\), got null/));
  assert.throws(() => makeEvalData(undefined as never), refused('request', /got undefined/));
});

test('soft targets over fewer classes than the dataset has are refused, naming the label that would have none', () => {
  const ds = imageFolder(join(root, 'imgs'));
  const message = /^DataLoader: numClasses 2 is fewer than the 3 classes of .*imgs: label 2 \('c2'\) would have no soft target$/;
  for (const o of [{ labelSmoothing: 0.1 }, { mixup: {} }])
    assert.throws(() => new DataLoader(ds, { batchSize: 2, workers: 0, transforms: [centerCrop(8)], numClasses: 2, ...o }), { name: 'RangeError', message });
  // more classes than the labels use is fine (a dataset of some of a model's classes)
  assert.equal(new DataLoader(ds, { batchSize: 2, workers: 0, transforms: [centerCrop(8)], numClasses: 5, labelSmoothing: 0.1 }).length, 13);
});

test('makeEvalData: an unknown augment is a RangeError; a pass after close() is refused, never a new loader', async () => {
  const ed = makeEvalData({ dataset: 'synthetic', split: 'test', imgSize: 16, seed: 0, limit: 8, numWorkers: 0 });
  const pass = { batchSize: 4, shuffle: false, epoch: 0 };
  await assert.rejects(
    async () => {
      for await (const b of ed.batches({ ...pass, augment: 'foo' as never })) void b;
    },
    { name: 'RangeError', message: "augment must be one of 'none', 'crop-flip', 'resize-crop-flip', 'finetune' (or 'pretrain'), got 'foo'" },
  );
  await ed.close();
  await assert.rejects(async () => {
    for await (const b of ed.batches({ ...pass, augment: 'none' })) void b;
  }, /^Error: makeEvalData: closed$/);
});

test('the data makeTrainData and makeEvalData open are AsyncDisposable: `await using` closes their loaders at the end of the block', async () => {
  const evalReq = { dataset: 'synthetic', split: 'test' as const, imgSize: 32, seed: 0, limit: 16 };
  const trainReq = { dataset: 'synthetic', imgSize: 32, syntheticSize: 16, seed: 0, minScale: 0.2, hflip: true, batchSize: 8, numWorkers: 1, uint8: false };
  const batchOptions = { batchSize: 8, shuffle: false, epoch: 0, augment: 'none' as const };
  let ev: LabelledData;
  let tr: TrainData;
  {
    await using e = makeEvalData({ ...evalReq, numWorkers: 1 });
    await using t = makeTrainData(trainReq);
    [ev, tr] = [e, t];
    for await (const b of e.batches(batchOptions)) assert.deepEqual(b.shape, [8, 3, 32, 32]);
    for await (const b of t.epoch(0, 0)) assert.deepEqual(b.shape, [8, 3, 32, 32]);
  }
  await assert.rejects(async () => {
    for await (const b of ev.batches(batchOptions)) void b;
  }, /makeEvalData: closed/);
  await assert.rejects(async () => {
    for await (const b of tr.epoch(0, 0)) void b;
  }, /DataLoader: closed/);
});

test('a folder of one class: evaluation refuses it as one class (not as unlabelled), pre-training, which reads no labels, takes it', async () => {
  const { dir, cleanup } = tempDir();
  try {
    for (const split of ['train', 'test'])
      for (let i = 0; i < 4; i++) write(join(dir, split, 'cats', `${i}.png`), await encode(picture(16, 16, i), 16, 16, 3, 'png'));
    const req = { dataset: 'folder', dataPath: dir, imgSize: 16, seed: 0, numWorkers: 0 };
    assert.throws(() => makeEvalData({ ...req, split: 'train' }), {
      name: 'DataError',
      message: /train has only one class \('cats'\): a classifier or k-NN needs at least two/,
    });
    await using t = makeTrainData({ ...req, syntheticSize: 0, minScale: 0.2, hflip: true, batchSize: 2, uint8: false });
    let images = 0;
    for await (const b of t.epoch(0, 0)) images += b.shape[0];
    assert.equal(images, 4);
  } finally {
    cleanup();
  }
});

test('replace: false leaves an unusable sample as a blank row (index -1, a stand-in) whatever the share of unusable files', async () => {
  const { dir, cleanup } = tempDir();
  try {
    write(join(dir, 'good.png'), await encode(picture(8, 8, 1), 8, 8, 3, 'png'));
    for (let i = 0; i < 60; i++) write(join(dir, `bad${String(i).padStart(2, '0')}.png`), 'not a png');
    const ds = imageFiles(dir);
    for (const workers of [0, 1]) {
      const warnings: string[] = [];
      const loader = new DataLoader(ds, {
        batchSize: 16,
        workers,
        shuffle: false,
        replace: false,
        transforms: [centerCrop(8)],
        onWarning: (l) => warnings.push(l),
      });
      try {
        const rows: number[] = [];
        for await (const b of loader.iterate(0)) {
          rows.push(...b.indices);
          assert.deepEqual(
            [...b.standIns],
            [...b.indices.keys()].filter((i) => b.indices[i] === -1),
          );
          b.indices.forEach(
            (v, i) =>
              v === -1 &&
              assert.ok(
                b.images.subarray(i * 192, (i + 1) * 192).every((x) => x === 0),
                'a blank row',
              ),
          );
        }
        assert.deepEqual(
          rows,
          rows.map((_, i) => (ds.name(i).endsWith('good.png') ? i : -1)),
        );
        assert.equal(rows.length, 61);
        assert.equal(loader.lastSummary!.skipped, 60);
        assert.deepEqual(
          loader.lastSummary!.files,
          Array.from({ length: 20 }, (_, i) => ds.name(i)),
          'the first 20 names',
        );
        assert.ok(
          warnings.some((l) => /^data: epoch 0: skipped 60 unusable files \(.*\); each was left out/.test(l)),
          warnings.join('\n'),
        );
        // an epoch left after its first batch says so
        for await (const b of loader.iterate(1)) if (b) break;
        assert.ok(
          warnings.some((l) => /^data: epoch 1 \(stopped early\): skipped 16 unusable files/.test(l)),
          warnings.join('\n'),
        );
      } finally {
        await loader.close();
      }
    }
  } finally {
    cleanup();
  }
});

test('a stand-in for an unusable file is augmented by draws of its own, not as a copy of the same image in its own row', async () => {
  // (the augmentation's stream is keyed by the replacement attempt as well as the image: the stand-in is
  // no exact duplicate of that image's own row of the batch)
  const { dir, cleanup } = tempDir();
  try {
    for (let i = 0; i < 6; i++) write(join(dir, `good${i}.png`), await encode(picture(16, 16, 5 * i), 16, 16, 3, 'png'));
    write(join(dir, 'bad.png'), 'not a png');
    const loader = new DataLoader(imageFiles(dir), {
      batchSize: 7,
      workers: 0,
      shuffle: false,
      seed: 3,
      transforms: [randomResizedCrop(8), horizontalFlip()],
      onWarning: () => {},
    });
    try {
      const [b] = await collect(loader, 0);
      assert.equal(b.standIns.length, 1);
      const row = b.standIns[0];
      const own = [...b.indices].findIndex((v, i) => i !== row && v === b.indices[row]);
      assert.ok(own >= 0, 'the stand-in is one of the batch’s images');
      assert.notDeepEqual(b.images.subarray(row * 192, (row + 1) * 192), b.images.subarray(own * 192, (own + 1) * 192));
    } finally {
      await loader.close();
    }
  } finally {
    cleanup();
  }
});

test('an image that leaves the transforms at another size than the batch is an error naming it, not an unusable file replaced', async () => {
  // (a dataset whose fixedSize is wrong for one image: no crop fixes the size, and skipping would hide it)
  const images = {
    data: new Uint8Array(64 + 100),
    offsets: Float64Array.of(0, 64),
    widths: Int32Array.of(8, 10),
    heights: Int32Array.of(8, 10),
    layout: Uint8Array.of(LAYOUT_GRAY, LAYOUT_GRAY),
    csx: Uint8Array.of(1, 1),
    csy: Uint8Array.of(1, 1),
  };
  const loader = new DataLoader(new MemoryDataset('mixed', images, Int32Array.of(0, 1), ['a', 'b'], [8, 8]), { batchSize: 2, workers: 0, shuffle: false });
  try {
    await assert.rejects(collect(loader, 0), { name: 'DataError', message: /^mixed#1: transformed size 10x10 differs from the batch size 8x8/ });
  } finally {
    await loader.close();
  }
});
