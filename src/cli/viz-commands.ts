// `semaim visualize` and `semaim report`: figures of orders, attention, similarity, loss and
// reconstructions for a checkpoint, and a self-contained HTML report for a run folder.
import { availableParallelism } from 'node:os';
import * as torch from '../torch';
import { checkDevice } from '../util/device';
import { OptionError, OptionTable, OptionValues } from '../util/options';
import { ORDER_NAMES, OrderName } from '../viz/maps';
import { visualizeCheckpoint, writeRunReport } from '../viz/pipeline';
import { Command, parseCommand } from './command';
import { IMAGE_INPUT_OPTIONS, imageInputOptions } from '../data/options';

const ALL_ORDERS = ORDER_NAMES.join(',');

const FIGURE_OPTIONS: OptionTable = {
  orders: { type: 'string', default: ALL_ORDERS, help: 'comma-separated order types to show' },
  lossOrder: { type: 'string', default: 'semantic', choices: ORDER_NAMES, help: 'order used for the loss map and the reconstruction' },
  maxImages: { type: 'int', default: 16, min: 1, help: 'use at most this many images (folders are read in name order)' },
  seed: { type: 'int', default: 0, help: 'seed of the random parts of the orders' },
  batchSize: { type: 'int', default: 16, min: 1, help: 'images per forward pass' },
  cellSize: { type: 'int', default: 128, min: 8, max: 1024, help: 'enlarge each cell (nearest neighbour, integer factor) to at least this many pixels' },
  device: { type: 'string', default: 'cpu', help: "'cpu', 'cuda' or 'cuda:N'" },
  threads: { type: 'int', min: 1, help: 'CPU threads for libtorch (default: all cores)' },
  ...IMAGE_INPUT_OPTIONS,
};

const VISUALIZE_OPTIONS: OptionTable = {
  checkpoint: { type: 'string', required: true, help: 'run folder (newest valid checkpoint) or a checkpoint folder' },
  images: { type: 'string', required: true, help: 'a folder of images or an image file; more files may follow as arguments' },
  out: { type: 'string', required: true, help: 'output folder: row-NNN-<name>.png per image, grid.png, visualize.json' },
  ...FIGURE_OPTIONS,
};

const REPORT_OPTIONS: OptionTable = {
  out: { type: 'string', help: 'HTML file to write (default: RUN_DIR/report.html)' },
  title: { type: 'string', help: 'page title (default: the run folder)' },
  images: { type: 'string', help: 'generate the visualisation grid from these images (folder or file; more files may follow)' },
  checkpoint: { type: 'string', help: 'checkpoint for the grid (default: the newest valid one of RUN_DIR)' },
  vizOut: { type: 'string', help: 'where the generated figures go (default: RUN_DIR/viz)' },
  ...FIGURE_OPTIONS,
};

function parseOrders(v: unknown): OrderName[] {
  const names = String(v).split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new OptionError('orders', 'needs at least one order type');
  for (const n of names) {
    if (!(ORDER_NAMES as readonly string[]).includes(n)) throw new OptionError('orders', `unknown order type '${n}' (known: ${ALL_ORDERS})`);
  }
  return [...new Set(names)] as OrderName[];
}

function setup(o: OptionValues): torch.Device {
  const device = String(o.device);
  checkDevice(device);
  torch.setNumThreads((o.threads as number | undefined) ?? availableParallelism());
  return device as torch.Device;
}

function figureJob(o: OptionValues, images: string[]) {
  return {
    images, orders: parseOrders(o.orders), lossOrder: o.lossOrder as OrderName, maxImages: o.maxImages as number,
    seed: o.seed as number, batchSize: o.batchSize as number, minCell: o.cellSize as number, imageInput: imageInputOptions(o),
  };
}

export const vizCommands: Record<string, Command> = {
  visualize: {
    summary: 'draw order, attention, similarity, loss and reconstruction maps for images (PNG rows and a grid)',
    options: VISUALIZE_OPTIONS,
    async run(argv) {
      const p = parseCommand(argv, 'semaim visualize --checkpoint RUN_OR_CKPT --images DIR|FILE [FILE...] --out DIR [options]',
        'For each image a PNG row: the input; per order type the order map over the image (warm = predicted first);\n' +
        'the last-block [CLS] attention (mean over heads) and the similarity map S; the per-patch loss and the\n' +
        'reconstruction (pixel targets) under --loss-order. Also grid.png with every image, and visualize.json.',
        VISUALIZE_OPTIONS);
      if (!p) return 0;
      const job = figureJob(p.o, [String(p.o.images), ...p.positionals]);
      const device = setup(p.o);
      const r = await visualizeCheckpoint({ ...job, checkpoint: String(p.o.checkpoint), out: String(p.o.out), device });
      process.stdout.write(`checkpoint ${r.checkpoint}\nwrote ${r.rows.length} row(s), ${r.grid} (${r.layout.width}×${r.layout.height}) and ${r.summary}\n` +
        `columns: ${r.columns.join(' | ')}\n` +
        (r.skipped.length ? `skipped ${r.skipped.length} unreadable image(s), listed in ${r.summary}\n` : ''));
      return 0;
    },
  },
  report: {
    summary: 'write a self-contained HTML report of a run (config, curves, evaluations, visualisation grid)',
    options: REPORT_OPTIONS,
    async run(argv) {
      const p = parseCommand(argv, 'semaim report RUN_DIR [--out FILE] [--images DIR|FILE...] [options]',
        'One HTML file with no external resources: the config, loss / lr / throughput curves from metrics.jsonl,\n' +
        'evaluation tables from JSON results with top1/top5 fields, and the visualisation grid (generated with --images,\n' +
        'else RUN_DIR/viz/grid.png if present).',
        REPORT_OPTIONS);
      if (!p) return 0;
      const [runDir, ...rest] = p.positionals;
      if (!runDir) throw new OptionError('runDir', 'expects the run folder: semaim report RUN_DIR');
      if (rest.length && !p.o.images) throw new OptionError('runDir', `one run folder expected, got also ${rest.join(' ')}`);
      const images = p.o.images ? [String(p.o.images), ...rest] : [];
      let device: torch.Device = 'cpu';
      if (images.length) device = setup(p.o);
      const r = await writeRunReport({
        runDir, out: p.o.out as string | undefined, title: p.o.title as string | undefined,
        visualize: images.length ? { ...figureJob(p.o, images), device, checkpoint: p.o.checkpoint as string | undefined, out: p.o.vizOut as string | undefined } : undefined,
      });
      process.stdout.write(`wrote ${r.out} (${r.metrics} metric records, ${r.evals} evaluation rows, ${r.grid ? 'grid ' + r.grid : 'no grid'})\n`);
      return 0;
    },
  },
};
