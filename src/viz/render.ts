// Lays out the figure: a header of column labels, one row per image (input, order maps,
// attention, similarity, loss, reconstruction), a caption under each row and a colour bar.
import { Canvas, GREY, RgbImage, BLACK, cutToWidth, fitScale } from './canvas';
import { colorize, minMax, orderEarliness } from './colormap';
import { fontText, textHeight, textWidth } from './font';
import type { ImageMaps, OrderName } from './maps';

/** One cell of a figure: its column label and an image, optionally with a per-patch map blended over it. */
export interface Cell {
  label: string;
  /** The label where `label` does not fit the cell: the part that tells the column apart ('raster' for 'order raster'). */
  short?: string;
  /** A plain image, or an image with a per-patch map in [0, 1] blended over it. */
  image: RgbImage;
  /** Per-patch values in [0, 1], row-major over the patch grid, drawn in the turbo colour map. */
  overlay?: ArrayLike<number>;
}

/** One row of a figure (one image): its cells, left to right, and the caption drawn under them. */
export interface FigureRow {
  caption: string;
  cells: Cell[];
}

/** Where {@link figureLayout} puts a figure's parts, in canvas pixels: cell size and scale, margins, header and row heights, canvas size. */
export interface Layout {
  /** Nearest-neighbour upscale factor of every cell (small images are enlarged to ≥ minCell px). */
  scale: number;
  /** Side of a cell in pixels (image size × scale). */
  cell: number;
  margin: number;
  gap: number;
  headerH: number;
  rowH: number;
  width: number;
  height: number;
  /** The x of column col's cells (their left edge). */
  cellX(col: number): number;
  /** The y of row row's cells (their top edge). */
  cellY(row: number): number;
}

/** Options of {@link renderFigure}. */
export interface RenderOptions {
  /** Cells are upscaled (integer factor, nearest) to at least this many pixels (default 128). */
  minCell?: number;
  /** Weight of the colour in overlays (default 0.6). */
  alpha?: number;
  /** The model's patch grid, which the overlays' values follow. */
  grid: { gridH: number; gridW: number };
}

const LABEL_SCALE = 2;
const BAR_H = 14;

/**
 * The layout of a figure of `rows` × `cols` cells with a header, captions and a colour bar: each imgSize image
 * is enlarged by the smallest integer factor that makes a cell at least minCell pixels (default 128).
 */
export function figureLayout(rows: number, cols: number, imgSize: number, minCell = 128): Layout {
  const scale = Math.max(1, Math.ceil(minCell / imgSize));
  const cell = imgSize * scale;
  const margin = 10;
  const gap = 6;
  const headerH = textHeight(LABEL_SCALE) + 12;
  const rowH = cell + textHeight(1) + 6 + gap;
  const footerH = BAR_H + 2 * textHeight(1) + 24;
  const width = 2 * margin + cols * cell + (cols - 1) * gap;
  const height = margin + headerH + rows * rowH + footerH;
  return {
    scale,
    cell,
    margin,
    gap,
    headerH,
    rowH,
    width,
    height,
    cellX: (col) => margin + col * (cell + gap),
    cellY: (row) => margin + headerH + row * rowH,
  };
}

function drawColourBar(c: Canvas, L: Layout, y: number): void {
  const w = Math.min(L.width - 2 * L.margin, 480);
  const x = Math.floor((L.width - w) / 2);
  for (let i = 0; i < w; i++) c.fillRect(x + i, y, 1, BAR_H, colorize(i / (w - 1)));
  c.strokeRect(x - 1, y - 1, w + 2, BAR_H + 2, BLACK);
  const ty = y + BAR_H + 6;
  c.drawText('low', x, ty, BLACK);
  c.drawText('last', x, ty + textHeight(1) + 3, GREY);
  const hi = 'high';
  const first = 'first';
  c.drawText(hi, x + w - hi.length * 6 + 1, ty, BLACK);
  c.drawText(first, x + w - first.length * 6 + 1, ty + textHeight(1) + 3, GREY);
  c.drawTextCentred('maps: min-max per image', x, ty, w, BLACK, 1);
  c.drawTextCentred('orders: predicted first = warm', x, ty + textHeight(1) + 3, w, GREY, 1);
}

/** A column's header as drawn in width w: its label, or where that does not fit its short form (either cut with '~' if still too long). */
export function columnLabel(cell: Cell, w: number, scale: number): string {
  return cutToWidth(cell.short !== undefined && textWidth(cell.label, scale) > w ? cell.short : cell.label, w, scale);
}

/** Renders rows that share the same columns into one picture. */
export function renderFigure(rows: FigureRow[], o: RenderOptions): { canvas: Canvas; layout: Layout } {
  if (rows.length === 0) throw new Error('nothing to render: no rows');
  const cols = rows[0].cells.length;
  const imgSize = rows[0].cells[0].image.width;
  const L = figureLayout(rows.length, cols, imgSize, o.minCell ?? 128);
  const c = new Canvas(L.width, L.height);
  const labelScale = fitScale(
    rows[0].cells.map((cell) => cell.label),
    L.cell,
    LABEL_SCALE,
  );
  const labelY = L.margin + L.headerH - 8 - textHeight(labelScale);
  rows[0].cells.forEach((cell, j) => c.drawTextCentred(columnLabel(cell, L.cell, labelScale), L.cellX(j), labelY, L.cell, BLACK, labelScale));
  rows.forEach((row, i) => {
    if (row.cells.length !== cols) throw new Error(`row ${i} has ${row.cells.length} cells, expected ${cols}`);
    row.cells.forEach((cell, j) => {
      if (cell.image.width !== imgSize || cell.image.height !== imgSize) throw new Error(`cell '${cell.label}' is not ${imgSize}×${imgSize}`);
      if (cell.overlay) c.drawOverlay(cell.image, L.cellX(j), L.cellY(i), L.scale, o.grid, cell.overlay, (v) => colorize(v), o.alpha ?? 0.6);
      else c.drawImage(cell.image, L.cellX(j), L.cellY(i), L.scale);
    });
    c.drawText(fontText(row.caption).slice(0, Math.floor((L.width - 2 * L.margin) / 6)), L.cellX(0), L.cellY(i) + L.cell + 4, GREY, 1);
  });
  drawColourBar(c, L, L.margin + L.headerH + rows.length * L.rowH + 8);
  return { canvas: c, layout: L };
}

/** The name each order type has in a figure's column headers ('order raster', or 'raster' where that does not fit). */
export const ORDER_LABEL: Record<OrderName, string> = {
  raster: 'raster',
  snake: 'snake',
  stochastic: 'stochastic',
  similarity: 'similarity',
  semantic: 'semantic',
  multicenter: 'multicenter',
};

/** The cells of one image: input, one order map per order type, attention, S, loss, reconstruction. */
export function imageRow(caption: string, image: RgbImage, maps: ImageMaps, orders: readonly OrderName[], lossOrder: OrderName): FigureRow {
  const cells: Cell[] = [{ label: 'input', image }];
  for (const name of orders) {
    const p = maps.orders[name];
    if (p) cells.push({ label: `order ${ORDER_LABEL[name]}`, short: ORDER_LABEL[name], image, overlay: orderEarliness(p) });
  }
  cells.push({ label: '[CLS] attention', short: 'attention', image, overlay: minMax(maps.attention) });
  cells.push({ label: 'similarity S', short: 'sim S', image, overlay: minMax(maps.similarity) });
  cells.push({ label: `loss (${lossOrder})`, short: 'loss', image, overlay: minMax(maps.patchLoss) });
  if (maps.recon) cells.push({ label: 'reconstruction', short: 'recon', image: maps.recon });
  return { caption, cells };
}
