// Shared fixtures for the export tests: a small encoder whose every weight is non-trivial (random
// LayerNorm scales and biases too), and comparisons relative to the reference's largest value.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { saveTensors } from '../../src/io';
import { openImage } from '../../src/data/codecs/decode';
import type { ExifOrientationPolicy } from '../../src/data/codecs/orientation';
import { Pipeline } from '../../src/data/pipeline';
import { Rng } from '../../src/data/rng';
import { evalTransforms, normalize } from '../../src/data/transforms';
import { VisionTransformer } from '../../src/semaim';
import type { EncoderConfig } from '../../src/semaim';
import { exportedConfigJson } from '../../src/export/safetensors';

export const SMALL: EncoderConfig = { imgSize: 32, patchSize: 4, inChans: 3, embedDim: 64, depth: 2, numHeads: 4, mlpRatio: 4 };

/** A small encoder in eval mode with random weights everywhere (seeded). */
export function smallEncoder(seed = 3, cfg: EncoderConfig = SMALL): VisionTransformer {
  const vit = new VisionTransformer(cfg).initWeights(seed).eval();
  torch.manualSeed(seed + 1);
  torch.noGrad(() => {
    for (const [name, p] of vit.namedParameters()) {
      if (/norm\d?\.weight$/.test(name)) p.copy_(torch.rand(p.shape).mul(1.5).add(0.25));
      else if (name.endsWith('.bias') || name === 'cls_token') p.copy_(torch.randn(p.shape).mul(0.1));
    }
  });
  return vit;
}

/** max |a − b| and that divided by max |ref|. */
export function difference(a: ArrayLike<number>, ref: ArrayLike<number>): { maxAbs: number; rel: number } {
  if (a.length !== ref.length) throw new Error(`lengths differ: ${a.length} vs ${ref.length}`);
  let maxAbs = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return { maxAbs, rel: maxAbs / Math.max(scale, 1e-30) };
}

/** Seeded N(0, 1) images [B, C, H, W] as float32. */
export function randomImages(B: number, cfg: EncoderConfig, seed = 11): Float32Array {
  torch.manualSeed(seed);
  return torch.scope(() => torch.randn([B, cfg.inChans ?? 3, cfg.imgSize, cfg.imgSize]).toFloat32Array());
}

/** Writes the encoder as `semaim export` does (<dir>/encoder.safetensors + .json); returns the .safetensors path. */
export function writeExportedEncoder(dir: string, vit: VisionTransformer, cfg: EncoderConfig = SMALL): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'encoder.safetensors');
  saveTensors(path, vit.stateDict(), { format: 'pt', config: JSON.stringify(cfg) });
  writeFileSync(join(dir, 'encoder.json'), JSON.stringify(exportedConfigJson(cfg)));
  return path;
}

/**
 * One image file through semaim's own evaluation pipeline (src/data): normalised only when it is
 * already size×size (a dataset at its native size), else resize + centre crop; alpha on white;
 * EXIF orientation ignored (semaim's default) or applied.
 */
export async function evalPixels(path: string, size: number, exifOrientation: ExifOrientationPolicy = 'ignore'): Promise<Float32Array> {
  const handle = await openImage(readFileSync(path), { background: 255, exifOrientation });
  const native = handle.width === size && handle.height === size;
  const out = new Float32Array(3 * size * size);
  new Pipeline(native ? [normalize()] : evalTransforms(size)).run(handle, new Rng(0), out, 0, size, size, null, 0);
  return out;
}
