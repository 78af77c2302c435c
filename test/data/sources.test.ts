// Datasets on real files made here: ImageFolder with every supported format plus broken files,
// unlabelled folders, CIFAR binary (10 and 100), CIFAR JPEG archive extraction, IDX (raw and gz),
// Fashion-MNIST when installed, and the synthetic objects.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { existsSync, statSync, mkdirSync, rmSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { spawn, spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import {
  imageFolder,
  imageFiles,
  cifarBinary,
  cifar10Jpeg,
  ensureCifar10Jpeg,
  idxDataset,
  mnistLike,
  fashionMnist,
  FASHION_MNIST_DIR,
  syntheticObjects,
  subsetDataset,
  MemoryDataset,
  DataLoader,
  randomResizedCrop,
  normalize,
  SHAPES,
} from '../../src/data';
import { commitExtraction, defaultDataCache, fileSha256 } from '../../src/data/sources/cifar';
import { renderSynthetic, syntheticConfig, syntheticLabel } from '../../src/data/sources/synthetic';
import { uniformImages } from '../../src/data/sources/memory';
import { signalChild } from '../../src/util/signal-child';
import { sharp, tempDir, write, picture, encode, pngEncode, bmp } from './helpers';

/** Golden files made by the scripts/golden_*.py (the test runs from dist/test/data). */
const GOLDEN = join(__dirname, '..', '..', '..', 'test', 'golden');

let root: string;
let cleanup: () => void;

before(async () => {
  ({ dir: root, cleanup } = tempDir());
  const raw = picture(40, 30);
  const rgb = (fmt: string, opts: object = {}) => encode(raw, 40, 30, 3, fmt, opts);
  const folder = join(root, 'folder');
  write(join(folder, 'a', 'base.jpg'), await rgb('jpeg', { quality: 90 }));
  write(join(folder, 'a', 'prog.JPEG'), await rgb('jpeg', { quality: 80, progressive: true }));
  write(
    join(folder, 'a', 'cmyk.jpg'),
    await sharp(raw, { raw: { width: 40, height: 30, channels: 3 } })
      .toColourspace('cmyk')
      .jpeg()
      .toBuffer(),
  );
  write(join(folder, 'a', 'plain.png'), await rgb('png'));
  write(
    join(folder, 'a', 'deep16.png'),
    await sharp(raw, { raw: { width: 40, height: 30, channels: 3 } })
      .toColourspace('rgb16')
      .png()
      .toBuffer(),
  );
  const ga: number[] = [];
  for (let i = 0; i < 40 * 30; i++) ga.push(raw[3 * i], i % 2 ? 255 : 0);
  write(join(folder, 'a', 'gray-alpha.png'), pngEncode(40, 30, 4, 8, ga));
  write(join(folder, 'b', 'pic.webp'), await rgb('webp'));
  write(join(folder, 'b', 'anim.gif'), await rgb('gif'));
  write(join(folder, 'b', 'pic.tif'), await rgb('tiff'));
  write(
    join(folder, 'b', 'pic.bmp'),
    bmp(40, 30, (x, y) => [raw[3 * (y * 40 + x)], raw[3 * (y * 40 + x) + 1], raw[3 * (y * 40 + x) + 2], 255], { bpp: 24 }),
  );
  write(join(folder, 'b', 'one.png'), await encode(Buffer.from([9, 99, 199]), 1, 1, 3, 'png'));
  const jpeg = await rgb('jpeg', { quality: 90 });
  write(join(folder, 'b', 'truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length * 0.6)));
  write(join(folder, 'b', 'empty.jpg'), new Uint8Array(0));
  write(join(folder, 'b', 'notes.jpg'), 'this is a text file, not a JPEG\n');
  write(join(folder, 'b', 'readme.txt'), 'ignored: not an image extension');
});

after(() => cleanup());

test('ImageFolder lists classes and images like torchvision', () => {
  const ds = imageFolder(join(root, 'folder'));
  assert.deepEqual(ds.classes, ['a', 'b']);
  assert.equal(ds.length, 14);
  assert.equal(ds.name(0), join(root, 'folder', 'a', 'base.jpg'));
  assert.equal(ds.label(0), 0);
  assert.equal(ds.label(13), 1);
  // class order is torchvision's sorted(): by code point, so 'B' and 'Z' come before 'a' (not a locale's order)
  for (const c of ['a', 'B', 'Z', 'b']) write(join(root, 'cased', c, 'x.jpg'), new Uint8Array([0xff, 0xd8]));
  assert.deepEqual(imageFolder(join(root, 'cased')).classes, ['B', 'Z', 'a', 'b']);
  const flat = imageFiles(join(root, 'folder', 'b'));
  assert.equal(flat.length, 8);
  assert.equal(flat.label(0), -1);
});

test("ImageFolder lists samples in the order of torchvision's make_dataset (golden, scripts/golden_imagefolder.py), so sample i is the same image in both", () => {
  // folders by their whole path (a/b-c before a/b/c), then files by name in each; names by code point (U+E000 before U+1F600)
  const golden = JSON.parse(readFileSync(join(GOLDEN, 'imagefolder', 'order.json'), 'utf8')) as {
    files: string[];
    symlinks: [string, string][];
    root: string;
    extensions: string[];
    classes: string[];
    samples: [string, number][];
  };
  const base = join(root, 'torchvision-order');
  for (const f of golden.files) write(join(base, f), '');
  for (const [link, target] of golden.symlinks) symlinkSync(target, join(base, link));
  const ds = imageFolder(join(base, golden.root), { extensions: golden.extensions, onWarning: assert.fail });
  assert.deepEqual(ds.classes, golden.classes);
  const samples = Array.from({ length: ds.length }, (_, i) => [ds.relativePath(i), ds.label(i)]);
  assert.deepEqual(samples, golden.samples);
});

test('the dataset factories refuse an unknown option key, naming the one likely meant (it was ignored)', () => {
  const unknown = (key: string, meant: string) => ({
    name: 'OptionError',
    message: new RegExp(`^option '${key}': unknown option; did you mean '${meant}'\\? \\(known: `),
  });
  assert.throws(() => imageFolder(join(root, 'folder'), { extension: ['.jpg'] } as never), unknown('extension', 'extensions'));
  assert.throws(() => imageFiles(join(root, 'folder', 'b'), { recursve: false } as never), unknown('recursve', 'recursive'));
  assert.throws(() => syntheticObjects({ size: 16, cout: 8 } as never), unknown('cout', 'count'));
  assert.throws(() => cifar10Jpeg({ splt: 'test' } as never), unknown('splt', 'split'));
  assert.throws(() => cifarBinary(root, { label: 'coarse' } as never), unknown('label', 'labels'));
  assert.throws(() => mnistLike(root, { trian: false } as never), unknown('trian', 'train'));
  assert.throws(() => fashionMnist({ rot: root } as never), unknown('rot', 'root'));
  // a subset of synthetic objects keeps the generator's settings
  const full = syntheticObjects({ size: [16, 24], count: 20, seed: 3, classes: 4 });
  assert.deepEqual(subsetDataset(full, 5, 0).spec, { kind: 'synthetic', config: { ...full.spec.config, count: 5 } });
});

test("folder listing refuses an extension without its dot or with two ('jpg' left every .jpg out while the .png files were listed)", () => {
  const dir = join(root, 'extension-option', 'c');
  write(join(dir, 'a.png'), new Uint8Array([0x89]));
  write(join(dir, 'b.JPG'), new Uint8Array([0xff, 0xd8]));
  const names = (ds: { length: number; relativePath(i: number): string }) => Array.from({ length: ds.length }, (_, i) => ds.relativePath(i));
  assert.deepEqual(names(imageFolder(join(root, 'extension-option'), { extensions: ['.png', '.Jpg'] })), ['c/a.png', 'c/b.JPG']);
  for (const [extensions, shown] of [
    [['.png', 'jpg'], '"jpg"'],
    [['.tar.png'], '"\\.tar\\.png"'],
    [['.'], '"\\."'],
    [['.a/b'], '"\\.a/b"'],
  ] as const) {
    const refused = new RegExp(`extension ${shown} is not a file extension`);
    assert.throws(() => imageFolder(join(root, 'extension-option'), { extensions }), refused);
    assert.throws(() => imageFiles(dir, { extensions }), refused);
    assert.throws(() => imageFiles(dir, { extensions, recursive: false }), refused);
  }
  assert.throws(() => imageFolder(join(root, 'extension-option'), { extensions: [] }), /extensions must be a non-empty list/);
  assert.throws(() => imageFiles(dir, { extensions: '.png' as never }), /extensions must be a non-empty list such as \['\.jpg', '\.png'\], got "\.png"/);
});

test('every format decodes; bad files are skipped with one warning each and counted', async () => {
  const ds = imageFolder(join(root, 'folder'));
  const lines: string[] = [];
  const loader = new DataLoader(ds, {
    batchSize: 5,
    transforms: [randomResizedCrop(16, { scale: [0.5, 1] }), normalize()],
    workers: 0,
    seed: 1,
    onWarning: (l) => lines.push(l),
  });
  assert.equal(loader.length, 3);
  const seen = new Set<number>();
  for await (const b of loader) {
    assert.equal(b.images.length, b.shape[0] * 3 * 16 * 16);
    assert.ok(b.images instanceof Float32Array && b.images.every((v) => Number.isFinite(v)));
    for (const i of b.indices) seen.add(i);
  }
  const s = loader.lastSummary!;
  assert.equal(s.skipped, 3);
  assert.deepEqual(s.byReason, { truncated: 1, empty: 1, unsupported: 1 });
  assert.equal(s.samples, 14);
  const skipLines = lines.filter((l) => l.startsWith('data: skipping'));
  assert.equal(skipLines.length, 3);
  assert.ok(skipLines.some((l) => l.includes('empty.jpg') && l.includes('empty file')));
  assert.ok(skipLines.some((l) => l.includes('notes.jpg') && l.includes('not an image')));
  assert.ok(skipLines.some((l) => l.includes('truncated.jpg') && l.includes('truncated')));
  assert.ok(lines.some((l) => /epoch 0: skipped 3 unusable files/.test(l)));
  const names = [...seen].map((i) => ds.name(i));
  for (const good of [
    'base.jpg',
    'prog.JPEG',
    'cmyk.jpg',
    'plain.png',
    'deep16.png',
    'gray-alpha.png',
    'pic.webp',
    'anim.gif',
    'pic.tif',
    'pic.bmp',
    'one.png',
  ]) {
    assert.ok(
      names.some((n) => n.endsWith(good)),
      `${good} was used`,
    );
  }
  // second epoch: no new warning lines, summary still counts
  lines.length = 0;
  for await (const b of loader) void b;
  assert.equal(lines.filter((l) => l.startsWith('data: skipping')).length, 0);
  assert.equal(loader.lastSummary!.skipped, 3);
});

test('empty or unreadable datasets stop with errors naming the path', async () => {
  const empty = join(root, 'empty');
  mkdirSync(join(empty, 'cls'), { recursive: true });
  assert.throws(
    () => imageFolder(join(root, 'missing')),
    (e: Error) => e.message.includes(join(root, 'missing')) && /does not exist/.test(e.message),
  );
  assert.throws(() => imageFolder(join(empty, 'cls')), /has no class sub-folders .*expected a folder with one sub-folder per class/);
  assert.throws(
    () => imageFolder(empty),
    (e: Error) => e.message.includes(empty) && /found no images/.test(e.message),
  );
  assert.throws(() => imageFiles(join(empty, 'cls')), /found no images/);
  const bad = join(root, 'allbad');
  write(join(bad, 'x', '1.jpg'), 'nope');
  write(join(bad, 'x', '2.jpg'), new Uint8Array(0));
  const loader = new DataLoader(imageFolder(bad), {
    batchSize: 2,
    transforms: [randomResizedCrop(8)],
    workers: 0,
    onWarning: () => undefined,
    maxReplacements: 10,
  });
  await assert.rejects(async () => {
    for await (const b of loader) void b;
  }, /10 samples in a row could not be used .*is the dataset readable/);
  assert.throws(() => new DataLoader(imageFolder(join(root, 'folder')), { batchSize: 2 }), /differ in size/);
});

test('CIFAR-10 and CIFAR-100 binary batches', () => {
  const dir = join(root, 'cifar-10-batches-bin');
  const rec = (label: number, v: number) => {
    const b = Buffer.alloc(3073, v);
    b[0] = label;
    b[1] = 255; // R of pixel 0
    return b;
  };
  write(join(dir, 'data_batch_1.bin'), Buffer.concat([rec(3, 10), rec(7, 20)]));
  write(join(dir, 'data_batch_2.bin'), Buffer.concat([rec(1, 30)]));
  assert.throws(() => cifarBinary(root), /has data_batch_1\.bin but not data_batch_3\.bin, data_batch_4\.bin, data_batch_5\.bin: CIFAR-10's training set is/);
  for (const k of [3, 4, 5]) write(join(dir, `data_batch_${k}.bin`), rec(k, 30 + k));
  write(join(dir, 'test_batch.bin'), Buffer.concat([rec(9, 40)]));
  write(join(dir, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n');
  const train = cifarBinary(root);
  assert.equal(train.length, 6);
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5].map((i) => train.label(i)),
    [3, 7, 1, 3, 4, 5],
  );
  assert.equal(train.classes[3], 'cat');
  assert.deepEqual(train.fixedSize, [32, 32]);
  const mem = train.spec.images;
  assert.equal(mem.data[0], 255);
  assert.equal(mem.data[1], 10);
  assert.equal(mem.data[3072 + 5], 20);
  assert.equal(cifarBinary(dir, { train: false }).label(0), 9);
  const d100 = join(root, 'c100', 'cifar-100-binary');
  const r100 = Buffer.alloc(3074, 5);
  r100[0] = 4;
  r100[1] = 77;
  write(join(d100, 'train.bin'), r100);
  assert.equal(cifarBinary(join(root, 'c100')).label(0), 77);
  assert.equal(cifarBinary(join(root, 'c100'), { labels: 'coarse' }).label(0), 4);
  r100[2] = 33; // R of pixel 0: after the two label bytes
  write(join(d100, 'train.bin'), r100);
  assert.deepEqual([...cifarBinary(join(root, 'c100')).spec.images.data.subarray(0, 2)], [33, 5]);
  write(join(root, 'emptycifar', 'data_batch_1.bin'), Buffer.alloc(0));
  assert.throws(() => cifarBinary(join(root, 'emptycifar')), /has 0 bytes, expected a multiple of 3073/);
  write(join(root, 'badcifar', 'data_batch_1.bin'), Buffer.alloc(100));
  assert.throws(() => cifarBinary(join(root, 'badcifar')), /expected a multiple of 3073/);
  assert.throws(() => cifarBinary(join(root, 'nothing-here')), /no data_batch_1\.bin/);
  // a label byte of 10 is no CIFAR-10 class (0..9), nor 100 a fine CIFAR-100 one
  write(join(root, 'label10', 'data_batch_1.bin'), Buffer.concat([rec(9, 1), rec(10, 1)]));
  assert.throws(() => cifarBinary(join(root, 'label10')), /image 1 has label 10, but CIFAR-10 has 10 classes/);
  const r100bad = Buffer.alloc(3074, 5);
  r100bad[1] = 100;
  write(join(root, 'label100', 'cifar-100-binary', 'train.bin'), r100bad);
  assert.throws(() => cifarBinary(join(root, 'label100')), /image 0 has label 100, but CIFAR-100 \(fine\) has 100 classes/);
});

test("CIFAR binary refuses a labels value other than 'fine' or 'coarse', and 'coarse' on CIFAR-10 (both gave the fine labels)", () => {
  const c10 = join(root, 'labels-option', 'c10');
  for (const k of [1, 2, 3, 4, 5]) write(join(c10, `data_batch_${k}.bin`), Buffer.alloc(3073, 1));
  const c100 = join(root, 'labels-option', 'c100');
  const r = Buffer.alloc(3074, 2);
  r[0] = 4; // coarse
  r[1] = 77; // fine
  write(join(c100, 'train.bin'), r);
  assert.throws(() => cifarBinary(c10, { labels: 'coarse' }), /holds CIFAR-10, which has no coarse labels/);
  for (const labels of ['Coarse', 'coarse ', 'superclass'])
    assert.throws(() => cifarBinary(c100, { labels } as never), new RegExp(`labels must be 'fine' or 'coarse', got "${labels}"`));
  assert.equal(cifarBinary(c10, { labels: 'fine' }).classes.length, 10);
  assert.equal(cifarBinary(c100, { labels: 'fine' }).label(0), 77);
  assert.equal(cifarBinary(c100, { labels: 'coarse' }).label(0), 4);
});

test("the data sources refuse an on/off option that is not true or false (train: 'false' read the training split)", () => {
  const c10 = join(root, 'boolean-option', 'c10');
  for (const k of [1, 2, 3, 4, 5]) write(join(c10, `data_batch_${k}.bin`), Buffer.alloc(3073, 1));
  write(join(c10, 'test_batch.bin'), Buffer.alloc(3073, 2));
  const mn = join(root, 'boolean-option', 'mnist');
  const idx = (dims: number[], data: number[]) => {
    const h = Buffer.alloc(4 + 4 * dims.length);
    h[2] = 8;
    h[3] = dims.length;
    dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
    return Buffer.concat([h, Buffer.from(data)]);
  };
  for (const p of ['train', 't10k']) {
    write(join(mn, `${p}-images-idx3-ubyte`), idx([1, 2, 2], [0, 1, 2, 3]));
    write(join(mn, `${p}-labels-idx1-ubyte`), idx([1], [p === 'train' ? 1 : 2]));
  }
  const flat = join(root, 'boolean-option', 'flat');
  write(join(flat, 'a.png'), new Uint8Array([0x89]));
  write(join(flat, 'sub', 'b.png'), new Uint8Array([0x89]));
  for (const value of ['false', 0, 1, null]) {
    const refused = (key: string) => new RegExp(`: ${key} must be true or false, got ${JSON.stringify(value)}$`);
    assert.throws(() => cifarBinary(c10, { train: value } as never), refused('train'));
    assert.throws(() => mnistLike(mn, { train: value } as never), refused('train'));
    assert.throws(() => imageFiles(flat, { recursive: value } as never), refused('recursive'));
  }
  assert.equal(cifarBinary(c10, { train: false }).length, 1);
  assert.equal(mnistLike(mn, { train: false }).label(0), 2);
  assert.equal(mnistLike(mn).label(0), 1);
  assert.equal(imageFiles(flat, { recursive: false }).length, 1);
  assert.equal(imageFiles(flat).length, 2);
});

test('CIFAR-10 JPEG archive is extracted once into a cache folder keyed by the archive content', async () => {
  const jpg = await encode(picture(32, 32), 32, 32, 3, 'jpeg');
  const makeArchive = (name: string, perClass: number): string => {
    const src = join(root, `tarsrc-${name}`);
    rmSync(src, { recursive: true, force: true });
    for (const split of ['train', 'test'])
      for (const cls of ['cat', 'dog']) for (let i = 0; i < perClass; i++) write(join(src, 'cifar10', split, cls, `000${i}.jpg`), jpg);
    const archive = join(root, `${name}.tar.gz`);
    const r = spawnSync('tar', ['-czf', archive, '-C', src, 'cifar10']);
    assert.equal(r.status, 0);
    return archive;
  };
  const archive = makeArchive('mini-cifar', 1);
  const cache = join(root, 'cache');
  const ds = cifar10Jpeg({ archive, cacheDir: cache });
  assert.equal(ds.length, 2);
  assert.deepEqual(ds.classes, ['cat', 'dog']);
  const folder = ensureCifar10Jpeg({ archive, cacheDir: cache });
  assert.equal(folder, join(cache, `cifar10-${fileSha256(archive).slice(0, 16)}`));
  const marker = join(folder, '.complete');
  const t = statSync(marker).mtimeMs;
  const again = cifar10Jpeg({ archive, cacheDir: cache, split: 'test' });
  assert.equal(again.length, 2);
  assert.equal(statSync(marker).mtimeMs, t, 'not extracted twice');
  // another archive gets its own cache, not the first one's; an extraction that a signal ended (its
  // process gone) leaves a temporary folder that the next extraction removes, a live one's stays
  const dead = spawnSync('true').pid;
  write(join(cache, `.extract-${dead}-1`, 'cifar10', 'partial.jpg'), jpg);
  write(join(cache, `.extract-${process.pid}-2`, 'cifar10', 'partial.jpg'), jpg);
  const other = makeArchive('other-cifar', 2);
  assert.equal(cifar10Jpeg({ archive: other, cacheDir: cache }).length, 4);
  assert.ok(!existsSync(join(cache, `.extract-${dead}-1`)), "the dead process's temporary folder is gone");
  assert.ok(existsSync(join(cache, `.extract-${process.pid}-2`)), "a live process's is kept");
  rmSync(join(cache, `.extract-${process.pid}-2`), { recursive: true });
  assert.equal(cifar10Jpeg({ archive, cacheDir: cache }).length, 2);
  // an archive changed in place is extracted again
  const changed = makeArchive('mini-cifar', 3);
  assert.equal(changed, archive);
  assert.equal(cifar10Jpeg({ archive, cacheDir: cache }).length, 6);
  // a missing archive is an error although caches exist
  assert.throws(() => cifar10Jpeg({ archive: join(root, 'nope.tar.gz'), cacheDir: cache }), /nope\.tar\.gz not found/);
  assert.throws(() => cifar10Jpeg({ archive: join(root, 'nope.tar.gz'), cacheDir: join(root, 'cache2') }), /nope\.tar\.gz not found/);
  // a cache folder that cannot be made (read-only $HOME; here under a file, which root cannot write either) names the way out
  assert.throws(
    () => cifar10Jpeg({ archive, cacheDir: join(archive, 'cache') }),
    /^Error: cannot extract .*mini-cifar\.tar\.gz into the data cache .*mini-cifar\.tar\.gz\/cache \(.*ENOTDIR.*\): set SEMAIM_DATA_CACHE to a writable folder$/,
  );
});

test("an archive whose relative path has a ':' before any '/' is extracted from that file, not taken by tar for a remote host's", async () => {
  const jpg = await encode(picture(32, 32), 32, 32, 3, 'jpeg');
  const src = join(root, 'tarsrc-colon');
  for (const split of ['train', 'test']) for (const cls of ['cat', 'dog']) write(join(src, 'cifar10', split, cls, '0000.jpg'), jpg);
  const dir = join(root, 'colon');
  mkdirSync(dir, { recursive: true });
  assert.equal(spawnSync('tar', ['-czf', join(dir, 'cifar:v1.tar.gz'), '-C', src, 'cifar10']).status, 0);
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    // GNU tar reads 'cifar:v1.tar.gz' as the file v1.tar.gz on the host 'cifar' (and failed: "Cannot connect to cifar")
    const ds = cifar10Jpeg({ archive: 'cifar:v1.tar.gz', cacheDir: join(root, 'cache-colon') });
    assert.equal(ds.length, 2);
  } finally {
    process.chdir(cwd);
  }
});

test("an archive holding a link at the completion marker's name (cifar10/.complete) does not make the extraction write through it", async () => {
  const jpg = await encode(picture(32, 32), 32, 32, 3, 'jpeg');
  const src = join(root, 'tarsrc-marker-link');
  for (const split of ['train', 'test']) for (const cls of ['cat', 'dog']) write(join(src, 'cifar10', split, cls, '0000.jpg'), jpg);
  const victim = join(root, 'marker-victim.txt');
  write(victim, 'precious');
  symlinkSync(victim, join(src, 'cifar10', '.complete'));
  const archive = join(root, 'marker-link.tar.gz');
  assert.equal(spawnSync('tar', ['-czf', archive, '-C', src, 'cifar10']).status, 0);
  const ds = cifar10Jpeg({ archive, cacheDir: join(root, 'cache-marker-link') });
  assert.equal(ds.length, 2);
  assert.equal(readFileSync(victim, 'utf8'), 'precious', 'the file the link points to is untouched');
});

test('an archive whose top folder is a link to a folder elsewhere is refused: nothing is written there', () => {
  const elsewhere = join(root, 'top-link-elsewhere');
  mkdirSync(elsewhere, { recursive: true });
  const src = join(root, 'tarsrc-top-link');
  mkdirSync(src, { recursive: true });
  symlinkSync(elsewhere, join(src, 'cifar10'));
  const archive = join(root, 'top-link.tar.gz');
  assert.equal(spawnSync('tar', ['-czf', archive, '-C', src, 'cifar10']).status, 0);
  assert.throws(() => cifar10Jpeg({ archive, cacheDir: join(root, 'cache-top-link') }), /does not contain cifar10\/ \(found: cifar10, a symbolic link\)/);
  assert.deepEqual(readdirSync(elsewhere), [], 'no marker written into the folder the link points to');
});

test("a killed extraction's tar still writing into its temporary folder does not make the next extraction fail: that folder is left for later", async (t) => {
  // kill -9 of node (the OOM killer, a scheduler) ends it, not the tar it runs: that tar keeps writing into
  // `.extract-<dead pid>-*`, whose removal failed (ENOTEMPTY) and failed the next extraction, telling the
  // user to set SEMAIM_DATA_CACHE to a writable folder
  const jpg = await encode(picture(32, 32), 32, 32, 3, 'jpeg');
  const src = join(root, 'tarsrc-orphan');
  for (const split of ['train', 'test']) for (const cls of ['cat', 'dog']) write(join(src, 'cifar10', split, cls, '0000.jpg'), jpg);
  const archive = join(root, 'orphan.tar.gz');
  assert.equal(spawnSync('tar', ['-czf', archive, '-C', src, 'cifar10']).status, 0);
  const cache = join(root, 'cache-orphan');
  const dead = spawnSync('true').pid!;
  const left = join(cache, `.extract-${dead}-1`, 'cifar10');
  mkdirSync(left, { recursive: true });
  // the orphaned tar: writes files there until the folder is gone (or 20 s)
  const writer = spawn('bash', ['-c', 'i=0; while [ $SECONDS -lt 20 ]; do : > "$1/f$((i % 64))" 2>/dev/null || exit 0; i=$((i + 1)); done', 'tar', left], {
    stdio: 'ignore',
  });
  t.after(() => signalChild(writer, 'SIGKILL'));
  for (let i = 0; i < 500 && !existsSync(join(left, 'f63')); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(existsSync(join(left, 'f63')), 'the writer is writing');
  const ds = cifar10Jpeg({ archive, cacheDir: cache });
  assert.equal(ds.length, 2);
});

test('processes extracting the same archive at once keep the first complete folder, which others read already', () => {
  const target = join(root, 'race', 'cifar10-0123');
  const ours = (name: string): string => {
    const d = join(root, 'race', `.extract-${name}`, 'cifar10');
    write(join(d, 'train', 'cat', 'ours.jpg'), Buffer.from('ours'));
    write(join(d, '.complete'), '{}');
    return d;
  };
  // the first rename wins
  commitExtraction(ours('a'), target);
  assert.ok(existsSync(join(target, 'train', 'cat', 'ours.jpg')));
  write(join(target, 'train', 'cat', 'read-by-the-first.jpg'), Buffer.from('x'));
  const ino = statSync(target).ino;
  // a later one finds it complete and leaves it in place (the old code removed it under its readers)
  const late = ours('b');
  commitExtraction(late, target);
  assert.equal(statSync(target).ino, ino, 'the folder others read is the same one');
  assert.ok(existsSync(join(target, 'train', 'cat', 'read-by-the-first.jpg')));
  assert.ok(existsSync(late), 'the late copy stays in its temporary folder, which its caller removes');
  // a folder without .complete (a rename interrupted in an older version) is replaced
  rmSync(join(target, '.complete'));
  commitExtraction(late, target);
  assert.ok(existsSync(join(target, '.complete')) && !existsSync(join(target, 'train', 'cat', 'read-by-the-first.jpg')));
});

test('processes extracting at once over an incomplete folder at the target (an interrupted removal) all succeed, reading the folder left in place', async () => {
  // it was removed in place by each of them: the others failed with ENOTEMPTY, or one removed the folder another had put there and returned
  const jpg = await encode(picture(32, 32), 32, 32, 3, 'jpeg');
  const src = join(root, 'tarsrc-incomplete');
  for (const split of ['train', 'test'])
    for (const cls of ['cat', 'dog']) for (let i = 0; i < 50; i++) write(join(src, 'cifar10', split, cls, `${i}.jpg`), jpg);
  const archive = join(root, 'incomplete.tar.gz');
  assert.equal(spawnSync('tar', ['-czf', archive, '-C', src, 'cifar10']).status, 0);
  const cifar = join(__dirname, '..', '..', 'src', 'data', 'sources', 'cifar.js');
  const script = `const d = require(${JSON.stringify(cifar)}).ensureCifar10Jpeg({ archive: process.argv[1], cacheDir: process.argv[2] });
    console.log(require('node:fs').statSync(d).ino)`;
  for (let round = 0; round < 4; round++) {
    const cache = join(root, `cache-incomplete-${round}`);
    const target = join(cache, `cifar10-${fileSha256(archive).slice(0, 16)}`);
    // what an interrupted removal leaves: the marker gone, thousands of files still there (slow to remove)
    mkdirSync(join(target, 'train'), { recursive: true });
    for (let i = 0; i < 3000; i++) writeFileSync(join(target, 'train', `${i}.jpg`), '');
    const runs = await Promise.all(
      Array.from({ length: 3 }, async () => {
        const child = spawn(process.execPath, ['-e', script, archive, cache], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (b: Buffer) => (out += b.toString()));
        child.stderr.on('data', (b: Buffer) => (out += b.toString()));
        const [code] = await once(child, 'exit');
        return { code, out: out.trim() };
      }),
    );
    assert.deepEqual(
      runs.map((r) => r.code),
      [0, 0, 0],
      runs.map((r) => r.out).join('\n'),
    );
    const ino = String(statSync(target).ino);
    assert.deepEqual(
      runs.map((r) => r.out),
      [ino, ino, ino],
      'every process returned the folder that is in place',
    );
    assert.equal(readdirSync(join(target, 'train', 'cat')).length, 50);
    assert.ok(!existsSync(join(target, 'train', '0.jpg')), 'the incomplete folder is gone');
    assert.deepEqual(
      readdirSync(cache).filter((n) => n.startsWith('.extract-')),
      [],
      'no temporary folder left',
    );
  }
});

test('IDX images and labels, raw and gzip', () => {
  const n = 5;
  const h = 4;
  const w = 3;
  const img = Buffer.alloc(16 + n * h * w);
  img.writeUInt32BE(0x803, 0);
  img.writeUInt32BE(n, 4);
  img.writeUInt32BE(h, 8);
  img.writeUInt32BE(w, 12);
  for (let i = 0; i < n * h * w; i++) img[16 + i] = i;
  const lab = Buffer.alloc(8 + n);
  lab.writeUInt32BE(0x801, 0);
  lab.writeUInt32BE(n, 4);
  for (let i = 0; i < n; i++) lab[8 + i] = (i * 3) % 10;
  const dir = join(root, 'mnist');
  write(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(img));
  write(join(dir, 'train-labels-idx1-ubyte'), lab);
  const ds = mnistLike(dir);
  assert.equal(ds.length, n);
  assert.deepEqual(ds.fixedSize, [4, 3]);
  assert.equal(ds.label(2), 6);
  assert.equal(ds.spec.images.data[12 + 1], 13);
  write(join(dir, 'short-idx3-ubyte'), img.subarray(0, 30));
  assert.throws(() => idxDataset(join(dir, 'short-idx3-ubyte'), null), /truncated IDX data/);
  assert.throws(() => mnistLike(join(root, 'folder')), /lacks train-images-idx3-ubyte/);
});

test('Fashion-MNIST from the Debian package', { skip: !existsSync(FASHION_MNIST_DIR) && 'dataset-fashion-mnist not installed' }, () => {
  const ds = fashionMnist({ train: false });
  assert.equal(ds.length, 10000);
  assert.deepEqual(ds.fixedSize, [28, 28]);
  assert.equal(ds.classes[9], 'Ankle boot');
  const counts = new Array(10).fill(0);
  for (let i = 0; i < ds.length; i++) counts[ds.label(i)]++;
  assert.deepEqual(counts, new Array(10).fill(1000));
});

test('synthetic objects are deterministic, labelled by shape and masked', () => {
  const cfg = syntheticConfig({ size: 32, count: 100, seed: 4 });
  const a = renderSynthetic(cfg, 17);
  const b = renderSynthetic(cfg, 17);
  assert.deepEqual(a.image.planes[0].data, b.image.planes[0].data);
  assert.equal(a.label, syntheticLabel(cfg, 17));
  assert.equal(a.shape, SHAPES[a.label]);
  const mask = a.image.mask!.data;
  const area = mask.reduce((s, v) => s + v, 0);
  assert.ok(area > 20 && area < 32 * 32 * 0.5, `mask area ${area}`);
  // the object's centre pixel is usually inside the mask (not for ring/crescent)
  let centred = 0;
  const labels = new Array(10).fill(0);
  for (let i = 0; i < 100; i++) {
    const s = renderSynthetic(cfg, i);
    labels[s.label]++;
    const m = s.image.mask!.data[Math.floor(s.cy) * 32 + Math.floor(s.cx)];
    if (m) centred++;
  }
  assert.ok(centred > 70, `centred ${centred}`);
  assert.ok(
    labels.every((k) => k > 0),
    'all classes occur',
  );
  const val = syntheticObjects({ split: 'val', size: 32, seed: 4 });
  assert.notDeepEqual(val.sample(17).image.planes[0].data, a.image.planes[0].data);
  assert.equal(val.length, 2000);
});

test('a sample index outside the dataset is a RangeError from label, name and sample, never a sample it does not hold or an undefined label', () => {
  const synthetic = syntheticObjects({ size: 16, count: 10 });
  const folder = imageFolder(join(root, 'folder'));
  const datasets = [
    synthetic,
    folder,
    subsetDataset(folder, 3, 0),
    new MemoryDataset('memory', uniformImages(2, 4, 4, 3), Int32Array.from([0, 1]), ['a', 'b'], [4, 4]),
  ];
  for (const ds of datasets) {
    for (const i of [ds.length, 50, -1, 1.5, NaN]) {
      const message = `${ds.root}: sample index must be an integer in [0, ${ds.length - 1}], got ${i}`;
      assert.throws(() => ds.label(i), { name: 'RangeError', message });
      assert.throws(() => ds.name(i), { name: 'RangeError', message });
    }
    assert.equal(typeof ds.label(ds.length - 1), 'number');
  }
  for (const i of [10, -1, 1.5]) assert.throws(() => synthetic.sample(i), { name: 'RangeError', message: /sample index must be an integer in \[0, 9\]/ });
  assert.throws(() => folder.relativePath(folder.length), RangeError);
  assert.equal(synthetic.sample(9).label, synthetic.label(9));
});

test("synthetic objects refuse a split other than 'train' or 'val' ('test' drew a third stream, neither split)", () => {
  for (const split of ['test', 'Train', 'validation'])
    assert.throws(() => syntheticObjects({ size: 16, count: 2, split } as never), new RegExp(`split must be 'train' or 'val', got "${split}"`));
  assert.equal(syntheticObjects({ size: 16, count: 2, split: 'val' }).length, 2);
});

test('synthetic objects refuse a size, count, class count or seed that is not an integer (count 10.5 gave a dataset of length 10.5, classes 2.5 labels of 1.5, seed 0.5 the images of seed 0)', () => {
  const refused: Array<[Parameters<typeof syntheticConfig>[0], RegExp]> = [
    [{ count: 10.5 }, /^synthetic objects: count must be an integer >= 1, got 10\.5$/],
    [{ classes: 2.5 }, /^synthetic objects: classes must be an integer in 2\.\.10, got 2\.5$/],
    [{ size: 8.5 }, /^synthetic objects: size must be integers of at least 8, got 8\.5x8\.5$/],
    [{ size: [16, 12.5] }, /^synthetic objects: size must be integers of at least 8, got 16x12\.5$/],
    [{ seed: 0.5 }, /^synthetic objects: seed must be an integer, got 0\.5$/],
  ];
  for (const [o, message] of refused) assert.throws(() => syntheticObjects(o), { name: 'RangeError', message });
  assert.equal(syntheticObjects({ size: [16, 12], count: 3, classes: 2, seed: -1 }).length, 3);
});

test('synthetic objects: object scale and background contrast are options (defaults: large objects, low-contrast texture)', () => {
  const base = { size: 32, count: 200, seed: 4 } as const;
  const def = syntheticConfig(base);
  assert.deepEqual([def.objectScale, def.backgroundContrast], [[0.3, 0.45], 0.3]);
  const old = syntheticConfig({ ...base, objectScale: [0.2, 0.34], backgroundContrast: 1 });
  let areaDef = 0;
  let areaOld = 0;
  let spreadDef = 0;
  let spreadOld = 0;
  // Spread of the background: mean absolute deviation of the red plane outside the mask.
  const spread = (s: ReturnType<typeof renderSynthetic>): number => {
    const d = s.image.planes[0].data;
    const m = s.image.mask!.data;
    let n = 0;
    let sum = 0;
    for (let p = 0; p < 1024; p++)
      if (!m[p]) {
        sum += d[p];
        n++;
      }
    const mean = sum / n;
    let dev = 0;
    for (let p = 0; p < 1024; p++) if (!m[p]) dev += Math.abs(d[p] - mean);
    return dev / n;
  };
  for (let i = 0; i < 50; i++) {
    const a = renderSynthetic(def, i);
    const b = renderSynthetic(old, i);
    assert.equal(a.label, b.label, 'same draws: same labels');
    assert.ok(a.radius >= 0.3 * 32 && a.radius <= 0.45 * 32 && b.radius >= 0.2 * 32 && b.radius <= 0.34 * 32);
    areaDef += a.image.mask!.data.reduce((s, v) => s + v, 0);
    areaOld += b.image.mask!.data.reduce((s, v) => s + v, 0);
    spreadDef += spread(a);
    spreadOld += spread(b);
  }
  assert.ok(areaDef > 1.5 * areaOld, `areas ${areaDef} vs ${areaOld}`);
  assert.ok(spreadDef < 0.6 * spreadOld, `background spread ${spreadDef} vs ${spreadOld}`);
  // Tiny images: the radius is capped so that the object still fits.
  const tiny = syntheticConfig({ size: 8, count: 20, objectScale: [0.45, 0.49] });
  for (let i = 0; i < 20; i++) assert.ok(renderSynthetic(tiny, i).radius < 3);
  assert.throws(() => syntheticConfig({ objectScale: [0.3, 0.5] }), /objectScale/);
  assert.throws(() => syntheticConfig({ objectScale: [0.4, 0.3] }), /objectScale/);
  assert.throws(() => syntheticConfig({ backgroundContrast: 1.5 }), /backgroundContrast/);
});

test('defaultDataCache: an empty SEMAIM_DATA_CACHE or HOME is unset, never the current folder', () => {
  // Before: '' resolved to the folder the command ran from, which then grew a copy of the extracted dataset.
  const saved = { cache: process.env.SEMAIM_DATA_CACHE, home: process.env.HOME };
  const restore = (name: 'SEMAIM_DATA_CACHE' | 'HOME', v: string | undefined) => (v === undefined ? delete process.env[name] : (process.env[name] = v));
  try {
    process.env.SEMAIM_DATA_CACHE = '';
    process.env.HOME = '';
    const home = userInfo().homedir;
    assert.ok(home, 'the account has a home in its passwd entry');
    assert.equal(defaultDataCache(), join(home, '.cache', 'semaim', 'data'));
    process.env.SEMAIM_DATA_CACHE = '/elsewhere/cache';
    assert.equal(defaultDataCache(), '/elsewhere/cache');
  } finally {
    restore('SEMAIM_DATA_CACHE', saved.cache);
    restore('HOME', saved.home);
  }
});
