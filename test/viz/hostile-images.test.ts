// `semaim visualize` with images it cannot use: it skips them with a warning and lists them in
// visualize.json (one unreadable file no longer aborts the command), fails only when none can be
// read, refuses over-limit files before decoding, and follows the same EXIF policy as the loader.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listImageFiles, loadImages, loadRgb } from '../../src/viz';
import { vizCommands } from '../../src/cli/viz-commands';
import { DataLoader, imageFiles, centerCrop } from '../../src/data';
import { claimedSizePng } from '../data/hostile-files';
import { sharp } from '../data/helpers';
import { tinyModel, writeCheckpointFolder, writeTestImages } from './helpers';

function withTemp<T>(fn: (root: string) => Promise<T>): Promise<T> {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-hostile-'));
  return fn(root).finally(() => rmSync(root, { recursive: true, force: true }));
}

test('visualize: unreadable images are skipped with a warning and listed in visualize.json; none readable is an error', () =>
  withTemp(async (root) => {
    const ckpt = writeCheckpointFolder(join(root, 'ckpt'), tinyModel(3));
    const [good] = await writeTestImages(join(root, 'imgs'), 1);
    const corrupt = join(root, 'imgs', 'corrupt.png');
    writeFileSync(corrupt, Buffer.concat([readFileSync(good).subarray(0, 40), Buffer.alloc(30, 7)]));
    const bomb = join(root, 'imgs', 'bomb.png');
    writeFileSync(bomb, claimedSizePng(30000, 30000));
    const loop = join(root, 'imgs', 'loop.png');
    symlinkSync('loop.png', loop);
    const out = join(root, 'out');
    const stderr: string[] = [];
    const stdout: string[] = [];
    const writeErr = process.stderr.write.bind(process.stderr);
    const writeOut = process.stdout.write.bind(process.stdout);
    const capture = (into: string[]) =>
      ((chunk: string | Uint8Array) => {
        into.push(String(chunk));
        return true;
      }) as typeof process.stderr.write;
    process.stderr.write = capture(stderr);
    process.stdout.write = capture(stdout);
    let rc: number;
    try {
      rc = await vizCommands.visualize.run(['--checkpoint', ckpt, '--images', join(root, 'imgs'), '--out', out, '--threads', '1', '--orders', 'raster']);
    } finally {
      process.stderr.write = writeErr;
      process.stdout.write = writeOut;
    }
    assert.match(stdout.join(''), /skipped 3 unreadable image\(s\), listed in .*visualize\.json/);
    assert.equal(rc, 0);
    const summary = JSON.parse(readFileSync(join(out, 'visualize.json'), 'utf8'));
    assert.deepEqual(
      summary.images.map((i: { name: string }) => i.name),
      ['img0.png'],
    );
    const skipped: Array<{ file: string; reason: string }> = summary.skipped;
    assert.deepEqual(skipped.map((s) => s.file).sort(), [bomb, corrupt, loop].sort());
    assert.match(skipped.find((s) => s.file === bomb)!.reason, /bomb\.png: PNG of 30000×30000 = 900,000,000 pixels exceeds the limit of 178,956,970 pixels/);
    assert.match(skipped.find((s) => s.file === loop)!.reason, /loop\.png: .*ELOOP/);
    assert.equal(stderr.filter((l) => /^visualize: skipping cannot read image/.test(l)).length, 3, stderr.join(''));
    assert.deepEqual(
      readdirSync(out).filter((f) => f.startsWith('row-')),
      ['row-000-img0.png'],
    );

    // nothing readable: an error that names every file and why
    await assert.rejects(
      loadImages([corrupt, bomb], 16, Infinity, {}, () => undefined),
      (e: Error) => /none of the 2 image\(s\) could be read/.test(e.message) && e.message.includes(corrupt) && e.message.includes('30000×30000'),
    );
    // the limit is the command's option: --max-image-pixels 0 lifts it, a low one refuses the good image too
    await assert.rejects(
      vizCommands.visualize.run(['--checkpoint', ckpt, '--images', good, '--out', join(root, 'out2'), '--max-image-pixels', '255']),
      /none of the 1 image\(s\) could be read:\n {2}cannot read image .*img0\.png: PNG of 16×16 = 256 pixels exceeds the limit of 255 pixels/,
    );
    await assert.rejects(
      vizCommands.visualize.run(['--checkpoint', ckpt, '--images', good, '--out', out, '--max-image-pixels', '-1']),
      /option 'maxImagePixels': must be >= 0/,
    );
  }));

test('visualize and the loader apply one EXIF policy: ignored by default, both rotate with apply', () =>
  withTemp(async (root) => {
    const W = 48;
    const H = 32;
    const raw = Buffer.alloc(W * H * 3);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) raw.set(x < W / 2 ? (y < H / 2 ? [220, 30, 30] : [30, 30, 220]) : [240, 240, 240], (y * W + x) * 3);
    mkdirSync(join(root, 'imgs'));
    const file = join(root, 'imgs', 'rotated.jpg');
    await sharp(raw, { raw: { width: W, height: H, channels: 3 } })
      .jpeg({ quality: 95, chromaSubsampling: '4:4:4' })
      .withMetadata({ orientation: 6 })
      .toFile(file);
    const loader = async (exif: 'ignore' | 'apply'): Promise<Uint8Array> => {
      const l = new DataLoader(imageFiles(join(root, 'imgs')), { batchSize: 1, workers: 0, uint8: true, transforms: [centerCrop(32)], exifOrientation: exif });
      try {
        for await (const b of l.iterate(0)) {
          const d = new Uint8Array(32 * 32 * 3);
          for (let i = 0; i < 1024; i++) for (let c = 0; c < 3; c++) d[i * 3 + c] = b.images[c * 1024 + i];
          return d;
        }
        throw new Error('no batch');
      } finally {
        await l.close();
      }
    };
    for (const exif of ['ignore', 'apply'] as const) {
      // 32 is the shorter side of both orientations: the figure's resize is a centre crop, like the loader's
      const figure = await loadRgb(file, 32, { exifOrientation: exif });
      assert.deepEqual(Array.from(figure.data), Array.from(await loader(exif)), `${exif}: figure and loader see the same pixels`);
    }
    const ignored = await loadRgb(file, 32);
    const applied = await loadRgb(file, 32, { exifOrientation: 'apply' });
    const px = (d: Uint8Array, x: number, y: number) => Array.from(d.subarray((y * 32 + x) * 3, (y * 32 + x) * 3 + 3));
    // stored: red top left, white right half; rotated 90° clockwise: red top right, white bottom half
    assert.ok(px(ignored.data, 2, 2)[0] > 180 && px(ignored.data, 2, 2)[2] < 80, `ignore: red at the top left, got ${px(ignored.data, 2, 2)}`);
    assert.ok(px(applied.data, 29, 2)[0] > 180 && px(applied.data, 29, 2)[2] < 80, `apply: red at the top right, got ${px(applied.data, 29, 2)}`);
    assert.ok(
      px(applied.data, 16, 29).every((v) => v > 200),
      `apply: white at the bottom, got ${px(applied.data, 16, 29)}`,
    );
  }));

test('visualize lists the image types the datasets list: a folder of .ppm/.pgm/.jfif images is found and decoded', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-viz-ext-'));
  try {
    const ppm = Buffer.concat([Buffer.from('P6\n4 4\n255\n'), Buffer.alloc(4 * 4 * 3, 200)]);
    const pgm = Buffer.concat([Buffer.from('P5\n4 4\n255\n'), Buffer.alloc(4 * 4, 50)]);
    writeFileSync(join(dir, 'a.ppm'), ppm);
    writeFileSync(join(dir, 'b.pgm'), pgm);
    await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 10, g: 20, b: 30 } } })
      .jpeg()
      .toFile(join(dir, 'c.jfif'));
    writeFileSync(join(dir, 'notes.txt'), 'not an image');
    assert.deepEqual(
      listImageFiles([dir]).map((f) => f.slice(dir.length + 1)),
      ['a.ppm', 'b.pgm', 'c.jfif'],
    );
    const loaded = await loadImages([dir], 8, Infinity, {}, () => undefined);
    assert.deepEqual(loaded.skipped, []);
    assert.equal(loaded.rgb.length, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('visualize takes its images from a folder of 200,000 files (a spread of its list overflowed the call stack)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-viz-many-'));
  // the listing of 200,000 more images, without making them
  const fs = require('node:fs') as typeof import('node:fs');
  const readdir = fs.readdirSync;
  const extra = Array.from({ length: 200_000 }, (_, i) => `x-${String(i).padStart(6, '0')}.png`);
  fs.readdirSync = ((...args: unknown[]) => {
    const names = (readdir as (...a: unknown[]) => unknown)(...args);
    return args[0] === dir && args.length === 1 ? [...(names as string[]), ...extra] : names;
  }) as typeof fs.readdirSync;
  try {
    writeFileSync(join(dir, 'a.ppm'), Buffer.concat([Buffer.from('P6\n4 4\n255\n'), Buffer.alloc(4 * 4 * 3, 200)]));
    writeFileSync(join(dir, 'b.pgm'), Buffer.concat([Buffer.from('P5\n4 4\n255\n'), Buffer.alloc(4 * 4, 50)]));
    const files = listImageFiles([dir]);
    assert.equal(files.length, 200_002);
    assert.deepEqual([files[0], files[200_001]], [join(dir, 'a.ppm'), join(dir, 'x-199999.png')]);
    assert.deepEqual(listImageFiles([dir], 2), [join(dir, 'a.ppm'), join(dir, 'b.pgm')]);
    const loaded = await loadImages([dir], 8, 2, {}, () => undefined);
    assert.deepEqual(loaded.files, [join(dir, 'a.ppm'), join(dir, 'b.pgm')]);
  } finally {
    fs.readdirSync = readdir;
    rmSync(dir, { recursive: true, force: true });
  }
});
