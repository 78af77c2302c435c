// packStrings: the paths of a files dataset in one shared byte store (1.28M of them for ImageNet).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { packStrings, unpackString } from '../../src/data/dataset';

test('packStrings: every string back as it went in (multi-byte, empty, a lone surrogate as U+FFFD), one Buffer for all', () => {
  const items = ['a/b.jpg', '', 'ü/ö.png', '日本/画像.JPEG', '😀.png', 'x\ud800y', ...Array.from({ length: 1000 }, (_, i) => `n${i}/img_${i}.JPEG`)];
  const from = Buffer.from;
  let calls = 0;
  Buffer.from = ((...a: Parameters<typeof from>) => {
    calls++;
    return (from as (...b: unknown[]) => Buffer)(...a);
  }) as typeof Buffer.from;
  let packed: ReturnType<typeof packStrings>;
  try {
    packed = packStrings(items);
  } finally {
    Buffer.from = from;
  }
  assert.ok(calls <= 2, `packStrings made ${calls} Buffers for ${items.length} strings`);
  assert.equal(packed.offsets.length, items.length + 1);
  assert.equal(
    packed.bytes.length,
    items.reduce((s, x) => s + Buffer.byteLength(x), 0),
  );
  items.forEach((s, i) => assert.equal(unpackString(packed, i), s.replace('\ud800', '\ufffd')));
});
