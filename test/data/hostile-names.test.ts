// File and folder names that are not UTF-8 cannot be opened by any path Node builds from them: a
// class folder so named is refused (leaving it out would shift every later label), a file so named
// is left out with a warning that says why (at an ImageFolder's root, where files are no classes, ignored).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IMAGE_EXTENSIONS, imageFiles, imageFolder } from '../../src/data';
import { tempDir, picture, encode } from './helpers';

const bytesName = (dir: string, ...parts: (string | number[])[]) =>
  Buffer.concat([Buffer.from(dir + '/'), ...parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))]);

test('ImageFolder: a file name that is not UTF-8 is left out with its reason, ignored at the root; a class folder so named is refused', async () => {
  const { dir: root, cleanup } = tempDir('semaim-names-');
  try {
    const png = await encode(picture(10, 10, 1), 10, 10, 3, 'png');
    for (const cls of ['a', 'b']) {
      mkdirSync(join(root, 'ok', cls), { recursive: true });
      writeFileSync(join(root, 'ok', cls, '1.png'), png);
    }
    writeFileSync(bytesName(join(root, 'ok', 'a'), 'bad', [0xff, 0xfe], '.png'), png);
    const warnings: string[] = [];
    const ds = imageFolder(join(root, 'ok'), { onWarning: (w) => warnings.push(w) });
    assert.equal(ds.length, 2);
    assert.match(warnings.join('\n'), /1 entry cannot be read and is left out: a\/bad\uFFFD\uFFFD\.png \(its name is not valid UTF-8: rename it\)/);

    // a file at the root is no class, whatever its name (Latin-1 "résumé.txt")
    writeFileSync(bytesName(join(root, 'ok'), 'r', [0xe9], 'sum', [0xe9], '.txt'), 'notes');
    assert.deepEqual(imageFolder(join(root, 'ok'), { onWarning: () => {} }).classes, ['a', 'b']);

    mkdirSync(bytesName(join(root, 'ok'), 'c', [0xff]));
    assert.throws(
      () => imageFolder(join(root, 'ok'), { onWarning: () => {} }),
      /ok\/c\uFFFD has a name that is not valid UTF-8, which semaim cannot open: rename it/,
    );
  } finally {
    cleanup();
  }
});

test('folder listing: a valid name holding U+FFFD is listed beside an invalid name that Node shows the same', async () => {
  const { dir: root, cleanup } = tempDir('semaim-names-');
  try {
    const png = await encode(picture(10, 10, 1), 10, 10, 3, 'png');
    mkdirSync(join(root, 'cls'));
    writeFileSync(join(root, 'cls', 'ok.png'), png);
    writeFileSync(join(root, 'cls', '\uFFFD.png'), png); // bytes EF BF BD: valid UTF-8
    writeFileSync(bytesName(join(root, 'cls'), [0xff], '.png'), png); // shown as "\uFFFD.png" too
    for (const ds of [
      imageFolder(root, { onWarning: () => {} }),
      imageFiles(root, { onWarning: () => {} }),
      imageFiles(join(root, 'cls'), { onWarning: () => {}, recursive: false }),
    ]) {
      const listed = Array.from({ length: ds.length }, (_, i) => ds.relativePath(i).split('/').pop());
      assert.deepEqual(listed, ['ok.png', '\uFFFD.png']);
      assert.deepEqual(
        ds.listing.unreadable.map((u) => [u.path.split('/').pop(), u.code]),
        [['\uFFFD.png', 'EILSEQ']],
      );
    }
  } finally {
    cleanup();
  }
});

test('folder listing: warnings and errors that name a folder holding a newline stay on one line, the path quoted', async () => {
  const { dir, cleanup } = tempDir('semaim-names-');
  try {
    const root = join(dir, 'data\nset');
    mkdirSync(join(root, 'a'), { recursive: true });
    writeFileSync(join(root, 'a', '1.png'), await encode(picture(10, 10, 1), 10, 10, 3, 'png'));
    mkdirSync(join(root, 'empty'));
    const warnings: string[] = [];
    imageFolder(root, { onWarning: (w) => warnings.push(w) });
    assert.deepEqual(warnings, [`data: warning: ImageFolder ${JSON.stringify(root)}: 1 class folder(s) contain no images: empty`]);
    assert.throws(() => imageFiles(join(root, 'empty')), {
      message: `image folder: found no images in ${JSON.stringify(join(root, 'empty'))} (looked for ${IMAGE_EXTENSIONS.join(' ')} files)`,
    });
  } finally {
    cleanup();
  }
});
