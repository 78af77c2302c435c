// Decoders on real files made here: JPEG (baseline/progressive, 4:2:0/4:4:4/gray, regions, DCT
// scaling, CMYK via fallback), PNG (all colour types, 16-bit, palette, interlaced), BMP, GIF,
// WebP, TIFF, and broken inputs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { openImage, decodeImage, sniff } from '../../src/data/codecs/decode';
import { DecodeError } from '../../src/data/codecs/errors';
import { JpegImage } from '../../src/data/codecs/jpeg';
import { NeedsFallback } from '../../src/data/codecs/errors';
import { decodePng } from '../../src/data/codecs/png';
import { decodeBmp } from '../../src/data/codecs/bmp';
import { idct8, aanScaledQuant } from '../../src/data/codecs/idct';
import { resampleToOutput } from '../../src/data/resample';
import { deflateSync } from 'node:zlib';
import { sharp, picture, encode, sharpRgb, interleave, maxAbsDiff, meanAbsDiff, bmp, bmpFile, pngEncode, PNG_SIGNATURE, chunk as pngChunk } from './helpers';

const W = 61;
const H = 43;
const RAW = picture(W, H);

async function jsRgb(bytes: Uint8Array): Promise<Uint8Array> {
  const h = await openImage(bytes);
  const img = h.decode();
  const out = new Uint8Array(3 * img.width * img.height);
  const r = { x0: 0, y0: 0, x1: img.width, y1: img.height };
  resampleToOutput(img, { sample: r, clip: r, outW: img.width, outH: img.height, flip: false, interp: 'bilinear' }, out, 0, { kind: 'uint8' });
  // planar → interleaved
  const hw = img.width * img.height;
  const il = new Uint8Array(3 * hw);
  for (let i = 0; i < hw; i++) for (let c = 0; c < 3; c++) il[i * 3 + c] = out[c * hw + i];
  return il;
}

test('AAN IDCT matches a direct 2-D IDCT', () => {
  const q = new Uint16Array(64).fill(1);
  const qa = aanScaledQuant(q);
  const coef = new Float64Array(64);
  for (let i = 0; i < 64; i++) coef[i] = i < 20 ? Math.round(Math.sin(i * 7.3) * 60) : 0;
  const blk = new Float64Array(64);
  for (let i = 0; i < 64; i++) blk[i] = coef[i] * qa[i];
  const out = new Uint8ClampedArray(64);
  idct8(blk, out, 0, 8);
  for (let y = 0; y < 8; y++) {
    for (let x = 0; x < 8; x++) {
      let s = 0;
      for (let v = 0; v < 8; v++) {
        for (let u = 0; u < 8; u++) {
          const cu = u ? 1 : Math.SQRT1_2;
          const cv = v ? 1 : Math.SQRT1_2;
          s += cu * cv * coef[v * 8 + u] * Math.cos(((2 * x + 1) * u * Math.PI) / 16) * Math.cos(((2 * y + 1) * v * Math.PI) / 16);
        }
      }
      const ref = Math.max(0, Math.min(255, Math.round(s / 4 + 128)));
      assert.ok(Math.abs(out[y * 8 + x] - ref) <= 1, `(${x},${y}) ${out[y * 8 + x]} vs ${ref}`);
    }
  }
});

test('JPEG variants decode like libvips', async () => {
  const variants: Array<[string, object]> = [
    ['baseline 4:2:0', { quality: 90 }],
    ['baseline 4:4:4', { quality: 85, chromaSubsampling: '4:4:4' }],
    ['progressive 4:2:0', { quality: 80, progressive: true }],
    ['progressive 4:4:4', { quality: 95, progressive: true, chromaSubsampling: '4:4:4' }],
    ['mozjpeg', { quality: 75, mozjpeg: true }],
  ];
  for (const [name, opts] of variants) {
    const bytes = await encode(RAW, W, H, 3, 'jpeg', opts);
    assert.equal(sniff(bytes), 'jpeg');
    const ref = await sharpRgb(bytes);
    const mine = await jsRgb(bytes);
    assert.ok(maxAbsDiff(mine, ref.data) <= 6, `${name}: max diff ${maxAbsDiff(mine, ref.data)}`);
    assert.ok(meanAbsDiff(mine, ref.data) < 1, `${name}: mean diff ${meanAbsDiff(mine, ref.data)}`);
  }
  const gray = await sharp(RAW, { raw: { width: W, height: H, channels: 3 } })
    .toColourspace('b-w')
    .jpeg({ quality: 90 })
    .toBuffer();
  const gimg = new JpegImage(gray);
  assert.equal(gimg.space, 'gray');
  const gref = await sharpRgb(gray);
  assert.ok(maxAbsDiff(await jsRgb(gray), gref.data) <= 2);
});

test('JPEG region decode and DCT scaling agree with a full decode', async () => {
  const big = picture(160, 120, 3);
  const bytes = await encode(big, 160, 120, 3, 'jpeg', { quality: 92 });
  const j = new JpegImage(bytes);
  const full = j.decode();
  const part = j.decode({ region: { x0: 40, y0: 30, x1: 90, y1: 70 } });
  const fy = full.planes[0];
  const py = part.planes[0];
  assert.ok(py.x0 <= 40 && py.y0 <= 30 && py.x0 + py.width >= 90 && py.y0 + py.height >= 70);
  assert.ok(py.width * py.height < (fy.width * fy.height) / 2, 'region decode should be smaller');
  for (let y = 30; y < 70; y++) {
    for (let x = 40; x < 90; x++) {
      assert.equal(py.data[(y - py.y0) * py.stride + (x - py.x0)], fy.data[y * fy.stride + x]);
    }
  }
  // 1/2 and 1/8 scale: close to box-averaged full decode
  for (const r of [2, 8] as const) {
    const red = j.decode({ reduction: r }).planes[0];
    assert.equal(red.sx, r);
    assert.equal(red.width, Math.ceil(160 / r));
    let worst = 0;
    for (let y = 0; y < Math.floor(120 / r); y++) {
      for (let x = 0; x < Math.floor(160 / r); x++) {
        let s = 0;
        for (let yy = 0; yy < r; yy++) for (let xx = 0; xx < r; xx++) s += fy.data[(y * r + yy) * fy.stride + x * r + xx];
        worst = Math.max(worst, Math.abs(s / (r * r) - red.data[y * red.stride + x]));
      }
    }
    assert.ok(worst < 12, `reduction ${r}: worst ${worst}`);
  }
});

test('scratch decoding (SIMD IDCT into the wasm arena) matches the plain decoder', async () => {
  for (const opts of [{ quality: 90 }, { quality: 85, progressive: true }, { quality: 80, chromaSubsampling: '4:4:4' }]) {
    const bytes = await encode(picture(90, 70, 5), 90, 70, 3, 'jpeg', opts);
    const plain = new JpegImage(bytes).decode();
    const region = { x0: 20, y0: 10, x1: 70, y1: 60 };
    const fast = new JpegImage(bytes).decode({ scratch: true, region });
    for (let c = 0; c < 3; c++) {
      const a = plain.planes[c];
      const b = fast.planes[c];
      for (let y = 0; y < b.height; y++) {
        for (let x = 0; x < b.width; x++) {
          const va = a.data[(y + b.y0 / b.sy) * a.stride + x + b.x0 / b.sx];
          const vb = b.data[b.offset + y * b.stride + x];
          assert.ok(Math.abs(va - vb) <= 1, `${JSON.stringify(opts)} plane ${c} (${x},${y}): ${va} vs ${vb}`);
        }
      }
    }
  }
});

test('CMYK JPEG is decoded (through libvips) to RGB', async () => {
  const cmyk = await sharp(RAW, { raw: { width: W, height: H, channels: 3 } })
    .toColourspace('cmyk')
    .jpeg({ quality: 95 })
    .toBuffer();
  const meta = await sharp(cmyk).metadata();
  assert.equal(meta.space, 'cmyk');
  assert.throws(
    () => new JpegImage(cmyk),
    (e: unknown) => e instanceof NeedsFallback && /4 components/.test(e.message),
    'left to libvips',
  );
  const img = await decodeImage(cmyk);
  assert.equal(img.space, 'rgb');
  assert.equal(img.width, W);
  const diff = meanAbsDiff(interleave(img), RAW);
  assert.ok(diff < 25, `CMYK round trip mean diff ${diff}`);
});

test('PNG colour types, bit depths, palette, tRNS and interlacing', async () => {
  // RGB 8-bit, interlaced RGB
  for (const opts of [{}, { progressive: true }]) {
    const b = await encode(RAW, W, H, 3, 'png', opts);
    assert.deepEqual(Buffer.from(interleave(decodePng(b))), RAW);
  }
  // palette
  const pal = await encode(RAW, W, H, 3, 'png', { palette: true, colours: 16, dither: 0 });
  assert.deepEqual(Buffer.from(interleave(decodePng(pal))), (await sharpRgb(pal)).data);
  // 16-bit RGB
  const b16 = await sharp(RAW, { raw: { width: W, height: H, channels: 3 } })
    .toColourspace('rgb16')
    .png()
    .toBuffer();
  assert.equal((await sharp(b16).metadata()).depth, 'ushort');
  assert.ok(maxAbsDiff(interleave(decodePng(b16)), RAW) <= 1);
  // gray + alpha (8 and 16 bit), composited on black and on white
  for (const depth of [8, 16] as const) {
    const ga: number[] = [];
    for (let i = 0; i < W * H; i++) ga.push(depth === 8 ? RAW[3 * i] : RAW[3 * i] * 257, i % 3 === 0 ? 0 : depth === 8 ? 255 : 65535);
    const gaPng = pngEncode(W, H, 4, depth, ga);
    assert.equal((await sharp(gaPng).metadata()).channels, 2);
    const onBlack = decodePng(gaPng, 0);
    const onWhite = decodePng(gaPng, 255);
    assert.equal(onBlack.space, 'gray');
    for (let i = 0; i < W * H; i++) {
      const p = onBlack.planes[0].data[i];
      const q = onWhite.planes[0].data[i];
      if (i % 3 === 0) assert.deepEqual([p, q], [0, 255]);
      else assert.deepEqual([p, q], [RAW[3 * i], RAW[3 * i]]);
    }
  }
  // gray 2-bit and palette with tRNS, RGB with a tRNS colour key
  const g2 = pngEncode(4, 1, 0, 2, [0, 1, 2, 3]);
  assert.deepEqual([...decodePng(g2).planes[0].data], [0, 85, 170, 255]);
  const palT = pngEncode(3, 1, 3, 8, [0, 1, 2], { plte: Uint8Array.from([10, 20, 30, 40, 50, 60, 70, 80, 90]), trns: Uint8Array.from([0]) });
  assert.deepEqual([...interleave(decodePng(palT, 255))], [255, 255, 255, 40, 50, 60, 70, 80, 90]);
  const keyed = pngEncode(2, 1, 2, 8, [1, 2, 3, 4, 5, 6], { trns: Uint8Array.from([0, 1, 0, 2, 0, 3]) });
  assert.deepEqual([...interleave(decodePng(keyed, 0))], [0, 0, 0, 4, 5, 6]);
  // RGBA
  const rgba = Buffer.alloc(W * H * 4);
  for (let i = 0; i < W * H; i++) {
    rgba[4 * i] = RAW[3 * i];
    rgba[4 * i + 1] = RAW[3 * i + 1];
    rgba[4 * i + 2] = RAW[3 * i + 2];
    rgba[4 * i + 3] = 128;
  }
  const rgbaImg = decodePng(await encode(rgba, W, H, 4, 'png'), 255);
  assert.equal(rgbaImg.planes[0].data[0], Math.floor((RAW[0] * 128 + 255 * 127 + 127) / 255));
  // 1-bit gray
  const bw = await sharp(RAW, { raw: { width: W, height: H, channels: 3 } })
    .toColourspace('b-w')
    .png({ palette: true, colours: 2 })
    .toBuffer();
  const bwImg = await decodeImage(bw);
  const bwRef = await sharpRgb(bw);
  assert.deepEqual(Buffer.from(interleave(bwImg)), bwRef.data);
});

test('BMP: a palette index past the colours the file gives is grey (i, i, i), as PIL 9.4 gives it', () => {
  // PIL: [(10, 20, 30), (40, 50, 60), (2, 2, 2), (200, 200, 200)]
  const file = bmpFile({
    w: 4,
    h: 1,
    bpp: 8,
    compression: 0,
    palette: [
      [10, 20, 30],
      [40, 50, 60],
    ],
    pixels: Uint8Array.of(0, 1, 2, 200),
  });
  assert.deepEqual([...interleave(decodeBmp(file))], [10, 20, 30, 40, 50, 60, 2, 2, 2, 200, 200, 200]);
});

test('BMP: palette (1/4/8-bit), 24-bit, 16/32-bit bitfields, RLE8, top-down', () => {
  const palette: Array<[number, number, number]> = [
    [0, 0, 0],
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
  ];
  const palPx = (x: number, y: number): [number, number, number, number] => [...palette[(x + 2 * y) % 4], 255];
  const rgbPx = (x: number, y: number): [number, number, number, number] => [(x * 37) & 255, (y * 53) & 255, ((x + y) * 11) & 255, 255];
  const cases: Array<[string, Buffer, (x: number, y: number) => [number, number, number, number], number]> = [
    ['8-bit', bmp(13, 7, palPx, { bpp: 8, palette }), palPx, 0],
    ['4-bit', bmp(13, 7, palPx, { bpp: 4, palette }), palPx, 0],
    ['1-bit', bmp(13, 7, (x, y) => [...palette[(x + y) % 2], 255], { bpp: 1, palette: palette.slice(0, 2) }), (x, y) => [...palette[(x + y) % 2], 255], 0],
    ['rle8', bmp(13, 7, palPx, { bpp: 8, palette, rle8: true }), palPx, 0],
    ['24-bit', bmp(13, 7, rgbPx, { bpp: 24 }), rgbPx, 0],
    ['24-bit top-down', bmp(13, 7, rgbPx, { bpp: 24, topDown: true }), rgbPx, 0],
    ['32-bit', bmp(13, 7, rgbPx, { bpp: 32 }), rgbPx, 0],
    ['16-bit 565', bmp(13, 7, rgbPx, { bpp: 16 }), rgbPx, 8],
  ];
  for (const [name, file, px, tol] of cases) {
    assert.equal(sniff(file), 'bmp');
    const img = decodeBmp(file);
    assert.equal(img.width, 13, name);
    assert.equal(img.height, 7, name);
    const got = interleave(img);
    for (let y = 0; y < 7; y++) {
      for (let x = 0; x < 13; x++) {
        const [r, g, b] = px(x, y);
        const o = (y * 13 + x) * 3;
        assert.ok(Math.abs(got[o] - r) <= tol && Math.abs(got[o + 1] - g) <= tol && Math.abs(got[o + 2] - b) <= tol, `${name} (${x},${y})`);
      }
    }
  }
  // 32-bit with alpha 0 composited onto white
  const transparent = bmp(4, 4, () => [10, 20, 30, 0], { bpp: 32 });
  assert.deepEqual([...interleave(decodeBmp(transparent, 255)).slice(0, 3)], [255, 255, 255]);
});

test("BMP: 16-bit channels scale as PIL's BGR;15 and BGR;16 unpackers do, v × 255 / max rounded down (5-6-5 bitfields and BI_RGB's 5-5-5)", () => {
  const levels = Array.from({ length: 32 }, (_, v) => v);
  const row = (px: (v: number) => number) => {
    const b = Buffer.alloc(64);
    levels.forEach((v) => b.writeUInt16LE(px(v), 2 * v));
    return b;
  };
  // what PIL 9 gives (Image.open(f).convert('RGB')) for these two files, levels 0..31 of each channel
  const floor = (v: number, max: number) => Math.floor((v * 255) / max);
  const rgb555 = bmpFile({ w: 32, h: 1, bpp: 16, compression: 0, palette: [], pixels: row((v) => (v << 10) | (v << 5) | v) });
  const rgb565 = bmpFile({ w: 32, h: 1, bpp: 16, compression: 3, palette: [], pixels: row((v) => (v << 11) | ((2 * v) << 5) | (31 - v)) });
  const il555 = interleave(decodeBmp(rgb555));
  const il565 = interleave(decodeBmp(rgb565));
  for (const v of levels) {
    assert.deepEqual([...il555.subarray(3 * v, 3 * v + 3)], [floor(v, 31), floor(v, 31), floor(v, 31)], `5-5-5 level ${v}`);
    assert.deepEqual([...il565.subarray(3 * v, 3 * v + 3)], [floor(v, 31), floor(2 * v, 63), floor(31 - v, 31)], `5-6-5 level ${v}`);
  }
  assert.deepEqual([...il555.subarray(9, 12)], [24, 24, 24], 'level 3: 24.68 is 24, not 25');
});

test('BMP: an all-ones (32-bit) channel mask decodes, in a bitfields red mask and a V4 alpha mask on BI_RGB (it hung)', () => {
  const redAllOnes = bmp(2, 1, (x) => (x === 0 ? [255, 255, 255, 255] : [0, 0, 0, 128]), { bpp: 32 }); // 0xffffffff, 0x80000000
  redAllOnes.writeUInt32LE(0xffffffff, 54);
  redAllOnes.writeUInt32LE(0, 66); // no alpha mask
  const alphaAllOnes = bmp(2, 1, (x) => (x === 0 ? [255, 255, 255, 255] : [0x10, 0x20, 0x30, 0]), { bpp: 32 });
  alphaAllOnes.writeUInt32LE(0, 30); // BI_RGB; the V4 header's alpha mask stays at 66
  alphaAllOnes.writeUInt32LE(0xffffffff, 66);
  // In a child process: the old decoder never returned.
  const mod = join(__dirname, '..', '..', 'src', 'data', 'codecs', 'bmp.js');
  const script = `const { decodeBmp } = require(${JSON.stringify(mod)});
    for (const b64 of process.argv.slice(1)) console.log(JSON.stringify([...decodeBmp(Buffer.from(b64, 'base64')).planes[0].data]));`;
  const r = spawnSync(process.execPath, ['-e', script, redAllOnes.toString('base64'), alphaAllOnes.toString('base64')], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.signal, null, 'decoding did not finish');
  assert.equal(r.status, 0, r.stderr);
  const [red, alpha] = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as number[]);
  // planes R, G, B of the two pixels; 2^31 of 2^32 - 1 is 127.5..., rounded down as every channel is (PIL's 16-bit unpackers)
  assert.deepEqual(red, [255, 127, 255, 0, 255, 0]);
  assert.deepEqual(alpha, [255, 0, 255, 0, 255, 0]); // the second pixel fully transparent on black
});

/** A PNG from its parts: IHDR fields (its length `ihdrLength`), IDAT chunks as given, IEND when `end`. */
function pngOf(w: number, h: number, depth: number, ctype: number, idat: Buffer[], o: { end?: boolean; ihdrLength?: number; plte?: Buffer } = {}): Buffer {
  const ihdr = Buffer.alloc(o.ihdrLength ?? 13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = depth;
  ihdr[9] = ctype;
  const plte = o.plte ? [pngChunk('PLTE', o.plte)] : [];
  const end = (o.end ?? true) ? [pngChunk('IEND', new Uint8Array(0))] : [];
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), ...plte, ...idat.map((d) => pngChunk('IDAT', d)), ...end]);
}

/** Rows of `raw` (rowBytes each) filtered as the PNG spec defines it, row y with filter type y mod 5. */
function pngFiltered(raw: Uint8Array, rowBytes: number, bpp: number): Buffer {
  const h = raw.length / rowBytes;
  const out = Buffer.alloc((rowBytes + 1) * h);
  const paeth = (a: number, b: number, c: number) => {
    const p = a + b - c;
    const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
  };
  for (let y = 0; y < h; y++) {
    const f = y % 5;
    out[y * (rowBytes + 1)] = f;
    for (let i = 0; i < rowBytes; i++) {
      const at = (yy: number, ii: number) => (yy >= 0 && ii >= 0 ? raw[yy * rowBytes + ii] : 0);
      const [a, b, c] = [at(y, i - bpp), at(y - 1, i), at(y - 1, i - bpp)];
      const pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][f];
      out[y * (rowBytes + 1) + 1 + i] = (raw[y * rowBytes + i] - pred) & 255;
    }
  }
  return out;
}

test('PNG: every filter type on 8- and 16-bit RGB rows, 16-bit samples rounded to 8 bits (not cut)', () => {
  let seed = 3;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 3; // few values: many predictor ties
  const [w, h] = [7, 10]; // each filter type on two rows
  const rgb8 = Uint8Array.from({ length: w * h * 3 }, () => [0, 90, 250][rnd()]);
  const png8 = pngOf(w, h, 8, 2, [deflateSync(pngFiltered(rgb8, w * 3, 3))]);
  assert.deepEqual(interleave(decodePng(png8)), rgb8);
  const samples16 = Array.from({ length: w * h * 3 }, () => [255, 0x64fa, 0xff00][rnd()]);
  const rgb16 = new Uint8Array(samples16.length * 2);
  samples16.forEach((v, i) => rgb16.set([v >> 8, v & 255], 2 * i));
  const png16 = pngOf(w, h, 16, 2, [deflateSync(pngFiltered(rgb16, w * 6, 6))]);
  // round(v / 257): 255 → 1, 0x64fa → 101, 0xff00 → 254 (cutting to the high byte would give 0, 100, 255)
  assert.deepEqual(
    [...interleave(decodePng(png16))],
    samples16.map((v) => Math.round(v / 257)),
  );
});

test('PNG: a palette index past PLTE is grey (i, i, i), as PIL 9.4 gives it; opaque past tRNS', () => {
  // PIL: [(10, 20, 30), (40, 50, 60), (2, 2, 2), (200, 200, 200)]; with tRNS [128]: alpha 128, 255, 255, 255
  // (composited on the default black: the first pixel halves)
  const plte = Buffer.from([10, 20, 30, 40, 50, 60]);
  const png = pngOf(4, 1, 8, 3, [deflateSync(Buffer.from([0, 0, 1, 2, 200]))], { plte });
  assert.deepEqual([...interleave(decodePng(png))], [10, 20, 30, 40, 50, 60, 2, 2, 2, 200, 200, 200]);
  const withAlpha = Buffer.concat([
    png.subarray(0, png.indexOf('IDAT', 8, 'latin1') - 4),
    pngChunk('tRNS', Uint8Array.of(128)),
    png.subarray(png.indexOf('IDAT', 8, 'latin1') - 4),
  ]);
  assert.deepEqual([...interleave(decodePng(withAlpha))], [5, 10, 15, 40, 50, 60, 2, 2, 2, 200, 200, 200]);
  // 2-bit indices 0..3 over a 2-entry palette: PIL [(10, 20, 30), (40, 50, 60), (2, 2, 2), (3, 3, 3)]
  const twoBit = pngOf(4, 1, 2, 3, [deflateSync(Buffer.from([0, 0b00011011]))], { plte });
  assert.deepEqual([...interleave(decodePng(twoBit))], [10, 20, 30, 40, 50, 60, 2, 2, 2, 3, 3, 3]);
});

test('PNG: refused headers and data name why: a short IHDR, depth 3, a zero size, palette without PLTE, no IDAT, undecodable data (corrupt with IEND, truncated without)', () => {
  const row = deflateSync(Buffer.from([0, 1, 2, 3]));
  assert.deepEqual([...interleave(decodePng(pngOf(1, 1, 8, 2, [row])))], [1, 2, 3]);
  const refused = (file: Buffer, reason: string, message: RegExp, what: string) =>
    assert.throws(
      () => decodePng(file),
      (e: unknown) => e instanceof DecodeError && e.reason === reason && message.test(e.message),
      what,
    );
  refused(pngOf(1, 1, 8, 2, [row], { ihdrLength: 12 }), 'corrupt', /bad IHDR/, 'IHDR of 12 bytes');
  refused(pngOf(1, 1, 3, 0, [row]), 'corrupt', /depth 3/, 'depth 3');
  // depths the PNG spec (and PIL, libpng) allow only for some colour types: RGB, grey + alpha and RGBA at 8 and 16 bits, palette at 1-8
  const plte = { plte: Buffer.from([255, 0, 0, 0, 255, 0]) };
  refused(pngOf(2, 1, 4, 2, [deflateSync(Buffer.from([0, 0x12, 0x34, 0x56]))]), 'corrupt', /colour type 2, depth 4/, 'RGB at 4 bits');
  refused(pngOf(2, 1, 2, 4, [deflateSync(Buffer.from([0, 0x12]))]), 'corrupt', /colour type 4, depth 2/, 'grey + alpha at 2 bits');
  refused(pngOf(1, 1, 1, 6, [deflateSync(Buffer.from([0, 0x80]))]), 'corrupt', /colour type 6, depth 1/, 'RGBA at 1 bit');
  refused(pngOf(2, 1, 16, 3, [deflateSync(Buffer.from([0, 0, 1, 0, 0]))], plte), 'corrupt', /colour type 3, depth 16/, 'palette at 16 bits');
  // a chunk the decoder uses whose bytes do not match its CRC-32 (a bit flipped in the palette gave other colours
  // without a word; PIL refuses the file: 'broken PNG file (bad header checksum in PLTE)')
  const paletted = pngOf(2, 1, 8, 3, [deflateSync(Buffer.from([0, 0, 1]))], plte);
  assert.deepEqual([...interleave(decodePng(paletted))], [255, 0, 0, 0, 255, 0]);
  for (const type of ['IHDR', 'PLTE']) {
    const flipped = Buffer.from(paletted);
    flipped[flipped.indexOf(type, 8, 'latin1') + 4 + 1] ^= 0x40;
    refused(flipped, 'corrupt', new RegExp(`CRC-32 of its ${type} chunk`), `a bit flipped in ${type}`);
  }
  refused(pngOf(1, 0, 8, 2, [row]), 'corrupt', /zero size/, 'height 0');
  refused(pngOf(0, 1, 8, 2, [row]), 'corrupt', /zero size/, 'width 0');
  refused(pngOf(1, 1, 8, 3, [deflateSync(Buffer.from([0, 0]))]), 'corrupt', /without PLTE/, 'palette image without PLTE');
  refused(pngOf(1, 1, 8, 2, []), 'corrupt', /no image data/, 'no IDAT before IEND');
  refused(pngOf(1, 1, 8, 2, [], { end: false }), 'truncated', /no image data/, 'no IDAT, no IEND');
  const garbage = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]); // not a zlib stream ('incorrect header check')
  refused(pngOf(1, 1, 8, 2, [garbage]), 'corrupt', /corrupt PNG data/, 'undecodable IDAT, IEND');
  refused(pngOf(1, 1, 8, 2, [garbage], { end: false }), 'truncated', /truncated PNG data/, 'undecodable IDAT, no IEND: the file was cut');
});

test("PNG: a file cut after its image data, in the zlib stream's checksum, decodes as PIL reads it; cut inside the rows it is truncated", () => {
  // PIL stops inflating once every row is there: a file cut in the last 4 bytes of the stream (its Adler-32, as a
  // download cut a few bytes before the end) opens and converts in PIL; it was refused as truncated here
  const rows = Buffer.from([0, 10, 20, 30, 40, 50, 60, 0, 70, 80, 90, 100, 110, 120]); // 2×2 RGB, filter 0
  const z = deflateSync(rows);
  const whole = pngOf(2, 2, 8, 2, [z]);
  const want = [...interleave(decodePng(whole))];
  assert.deepEqual(want, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]);
  const cut = (n: number) => pngOf(2, 2, 8, 2, [z.subarray(0, z.length - n)], { end: false }).subarray(0, -4); // (its IDAT CRC gone too)
  for (const n of [1, 4]) assert.deepEqual([...interleave(decodePng(cut(n)))], want, `${n} byte(s) of the Adler-32 cut`);
  // rows missing: truncated, as PIL ('image file is truncated'); a wrong Adler-32 in a whole file stays corrupt, as PIL
  assert.throws(
    () => decodePng(cut(8)),
    (e: unknown) => e instanceof DecodeError && e.reason === 'truncated',
  );
  const badSum = Buffer.from(z);
  badSum[badSum.length - 1] ^= 0xff;
  assert.throws(
    () => decodePng(pngOf(2, 2, 8, 2, [badSum])),
    (e: unknown) => e instanceof DecodeError && e.reason === 'corrupt' && /incorrect data check/.test(e.message),
  );
});

test('PNG: a tRNS colour key shorter than its samples (6 bytes for RGB, 2 for grey) is corrupt, as PIL refuses it, not a key padded with zeros', () => {
  const corrupt = (file: Buffer, what: string) =>
    assert.throws(
      () => decodePng(file, 255),
      (e: unknown) => e instanceof DecodeError && e.reason === 'corrupt' && /tRNS/.test(e.message),
      what,
    );
  // RGB (1, 0, 0) under a 2-byte key [0, 1]: read as the key (1, 0, 0), it was made transparent (white here)
  const rgb = [1, 0, 0, 4, 5, 6];
  for (const n of [0, 2, 4, 5]) corrupt(pngEncode(2, 1, 2, 8, rgb, { trns: Uint8Array.from([0, 1, 0, 0, 0, 0].slice(0, n)) }), `RGB with a ${n}-byte tRNS`);
  for (const n of [0, 1]) corrupt(pngEncode(2, 1, 0, 8, [0, 7], { trns: Uint8Array.from([0].slice(0, n)) }), `grey with a ${n}-byte tRNS`);
  // the full key, and (as PIL reads it) a longer chunk's first samples
  for (const trns of [
    [0, 1, 0, 0, 0, 0],
    [0, 1, 0, 0, 0, 0, 9, 9],
  ]) {
    assert.deepEqual([...interleave(decodePng(pngEncode(2, 1, 2, 8, rgb, { trns: Uint8Array.from(trns) }), 255))], [255, 255, 255, 4, 5, 6]);
  }
  for (const trns of [
    [0, 7],
    [0, 7, 9, 9],
  ]) {
    assert.deepEqual([...decodePng(pngEncode(2, 1, 0, 8, [0, 7], { trns: Uint8Array.from(trns) }), 255).planes[0].data], [0, 255]);
  }
});

/** A BMP with a 40-byte header, a palette and RLE-compressed pixel data (compression 1 = RLE8, 2 = RLE4). */
function rleBmp(w: number, h: number, bits: 4 | 8, palette: Array<[number, number, number]>, data: number[]): Buffer {
  return bmpFile({ w, h, bpp: bits, compression: bits === 8 ? 1 : 2, palette, pixels: Buffer.from(data) });
}

test('BMP: RLE8 and RLE4 absolute runs (padded to a 16-bit boundary), delta moves (right, then up) and end of bitmap', () => {
  const palette: Array<[number, number, number]> = [
    [0, 0, 0],
    [200, 0, 0],
    [0, 200, 0],
    [0, 0, 200],
  ];
  // bottom row: 3 absolute pixels (1 pad byte follows), a run of 2 of colour 2, end of line;
  // top row: a delta 1 right (pixel 0 stays black), a run of 2 of colour 3, end of bitmap (the rest stays black)
  const rle8 = rleBmp(5, 2, 8, palette, [0, 3, 1, 2, 3, 0, 2, 2, 0, 0, 0, 2, 1, 0, 2, 3, 0, 1]);
  const rows8 = interleave(decodeBmp(rle8));
  const idx = (rgb: Uint8Array, n: number) =>
    Array.from({ length: n }, (_, i) => palette.findIndex((c) => c[0] === rgb[3 * i] && c[1] === rgb[3 * i + 1] && c[2] === rgb[3 * i + 2]));
  assert.deepEqual(idx(rows8, 10), [0, 3, 3, 0, 0, 1, 2, 3, 2, 2]); // top row first
  // RLE4: a run of 3 alternating nibbles 1, 2; an absolute run of 5 nibbles (3 data bytes and a pad byte, skipped
  // whatever it holds); end of bitmap
  const rle4 = rleBmp(8, 1, 4, palette, [3, 0x12, 0, 5, 0x30, 0x12, 0x30, 0x07, 0, 1]);
  assert.deepEqual(idx(interleave(decodeBmp(rle4)), 8), [1, 2, 1, 3, 0, 1, 2, 3]);
  // pixels an end of line skips are palette entry 0, as PIL's BmpRleDecoder pads the row (index 0), not black
  // (PIL 9.4 gives [(0, 200, 0), (250, 250, 250) × 3, (200, 0, 0) × 2, (250, 250, 250) × 2] for this file)
  const white = [[250, 250, 250], ...palette.slice(1)] as Array<[number, number, number]>;
  const skipped = rleBmp(4, 2, 8, white, [2, 1, 0, 0, 1, 2, 0, 0, 0, 1]); // bottom row: 2 pixels, end of line; top row: 1 pixel, end of line; end of bitmap
  const got = interleave(decodeBmp(skipped));
  assert.deepEqual(
    Array.from({ length: 8 }, (_, i) => white.findIndex((c) => c.every((v, k) => v === got[3 * i + k]))),
    [2, 0, 0, 0, 1, 1, 0, 0],
  );
});

test("BMP: size bounds (width 1–65535, a 0 width or height corrupt) and a V3 (56-byte) header's alpha mask", () => {
  const rgbPx = (x: number): [number, number, number, number] => [x & 255, 7, 9, 255];
  const widest = decodeBmp(bmp(65535, 1, rgbPx, { bpp: 24 }));
  assert.deepEqual([widest.width, widest.height], [65535, 1]);
  for (const [field, value] of [
    [18, 65536],
    [18, 0],
    [22, 0],
  ]) {
    const file = bmp(2, 2, rgbPx, { bpp: 24 });
    file.writeInt32LE(value, field);
    assert.throws(
      () => decodeBmp(file),
      (e: unknown) => e instanceof DecodeError && e.reason === 'corrupt' && /size/.test(e.message),
      `${field === 18 ? 'width' : 'height'} ${value}`,
    );
  }
  // BI_BITFIELDS with a 56-byte header: its alpha mask (at 66) is read, so a transparent pixel shows the background
  const v3 = bmp(2, 1, (x) => (x === 0 ? [10, 20, 30, 0] : [10, 20, 30, 255]), { bpp: 32 });
  v3.writeUInt32LE(56, 14);
  assert.deepEqual([...interleave(decodeBmp(v3, 255))], [255, 255, 255, 10, 20, 30]);
});

test('BMP: a cut file is refused as truncated, naming the part cut (header, masks, palette, pixels); the last row needs no padding', () => {
  const reject = (file: Buffer, part: RegExp, what: string) =>
    assert.throws(
      () => decodeBmp(file),
      (e: unknown) => e instanceof DecodeError && e.reason === 'truncated' && part.test(e.message),
      what,
    );
  // OS/2 header (12 bytes: 16-bit width, height, planes, bpp), 24-bit
  const os2 = Buffer.alloc(26 + 4 * 2);
  os2.write('BM', 0, 'latin1');
  os2.writeUInt32LE(26, 10);
  os2.writeUInt32LE(12, 14);
  os2.writeUInt16LE(1, 18);
  os2.writeUInt16LE(2, 20);
  os2.writeUInt16LE(1, 22);
  os2.writeUInt16LE(24, 24);
  os2.set([3, 2, 1, 0, 6, 5, 4, 0], 26);
  assert.deepEqual([...interleave(decodeBmp(os2))], [4, 5, 6, 1, 2, 3]);
  reject(os2.subarray(0, 25), /header/, 'OS/2 header less its last byte');
  const rgb = bmp(13, 7, (x, y) => [x, y, 3, 255], { bpp: 24 });
  reject(rgb.subarray(0, 53), /header/, 'V3 header less its last byte');
  const masked = bmp(3, 1, () => [1, 2, 3, 255], { bpp: 16 }); // masks at 54..65
  reject(masked.subarray(0, 65), /masks/, 'masks less their last byte');
  const pal: Array<[number, number, number]> = [
    [0, 0, 0],
    [9, 9, 9],
  ];
  const paletted = bmp(3, 1, () => [9, 9, 9, 255], { bpp: 8, palette: pal }); // palette entries at 54 and 58
  reject(paletted.subarray(0, 58 + 2), /palette/, 'last palette entry less its red byte');
  // a 13-pixel 24-bit row is 39 bytes padded to 40: the file may end right after the last row's pixels
  const unpadded = rgb.subarray(0, rgb.length - 1);
  assert.deepEqual(interleave(decodeBmp(unpadded)), interleave(decodeBmp(rgb)));
  reject(rgb.subarray(0, rgb.length - 2), /pixel data/, 'last row less a pixel byte');
});

test('BMP: a header claiming more pixels than the file holds is refused as truncated before the image is allocated', () => {
  // a 54-byte 24-bit header claiming 65,535×65,535 with no pixel limit: the 12.9 GB allocation failed first
  // ('corrupt', "Invalid typed array length"); under the default limit 65,535×2,730 took 537 MB first
  const header = bmpFile({ w: 65535, h: 65535, bpp: 24, compression: 0, palette: [], pixels: new Uint8Array(0) });
  assert.equal(header.length, 54);
  assert.throws(
    () => decodeBmp(header, 0, 0),
    (e: unknown) => e instanceof DecodeError && e.reason === 'truncated' && /pixel data/.test(e.message),
  );
});

test('BMP: a pixel-data offset of 0 means the pixels follow the header and palette, as PIL reads it (not byte 0 of the file)', () => {
  const pal: Array<[number, number, number]> = [
    [0, 0, 0],
    [9, 8, 7],
  ];
  for (const file of [
    bmp(3, 2, (x, y) => [x * 40, y * 50, 90, 255], { bpp: 24 }),
    bmp(3, 1, (x) => (x === 1 ? [9, 8, 7, 255] : [0, 0, 0, 255]), { bpp: 8, palette: pal }),
  ]) {
    const want = [...interleave(decodeBmp(file))];
    const unset = Buffer.from(file);
    unset.writeUInt32LE(0, 10);
    assert.deepEqual([...interleave(decodeBmp(unset))], want);
  }
});

test('GIF (first frame), WebP and TIFF decode through libvips', async () => {
  for (const fmt of ['gif', 'webp', 'tiff']) {
    const opts = fmt === 'webp' ? { lossless: true } : {};
    const b = await encode(RAW, W, H, 3, fmt, opts);
    assert.equal(sniff(b), fmt);
    const h = openImage(b);
    assert.ok(h instanceof Promise, `${fmt} decodes asynchronously`);
    const img = (await h).decode();
    assert.equal(img.width, W);
    assert.equal(img.height, H);
    const ref = await sharpRgb(b);
    assert.ok(maxAbsDiff(interleave(img), ref.data) <= 1, fmt);
  }
  // 16-bit TIFF
  const r16 = new Uint16Array(W * H * 3).map((_, i) => RAW[i] * 257);
  const t16 = await sharp(Buffer.from(r16.buffer), { raw: { width: W, height: H, channels: 3, depth: 'ushort' } })
    .toColourspace('rgb16')
    .tiff({ compression: 'none' })
    .toBuffer();
  assert.equal((await sharp(t16).metadata()).depth, 'ushort');
  const img16 = await decodeImage(t16);
  assert.ok(maxAbsDiff(interleave(img16), (await sharpRgb(t16)).data) <= 1);
});

test('broken inputs raise DecodeError with a reason', async () => {
  const jpeg = await encode(picture(64, 64), 64, 64, 3, 'jpeg', { quality: 90 });
  const png = await encode(picture(64, 64), 64, 64, 3, 'png');
  const cases: Array<[string, Uint8Array, string]> = [
    ['zero bytes', new Uint8Array(0), 'empty'],
    ['text named .jpg', Buffer.from('this is not an image\n'), 'unsupported'],
    ['truncated JPEG', jpeg.subarray(0, Math.floor(jpeg.length / 2)), 'truncated'],
    ['JPEG header only', jpeg.subarray(0, 200), 'truncated'],
    ['truncated PNG', png.subarray(0, Math.floor(png.length / 2)), 'truncated'],
    ['garbage after SOI', Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(100, 7)]), 'truncated'],
  ];
  for (const [name, bytes, reason] of cases) {
    await assert.rejects(
      async () => (await openImage(bytes)).decode(),
      (e: unknown) => e instanceof DecodeError && e.reason === reason,
      name,
    );
  }
});

/** A JPEG's marker segments before its first scan: where each starts (its 0xFF) and its length field. */
function jpegSegments(d: Buffer): Array<{ marker: number; pos: number; len: number }> {
  const out = [];
  for (let pos = 2; pos + 4 <= d.length && d[pos] === 0xff;) {
    const marker = d[pos + 1];
    const len = d.readUInt16BE(pos + 2);
    out.push({ marker, pos, len });
    if (marker === 0xda) break;
    pos += 2 + len;
  }
  return out;
}

test('JPEG headers: what the decoder refuses, what it leaves to libvips, and the colour space the markers say', async () => {
  const jpeg = await encode(picture(64, 64), 64, 64, 3, 'jpeg', { quality: 90 }); // baseline 4:2:0: DQT, SOF0, DHT, SOS (no APP0)
  const segs = jpegSegments(jpeg);
  const at = (marker: number) => segs.find((x) => x.marker === marker)!;
  const [dqt, sof, sos] = [at(0xdb), at(0xc0), at(0xda)];
  const s = sof.pos + 4; // precision, then height, width, components (id, hv, tq) from s + 6
  const edited = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(jpeg);
    f(b);
    return b;
  };
  const refused = (b: Buffer, reason: string, message: RegExp, what: string) =>
    assert.throws(
      () => new JpegImage(b),
      (e: unknown) => e instanceof DecodeError && e.reason === reason && message.test(e.message),
      what,
    );
  const fallback = (b: Buffer, message: RegExp, what: string) =>
    assert.throws(
      () => new JpegImage(b),
      (e: unknown) => e instanceof NeedsFallback && message.test(e.message),
      what,
    );
  assert.equal(new JpegImage(jpeg).space, 'ycbcr');
  for (const region of [
    { x0: 10, y0: 0, x1: 10, y1: 64 },
    { x0: 64, y0: 0, x1: 70, y1: 64 },
  ]) {
    assert.throws(() => new JpegImage(jpeg).decode({ region }), RangeError, `empty region ${JSON.stringify(region)}`);
  }
  refused(
    edited((b) => b.writeUInt16BE(1, dqt.pos + 2)),
    'corrupt',
    /bad segment length/,
    'a segment length of 1',
  );
  refused(jpeg.subarray(0, sof.pos + 2 + sof.len - 1), 'truncated', /truncated JPEG header/, 'the frame header less its last byte');
  refused(jpeg.subarray(0, sof.pos), 'truncated', /no frame header/, 'cut before the frame header');
  refused(Buffer.concat([jpeg.subarray(0, sof.pos), jpeg.subarray(sos.pos)]), 'corrupt', /no frame header/, 'a scan without a frame header');
  const sofBytes = jpeg.subarray(sof.pos, sof.pos + 2 + sof.len);
  refused(Buffer.concat([jpeg.subarray(0, sof.pos), sofBytes, jpeg.subarray(sof.pos)]), 'corrupt', /more than one frame header/, 'two frame headers');
  refused(
    edited((b) => (b[s + 7] = 0x15)),
    'corrupt',
    /bad sampling factor/,
    'a vertical sampling factor of 5',
  );
  refused(
    edited((b) => b.writeUInt16BE(0, s + 3)),
    'corrupt',
    /zero width/,
    'width 0',
  );
  assert.throws(
    () => new JpegImage(jpeg, 64 * 64 - 1),
    (e: unknown) => e instanceof DecodeError && e.reason === 'too-large',
  );
  fallback(
    edited((b) => (b[sof.pos + 1] = 0xc3)),
    /SOF3/,
    'lossless (SOF3)',
  );
  for (const precision of [12, 7]) {
    fallback(
      edited((b) => (b[s] = precision)),
      new RegExp(`${precision}-bit`),
      `precision ${precision}`,
    );
  }
  fallback(
    edited((b) => b.writeUInt16BE(0, s + 1)),
    /DNL/,
    'height 0 (given later by a DNL marker)',
  );
  fallback(
    edited((b) => {
      b[s + 7] = 0x13; // luma 1×3, chroma 1×2: a vertical ratio of 3:2
      b[s + 10] = 0x12;
    }),
    /non-integer chroma subsampling/,
    'luma 1×3 with chroma 1×2',
  );
  // a header claiming more 8×8 blocks than the scan has bytes × 8 is refused before planes are allocated:
  // 64 rows of 16k columns at 4:2:0 are 24k blocks, at least 3k bytes, here 1.5 to 2 times what the scan holds
  const scanBytes = jpeg.length - sos.pos;
  const k = Math.ceil(scanBytes / 2);
  refused(
    edited((b) => b.writeUInt16BE(16 * k, s + 3)),
    'truncated',
    /needs at least \d+ bytes of scan data/,
    'a scan too short for the size claimed',
  );
  // colour space: components named R, G, B mean RGB, unless a JFIF APP0 says YCbCr; an Adobe APP14 with transform 0 means RGB
  const rgbIds = (b: Buffer) => {
    b[s + 6] = 0x52;
    b[s + 9] = 0x47;
    b[s + 12] = 0x42;
  };
  const afterSoi = (b: Buffer, segment: number[]) => Buffer.concat([b.subarray(0, 2), Buffer.from(segment), b.subarray(2)]);
  const jfif = [0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0];
  const adobe = (transform: number) => [0xff, 0xee, 0, 14, 0x41, 0x64, 0x6f, 0x62, 0x65, 0, 100, 0, 0, 0, 0, transform];
  assert.equal(new JpegImage(edited(rgbIds)).space, 'rgb', 'R, G, B ids without JFIF');
  assert.equal(new JpegImage(afterSoi(edited(rgbIds), jfif)).space, 'ycbcr', 'R, G, B ids under JFIF');
  assert.equal(new JpegImage(afterSoi(jpeg, adobe(0))).space, 'rgb', 'Adobe transform 0');
  assert.equal(new JpegImage(afterSoi(afterSoi(jpeg, jfif), adobe(0))).space, 'rgb', 'Adobe transform 0 beside JFIF');
  assert.equal(new JpegImage(afterSoi(edited(rgbIds), adobe(1))).space, 'ycbcr', 'Adobe transform 1 with R, G, B ids');
});

test("JPEG scan header: a component count of 0 or one its length does not hold is corrupt (libjpeg's JERR_BAD_LENGTH), not an image of zeros", async () => {
  for (const progressive of [false, true]) {
    const jpeg = await encode(picture(32, 32), 32, 32, 3, 'jpeg', { quality: 90, progressive });
    const sos = jpegSegments(jpeg).find((x) => x.marker === 0xda)!;
    assert.equal(jpeg[sos.pos + 4], 3, 'the first scan is interleaved');
    for (const ns of [0, 1, 2, 5]) {
      const b = Buffer.from(jpeg);
      b[sos.pos + 4] = ns; // the count changed, the segment's length (6 + 2 × 3) kept
      assert.throws(
        () => new JpegImage(b).decode(),
        (e: unknown) => e instanceof DecodeError && e.reason === 'corrupt' && /scan header/.test(e.message),
        `${progressive ? 'progressive' : 'baseline'}: ${ns} component(s) in a scan header of 3`,
      );
    }
  }
});

test("JPEG tables: an index past 3, a class past AC or a table longer than its segment is corrupt (libjpeg's JERR_DQT_INDEX, JERR_DHT_INDEX), not read as another table", async () => {
  const jpeg = await encode(picture(32, 32), 32, 32, 3, 'jpeg', { quality: 90 });
  const segs = jpegSegments(jpeg);
  const dqt = segs.filter((x) => x.marker === 0xdb);
  const dht = segs.filter((x) => x.marker === 0xc4);
  const corruptWith = (change: (b: Buffer) => void, message: RegExp, what: string): void => {
    const b = Buffer.from(jpeg);
    change(b);
    assert.throws(
      () => new JpegImage(b).decode(),
      (e: unknown) => e instanceof DecodeError && e.reason === 'corrupt' && message.test(e.message),
      what,
    );
  };
  for (const { pos } of dqt) {
    corruptWith((b) => (b[pos + 4] |= 4), /bad quantization table index [4-7]/, `DQT at ${pos}: index + 4 (PIL: broken data stream)`);
    corruptWith((b) => b.writeUInt16BE(b.readUInt16BE(pos + 2) - 1, pos + 2), /quantization table longer than its segment/, `DQT at ${pos} a byte short`);
  }
  for (const { pos } of dht) {
    corruptWith((b) => (b[pos + 4] |= 4), /bad Huffman table class\/index/, `DHT at ${pos}: index + 4 (PIL: broken data stream)`);
    corruptWith((b) => (b[pos + 4] |= 0x20), /bad Huffman table class\/index/, `DHT at ${pos}: class 2 or 3`);
  }
  const sof = segs.find((x) => x.marker === 0xc0)!;
  corruptWith((b) => (b[sof.pos + 10 + 2] = 4), /missing quanti[sz]ation table/, "the first component's table 4");
  new JpegImage(jpeg).decode(); // (the file unchanged decodes)
});

test("JPEG frame header: a length other than 8 bytes + 3 per component is corrupt (libjpeg's JERR_BAD_LENGTH), not read past or short of its segment", async () => {
  for (const channels of [3, 1] as const) {
    const jpeg = await sharp(picture(32, 32), { raw: { width: 32, height: 32, channels: 3 } })
      .toColourspace(channels === 1 ? 'b-w' : 'srgb')
      .jpeg({ quality: 90 })
      .toBuffer();
    const sof = jpegSegments(jpeg).find((x) => x.marker === 0xc0)!;
    assert.equal(sof.len, 8 + 3 * channels);
    const withLength = (len: number, extra: number[] = []): Buffer => {
      const head = Buffer.from(jpeg.subarray(0, sof.pos + 2 + sof.len));
      head.writeUInt16BE(len, sof.pos + 2);
      return Buffer.concat([head, Buffer.from(extra), jpeg.subarray(sof.pos + 2 + sof.len)]);
    };
    new JpegImage(withLength(sof.len)).decode(); // (unchanged, it decodes)
    for (const [len, extra, what] of [
      [sof.len + 1, [0], 'one byte more'],
      [sof.len + 3, [4, 0x11, 0], 'a fourth component in the segment, three named by the count'],
      [sof.len - 3, [], "the last component's 3 bytes outside the segment"],
      [sof.len - 1, [], 'one byte less'],
    ] as const) {
      assert.throws(
        () => new JpegImage(withLength(len, [...extra])),
        (e: unknown) => e instanceof DecodeError && e.reason === 'corrupt' && /frame header/.test(e.message),
        `${channels} component(s): ${what}`,
      );
    }
  }
});

test("JPEG restart interval: a DRI segment of other than 4 bytes is corrupt (libjpeg's JERR_BAD_LENGTH), not an interval read from the next marker", async () => {
  const jpeg = await encode(picture(32, 32), 32, 32, 3, 'jpeg', { quality: 90 });
  const dht = jpegSegments(jpeg).find((x) => x.marker === 0xc4)!;
  const withDri = (len: number, body: number[]): Buffer =>
    Buffer.concat([jpeg.subarray(0, dht.pos), Buffer.from([0xff, 0xdd, len >> 8, len & 255, ...body]), jpeg.subarray(dht.pos)]);
  const plain = interleave(new JpegImage(jpeg).decode());
  assert.deepEqual(interleave(new JpegImage(withDri(4, [0, 0])).decode()), plain, 'a DRI of interval 0 (no restarts)');
  for (const [len, body] of [
    [2, []],
    [3, [0]],
    [5, [0, 0, 0]],
  ] as const) {
    assert.throws(
      () => new JpegImage(withDri(len, [...body])).decode(),
      (e: unknown) => e instanceof DecodeError && e.reason === 'corrupt' && /restart interval/.test(e.message),
      `a DRI of ${len} bytes (PIL: broken data stream)`,
    );
  }
});

test('an RGB region of a 4:2:0 JPEG is the same pixels as that region of the whole image (chroma neighbours decoded beyond it)', async () => {
  const jpeg = await encode(RAW, W, H, 3, 'jpeg', { quality: 90 });
  const handle = openImage(jpeg);
  assert.ok(!(handle instanceof Promise), 'a JPEG opens synchronously');
  const whole = handle.decode({ rgb: true });
  const rect = { x0: 16, y0: 16, x1: 48, y1: 32 }; // edges where the filter needs a chroma sample from the next block
  const part = handle.decode({ rgb: true, region: rect });
  for (let c = 0; c < 3; c++) {
    const [f, p] = [whole.planes[c], part.planes[c]];
    for (let y = rect.y0; y < rect.y1; y++) {
      for (let x = rect.x0; x < rect.x1; x++) {
        const want = f.data[f.offset + (y - f.y0) * f.stride + (x - f.x0)];
        assert.equal(p.data[p.offset + (y - p.y0) * p.stride + (x - p.x0)], want, `channel ${c} at (${x}, ${y})`);
      }
    }
  }
});

test('an SVG (no magic bytes of its own) goes to libvips, not refused as not an image', async () => {
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="3"><rect width="4" height="3" fill="#f00"/></svg>');
  assert.equal(sniff(svg), 'unknown');
  const img = await decodeImage(svg);
  assert.deepEqual([img.width, img.height], [4, 3]);
});

test('sniff: TIFF in either byte order (II then 42 little-endian, MM then 42 big-endian), not the two mixed', () => {
  assert.equal(sniff(Buffer.from([0x49, 0x49, 0x2a, 0, 8, 0, 0, 0])), 'tiff');
  assert.equal(sniff(Buffer.from([0x4d, 0x4d, 0, 0x2a, 0, 0, 0, 8])), 'tiff');
  assert.equal(sniff(Buffer.from([0x4d, 0x4d, 0x2a, 0, 0, 0, 0, 8])), 'unknown');
  assert.equal(sniff(Buffer.from([0x49, 0x49, 0, 0x2a, 8, 0, 0, 0])), 'unknown');
});

test('1×1 images decode', async () => {
  const one = Buffer.from([200, 100, 50]);
  for (const fmt of ['jpeg', 'png', 'webp']) {
    const b = await encode(one, 1, 1, 3, fmt, fmt === 'jpeg' ? { quality: 100 } : {});
    const img = await decodeImage(b);
    assert.equal(img.width, 1);
    assert.equal(img.height, 1);
    const rgb = await jsRgb(b);
    assert.ok(maxAbsDiff(rgb, one) <= 6, `${fmt}: ${[...rgb]}`);
  }
});
