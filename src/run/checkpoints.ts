// A run's checkpoints: a folder per step (src/io/checkpoint.ts), written into a temporary folder and
// renamed into place so that a checkpoint is either complete or absent; the last K are kept, plus
// 'best'; a corrupted one is detected and skipped.
import { cpSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { saveTensors } from '../io';
import { CheckpointContents, LoadedCheckpoint, fsyncPath, listCheckpoints, readCheckpoint, sha256File, stepDirName, verifyCheckpoint } from '../io/checkpoint';

export interface CheckpointFiles extends CheckpointContents {
  /** Stored as safetensors metadata of model.safetensors (e.g. the model config). */
  modelMetadata?: Record<string, string>;
}

export class CheckpointManager {
  readonly root: string;
  constructor(
    outDir: string,
    readonly keepLast = 3,
    readonly warn: (msg: string) => void = (m) => console.warn(m),
  ) {
    this.root = join(outDir, 'checkpoints');
  }

  /** Step folders present on disk, newest first. */
  list(): { step: number; dir: string }[] {
    return listCheckpoints(this.root);
  }

  /** Writes checkpoint `step` atomically, then prunes old ones (keeping the last K and 'best'). */
  save(step: number, files: CheckpointFiles, opts: { best?: boolean } = {}): string {
    mkdirSync(this.root, { recursive: true });
    const name = stepDirName(step);
    const final = join(this.root, name);
    const tmp = join(this.root, `.tmp-${name}-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    saveTensors(join(tmp, 'model.safetensors'), files.model, files.modelMetadata ?? {});
    saveTensors(join(tmp, 'optimizer.safetensors'), files.extra);
    const state = {
      ...files.state,
      step,
      files: {
        'model.safetensors': sha256File(join(tmp, 'model.safetensors')),
        'optimizer.safetensors': sha256File(join(tmp, 'optimizer.safetensors')),
      },
    };
    const statePath = join(tmp, 'state.json');
    writeFileSync(statePath, JSON.stringify(state, null, 1));
    fsyncPath(statePath);
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
    fsyncPath(this.root);
    if (opts.best) this.markBest(final);
    this.prune();
    return final;
  }

  private markBest(dir: string): void {
    const best = join(this.root, 'best');
    const tmp = join(this.root, `.tmp-best-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    cpSync(dir, tmp, { recursive: true });
    rmSync(best, { recursive: true, force: true });
    renameSync(tmp, best);
  }

  private prune(): void {
    for (const { dir } of this.list().slice(this.keepLast)) rmSync(dir, { recursive: true, force: true });
  }

  verify(dir: string): string | null {
    return verifyCheckpoint(dir);
  }

  load(dir: string): LoadedCheckpoint {
    return readCheckpoint(dir);
  }

  /** The newest checkpoint that verifies; corrupted newer ones are reported and skipped. */
  loadLatest(): LoadedCheckpoint | null {
    for (const { dir } of this.list()) {
      const problem = this.verify(dir);
      if (problem) {
        this.warn(`warning: skipping checkpoint ${dir}: ${problem}; falling back to an earlier one`);
        continue;
      }
      return this.load(dir);
    }
    return null;
  }
}
