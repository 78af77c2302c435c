// Pixel-level properties of the figures: overlays readable against the colour bar, captions and
// column labels that keep what tells them apart, the segmentation figure's palette and margins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Canvas,
  NO_GLYPH,
  ORDER_NAMES,
  TURBO,
  colorize,
  columnLabel,
  crop,
  denormalizeImage,
  fontText,
  imageRow,
  minMax,
  nearestIndex,
  orderEarliness,
  renderFigure,
  safeName,
  textWidth,
  type RGB,
} from '../../src/viz';
import { classColor, colorizeLabels, drawSegFigure } from '../../src/viz/seg-figure';

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

test('Canvas.set and get refuse a pixel off the canvas (RangeError); set clamps and rounds channel values to 0..255 and refuses NaN', () => {
  const c = new Canvas(4, 3);
  c.set(1, 1, [0, 0, 0]);
  const off: [number, number][] = [
    [4, 0], // get(4, 0) read pixel (0, 1), the next row's first
    [0, 3],
    [-1, 0],
    [1.5, 0], // a fractional byte index: set wrote nothing
    [NaN, 0],
  ];
  for (const [x, y] of off) {
    const where = new RegExp(`^Canvas\\.(set|get): pixel \\(${x}, ${y}\\) is not on the 4×3 canvas \\(integers 0\\.\\.3, 0\\.\\.2\\)$`);
    assert.throws(
      () => c.set(x, y, [0, 0, 0]),
      (e) => e instanceof RangeError && where.test(e.message) && e.message.startsWith('Canvas.set'),
      `set(${x}, ${y})`,
    );
    assert.throws(
      () => c.get(x, y),
      (e) => e instanceof RangeError && where.test(e.message) && e.message.startsWith('Canvas.get'),
      `get(${x}, ${y})`,
    );
  }
  // stored modulo 256 before: 256 as 0, -1 as 255, 127.6 as 127
  c.set(0, 0, [256, -1, 127.6]);
  assert.deepEqual(c.get(0, 0), [255, 0, 128]);
  c.set(0, 0, [Infinity, -Infinity, 0.4]);
  assert.deepEqual(c.get(0, 0), [255, 0, 0]);
  assert.throws(
    () => c.set(0, 0, [NaN, 0, 0]),
    (e) => e instanceof RangeError && /^Canvas\.set: channel 0 of the colour must be a number, got NaN$/.test(e.message),
  );
  assert.throws(() => c.set(0, 0, [0, 0] as never), /channel 2 of the colour must be a number, got undefined/);
  // fillRect still clips what runs off the canvas
  c.fillRect(-2, -2, 4, 4, [9, 9, 9]);
  assert.deepEqual(
    [c.get(1, 1), c.get(2, 1), c.get(1, 2)],
    [
      [9, 9, 9],
      [255, 255, 255],
      [255, 255, 255],
    ],
  );
  // and rounds fractional edges to whole pixels (a text placed at a fractional x drew nothing, then threw in set)
  const f = new Canvas(4, 2);
  f.fillRect(0.6, 0.4, 1.8, 1, [7, 7, 7]); // x 0.6..2.4 → pixel 1 only (1..2), y 0.4..1.4 → row 0
  assert.deepEqual(
    [f.get(0, 0), f.get(1, 0), f.get(2, 0), f.get(1, 1)],
    [
      [255, 255, 255],
      [7, 7, 7],
      [255, 255, 255],
      [255, 255, 255],
    ],
  );
});

test('regions, scales and buffers that do not fit are a RangeError, not pixels from elsewhere: crop, drawImage, drawOverlay, denormalizeImage, colorizeLabels', () => {
  const c = new Canvas(4, 4);
  const img = { width: 2, height: 2, data: new Uint8Array(12).fill(7) };
  const cases: [() => unknown, RegExp][] = [
    // the region's pixels past the right edge came from the next row
    [() => crop(c, 3, 0, 2, 1), /^crop: region 2×1 at \(3, 0\) is not inside the 4×4 image$/],
    [() => crop(c, 0, 3, 1, 2), /^crop: region 1×2 at \(0, 3\) is not inside the 4×4 image$/],
    [() => crop(c, -1, 0, 1, 1), /^crop: region 1×1 at \(-1, 0\) is not inside the 4×4 image$/],
    [() => crop(c, 0.5, 0, 1, 1), /^crop: region 1×1 at \(0\.5, 0\) is not inside the 4×4 image$/],
    // a scale of 0 drew nothing
    [() => c.drawImage(img, 0, 0, 0), /^Canvas\.drawImage: scale must be a positive integer, got 0$/],
    [() => c.drawOverlay(img, 0, 0, 1.5, { gridH: 1, gridW: 1 }, [0.5], colorize, 0.6), /^Canvas\.drawOverlay: scale must be a positive integer, got 1\.5$/],
    // the missing patches were coloured as value 0
    [
      () => c.drawOverlay(img, 0, 0, 1, { gridH: 2, gridW: 2 }, [0.5], colorize, 0.6),
      /^Canvas\.drawOverlay: values must be one per patch of the 2×2 grid \(4\), got 1$/,
    ],
    [() => c.drawOverlay(img, 0, 0, 1, { gridH: 1, gridW: 1 }, [0.5], colorize, 60), /^Canvas\.drawOverlay: alpha must be in \[0, 1\], got 60$/],
    // values past the buffer's end made a black image
    [() => denormalizeImage(new Float32Array(3 * 4), 2, 1), /^denormalizeImage: a 3×2×2 image at offset 1 does not fit in 12 values$/],
    [() => denormalizeImage(new Float32Array(3 * 4), 4), /^denormalizeImage: a 3×4×4 image at offset 0 does not fit in 12 values$/],
    [() => colorizeLabels(new Uint8Array(3), 2, 2), /^colorizeLabels: 3 labels are not a 2×2 label map$/],
  ];
  for (const [call, message] of cases) assert.throws(call, (e) => e instanceof RangeError && message.test(e.message), message.source);
  // what fits is drawn as before
  assert.deepEqual(crop(c, 2, 2, 2, 2).data.length, 12);
  assert.deepEqual(crop(c, 4, 4, 0, 0).data.length, 0);
  c.drawImage(img, 3, 3, 2); // clipped by fillRect
  assert.deepEqual(c.get(3, 3), [7, 7, 7]);
  assert.equal(denormalizeImage(new Float32Array(2 * 3 * 4), 2, 12).data.length, 12);
  assert.deepEqual(Array.from(colorizeLabels(Uint8Array.from([0, 255]), 2, 1).data), [0, 0, 0, 255, 255, 255]);
});

test('captions: accented letters lose their accents (ü → u, ç → c), other characters are one visible box each, never ?', () => {
  assert.equal(fontText('猫 ünï€ode.jpg'), `${NO_GLYPH} uni${NO_GLYPH}ode.jpg`);
  assert.equal(fontText('çhat <i>&amp;.jpg'), 'chat <i>&amp;.jpg');
  assert.equal(fontText('u\u0308ber.png'), 'uber.png', 'a decomposed ü (as macOS names files) too');
  assert.equal(fontText('😀.png'), `${NO_GLYPH}.png`, 'an astral character is one box, not two');
  assert.equal(textWidth('😀'), textWidth('x'));
  // as drawn in a figure's caption: 'ü.jpg' as 'u.jpg', '猫.jpg' not as '?.jpg'
  const image = { width: 8, height: 8, data: new Uint8Array(8 * 8 * 3).fill(128) };
  const figure = (caption: string) => renderFigure([{ caption, cells: [{ label: 'input', image }] }], { grid: { gridH: 2, gridW: 2 }, minCell: 8 }).canvas.data;
  assert.deepEqual(figure('ü.jpg'), figure('u.jpg'));
  assert.notDeepEqual(figure('猫.jpg'), figure('?.jpg'));
});

test('row file names keep letters and digits of any script; separators, spaces, controls and symbols become _', () => {
  assert.equal(safeName('猫 ünï€ode.jpg'), '猫_ünï_ode');
  assert.equal(safeName('u\u0308ber.png'), 'über', 'NFC: the combining mark stays with its letter');
  assert.equal(safeName('çhat <i>&amp;.jpg'), 'çhat_i_amp_');
  assert.equal(safeName('a\u202eb\u0000c\nd.png'), 'a_b_c_d');
  assert.equal(safeName('€€€.png'), '_');
  assert.equal(safeName('.png'), '.png'); // parse('.png').name is '.png'
  assert.equal(Array.from(safeName('猫'.repeat(100) + '.jpg')).length, 60);
  assert.ok(!/[/\\]/.test(safeName('a\\b.png')));
});

test('column labels of small cells keep what tells them apart: the order name, not "orde~" six times', () => {
  const n = 4;
  const ramp = () => Float32Array.from({ length: n }, (_, i) => i);
  const maps = {
    orders: Object.fromEntries(ORDER_NAMES.map((o) => [o, ramp()])),
    attention: ramp(),
    similarity: ramp(),
    patchLoss: ramp(),
    recon: null,
  };
  const image = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3).fill(90) };
  const row = imageRow('x.jpg', image, maps, ORDER_NAMES, 'semantic');
  const labels = row.cells.map((c) => columnLabel(c, 32, 1));
  assert.deepEqual(labels, ['input', 'rast~', 'snake', 'stoc~', 'simi~', 'sema~', 'mult~', 'atte~', 'sim S', 'loss']);
  assert.deepEqual(
    row.cells.map((c) => columnLabel(c, 128, 1)),
    row.cells.map((c) => c.label),
    'labels that fit are drawn whole',
  );
  // as drawn (--cell-size 32 on 32² images): the headers of the order columns differ
  const { canvas, layout: L } = renderFigure([row], { grid: { gridH: 2, gridW: 2 }, minCell: 32 });
  const header = (col: number) => crop(canvas, L.cellX(col), L.margin, L.cell, L.headerH).data;
  for (let a = 1; a <= 6; a++) for (let b = a + 1; b <= 6; b++) assert.notDeepEqual(header(a), header(b), `columns ${a} and ${b} have the same header`);
});

/** WCAG relative luminance of an sRGB colour. */
function luminance(c: RGB): number {
  const lin = c.map((v) => (v / 255 <= 0.04045 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4));
  return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
}

test('segprobe figure: every class colour stands out from the black background and the white of ignored pixels, and the classes differ', () => {
  const colours = Array.from({ length: 40 }, (_, k) => classColor(k + 1));
  const dist = (a: RGB, b: RGB) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
  for (const [k, c] of colours.entries()) {
    const l = luminance(c);
    assert.ok((l + 0.05) / 0.05 >= 3, `class ${k + 1} ${c} is too dark against the background (luminance ${l.toFixed(3)})`);
    assert.ok(dist(c, [255, 255, 255]) >= 70, `class ${k + 1} ${c} is near white`);
  }
  for (let a = 0; a < 17; a++)
    for (let b = a + 1; b < 17; b++) assert.ok(dist(colours[a], colours[b]) >= 50, `classes ${a + 1} and ${b + 1} look alike: ${colours[a]} / ${colours[b]}`);
  assert.deepEqual(classColor(0), [0, 0, 0]);
});

test('segprobe figure: the title keeps off the top edge and the column labels off the tiles', () => {
  const S = 8;
  const image = drawSegFigure({
    images: new Float32Array(3 * S * S),
    truth: new Uint8Array(S * S).fill(1),
    prediction: new Uint8Array(S * S).fill(2),
    size: S,
    count: 1,
    classNames: ['background', 'circle', 'square'],
    title: 'segprobe: mIoU 9.2% (frozen encoder)',
  });
  const rowInk = (y: number) => {
    for (let x = 0; x < image.width; x++) if (image.data.subarray(3 * (y * image.width + x), 3 * (y * image.width + x) + 3).some((v) => v !== 255)) return true;
    return false;
  };
  const firstInk = Array.from({ length: image.height }, (_, y) => y).find(rowInk)!;
  assert.ok(firstInk >= 4, `the title starts at row ${firstInk}`);
  // the ground-truth tile (class 1) starts at the first row whose pixel in its column is not white; the label above it ends ≥ 3 rows before
  const x = Math.floor(image.width / 2);
  const tileTop = Array.from({ length: image.height }, (_, y) => y).find((y) => image.data[3 * (y * image.width + x) + 1] !== 255 && y > firstInk + 12)!;
  for (let y = tileTop - 3; y < tileTop; y++) assert.ok(!rowInk(y), `row ${y}, just above the tiles at ${tileTop}, has ink: a label touches them`);
});

test('colour maps: values to the nearest table entry (clamped), min-max scaling, order earliness by rank', () => {
  assert.deepEqual(colorize(0.5), TURBO[128], '127.5 rounds to entry 128');
  assert.deepEqual(colorize(1 / 255 - 1e-4), TURBO[1]);
  assert.deepEqual(colorize(2), TURBO[255]);
  assert.deepEqual(colorize(NaN), TURBO[0]);
  assert.deepEqual([...minMax([0, 5, 10, NaN])].slice(0, 3), [0, 0.5, 1]);
  assert.deepEqual([...minMax([3, 3, 3])], [0.5, 0.5, 0.5], 'a constant map is all 0.5');
  assert.deepEqual([...orderEarliness([2, 0, 1])], [0, 1, 0.5], 'the first predicted patch is 1, the last 0');
  assert.deepEqual([...orderEarliness([4, 4, 1])], [0.5, 0, 1], 'ties keep index order');
  assert.deepEqual([...orderEarliness([7])], [1]);
});
