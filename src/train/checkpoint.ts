// Checkpoints: a folder per step with model weights and optimiser state as safetensors and a JSON
// trainer state that records their SHA-256. Written into a temporary folder and renamed into place,
// so a checkpoint is either complete or absent; a corrupted one is detected and skipped.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, openSync, fsyncSync, closeSync, cpSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor } from '../torch';
import { loadTensors, saveTensors } from '../io';

export interface CheckpointFiles {
  /** Tensors written to model.safetensors (parameter names of docs/METHOD.md §2.7). */
  model: Map<string, Tensor>;
  /** Tensors written to optimizer.safetensors (optimiser moments, EMA weights, RNG states...). */
  extra: Map<string, Tensor>;
  /** JSON-able trainer state. */
  state: Record<string, unknown>;
  /** Stored as safetensors metadata of model.safetensors (e.g. the model config). */
  modelMetadata?: Record<string, string>;
}

export interface LoadedCheckpoint {
  dir: string;
  step: number;
  model: Map<string, Tensor>;
  extra: Map<string, Tensor>;
  state: Record<string, unknown>;
}

const STEP_DIR = /^step-(\d+)$/;

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function fsyncDir(path: string): void {
  try {
    const fd = openSync(path, 'r');
    try { fsyncSync(fd); } finally { closeSync(fd); }
  } catch { /* not supported everywhere */ }
}

export class CheckpointManager {
  readonly root: string;
  constructor(outDir: string, readonly keepLast = 3, readonly warn: (msg: string) => void = (m) => console.warn(m)) {
    this.root = join(outDir, 'checkpoints');
  }

  /** Step folders present on disk, newest first. */
  list(): { step: number; dir: string }[] {
    if (!existsSync(this.root)) return [];
    return readdirSync(this.root)
      .map((n) => ({ n, m: STEP_DIR.exec(n) }))
      .filter((x) => x.m)
      .map((x) => ({ step: Number(x.m![1]), dir: join(this.root, x.n) }))
      .sort((a, b) => b.step - a.step);
  }

  /** Writes checkpoint `step` atomically, then prunes old ones (keeping the last K and 'best'). */
  save(step: number, files: CheckpointFiles, opts: { best?: boolean } = {}): string {
    mkdirSync(this.root, { recursive: true });
    const name = `step-${String(step).padStart(8, '0')}`;
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
        'model.safetensors': sha256(join(tmp, 'model.safetensors')),
        'optimizer.safetensors': sha256(join(tmp, 'optimizer.safetensors')),
      },
    };
    const statePath = join(tmp, 'state.json');
    writeFileSync(statePath, JSON.stringify(state, null, 1));
    const fd = openSync(statePath, 'r');
    try { fsyncSync(fd); } finally { closeSync(fd); }
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
    fsyncDir(this.root);
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

  /** Verifies a checkpoint folder; returns a reason when it is not usable. */
  verify(dir: string): string | null {
    const statePath = join(dir, 'state.json');
    if (!existsSync(statePath)) return 'state.json is missing';
    let state: { files?: Record<string, string> };
    try {
      state = JSON.parse(readFileSync(statePath, 'utf8'));
    } catch (e) {
      return `state.json is unreadable (${(e as Error).message})`;
    }
    for (const [f, hash] of Object.entries(state.files ?? {})) {
      const p = join(dir, f);
      if (!existsSync(p)) return `${f} is missing`;
      if (sha256(p) !== hash) return `${f} does not match its recorded SHA-256`;
    }
    if (!state.files) return 'state.json lists no files';
    return null;
  }

  load(dir: string): LoadedCheckpoint {
    const problem = this.verify(dir);
    if (problem) throw new Error(`checkpoint ${dir} is not usable: ${problem}`);
    const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as Record<string, unknown>;
    return {
      dir,
      step: state.step as number,
      model: loadTensors(join(dir, 'model.safetensors')).tensors,
      extra: loadTensors(join(dir, 'optimizer.safetensors')).tensors,
      state,
    };
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
