// RandAugment's ops against PIL, as timm applies them (scripts/golden_randaugment.py): every op, at
// several levels, both signs and both resampling filters, must give PIL's bytes exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyOp, type AugImage, type OpName } from '../../src/data/randaugment';

interface Golden {
  height: number;
  width: number;
  fill: [number, number, number];
  input: string;
  cases: { op: OpName; level: number; negative: boolean; interpolation: 'bicubic' | 'bilinear'; out: string }[];
}

const golden = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'test', 'golden', 'randaugment', 'ops.json'), 'utf8')) as Golden;
const bytes = (b64: string) => new Uint8Array(Buffer.from(b64, 'base64'));

test('RandAugment ops equal PIL byte for byte (geometric ops: bicubic and bilinear, both signs)', () => {
  const failures: string[] = [];
  for (const c of golden.cases) {
    const img: AugImage = { rgb: bytes(golden.input), mask: null, width: golden.width, height: golden.height };
    // negate() draws one float: above 0.5 means the negative direction
    applyOp(img, c.op, c.level, { float: () => (c.negative ? 0.9 : 0.1) } as never, { fill: golden.fill, interpolation: c.interpolation });
    const want = bytes(c.out);
    let differ = 0;
    let worst = 0;
    for (let i = 0; i < want.length; i++) {
      const d = Math.abs(img.rgb[i] - want[i]);
      if (d) differ++;
      worst = Math.max(worst, d);
    }
    if (differ) failures.push(`${c.op} level ${c.level}${c.negative ? ' negative' : ''} ${c.interpolation}: ${differ} bytes differ, by up to ${worst}`);
  }
  assert.equal(golden.cases.length, 120);
  assert.deepEqual(failures, []);
});

// The golden image (15×11) is too small for Equalize to act (PIL leaves a histogram whose step
// (pixels − the last level's count) // 255 is 0 alone) and its levels never reach Posterize's rounding:
// two more cases, their outputs computed by PIL 9.4 (ImageOps.equalize, ImageOps.posterize).
test("Equalize on an image large enough to equalize: PIL's LUT (its step/2 start), per channel", () => {
  const [W, H] = [32, 24];
  // 8 levels per channel; channel c takes the counts rotated by c (768 pixels: step 2)
  const levels = [
    [0, 30, 60, 90, 120, 150, 180, 210],
    [5, 40, 41, 100, 170, 200, 230, 255],
    [12, 13, 14, 77, 78, 200, 254, 255],
  ];
  const counts = [7, 201, 33, 150, 99, 61, 17, 200];
  // ImageOps.equalize(Image.fromarray(rgb)) at each level
  const want = [
    [0, 4, 104, 121, 196, 245, 255, 255],
    [0, 101, 117, 192, 242, 255, 255, 255],
    [0, 17, 92, 141, 172, 180, 255, 255],
  ];
  const img: AugImage = { rgb: new Uint8Array(3 * W * H), mask: null, width: W, height: H };
  const first: number[][] = [[], [], []];
  for (let c = 0; c < 3; c++) {
    let i = c * W * H;
    for (let k = 0; k < 8; k++) {
      const n = counts[(k + c) % 8];
      first[c].push(i);
      img.rgb.fill(levels[c][k], i, i + n);
      i += n;
    }
  }
  applyOp(img, 'Equalize', 5, { float: () => 0.1 } as never, { fill: golden.fill, interpolation: 'bicubic' });
  assert.deepEqual(
    first.map((starts) => starts.map((i) => img.rgb[i])),
    want,
  );
});

test("Posterize keeps int(level/10·4) bits, as timm's _posterize_original_level_to_arg", () => {
  // level 6.5: int(2.6) = 2 bits, mask 0xC0 (PIL: posterize(img, 2) → 0, 64, 128, 192, 0, 64, 128, 192)
  const vals = [37, 100, 130, 250, 63, 64, 191, 192];
  const img: AugImage = { rgb: Uint8Array.from([...vals, ...vals, ...vals]), mask: null, width: 8, height: 1 };
  applyOp(img, 'Posterize', 6.5, { float: () => 0.1 } as never, { fill: golden.fill, interpolation: 'bicubic' });
  const want = [0, 64, 128, 192, 0, 64, 128, 192];
  assert.deepEqual([...img.rgb], [...want, ...want, ...want]);
});
