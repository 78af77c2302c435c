// Pixel-level properties of the figures: overlays readable against the colour bar, captions and
// column labels that keep what tells them apart, the segmentation figure's palette and margins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Canvas, colorize, nearestIndex, type RGB } from '../../src/viz';

/** Hue in degrees (HSV) of an RGB colour. */
function hue([r, g, b]: RGB): number {
  const max = Math.max(r, g, b);
  const d = max - Math.min(r, g, b);
  if (d === 0) return NaN;
  const h = max === r ? (g - b) / d : max === g ? 2 + (b - r) / d : 4 + (r - g) / d;
  return (60 * h + 360) % 360;
}

test('overlay: a map over a saturated image keeps the colour map’s hue and reads back as its value on the bar', () => {
  const image = { width: 4, height: 4, data: new Uint8Array(4 * 4 * 3) };
  const colours: RGB[] = [
    [20, 40, 230], // the demo's blue disc
    [230, 30, 30],
    [30, 200, 40],
    [250, 250, 250],
    [0, 0, 0],
  ];
  for (const under of colours) {
    for (let i = 0; i < 16; i++) image.data.set(under, 3 * i);
    for (const v of [0.1, 0.3, 0.5, 0.7, 0.9, 1]) {
      const c = new Canvas(4, 4);
      c.drawOverlay(image, 0, 0, 1, { gridH: 1, gridW: 1 }, [v], colorize, 0.6);
      const shown = c.get(1, 1);
      const dh = Math.abs(hue(shown) - hue(colorize(v)));
      assert.ok(Math.min(dh, 360 - dh) < 4, `over ${under}: value ${v} shows hue ${hue(shown).toFixed(0)}, the bar ${hue(colorize(v)).toFixed(0)}`);
      const read = nearestIndex(shown) / 255;
      assert.ok(Math.abs(read - v) <= 0.15, `over ${under}: value ${v} reads as ${read.toFixed(2)} on the bar`);
    }
  }
});
