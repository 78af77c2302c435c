// An RGB8 raster (row-major, 3 bytes per pixel) with the few drawing operations the figures need:
// rectangles, nearest-neighbour image blits, per-patch colour overlays and bitmap text.
import { RGB } from './colormap';
import { ADVANCE, GLYPH_W, fontText, glyphRows, textWidth } from './font';

/** A plain RGB image: width × height × 3 bytes, row-major. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** White: a {@link Canvas}'s default background. */
export const WHITE: RGB = [255, 255, 255];
/** Black: the default colour of text drawn on a {@link Canvas}. */
export const BLACK: RGB = [0, 0, 0];
/** The grey of the figures' captions and secondary labels. */
export const GREY: RGB = [110, 110, 110];

/**
 * An RGB8 image to draw figures on: rectangles, nearest-neighbour image blits, per-patch colour overlays and
 * bitmap text. Starts filled with `background` (default white); a RangeError unless width and height are positive integers.
 */
export class Canvas implements RgbImage {
  readonly data: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
    background: RGB = WHITE,
  ) {
    if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
      throw new RangeError(`canvas size must be positive integers, got ${width}×${height}`);
    }
    this.data = new Uint8Array(width * height * 3);
    this.fillRect(0, 0, width, height, background);
  }

  /** The colour of pixel (x, y); a RangeError unless x and y are integers inside the canvas. */
  get(x: number, y: number): RGB {
    const i = this.offset('get', x, y);
    return [this.data[i], this.data[i + 1], this.data[i + 2]];
  }

  /**
   * Colours pixel (x, y); a RangeError unless x and y are integers inside the canvas (drawing that may run
   * off the canvas goes through fillRect, which clips). Channel values are clamped to 0..255 and rounded, as
   * the overlays' blends are (a float or 256 was stored modulo 256: 256 black, -1 white); NaN is a RangeError.
   */
  set(x: number, y: number, c: RGB): void {
    const i = this.offset('set', x, y);
    for (let k = 0; k < 3; k++) {
      const v = c[k];
      if (typeof v !== 'number' || Number.isNaN(v)) throw new RangeError(`Canvas.set: channel ${k} of the colour must be a number, got ${String(v)}`);
      this.data[i + k] = Math.round(Math.min(255, Math.max(0, v)));
    }
  }

  /** The byte offset of pixel (x, y); a RangeError naming `fn` unless it is inside the canvas. */
  private offset(fn: string, x: number, y: number): number {
    // x = width was row y + 1's first pixel, and a fractional x an index the byte array ignores
    if (!(Number.isInteger(x) && Number.isInteger(y) && x >= 0 && y >= 0 && x < this.width && y < this.height))
      throw new RangeError(
        `Canvas.${fn}: pixel (${x}, ${y}) is not on the ${this.width}×${this.height} canvas (integers 0..${this.width - 1}, 0..${this.height - 1})`,
      );
    return (y * this.width + x) * 3;
  }

  /** Fills a rectangle, clipped to the canvas; fractional edges are rounded to whole pixels. */
  fillRect(x: number, y: number, w: number, h: number, c: RGB): void {
    const [x0, x1] = [Math.max(0, Math.round(x)), Math.min(this.width, Math.round(x + w))];
    const [y0, y1] = [Math.max(0, Math.round(y)), Math.min(this.height, Math.round(y + h))];
    for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) this.set(xx, yy, c);
  }

  strokeRect(x: number, y: number, w: number, h: number, c: RGB, thickness = 1): void {
    this.fillRect(x, y, w, thickness, c);
    this.fillRect(x, y + h - thickness, w, thickness, c);
    this.fillRect(x, y, thickness, h, c);
    this.fillRect(x + w - thickness, y, thickness, h, c);
  }

  /** Copies src scaled by an integer factor (nearest neighbour) with its top-left at (x, y); a RangeError unless the factor is a positive integer. */
  drawImage(src: RgbImage, x: number, y: number, scale = 1): void {
    checkScale('drawImage', scale);
    for (let sy = 0; sy < src.height; sy++) {
      for (let sx = 0; sx < src.width; sx++) {
        const i = (sy * src.width + sx) * 3;
        this.fillRect(x + sx * scale, y + sy * scale, scale, scale, [src.data[i], src.data[i + 1], src.data[i + 2]]);
      }
    }
  }

  /**
   * Draws src (scaled) with a per-patch colour blended over it: values [gridH·gridW] in [0, 1]
   * through colour(), alpha = weight of the colour. The colour goes over a grey copy of the image
   * (underlay()), so the hue is the colour map's alone and can be read against its bar: over the RGB
   * image a blue disc turned a high value's red into purple, a value the bar does not have.
   */
  drawOverlay(
    src: RgbImage,
    x: number,
    y: number,
    scale: number,
    grid: { gridH: number; gridW: number },
    values: ArrayLike<number>,
    colour: (v: number) => RGB,
    alpha: number,
  ): void {
    checkScale('drawOverlay', scale);
    // a short values array coloured the missing patches as value 0 (colorize(undefined)), silently
    const N = grid.gridH * grid.gridW;
    if (values.length !== N)
      throw new RangeError(`Canvas.drawOverlay: values must be one per patch of the ${grid.gridH}×${grid.gridW} grid (${N}), got ${values.length}`);
    if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`Canvas.drawOverlay: alpha must be in [0, 1], got ${alpha}`);
    const ph = src.height / grid.gridH;
    const pw = src.width / grid.gridW;
    for (let sy = 0; sy < src.height; sy++) {
      for (let sx = 0; sx < src.width; sx++) {
        const c = colour(values[Math.floor(sy / ph) * grid.gridW + Math.floor(sx / pw)]);
        const i = (sy * src.width + sx) * 3;
        const g = (1 - alpha) * underlay(src.data[i], src.data[i + 1], src.data[i + 2]);
        const mix: RGB = [0, 1, 2].map((k) => Math.round(alpha * c[k] + g)) as unknown as RGB;
        this.fillRect(x + sx * scale, y + sy * scale, scale, scale, mix);
      }
    }
  }

  /** Draws one line of text with its top-left at (x, y); returns its width. */
  drawText(text: string, x: number, y: number, c: RGB = BLACK, scale = 1): number {
    text = fontText(text);
    for (let k = 0; k < text.length; k++) {
      const rows = glyphRows(text[k]);
      const gx = x + k * ADVANCE * scale;
      for (let r = 0; r < rows.length; r++) {
        for (let col = 0; col < GLYPH_W; col++) {
          if (rows[r] & (1 << (GLYPH_W - 1 - col))) this.fillRect(gx + col * scale, y + r * scale, scale, scale, c);
        }
      }
    }
    return textWidth(text, scale);
  }

  /** Text centred in a box of width w, at the largest scale ≤ maxScale that fits (cut with '~' if none does). */
  drawTextCentred(text: string, x: number, y: number, w: number, c: RGB = BLACK, maxScale = 2): void {
    const scale = fitScale([text], w, maxScale);
    const t = cutToWidth(text, w, scale);
    this.drawText(t, x + Math.max(0, Math.floor((w - textWidth(t, scale)) / 2)), y, c, scale);
  }
}

/**
 * The grey an overlay is blended over: the pixel's luminance (Rec. 601), squeezed into 64..191 so that
 * neither black nor white pulls a colour far from the bar (the largest misreading against the bar,
 * measured on the audit's figures: 0.98 of the scale over RGB, 0.15 over this grey).
 */
export function underlay(r: number, g: number, b: number): number {
  return 64 + (0.299 * r + 0.587 * g + 0.114 * b) / 2;
}

/** Text as drawn in width w at a scale: cut at the end with '~' until it fits. */
export function cutToWidth(text: string, w: number, scale = 1): string {
  let t = fontText(text);
  while (t.length > 1 && textWidth(t, scale) > w) t = t.slice(0, -2) + '~';
  return t;
}

/** Throws unless an image's enlargement factor is a positive integer (0 drew nothing; 1.5 stepped between pixels). */
function checkScale(fn: string, scale: number): void {
  if (!(Number.isInteger(scale) && scale > 0)) throw new RangeError(`Canvas.${fn}: scale must be a positive integer, got ${scale}`);
}

/** A region of src as a new image; a RangeError unless the region (integers, w and h >= 0) lies inside src. */
export function crop(src: RgbImage, x: number, y: number, w: number, h: number): RgbImage {
  // a region past the right edge took its pixels from the next row, past the bottom left zeros
  if (![x, y, w, h].every(Number.isInteger) || x < 0 || y < 0 || w < 0 || h < 0 || x + w > src.width || y + h > src.height)
    throw new RangeError(`crop: region ${w}×${h} at (${x}, ${y}) is not inside the ${src.width}×${src.height} image`);
  const data = new Uint8Array(w * h * 3);
  for (let yy = 0; yy < h; yy++) data.set(src.data.subarray(((y + yy) * src.width + x) * 3, ((y + yy) * src.width + x + w) * 3), yy * w * 3);
  return { width: w, height: h, data };
}

/** The largest integer scale ≤ maxScale at which every text fits in width w (at least 1). */
export function fitScale(texts: string[], w: number, maxScale = 2): number {
  let scale = maxScale;
  while (scale > 1 && texts.some((t) => textWidth(t, scale) > w)) scale--;
  return scale;
}
