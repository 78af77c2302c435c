// jpegToRgb's chroma upsampling for the layouts jdsample.c does not filter: 2:1 across with 3:1 or 4:1
// down is replicated (int_upsample), as a chroma plane already at full resolution would give.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jpegToRgb } from '../../src/data/codecs/jpeg-rgb';
import { fullPlane, type Image, type Plane } from '../../src/data/image';

/** A chroma plane of `w`×`h` samples, each covering fx×fy pixels, with varied values. */
function chroma(w: number, h: number, fx: number, fy: number, seed: number): Plane {
  const data = Uint8Array.from({ length: w * h }, (_, i) => (seed * 37 + i * 53) % 256);
  return { ...fullPlane(data, w, h), sx: fx, sy: fy };
}

/** The same plane replicated to full resolution (W×H pixels). */
function replicated(p: Plane, W: number, H: number): Plane {
  const data = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[y * W + x] = p.data[Math.floor(y / p.sy) * p.stride + Math.floor(x / p.sx)];
  return fullPlane(data, W, H);
}

test('2:1 across with 3:1 or 4:1 down: chroma replicated, not triangle-filtered (jdsample.c int_upsample)', () => {
  for (const fy of [3, 4]) {
    const W = 12;
    const H = 3 * fy;
    const y = fullPlane(
      Uint8Array.from({ length: W * H }, (_, i) => (i * 29) % 256),
      W,
      H,
    );
    const cb = chroma(W / 2, H / fy, 2, fy, 1);
    const cr = chroma(W / 2, H / fy, 2, fy, 2);
    const sub: Image = { width: W, height: H, space: 'ycbcr', planes: [y, cb, cr] };
    const full: Image = { width: W, height: H, space: 'ycbcr', planes: [y, replicated(cb, W, H), replicated(cr, W, H)] };
    const rect = { x0: 0, y0: 0, x1: W, y1: H };
    const a = jpegToRgb(sub, rect, false).planes;
    const b = jpegToRgb(full, rect, false).planes;
    for (let c = 0; c < 3; c++)
      assert.deepEqual(a[c].data.subarray(a[c].offset, a[c].offset + W * H), b[c].data.subarray(b[c].offset, b[c].offset + W * H), `fy ${fy}, plane ${c}`);
  }
});
