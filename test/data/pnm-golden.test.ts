// semaim's Netpbm decoder against PIL's (scripts/golden_pnm.py): every variant decodes to PIL's
// convert('RGB') bytes, except a 16-bit P5, which semaim scales where PIL clips (the manifest says so).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { openImage, sniff } from '../../src/data/codecs/decode';
import { decodePnm } from '../../src/data/codecs/pnm';
import { DecodeError } from '../../src/data/codecs/errors';
import { interleave } from './helpers';

const DIR = join(__dirname, '..', '..', '..', 'test', 'golden', 'pnm');
const manifest = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8')) as Array<{
  file: string;
  width: number;
  height: number;
  pil: boolean;
  rgbSha256: string;
}>;

/** The decoded image's H×W×3 bytes (grey replicated, as convert('RGB') does). */
function rgbBytes(bytes: Uint8Array): Uint8Array {
  const h = openImage(bytes, { background: 255 });
  assert.ok(!(h instanceof Promise), 'decoded here, not through sharp');
  return interleave(h.decode());
}

test("PBM, PGM and PPM (plain and raw, every depth) decode to PIL's bytes", () => {
  assert.equal(manifest.length, 12);
  assert.deepEqual(
    manifest.filter((e) => !e.pil).map((e) => e.file),
    ['p5-16bit.pgm'],
  );
  const differ: string[] = [];
  for (const e of manifest) {
    const bytes = readFileSync(join(DIR, e.file));
    assert.equal(sniff(bytes), 'pnm', e.file);
    const px = rgbBytes(bytes);
    assert.equal(px.length, e.width * e.height * 3, e.file);
    if (createHash('sha256').update(px).digest('hex') !== e.rgbSha256) differ.push(e.file);
  }
  assert.deepEqual(differ, []);
});

test('a damaged PNM is refused with why: truncated data, a sample above maxval, a bad maxval or size, a non-digit, the pixel limit', () => {
  const refused = (text: string | Buffer, reason: string, message: RegExp): void => {
    const bytes = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
    assert.throws(
      () => decodePnm(bytes),
      (e: unknown) => e instanceof DecodeError && e.reason === reason && message.test(e.message),
      JSON.stringify(text.toString()),
    );
  };
  refused('P6\n2 2\n255\n' + 'x'.repeat(11), 'truncated', /truncated PNM data \(2×2, 3 channel/);
  refused('P5\n2 2\n1000\n' + 'xxxxxxx', 'truncated', /truncated PNM data/);
  refused('P4\n9 2\n' + 'xxx', 'truncated', /truncated PNM data/);
  refused('P2\n2 2\n255\n1 2 3', 'truncated', /truncated PNM data/);
  refused('P1\n2 2\n1 0 1', 'truncated', /truncated PNM data/);
  refused('P6\n2 2\n', 'truncated', /truncated PNM header \(no maxval\)/);
  refused('P3\n1 1\n10\n1 2 11', 'corrupt', /sample 11 above maxval 10/);
  refused('P5\n1 1\n0\nx', 'corrupt', /maxval 0: must be 1–65535/);
  refused('P5\n1 1\n65536\nxx', 'corrupt', /maxval 65536/);
  refused('P5\n0 1\n255\n', 'corrupt', /size 0×1/);
  refused('P5\n1 x\n255\n', 'corrupt', /height: 'x' is not a digit/);
  refused('P1\n2 1\n12', 'corrupt', /PBM sample '2'/);
  refused('P5\n12345678901 1\n255\n', 'corrupt', /over 10 digits/);
  assert.throws(
    () => decodePnm(Buffer.from('P5\n100 100\n255\n'), 9999),
    (e: unknown) => e instanceof DecodeError && e.reason === 'too-large' && /PNM of 100×100 = 10,000 pixels exceeds the limit of 9,999/.test(e.message),
  );
  // only the magic and a whitespace make a PNM: a text file that begins 'P1x' is not one
  assert.equal(sniff(Buffer.from('P1x text')), 'unknown');
});

test('a header claiming more samples than the file holds is refused as truncated before the image is allocated', () => {
  // without a pixel limit a few header bytes claimed up to 12.9 GB: the allocation failed first ('corrupt',
  // "Invalid typed array length"); under the default limit 13,377² RGB took 537 MB before the data was looked at
  for (const text of ['P6 65535 65535 255\n', 'P5 65535 65535 65535\n', 'P4 99999 99999\n', 'P3 65535 65535 255\n1 2 3', 'P1 99999 99999\n1 0']) {
    assert.throws(
      () => decodePnm(Buffer.from(text, 'latin1'), 0),
      (e: unknown) => e instanceof DecodeError && e.reason === 'truncated' && /truncated PNM data/.test(e.message),
      text,
    );
  }
});

test('PNM edges: a raw sample above maxval clips to 255, maxval 256 takes two bytes a sample, CR separates and ends a comment, P7 (PAM) is not a PNM', () => {
  const grey = (bytes: Buffer): number[] => [...decodePnm(bytes).planes[0].data];
  // raw samples are not checked against maxval (as PIL): 200 of 100 is 510, clipped; 50 of 100 is 127.5, to even
  assert.deepEqual(grey(Buffer.concat([Buffer.from('P5\n2 1\n100\n', 'latin1'), Buffer.from([50, 200])])), [128, 255]);
  // from maxval 256 up a raw sample is two bytes, big-endian
  assert.deepEqual(grey(Buffer.concat([Buffer.from('P5\n2 1\n256\n', 'latin1'), Buffer.from([1, 0, 0, 128])])), [255, 128]);
  // CR is whitespace between header tokens, and it ends a comment, in the header and between PBM samples
  assert.deepEqual(grey(Buffer.concat([Buffer.from('P5\r2\r1 # size\r255\r', 'latin1'), Buffer.from([7, 9])])), [7, 9]);
  assert.deepEqual(grey(Buffer.from('P1\n2 1\n# samples\r10', 'latin1')), [0, 255]);
  // 'P7' starts a PAM file (a header of keywords), which is no Netpbm image of P1–P6
  const pam = Buffer.from('P7\nWIDTH 1\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n\x07', 'latin1');
  assert.equal(sniff(pam), 'unknown');
  assert.throws(
    () => decodePnm(pam),
    (e: unknown) => e instanceof DecodeError && e.reason === 'unsupported',
  );
  // a height of 0 is refused as a width of 0 is
  assert.throws(
    () => decodePnm(Buffer.from('P5\n1 0\n255\n', 'latin1')),
    (e: unknown) => e instanceof DecodeError && e.reason === 'corrupt' && /size 1×0/.test(e.message),
  );
});
