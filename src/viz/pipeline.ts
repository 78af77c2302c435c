// The two jobs behind the CLI: checkpoint + image files -> figures, and run folder -> HTML report.
import { closeSync, existsSync, readFileSync, readSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as torch from '../torch';
import { loadImages } from './images';
import { loadModel } from '../semaim';
import type { ImageInputOptions } from '../data/options';
import { ORDER_NAMES, checkOrderNames, type OrderName } from './maps';
import { readRun } from './run-data';
import { REPORT_GENERATOR, UNTAGGED_REPORT_HEAD, renderReport } from './report';
import { OptionError, defineOptions, jobFields, SEED_RANGE } from '../util/options';
import { yieldThenThrowIfAborted } from '../util/errors';
import { protectedOutput } from '../io/outputs';
import { occupied } from '../util/make-folder';
import { drawnFrom, visualizeModel, VisualizeResult } from './visualize';
import { checkFigureOut } from './figure-out';
import { commitUnlessTaken, folderObstacle, stageFile } from '../util/safe-write';
import { openRegularFile } from '../util/regular-file';
import { quotedPath, shellQuote } from '../util/printable';

/** A `semaim visualize` job for {@link visualizeCheckpoint}: the checkpoint, the images, the output folder and the figure's options. */
export interface VisualizeJob {
  /** A run folder (its newest usable checkpoint) or a checkpoint folder. */
  checkpoint: string;
  /** Verify a checkpoint folder's SHA-256 (default true). */
  verify?: boolean;
  /** Pixel limit and EXIF policy (the loader's; default: its defaults). */
  imageInput?: ImageInputOptions;
  /** Receives a line per skipped image (default: stderr). */
  onWarning?: (line: string) => void;
  /** Image files and folders (a folder gives its image files, not recursively). */
  images: string[];
  /** The folder the PNGs and visualize.json are written to. */
  out: string;
  /**
   * Replace figure files in `out` that no earlier visualisation wrote (default false, as the command without
   * --overwrite: they are refused with an OptionError before the model is loaded). A folder among the images
   * or in a checkpoint is refused even so.
   */
  overwrite?: boolean;
  /** The order types drawn, one column each (at least one). */
  orders: OrderName[];
  /** The order of the loss map and the reconstruction (default 'semantic'). */
  lossOrder?: OrderName;
  /** At most this many images are drawn (default all that load). */
  maxImages?: number;
  seed?: number;
  batchSize?: number;
  /** Cells are enlarged (nearest) to at least this many pixels (default 128). */
  minCell?: number;
  /** Where the model runs (default 'cpu'). */
  device?: torch.Device;
  /** Aborting it stops the job before its next image or file (an AbortError): no file is written, the earlier ones stay. */
  signal?: AbortSignal;
}

const VISUALIZE_FIELDS = defineOptions({
  checkpoint: { type: 'string', required: true, help: 'run or checkpoint folder' },
  out: { type: 'string', required: true, help: 'output folder' },
  verify: { type: 'boolean', help: "check a checkpoint folder's files" },
  overwrite: { type: 'boolean', help: 'replace figure files no earlier visualisation wrote' },
  lossOrder: { type: 'string', choices: ORDER_NAMES, help: 'order of the loss map' },
  maxImages: { type: 'int', min: 1, help: 'at most this many images' },
  seed: { type: 'int', ...SEED_RANGE, help: 'seed of the orders' },
  batchSize: { type: 'int', min: 1, help: 'images per forward pass' },
  minCell: { type: 'int', min: 1, help: 'cell size' },
  device: { type: 'string', help: 'device' },
});

/** A library caller's job, checked as `semaim visualize` checks its flags (before the model is loaded). */
function checkVisualizeJob(job: VisualizeJob): VisualizeJob {
  const j = jobFields(job, VISUALIZE_FIELDS, { imageInput: 'object', onWarning: 'function', images: true, orders: true, signal: 'signal' });
  const known = ORDER_NAMES.join(',');
  if (!Array.isArray(j.orders) || j.orders.length === 0) throw new OptionError('orders', `needs at least one order type, a list of ${known}`);
  checkOrderNames(j.orders);
  if (!Array.isArray(j.images) || j.images.some((p) => typeof p !== 'string'))
    throw new OptionError('images', `expected a list of image files and folders, got ${JSON.stringify(j.images) ?? 'undefined'}`);
  return j;
}

/**
 * Loads a checkpoint and draws `semaim visualize`'s figures of the job's images into job.out; resolves to
 * {@link visualizeModel}'s result and the checkpoint folder used. A bad job is an OptionError, before the model is loaded.
 */
export async function visualizeCheckpoint(job: VisualizeJob): Promise<VisualizeResult & { checkpoint: string }> {
  job = checkVisualizeJob(job);
  // as `semaim visualize` checks --out: a user's grid.png was replaced, figures went into a checkpoint folder or among the images read
  checkFigureOut(job.out, job.images, 'out', !!job.overwrite, 'overwrite: true');
  const loaded = loadModel(job.checkpoint, job.device ?? 'cpu', { verify: job.verify });
  try {
    const images = await loadImages(job.images, loaded.config.imgSize, job.maxImages ?? Infinity, job.imageInput, job.onWarning, job.signal);
    const r = await visualizeModel(loaded.model, images, job.out, {
      signal: job.signal,
      orders: job.orders,
      lossOrder: job.lossOrder,
      seed: job.seed,
      batchSize: job.batchSize,
      minCell: job.minCell,
      ema: loaded.ema,
      checkpoint: { path: loaded.checkpoint, step: loaded.step, sha256: loaded.sha256 },
    });
    return { ...r, checkpoint: loaded.checkpoint };
  } finally {
    loaded.dispose();
  }
}

/** A `semaim report` job for {@link writeRunReport}: the run folder, where the HTML goes, and optionally images to draw a new grid from. */
export interface ReportJob {
  /** The folder of a pretrain, linprobe or finetune run. */
  runDir: string;
  /** Default: <runDir>/report.html. */
  out?: string;
  /** Replace an existing `out` that is not an earlier report (default false). */
  overwrite?: boolean;
  /** The page's title (default 'SemAIM run report: ' and the run folder). */
  title?: string;
  /** With images, the grid is generated from `checkpoint` (default the run) into the folder `out` (default <runDir>/viz). */
  visualize?: Omit<VisualizeJob, 'checkpoint' | 'out' | 'signal'> & { checkpoint?: string; out?: string };
  /** Aborting it stops the job before its next image or file (an AbortError): the report is not written, an earlier one stays. */
  signal?: AbortSignal;
}

const REPORT_FIELDS = defineOptions({
  runDir: { type: 'string', required: true, help: 'run folder' },
  out: { type: 'string', help: 'HTML file' },
  overwrite: { type: 'boolean', help: 'replace a file that is no report' },
  title: { type: 'string', help: "the page's title" },
});

/**
 * Refuses, before any work, an --out that would replace something other than an earlier report (a
 * checkpoint's state.json, any file) unless asked to; never a folder.
 */
function checkReportOut(out: string, overwrite: boolean): void {
  const why = protectedOutput(out);
  if (why) throw new OptionError('out', `${out} cannot be written, not even with --overwrite: ${why}`);
  if (/[\\/]$/.test(out)) throw new OptionError('out', `${out} names a folder: give the HTML file to write (e.g. ${join(out, 'report.html')})`);
  // (before the figures are drawn, not at the report's write after them)
  const blocked = folderObstacle(dirname(out)).why;
  if (blocked) throw new OptionError('out', `${quotedPath(out)} cannot be written: ${blocked}`);
  if (!existsSync(out)) return;
  if (statSync(out).isDirectory()) throw new OptionError('out', `${out} is a folder: give the HTML file to write`);
  if (!overwrite && !isEarlierReport(out))
    throw new OptionError('out', `${out} exists and is not a semaim report: choose another --out, or pass --overwrite to replace it`);
}

const NOT_PLAIN = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENOTREGULAR']);

/**
 * `read(fd)` of `path` when it is a regular file, not a link; else null. Checked on the descriptor that
 * is read: a name swapped after a check could point elsewhere (or be a FIFO, which blocks the open).
 */
function readPlainFile<T>(path: string, read: (fd: number) => T): T | null {
  let fd: number;
  try {
    fd = openRegularFile(path, { followLinks: false });
  } catch (e) {
    if (NOT_PLAIN.has((e as NodeJS.ErrnoException).code ?? '')) return null;
    throw e;
  }
  try {
    return read(fd);
  } finally {
    closeSync(fd);
  }
}

/** The first `n` bytes (or fewer) of `fd`. */
function head(fd: number, n: number): Buffer {
  const buf = Buffer.alloc(n);
  return buf.subarray(0, readSync(fd, buf, 0, n, 0));
}

/**
 * Whether `path` is a regular file that `semaim report` wrote (a later report replaces it without --overwrite):
 * its generator tag, or the head every report had before the tag.
 */
function isEarlierReport(path: string): boolean {
  return !!readPlainFile(path, (fd) => {
    const text = head(fd, 4096).toString('utf8');
    return text.includes(REPORT_GENERATOR) || text.startsWith(UNTAGGED_REPORT_HEAD);
  });
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * The bytes of `path` when it is a regular file (not a link) that starts as a PNG does: a report embeds
 * them, and a run folder from someone else must not make it embed another file (a link to a key, say).
 */
function plainPng(path: string): Buffer | null {
  return readPlainFile(path, (fd) => (head(fd, 8).equals(PNG_SIGNATURE) ? readFileSync(fd) : null));
}

const GIVE_A_RUN = 'give the folder of a pretrain, linprobe or finetune run (--out-dir)';

/** RUN_DIR names a folder: a missing one, or a file, is an option error (exit 2); writeRunReport also refuses a folder that holds nothing of a run. */
export function checkRunDir(runDir: string): void {
  const st = statSync(runDir, { throwIfNoEntry: false });
  if (!st) throw new OptionError('runDir', `${quotedPath(runDir)} does not exist: ${GIVE_A_RUN}`, 'RUN_DIR');
  if (!st.isDirectory()) throw new OptionError('runDir', `${quotedPath(runDir)} is not a folder: ${GIVE_A_RUN}`, 'RUN_DIR');
}

/**
 * Writes the HTML report of a run folder (`semaim report`), embedding a grid drawn now from job.visualize's
 * images, else the run's earlier viz/grid.png. Resolves to the file written, the grid embedded (null: none) and the
 * numbers of evaluation rows and metrics records. OptionError for a folder with nothing of a run, or an `out` it may not replace.
 */
export async function writeRunReport(job: ReportJob): Promise<{ out: string; grid: string | null; evals: number; metrics: number }> {
  // checked as `semaim report` checks its flags: an `overwrite: 'false'` replaced a file that is no report,
  // a misspelt `output` wrote <runDir>/report.html, and a missing runDir was node's TypeError
  job = jobFields(job, REPORT_FIELDS, { visualize: true, signal: 'signal' });
  const v = job.visualize as unknown;
  if (v !== undefined && (v === null || typeof v !== 'object' || !Array.isArray((v as { images?: unknown }).images)))
    throw new OptionError('visualize', `expected the figure's job, { images: [...], orders: [...] }, or leave it out, got ${JSON.stringify(v) ?? String(v)}`);
  checkRunDir(job.runDir);
  const out = job.out ?? join(job.runDir, 'report.html');
  checkReportOut(out, !!job.overwrite);
  const run = readRun(job.runDir);
  if (!['config.json', 'metrics.jsonl', 'checkpoints'].some((n) => occupied(join(job.runDir, n))) && run.evals.length === 0)
    throw new OptionError(
      'runDir',
      `${job.runDir} holds nothing of a run (no config.json, metrics.jsonl, checkpoints/ or evaluation results): ${GIVE_A_RUN}`,
      'RUN_DIR',
    );
  let grid: string | null = null;
  let gridBytes: Buffer | null = null;
  let gridNote: string;
  const earlierGrid = join(job.runDir, 'viz', 'grid.png');
  if (job.visualize && job.visualize.images.length > 0) {
    const v = job.visualize;
    const r = await visualizeCheckpoint({ ...v, checkpoint: v.checkpoint ?? job.runDir, out: v.out ?? join(job.runDir, 'viz'), signal: job.signal });
    grid = r.grid;
    gridNote = `Generated from ${r.checkpoint} for ${r.rows.length} image(s). Columns: ${r.columns.join(' | ')}.`;
  } else if ((gridBytes = plainPng(earlierGrid))) {
    grid = earlierGrid;
    const from = drawnFrom(join(job.runDir, 'viz', 'visualize.json'));
    const by = from ? `, drawn from ${from.path}${from.step === null ? '' : ` (step ${from.step})`}` : ', from a checkpoint it does not record';
    gridNote = `From ${grid}${by} (run \`semaim report ${shellQuote(job.runDir)} --images DIR\` to regenerate).`;
  } else if (occupied(earlierGrid)) {
    gridNote = `Not embedded: ${earlierGrid} is not a plain PNG file (a link, or another kind of file); pass --images DIR to generate one.`;
  } else {
    gridNote = 'No visualisation: pass --images DIR (or files) to generate one from the newest checkpoint.';
  }
  const html = renderReport(run, { title: job.title, grid: gridBytes ?? (grid ? readFileSync(grid) : null), gridNote });
  await yieldThenThrowIfAborted(job.signal);
  // checked again at the rename: the page or figures took a while, and a file someone put at `out` meanwhile is kept
  if (!commitUnlessTaken(stageFile(out, html), (path) => !!job.overwrite || isEarlierReport(path)))
    throw new OptionError(
      'out',
      `${out} was created while the report was written and is not a semaim report: it is kept; choose another --out, or pass --overwrite to replace it`,
    );
  return { out, grid, evals: run.evals.length, metrics: run.metricsTotals.records };
}
