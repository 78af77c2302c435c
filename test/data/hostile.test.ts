// Hostile inputs for the data side: headers that claim 30000×30000 pixels (refused before decoding
// by every decoder, skipped and counted by the loader), symlink loops and dangling links in folder
// listings, and the EXIF-orientation policy (ignored by default, applied on request) in the decoder
// and the loader. The crafted files are a few dozen bytes; nothing of the claimed size is allocated.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { symlinkSync, mkdirSync, truncateSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { openImage, decodeImage } from '../../src/data/codecs/decode';
import { DecodeError } from '../../src/data/codecs/errors';
import { MAX_JPEG_SCANS } from '../../src/data/codecs/jpeg';
import { DEFAULT_MAX_IMAGE_PIXELS } from '../../src/data/codecs/limits';
import { exifOrientation, orientImage } from '../../src/data/codecs/orientation';
import { identityPlan } from '../../src/data/geometry';
import { resampleToOutput } from '../../src/data/resample';
import { DataLoader, imageFiles, imageFolder, centerCrop, randomResizedCrop, normalize, type Image } from '../../src/data';
import { claimedSizeBmp, claimedSizeGif, claimedSizeJpeg, claimedSizePng } from './hostile-files';
import { sharp, tempDir, write, encode, picture, bmp, chunk, PNG_SIGNATURE } from './helpers';

const BIG = 30000;

async function rejection(p: () => unknown): Promise<DecodeError> {
  try {
    await p();
  } catch (e) {
    assert.ok(e instanceof DecodeError, `expected a DecodeError, got ${(e as Error).message}`);
    return e;
  }
  assert.fail('expected the image to be refused');
}

test('pixel limit: every decoder refuses a header claiming 30000×30000 before decoding, naming size and limit', async () => {
  assert.equal(DEFAULT_MAX_IMAGE_PIXELS, 178_956_970);
  const files: Array<[string, Buffer]> = [
    ['PNG', claimedSizePng(BIG, BIG)],
    ['JPEG', claimedSizeJpeg(BIG, BIG)],
    ['BMP', claimedSizeBmp(BIG, BIG)],
    ['GIF', claimedSizeGif(BIG, BIG)], // decoded through sharp/libvips
  ];
  for (const [format, bytes] of files) {
    assert.ok(bytes.length < 100, `${format} file is tiny (${bytes.length} bytes)`);
    const e = await rejection(async () => (await openImage(bytes)).decode());
    assert.equal(e.reason, 'too-large', `${format}: ${e.message}`);
    assert.match(e.message, new RegExp(`^${format} of 30000×30000 = 900,000,000 pixels exceeds the limit of 178,956,970 pixels`), format);
    assert.match(e.message, /--max-image-pixels/);
  }
});

test("pixel limit, GIF: the canvas libvips allocates reaches the first frame's far corner whatever the logical screen says, and is checked from the header before it is allocated", async () => {
  // libvips grows the canvas to the frame's far corner: a 1×1 screen does not hide a frame of 30000×30000
  // or a 1×1 frame placed at (29999, 29999); both are refused from the header, naming the canvas
  for (const frame of [
    { x: 0, y: 0, w: BIG, h: BIG },
    { x: BIG - 1, y: BIG - 1, w: 1, h: 1 },
  ]) {
    const e = await rejection(async () => (await openImage(claimedSizeGif(1, 1, frame))).decode());
    assert.equal(e.reason, 'too-large', JSON.stringify(frame));
    assert.match(e.message, /^GIF of 30000×30000 = 900,000,000 pixels exceeds the limit/, JSON.stringify(frame));
  }
  // a 65535×65535 screen around a 1×1 frame: refused, or decoded at the frame's size, never a 4-gigapixel canvas
  const wide = claimedSizeGif(65535, 65535, { x: 0, y: 0, w: 1, h: 1 });
  try {
    const img = await decodeImage(wide);
    assert.ok(img.width * img.height <= 1, `decoded as ${img.width}×${img.height}`);
  } catch (e) {
    assert.ok(e instanceof DecodeError && e.reason === 'too-large', (e as Error).message);
  }
});

/** The segments of a JPEG up to its EOI: marker, start, end (a scan's entropy-coded data included). */
function jpegSegments(d: Buffer): { marker: number; start: number; end: number }[] {
  const out = [];
  for (let i = 2; i < d.length;) {
    const marker = d[i + 1];
    if (marker === 0xd9) break;
    let end = i + 2 + d.readUInt16BE(i + 2);
    if (marker === 0xda) while (d[end] !== 0xff || d[end + 1] === 0 || (d[end + 1] >= 0xd0 && d[end + 1] <= 0xd7)) end++;
    out.push({ marker, start: i, end });
    i = end;
  }
  return out;
}

test(`JPEG: a file of more than MAX_JPEG_SCANS (${MAX_JPEG_SCANS}) scans is refused as unsupported (17,000 repeated tiny scans of a 4096² image took minutes); up to it, it decodes`, async () => {
  const jpeg = await encode(Buffer.alloc(64 * 64, 128), 64, 64, 1, 'jpeg', { progressive: true });
  const segs = jpegSegments(jpeg);
  const scans = segs.filter((s) => s.marker === 0xda).length;
  // an AC scan (spectral selection from 1) with the Huffman table before it, repeated before the EOI
  const at = segs.findIndex((s) => s.marker === 0xda && jpeg[s.start + 4 + 1 + 2 * jpeg[s.start + 4]] > 0);
  const from = segs[at - 1].marker === 0xc4 ? segs[at - 1].start : segs[at].start;
  const scan = jpeg.subarray(from, segs[at].end);
  const eoi = segs[segs.length - 1].end;
  const withScans = (total: number) => Buffer.concat([jpeg.subarray(0, eoi), ...Array<Buffer>(total - scans).fill(scan), jpeg.subarray(eoi)]);
  assert.equal((await openImage(withScans(MAX_JPEG_SCANS))).decode({}).width, 64);
  await assert.rejects(
    async () => (await openImage(withScans(MAX_JPEG_SCANS + 1))).decode({}),
    (e: unknown) =>
      e instanceof DecodeError &&
      e.reason === 'unsupported' &&
      e.message === `JPEG of more than ${MAX_JPEG_SCANS} scans (encoders write about 10; so many only make its decoding slow)`,
  );
});

test('pixel limit: the limit is an option (exact boundary; 0 = no limit) for built-in and sharp decoders', async () => {
  const W = 64;
  const H = 48;
  const raw = picture(W, H);
  const files: Array<[string, Buffer]> = [
    ['PNG', await encode(raw, W, H, 3, 'png')],
    ['JPEG', await encode(raw, W, H, 3, 'jpeg')],
    ['BMP', bmp(W, H, (x, y) => [raw[(y * W + x) * 3], raw[(y * W + x) * 3 + 1], raw[(y * W + x) * 3 + 2], 255], { bpp: 24 })],
    ['WEBP', await encode(raw, W, H, 3, 'webp')],
  ];
  for (const [format, bytes] of files) {
    const e = await rejection(async () => (await openImage(bytes, { maxPixels: W * H - 1 })).decode());
    assert.equal(e.reason, 'too-large', format);
    assert.match(e.message, /64×48 = 3,072 pixels exceeds the limit of 3,071 pixels/, format);
    for (const maxPixels of [W * H, 0]) {
      const img = await decodeImage(bytes, { maxPixels });
      assert.deepEqual([img.width, img.height], [W, H], `${format} with limit ${maxPixels}`);
    }
  }
});

test('pixel limit: the loader skips and counts an over-limit file like a corrupt one, in workers and in the cache', async () => {
  const { dir, cleanup } = tempDir();
  try {
    for (let i = 0; i < 5; i++) write(join(dir, `ok${i}.png`), await encode(picture(40, 30, i), 40, 30, 3, 'png'));
    write(join(dir, 'bomb.png'), claimedSizePng(BIG, BIG));
    write(join(dir, 'big.jpg'), await encode(picture(64, 64), 64, 64, 3, 'jpeg'));
    const warnings: string[] = [];
    const ds = imageFiles(dir, { onWarning: (l) => warnings.push(l) });
    for (const [workers, cache] of [
      [0, false],
      [1, false],
      [0, true],
    ] as const) {
      warnings.length = 0;
      const loader = new DataLoader(ds, {
        batchSize: 7,
        workers,
        cache,
        shuffle: false,
        transforms: [randomResizedCrop(16), normalize()],
        onWarning: (l) => warnings.push(l),
      });
      try {
        for await (const b of loader.iterate(0)) assert.equal(b.indices.length, 7);
        const s = loader.lastSummary!;
        assert.deepEqual(s.byReason, { 'too-large': 1 }, `workers ${workers}, cache ${cache}`);
        const line = warnings.find((l) => l.includes('bomb.png'));
        assert.ok(line, warnings.join('\n'));
        assert.match(line, /data: skipping .*bomb\.png: PNG of 30000×30000 = 900,000,000 pixels exceeds the limit of 178,956,970 pixels/);
        assert.ok(
          warnings.some((l) => /skipped 1 unusable file \(1 too-large\)/.test(l)),
          warnings.join('\n'),
        );
      } finally {
        await loader.close();
      }
    }
    // the loader option reaches the decoders (in a worker too): a lower limit also refuses the 64×64 JPEG
    warnings.length = 0;
    const strict = new DataLoader(ds, {
      batchSize: 7,
      workers: 1,
      shuffle: false,
      maxImagePixels: 40 * 30,
      transforms: [randomResizedCrop(16)],
      onWarning: (l) => warnings.push(l),
    });
    try {
      for await (const b of strict.iterate(0)) void b;
      assert.deepEqual(strict.lastSummary!.byReason, { 'too-large': 2 });
      assert.ok(
        warnings.some((l) => /big\.jpg: JPEG of 64×64 = 4,096 pixels exceeds the limit of 1,200 pixels/.test(l)),
        warnings.join('\n'),
      );
    } finally {
      await strict.close();
    }
    assert.throws(() => new DataLoader(ds, { batchSize: 2, maxImagePixels: -1 }), /maxImagePixels must be an integer >= 0/);
  } finally {
    cleanup();
  }
});

test('pixel limit: a file larger than an image within the limit can be is skipped as too-large from its size, unread, and later files still read', async () => {
  const { dir, cleanup } = tempDir();
  try {
    for (let i = 0; i < 4; i++) write(join(dir, `ok${i}.png`), await encode(picture(40, 30, i), 40, 30, 3, 'png'));
    truncateSync(write(join(dir, 'huge.png'), ''), 3 << 20); // sparse; the cap at 1,200 pixels is 1 MiB + 9,600 bytes
    for (const workers of [0, 1]) {
      const warnings: string[] = [];
      const loader = new DataLoader(imageFiles(dir), {
        batchSize: 4,
        workers,
        shuffle: false,
        maxImagePixels: 40 * 30,
        transforms: [centerCrop(16)],
        onWarning: (l) => warnings.push(l),
      });
      try {
        for await (const b of loader.iterate(0)) void b;
        assert.deepEqual(loader.lastSummary!.byReason, { 'too-large': 1 }, `workers ${workers}`);
        assert.ok(
          warnings.some((l) => /huge\.png: file of 3 MiB is over the 1 MiB an image within the pixel limit can take/.test(l)),
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

test('a large file that does not start as an image is skipped from its first 4 KiB; a FIFO among the images is not listed (never opened)', async () => {
  const { dir, cleanup } = tempDir();
  const fs = require('node:fs') as typeof import('node:fs');
  const readSync = fs.readSync;
  let largestRead = 0;
  try {
    for (let i = 0; i < 3; i++) write(join(dir, `ok${i}.png`), await encode(picture(40, 30, i), 40, 30, 3, 'png'));
    truncateSync(write(join(dir, 'blob.png'), ''), 80 << 20); // sparse, under the default cap
    execFileSync('mkfifo', [join(dir, 'pipe.png')]);
    (fs as { readSync: unknown }).readSync = (...a: Parameters<typeof readSync>) => {
      const n = readSync(...a);
      largestRead = Math.max(largestRead, n);
      return n;
    };
    const warnings: string[] = [];
    const loader = new DataLoader(imageFiles(dir), {
      batchSize: 5,
      workers: 0,
      shuffle: false,
      replace: false,
      transforms: [centerCrop(16)],
      onWarning: (l) => warnings.push(l),
    });
    try {
      for await (const b of loader.iterate(0)) void b;
      assert.deepEqual(loader.lastSummary!.byReason, { unsupported: 1 }, warnings.join('\n'));
      assert.ok(
        warnings.some((l) => /blob\.png: not an image file \(unrecognised format\)/.test(l)),
        warnings.join('\n'),
      );
      assert.ok(largestRead <= 1 << 20, `read ${largestRead} bytes at once: the 80 MiB file was read`);
    } finally {
      await loader.close();
    }
  } finally {
    (fs as { readSync: unknown }).readSync = readSync;
    cleanup();
  }
});

test('folder listing: a directory symlink loop lists each image once and is reported once', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const png = await encode(picture(8, 8), 8, 8, 3, 'png');
    write(join(dir, 'flat', 'a', 'x.png'), png);
    write(join(dir, 'flat', 'a', 'b', 'y.png'), png);
    symlinkSync('.', join(dir, 'flat', 'a', 'loop')); // a/loop -> a
    symlinkSync('..', join(dir, 'flat', 'a', 'b', 'up')); // a/b/up -> a
    const warnings: string[] = [];
    const flat = imageFiles(join(dir, 'flat'), { onWarning: (l) => warnings.push(l) });
    assert.deepEqual(
      Array.from({ length: flat.length }, (_, i) => flat.relativePath(i)),
      ['a/x.png', 'a/b/y.png'], // torchvision's order: a folder's own images before its sub-folders'
    );
    assert.deepEqual(flat.listing.symlinkLoops, ['a/b/up', 'a/loop']);
    assert.equal(warnings.filter((l) => /symlink loop/.test(l)).length, 2, warnings.join('\n'));
    assert.ok(warnings.some((l) => l.includes(join(dir, 'flat', 'a', 'loop'))));

    // ImageFolder: a loop inside a class, and a "class" that links back to the root
    write(join(dir, 'classes', 'cat', 'c.png'), png);
    write(join(dir, 'classes', 'dog', 'd.png'), png);
    symlinkSync('.', join(dir, 'classes', 'cat', 'again'));
    symlinkSync('.', join(dir, 'classes', 'root-again'));
    warnings.length = 0;
    const folder = imageFolder(join(dir, 'classes'), { onWarning: (l) => warnings.push(l) });
    assert.deepEqual(folder.classes, ['cat', 'dog']);
    assert.equal(folder.length, 2);
    assert.deepEqual(folder.listing.symlinkLoops.sort(), ['cat/again', 'root-again']);
    assert.equal(warnings.filter((l) => /symlink loop/.test(l)).length, 2, warnings.join('\n'));
  } finally {
    cleanup();
  }
});

test('folder listing: a folder reached through several links is listed once, the other paths reported in one line', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const png = await encode(picture(8, 8), 8, 8, 3, 'png');
    // levels/l0 .. l10, each with two links (a, b) to the next: 2^10 paths to l10/img.png, no loop
    const N = 10;
    for (let i = 0; i < N; i++) {
      mkdirSync(join(dir, 'levels', `l${i}`), { recursive: true });
      symlinkSync(`../l${i + 1}`, join(dir, 'levels', `l${i}`, 'a'));
      symlinkSync(`../l${i + 1}`, join(dir, 'levels', `l${i}`, 'b'));
    }
    write(join(dir, 'levels', `l${N}`, 'img.png'), png);
    write(join(dir, 'flat', 'real.png'), png);
    symlinkSync('../levels/l0', join(dir, 'flat', 'start'));
    const warnings: string[] = [];
    const flat = imageFiles(join(dir, 'flat'), { onWarning: (l) => warnings.push(l) });
    assert.deepEqual(
      Array.from({ length: flat.length }, (_, i) => flat.relativePath(i)),
      ['real.png', `start/${'a/'.repeat(N)}img.png`],
    );
    assert.equal(flat.listing.aliases.length, N);
    assert.deepEqual(flat.listing.symlinkLoops, []);
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0], /: 10 paths lead to a folder listed already through a symlink, not listed again: start\/a\/a\/.*b, .*, \.\.\.$/);

    // ImageFolder: a link from one class into another leaves the images in their own class; a class
    // that is another class's folder again is reported (and so empty)
    write(join(dir, 'classes', 'cat', 'c.png'), png);
    write(join(dir, 'classes', 'dog', 'd.png'), png);
    symlinkSync('../dog', join(dir, 'classes', 'cat', 'dogs'));
    symlinkSync('dog', join(dir, 'classes', 'hound'));
    warnings.length = 0;
    const folder = imageFolder(join(dir, 'classes'), { onWarning: (l) => warnings.push(l) });
    assert.deepEqual(folder.classes, ['cat', 'dog', 'hound']);
    assert.deepEqual(
      Array.from({ length: folder.length }, (_, i) => [folder.relativePath(i), folder.label(i)]),
      [
        ['cat/c.png', 0],
        ['dog/d.png', 1],
      ],
    );
    assert.deepEqual(folder.listing.aliases, ['cat/dogs', 'hound']);
    assert.match(warnings.join('\n'), /2 paths lead to a folder listed already through a symlink, not listed again: cat\/dogs, hound\n/);
  } finally {
    cleanup();
  }
});

test("ImageFolder: a link from one class into a sub-folder of another leaves that sub-folder's images in their own class, whichever class is walked first", async () => {
  const { dir, cleanup } = tempDir();
  try {
    const png = await encode(picture(8, 8), 8, 8, 3, 'png');
    // 'all' sorts (and is walked) before 'cat', and links to cat's own sub-folder: torchvision lists the
    // images in both classes; listed once, they are cat's, where they lie (they were labelled 'all')
    write(join(dir, 'classes', 'all', 'a.png'), png);
    write(join(dir, 'classes', 'cat', 'c.png'), png);
    write(join(dir, 'classes', 'cat', 'kittens', 'k.png'), png);
    write(join(dir, 'classes', 'cat', 'kittens', 'deep', 'd.png'), png);
    symlinkSync('../cat/kittens', join(dir, 'classes', 'all', 'kittens'));
    // and within one class the folder is listed where it lies, not through a link beside it that sorts first
    symlinkSync('kittens', join(dir, 'classes', 'cat', 'a-link'));
    const check = () => {
      const warnings: string[] = [];
      const folder = imageFolder(join(dir, 'classes'), { onWarning: (l) => warnings.push(l) });
      assert.deepEqual(folder.classes, ['all', 'cat']);
      assert.deepEqual(
        Array.from({ length: folder.length }, (_, i) => [folder.relativePath(i), folder.label(i)]),
        [
          ['all/a.png', 0],
          ['cat/c.png', 1],
          ['cat/kittens/k.png', 1],
          ['cat/kittens/deep/d.png', 1],
        ],
      );
      assert.deepEqual(folder.listing.aliases, ['all/kittens', 'cat/a-link']);
      assert.match(warnings.join('\n'), /2 paths lead to a folder listed already through a symlink, not listed again: all\/kittens, cat\/a-link$/m);
    };
    check();
    // the same on a file system that gives no entry types (DT_UNKNOWN: a link is known from lstat only)
    const fs = require('node:fs') as typeof import('node:fs');
    const readdirSync = fs.readdirSync;
    const untyped = (e: unknown) =>
      e instanceof fs.Dirent ? { name: (e as { name: unknown }).name, isDirectory: () => false, isFile: () => false, isSymbolicLink: () => false } : e;
    (fs as { readdirSync: unknown }).readdirSync = (...a: unknown[]) => ((readdirSync as (...b: unknown[]) => unknown[])(...a) as unknown[]).map(untyped);
    try {
      check();
    } finally {
      (fs as { readdirSync: unknown }).readdirSync = readdirSync;
    }
  } finally {
    cleanup();
  }
});

test('folder listing: file symlink loops and dangling links are reported and counted, not dropped silently', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const png = await encode(picture(8, 8), 8, 8, 3, 'png');
    write(join(dir, 'imgs', 'cls', 'good.png'), png);
    symlinkSync('self.png', join(dir, 'imgs', 'cls', 'self.png')); // ELOOP
    symlinkSync('missing.png', join(dir, 'imgs', 'cls', 'gone.png')); // ENOENT
    mkdirSync(join(dir, 'imgs', 'other'));
    write(join(dir, 'imgs', 'other', 'o.png'), png);
    for (const make of [
      (warn: (l: string) => void) => imageFiles(join(dir, 'imgs'), { onWarning: warn }),
      (warn: (l: string) => void) => imageFolder(join(dir, 'imgs'), { onWarning: warn }),
      (warn: (l: string) => void) => imageFiles(join(dir, 'imgs', 'cls'), { onWarning: warn, recursive: false }),
    ]) {
      const warnings: string[] = [];
      const ds = make((l) => warnings.push(l));
      assert.deepEqual(
        ds.listing.unreadable.map((u) => [u.path.split('/').pop(), u.code]),
        [
          ['gone.png', 'ENOENT'],
          ['self.png', 'ELOOP'],
        ],
      );
      const line = warnings.find((l) => /cannot be read/.test(l));
      assert.ok(line, warnings.join('\n'));
      assert.match(line, /2 entries cannot be read and are left out: .*gone\.png \(dangling link\), .*self\.png \(symlink loop\)/);
    }
  } finally {
    cleanup();
  }
});

/** Interleaved RGB of a decoded image (any layout), through the resampler's identity plan. */
function rgbOf(img: Image): { width: number; height: number; data: Uint8Array } {
  const { width, height } = img;
  const chw = new Uint8Array(3 * width * height);
  resampleToOutput(img, identityPlan(width, height), chw, 0, { kind: 'uint8' });
  const hw = width * height;
  const data = new Uint8Array(3 * hw);
  for (let i = 0; i < hw; i++) for (let c = 0; c < 3; c++) data[i * 3 + c] = chw[c * hw + i];
  return { width, height, data };
}

/** Rotates interleaved RGB 90° clockwise (what EXIF orientation 6 asks for). */
function rot90cw(src: { width: number; height: number; data: Uint8Array }): { width: number; height: number; data: Uint8Array } {
  const { width: W, height: H } = src;
  const out = new Uint8Array(src.data.length);
  for (let y = 0; y < W; y++) for (let x = 0; x < H; x++) for (let c = 0; c < 3; c++) out[(y * H + x) * 3 + c] = src.data[((H - 1 - x) * W + y) * 3 + c];
  return { width: H, height: W, data: out };
}

/** A 48×32 picture with four flat quadrants (red, green, blue, white) and orientation 6 in its EXIF. */
async function orientedFiles(): Promise<Array<[string, Buffer]>> {
  const W = 48;
  const H = 32;
  const raw = Buffer.alloc(W * H * 3);
  const colours = [
    [220, 30, 30],
    [30, 200, 30],
    [30, 30, 220],
    [240, 240, 240],
  ];
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) raw.set(colours[(y < H / 2 ? 0 : 2) + (x < W / 2 ? 0 : 1)], (y * W + x) * 3);
  const base = () => sharp(raw, { raw: { width: W, height: H, channels: 3 } });
  return [
    ['jpeg 4:2:0', await base().jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer()],
    ['jpeg 4:4:4', await base().jpeg({ quality: 95, chromaSubsampling: '4:4:4' }).withMetadata({ orientation: 6 }).toBuffer()],
    ['png', await base().png().withMetadata({ orientation: 6 }).toBuffer()],
  ];
}

test('EXIF orientation: ignored by default as torchvision does, applied on request like libvips autorotate', async () => {
  for (const [name, bytes] of await orientedFiles()) {
    assert.equal(exifOrientation(bytes, name.startsWith('jpeg') ? 'jpeg' : 'png'), 6, name);
    const asStored = await decodeImage(bytes);
    const ignored = await decodeImage(bytes, { exifOrientation: 'ignore' });
    const applied = await decodeImage(bytes, { exifOrientation: 'apply' });
    assert.deepEqual([asStored.width, asStored.height, ignored.width, ignored.height], [48, 32, 48, 32], name);
    const handle = await openImage(bytes, { exifOrientation: 'apply' });
    assert.deepEqual([handle.width, handle.height, applied.width, applied.height], [32, 48, 32, 48], `${name}: size known before decoding`);
    // applied = the stored pixels rotated 90° clockwise, exactly
    assert.deepEqual(rgbOf(applied), rot90cw(rgbOf(ignored)), name);
    // and what libvips shows: red at the top right after the rotation (colours within JPEG error)
    const { data } = await sharp(bytes).autoOrient().raw().toBuffer({ resolveWithObject: true });
    const ours = rgbOf(applied).data;
    let diff = 0;
    for (let i = 0; i < ours.length; i++) diff += Math.abs(ours[i] - data[i]);
    assert.ok(diff / ours.length < 3, `${name}: mean |ours − libvips| = ${diff / ours.length}`);
    const px = (x: number, y: number) => Array.from(ours.subarray((y * 32 + x) * 3, (y * 32 + x) * 3 + 3));
    assert.ok(px(28, 4)[0] > 180 && px(28, 4)[1] < 80, `${name}: red quadrant at the top right, got ${px(28, 4)}`);
  }
});

/** A TIFF structure (EXIF payload) whose first IFD holds only the orientation tag. */
function tiffWithOrientation(o: { value: number; bigEndian?: boolean; magic?: number; type?: number }): Buffer {
  const t = Buffer.alloc(8 + 2 + 12 + 4);
  const be = o.bigEndian ?? false;
  const u16 = (v: number, at: number) => (be ? t.writeUInt16BE(v, at) : t.writeUInt16LE(v, at));
  const u32 = (v: number, at: number) => (be ? t.writeUInt32BE(v, at) : t.writeUInt32LE(v, at));
  t.write(be ? 'MM' : 'II', 0, 'latin1');
  u16(o.magic ?? 42, 2);
  u32(8, 4); // first IFD right after the header
  u16(1, 8); // one entry
  u16(0x0112, 10);
  u16(o.type ?? 3, 12); // SHORT (3) or LONG (4)
  u32(1, 14);
  if ((o.type ?? 3) === 3) u16(o.value, 18);
  else u32(o.value, 18);
  return t;
}

/** JPEG markers only (no image): SOI, an APP1 "Exif" segment (its length field `lenDelta` off), EOI. */
function jpegExif(tiff: Buffer, lenDelta = 0, before: number[] = []): Buffer {
  const payload = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const len = 2 + payload.length + lenDelta;
  return Buffer.concat([Buffer.from([0xff, 0xd8, ...before, 0xff, 0xe1, len >> 8, len & 255]), payload, Buffer.from([0xff, 0xd9])]);
}

/** A PNG of these chunks only (no image: the orientation reader stops at the first IDAT). */
function pngChunks(chunks: Array<[string, Buffer]>): Buffer {
  return Buffer.concat([PNG_SIGNATURE, ...chunks.map(([type, body]) => chunk(type, body))]);
}

test('EXIF orientation: where the tag is read and what is refused (byte order, magic, type, range, segment bounds, place)', () => {
  for (const bigEndian of [false, true]) {
    assert.equal(exifOrientation(jpegExif(tiffWithOrientation({ value: 6, bigEndian })), 'jpeg'), 6, `SHORT, ${bigEndian ? 'MM' : 'II'}`);
    assert.equal(exifOrientation(jpegExif(tiffWithOrientation({ value: 8, bigEndian, type: 4 })), 'jpeg'), 8, `LONG, ${bigEndian ? 'MM' : 'II'}`);
  }
  assert.equal(exifOrientation(jpegExif(tiffWithOrientation({ value: 6, magic: 43 })), 'jpeg'), 1, 'not TIFF (magic 43)');
  assert.equal(exifOrientation(jpegExif(tiffWithOrientation({ value: 6, type: 1 })), 'jpeg'), 1, 'a BYTE value');
  for (const value of [0, 9]) assert.equal(exifOrientation(jpegExif(tiffWithOrientation({ value })), 'jpeg'), 1, `value ${value}`);
  // the entry's last 4 bytes (its value) lie past the segment's end: not read from the bytes that follow
  assert.equal(exifOrientation(jpegExif(tiffWithOrientation({ value: 6 }), -4 - 4), 'jpeg'), 1, 'entry cut by the segment end');
  // an EXIF segment after the first scan's header is not the image's
  assert.equal(exifOrientation(jpegExif(tiffWithOrientation({ value: 6 }), 0, [0xff, 0xda, 0, 2]), 'jpeg'), 1, 'after SOS');
  assert.equal(exifOrientation(jpegExif(tiffWithOrientation({ value: 6 }), 0, [0xff, 0xe0, 0, 4, 0, 0]), 'jpeg'), 6, 'after APP0');
  // PNG: an eXIf chunk before the image data, with or without the JPEG-style prefix; after IDAT it is not read
  const tiff = tiffWithOrientation({ value: 3 });
  const ihdr: [string, Buffer] = ['IHDR', Buffer.alloc(13)];
  assert.equal(exifOrientation(pngChunks([ihdr, ['eXIf', tiff]]), 'png'), 3);
  assert.equal(exifOrientation(pngChunks([ihdr, ['eXIf', Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff])]]), 'png'), 3, 'Exif prefix');
  assert.equal(exifOrientation(pngChunks([ihdr, ['IDAT', Buffer.alloc(3)], ['eXIf', tiff]]), 'png'), 1, 'eXIf after IDAT');
  assert.equal(exifOrientation(pngChunks([ihdr, ['eXIf', tiff]]), 'gif'), 1, 'other formats');
});

test('EXIF orientation: orientImage turns an object mask with the planes', () => {
  const plane = (data: number[]) => ({ data: Uint8Array.from(data), width: 3, height: 2, stride: 3, offset: 0, x0: 0, y0: 0, sx: 1, sy: 1 });
  const img: Image = { width: 3, height: 2, space: 'gray', planes: [plane([1, 2, 3, 4, 5, 6])], mask: plane([1, 0, 0, 0, 0, 1]) };
  const out = orientImage(img, 6); // 90° clockwise: the bottom-left pixel comes to the top left
  assert.deepEqual([out.width, out.height], [2, 3]);
  assert.deepEqual([...out.planes[0].data], [4, 1, 5, 2, 6, 3]);
  assert.deepEqual([...out.mask!.data], [0, 1, 0, 0, 1, 0]);
  assert.equal(orientImage(img, 1), img);
});

test('EXIF orientation: the loader honours the policy (workers and cache alike)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const [, [, jpeg444]] = await orientedFiles();
    write(join(dir, 'one', 'rotated.jpg'), jpeg444);
    const ds = imageFiles(join(dir, 'one'));
    const batch = async (exif: 'ignore' | 'apply' | undefined, workers: number, cache: boolean): Promise<Uint8Array> => {
      const loader = new DataLoader(ds, { batchSize: 1, workers, cache, uint8: true, transforms: [centerCrop(32)], exifOrientation: exif });
      try {
        for await (const b of loader.iterate(0)) return b.images as Uint8Array;
        throw new Error('no batch');
      } finally {
        await loader.close();
      }
    };
    const hwc = (chw: Uint8Array) => {
      const d = new Uint8Array(chw.length);
      for (let i = 0; i < 1024; i++) for (let c = 0; c < 3; c++) d[i * 3 + c] = chw[c * 1024 + i];
      return { width: 32, height: 32, data: d };
    };
    const ignored = await batch(undefined, 0, false);
    assert.deepEqual(await batch('ignore', 1, false), ignored);
    const applied = await batch('apply', 0, false);
    // centre crops of the stored and of the rotated image: one is the other turned 90° clockwise
    assert.deepEqual(hwc(applied), rot90cw(hwc(ignored)));
    assert.deepEqual(await batch('apply', 1, false), applied);
    assert.deepEqual(await batch('apply', 0, true), applied);
  } finally {
    cleanup();
  }
});
