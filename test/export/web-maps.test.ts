// The web page's own JavaScript (src/export/web/*.js, ES modules) run in Node against semaim:
// its preprocessing equals src/data's evaluation pipeline on the same files, and its maps equal
// semaim's similarity map and semantic order (src/semaim/orders.ts) on the same tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import * as torch from '../../src/torch';
import { meanFilter3x3, semanticOrder, similarityMap } from '../../src/semaim/orders';
import { TURBO, minMax, orderEarliness } from '../../src/viz/colormap';
import { exportAsset } from '../../src/export/assets';
import { evalPreprocessing, EvalPreprocessing } from '../../src/export/preprocessing';
import { SMALL, difference, evalPixels, randomImages, smallEncoder } from './helpers';

interface MapsModule {
  imageMaps(o: { tokens: Float32Array; attention: Float32Array | null; gridH: number; gridW: number; dim: number }): {
    similarity: Float64Array;
    centre: number;
    order: Float64Array;
  };
  meanFilter3x3(map: ArrayLike<number>, gridH: number, gridW: number): Float64Array;
  orderEarliness(order: ArrayLike<number>): Float64Array;
  minMax(x: ArrayLike<number>): Float64Array;
  turbo(v: number): number[];
}
interface PreprocessModule {
  preprocess(rgba: Uint8ClampedArray, width: number, height: number, p: EvalPreprocessing): { pixels: Float32Array; view: Uint8ClampedArray };
}

// A native import(): TypeScript's CommonJS output would turn `import()` into require().
const importEsm = new Function('url', 'return import(url)') as <T>(url: string) => Promise<T>;
const pageModule = <T>(name: string) => importEsm<T>(pathToFileURL(exportAsset(join('web', name))).href);

/** Writes a PNG from a pixel function; channels 3 or 4. */
async function writePng(path: string, w: number, h: number, channels: 3 | 4, px: (x: number, y: number, c: number) => number): Promise<string> {
  const data = Buffer.alloc(w * h * channels);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < channels; c++) data[(y * w + x) * channels + c] = px(x, y, c);
  await sharp(data, { raw: { width: w, height: h, channels } })
    .png()
    .toFile(path);
  return path;
}

test("page preprocessing equals semaim's evaluation pipeline (downscale, upscale, native size, odd sizes, alpha, noise)", async (t) => {
  const { preprocess } = await pageModule<PreprocessModule>('preprocess.js');
  const dir = mkdtempSync(join(tmpdir(), 'semaim-web-pre-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let s = 12345;
  const rnd = () => (s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const smooth = (x: number, y: number, c: number) => Math.round(127 + 100 * Math.sin(x / 7 + c) * Math.cos(y / 9 - c));
  const files = [
    await writePng(join(dir, 'landscape.png'), 300, 200, 3, smooth),
    await writePng(join(dir, 'small-portrait.png'), 20, 30, 3, smooth),
    await writePng(join(dir, 'native.png'), 32, 32, 3, smooth),
    await writePng(join(dir, 'odd.png'), 37, 101, 3, smooth),
    await writePng(join(dir, 'half-pixel-crop.png'), 36, 41, 3, smooth),
    await writePng(join(dir, 'noise.png'), 50, 70, 3, () => Math.floor(rnd() * 256)),
    await writePng(join(dir, 'alpha.png'), 64, 48, 4, (x, y, c) => (c === 3 ? (x * 4 + y * 3) % 256 : smooth(x, y, c))),
  ];
  const p = evalPreprocessing(SMALL.imgSize);
  for (const f of files) {
    const { data, info } = await sharp(f).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const { pixels } = preprocess(new Uint8ClampedArray(data.buffer, data.byteOffset, data.length), info.width, info.height, p);
    const d = difference(pixels, await evalPixels(f, SMALL.imgSize));
    assert.ok(d.maxAbs < 1e-4, `${f}: the page's pixels differ from semaim's by ${d.maxAbs}`);
  }
});

test("page maps equal semaim's similarity map, 3×3 filter, semantic centre and order on the same tokens", async () => {
  const maps = await pageModule<MapsModule>('maps.js');
  const vit = smallEncoder(8);
  const B = 6;
  const grid = SMALL.imgSize / SMALL.patchSize;
  const N = grid * grid;
  const g = { gridH: grid, gridW: grid };
  const ref = torch.noGrad(() =>
    torch.scope(() => {
      const tokens = vit.forwardFeatures(torch.tensor(randomImages(B, SMALL, 31), { shape: [B, 3, SMALL.imgSize, SMALL.imgSize] }));
      const S = similarityMap(tokens, 'softmax', 'cls');
      const { order, center } = semanticOrder(S, g, { filter: true, lambda: 0, noise: torch.zeros([B, N]) });
      return {
        tokens: tokens.toFloat32Array(),
        S: S.toFloat32Array(),
        filtered: meanFilter3x3(S, g).toFloat32Array(),
        order: order.toFloat32Array(),
        centre: Array.from(center.toFloat32Array()),
      };
    }),
  );
  const T = N + 1;
  for (let b = 0; b < B; b++) {
    const tokens = ref.tokens.slice(b * T * SMALL.embedDim, (b + 1) * T * SMALL.embedDim);
    const m = maps.imageMaps({ tokens, attention: null, gridH: grid, gridW: grid, dim: SMALL.embedDim });
    const S = ref.S.subarray(b * N, (b + 1) * N);
    assert.ok(difference(m.similarity, S).rel < 1e-5, `image ${b}: S`);
    assert.ok(difference(maps.meanFilter3x3(m.similarity, grid, grid), ref.filtered.subarray(b * N, (b + 1) * N)).rel < 1e-5, `image ${b}: filtered S`);
    const filtered = ref.filtered.subarray(b * N, (b + 1) * N);
    const same = m.centre === ref.centre[b] || Math.abs(filtered[m.centre] - filtered[ref.centre[b]]) < 1e-7;
    assert.ok(same, `image ${b}: centre ${m.centre} vs semaim's ${ref.centre[b]}`);
    if (m.centre === ref.centre[b]) assert.ok(difference(m.order, ref.order.subarray(b * N, (b + 1) * N)).maxAbs < 1e-5, `image ${b}: order`);
  }
});

test("page colours and scalings are semaim's figures' (turbo table, order earliness, min-max)", async () => {
  const maps = await pageModule<MapsModule>('maps.js');
  for (let i = 0; i < 256; i++) assert.deepEqual(maps.turbo(i / 255), [...TURBO[i]], `turbo ${i}`);
  const order = [3, 1, 1, 0, 2.5, 7];
  assert.ok(difference(maps.orderEarliness(order), orderEarliness(order)).maxAbs < 1e-6);
  assert.ok(difference(maps.minMax(order), minMax(order)).maxAbs < 1e-6);
  // A map with a NaN or infinite entry (a diverged run's loss map) keeps the finite entries' scaling.
  const broken = [2, NaN, 4, Infinity, 3, -Infinity];
  const page = maps.minMax(broken);
  const figure = minMax(broken);
  for (const i of [0, 2, 4]) assert.ok(Math.abs(page[i] - figure[i]) < 1e-6, `entry ${i}: ${page[i]} vs ${figure[i]}`);
  assert.deepEqual([page[0], page[2], page[4]], [0, 1, 0.5]);
});
