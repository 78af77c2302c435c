// The two jobs behind the CLI: checkpoint + image files -> figures, and run folder -> HTML report.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as torch from '../torch';
import { loadImages } from './images';
import { loadModel } from '../semaim';
import type { ImageInputOptions } from '../data/options';
import type { OrderName } from './maps';
import { readRun } from './run-data';
import { REPORT_GENERATOR, renderReport } from './report';
import { OptionError } from '../util/options';
import { protectedOutput } from '../io/outputs';
import { visualizeModel, VisualizeResult } from './visualize';

export interface VisualizeJob {
  checkpoint: string;
  /** Verify a checkpoint folder's SHA-256 (default true). */
  verify?: boolean;
  /** Pixel limit and EXIF policy (the loader's; default: its defaults). */
  imageInput?: ImageInputOptions;
  /** Receives a line per skipped image (default: stderr). */
  onWarning?: (line: string) => void;
  images: string[];
  out: string;
  orders: OrderName[];
  lossOrder?: OrderName;
  maxImages?: number;
  seed?: number;
  batchSize?: number;
  minCell?: number;
  device?: torch.Device;
}

export async function visualizeCheckpoint(job: VisualizeJob): Promise<VisualizeResult & { checkpoint: string }> {
  const loaded = loadModel(job.checkpoint, job.device ?? 'cpu', { verify: job.verify });
  try {
    const images = await loadImages(job.images, loaded.config.imgSize, job.maxImages ?? Infinity, job.imageInput, job.onWarning);
    const r = await visualizeModel(loaded.model, images, job.out, {
      orders: job.orders,
      lossOrder: job.lossOrder,
      seed: job.seed,
      batchSize: job.batchSize,
      minCell: job.minCell,
      ema: loaded.ema,
    });
    return { ...r, checkpoint: loaded.checkpoint };
  } finally {
    loaded.dispose();
  }
}

export interface ReportJob {
  runDir: string;
  /** Default: <runDir>/report.html. */
  out?: string;
  /** Replace an existing `out` that is not an earlier report (default false). */
  overwrite?: boolean;
  title?: string;
  /** With images, the grid is generated (into vizOut, default <runDir>/viz) from `checkpoint` (default the run). */
  visualize?: Omit<VisualizeJob, 'checkpoint' | 'out'> & { checkpoint?: string; out?: string };
}

/**
 * Refuses, before any work, an --out that would replace something other than an earlier report (a
 * checkpoint's state.json, any file) unless asked to; never a folder.
 */
function checkReportOut(out: string, overwrite: boolean): void {
  const why = protectedOutput(out);
  if (why) throw new OptionError('out', `${out} cannot be written, not even with --overwrite: ${why}`);
  if (!existsSync(out)) return;
  if (statSync(out).isDirectory()) throw new OptionError('out', `${out} is a folder: give the HTML file to write`);
  const earlierReport = readFileSync(out, 'utf8').slice(0, 4096).includes(REPORT_GENERATOR);
  if (!earlierReport && !overwrite)
    throw new OptionError('out', `${out} exists and is not a semaim report: choose another --out, or pass --overwrite to replace it`);
}

export async function writeRunReport(job: ReportJob): Promise<{ out: string; grid: string | null; evals: number; metrics: number }> {
  if (job.out) checkReportOut(job.out, !!job.overwrite);
  const run = readRun(job.runDir);
  let grid: string | null = null;
  let gridNote: string;
  if (job.visualize && job.visualize.images.length > 0) {
    const v = job.visualize;
    const r = await visualizeCheckpoint({ ...v, checkpoint: v.checkpoint ?? job.runDir, out: v.out ?? join(job.runDir, 'viz') });
    grid = r.grid;
    gridNote = `Generated from ${r.checkpoint} for ${r.rows.length} image(s). Columns: ${r.columns.join(' | ')}.`;
  } else if (existsSync(join(job.runDir, 'viz', 'grid.png'))) {
    grid = join(job.runDir, 'viz', 'grid.png');
    gridNote = `From ${grid} (run \`semaim report ${job.runDir} --images DIR\` to regenerate).`;
  } else {
    gridNote = 'No visualisation: pass --images DIR (or files) to generate one from the newest checkpoint.';
  }
  const html = renderReport(run, { title: job.title, grid: grid ? readFileSync(grid) : null, gridNote });
  const out = job.out ?? join(job.runDir, 'report.html');
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, html);
  try {
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return { out, grid, evals: run.evals.length, metrics: run.metrics.length };
}
