// The 500×375 JPEGs of `npm run bench:data`'s large setting, made by worker threads: image i is a synthetic
// object scene with fine noise (seeded by i alone, so any split of the indices gives the same files), encoded
// at quality 90 into class{i % 4}/{i}.jpg. One thread took longer than a GPU call had left for the whole
// data benchmark; the cores share the work now.
import { availableParallelism } from 'node:os';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { renderSynthetic, syntheticConfig, Rng } from '../src/data';

interface Share {
  dir: string;
  count: number;
  first: number;
  step: number;
}

async function makeShare({ dir, count, first, step }: Share): Promise<void> {
  const sharpMod = require('sharp');
  const sharp = typeof sharpMod === 'function' ? sharpMod : sharpMod.default;
  const cfg = syntheticConfig({ size: [375, 500], count, seed: 11 });
  const hw = 500 * 375;
  for (let i = first; i < count; i += step) {
    const s = renderSynthetic(cfg, i);
    const rgb = Buffer.alloc(hw * 3);
    const rng = new Rng(11, 'noise', i);
    const planes = s.image.planes;
    for (let p = 0; p < hw; p++) {
      // fine-grained texture so files have photo-like entropy (~80–120 KB at q90)
      const n = rng.normal(0, 7);
      for (let c = 0; c < 3; c++) {
        const v = planes[c].data[planes[c].offset + p] + n + rng.normal(0, 3);
        rgb[p * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
    const cls = join(dir, `class${i % 4}`);
    mkdirSync(cls, { recursive: true });
    await sharp(rgb, { raw: { width: 500, height: 375, channels: 3 } })
      .jpeg({ quality: 90 })
      .toFile(join(cls, `${String(i).padStart(5, '0')}.jpg`));
  }
}

/** Writes the `count` JPEGs into `dir` (which the caller renames into place), one share per core. */
export async function makeLargeJpegFiles(dir: string, count: number, threads = Math.min(availableParallelism(), 16)): Promise<void> {
  const step = Math.max(1, Math.min(threads, count));
  await Promise.all(
    Array.from(
      { length: step },
      (_, first) =>
        new Promise<void>((resolve, reject) => {
          const w = new Worker(__filename, { workerData: { dir, count, first, step } satisfies Share });
          w.once('error', reject);
          w.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`bench:data: a JPEG-making thread exited with ${code}`))));
        }),
    ),
  );
}

// A failure rejects unhandled, which ends the thread with an error event: makeLargeJpegFiles rejects with it.
if (!isMainThread) void makeShare(workerData as Share);
