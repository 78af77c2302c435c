// The checkpoint folder format: model weights and optimiser state as safetensors files, and a JSON
// trainer state (state.json) that records the SHA-256 of each file. Reading verifies those hashes.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor } from '../torch';
import { loadTensors } from './tensors';

export interface CheckpointContents {
  /** Tensors of model.safetensors (the model's parameter names). */
  model: Map<string, Tensor>;
  /** Tensors of optimizer.safetensors (optimiser moments, EMA weights, RNG states...). */
  extra: Map<string, Tensor>;
  /** JSON-able trainer state. */
  state: Record<string, unknown>;
}

export interface LoadedCheckpoint extends CheckpointContents {
  dir: string;
  step: number;
}

const STEP_DIR = /^step-(\d+)$/;

/** The folder name of the checkpoint of `step`. */
export function stepDirName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

/** SHA-256 of a file, read in 4 MiB pieces. */
export function sha256File(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** Flushes a file or folder entry to disk (a no-op where the platform does not support it for folders). */
export function fsyncPath(path: string): void {
  try {
    const fd = openSync(path, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* not supported everywhere */
  }
}

/** The step folders under a checkpoints root, newest first (unverified). */
export function listCheckpoints(root: string): { step: number; dir: string }[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((n) => ({ n, m: STEP_DIR.exec(n) }))
    .filter((x) => x.m)
    .map((x) => ({ step: Number(x.m![1]), dir: join(root, x.n) }))
    .sort((a, b) => b.step - a.step);
}

/** Reads state.json of a checkpoint folder. */
export function readCheckpointState(dir: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as Record<string, unknown>;
}

/** Verifies a checkpoint folder against the hashes in its state.json; returns why it is not usable, or null. */
export function verifyCheckpoint(dir: string): string | null {
  const statePath = join(dir, 'state.json');
  if (!existsSync(statePath)) return 'state.json is missing';
  let state: { files?: Record<string, string> };
  try {
    state = JSON.parse(readFileSync(statePath, 'utf8'));
  } catch (e) {
    return `state.json is unreadable (${(e as Error).message})`;
  }
  if (!state.files) return 'state.json lists no files';
  for (const [f, hash] of Object.entries(state.files)) {
    const p = join(dir, f);
    if (!existsSync(p)) return `${f} is missing`;
    if (sha256File(p) !== hash) return `${f} does not match its recorded SHA-256`;
  }
  return null;
}

/** Loads a checkpoint folder after verifying it. */
export function readCheckpoint(dir: string): LoadedCheckpoint {
  const problem = verifyCheckpoint(dir);
  if (problem) throw new Error(`checkpoint ${dir} is not usable: ${problem}`);
  const state = readCheckpointState(dir);
  return {
    dir,
    step: state.step as number,
    model: loadTensors(join(dir, 'model.safetensors')).tensors,
    extra: loadTensors(join(dir, 'optimizer.safetensors')).tensors,
    state,
  };
}
