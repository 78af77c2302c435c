// Segmentation fixtures of the evaluation tests.
import * as torch from '../../src/torch';
import { MemorySegData } from '../../src/data/seg-streams';

/** 8×8 images, 2×2 patches of 4×4: a bright square marks class 1 in some patch, the rest is class 0. */
export function squares(n: number, seed: number): MemorySegData {
  const g = new torch.Generator(seed);
  const noise = torch.randn([n, 3, 8, 8], { generator: g }).mul(0.2);
  const x = noise.toFloat32Array();
  noise.dispose();
  const masks = new Uint8Array(n * 64);
  for (let i = 0; i < n; i++) {
    const q = i % 4;
    const [py, px] = [Math.floor(q / 2) * 4, (q % 2) * 4];
    for (let y = 0; y < 4; y++)
      for (let xx = 0; xx < 4; xx++) {
        masks[i * 64 + (py + y) * 8 + px + xx] = 1;
        for (let c = 0; c < 3; c++) x[i * 192 + c * 64 + (py + y) * 8 + px + xx] += 2;
      }
  }
  return new MemorySegData(x, [n, 3, 8, 8], masks, 2, ['background', 'square']);
}
