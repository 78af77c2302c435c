// transformers.js (@huggingface/transformers) opens an exported folder offline as an
// image-feature-extraction model: it finds onnx/model.onnx (or model_fp16.onnx), reads
// config.json and preprocessor_config.json, and its output is semaim's forward pass of the pixels
// its own processor made. Its resize is not semaim's (sharp's Lanczos-3 versus semaim's
// antialiased bicubic), so its pixels are close to, not equal to, evaluation's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tf from '@huggingface/transformers';
import * as torch from '../../src/torch';
import { exportOnnx } from '../../src/export/onnx-export';
import { SMALL, difference, evalPixels, smallEncoder, writeExportedEncoder } from './helpers';

/** A smooth RGB test image (PNG) of the given size. */
async function writeSmoothImage(path: string, w: number, h: number): Promise<string> {
  const data = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = Math.round(127 + 100 * Math.sin(x / 17 + c) * Math.cos(y / 23 - c));
    }
  }
  await sharp(data, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(path);
  return path;
}

test("transformers.js loads the exported folder offline (image-feature-extraction) and gives semaim's features", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-tfjs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const vit = smallEncoder();
  const src = writeExportedEncoder(join(dir, 'enc'), vit);
  const models = join(dir, 'models');
  await exportOnnx(src, join(models, 'semaim-small'), { dtype: 'float32', attention: true });
  await exportOnnx(src, join(models, 'semaim-small'), { dtype: 'float16', attention: true, overwrite: true }); // its configs replace the float32 export's
  const path = await writeSmoothImage(join(dir, 'photo.png'), 300, 200);

  tf.env.allowRemoteModels = false;
  tf.env.allowLocalModels = true;
  tf.env.localModelPath = models;
  const image = await tf.RawImage.read(path);
  for (const [dtype, tol] of [
    ['fp32', 1e-4],
    ['fp16', 1e-2],
  ] as const) {
    const extractor = await tf.pipeline('image-feature-extraction', 'semaim-small', { dtype });
    try {
      const features = await extractor(image);
      assert.deepEqual(features.dims, [1, 1 + (SMALL.imgSize / SMALL.patchSize) ** 2, SMALL.embedDim]);
      const { pixel_values } = (await extractor.processor(image)) as { pixel_values: tf.Tensor };
      assert.deepEqual(pixel_values.dims, [1, 3, SMALL.imgSize, SMALL.imgSize]);
      const pixels = pixel_values.data as Float32Array;
      const ref = torch.noGrad(() =>
        torch.scope(() => vit.forwardFeatures(torch.tensor(pixels, { shape: [1, 3, SMALL.imgSize, SMALL.imgSize] })).toFloat32Array()),
      );
      const d = difference(features.data as Float32Array, ref);
      console.log(`# transformers.js ${dtype}: features vs semaim on its pixels: max abs ${d.maxAbs.toExponential(2)}, rel ${d.rel.toExponential(2)}`);
      assert.ok(d.rel <= tol, `features rel ${d.rel}`);
      const pooled = await extractor(image, { pool: true });
      assert.ok(difference(pooled.data as Float32Array, ref.subarray(0, SMALL.embedDim)).rel <= tol, 'pool: true gives the [CLS] token');
      if (dtype === 'fp32') {
        const p = difference(pixels, await evalPixels(path, SMALL.imgSize));
        console.log(`# transformers.js preprocessing vs semaim's evaluation pipeline (300×200 PNG): max abs ${p.maxAbs.toFixed(4)} (normalised units)`);
        assert.ok(p.maxAbs < 0.1, `preprocessing differs by ${p.maxAbs}`);
      }
    } finally {
      await extractor.dispose();
    }
  }
});
