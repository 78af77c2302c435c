// Segmentation data: label PNGs read raw, the synthetic objects as label maps, the images/ + masks/
// folder layout with its bad-input rules, and masks moved with their images (nearest-neighbour).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { decodeLabelPng } from '../../src/data/codecs/label-png';
import { renderSynthetic, syntheticConfig } from '../../src/data/sources/synthetic';
import { syntheticSegSource } from '../../src/data/sources/seg-synthetic';
import { segFolder } from '../../src/data/sources/seg-folder';
import { SegLoader, makeSegData } from '../../src/data/seg-loader';
import { SkipTally, type SegBatch, type SegData } from '../../src/data/seg-streams';
import { crc32, deflateSync } from 'node:zlib';
import { chunk, encode, pngEncode, picture, sharp, tempDir, write } from './helpers';
import { OptionError } from '../../src/util/options';

async function all(data: SegData, augment: 'none' | 'crop-flip' = 'none', batchSize = 4): Promise<SegBatch[]> {
  const out: SegBatch[] = [];
  for await (const b of data.batches({ batchSize, shuffle: false, epoch: 0, augment })) out.push(b);
  return out;
}

/** `png` (a Buffer made by pngEncode) with its IHDR edited by `edit` and its CRC-32 made right again, as a forged file has it. */
function editIhdr(png: Buffer, edit: (b: Buffer) => void): Buffer {
  edit(png);
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  return png;
}

test('label PNGs give raw indices: 8-bit grey, palette indices (not colours), 4-bit grey unscaled, Adam7', async () => {
  const vals = Array.from({ length: 6 * 5 }, (_, i) => (i * 7) % 12);
  vals[3] = 255;
  assert.deepEqual([...decodeLabelPng(pngEncode(6, 5, 0, 8, vals)).data], vals);
  const plte = new Uint8Array(12 * 3).map((_, i) => (i * 37) % 256);
  const pal = decodeLabelPng(
    pngEncode(
      6,
      5,
      3,
      8,
      vals.map((v) => v % 12),
      { plte },
    ),
  );
  assert.deepEqual(
    [...pal.data],
    vals.map((v) => v % 12),
    'palette PNG: the index, not the colour',
  );
  const four = decodeLabelPng(
    pngEncode(
      6,
      5,
      0,
      4,
      vals.map((v) => v % 12),
    ),
  );
  assert.deepEqual(
    [...four.data],
    vals.map((v) => v % 12),
    '4-bit grey: not scaled to 0..255',
  );
  const big = Array.from({ length: 13 * 11 }, (_, i) => (i * 5) % 150);
  const interlaced = await sharp(Buffer.from(big), { raw: { width: 13, height: 11, channels: 1 } })
    .toColourspace('b-w')
    .png({ progressive: true })
    .toBuffer();
  assert.deepEqual([interlaced[24], interlaced[25], interlaced[28]], [8, 0, 1], 'sharp wrote an 8-bit grey interlaced PNG');
  const d = decodeLabelPng(interlaced);
  assert.deepEqual([d.width, d.height], [13, 11]);
  assert.deepEqual([...d.data], big);
  assert.throws(() => decodeLabelPng(pngEncode(2, 2, 2, 8, new Array(12).fill(1))), /colour type 2 \(RGB\).*grey or palette/);
  assert.throws(() => decodeLabelPng(pngEncode(2, 1, 0, 16, [3, 300])), /mask value 300/);
  // a header claiming 30000×30000 is refused before anything is inflated, as for images
  const forged = editIhdr(Buffer.from(pngEncode(2, 2, 0, 8, [0, 1, 2, 3])), (b) => {
    b.writeUInt32BE(30000, 16);
    b.writeUInt32BE(30000, 20);
  });
  assert.throws(
    () => decodeLabelPng(forged),
    (e: Error & { reason?: string }) => e.reason === 'too-large' && /mask PNG of 30000×30000/.test(e.message),
  );
  // data that inflates far beyond what IHDR declares is refused instead of filling memory
  const small = editIhdr(Buffer.from(pngEncode(1024, 1100, 0, 8, new Array(1024 * 1100).fill(7))), (b) => {
    b.writeUInt32BE(1, 16);
    b.writeUInt32BE(1, 20);
  });
  assert.throws(() => decodeLabelPng(small), /inflates to more than twice/);
});

test('label PNGs: the refused kinds (grey + alpha, 16-bit palette, a value over 255), the pixel limit given, 16-bit rows unfiltered two bytes a sample', () => {
  assert.throws(() => decodeLabelPng(pngEncode(2, 1, 4, 8, [1, 255, 2, 255])), /colour type 4 \(grey \+ alpha\)/);
  const pal16 = editIhdr(pngEncode(2, 1, 0, 16, [1, 2]), (b) => (b[25] = 3)); // IHDR colour type: palette, at 16 bits (PNG allows palettes of 1–8 bits)
  assert.throws(() => decodeLabelPng(pal16), /corrupt PNG: colour type 3, depth 16/);
  assert.deepEqual([...decodeLabelPng(pngEncode(2, 1, 0, 16, [3, 255])).data], [3, 255], '255 (ignore) is a mask value');
  assert.throws(() => decodeLabelPng(pngEncode(2, 1, 0, 16, [3, 256])), /mask value 256/);
  const sixteen = pngEncode(4, 4, 0, 8, new Array(16).fill(1));
  assert.equal(decodeLabelPng(sixteen, 16).width, 4);
  assert.throws(
    () => decodeLabelPng(sixteen, 15),
    (e: Error & { reason?: string }) => e.reason === 'too-large' && /limit of 15 pixels/.test(e.message),
  );
  // a 16-bit row with the Sub filter: each byte less the byte one *sample* (2 bytes) before it
  const ihdr = Buffer.from([0, 0, 0, 3, 0, 0, 0, 1, 16, 0, 0, 0, 0]);
  const row = Buffer.from([1, 0, 3, 0, 2, 0, 1]); // samples 3, 5, 6
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const sub16 = Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(row)), chunk('IEND', new Uint8Array(0))]);
  assert.deepEqual([...decodeLabelPng(sub16).data], [3, 5, 6]);
});

test('synthetic objects as label maps: background 0, shape k as 1 + k (or object 1), pixel for pixel the object mask', async () => {
  const cfg = syntheticConfig({ size: 32, count: 6, seed: 3, split: 'val' });
  for (const segClasses of ['shapes', 'object'] as const) {
    const data = new SegLoader(syntheticSegSource({ size: 32, count: 6, seed: 3, split: 'val', segClasses }), 32);
    assert.equal(data.numClasses, segClasses === 'shapes' ? 11 : 2);
    assert.equal(data.classNames[0], 'background');
    const [b] = await all(data, 'none', 6);
    assert.deepEqual(b.shape, [6, 3, 32, 32]);
    for (let i = 0; i < 6; i++) {
      const s = renderSynthetic(cfg, i);
      const m = s.image.mask!;
      const want = Array.from(m.data.subarray(0, 32 * 32), (v) => (v ? (segClasses === 'shapes' ? 1 + s.label : 1) : 0));
      assert.deepEqual([...b.masks.subarray(i * 1024, (i + 1) * 1024)], want, `image ${i}`);
    }
  }
});

test('seg batches: a seeded order per epoch (each a permutation, another each epoch); dropLast drops the short last batch', async () => {
  const data = new SegLoader(syntheticSegSource({ size: 16, count: 10, seed: 3, split: 'val', segClasses: 'object' }), 16);
  const order = async (epoch: number, dropLast = false): Promise<number[][]> => {
    const out: number[][] = [];
    for await (const b of data.batches({ batchSize: 4, shuffle: true, epoch, augment: 'none', seed: 1, dropLast })) out.push([...b.indices]);
    return out;
  };
  const [e0, e1, e0again] = [await order(0), await order(1), await order(0)];
  for (const e of [e0, e1])
    assert.deepEqual(
      e.flat().sort((a, b) => a - b),
      Array.from({ length: 10 }, (_, i) => i),
    );
  assert.deepEqual(e0again, e0, 'the same epoch gives the same order');
  assert.notDeepEqual(e1.flat(), e0.flat(), 'another epoch, another order');
  assert.deepEqual(
    e0.map((b) => b.length),
    [4, 4, 2],
  );
  assert.deepEqual(await order(0, true), e0.slice(0, 2), 'dropLast: the same batches without the short last one');
});

test('resized masks are resampled nearest-neighbour: labels are never blended', async () => {
  // 32² synthetic images at 24²: resize + centre crop; every mask value must be 0 or the image's class.
  const data = makeSegData({ split: 'train', dataset: 'synthetic', imgSize: 24, limit: 8, seed: 0 });
  const cfg = syntheticConfig({ size: 24, count: 8, seed: 0 });
  for (const augment of ['none', 'crop-flip'] as const) {
    const [b] = await all(data, augment, 8);
    assert.deepEqual(b.shape, [8, 3, 24, 24]);
    for (let i = 0; i < 8; i++) {
      const label = 1 + renderSynthetic(cfg, b.indices[i]).label;
      const seen = new Set(b.masks.subarray(i * 576, (i + 1) * 576));
      assert.ok(
        [...seen].every((v) => v === 0 || v === label),
        `image ${i}: ${[...seen]}`,
      );
      assert.ok(seen.has(label), `image ${i} keeps its object (${augment})`);
    }
  }
});

test('seg-folder: a missing mask, a mask of the wrong size, a bad label, a truncated image are skipped and counted', async () => {
  const { dir, cleanup } = tempDir('semaim-seg-');
  const warnings: string[] = [];
  try {
    write(join(dir, 'classes.txt'), 'sky\nground\nthing\n');
    const mask = (w: number, h: number, f: (x: number, y: number) => number) =>
      pngEncode(
        w,
        h,
        0,
        8,
        Array.from({ length: w * h }, (_, i) => f(i % w, Math.floor(i / w))),
      );
    for (const split of ['train', 'test']) {
      const root = join(dir, split);
      write(join(root, 'images', 'a.png'), await encode(picture(20, 16), 20, 16, 3, 'png'));
      write(
        join(root, 'masks', 'a.png'),
        mask(20, 16, (x, y) => (y < 5 ? 0 : x < 10 ? 1 : 2)),
      );
      write(join(root, 'images', 'sub', 'b.jpg'), await encode(picture(20, 16, 3), 20, 16, 3, 'jpeg'));
      write(
        join(root, 'masks', 'sub', 'b.png'),
        mask(20, 16, (x) => (x < 8 ? 255 : 1)),
      );
      write(join(root, 'images', 'no-mask.png'), await encode(picture(20, 16, 5), 20, 16, 3, 'png'));
      write(join(root, 'images', 'small-mask.png'), await encode(picture(20, 16, 6), 20, 16, 3, 'png'));
      write(
        join(root, 'masks', 'small-mask.png'),
        mask(10, 8, () => 0),
      );
      write(join(root, 'images', 'bad-label.png'), await encode(picture(20, 16, 7), 20, 16, 3, 'png'));
      write(
        join(root, 'masks', 'bad-label.png'),
        mask(20, 16, (x) => (x === 4 ? 7 : 0)),
      );
      write(join(root, 'images', 'corrupt.jpg'), new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
      write(
        join(root, 'masks', 'corrupt.png'),
        mask(20, 16, () => 0),
      );
    }
    const data = makeSegData({ split: 'train', dataset: 'seg-folder', dataPath: dir, imgSize: 16, seed: 0, warn: (l) => warnings.push(l) });
    assert.equal(data.numClasses, 3);
    assert.deepEqual(data.classNames, ['sky', 'ground', 'thing']);
    const batches = await all(data, 'none', 4);
    const got = batches.flatMap((b) => [...b.indices]);
    assert.equal(got.length, 2, 'two usable pairs');
    // Batches are positions of the listing (a, bad-label, corrupt, small-mask | sub/b) minus the unusable:
    // a batch is shorter rather than filled from the next one, so several ranks can split it.
    assert.deepEqual(
      batches.map((b) => [b.shape[0], [...b.slots], b.globalSize]),
      [
        [1, [0], 4],
        [1, [0], 1],
      ],
    );
    const s = data.skipped();
    assert.equal(s.count, 4);
    assert.deepEqual(s.byReason, { 'no-mask': 1, 'mask-size': 1, 'mask-labels': 1, truncated: 1 });
    assert.ok(s.samples.some((x) => x.reason === 'mask-size' && /10×8, its image 20×16/.test(x.message)));
    assert.ok(s.samples.some((x) => x.reason === 'mask-labels' && /label 7, outside the 3 classes/.test(x.message)));
    assert.equal(warnings.length, 4, 'each skipped sample named once on stderr');
    // A second pass skips the same samples without counting or warning again.
    await all(data, 'none', 4);
    assert.equal(data.skipped().count, 4);
    assert.equal(warnings.length, 4);
    // 20×16 → evaluation transform (resize short side to 18, centre crop 16): the mask follows, nearest.
    const b = batches[0];
    assert.deepEqual(b.shape.slice(1), [3, 16, 16]);
    const m = b.masks.subarray(0, 256);
    assert.ok(
      [...m].every((v) => v <= 2),
      'labels stay class indices',
    );
    assert.equal(m[0], 0, 'top rows are sky');
    assert.equal(m[15 * 16 + 1], 1, 'bottom left is ground');
    assert.equal(m[15 * 16 + 14], 2, 'bottom right is thing');
    const mb = batches[1].masks.subarray(0, 256);
    assert.equal(mb[0], 255, 'ignore stays 255');
    // --reduce-zero-label: 0 → ignore, k → k − 1 (and 255 stays ignore).
    const reduced = makeSegData({
      split: 'test',
      dataset: 'seg-folder',
      dataPath: dir,
      imgSize: 16,
      seed: 0,
      reduceZeroLabel: true,
      numClasses: 3,
      warn: () => {},
    });
    const [rb] = await all(reduced, 'none', 4);
    assert.equal(rb.masks[0], 255, 'sky (0) became ignore');
    assert.equal(rb.masks[15 * 16 + 1], 0, 'ground (1) became 0');

    // Data-parallel: ranks reading their slices of every global batch (2 per rank × 2 ranks) see, in
    // rank order, the samples one process reads in batches of 4 (same pixels after the same crop-flip);
    // every rank yields every global batch, an empty part included.
    const open = () => makeSegData({ split: 'train', dataset: 'seg-folder', dataPath: dir, imgSize: 16, seed: 0, warn: () => {} });
    for (const shuffle of [false, true]) {
      const o = { shuffle, epoch: 1, augment: 'crop-flip' as const, seed: 3 };
      const one: SegBatch[] = [];
      for await (const x of open().batches({ ...o, batchSize: 4 })) one.push(x);
      const ranks: SegBatch[][] = [[], []];
      for (const rank of [0, 1]) for await (const x of open().batches({ ...o, batchSize: 2, slice: { rank, worldSize: 2 } })) ranks[rank].push(x);
      assert.equal(ranks[0].length, 2, 'two global batches (4 + 1 positions) on rank 0');
      assert.equal(ranks[1].length, 2, 'and on rank 1');
      assert.equal(ranks[0][1].shape[0], 0, "rank 0's part of the last batch (1 position) is empty, and yielded");
      const flat = (bs: SegBatch[]) => ({
        indices: bs.flatMap((b) => [...b.indices]),
        slots: bs.map((b) => [...b.slots]),
        images: bs.flatMap((b) => [...b.images]),
        masks: bs.flatMap((b) => [...b.masks]),
      });
      const merged = [0, 1].map((j) => [ranks[0][j], ranks[1][j]]);
      const got = flat(merged.flat());
      const want = flat(one);
      assert.deepEqual(got.indices, want.indices, `shuffle ${shuffle}: the same samples in the same order`);
      const slots = merged.map((p) => p.flatMap((b) => [...b.slots])).filter((x) => x.length); // one process yields no empty batch
      assert.deepEqual(slots, want.slots, 'their slots in the global batch');
      assert.deepEqual(got.images, want.images, 'the same pixels');
      assert.deepEqual(got.masks, want.masks, 'the same masks');
    }
  } finally {
    cleanup();
  }
});

test('makeSegData refuses a request value of another kind, naming its key: reduceZeroLabel "false" (a truthy string) made label 0 ignored', async () => {
  const { dir, cleanup } = tempDir('semaim-seg-kinds-');
  try {
    const root = join(dir, 'train');
    const mask = (w: number, h: number, f: (x: number) => number) =>
      pngEncode(
        w,
        h,
        0,
        8,
        Array.from({ length: w * h }, (_, i) => f(i % w)),
      );
    write(join(dir, 'classes.txt'), 'sky\nground\n');
    write(join(root, 'images', 'a.png'), await encode(picture(16, 16, 1), 16, 16, 3, 'png'));
    write(
      join(root, 'masks', 'a.png'),
      mask(16, 16, (x) => (x < 8 ? 0 : 1)),
    );
    const req = { split: 'train' as const, dataset: 'seg-folder', dataPath: dir, imgSize: 16, seed: 0, warn: () => {} };
    const refused = (key: string) => (e: unknown) => e instanceof OptionError && e.key === key && /^expected /.test(e.detail);
    assert.throws(() => makeSegData({ ...req, reduceZeroLabel: 'false' as never }), refused('reduceZeroLabel'));
    assert.throws(() => makeSegData({ ...req, warn: 'stderr' as never }), refused('warn'));
    assert.throws(() => makeSegData({ ...req, numClasses: '2' as never }), refused('numClasses'));
    const [b] = await all(makeSegData({ ...req, reduceZeroLabel: false }), 'none', 4);
    assert.equal(b.masks[0], 0, 'label 0 kept');
  } finally {
    cleanup();
  }
});
test('seg-folder: a mask label equal to the number of classes is out of range (skipped); a folder with no usable sample is an error', async () => {
  const { dir, cleanup } = tempDir('semaim-seg-');
  const warnings: string[] = [];
  try {
    write(join(dir, 'classes.txt'), 'sky\nground\nthing\n');
    for (const split of ['train', 'test']) {
      write(join(dir, split, 'images', 'a.png'), await encode(picture(8, 8), 8, 8, 3, 'png'));
      write(
        join(dir, split, 'masks', 'a.png'),
        pngEncode(
          8,
          8,
          0,
          8,
          Array.from({ length: 64 }, (_, i) => (i === 9 ? 3 : 2)),
        ),
      );
    }
    const data = makeSegData({ split: 'train', dataset: 'seg-folder', dataPath: dir, imgSize: 8, seed: 0, warn: (l) => warnings.push(l) });
    await assert.rejects(all(data, 'none', 2), /none of its 1 samples could be used/);
    assert.deepEqual(data.skipped().byReason, { 'mask-labels': 1 });
    assert.ok(
      warnings.some((w) => /holds label 3, outside the 3 classes/.test(w)),
      warnings.join('\n'),
    );
  } finally {
    cleanup();
  }
});

test('seg-folder: images a.jpg and a.png sharing the mask a.png, or masks a.png and a.PNG of one image, are left out as mask-ambiguous', async () => {
  const { dir, cleanup } = tempDir('semaim-seg-');
  try {
    write(join(dir, 'classes.txt'), 'x\ny\n');
    const mask = (v: number) => pngEncode(8, 8, 0, 8, new Array<number>(64).fill(v));
    const root = join(dir, 'train');
    write(join(root, 'images', 'a.jpg'), await encode(picture(8, 8, 1), 8, 8, 3, 'jpeg'));
    write(join(root, 'images', 'a.png'), await encode(picture(8, 8, 2), 8, 8, 3, 'png'));
    write(join(root, 'masks', 'a.png'), mask(1));
    write(join(root, 'images', 'b.png'), await encode(picture(8, 8, 3), 8, 8, 3, 'png'));
    write(join(root, 'masks', 'b.png'), mask(0));
    write(join(root, 'masks', 'b.PNG'), mask(1));
    write(join(root, 'images', 'c.png'), await encode(picture(8, 8, 4), 8, 8, 3, 'png'));
    write(join(root, 'masks', 'c.png'), mask(0));
    const source = segFolder(dir, { split: 'train' });
    assert.deepEqual(
      Array.from({ length: source.length }, (_, i) => source.name(i)),
      [join(root, 'images', 'c.png')],
    );
    assert.deepEqual(
      source.listingSkips.map((s) => [s.name, s.reason]),
      [
        [join(root, 'images', 'a.jpg'), 'mask-ambiguous'],
        [join(root, 'images', 'a.png'), 'mask-ambiguous'],
        [join(root, 'images', 'b.png'), 'mask-ambiguous'],
      ],
    );
    assert.match(source.listingSkips[0].message, /images .*a\.jpg and .*a\.png share the mask .*masks\/a\.png: rename one/);
    assert.match(source.listingSkips[2].message, /masks .*b\.PNG and .*b\.png have its name: keep one/);
  } finally {
    cleanup();
  }
});

test('seg-folder: a folder whose every image is left out says why, by reason, not "without a mask" for an ambiguous one', async () => {
  const { dir, cleanup } = tempDir('semaim-seg-');
  try {
    write(join(dir, 'classes.txt'), 'x\ny\n');
    const root = join(dir, 'train');
    write(join(root, 'images', 'a.jpg'), await encode(picture(8, 8, 1), 8, 8, 3, 'jpeg'));
    write(join(root, 'images', 'a.png'), await encode(picture(8, 8, 2), 8, 8, 3, 'png'));
    write(join(root, 'masks', 'a.png'), pngEncode(8, 8, 0, 8, new Array<number>(64).fill(1)));
    write(join(root, 'images', 'b.png'), await encode(picture(8, 8, 3), 8, 8, 3, 'png'));
    // before: "no usable sample (3 image(s) without a mask)", though two of them have one
    assert.throws(
      () => makeSegData({ split: 'train', dataset: 'seg-folder', dataPath: dir, imgSize: 8, seed: 0, warn: () => {} }),
      (e: Error) =>
        /no usable sample: 3 image\(s\) left out \(2 mask-ambiguous, 1 no-mask\); first: .*a\.jpg: images /.test(e.message) || assert.fail(e.message),
    );
  } finally {
    cleanup();
  }
});

test('seg-folder: the test split is val/ where there is no test/ (ADE20K, VOC), test/ where both are', async () => {
  const { dir, cleanup } = tempDir('semaim-seg-');
  try {
    write(join(dir, 'classes.txt'), 'x\ny\n');
    for (const split of ['train', 'val']) {
      write(join(dir, split, 'images', `${split}.png`), await encode(picture(8, 8, 1), 8, 8, 3, 'png'));
      write(join(dir, split, 'masks', `${split}.png`), pngEncode(8, 8, 0, 8, new Array<number>(64).fill(1)));
    }
    // before: "segmentation folder: <root>/test/images is missing"
    assert.equal(segFolder(dir, { split: 'test' }).name(0), join(dir, 'val', 'images', 'val.png'));
    assert.equal(segFolder(dir, { split: 'train' }).name(0), join(dir, 'train', 'images', 'train.png'));
    write(join(dir, 'test', 'images', 'test.png'), await encode(picture(8, 8, 1), 8, 8, 3, 'png'));
    write(join(dir, 'test', 'masks', 'test.png'), pngEncode(8, 8, 0, 8, new Array<number>(64).fill(1)));
    assert.equal(segFolder(dir, { split: 'test' }).name(0), join(dir, 'test', 'images', 'test.png'));
  } finally {
    cleanup();
  }
});

test('seg-folder: clear errors for a wrong layout or a missing class list', () => {
  const { dir, cleanup } = tempDir('semaim-seg-');
  try {
    assert.throws(
      () => makeSegData({ split: 'train', dataset: 'seg-folder', dataPath: dir, imgSize: 16, seed: 0 }),
      /train\/images is missing \(expected <root>/,
    );
    write(join(dir, 'train', 'images', 'a.png'), pngEncode(2, 2, 0, 8, [0, 0, 0, 0]));
    write(join(dir, 'train', 'masks', 'a.png'), pngEncode(2, 2, 0, 8, [0, 0, 0, 0]));
    assert.throws(() => makeSegData({ split: 'train', dataset: 'seg-folder', dataPath: dir, imgSize: 16, seed: 0 }), /no classes.txt .*\(--num-classes\)/);
    assert.throws(() => makeSegData({ split: 'train', dataset: 'cifar10', imgSize: 16, seed: 0 }), /has no segmentation masks/);
    // an unknown key is refused naming it (seg_classes was ignored: the run got the default 'shapes')
    assert.throws(() => makeSegData({ split: 'train', dataset: 'synthetic', imgSize: 16, seed: 0, seg_classes: 'object' } as never), {
      name: 'OptionError',
      message: /^option 'seg_classes': unknown option; did you mean 'segClasses'\? \(known: /,
    });
    mkdirSync(join(dir, 'classes.txt'));
    assert.throws(
      () => makeSegData({ split: 'train', dataset: 'seg-folder', dataPath: dir, imgSize: 16, seed: 0 }),
      /classes\.txt is a folder, not a regular file$/,
    );
  } finally {
    cleanup();
  }
});

test('seg-folder: a masks sub-folder that cannot be listed is an error naming it, not every image without a mask', async () => {
  const { dir, cleanup } = tempDir('semaim-seg-');
  const fs = require('node:fs') as typeof import('node:fs');
  const readdirSync = fs.readdirSync;
  try {
    write(join(dir, 'classes.txt'), 'sky\nground\n');
    for (const name of ['a', 'sub/b']) {
      write(join(dir, 'train', 'images', `${name}.png`), await encode(picture(8, 8), 8, 8, 3, 'png'));
      write(join(dir, 'train', 'masks', `${name}.png`), pngEncode(8, 8, 0, 8, new Array(64).fill(1)));
    }
    const unreadable = join(dir, 'train', 'masks', 'sub');
    (fs as { readdirSync: unknown }).readdirSync = (p: unknown, ...a: unknown[]) => {
      if (String(p) === unreadable) throw Object.assign(new Error(`EACCES: permission denied, scandir '${unreadable}'`), { code: 'EACCES' });
      return (readdirSync as (...b: unknown[]) => unknown)(p, ...a);
    };
    assert.throws(
      () => makeSegData({ split: 'train', dataset: 'seg-folder', dataPath: dir, imgSize: 8, seed: 0 }),
      (e: Error) => /segmentation folder: cannot read .*masks.*cannot list .*masks\/sub.*EACCES/.test(e.message),
    );
  } finally {
    (fs as { readdirSync: unknown }).readdirSync = readdirSync;
    cleanup();
  }
});

test('seg-folder: --max-image-pixels refuses large images and masks (skipped, counted as too-large)', async () => {
  const { dir, cleanup } = tempDir('semaim-seg-pixels-');
  try {
    write(join(dir, 'classes.txt'), 'a\nb\n');
    for (const [name, w, h] of [
      ['small', 20, 16],
      ['large', 40, 30],
    ] as const) {
      write(join(dir, 'train', 'images', `${name}.png`), await encode(picture(w, h), w, h, 3, 'png'));
      write(join(dir, 'train', 'masks', `${name}.png`), pngEncode(w, h, 0, 8, new Array(w * h).fill(1)));
    }
    for (const [limit, usable] of [
      [undefined, 2],
      [1000, 1], // 40 × 30 = 1,200 pixels
    ] as const) {
      const data = makeSegData({
        split: 'train',
        dataset: 'seg-folder',
        dataPath: dir,
        imgSize: 16,
        seed: 0,
        imageInput: limit === undefined ? undefined : { maxImagePixels: limit, exifOrientation: 'ignore' },
        warn: () => {},
      });
      const got = (await all(data)).flatMap((b) => [...b.indices]);
      assert.equal(got.length, usable, `limit ${limit}`);
      assert.deepEqual(data.skipped().byReason, usable === 2 ? {} : { 'too-large': 1 });
    }
  } finally {
    cleanup();
  }
});

test('seg-folder: a file larger than an image within the pixel limit is skipped unread (too-large); a FIFO as an image or a mask is left out, without hanging', async () => {
  const { dir, cleanup } = tempDir('semaim-seg-hostile-');
  try {
    write(join(dir, 'classes.txt'), 'a\nb\n');
    const [w, h] = [20, 16];
    for (const name of ['good', 'fifo-image', 'fifo-mask', 'huge']) {
      write(join(dir, 'train', 'images', `${name}.png`), await encode(picture(w, h), w, h, 3, 'png'));
      write(join(dir, 'train', 'masks', `${name}.png`), pngEncode(w, h, 0, 8, new Array(w * h).fill(1)));
    }
    for (const f of [join(dir, 'train', 'images', 'fifo-image.png'), join(dir, 'train', 'masks', 'fifo-mask.png')]) {
      rmSync(f);
      execFileSync('mkfifo', [f]);
    }
    // 8 × 1,000 pixels + 1 MiB is what an image within --max-image-pixels 1000 can take: this file is 2 MiB
    const huge = Buffer.alloc(2 << 20);
    (await encode(picture(w, h), w, h, 3, 'png')).copy(huge);
    write(join(dir, 'train', 'images', 'huge.png'), huge);
    // In a child process with a time limit: reading a FIFO blocks the thread, so a regression would hang the suite.
    const dist = join(__dirname, '..', '..');
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `const { makeSegData } = require(${JSON.stringify(join(dist, 'src/data/seg-loader'))});
         (async () => {
           const data = makeSegData({ split: 'train', dataset: 'seg-folder', dataPath: ${JSON.stringify(dir)}, imgSize: 16, seed: 0,
             imageInput: { maxImagePixels: 1000, exifOrientation: 'ignore' }, warn: () => {} });
           let n = 0;
           for await (const b of data.batches({ batchSize: 4, shuffle: false, epoch: 0, augment: 'none' })) n += b.indices.length;
           console.log(JSON.stringify({ n, skipped: data.skipped().byReason }));
         })();`,
      ],
      { timeout: 30_000, encoding: 'utf8' },
    );
    assert.notEqual((r.error as NodeJS.ErrnoException | undefined)?.code, 'ETIMEDOUT', 'hung on a FIFO');
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout.trim()) as { n: number; skipped: Record<string, number> };
    assert.equal(got.n, 1, 'only the good image is used');
    // the listing takes regular files only: the FIFO image is not a sample, the FIFO mask leaves its image without one
    assert.deepEqual(got.skipped, { 'no-mask': 1, 'too-large': 1 });
  } finally {
    cleanup();
  }
});

test('a skipped sample whose name or message holds a newline is warned about on one line, the name quoted (a log parser read two lines)', () => {
  const lines: string[] = [];
  const tally = new SkipTally('segprobe', (l) => lines.push(l));
  tally.add({ name: '/data/a\nb.png', reason: 'corrupt', message: 'cannot decode /data/a\nb.png' });
  assert.deepEqual(lines, ['segprobe: skipping "/data/a\\nb.png": cannot decode /data/a\\x0ab.png']);
});
