// What a resumed run must share with the run it continues: every option that changes what a step
// computes. Options flagged `mayChangeOnResume` in their table (where and how fast a run goes, how long
// it runs, how often it logs or saves) may differ; any other difference refuses to resume.
import { resolve } from 'node:path';
import { OptionError, OptionTable, OptionValues, kebab } from '../util/options';
import { quotedPath } from '../util/printable';

export interface RecipeChange {
  key: string;
  before: unknown;
  now: unknown;
}

/** Folders the stored run and this one resolve relative paths against (the stored one unknown in older runs). */
export interface PathBases {
  stored?: string;
  now: string;
}

/** Where a path option points (each item of a comma-separated list resolved against `base`). */
export function pathPlace(value: string, base: string): string {
  return value
    .split(',')
    .map((p) => resolve(base, p.trim()))
    .join(',');
}

/**
 * The options that differ between the stored run and this one (a missing stored key counts as its
 * `absentMeans`, else its default). Path options are compared by where they point, so a run started
 * with a relative path may resume with the absolute one, or from another folder. An option that changed
 * nothing in either run (its `noEffect`: --order-precision with --order raster) is no change: a run
 * started before such an option was refused resumes without it.
 */
export function recipeChanges(
  table: OptionTable,
  stored: Record<string, unknown>,
  now: Record<string, unknown>,
  bases: PathBases = { now: process.cwd() },
): RecipeChange[] {
  const storedRun: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(table)) storedRun[key] = key in stored ? stored[key] : 'absentMeans' in spec ? spec.absentMeans : spec.default;
  const changes: RecipeChange[] = [];
  for (const [key, spec] of Object.entries(table)) {
    if (spec.mayChangeOnResume) continue;
    if (spec.noEffect?.(storedRun as OptionValues) !== undefined && spec.noEffect(now as OptionValues) !== undefined) continue;
    const before = storedRun[key];
    const after = now[key];
    const same =
      spec.path && typeof before === 'string' && typeof after === 'string'
        ? pathPlace(before, bases.stored ?? bases.now) === pathPlace(after, bases.now)
        : JSON.stringify(before ?? null) === JSON.stringify(after ?? null);
    if (!same) changes.push({ key, before, now: after });
  }
  return changes;
}

/** How a training command starts a new run where another one is. */
export const FRESH_RUN_HINT = 'another --out-dir, or --no-resume (the old run is moved to previous/)';

/** Throws an OptionError with a table of the changed options, and which ones may change. */
export function refuseRecipeChanges(table: OptionTable, changes: RecipeChange[], where: string, freshRunHint = FRESH_RUN_HINT): void {
  if (!changes.length) return;
  const show = (v: unknown) => (v === undefined ? '(unset)' : JSON.stringify(v));
  const rows = changes.map((c) => [`--${kebab(c.key)}`, show(c.before), show(c.now)]);
  const widths = [0, 1, 2].map((i) => Math.max(['option', 'run', 'now'][i].length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => '  ' + r.map((c, i) => c.padEnd(widths[i])).join('  ');
  const free = Object.entries(table)
    .filter(([, s]) => s.mayChangeOnResume)
    .map(([k]) => `--${kebab(k)}`);
  const refusal = new OptionError(
    changes[0].key,
    `the run in ${quotedPath(where)} was started with other settings, and resuming it with these would train a different recipe:\n` +
      [line(['option', 'run', 'now']), ...rows.map(line)].join('\n') +
      `\nRun with the run's values to continue it, or start a new run: ${freshRunHint}.` +
      `\nOptions that may change when resuming: ${free.join(', ')}.`,
  );
  refusal.multiline = true; // (a table: the values are JSON, the folder quoted)
  throw refusal;
}
