// `semaim visualize`: one PNG row per image and a grid of all of them, plus visualize.json with
// what was drawn (columns, the first patch of every order, the layout) for tools and tests.
import { existsSync, rmSync } from 'node:fs';
import { basename, join, parse } from 'node:path';
import type { SemAIM, VisionTransformer } from '../semaim';
import type { LoadedImages } from './images';
import { computeMaps, ImageMaps, OrderName } from './maps';
import { FigureRow, imageRow, Layout, renderFigure } from './render';
import { encodePng } from './png';
import { commitStagedUnlessAborted, fileStagers, finishInterruptedCommits } from '../util/safe-write';
import { yieldThenThrowIfAborted } from '../util/errors';
import { readRegularFile } from '../util/regular-file';
import { inOutputFolder } from '../util/output-folder';
import { claimOutputs } from '../io/outputs';
import { defineOptions, jobFields } from '../util/options';

/** Options of {@link visualizeModel}. */
export interface VisualizeOptions {
  /** The order types drawn, one column each. */
  orders: readonly OrderName[];
  /** The order of the loss map and the reconstruction (default 'semantic'). */
  lossOrder?: OrderName;
  seed?: number;
  /** Images per forward pass (default 16). */
  batchSize?: number;
  /** Cells are enlarged (nearest) to at least this many pixels (default 128). */
  minCell?: number;
  /** EMA encoder, for models whose similarity source is 'ema'. */
  ema?: VisionTransformer | null;
  /** Aborting it stops the job before its next image or file (an AbortError): no file is written, the earlier ones stay. */
  signal?: AbortSignal;
  /** What drew the figures, recorded in visualize.json (a report names it beside an earlier grid). */
  checkpoint?: DrawnFrom;
}

/** The checkpoint a visualisation was drawn from: its folder, its step and its model.safetensors' SHA-256. */
export interface DrawnFrom {
  path: string;
  step: number | null;
  sha256: string;
}

/** What {@link visualizeModel} returns: the files written, the column labels, each image's maps and the grid's layout. */
export interface VisualizeResult {
  /** One PNG per image, in image order. */
  rows: string[];
  /** grid.png: every row in one picture. */
  grid: string;
  /** visualize.json: what was drawn (columns, each order's first patch, the layout). */
  summary: string;
  columns: string[];
  maps: ImageMaps[];
  layout: Layout;
  /** Input files left out because they could not be read, with why. */
  skipped: LoadedImages['skipped'];
}

function argmin(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] < a[best]) best = i;
  return best;
}

/** Whether `name` is a row file visualize writes (rowFile's `row-NNN-<image>.png`, 3 digits or more: the 1001st image is row-1000). */
export function isRowFileName(name: string): boolean {
  return /^row-\d{3,}-.*\.png$/.test(name);
}

/** Bytes of UTF-8 a row's image name may take: with `row-NNN-`, `.png` and the temporary name's `.tmp-<pid>-<n>` the file name stays within 255 bytes. */
const SAFE_NAME_BYTES = 200;

/**
 * An image's name as part of a row's file name: letters (any script), digits, '.', '_' and '-' kept,
 * every run of anything else (separators, spaces, controls, symbols) one '_'; at most 60 code points
 * and 200 bytes of UTF-8, so the row's name, and the temporary name it is written under, stay under the
 * 255-byte limit of file systems.
 */
export function safeName(name: string): string {
  const kept = parse(name)
    .name.normalize('NFC')
    .replace(/[^\p{L}\p{M}\p{N}._-]+/gu, '_');
  let out = '';
  for (const c of Array.from(kept).slice(0, 60)) {
    if (Buffer.byteLength(out + c) > SAFE_NAME_BYTES) break;
    out += c;
  }
  return out || 'image';
}

// The rest of the options are computeMaps' (checked there) or objects passed on as they are.
const VISUALIZE_MODEL_FIELDS = defineOptions({
  minCell: { type: 'int', min: 1, max: 1024, help: 'cells are enlarged to at least this many pixels (the bounds of --cell-size but 8)' },
});

/**
 * Draws a model's figures of loaded images into outDir: a PNG per image, grid.png with every row and
 * visualize.json, written together (an interrupted write is completed by the next one). Row files an earlier
 * visualisation there listed and this one did not write are removed. A bad or unknown option is an OptionError naming it.
 */
export async function visualizeModel(model: SemAIM, images: LoadedImages, outDir: string, options: VisualizeOptions): Promise<VisualizeResult> {
  // a misspelt key (mincell) was ignored and its default drawn; minCell 1e6 asked for a canvas of terabytes
  const o = jobFields(options, VISUALIZE_MODEL_FIELDS, {
    orders: true,
    lossOrder: true,
    seed: true,
    batchSize: true,
    ema: true,
    signal: 'signal',
    checkpoint: true,
  });
  if ((model.config.inChans ?? 3) !== 3) throw new Error('visualisation needs RGB models (inChans 3)');
  if (images.size !== model.config.imgSize) throw new Error(`images are ${images.size}² but the model takes ${model.config.imgSize}²`);
  const lossOrder = o.lossOrder ?? 'semantic';
  const maps = computeMaps(model, images.tensor, { orders: o.orders, lossOrder, seed: o.seed, batchSize: o.batchSize, ema: o.ema });
  await yieldThenThrowIfAborted(o.signal);
  const figRows: FigureRow[] = maps.map((m, i) => imageRow(images.names[i], images.rgb[i], m, o.orders, lossOrder));
  const render = { grid: model.grid, minCell: o.minCell };
  // (a stop while the figures are encoded or staged takes back the folders this call made, while empty)
  return inOutputFolder(outDir, async () => {
    const summary = join(outDir, 'visualize.json');
    const rowFiles = images.names.map((name, i) => rowFile(outDir, i, name));
    const { canvas, layout } = renderFigure(figRows, render);
    const grid = join(outDir, 'grid.png');
    const columns = figRows[0].cells.map((c) => c.label);
    // the list, the grid and the rows are one commit (one journal, visualize.json.commit): a kill between
    // the renames is completed by the next visualisation here, never a grid beside another's list or rows
    const listing = {
      checkpoint: o.checkpoint ?? null,
      columns,
      grid: { gridH: model.grid.gridH, gridW: model.grid.gridW, imgSize: model.config.imgSize, patchSize: model.config.patchSize },
      layout: { scale: layout.scale, cell: layout.cell, width: layout.width, height: layout.height },
      lossOrder,
      images: images.names.map((name, i) => ({
        name,
        path: images.files[i],
        file: rowFiles[i],
        firstPatch: Object.fromEntries(Object.entries(maps[i].orders).map(([k, v]) => [k, argmin(v!)])),
        meanLoss: maps[i].patchLoss.reduce((a, b) => a + b, 0) / maps[i].patchLoss.length,
      })),
      skipped: images.skipped,
    };
    const pngs: [string, Uint8Array][] = [[grid, await encodePng(canvas)]];
    for (let i = 0; i < figRows.length; i++) {
      await yieldThenThrowIfAborted(o.signal);
      pngs.push([rowFiles[i], await encodePng(renderFigure([figRows[i]], render).canvas)]);
    }
    // another visualisation into this folder (another process, another job) is refused from here to the end:
    // one that committed between this one's reading of the earlier list and its commit left rows beside it
    const release = claimOutputs([summary, ...pngs.map(([path]) => path)]);
    try {
      finishInterruptedCommits(outDir); // an earlier visualisation killed mid-commit: its list is the one in place
      // rows an earlier visualisation here listed and this one does not write would pass for this one's.
      // A visualisation writes its rows beside its list, so a listed row is its name in this folder (the path
      // as listed was relative to that writer's working directory, or absolute before the folder was moved).
      // This list names them too, as superseded: a kill before they are removed leaves them to the next
      // visualisation here.
      const written = new Set(rowFiles.map((f) => basename(f)));
      const superseded = [...new Set(rowsListedIn(summary).map((f) => basename(f)))]
        .filter((name) => !written.has(name) && isRowFileName(name))
        .map((name) => join(outDir, name))
        .filter((f) => existsSync(f));
      const list = JSON.stringify(superseded.length ? { ...listing, superseded } : listing, null, 2);
      await commitStagedUnlessAborted(fileStagers([[summary, list], ...pngs]), o.signal);
      for (const f of superseded) rmSync(f, { force: true });
    } finally {
      release();
    }
    return { rows: rowFiles, grid, summary, columns, maps, layout, skipped: images.skipped };
  });
}

/** The PNG of row `i` (image `name`). */
function rowFile(outDir: string, i: number, name: string): string {
  return join(outDir, `row-${String(i).padStart(3, '0')}-${safeName(name)}.png`);
}

/** An earlier visualize.json, or null when it is absent or not one. */
function readSummary(summary: string): { checkpoint?: DrawnFrom; images?: { file?: unknown }[]; superseded?: unknown[] } | null {
  try {
    return JSON.parse(readRegularFile(summary, 'utf8')) as { checkpoint?: DrawnFrom; images?: { file?: unknown }[]; superseded?: unknown[] };
  } catch {
    return null;
  }
}

/** The checkpoint an earlier visualize.json says its figures were drawn from (null when it does not say, or is not one). */
export function drawnFrom(summary: string): DrawnFrom | null {
  const c = readSummary(summary)?.checkpoint;
  return c && typeof c === 'object' && typeof c.path === 'string' && typeof c.sha256 === 'string' ? c : null;
}

/** The row files a visualize.json lists (none when it is absent or not one). */
function rowsListedIn(summary: string): string[] {
  const earlier = readSummary(summary);
  const images = Array.isArray(earlier?.images) ? earlier.images.map((i) => i?.file) : [];
  const superseded = Array.isArray(earlier?.superseded) ? earlier.superseded : [];
  return [...images, ...superseded].filter((f): f is string => typeof f === 'string');
}
