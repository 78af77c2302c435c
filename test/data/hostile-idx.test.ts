// Hostile IDX and CIFAR binary files for the library's in-memory readers: labels past the classes,
// images of zero pixels, FIFOs where a file is expected, and gzip data larger than the header declares.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { cifarBinary, idxDataset, parseIdx } from '../../src/data';
import { tempDir, write } from './helpers';

/** An unsigned-byte IDX file of `dims` followed by `data`. */
function idx(dims: number[], data: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.alloc(4 + 4 * dims.length);
  b[2] = 8;
  b[3] = dims.length;
  dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([b, data]);
}

test('IDX: a label past the classes is refused, naming the image, as CIFAR does', () => {
  const { dir, cleanup } = tempDir();
  try {
    write(join(dir, 'images'), idx([3, 2, 2], new Uint8Array(12)));
    write(join(dir, 'labels'), idx([3], new Uint8Array([1, 0, 200])));
    assert.throws(() => idxDataset(join(dir, 'images'), join(dir, 'labels'), ['a', 'b']), /labels: image 2 has label 200, but there are 2 classes/);
    // without class names nothing bounds the labels
    assert.equal(idxDataset(join(dir, 'images'), join(dir, 'labels')).label(2), 200);
  } finally {
    cleanup();
  }
});

test('IDX: header bounds (element type, dimension count, a header or data one byte short) and what the dataset refuses (no images, a zero width, a label equal to the class count, labels of two dims)', () => {
  const refused = (bytes: Buffer, message: RegExp) => assert.throws(() => parseIdx(bytes, 'f'), message);
  const ints = idx([2, 2], new Uint8Array(4));
  ints[2] = 0x0c;
  refused(ints, /element type 0xc is not unsigned byte/);
  refused(idx([], new Uint8Array(1)), /truncated IDX header/);
  refused(idx([2, 2]).subarray(0, 11), /truncated IDX header/);
  refused(idx([2, 2], new Uint8Array(3)), /truncated IDX data \(3 bytes, expected 4/);
  // one byte over: not the file its header describes (torchvision's reader refuses it; a gzipped one is refused too)
  refused(idx([2, 2], new Uint8Array(5)), /f: 5 bytes of IDX data where its header \(dims 2x2\) declares 4/);
  assert.deepEqual([...parseIdx(idx([2, 2], new Uint8Array([1, 2, 3, 4])), 'f').data], [1, 2, 3, 4]);
  const { dir, cleanup } = tempDir();
  try {
    write(join(dir, 'none'), idx([0, 2, 2]));
    assert.throws(() => idxDataset(join(dir, 'none'), null), /none holds no images/);
    write(join(dir, 'thin'), idx([3, 2, 0]));
    assert.throws(() => idxDataset(join(dir, 'thin'), null), /images of 2x0 pixels hold nothing/);
    write(join(dir, 'images'), idx([3, 2, 2], new Uint8Array(12)));
    write(join(dir, 'labels'), idx([3], new Uint8Array([1, 0, 2])));
    assert.throws(() => idxDataset(join(dir, 'images'), join(dir, 'labels'), ['a', 'b']), /image 2 has label 2, but there are 2 classes/);
    write(join(dir, 'labels2d'), idx([3, 1], new Uint8Array([1, 0, 1])));
    assert.throws(() => idxDataset(join(dir, 'images'), join(dir, 'labels2d')), /labels2d has dims 3x1, expected 3 labels/);
  } finally {
    cleanup();
  }
});

test('IDX: images of zero pixels are refused before anything is allocated', () => {
  const { dir, cleanup } = tempDir();
  try {
    write(join(dir, 'empty'), idx([3, 0, 0]));
    assert.throws(() => idxDataset(join(dir, 'empty'), null), /empty has dims 3x0x0: images of 0x0 pixels hold nothing/);
    write(join(dir, 'huge'), idx([0xffffffff, 0, 28]));
    assert.throws(() => idxDataset(join(dir, 'huge'), null), /huge has dims 4294967295x0x28: images of 0x28 pixels hold nothing/);
  } finally {
    cleanup();
  }
});

test('IDX and CIFAR binary: a FIFO or a folder where a file is read is refused at once (a FIFO blocked for ever)', () => {
  const { dir, cleanup } = tempDir();
  try {
    execFileSync('mkfifo', [join(dir, 'images')]);
    assert.throws(() => idxDataset(join(dir, 'images'), null), /^Error: IDX: .*images is a FIFO, not a regular file$/);
    mkdirSync(join(dir, 'c10'));
    execFileSync('mkfifo', [join(dir, 'c10', 'data_batch_1.bin')]);
    assert.throws(() => cifarBinary(join(dir, 'c10')), /^Error: CIFAR binary: .*data_batch_1\.bin is a FIFO, not a regular file$/);
    mkdirSync(join(dir, 'c10b', 'data_batch_1.bin'), { recursive: true });
    assert.throws(() => cifarBinary(join(dir, 'c10b')), /^Error: CIFAR binary: .*data_batch_1\.bin is a folder, not a regular file$/);
    // the class names beside the batches
    write(join(dir, 'meta', 'data_batch_1.bin'), Buffer.alloc(3073));
    execFileSync('mkfifo', [join(dir, 'meta', 'batches.meta.txt')]);
    assert.throws(() => cifarBinary(join(dir, 'meta')), /^Error: CIFAR binary: .*batches\.meta\.txt is a FIFO, not a regular file$/);
  } finally {
    cleanup();
  }
});

test('IDX: gzip data is decompressed to no more than the header declares', () => {
  const images = idx([2, 2, 2], new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
  assert.deepEqual([...parseIdx(gzipSync(images)).data], [1, 2, 3, 4, 5, 6, 7, 8]);
  // 8 bytes declared, 64 MiB of zeros behind them (64 KiB of gzip)
  const bomb = gzipSync(Buffer.concat([images, Buffer.alloc(64 << 20)]));
  assert.throws(() => parseIdx(bomb, 'bomb.gz'), /^Error: bomb\.gz: gzip data decompresses to more than the 24 bytes its IDX header declares \(dims 2x2x2\)$/);
  assert.throws(
    () => parseIdx(gzipSync(idx([0xffffffff, 0xffffffff, 0xffffffff])), 'huge.gz'),
    /^Error: huge\.gz: IDX dims 4294967295x4294967295x4294967295 declare .* bytes, more than a buffer holds/,
  );
  assert.throws(() => parseIdx(gzipSync(images.subarray(0, 20)), 'short.gz'), /short\.gz: truncated IDX data \(4 bytes, expected 8/);
  assert.throws(() => parseIdx(Buffer.from([0x1f, 0x8b, 1, 2, 3]), 'junk.gz'), /junk\.gz: corrupt gzip data/);
});
