// `semaim visualize` and `semaim report`: figures of orders, attention, similarity, loss and
// reconstructions for a checkpoint, and a self-contained HTML report for a run folder.
import { availableParallelism } from 'node:os';
import * as torch from '../torch';
import { checkDevice } from '../run/device';
import { OptionError, OptionSpec, Options, defineOptions, MAX_THREADS, MAX_THREADS_IS, SEED_RANGE } from '../util/options';
import { ORDER_NAMES, OrderName, checkOrderNames } from '../viz/maps';
import { checkRunDir, visualizeCheckpoint, writeRunReport } from '../viz/pipeline';
import { Command, defineCommand } from './command';
import { checkFigureOut } from '../viz/figure-out';
import { VERIFY_OPTIONS } from '../eval/options';
import { IMAGE_INPUT_OPTIONS, imageInputOptions } from '../data/options';
import { join } from 'node:path';
import { abortOnStopSignals } from '../run/signals';
import { quotedPath } from '../util/printable';
import { stderrLine } from '../util/console-line';

const ALL_ORDERS = ORDER_NAMES.join(',');

const FIGURE_OPTIONS = defineOptions({
  orders: { type: 'string', default: ALL_ORDERS, help: 'comma-separated order types to show' },
  lossOrder: { type: 'string', default: 'semantic', choices: ORDER_NAMES, help: 'order used for the loss map and the reconstruction' },
  maxImages: { type: 'int', default: 16, min: 1, help: 'use at most this many images (folders are read in name order)' },
  seed: {
    type: 'int',
    default: 0,
    ...SEED_RANGE,
    help: 'seed of the random parts of the orders (drawn per image from the seed and its pixels: a figure does not depend on the other images or the batch size; the losses in visualize.json may differ in their last float32 bits, as batched sums do)',
  },
  batchSize: { type: 'int', default: 16, min: 1, help: 'images per forward pass' },
  cellSize: { type: 'int', default: 128, min: 8, max: 1024, help: 'enlarge each cell (nearest neighbour, integer factor) to at least this many pixels' },
  device: { type: 'string', default: 'cpu', help: "'cpu', 'cuda' or 'cuda:N'" },
  ...VERIFY_OPTIONS,
  ...IMAGE_INPUT_OPTIONS,
  threads: { type: 'int', min: 1, max: MAX_THREADS, maxIs: MAX_THREADS_IS, help: 'CPU threads for libtorch (default: all cores)' },
});

const VISUALIZE_OPTIONS = defineOptions({
  checkpoint: { type: 'string', required: true, help: 'run folder (newest valid checkpoint) or a checkpoint folder' },
  images: { type: 'string', required: true, help: 'a folder of images or an image file; more files may follow as arguments' },
  out: { type: 'string', required: true, help: 'output folder: row-NNN-<name>.png per image, grid.png, visualize.json' },
  overwrite: {
    type: 'boolean',
    default: false,
    help: 'replace figure files in --out that no earlier visualisation wrote (an earlier one is replaced without it)',
  },
  ...FIGURE_OPTIONS,
});

const REPORT_OPTIONS = defineOptions({
  out: { type: 'string', help: 'HTML file to write (default: RUN_DIR/report.html)' },
  overwrite: { type: 'boolean', default: false, help: 'replace an existing --out that is not an earlier report' },
  title: { type: 'string', help: 'page title (default: the run folder)' },
  images: { type: 'string', help: 'generate the visualisation grid from these images (folder or file; more files may follow)' },
  checkpoint: { type: 'string', help: 'checkpoint for the grid (default: the newest valid one of RUN_DIR)' },
  vizOut: { type: 'string', help: 'where the generated figures go (default: RUN_DIR/viz)' },
  ...FIGURE_OPTIONS,
});

/** The report's options that only shape the figures --images draws; without --images they would be ignored. */
const REPORT_FIGURE_OPTIONS = { checkpoint: REPORT_OPTIONS.checkpoint, vizOut: REPORT_OPTIONS.vizOut, ...FIGURE_OPTIONS };

/** Refuses a figure option given to a report that draws no figures (a value other than its default: the default changes nothing). */
function refuseFigureOptionsWithoutImages(o: Options<typeof REPORT_OPTIONS>): void {
  if (o.images) return;
  for (const [key, spec] of Object.entries<OptionSpec>(REPORT_FIGURE_OPTIONS)) {
    const value = (o as Record<string, unknown>)[key];
    if (value !== undefined && value !== spec.default)
      throw new OptionError(key, 'has no effect without --images: the report draws no figures then (it shows RUN_DIR/viz/grid.png where there is one)');
  }
}

function parseOrders(v: string): OrderName[] {
  const names = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0) throw new OptionError('orders', 'needs at least one order type');
  return [...new Set(checkOrderNames(names))];
}

type FigureOptions = Options<typeof FIGURE_OPTIONS>;

function setup(o: FigureOptions): torch.Device {
  const device = checkDevice(o.device);
  torch.setNumThreads(o.threads ?? availableParallelism());
  return device;
}

function figureJob(o: FigureOptions, images: string[]) {
  return {
    images,
    orders: parseOrders(o.orders),
    lossOrder: o.lossOrder,
    maxImages: o.maxImages,
    seed: o.seed,
    batchSize: o.batchSize,
    minCell: o.cellSize,
    verify: o.verify,
    imageInput: imageInputOptions(o),
  };
}

export const vizCommands: Record<string, Command> = {
  visualize: defineCommand({
    summary: 'draw order, attention, similarity, loss and reconstruction maps for images (PNG rows and a grid)',
    usage: 'semaim visualize --checkpoint RUN_OR_CKPT --images DIR|FILE [FILE...] --out DIR [options]',
    positionals: 'FILE...',
    description:
      'For each image a PNG row: the input; per order type the order map over the image (warm = predicted first);\n' +
      'the last-block [CLS] attention (mean over heads) and the similarity map S; the per-patch loss and the\n' +
      'reconstruction (pixel targets) under --loss-order. Also grid.png with every image, and visualize.json.',
    options: VISUALIZE_OPTIONS,
    validate: (o) => {
      parseOrders(o.orders);
      checkDevice(o.device);
    },
    preflight: (o, positionals) => checkFigureOut(o.out, [o.images, ...positionals], 'out', o.overwrite),
    async run(o, positionals) {
      const job = figureJob(o, [o.images, ...positionals]);
      const device = setup(o);
      // (the maps are computed in one pass, with no count to show progress by)
      stderrLine(`visualize: drawing the maps of ${quotedPath(o.checkpoint)} (${o.orders}) for ${[o.images, ...positionals].map(quotedPath).join(', ')} …`);
      const r = await abortOnStopSignals(
        (signal) => visualizeCheckpoint({ ...job, checkpoint: o.checkpoint, out: o.out, overwrite: o.overwrite, device, signal }),
        undefined,
        'stopping at the next image or file; no figures are written',
      );
      process.stdout.write(
        `checkpoint ${quotedPath(r.checkpoint)}\nwrote ${r.rows.length} row(s), ${quotedPath(r.grid)} (${r.layout.width}×${r.layout.height}) and ${quotedPath(r.summary)}\n` +
          `columns: ${r.columns.join(' | ')}\n` +
          (r.skipped.length ? `skipped ${r.skipped.length} unreadable image(s), listed in ${quotedPath(r.summary)}\n` : ''),
      );
      return 0;
    },
  }),
  report: defineCommand({
    summary: 'write a self-contained HTML report of a run (config, curves, evaluations, visualisation grid)',
    usage: 'semaim report RUN_DIR [--out FILE] [--images DIR|FILE...] [options]',
    positionals: 'RUN_DIR [FILE...]',
    description:
      'One HTML file with no external resources: the config, loss / lr / throughput curves from metrics.jsonl,\n' +
      'evaluation tables from JSON results with top1/top5 fields, and the visualisation grid (generated with --images,\n' +
      'else RUN_DIR/viz/grid.png if present).',
    options: REPORT_OPTIONS,
    validate: (o, positionals) => {
      const [runDir, ...rest] = positionals;
      // named as the usage line names it: there is no --run-dir flag
      if (!runDir) throw new OptionError('runDir', 'expects the run folder: semaim report RUN_DIR', 'RUN_DIR');
      if (rest.length && !o.images) throw new OptionError('runDir', `one run folder expected, got also ${rest.map(quotedPath).join(' ')}`, 'RUN_DIR');
      refuseFigureOptionsWithoutImages(o);
      parseOrders(o.orders);
    },
    preflight: (o, [runDir, ...rest]) => {
      checkRunDir(runDir);
      if (o.images) checkFigureOut(o.vizOut ?? join(runDir, 'viz'), [o.images, ...rest], 'vizOut', o.overwrite);
    },
    async run(o, positionals) {
      const [runDir, ...rest] = positionals;
      const images = o.images ? [o.images, ...rest] : [];
      const device = images.length ? setup(o) : 'cpu';
      stderrLine(
        `report: reading ${quotedPath(runDir)} (config, metrics, results)${images.length ? ` and drawing the maps for ${images.map(quotedPath).join(', ')}` : ''} …`,
      );
      const r = await abortOnStopSignals(
        (signal) =>
          writeRunReport({
            runDir,
            out: o.out,
            overwrite: o.overwrite,
            title: o.title,
            visualize: images.length ? { ...figureJob(o, images), device, checkpoint: o.checkpoint, out: o.vizOut, overwrite: o.overwrite } : undefined,
            signal,
          }),
        undefined,
        'stopping at the next image or file; the report is not written',
      );
      process.stdout.write(
        `wrote ${quotedPath(r.out)} (${r.metrics} metric records, ${r.evals} evaluation rows, ${r.grid ? 'grid ' + quotedPath(r.grid) : 'no grid'})\n`,
      );
      return 0;
    },
  }),
};
