// Cancelling the evaluation jobs a program starts (runKnn, runLinprobe, runSegprobe, knnClassifyAsync)
// through the package entry: aborted mid-job they reject with an AbortError (code ERR_ABORTED) before
// their next batch or step, write no result file (an earlier run's stay as they were), free their
// tensors, and the same call without the signal then runs to the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AbortError,
  FINETUNE_OPTIONS,
  KNN_OPTIONS,
  LINPROBE_OPTIONS,
  OptionError,
  SEGPROBE_OPTIONS,
  VisionTransformer,
  extractFeatures,
  knnClassifyAsync,
  readSegprobeConfig,
  resolveOptions,
  runKnn,
  runLinprobe,
  runFinetune,
  runSegprobe,
  torch,
  type data,
} from '../../src';
import { MemoryLabelledData } from '../../src/data';
import type { SegData } from '../../src/data/seg-streams';
import { TINY, toyImages, writeEncoder } from './helpers';
import { squares } from './seg-helpers';

torch.setNumThreads(1);

/** Counts the batches a job reads from `d` and calls `after(n)` after handing out the n-th one, and `done` after the last. */
function watched<T extends { batches(o: never): AsyncIterable<unknown> }>(
  d: T,
  hooks: { after?: (n: number) => void; done?: () => void },
  count: { n: number },
): T {
  const w = Object.create(d) as T;
  (w as { batches: unknown }).batches = async function* (o: never) {
    for await (const b of d.batches(o)) {
      yield b;
      count.n++;
      hooks.after?.(count.n);
    }
    hooks.done?.();
  };
  return w;
}

function factories(
  train: MemoryLabelledData,
  testSet: MemoryLabelledData,
  hooks: { train?: Parameters<typeof watched>[1]; test?: Parameters<typeof watched>[1] },
) {
  const count = { train: { n: 0 }, test: { n: 0 } };
  const f: data.DataFactories = {
    makeEvalData: (r) => (r.split === 'train' ? watched(train, hooks.train ?? {}, count.train) : watched(testSet, hooks.test ?? {}, count.test)),
    makeTrainData: () => {
      throw new Error('not used');
    },
  };
  return { f, count };
}

function isAbort(reason: unknown) {
  return (e: unknown) => {
    assert.ok(e instanceof AbortError, `an AbortError, got ${String(e)}`);
    assert.equal(e.code, 'ERR_ABORTED');
    assert.equal(e.name, 'AbortError');
    assert.equal(e.cause, reason);
    return true;
  };
}

test('runKnn aborted while it extracts features rejects with an AbortError before the next batch, writes nothing, and runs again', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-cancel-knn-'));
  try {
    const enc = writeEncoder(dir);
    const o = resolveOptions(KNN_OPTIONS, { checkpoint: enc, outDir: join(dir, 'knn'), k: '5', threads: 1, evalBatchSize: 8 });
    const live = torch.memoryStats().liveTensors;
    // aborted before it starts: no data opened
    const pre = factories(toyImages(40, 2, 8, 1), toyImages(16, 2, 8, 2), {});
    const early = new AbortController();
    early.abort();
    await assert.rejects(runKnn(o, pre.f, { signal: early.signal }), isAbort(early.signal.reason));
    assert.deepEqual([pre.count.train.n, pre.count.test.n], [0, 0]);
    // aborted after the second of five training batches
    const controller = new AbortController();
    const reason = new Error('request cancelled');
    const mid = factories(toyImages(40, 2, 8, 1), toyImages(16, 2, 8, 2), { train: { after: (n) => n === 2 && controller.abort(reason) } });
    await assert.rejects(runKnn(o, mid.f, { signal: controller.signal }), isAbort(reason));
    assert.deepEqual([mid.count.train.n, mid.count.test.n], [2, 0], 'no batch read after the abort');
    assert.equal(existsSync(join(dir, 'knn')), false, 'no out-dir, no knn.json');
    assert.equal(torch.memoryStats().liveTensors, live, 'encoder and features freed');
    // aborted after the features, before the vote
    const late = new AbortController();
    const after = factories(toyImages(40, 2, 8, 1), toyImages(16, 2, 8, 2), { test: { done: () => late.abort(reason) } });
    await assert.rejects(runKnn(o, after.f, { signal: late.signal }), isAbort(reason));
    assert.equal(existsSync(join(dir, 'knn')), false);
    assert.equal(torch.memoryStats().liveTensors, live);
    // the same job, not aborted
    const again = factories(toyImages(40, 2, 8, 1), toyImages(16, 2, 8, 2), {});
    const r = await runKnn(o, again.f, { signal: new AbortController().signal });
    assert.equal(r.path, join(dir, 'knn', 'knn.json'));
    assert.deepEqual(readdirSync(join(dir, 'knn')), ['knn.json']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('knnClassifyAsync aborted between blocks of queries rejects before the next block and frees the bank', async () => {
  const bank = { features: torch.keep(torch.randn([64, 8])), labels: Int32Array.from({ length: 64 }, (_, i) => i % 2) };
  const queries = { features: torch.keep(torch.randn([40, 8])), labels: Int32Array.from({ length: 40 }, (_, i) => i % 2) };
  try {
    const live = torch.memoryStats().liveTensors;
    const controller = new AbortController();
    const job = knnClassifyAsync(bank, queries, { ks: [3], numClasses: 2, chunkSize: 4, label: null, signal: controller.signal });
    setImmediate(() => controller.abort('stop')); // after the first block's turn of the event loop
    await assert.rejects(job, isAbort('stop'));
    assert.equal(torch.memoryStats().liveTensors, live, 'the normalised bank is freed');
  } finally {
    bank.features.dispose();
    queries.features.dispose();
  }
});

test('knnClassifyAsync and extractFeatures refuse an AbortController given as signal, which never stopped them', async () => {
  const bank = { features: torch.keep(torch.randn([16, 8])), labels: Int32Array.from({ length: 16 }, (_, i) => i % 2) };
  const encoder = new VisionTransformer(TINY).initWeights(1);
  const controller = new AbortController();
  const refused = (e: unknown) => e instanceof OptionError && e.key === 'signal' && /expected an AbortSignal/.test(e.detail);
  try {
    await assert.rejects(knnClassifyAsync(bank, bank, { ks: [3], numClasses: 2, label: null, signal: controller as never }), refused);
    await assert.rejects(extractFeatures(encoder, toyImages(8, 2, 8, 1), { batchSize: 4, pooling: 'cls', label: null, signal: controller as never }), refused);
  } finally {
    bank.features.dispose();
    encoder.dispose();
  }
});

test('runLinprobe aborted after its features leaves the earlier probe and linprobe.json as they were; without the signal it runs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-cancel-lp-'));
  try {
    const enc = writeEncoder(dir);
    const out = join(dir, 'lp');
    for (const cacheFeatures of [true, false]) {
      const o = resolveOptions(LINPROBE_OPTIONS, { checkpoint: enc, outDir: out, epochs: 2, batchSize: 8, threads: 1, evalBatchSize: 8, cacheFeatures });
      const first = await runLinprobe(o, factories(toyImages(32, 2, 8, 1), toyImages(16, 2, 8, 2), {}).f);
      const probe = readFileSync(join(out, 'probe.safetensors'));
      const json = readFileSync(first.path);
      const live = torch.memoryStats().liveTensors;
      // the cached path aborts at the first probe step; the online one (test features first) at its first training batch
      const controller = new AbortController();
      const { f, count } = factories(toyImages(32, 2, 8, 1), toyImages(16, 2, 8, 2), { test: { done: () => controller.abort('cancel') } });
      await assert.rejects(runLinprobe(o, f, { signal: controller.signal }), isAbort('cancel'));
      if (!cacheFeatures) assert.equal(count.train.n, 0, 'online: no training step taken');
      assert.ok(readFileSync(join(out, 'probe.safetensors')).equals(probe), `cacheFeatures ${cacheFeatures}: the earlier probe`);
      assert.ok(readFileSync(first.path).equals(json), 'the earlier linprobe.json');
      assert.deepEqual(readdirSync(out).sort(), ['linprobe.json', 'probe.safetensors'], 'no temporary file');
      assert.equal(torch.memoryStats().liveTensors, live, 'probe, features and encoder freed');
      const again = await runLinprobe(o, factories(toyImages(32, 2, 8, 1), toyImages(16, 2, 8, 2), {}).f, { signal: new AbortController().signal });
      assert.equal(again.result.command, 'linprobe');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runSegprobe aborted while it extracts features rejects with an AbortError and writes none of its files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-cancel-sp-'));
  try {
    const enc = writeEncoder(dir);
    const controller = new AbortController();
    const count = { train: { n: 0 }, test: { n: 0 } };
    const [train, testSet] = [squares(32, 1), squares(12, 2)];
    const factory = (r: { split: string }): SegData =>
      r.split === 'train' ? watched(train, { after: (n) => n === 1 && controller.abort('cancel') }, count.train) : watched(testSet, {}, count.test);
    const o = resolveOptions(
      SEGPROBE_OPTIONS,
      {},
      { checkpoint: enc, epochs: 2, batchSize: 8, evalBatchSize: 8, outDir: join(dir, 'sp'), figureImages: 2, threads: 1 },
    );
    const cfg = readSegprobeConfig(o);
    const live = torch.memoryStats().liveTensors;
    await assert.rejects(runSegprobe(cfg, o, factory, { signal: controller.signal }), isAbort('cancel'));
    assert.deepEqual([count.test.n, count.train.n], [2, 1], 'the two test batches, then one training batch: none after the abort');
    assert.equal(existsSync(join(dir, 'sp')), false, 'no segprobe.json, head or figure');
    assert.equal(torch.memoryStats().liveTensors, live);
    const r = await runSegprobe(cfg, o, (q: { split: string }) => (q.split === 'train' ? train : testSet));
    assert.ok(existsSync(r.path));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runFinetune takes the signal in its hooks: aborted at a step it stops after a checkpoint (stoppedBy signal, no finetune.json) and the same call resumes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-cancel-ft-'));
  try {
    const enc = writeEncoder(dir);
    const out = join(dir, 'ft');
    const o = resolveOptions(FINETUNE_OPTIONS, {
      checkpoint: enc,
      outDir: out,
      batchSize: 4,
      epochs: 2,
      warmupEpochs: 0,
      maxSteps: 6,
      evalBatchSize: 8,
      threads: 1,
    });
    const f = () => factories(toyImages(16, 2, 8, 1), toyImages(8, 2, 8, 2), {}).f;
    const quiet = { log: () => {}, progress: false, catchSignals: false } as const;
    // aborted before it starts: no step, no checkpoint (it trained one and wrote its checkpoint), and it says it stopped
    const early = await runFinetune({ ...o, outDir: join(dir, 'ft-early') }, f(), { ...quiet, signal: AbortSignal.abort() });
    assert.equal(early.stoppedBy, 'signal');
    assert.equal(early.table, 'fine-tuning stopped (signal) after 0 steps; run again with the same --out-dir to continue from the start\n');
    const controller = new AbortController();
    const first = await runFinetune(o, f(), { ...quiet, signal: controller.signal, onStep: (s) => s === 3 && controller.abort() });
    assert.equal(first.stoppedBy, 'signal');
    assert.equal(first.result, null);
    assert.equal(existsSync(join(out, 'finetune.json')), false);
    const second = await runFinetune(o, f(), quiet);
    assert.equal(second.stoppedBy, 'maxSteps');
    assert.equal(second.result?.details?.steps, 6);
    assert.ok(existsSync(join(out, 'finetune.json')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runKnn, runLinprobe and runSegprobe check their job options before any work: progress: false, a misspelt key, an AbortController as signal are OptionErrors naming it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-job-options-'));
  try {
    const enc = writeEncoder(dir);
    const knn = resolveOptions(KNN_OPTIONS, { checkpoint: enc, outDir: join(dir, 'knn'), k: '5', threads: 1, evalBatchSize: 8 });
    const lp = resolveOptions(LINPROBE_OPTIONS, { checkpoint: enc, outDir: join(dir, 'lp'), epochs: 1, batchSize: 8, threads: 1, evalBatchSize: 8 });
    const sp = resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, epochs: 1, batchSize: 8, evalBatchSize: 8, outDir: join(dir, 'sp'), threads: 1 });
    const refused = (key: string, detail: RegExp) => (e: unknown) => e instanceof OptionError && e.key === key && detail.test(e.detail);
    let segOpened = 0;
    const seg = () => (segOpened++, squares(8, 1));
    for (const [job, key, detail] of [
      // pretrain's spelling: the bars stayed on
      [{ progress: false }, 'progress', /expected null, got false/],
      // ignored: the job could not be stopped
      [{ sigal: new AbortController().signal }, 'sigal', /unknown option; did you mean 'signal'\?/],
      // never aborted: the controller has no `aborted` of its own
      [{ signal: new AbortController() }, 'signal', /expected an AbortSignal/],
    ] as const) {
      const { f, count } = factories(toyImages(16, 2, 8, 1), toyImages(8, 2, 8, 2), {});
      await assert.rejects(runKnn(knn, f, job as never), refused(key, detail));
      await assert.rejects(runLinprobe(lp, f, job as never), refused(key, detail));
      await assert.rejects(runSegprobe(readSegprobeConfig(sp), sp, seg, job as never), refused(key, detail));
      assert.deepEqual([count.train.n, count.test.n, segOpened], [0, 0, 0], 'no data read');
    }
    assert.deepEqual(readdirSync(dir).sort(), ['encoder.json', 'encoder.safetensors']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
