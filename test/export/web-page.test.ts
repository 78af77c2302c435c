// `semaim export --format web` end to end in headless Debian Chromium: the folder is served from
// localhost, an image is dropped onto the page (and another chosen with the file picker), the page
// runs the model with onnxruntime-web (WebAssembly) and draws the maps; its pixels, tokens,
// attention, similarity map and semantic order equal semaim's own on the same image; no console
// errors; a screenshot is saved (to $SEMAIM_WEB_SCREENSHOT when set).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import * as torch from '../../src/torch';
import { semanticOrder, similarityMap, meanFilter3x3 } from '../../src/semaim/orders';
import { exportWeb } from '../../src/export/web-export';
import { SMALL, difference, evalPixels, smallEncoder, writeExportedEncoder } from './helpers';
import { chromiumMissing, dropImage, openPage, pageResult, serveFolder, waitForState } from './browser';

const missing = chromiumMissing();
if (missing) console.log(`# skipping the browser test: ${missing}`);

/** A synthetic photo: a bright disc on a smooth background. */
async function writePhoto(path: string, w: number, h: number, format: 'png' | 'jpeg'): Promise<string> {
  const data = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const inDisc = (x - 0.6 * w) ** 2 + (y - 0.4 * h) ** 2 < (0.22 * Math.min(w, h)) ** 2;
      for (let c = 0; c < 3; c++) {
        data[(y * w + x) * 3 + c] = inDisc ? [235, 90, 40][c] : Math.round(110 + 60 * Math.sin(x / 11 + c) * Math.cos(y / 13));
      }
    }
  }
  const img = sharp(data, { raw: { width: w, height: h, channels: 3 } });
  await (format === 'png' ? img.png() : img.jpeg({ quality: 90 })).toFile(path);
  return path;
}

test(
  "web page: headless Chromium computes semaim's maps for a dropped image, without console errors",
  { skip: missing ?? false, timeout: 240_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'semaim-web-page-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const vit = smallEncoder(6);
    const web = join(dir, 'web');
    const r = await exportWeb(writeExportedEncoder(join(dir, 'enc'), vit), web, { dtype: 'float32' });
    assert.deepEqual(readdirSync(join(web, 'ort')).sort(), ['README.txt', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm', 'ort.wasm.min.mjs']);
    const png = await writePhoto(join(dir, 'photo.png'), 90, 70, 'png');
    const jpeg = await writePhoto(join(dir, 'photo.jpg'), 120, 160, 'jpeg');

    const server = await serveFolder(web);
    const session = await openPage(server.url);
    try {
      await dropImage(session.page, png);
      await waitForState(session.page, 'done');
      const got = await pageResult(session.page);
      assert.equal(got.name, 'photo.png');

      const grid = SMALL.imgSize / SMALL.patchSize;
      const N = grid * grid;
      const pixels = await evalPixels(png, SMALL.imgSize);
      const ref = torch.noGrad(() =>
        torch.scope(() => {
          const x = torch.tensor(pixels, { shape: [1, 3, SMALL.imgSize, SMALL.imgSize] });
          const tokens = vit.forwardFeatures(x);
          const S = similarityMap(tokens, 'softmax', 'cls');
          const g = { gridH: grid, gridW: grid };
          const { order, center } = semanticOrder(S, g, { filter: true, lambda: 0, noise: torch.zeros([1, N]) });
          return {
            tokens: tokens.toFloat32Array(),
            attention: vit.clsAttention(x).toFloat32Array(),
            S: S.toFloat32Array(),
            filtered: meanFilter3x3(S, g).toFloat32Array(),
            order: order.toFloat32Array(),
            centre: center.item(),
          };
        }),
      );
      const d = {
        pixels: difference(got.pixels, pixels),
        tokens: difference(got.tokens, ref.tokens),
        attention: difference(got.attention, ref.attention),
        similarity: difference(got.similarity, ref.S),
      };
      console.log(
        `# page vs semaim: pixels max abs ${d.pixels.maxAbs.toExponential(2)}; last_hidden_state rel ${d.tokens.rel.toExponential(2)}; ` +
          `cls_attention rel ${d.attention.rel.toExponential(2)}; S rel ${d.similarity.rel.toExponential(2)}; centre ${got.centre} (semaim ${ref.centre})`,
      );
      assert.ok(d.pixels.maxAbs < 1e-4, 'preprocessing');
      assert.ok(d.tokens.rel < 1e-4, 'last_hidden_state');
      assert.ok(d.attention.rel < 1e-4, 'cls_attention');
      assert.ok(d.similarity.rel < 1e-4, 'similarity map');
      const tie = Math.abs(ref.filtered[got.centre] - ref.filtered[ref.centre]) < 1e-7;
      assert.ok(got.centre === ref.centre || tie, `semantic centre ${got.centre} vs semaim's ${ref.centre}`);
      if (got.centre === ref.centre) assert.ok(difference(got.order, ref.order).maxAbs < 1e-5, 'semantic order');

      // The order map is drawn: its cell holds many colours, not a blank canvas.
      const cell = await sharp(await session.page.locator('#order').screenshot()).stats();
      assert.ok(
        cell.channels.every((c) => c.stdev > 10),
        'the order map has colour variation',
      );

      // The file picker takes a JPEG as well.
      await session.page.setInputFiles('#file', jpeg);
      await session.page.waitForFunction('window.semaimResult && window.semaimResult.name === "photo.jpg"', undefined, { timeout: 30_000 });
      await waitForState(session.page, 'done');

      const shot = process.env.SEMAIM_WEB_SCREENSHOT ?? join(dir, 'page.png');
      await session.page.screenshot({ path: shot, fullPage: true });
      assert.ok(existsSync(shot));
      console.log(`# screenshot: ${shot}; model.onnx ${r.modelBytes} bytes`);
      assert.deepEqual(session.errors, [], 'console errors');
    } finally {
      await session.close();
      await server.close();
    }
  },
);

/** The synthetic photo (64×48, so a rotation changes its shape) with EXIF orientation `o`. */
async function writeOriented(path: string, o: number, format: 'png' | 'jpeg' | 'webp'): Promise<string> {
  const plain = `${path}.plain.png`;
  await writePhoto(plain, 64, 48, 'png');
  const img = sharp(plain);
  const encoded = format === 'png' ? img.png() : format === 'webp' ? img.webp({ lossless: true }) : img.jpeg({ quality: 95, chromaSubsampling: '4:4:4' });
  await encoded.withMetadata({ orientation: o }).toFile(path);
  return path;
}

const MIME = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' } as const;

test(
  "web page: a dropped photo with an EXIF orientation is seen as semaim sees it, under the model's policy (ignore by default, or apply)",
  { skip: missing ?? false, timeout: 300_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'semaim-web-exif-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const enc = writeExportedEncoder(join(dir, 'enc'), smallEncoder(6));
    const files: Array<{ path: string; format: 'png' | 'jpeg' | 'webp'; o: number }> = [];
    for (const format of ['jpeg', 'png', 'webp'] as const) files.push({ path: await writeOriented(join(dir, `o6.${format}`), 6, format), format, o: 6 });
    for (const o of [1, 2, 3, 4, 5, 7, 8]) files.push({ path: await writeOriented(join(dir, `o${o}.jpeg`), o, 'jpeg'), format: 'jpeg', o });

    for (const policy of ['ignore', 'apply'] as const) {
      const web = join(dir, `web-${policy}`);
      // the encoder file records no policy: semaim's default, unless one is given
      await exportWeb(enc, web, { dtype: 'float32', exifOrientation: policy === 'apply' ? 'apply' : undefined });
      const info = JSON.parse(readFileSync(join(web, 'model.json'), 'utf8')) as { exifOrientation: unknown };
      assert.deepEqual(info.exifOrientation, { policy, source: policy === 'apply' ? 'option' : 'default' });
      const server = await serveFolder(web);
      const session = await openPage(server.url);
      try {
        // 'ignore': the orientation-6 files in each format; 'apply': every orientation of the JPEG too
        for (const f of policy === 'ignore' ? files.filter((f) => f.o === 6) : files) {
          await dropImage(session.page, f.path, MIME[f.format]);
          await waitForState(session.page, 'done');
          const got = await pageResult(session.page);
          const want = await evalPixels(f.path, SMALL.imgSize, policy);
          const other = await evalPixels(f.path, SMALL.imgSize, policy === 'ignore' ? 'apply' : 'ignore');
          const d = difference(got.pixels, want);
          console.log(
            `# ${policy}, ${basename(f.path)}: page vs semaim pixels max abs ${d.maxAbs.toExponential(2)} (vs the other policy ${difference(got.pixels, other).maxAbs.toFixed(2)})`,
          );
          // the browser's JPEG decoder differs slightly from semaim's; PNG and lossless WebP decode alike
          assert.ok(d.maxAbs < (f.format === 'jpeg' ? 0.05 : 1e-4), `${policy}, ${basename(f.path)}: pixels max abs ${d.maxAbs}`);
          if (f.o !== 1) assert.ok(difference(got.pixels, other).maxAbs > 1, `${basename(f.path)}: the other policy would show other pixels`);
        }
        assert.deepEqual(session.errors, [], 'console errors');
      } finally {
        await session.close();
        await server.close();
      }
    }
  },
);
