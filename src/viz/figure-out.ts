// Where a visualisation may write its figures: refused, before the model runs, where `semaim visualize`
// and `viz.visualizeCheckpoint` would lose or corrupt something (shared by the command and the library job).
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { OptionError } from '../util/options';
import { checkOutputFolder } from '../io/outputs';
import { folderObstacle } from '../util/safe-write';
import { readJsonObject } from '../util/json-file';
import { quotedPath } from '../util/printable';
import { isRowFileName } from './visualize';

/**
 * Refuses, before the model runs, images that are not there, and a figure folder that is a file (or has one, or
 * a dangling link, on the way), lies among the images, or in a checkpoint, or holds files of the names it writes
 * that no earlier visualisation wrote (a grid.png of the user's was replaced silently) unless `overwrite`.
 * `option` names the folder's option, `overwriteAs` how the caller asks to replace (`--overwrite`, `overwrite: true`).
 */
export function checkFigureOut(out: string, images: string[], option: string, overwrite: boolean, overwriteAs = '--overwrite'): void {
  const missing = images.find((p) => !existsSync(p));
  if (missing !== undefined) throw new OptionError('images', `${quotedPath(missing)} does not exist`);
  const { why } = folderObstacle(out);
  if (why) throw new OptionError(option, `${quotedPath(out)} cannot be the output folder: ${why}`);
  checkOutputFolder(out, [join(out, 'grid.png'), join(out, 'visualize.json')], { inputs: images, option });
  if (overwrite || !existsSync(out) || earlierVisualization(join(out, 'visualize.json'))) return;
  const ours = readdirSync(out).filter((n) => n === 'grid.png' || n === 'visualize.json' || isRowFileName(n));
  if (ours.length)
    throw new OptionError(
      option,
      `${quotedPath(out)} holds ${ours.slice(0, 3).map(quotedPath).join(', ')}${ours.length > 3 ? ', …' : ''}, which no earlier semaim visualisation wrote (no visualize.json of one): ` +
        `add ${overwriteAs} to replace them, or choose another folder`,
    );
}

/** Whether `summary` is the visualize.json of an earlier visualisation (its columns and images). */
function earlierVisualization(summary: string): boolean {
  try {
    const v = readJsonObject(summary);
    return Array.isArray(v.columns) && Array.isArray(v.images);
  } catch {
    return false;
  }
}
