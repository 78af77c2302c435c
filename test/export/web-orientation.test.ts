// The web page's EXIF-orientation handling (src/export/web/orientation.js) run in Node: it sets
// the orientation tag to 1 in JPEG (little- and big-endian TIFF, SHORT and LONG values), PNG (with a
// valid CRC) and WebP files, changing no other byte, reports the orientation semaim's decoder reads,
// leaves malformed or tagless files as they are, and rotates pixels exactly as semaim's 'apply' does;
// and the export records the policy the page follows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { crc32 } from 'node:zlib';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { exportAsset } from '../../src/export/assets';
import { decodeImage } from '../../src/data/codecs/decode';
import { exifOrientation } from '../../src/data/codecs/orientation';
import { identityPlan } from '../../src/data/geometry';
import { resampleToOutput } from '../../src/data/resample';
import type { Image } from '../../src/data/image';
import { SemAIM, makeConfig } from '../../src/semaim';
import { exportWeb, recordedExifOrientation } from '../../src/export/web-export';
import { writeCheckpointFolder } from '../viz/helpers';
import { smallEncoder, writeExportedEncoder } from './helpers';
import { CheckpointManager } from '../../src/run/checkpoints';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');

interface OrientationModule {
  withoutExifOrientation(bytes: Uint8Array): { bytes: Uint8Array; orientation: number };
  orientRgba(data: Uint8ClampedArray, width: number, height: number, orientation: number): { data: Uint8ClampedArray; width: number; height: number };
}

// A native import(): TypeScript's CommonJS output would turn `import()` into require().
const importEsm = new Function('url', 'return import(url)') as <T>(url: string) => Promise<T>;
const page = () => importEsm<OrientationModule>(pathToFileURL(exportAsset(join('web', 'orientation.js'))).href);

const W = 12;
const H = 8;
/** Distinct pixels, so that any rotation or flip shows. */
const RAW = Buffer.from(Array.from({ length: W * H * 3 }, (_, i) => (Math.floor(i / 3) * 7 + (i % 3) * 80) % 256));
const base = () => sharp(RAW, { raw: { width: W, height: H, channels: 3 } });

/** Interleaved RGBA of a decoded image (semaim's decoder). */
function rgba(img: Image): Uint8ClampedArray {
  const hw = img.width * img.height;
  const chw = new Uint8Array(3 * hw);
  resampleToOutput(img, identityPlan(img.width, img.height), chw, 0, { kind: 'uint8' });
  const out = new Uint8ClampedArray(4 * hw);
  for (let i = 0; i < hw; i++) out.set([chw[i], chw[hw + i], chw[2 * hw + i], 255], 4 * i);
  return out;
}

/** A JPEG with a hand-made APP1 Exif segment (byte order, value type) in place of sharp's metadata. */
async function jpegWithExif(order: 'II' | 'MM', type: 3 | 4, value: number): Promise<Buffer> {
  const plain = await base().jpeg({ quality: 95 }).toBuffer();
  const le = order === 'II';
  const u16 = (v: number) => (le ? [v & 0xff, v >> 8] : [v >> 8, v & 0xff]);
  const u32 = (v: number) => (le ? [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24] : [v >>> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff]);
  // two IFD0 entries (another tag first), the orientation second, no next IFD
  const valueField = type === 3 ? [...u16(value), 0, 0] : u32(value);
  const tiff = [
    ...Buffer.from(order),
    ...u16(42),
    ...u32(8),
    ...u16(2),
    ...[...u16(0x0128), ...u16(3), ...u32(1), ...u16(2), 0, 0], // ResolutionUnit = inches
    ...[...u16(0x0112), ...u16(type), ...u32(1), ...valueField],
    ...u32(0),
  ];
  const payload = Buffer.from([...Buffer.from('Exif\0\0', 'latin1'), ...tiff]);
  const app1 = Buffer.from([0xff, 0xe1, (payload.length + 2) >> 8, (payload.length + 2) & 0xff]);
  return Buffer.concat([plain.subarray(0, 2), app1, payload, plain.subarray(2)]);
}

/** Byte offsets where a and b differ. */
function changed(a: Uint8Array, b: Uint8Array): number[] {
  assert.equal(a.length, b.length);
  const at: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) at.push(i);
  return at;
}

test('web page: EXIF orientation set to 1 in JPEG (II and MM, SHORT and LONG), PNG (CRC recomputed) and WebP', async () => {
  const { withoutExifOrientation } = await page();
  const cases: Array<[string, Buffer, 'jpeg' | 'png' | 'webp']> = [
    ['jpeg (sharp, II)', await base().jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer(), 'jpeg'],
    ['jpeg II SHORT', await jpegWithExif('II', 3, 6), 'jpeg'],
    ['jpeg MM SHORT', await jpegWithExif('MM', 3, 6), 'jpeg'],
    ['jpeg MM LONG', await jpegWithExif('MM', 4, 6), 'jpeg'],
    ['jpeg II LONG', await jpegWithExif('II', 4, 6), 'jpeg'],
    ['png eXIf', await base().png().withMetadata({ orientation: 6 }).toBuffer(), 'png'],
    ['webp EXIF', await base().webp({ lossless: true }).withMetadata({ orientation: 6 }).toBuffer(), 'webp'],
  ];
  for (const [name, bytes, format] of cases) {
    if (format !== 'webp') assert.equal(exifOrientation(bytes, format), 6, `${name}: semaim reads 6`);
    assert.equal((await sharp(bytes).metadata()).orientation, 6, `${name}: libvips reads 6`);
    const before = Uint8Array.from(bytes);
    const r = withoutExifOrientation(bytes);
    assert.deepEqual(before, Uint8Array.from(bytes), `${name}: the input is not modified`);
    assert.notEqual(r.bytes, bytes);
    assert.equal(r.orientation, 6, `${name}: the orientation semaim's 'apply' reads`);
    assert.equal((await sharp(r.bytes).metadata()).orientation ?? 1, 1, `${name}: libvips reads 1 after`);
    if (format !== 'webp') assert.equal(exifOrientation(r.bytes, format), 1, `${name}: semaim reads 1 after`);
    const diff = changed(bytes, r.bytes);
    // the value's bytes (one for SHORT), and for PNG the chunk's 4-byte CRC
    assert.ok(diff.length >= 1 && diff.length <= (format === 'png' ? 5 : 1), `${name}: changed bytes ${diff}`);
    // the same pixels as stored
    assert.deepEqual(rgba(await decodeImage(r.bytes)), rgba(await decodeImage(bytes)), `${name}: pixels`);
    if (format === 'png') {
      // every chunk's CRC is valid (checked with zlib's CRC-32, not the page's)
      for (let pos = 8; pos < r.bytes.length;) {
        const len = Buffer.from(r.bytes).readUInt32BE(pos);
        const crc = Buffer.from(r.bytes).readUInt32BE(pos + 8 + len);
        assert.equal(crc32(r.bytes.subarray(pos + 4, pos + 8 + len)), crc, `${name}: CRC of the chunk at ${pos}`);
        pos += 12 + len;
      }
      assert.ok(decodeImage(r.bytes), 'decodes');
    }
  }
});

test('web page: a file without an orientation tag, or with malformed EXIF, is decoded as given', async () => {
  const { withoutExifOrientation } = await page();
  const good = await jpegWithExif('II', 3, 6);
  const app1 = 2; // the APP1 segment starts after SOI
  const tiff = app1 + 4 + 6;
  const broken = (edit: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    edit(b);
    return b;
  };
  const cases: Array<[string, Buffer]> = [
    ['no EXIF (jpeg)', await base().jpeg().toBuffer()],
    ['no EXIF (png)', await base().png().toBuffer()],
    ['no EXIF (webp)', await base().webp().toBuffer()],
    ['not an image', Buffer.from('hello, this is text and not an image at all')],
    ['empty', Buffer.alloc(0)],
    ['bad byte order', broken((b) => b.write('IM', tiff, 'latin1'))],
    ['not 42', broken((b) => b.writeUInt16LE(43, tiff + 2))],
    ['IFD0 past the segment', broken((b) => b.writeUInt32LE(0xfffffff0, tiff + 4))],
    ['orientation past the entry count', broken((b) => b.writeUInt16LE(1, tiff + 8))],
    ['entries past the segment', broken((b) => b.writeUInt32LE(good.length, tiff + 4))],
    ['orientation of type ASCII', broken((b) => b.writeUInt16LE(2, tiff + 10 + 12 + 2))],
    ['truncated inside the segment', good.subarray(0, tiff + 12)],
    ['segment length 0', broken((b) => b.writeUInt16BE(0, app1 + 2))],
  ];
  for (const [name, bytes] of cases) {
    const r = withoutExifOrientation(bytes);
    assert.equal(r.bytes, bytes, `${name}: the bytes as given`);
    assert.equal(r.orientation, 1, name);
  }
  // a PNG whose eXIf chunk runs past the end, and one with a bad TIFF header: untouched
  const png = await base().png().withMetadata({ orientation: 6 }).toBuffer();
  const at = png.indexOf('eXIf') - 4;
  const long = Buffer.from(png);
  long.writeUInt32BE(png.length, at);
  assert.equal(withoutExifOrientation(long).bytes, long, 'png: chunk past the end');
  const bad = Buffer.from(png);
  bad.write('XX', at + 8, 'latin1');
  assert.equal(withoutExifOrientation(bad).bytes, bad, 'png: bad TIFF header');
  // random damage never throws
  let seed = 5;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.from(good.subarray(0, 80 + Math.floor(rnd() * (good.length - 80))));
    for (let k = 0; k < 3; k++) b[Math.floor(rnd() * 60)] = Math.floor(rnd() * 256);
    const r = withoutExifOrientation(b);
    assert.ok(r.orientation >= 1 && r.orientation <= 8);
  }
});

test("web page: orientRgba shows the stored pixels under orientations 1–8 exactly as semaim's 'apply'", async () => {
  const { orientRgba, withoutExifOrientation } = await page();
  for (let o = 1; o <= 8; o++) {
    const bytes = await base().png().withMetadata({ orientation: o }).toBuffer();
    const stored = await decodeImage(bytes, { exifOrientation: 'ignore' });
    const applied = await decodeImage(bytes, { exifOrientation: 'apply' });
    const r = withoutExifOrientation(bytes);
    assert.equal(r.orientation, o);
    const got = orientRgba(rgba(stored), stored.width, stored.height, r.orientation);
    assert.deepEqual([got.width, got.height], [applied.width, applied.height], `orientation ${o}: size`);
    assert.deepEqual(got.data, rgba(applied), `orientation ${o}: pixels`);
  }
});

test("export --format web: model.json records the run's EXIF orientation policy from its checkpoint, else semaim's default", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-web-exif-policy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const model = new SemAIM(makeConfig('vit_tiny', { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, decoderDepth: 1 })).initWeights(4).eval();
  const ckpt = writeCheckpointFolder(join(dir, 'ckpt'), model);
  const withOptions = (options: Record<string, unknown> | undefined) => {
    const path = join(ckpt, 'state.json');
    const state = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    writeFileSync(path, JSON.stringify({ ...state, options }));
  };
  const policyOf = async (source: string, o: { exifOrientation?: 'ignore' | 'apply' } = {}) => {
    const out = join(dir, 'web');
    await exportWeb(source, out, { dtype: 'float32', overwrite: true, ...o });
    return (JSON.parse(readFileSync(join(out, 'model.json'), 'utf8')) as { exifOrientation: unknown }).exifOrientation;
  };
  withOptions({ exifOrientation: 'apply', epochs: 1 });
  assert.deepEqual(await policyOf(ckpt), { policy: 'apply', source: 'checkpoint' });
  withOptions({ exifOrientation: 'ignore' });
  assert.deepEqual(await policyOf(ckpt), { policy: 'ignore', source: 'checkpoint' });
  assert.deepEqual(await policyOf(ckpt, { exifOrientation: 'apply' }), { policy: 'apply', source: 'option' });
  withOptions(undefined); // a run from before the option
  assert.deepEqual(await policyOf(ckpt), { policy: 'ignore', source: 'default' });
  withOptions({ exifOrientation: 'sideways' });
  await assert.rejects(policyOf(ckpt), /options\.exifOrientation is the string "sideways", expected one of ignore, apply/);
  // a value too deep for JSON.stringify's stack is described, not echoed, and the file still named
  writeFileSync(
    join(ckpt, 'state.json'),
    JSON.stringify({ ...JSON.parse(readFileSync(join(ckpt, 'state.json'), 'utf8')), options: {} }).replace(
      '"options":{}',
      `"options":{"exifOrientation":${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
    ),
  );
  await assert.rejects(policyOf(ckpt), /state\.json: options\.exifOrientation is an Array, expected one of ignore, apply/);
  // an encoder file records none
  assert.deepEqual(await policyOf(writeExportedEncoder(join(dir, 'enc'), smallEncoder(2))), { policy: 'ignore', source: 'default' });

  // the command line takes the policy too, for --format web only
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, 'export', '--checkpoint', ckpt, ...args], { encoding: 'utf8', timeout: 120_000 });
  const web = join(dir, 'web-cli');
  const r = cli('--out', web, '--format', 'web', '--exif-orientation', 'apply');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(readFileSync(join(web, 'model.json'), 'utf8')).exifOrientation, { policy: 'apply', source: 'option' });
  const refused = cli('--out', join(dir, 'enc-cli'), '--exif-orientation', 'apply');
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /exif-orientation.*is for --format web/);
});

test('export --format web of a live run: the policy is that of the checkpoint converted, also when the run prunes it meanwhile (never taken for one that records none)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-web-exif-pruned-'));
  const vitOnnx = require('../../src/export/vit-onnx') as typeof import('../../src/export/vit-onnx');
  const convert = vitOnnx.vitToOnnx;
  t.after(() => {
    vitOnnx.vitToOnnx = convert;
    rmSync(dir, { recursive: true, force: true });
  });
  const model = new SemAIM(makeConfig('vit_tiny', { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, decoderDepth: 1 })).initWeights(4).eval();
  const run = join(dir, 'run');
  // a run read with --exif-orientation apply, saving with --keep-last 1
  const ckpts = new CheckpointManager(run, 1, () => {});
  const save = (step: number) =>
    ckpts.save(step, {
      model: model.stateDict(),
      extra: new Map(),
      state: { step, options: { exifOrientation: 'apply' } },
      modelMetadata: { config: JSON.stringify(model.config), format: 'semaim.pretrain/1' },
    });
  const first = save(5);
  // the run saves step 6, and prunes step 5, while the export converts step 5's encoder
  vitOnnx.vitToOnnx = (...args) => {
    if (existsSync(first)) save(6);
    return convert(...args);
  };
  const out = join(dir, 'web');
  await exportWeb(run, out, { dtype: 'float32' });
  const info = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8')) as { exifOrientation: unknown };
  // (was: { policy: 'ignore', source: 'default' }, as for an encoder file: the page ignored the orientation the run applied)
  assert.deepEqual(info.exifOrientation, { policy: 'apply', source: 'checkpoint' });
  assert.ok(!existsSync(first), 'the run pruned the checkpoint the export converted');
  // a checkpoint folder gone before its policy is read: not taken for one that records none
  assert.throws(() => recordedExifOrientation(first), { code: 'ERR_CHECKPOINT_CHANGED', message: /was removed while it was being read.*run again/ });
});
