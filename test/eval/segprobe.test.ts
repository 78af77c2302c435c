// The segmentation probe: the head learns separable patch features, the patch tokens are the
// encoder's, the online path leaves the encoder frozen, and `runSegprobe` writes its files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { loadTensors } from '../../src/io';
import { loadEncoder } from '../../src/semaim';
import { SegFeatureSet, extractSegFeatures, parseBlocks, patchTokens } from '../../src/eval/seg-features';
import { evaluateSegHead, segprobeOnFeatures, segprobeOnline } from '../../src/eval/segprobe';
import { SegLinearHead } from '../../src/eval/seg-head';
import { SEGPROBE_OPTIONS, readSegprobeConfig } from '../../src/eval/segprobe-options';
import { SegprobeFile, runSegprobe } from '../../src/eval/segprobe-run';
import { OptionError, resolveOptions } from '../../src/util/options';
import { DataError } from '../../src/util/errors';
import { makeSegprobeCommand } from '../../src/cli/segprobe-command';
import { countingLoopTurns, maxDiff, settleGarbage, writeEncoder } from './helpers';
import { squares } from './seg-helpers';
import { MemorySegData } from '../../src/data/seg-streams';
import { printed } from '../output';
import { makeSegData } from '../../src/data/seg-loader';
import { encode, picture, pngEncode, write } from '../data/helpers';
import type { ProcessGroup } from '../../src/dist';

torch.setNumThreads(1);

/**
 * n images on a 6×6 patch grid of 24×24 pixels, as segmentation data looks: background (class 0)
 * and one object, a rectangle of 2–4 × 2–4 patches of class 1..C-1 (seeded). Each patch's feature
 * is its class mean + small noise, scaled and offset (BatchNorm's job); masks repeat each patch's
 * class over its 4×4 pixels, with a few ignored pixels. Separable per patch; per pixel the bilinear
 * upsampling blends neighbouring patches at an object's corners, which a linear head can only
 * outweigh with unequal margins — hence 0.95, not 1.
 */
function separablePatches(n: number, C: number, D: number, seed: number): SegFeatureSet {
  const G = 6;
  const N = G * G;
  const S = 4 * G;
  const g = new torch.Generator(seed);
  const draws = Array.from(torch.randint(0, 1 << 20, [n * 5], { generator: g }).data() as BigInt64Array, Number);
  const lab = new Array<number>(n * N).fill(0);
  for (let i = 0; i < n; i++) {
    const [cls, h, w, y0, x0] = draws.slice(i * 5, i * 5 + 5);
    const hh = 2 + (h % 3);
    const ww = 2 + (w % 3);
    const top = y0 % (G - hh + 1);
    const left = x0 % (G - ww + 1);
    for (let y = top; y < top + hh; y++) for (let x = left; x < left + ww; x++) lab[i * N + y * G + x] = 1 + (cls % (C - 1));
  }
  const features = torch.scope(() => {
    const means = torch.randn([C, D], { generator: new torch.Generator(99) }).mul(2);
    const labels = torch.tensor(BigInt64Array.from(lab.map(BigInt)));
    const x = means
      .indexSelect(0, labels)
      .add(torch.randn([n * N, D], { generator: g }).mul(0.4))
      .mul(30)
      .add(5);
    return torch.keep(x.view(n, N, D));
  });
  const masks = new Uint8Array(n * S * S);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < S; y++)
      for (let x = 0; x < S; x++) {
        masks[(i * S + y) * S + x] = (x + 2 * y + i) % 29 === 0 ? 255 : lab[i * N + Math.floor(y / 4) * G + Math.floor(x / 4)];
      }
  }
  return {
    features,
    masks,
    indices: Int32Array.from({ length: n }, (_, i) => i),
    grid: [G, G],
    size: [S, S],
    images: new Float32Array(0),
    keptMasks: new Uint8Array(0),
  };
}

test('the head on cached features lets the event loop turn between its steps', async () => {
  const train = separablePatches(64, 5, 12, 1);
  const testSet = separablePatches(8, 5, 12, 2);
  try {
    // 2 epochs × 8 steps, all of whose batches are at hand at once
    const { result: r, turns } = await countingLoopTurns(() =>
      segprobeOnFeatures(train, testSet, 5, { epochs: 2, batchSize: 8, lr: 0.1, seed: 0, label: null }),
    );
    r.head.dispose();
    assert.ok(turns >= 15, `the event loop turned ${turns} times during 16 steps`);
  } finally {
    train.features.dispose();
    testSet.features.dispose();
  }
});

test('a head on perfectly separable patch features reaches >= 0.95 mIoU (AdamW and SGD)', async () => {
  const train = separablePatches(64, 5, 12, 1);
  const testSet = separablePatches(24, 5, 12, 2);
  try {
    // Large margins take a high lr: the corners of an object need them (see separablePatches).
    const adamw = await segprobeOnFeatures(train, testSet, 5, { epochs: 15, batchSize: 8, lr: 0.1, seed: 0, label: null, keepPredictions: 2, evalEvery: 5 });
    assert.ok(adamw.metrics.mIoU >= 0.95, `AdamW mIoU ${adamw.metrics.mIoU}`);
    assert.equal(adamw.history.length, 15);
    assert.ok(adamw.history[0].loss > adamw.history[14].loss, 'loss falls');
    assert.equal(typeof adamw.history[4].mIoU, 'number');
    assert.equal(adamw.history[14].mIoU, adamw.metrics.mIoU, "the last epoch's mIoU is the result's");
    assert.equal(adamw.head.training, true, 'the head given back in training mode after its evaluations');
    // predictions kept for at most the test images there are
    assert.equal(evaluateSegHead(adamw.head, testSet, 5, { keep: 100 }).predictions.length, 24 * 24 * 24);
    assert.equal(adamw.metrics.pixels, [...testSet.masks].filter((v) => v !== 255).length, 'every labelled test pixel scored');
    assert.equal(adamw.predictions.length, 2 * 24 * 24);
    assert.deepEqual([...adamw.head.stateDict().keys()].sort(), [
      'bn.num_batches_tracked',
      'bn.running_mean',
      'bn.running_var',
      'linear.bias',
      'linear.weight',
    ]);
    adamw.head.dispose();
    const sgd = await segprobeOnFeatures(train, testSet, 5, { epochs: 15, batchSize: 8, optimizer: 'sgd', lr: 0.1, seed: 0, label: null });
    assert.ok(sgd.metrics.mIoU >= 0.95, `SGD mIoU ${sgd.metrics.mIoU}`);
    sgd.head.dispose();
  } finally {
    train.features.dispose();
    testSet.features.dispose();
  }
});

test("blocks: last, lastN, index lists; the last block is the encoder's own output after the final norm", () => {
  assert.deepEqual(parseBlocks('last', 6), [5]);
  assert.deepEqual(parseBlocks('last4', 6), [2, 3, 4, 5]);
  assert.deepEqual(parseBlocks('3, 1,3', 6), [1, 3]);
  assert.throws(() => parseBlocks('last7', 6), /asks for the last 7 blocks, but the encoder has 6/);
  assert.throws(() => parseBlocks('last0', 6), /names no block/);
  assert.throws(() => parseBlocks('6', 6), /block 6 does not exist/);
  assert.throws(() => parseBlocks('first', 6), /expected 'last'/);
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-'));
  const { encoder } = loadEncoder(writeEncoder(dir));
  try {
    torch.scope(() => {
      const images = torch.randn([2, 3, 8, 8], { generator: new torch.Generator(5) });
      const last = patchTokens(encoder, images, [1]);
      const own = torch.noGrad(() => encoder.forwardFeatures(images).narrow(1, 1, 4));
      assert.deepEqual(last.shape, [2, 4, 16]);
      assert.ok(maxDiff(last.toFloat32Array(), own.toFloat32Array()) < 1e-6);
      const both = patchTokens(encoder, images, [0, 1]);
      assert.deepEqual(both.shape, [2, 4, 32]);
      assert.ok(maxDiff(both.narrow(2, 16, 16).contiguous().toFloat32Array(), own.toFloat32Array()) < 1e-6, 'the last block comes last');
      // block 0's part: its output through the final norm
      const x0 = torch.noGrad(() =>
        encoder.norm.forward(encoder.blocks.at(0).forward(torch.cat([encoder.clsTokens(2), encoder.embedPatches(images)], 1))).narrow(1, 1, 4),
      );
      assert.ok(maxDiff(both.narrow(2, 0, 16).contiguous().toFloat32Array(), x0.toFloat32Array()) < 1e-6);
    });
  } finally {
    encoder.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the online path trains through the frozen encoder (images and masks flipped together) and leaves it unchanged', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-'));
  const { encoder } = loadEncoder(writeEncoder(dir));
  const before = encoder.blocks.at(0).attn.qkv.weight.toFloat64Array();
  const te = await extractSegFeatures(encoder, squares(16, 2), { batchSize: 8, blocks: [1], label: null, keepImages: 3 });
  try {
    assert.deepEqual(te.features.shape, [16, 4, 16]);
    assert.equal(te.images.length, 3 * 192);
    const r = await segprobeOnline(encoder, squares(32, 1), te, 2, {
      epochs: 4,
      batchSize: 8,
      lr: 2e-2,
      seed: 0,
      label: null,
      blocks: [1],
      augment: 'crop-flip',
    });
    assert.equal(r.history.length, 4);
    assert.ok(r.metrics.mIoU > 0.6, `mIoU ${r.metrics.mIoU}`);
    assert.deepEqual([...r.trainHistogram], [32 * 48, 32 * 16], 'class counts of the first epoch');
    assert.deepEqual(encoder.blocks.at(0).attn.qkv.weight.toFloat64Array(), before);
    assert.equal(encoder.training, false);
    r.head.dispose();
  } finally {
    te.features.dispose();
    encoder.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runSegprobe writes segprobe.json (fractions), the figure and the head; --init random uses the same architecture', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-'));
  try {
    const enc = writeEncoder(dir);
    const requests: string[] = [];
    const factory = (r: { split: string; imgSize: number }) => {
      requests.push(`${r.split}@${r.imgSize}`);
      return r.split === 'train' ? squares(32, 1) : squares(12, 2);
    };
    const run = async (init: string, outDir: string) => {
      const o = resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, init, epochs: 3, batchSize: 8, lr: 2e-2, outDir, figureImages: 4, threads: 1 });
      const cfg = readSegprobeConfig(o);
      return runSegprobe(cfg, o, factory);
    };
    const r = await run('pretrained', join(dir, 'out'));
    assert.deepEqual(requests, ['train@8', 'test@8']);
    const file = JSON.parse(readFileSync(join(dir, 'out', 'segprobe.json'), 'utf8')) as SegprobeFile;
    assert.equal(file.format, 'semaim.segprobe/1');
    assert.ok(file.mIoU >= 0 && file.mIoU <= 1, 'mIoU as a fraction');
    assert.equal(file.mIoU, r.result.mIoU);
    assert.equal(file.perClassIoU.length, 2);
    assert.deepEqual(file.classNames, ['background', 'square']);
    assert.equal(file.rows.length, 2);
    assert.match(file.rows[1].name, /constant 'background'/);
    assert.ok(Math.abs(file.rows[1].pixelAccuracy - 0.75) < 1e-12, 'all background: 3/4 of the pixels');
    assert.ok(Math.abs(file.rows[1].mIoU - 0.375) < 1e-12, 'all background: (0.75 + 0) / 2');
    assert.deepEqual(file.data.skipped.test, { count: 0, byReason: {}, samples: [] });
    assert.equal(file.data.train, 32);
    assert.equal(file.checkpoint.init, 'pretrained');
    assert.match(r.table, /\| evaluation \| mIoU % \| pixel acc % \|/);
    assert.ok(existsSync(join(dir, 'out', 'segprobe.png')));
    const head = loadTensors(join(dir, 'out', 'seg-head.safetensors'));
    assert.equal(head.metadata.format, 'semaim.seghead/1');
    assert.deepEqual(head.tensors.get('linear.weight')!.shape, [2, 16]);
    for (const t of head.tensors.values()) t.dispose();
    const random = await run('random', join(dir, 'rand'));
    assert.equal(random.result.checkpoint.init, 'random');
    assert.notEqual(random.result.mIoU, r.result.mIoU);
    assert.throws(() => readSegprobeConfig(resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, epochs: 2, warmupEpochs: 2 })), /warmupEpochs/);
    assert.throws(() => readSegprobeConfig(resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, dataset: 'seg-folder' })), /needs --data-path/);
    // a plain object is resolved as the jobs resolve theirs: 'epoch' was ignored, and the missing device refused as 'undefined'
    assert.throws(
      () => readSegprobeConfig({ checkpoint: enc, epoch: 2 } as never),
      (e: unknown) => e instanceof OptionError && e.key === 'epoch' && /did you mean 'epochs'\?/.test(e.detail),
    );
    assert.deepEqual(
      readSegprobeConfig({ checkpoint: enc, epochs: 2 } as never),
      readSegprobeConfig(resolveOptions(SEGPROBE_OPTIONS, { checkpoint: enc, epochs: 2 })),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a segprobe that draws no figure into a folder holding an earlier run’s segprobe.png removes it: the figure never describes another result', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-fig-'));
  try {
    const enc = writeEncoder(dir);
    const factory = (r: { split: string }) => (r.split === 'train' ? squares(8, 1) : squares(4, 2));
    const run = async (figureImages: number) => {
      const o = resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, epochs: 1, batchSize: 4, outDir: join(dir, 'out'), figureImages, threads: 1 });
      return runSegprobe(readSegprobeConfig(o), o, factory, { progress: null });
    };
    const first = await run(2);
    assert.equal(first.figure, join(dir, 'out', 'segprobe.png'));
    assert.ok(existsSync(join(dir, 'out', 'segprobe.png')));
    const second = await run(0);
    assert.equal(second.figure, null);
    assert.equal(existsSync(join(dir, 'out', 'segprobe.png')), false, 'the first run’s figure beside the second run’s result');
    assert.ok(existsSync(join(dir, 'out', 'seg-head.safetensors')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runSegprobe refuses options other than those its config was read from: segprobe.json records them as its config', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-opts-'));
  try {
    const enc = writeEncoder(dir);
    const factory = (r: { split: string }) => (r.split === 'train' ? squares(8, 1) : squares(4, 2));
    const o = resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, epochs: 1, batchSize: 4, outDir: join(dir, 'out'), figureImages: 0, threads: 1 });
    await assert.rejects(
      runSegprobe(readSegprobeConfig(o), { ...o, epochs: 50 }, factory, { progress: null }),
      (e: Error) => e instanceof OptionError && e.key === 'options' && /its probe is .*"epochs":1.*theirs .*"epochs":50/.test(e.message),
    );
    assert.equal(existsSync(join(dir, 'out', 'segprobe.json')), false);
    // the options as given (a plain object: resolved, defaults filled in) are what the file records
    const given = { checkpoint: enc, epochs: 1, batchSize: 4, outDir: join(dir, 'out'), figureImages: 0, threads: 1 };
    const r = await runSegprobe(readSegprobeConfig(given as never), given, factory, { progress: null });
    const file = JSON.parse(readFileSync(r.path, 'utf8')) as SegprobeFile;
    assert.equal(file.config.epochs, 1);
    assert.equal(file.config.seed, 0, 'the default, filled in');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a segprobe killed right after committing its result (no figure) leaves no earlier segprobe.png beside it: the figure goes in the same commit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-fig-kill-'));
  const fs = require('node:fs') as typeof import('node:fs');
  const [rename, rm] = [fs.renameSync, fs.rmSync];
  try {
    const enc = writeEncoder(dir);
    const out = join(dir, 'out');
    const factory = (r: { split: string }) => (r.split === 'train' ? squares(8, 1) : squares(4, 2));
    const run = async (figureImages: number) => {
      const o = resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, epochs: 1, batchSize: 4, outDir: out, figureImages, threads: 1 });
      return runSegprobe(readSegprobeConfig(o), o, factory, { progress: null });
    };
    await run(2);
    assert.ok(existsSync(join(out, 'segprobe.png')));
    // the process "dies" at its first removal after segprobe.json is in place (the commit journal's, or the figure's)
    let committed = false;
    fs.renameSync = ((from: string, to: string) => {
      rename(from, to);
      if (to === join(out, 'segprobe.json')) committed = true;
    }) as typeof fs.renameSync;
    fs.rmSync = ((path: string, o?: import('node:fs').RmOptions) => {
      if (committed) throw new Error('killed');
      rm(path, o);
    }) as typeof fs.rmSync;
    await assert.rejects(run(0), /killed/);
    fs.renameSync = rename;
    fs.rmSync = rm;
    const file = JSON.parse(readFileSync(join(out, 'segprobe.json'), 'utf8')) as SegprobeFile;
    assert.equal(file.details.figure, undefined, 'the second run’s result is in place');
    assert.equal(existsSync(join(out, 'segprobe.png')), false, 'the first run’s figure beside the second run’s result');
  } finally {
    fs.renameSync = rename;
    fs.rmSync = rm;
    rmSync(dir, { recursive: true, force: true });
  }
});
test('the head predicts the test images --eval-batch-size at a time (its logits at the image size are C × H × W per image), on both paths', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-evalbatch-'));
  const forward = SegLinearHead.prototype.forward;
  const scored: number[] = [];
  SegLinearHead.prototype.forward = function (this: SegLinearHead, ...args: Parameters<typeof forward>) {
    if (!this.training) scored.push(args[0].shape[0]);
    return forward.apply(this, args);
  };
  try {
    const enc = writeEncoder(dir);
    const factory = (r: { split: string }) => (r.split === 'train' ? squares(8, 1) : squares(12, 2));
    for (const augment of ['none', 'crop-flip']) {
      scored.length = 0;
      const o = resolveOptions(
        SEGPROBE_OPTIONS,
        {},
        { checkpoint: enc, epochs: 1, batchSize: 4, augment, evalBatchSize: 5, outDir: join(dir, augment), figureImages: 0, threads: 1 },
      );
      await runSegprobe(readSegprobeConfig(o), o, factory, { progress: null });
      assert.deepEqual(scored, [5, 5, 2], `${augment}: the 12 test images scored 5 at a time`);
    }
  } finally {
    SegLinearHead.prototype.forward = forward;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('segprobe.json counts the training images a folder could use on both paths: an image without a mask is left out once, not twice', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-count-'));
  try {
    const enc = writeEncoder(dir);
    const root = join(dir, 'seg');
    for (const [split, n] of [
      ['train', 4],
      ['test', 2],
    ] as const)
      for (let i = 0; i < n; i++) {
        write(join(root, split, 'images', `a${i}.png`), await encode(picture(8, 8, i), 8, 8, 3, 'png'));
        write(
          join(root, split, 'masks', `a${i}.png`),
          pngEncode(
            8,
            8,
            0,
            8,
            Array.from({ length: 64 }, (_, k) => (k % 8 < 4 ? 0 : 1)),
          ),
        );
      }
    write(join(root, 'train', 'images', 'nomask.png'), await encode(picture(8, 8, 9), 8, 8, 3, 'png'));
    write(join(root, 'classes.txt'), 'left\nright\n');
    for (const augment of ['none', 'crop-flip']) {
      const o = resolveOptions(
        SEGPROBE_OPTIONS,
        {},
        { checkpoint: enc, dataset: 'seg-folder', dataPath: root, epochs: 1, batchSize: 2, augment, outDir: join(dir, augment), figureImages: 0, threads: 1 },
      );
      const r = await runSegprobe(readSegprobeConfig(o), o, (req) => makeSegData({ ...req, warn: () => {} }), { progress: null });
      assert.deepEqual(r.result.data.skipped.train.byReason, { 'no-mask': 1 });
      assert.equal(r.result.data.train, 4, `${augment}: 4 of the 5 training images have a mask`);
      assert.equal(r.result.data.test, 2);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a caller’s segmentation data whose class names are not one per class is refused, not written as another number of classes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-names-'));
  try {
    const enc = writeEncoder(dir);
    // 3 classes, 2 names: segprobe.json said 2 classes beside 3 per-class IoUs
    const factory = (r: { split: string }) => {
      const d = squares(r.split === 'train' ? 8 : 4, 1);
      return new MemorySegData(d.images, [d.size, 3, 8, 8], d.masks, 3, ['a', 'b']);
    };
    const o = resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, epochs: 1, batchSize: 4, outDir: join(dir, 'out'), figureImages: 0, threads: 1 });
    await assert.rejects(runSegprobe(readSegprobeConfig(o), o, factory, { progress: null }), {
      name: 'DataError',
      message: /train data: 2 class names for its 3 classes/,
    });
    assert.equal(existsSync(join(dir, 'out', 'segprobe.json')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('masks without a labelled pixel: a DataError, not an mIoU of null (test) or the scores of a head never trained (train)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-unlabelled-'));
  try {
    const enc = writeEncoder(dir);
    const ignoredEverywhere = (d: MemorySegData) => new MemorySegData(d.images, [d.size, 3, 8, 8], new Uint8Array(d.masks.length).fill(255), 2, d.classNames);
    for (const [split, augment] of [
      ['test', 'none'],
      ['train', 'none'],
      ['train', 'crop-flip'],
    ] as const) {
      const factory = (r: { split: string }) => {
        const d = r.split === 'train' ? squares(32, 1) : squares(12, 2);
        return r.split === split ? ignoredEverywhere(d) : d;
      };
      const outDir = join(dir, `${split}-${augment}`);
      const o = resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, epochs: 2, batchSize: 8, augment, outDir, figureImages: 0, threads: 1 });
      await assert.rejects(
        runSegprobe(readSegprobeConfig(o), o, factory, { progress: null }),
        (e: unknown) => e instanceof DataError && new RegExp(`^${split} data: no labelled pixel`).test((e as Error).message),
        `${split} masks all 255, --augment ${augment}`,
      );
      assert.equal(existsSync(join(outDir, 'segprobe.json')), false, 'no result written');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the segprobe command parses its flags, checks them before any data is read, and prints the table', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-'));
  try {
    const enc = writeEncoder(dir);
    let opened = 0;
    const cmd = makeSegprobeCommand(() => {
      opened++;
      return squares(16, opened);
    });
    const blocksError = (message: RegExp) => (e: Error) => e instanceof OptionError && e.key === 'blocks' && message.test(e.message);
    await assert.rejects(
      cmd.run(['--checkpoint', enc, '--blocks', 'last3']),
      blocksError(/'last3' asks for the last 3 blocks, but the encoder has 2 \(blocks 0\.\.1\)/),
    );
    await assert.rejects(cmd.run(['--checkpoint', enc, '--blocks', '0,7']), blocksError(/block 7 does not exist \(the encoder has blocks 0\.\.1\)/));
    await assert.rejects(cmd.run(['--checkpoint', enc, '--blocks', 'last0']), blocksError(/'last0' names no block/));
    await assert.rejects(cmd.run(['--checkpoint', join(dir, 'missing.safetensors')]), /does not exist/);
    assert.equal(opened, 0, 'no data opened for a bad command');
    const { result: rc, stdout } = await printed(() =>
      cmd.run(['--checkpoint', enc, '--epochs', '1', '--batch-size', '8', '--figure-images', '0', '--threads', '1', '--out-dir', join(dir, 'o')]),
    );
    assert.equal(rc, 0);
    assert.match(stdout, /\| linear probe, frozen encoder \(adamw, 1 ep, blocks last\) \| [\d.]+ \|/);
    assert.ok(stdout.endsWith(`wrote ${join(dir, 'o', 'segprobe.json')} and ${join(dir, 'o', 'seg-head.safetensors')}\n`), stdout);
    assert.ok(!existsSync(join(dir, 'o', 'segprobe.png')), '--figure-images 0: no figure');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a segmentation probe that fails frees its tensors: a mask label outside the classes mid-training, a batch larger than the data', async () => {
  const train = separablePatches(16, 3, 8, 1);
  const testSet = separablePatches(8, 3, 8, 2);
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-fail-'));
  const { encoder } = loadEncoder(writeEncoder(dir));
  const te = await extractSegFeatures(encoder, squares(8, 2), { batchSize: 8, blocks: [1], label: null });
  const few = squares(8, 1);
  try {
    await settleGarbage(); // (the probes let the event loop turn, where earlier garbage's finalizers would run)
    const start = torch.memoryStats().liveTensors;
    for (let i = 0; i < 3; i++) {
      // 2 classes, mask labels 0..2: the first step's loss throws after its batch was made
      await assert.rejects(segprobeOnFeatures(train, testSet, 2, { epochs: 1, batchSize: 8, lr: 1e-2, label: null }), /out of bounds|Target/);
      await assert.rejects(
        segprobeOnline(encoder, few, te, 2, { epochs: 1, batchSize: 64, lr: 1e-2, label: null, blocks: [1], augment: 'crop-flip' }),
        /no full batch/,
      );
    }
    assert.equal(torch.memoryStats().liveTensors, start, 'each failed probe freed its batch and its head');
  } finally {
    train.features.dispose();
    testSet.features.dispose();
    te.features.dispose();
    encoder.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a caller’s segmentation data with a mask value beyond its classes is refused by the extraction and by the online probe, naming the pixel; too few mask values too', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-badmask-'));
  const { encoder } = loadEncoder(writeEncoder(dir));
  const good = squares(8, 2);
  const te = await extractSegFeatures(encoder, good, { batchSize: 8, blocks: [1], label: null });
  try {
    const bad = (): MemorySegData => {
      const d = squares(8, 2);
      const masks = new Uint8Array(8 * 64);
      masks[64 + 3 * 8 + 4] = 2; // image 1, pixel (3, 4): class 2 of 2
      masks[2 * 64] = 255; // the ignore index is allowed
      return new MemorySegData(d.images, [8, 3, 8, 8], masks, 2, ['background', 'square']);
    };
    const message = /the data gave a batch that cannot be used: mask value 2 \(sample 1, pixel 3,4\) is outside 0\.\.1 and not the ignore index 255/;
    await assert.rejects(extractSegFeatures(encoder, bad(), { batchSize: 8, blocks: [1], label: null }), { name: 'DataError', message });
    await assert.rejects(segprobeOnline(encoder, bad(), te, 2, { epochs: 1, batchSize: 8, lr: 1e-2, label: null, blocks: [1], augment: 'none' }), message);
    // a mask value short of a mask per image: refused, not read past the batch's masks
    const short = squares(8, 2);
    const inner = short.batches.bind(short);
    short.batches = async function* (o) {
      for await (const b of inner(o)) yield { ...b, masks: b.masks.subarray(0, b.masks.length - 1) };
    };
    await assert.rejects(extractSegFeatures(encoder, short, { batchSize: 8, blocks: [1], label: null }), {
      name: 'DataError',
      message: /the data gave a batch that cannot be used: it has 8 images of 8×8 and 511 mask values \(512 needed\)/,
    });
  } finally {
    te.features.dispose();
    encoder.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a caller’s segmentation data whose ignore index is not 255 is refused by the extraction and by the online probe, not failed deep in the loss', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-ignore-'));
  const { encoder } = loadEncoder(writeEncoder(dir));
  const te = await extractSegFeatures(encoder, squares(8, 2), { batchSize: 8, blocks: [1], label: null });
  try {
    // unlabelled pixels marked 254: the data says so, but the loss and the mIoU ignore 255 only
    const other = (): MemorySegData => {
      const d = squares(8, 1);
      for (let i = 0; i < d.masks.length; i += 7) d.masks[i] = 254;
      Object.defineProperty(d, 'ignoreIndex', { value: 254 });
      return d;
    };
    const message = /ignore index 254.*255/;
    await assert.rejects(extractSegFeatures(encoder, other(), { batchSize: 8, blocks: [1], label: null }), { name: 'DataError', message });
    await assert.rejects(segprobeOnline(encoder, other(), te, 2, { epochs: 1, batchSize: 8, lr: 1e-2, label: null, blocks: [1], augment: 'crop-flip' }), {
      name: 'DataError',
      message,
    });
  } finally {
    te.features.dispose();
    encoder.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('data-parallel, a segmentation feature extraction that fails gathering the figure images frees its features', async () => {
  // (the features were kept before firstImages' all-reduce, and nothing disposed them when it threw)
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-gather-fail-'));
  const { encoder } = loadEncoder(writeEncoder(dir));
  let sums = 0;
  const group = {
    rank: 0,
    worldSize: 2,
    device: 'cpu',
    allReduce: async () => {},
    anyTrue: async (flag: boolean) => flag,
    sumNumbers: <T extends Float32Array | Float64Array>(v: T): T => {
      if (++sums === 2) throw new Error('the collective failed');
      return v;
    },
  } as unknown as ProcessGroup;
  try {
    const data = squares(8, 2);
    await settleGarbage(); // (the extraction lets the event loop turn, where earlier garbage's finalizers would run)
    const start = torch.memoryStats().liveTensors;
    await assert.rejects(extractSegFeatures(encoder, data, { batchSize: 4, blocks: [1], label: null, keepImages: 2, group }), /the collective failed/);
    assert.equal(sums, 2, 'it failed at the figure images');
    assert.equal(torch.memoryStats().liveTensors, start, 'no tensor left');
  } finally {
    encoder.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a training set that is no multiple of the batch drops its last batch; a batch without a labelled pixel is passed over, not trained on', async () => {
  // 20 images in batches of 8: 2 steps an epoch (a third of 4 images would not fill the batch)
  const train = separablePatches(20, 5, 12, 1);
  const testSet = separablePatches(8, 5, 12, 2);
  try {
    const r = await segprobeOnFeatures(train, testSet, 5, { epochs: 1, batchSize: 8, lr: 0.1, seed: 0, label: null });
    assert.equal(r.history.length, 1);
    r.head.dispose();
    // image 3 all ignored: in batches of one, its step has no pixel to learn from (its loss would be NaN)
    const hw = 24 * 24;
    train.masks.fill(255, 3 * hw, 4 * hw);
    const one = await segprobeOnFeatures(train, testSet, 5, { epochs: 1, batchSize: 1, lr: 0.01, seed: 0, label: null });
    assert.ok(Number.isFinite(one.history[0].loss), `loss ${one.history[0].loss}`);
    one.head.dispose();
  } finally {
    train.features.dispose();
    testSet.features.dispose();
  }
});

test('segprobe --augment crop-flip with fewer training images than a batch is refused before the test features are extracted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-fewonline-'));
  try {
    const enc = writeEncoder(dir);
    let testBatches = 0;
    const factory = (r: { split: string }) => {
      if (r.split === 'train') return squares(3, 1);
      const d = squares(4, 2);
      const batches = d.batches.bind(d);
      d.batches = (o) => {
        testBatches++;
        return batches(o);
      };
      return d;
    };
    const o = resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, epochs: 1, batchSize: 16, augment: 'crop-flip', outDir: join(dir, 'out'), threads: 1 });
    await assert.rejects(
      runSegprobe(readSegprobeConfig(o), o, factory, { progress: null }),
      (e: Error) => e instanceof OptionError && e.key === 'batchSize' && /16 exceeds the 3 training images/.test(e.message),
    );
    assert.equal(testBatches, 0, 'no test image was read');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("segprobe --batch-size 1 on an encoder of one patch is refused before any feature: its head's BatchNorm would see one value per channel", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sp-onepatch-'));
  try {
    const enc = writeEncoder(dir, { imgSize: 8, patchSize: 8, inChans: 3, embedDim: 16, depth: 1, numHeads: 2, mlpRatio: 2 });
    let read = 0;
    const factory = (r: { split: string }) => {
      const d = r.split === 'train' ? squares(4, 1) : squares(4, 2);
      const batches = d.batches.bind(d);
      d.batches = (o) => {
        read++;
        return batches(o);
      };
      return d;
    };
    for (const augment of ['none', 'crop-flip']) {
      const o = resolveOptions(SEGPROBE_OPTIONS, {}, { checkpoint: enc, epochs: 1, batchSize: 1, augment, outDir: join(dir, augment), threads: 1 });
      await assert.rejects(
        runSegprobe(readSegprobeConfig(o), o, factory, { progress: null }),
        (e: Error) => e instanceof OptionError && e.key === 'batchSize' && /one patch/.test(e.message),
        augment,
      );
    }
    assert.equal(read, 0, 'no image was read');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
