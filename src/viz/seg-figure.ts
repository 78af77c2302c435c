// The segmentation probe's figure: one row per test image — the image, its ground truth, the
// prediction — with a colour legend of the classes below. Class colours follow the PASCAL VOC
// palette (class 0 black), ignored pixels are white.
import { Canvas, GREY, WHITE, type RgbImage } from './canvas';
import type { RGB } from './colormap';
import { LINE_H, textWidth } from './font';
import { denormalizeImage } from './images';

/** PASCAL VOC's colour for class k (bits of k spread over the high bits of R, G, B). */
export function vocColor(k: number): RGB {
  let r = 0;
  let g = 0;
  let b = 0;
  for (let bit = 0, c = k; c > 0 && bit < 8; bit++, c >>= 3) {
    r |= ((c >> 0) & 1) << (7 - bit);
    g |= ((c >> 1) & 1) << (7 - bit);
    b |= ((c >> 2) & 1) << (7 - bit);
  }
  return [r, g, b];
}

/** A label map (H × W class indices, 255 = ignore) as colours. */
export function colorizeLabels(labels: Uint8Array, width: number, height: number, ignoreIndex = 255): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const c = labels[i] === ignoreIndex ? WHITE : vocColor(labels[i]);
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
  const head = 2 * LINE_H + 4;
  const columns = ['image', 'ground truth', 'prediction'];
  const legendCols = Math.max(1, Math.floor((3 * (tile + gap) + gap) / 110));
  const legendRows = Math.ceil(f.classNames.length / legendCols);
  const width = Math.max(3 * (tile + gap) + gap, textWidth(f.title ?? '') + 2 * gap);
  const height = head + f.count * (tile + gap) + gap + legendRows * (LINE_H + 3) + gap;
  const canvas = new Canvas(width, height);
  if (f.title) canvas.drawText(f.title, gap, 2);
  columns.forEach((c, j) => canvas.drawTextCentred(c, gap + j * (tile + gap), LINE_H + 3, tile, GREY, 1));
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
    canvas.fillRect(x, y, LINE_H - 2, LINE_H - 2, vocColor(k));
    canvas.strokeRect(x, y, LINE_H - 2, LINE_H - 2, GREY);
    canvas.drawText(`${k} ${name}`.slice(0, Math.floor((colW - LINE_H - 4) / 6)), x + LINE_H + 2, y);
  });
  return canvas;
}
