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
