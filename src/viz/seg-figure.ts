// The segmentation probe's figure: one row per test image — the image, its ground truth, the
// prediction — with a colour legend of the classes below. Class 0 is black, the others distinct
// colours that stand out from it (classColor); ignored pixels are white.
import { Canvas, GREY, WHITE, type RgbImage } from './canvas';
import type { RGB } from './colormap';
import { LINE_H, textWidth } from './font';
import { denormalizeImage } from './images';

/**
 * Class colours 1..17: distinct hues, each light enough to stand out from class 0's black and none
 * near the ignored pixels' white (PASCAL VOC's palette made hexagon and cross nearly black, and circle
 * and heart two similar reds).
 */
const PALETTE: readonly RGB[] = [
  [230, 25, 75], // red
  [60, 180, 75], // green
  [255, 225, 25], // yellow
  [67, 99, 216], // blue
  [245, 130, 49], // orange
  [145, 30, 180], // purple
  [66, 212, 244], // cyan
  [240, 50, 230], // magenta
  [191, 239, 69], // lime
  [250, 190, 212], // pink
  [70, 153, 144], // teal
  [220, 190, 255], // lavender
  [154, 99, 36], // brown
  [128, 128, 0], // olive
  [0, 200, 160], // sea green
  [169, 169, 169], // grey
  [0, 128, 255], // azure
];

/** The colour of class k: 0 (background) black, then PALETTE, then hues a golden angle apart at full value. */
export function classColor(k: number): RGB {
  if (k === 0) return [0, 0, 0];
  if (k <= PALETTE.length) return PALETTE[k - 1];
  const h = ((k * 137.508) % 360) / 60;
  const f = (n: number) => Math.round(255 * (1 - 0.75 * Math.max(0, Math.min(1, Math.min(4 - ((n + h) % 6), (n + h) % 6)))));
  return [f(5), f(3), f(1)];
}

/** A label map (H × W class indices, 255 = ignore) as colours; a RangeError unless it has width × height labels. */
export function colorizeLabels(labels: Uint8Array, width: number, height: number, ignoreIndex = 255): RgbImage {
  // a short map coloured its missing labels as classColor(undefined), silently
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0 && labels.length === width * height))
    throw new RangeError(`colorizeLabels: ${labels.length} labels are not a ${width}×${height} label map`);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const c = labels[i] === ignoreIndex ? WHITE : classColor(labels[i]);
    data.set(c, i * 3);
  }
  return { width, height, data };
}

export interface SegFigureInput {
  /** n normalised CHW images (ImageNet mean/std), square of side `size`. */
  images: Float32Array;
  truth: Uint8Array;
  prediction: Uint8Array;
  size: number;
  count: number;
  classNames: string[];
  title?: string;
}

/** Draws the figure; tiles are scaled to about 128 pixels. */
export function drawSegFigure(f: SegFigureInput): RgbImage {
  const S = f.size;
  const scale = Math.max(1, Math.floor(128 / S));
  const tile = S * scale;
  const gap = 6;
  // the title, then the column labels, each with `gap` above it (the title touched the top edge, the labels' descenders the tiles)
  const head = gap + (f.title ? LINE_H + gap : 0) + LINE_H + gap;
  const columns = ['image', 'ground truth', 'prediction'];
  const legendCols = Math.max(1, Math.floor((3 * (tile + gap) + gap) / 110));
  const legendRows = Math.ceil(f.classNames.length / legendCols);
  const width = Math.max(3 * (tile + gap) + gap, textWidth(f.title ?? '') + 2 * gap);
  const height = head + f.count * (tile + gap) + gap + legendRows * (LINE_H + 3) + gap;
  const canvas = new Canvas(width, height);
  if (f.title) canvas.drawText(f.title, gap, gap);
  columns.forEach((c, j) => canvas.drawTextCentred(c, gap + j * (tile + gap), head - gap - LINE_H, tile, GREY, 1));
  const hw = S * S;
  for (let i = 0; i < f.count; i++) {
    const y = head + i * (tile + gap);
    canvas.drawImage(denormalizeImage(f.images, S, i * 3 * hw), gap, y, scale);
    canvas.drawImage(colorizeLabels(f.truth.subarray(i * hw, (i + 1) * hw), S, S), gap + tile + gap, y, scale);
    canvas.drawImage(colorizeLabels(f.prediction.subarray(i * hw, (i + 1) * hw), S, S), gap + 2 * (tile + gap), y, scale);
  }
  const ly = head + f.count * (tile + gap) + gap;
  const colW = Math.floor((width - gap) / legendCols);
  f.classNames.forEach((name, k) => {
    const x = gap + (k % legendCols) * colW;
    const y = ly + Math.floor(k / legendCols) * (LINE_H + 3);
    canvas.fillRect(x, y, LINE_H - 2, LINE_H - 2, classColor(k));
    canvas.strokeRect(x, y, LINE_H - 2, LINE_H - 2, GREY);
    canvas.drawText(`${k} ${name}`.slice(0, Math.floor((colW - LINE_H - 4) / 6)), x + LINE_H + 2, y);
  });
  return canvas;
}
