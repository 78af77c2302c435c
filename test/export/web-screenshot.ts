// Screenshot of the exported web page for the docs: exports an encoder with --format web into a
// temporary folder, serves it, drops synthetic test image `--index` (the demo's test split, at the
// model's size) on it in headless Chromium, and saves the page as a PNG.
//   node dist/test/export/web-screenshot.js --checkpoint runs/demo --out docs/web-page.png [--index 0]
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { renderSynthetic, syntheticConfig } from '../../src/data/sources/synthetic';
import { exportWeb } from '../../src/export/web-export';
import { chromiumMissing, dropImage, openPage, pageResult, serveFolder, waitForState } from './browser';

function arg(name: string, dflt?: string): string {
  const i = process.argv.indexOf(name);
  if (i >= 0) return process.argv[i + 1];
  if (dflt === undefined) throw new Error(`missing ${name}`);
  return dflt;
}

async function main(): Promise<void> {
  const missing = chromiumMissing();
  if (missing) throw new Error(missing);
  const dir = mkdtempSync(join(tmpdir(), 'semaim-web-shot-'));
  const r = await exportWeb(arg('--checkpoint'), join(dir, 'web'), { dtype: 'float32' });
  const size = (JSON.parse(readFileSync(join(r.dir, 'model.json'), 'utf8')) as { encoder: { imgSize: number } }).encoder.imgSize;
  const index = Number(arg('--index', '0'));
  const sample = renderSynthetic(syntheticConfig({ size, seed: 0, split: 'val', count: index + 1 }), index);
  const p = sample.image.planes;
  const rgb = Buffer.alloc(size * size * 3);
  for (let i = 0; i < size * size; i++) for (let c = 0; c < 3; c++) rgb[i * 3 + c] = p[c].data[p[c].offset + i];
  const png = join(dir, `synthetic-${index}.png`);
  await sharp(rgb, { raw: { width: size, height: size, channels: 3 } })
    .png()
    .toFile(png);
  const server = await serveFolder(r.dir);
  const session = await openPage(server.url);
  try {
    await dropImage(session.page, png);
    await waitForState(session.page, 'done');
    const res = await pageResult(session.page);
    const out = arg('--out');
    await session.page.screenshot({ path: out, fullPage: true });
    const grid = res.attention.length ** 0.5;
    process.stdout.write(
      `wrote ${out}: synthetic test image ${index} (${sample.shape} at x ${sample.cx.toFixed(1)}, y ${sample.cy.toFixed(1)} px), ` +
        `semantic centre at patch row ${Math.floor(res.centre / grid)}, column ${res.centre % grid}; console errors: ${session.errors.length}\n`,
    );
  } finally {
    await session.close();
    await server.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
