// Shared fixtures for the visualisation tests: a tiny random-init SemAIM, test images on disk,
// checkpoints in the trainer's layout, and blend inversion to read order maps back from PNGs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import * as torch from '../../src/torch';
import { saveTensors, sha256File } from '../../src/io';
import { SemAIM, SemAIMConfig, makeConfig } from '../../src/semaim';
import { CheckpointManager } from '../../src/run/checkpoints';
import { RGB, RgbImage, nearestIndex, underlay } from '../../src/viz';

export function tinyConfig(): SemAIMConfig {
  return makeConfig('vit_tiny', { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, decoderDepth: 2 });
}

export function tinyModel(seed = 1): SemAIM {
  return new SemAIM(tinyConfig()).initWeights(seed).eval();
}

/** A checkpoint folder as a bare folder: model.safetensors (config in metadata) + state.json with its SHA-256. */
export function writeCheckpointFolder(dir: string, model: SemAIM, step = 3): string {
  mkdirSync(dir, { recursive: true });
  saveTensors(join(dir, 'model.safetensors'), model.stateDict(), { config: JSON.stringify(model.config), format: 'semaim.pretrain/1' });
  writeFileSync(join(dir, 'state.json'), JSON.stringify({ step, files: { 'model.safetensors': sha256File(join(dir, 'model.safetensors')) } }));
  return dir;
}

/** A checkpoint written by the trainer's CheckpointManager into <runDir>/checkpoints/step-*. */
export function writeRunCheckpoint(runDir: string, model: SemAIM, step = 5): string {
  return new CheckpointManager(runDir).save(step, {
    model: model.stateDict(),
    extra: new Map(),
    state: { step },
    modelMetadata: { config: JSON.stringify(model.config), format: 'semaim.pretrain/1' },
  });
}

/** Writes `count` random RGB PNGs of various sizes into dir; returns their paths. */
export async function writeTestImages(dir: string, count: number, seed = 7): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const sizes = [
    [16, 16],
    [24, 20],
    [20, 30],
    [32, 32],
  ];
  let s = seed;
  const rnd = () => (s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const [w, h] = sizes[i % sizes.length];
    const data = Buffer.alloc(w * h * 3);
    for (let k = 0; k < data.length; k++) data[k] = Math.floor(rnd() * 256);
    const f = join(dir, `img${i}.png`);
    await sharp(data, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toFile(f);
    files.push(f);
  }
  return files;
}

export function pixel(img: RgbImage, x: number, y: number): RGB {
  const i = (y * img.width + x) * 3;
  return [img.data[i], img.data[i + 1], img.data[i + 2]];
}

/**
 * Reads a per-patch map back from a rendered overlay: at each patch centre, undoes the blend with
 * the input cell (overlay = α·colour + (1 − α)·input) and finds the nearest colour-map entry (0..255).
 */
export function readOverlay(fig: RgbImage, inputX: number, cellX: number, cellY: number, cell: number, grid: number, alpha = 0.6): number[] {
  const patch = cell / grid;
  const out: number[] = [];
  for (let r = 0; r < grid; r++) {
    for (let c = 0; c < grid; c++) {
      const y = cellY + Math.floor((r + 0.5) * patch);
      const dx = Math.floor((c + 0.5) * patch);
      const ov = pixel(fig, cellX + dx, y);
      const im = pixel(fig, inputX + dx, y);
      const col = [0, 1, 2].map((k) => (ov[k] - (1 - alpha) * underlay(im[0], im[1], im[2])) / alpha) as unknown as RGB;
      out.push(nearestIndex(col));
    }
  }
  return out;
}

export function argmax(a: ArrayLike<number>): number {
  let b = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[b]) b = i;
  return b;
}

export function liveTensors(): number {
  return torch.memoryStats().liveTensors;
}
