// What a pre-training would find changed on resuming the run in its --out-dir: for the commands that run
// pre-training with options of their own (demo, object-start), to refuse in their own terms first.
import { join } from 'node:path';
import { listCheckpoints } from '../io/checkpoint';
import { readJsonWith } from '../util/json-file';
import { recipeChanges, type RecipeChange } from '../run/recipe';
import { PRETRAIN_OPTIONS, type PretrainOptions } from './pretrain-options';

/**
 * The run's stored options (its newest checkpoint's, which pretrain resumes from) and how `options` differ from
 * them; null where there is no checkpoint (pretrain starts afresh) or its state cannot be read (pretrain says
 * what is wrong with it, or passes over it).
 */
export function pretrainResumeChanges(options: PretrainOptions): { stored: Record<string, unknown>; changes: RecipeChange[] } | null {
  const newest = listCheckpoints(join(options.outDir, 'checkpoints'))[0];
  if (!newest) return null;
  let stored: Record<string, unknown>;
  let cwd: unknown;
  try {
    ({ options: stored, cwd } = readJsonWith(join(newest.dir, 'state.json'), ['options']) as { options: Record<string, unknown>; cwd?: unknown });
  } catch {
    return null;
  }
  const bases = { stored: typeof cwd === 'string' ? cwd : undefined, now: process.cwd() };
  return { stored, changes: recipeChanges(PRETRAIN_OPTIONS, stored, options as unknown as Record<string, unknown>, bases) };
}
