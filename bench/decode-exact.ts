// Cost of the PIL-exact JPEG decode (Pipeline exactDecode: chroma upsampled and converted to RGB at
// full resolution, then resized) against the fused path (Y/Cb/Cr resized each on its own grid, DCT-domain
// reduction), one thread, on the 500×375 4:2:0 q90 JPEGs of `npm run bench:data`: decode + transform
// per image for the evaluation transform and the pre-training RandomResizedCrop, float (the SIMD
// resampler) and uint8 (the trainer's byte batches). `node dist/bench/decode-exact.js [count]`.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openImage, Pipeline, Rng, evalTransforms, pretrainTransforms, normalize, type TransformSpec } from '../src/data';
import { makeLargeJpegFiles } from './data_jpegs';

function rate(files: Uint8Array[], transforms: TransformSpec[], exactDecode: boolean, uint8: boolean): number {
  const p = new Pipeline(transforms, { exactDecode, uint8 });
  const out = uint8 ? new Uint8Array(3 * 224 * 224) : new Float32Array(3 * 224 * 224);
  const once = (k: number): void => {
    const h = openImage(files[k % files.length]);
    if (h instanceof Promise) throw new Error('bench: a file went to sharp');
    p.run(h, new Rng(1, 'bench', k), out, 0, 224, 224, null, 0);
  };
  for (let k = 0; k < files.length; k++) once(k); // warm-up
  let best = 0;
  for (let rep = 0; rep < 3; rep++) {
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < files.length; k++) once(k);
    best = Math.max(best, files.length / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  return best;
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 200);
  const dir = mkdtempSync(join(tmpdir(), 'semaim-exact-'));
  try {
    await makeLargeJpegFiles(dir, count, 2);
    const files = readdirSync(dir).flatMap((c) => readdirSync(join(dir, c)).map((f) => new Uint8Array(readFileSync(join(dir, c, f)))));
    const rrc = pretrainTransforms(224).filter((t) => t.op !== 'normalize');
    const cases: Array<[string, TransformSpec[], boolean]> = [
      ['eval 224 (resize 256, centre crop), float', evalTransforms(224), false],
      ['RandomResizedCrop 224 + flip, float', [...rrc, normalize()], false],
      ['RandomResizedCrop 224 + flip, uint8', rrc, true],
    ];
    console.log(`${files.length} JPEGs 500×375 4:2:0 q90, one thread, img/s (best of 3)`);
    for (const [name, t, uint8] of cases) {
      const fused = rate(files, t, false, uint8);
      const exact = rate(files, t, true, uint8);
      console.log(`${name}: fused ${fused.toFixed(0)}, exact ${exact.toFixed(0)} (${((100 * exact) / fused).toFixed(0)}%)`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
