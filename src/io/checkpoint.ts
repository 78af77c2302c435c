// The checkpoint folder format: model weights and optimiser state as safetensors files, and a JSON
// trainer state (state.json) that records the SHA-256 of each file and of its own other content.
// Reading verifies those hashes and the fields a resume reads.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Tensor } from '../torch';
import { isJsonObject, jsonBrief } from '../util/json-file';
import { disposeAll, loadTensors } from './tensors';
import { notRegular, readRegularFile } from '../util/regular-file';
import { pathExists } from '../util/path-exists';
import { sha256File } from './file-sha256';
import { CheckpointError } from '../util/errors';
import { quotedPath } from '../util/printable';

// written once, beside the atomic writers; exported here too, where the checkpoint helpers always had it
export { fsyncPath } from '../util/safe-write';
export { sha256File };

/** The contents of a checkpoint folder: the tensors of model.safetensors and optimizer.safetensors and the trainer state of state.json. */
export interface CheckpointContents {
  /** Tensors of model.safetensors (the model's parameter names). */
  model: Map<string, Tensor>;
  /** Tensors of optimizer.safetensors (optimiser moments, EMA weights, RNG states...). */
  extra: Map<string, Tensor>;
  /** JSON-able trainer state. */
  state: Record<string, unknown>;
}

/** What {@link readCheckpoint} returns: the folder's contents, its path and step; the caller disposes the tensors. */
export interface LoadedCheckpoint extends CheckpointContents {
  dir: string;
  step: number;
  /** The metadata of model.safetensors (its format names the command that wrote the run). */
  modelMetadata: Record<string, string>;
}

const STEP_DIR = /^step-(\d+)$/;

/** The command that wrote a run, from its model file's format ('semaim.<kind>/N'), or null for other files. */
export function runKindOf(format: string | undefined): string | null {
  return /^semaim\.(\w+)\/\d+$/.exec(format ?? '')?.[1] ?? null;
}

/** The version of semaim's 'semaim.<kind>/N' file formats (a run's model file, a linear probe, an ablation plan) that this semaim writes and reads. */
export const FORMAT_VERSION = 1;

/**
 * Why a file in one of semaim's formats ('semaim.<kind>/N': a safetensors file's metadata `format`, a JSON file's)
 * cannot be read when it is of another version than this semaim's, naming `file` (a path): one a newer semaim
 * wrote is said to be so, not taken for a file of another kind (nor read as this version). null for this
 * version, and for other formats or none (left to the caller).
 */
export function otherFormatVersion(format: unknown, file: string): string | null {
  const m = /^semaim\.(\w[\w-]*)\/(\d+)$/.exec(typeof format === 'string' ? format : '');
  if (!m || Number(m[2]) === FORMAT_VERSION) return null;
  const newer = Number(m[2]) > FORMAT_VERSION;
  return (
    `${quotedPath(file)} was written by ${newer ? 'a newer' : 'another'} semaim (format '${format}'; this one reads 'semaim.${m[1]}/${FORMAT_VERSION}'): ` +
    (newer ? 'use that semaim, or a newer one than this, to read it' : 'this semaim cannot read it')
  );
}

/** Throws {@link otherFormatVersion}'s refusal of a checkpoint's or weights file's format as a CheckpointError ('ERR_CHECKPOINT'). */
export function refuseOtherFormatVersion(format: unknown, file: string): void {
  const why = otherFormatVersion(format, file);
  if (why) throw new CheckpointError(why);
}

/** The folder name of the checkpoint of `step` (an integer ≥ 0). */
export function stepDirName(step: number): string {
  if (!Number.isSafeInteger(step) || step < 0) throw new RangeError(`stepDirName: step must be an integer ≥ 0, got ${step}`);
  return `step-${String(step).padStart(8, '0')}`;
}

/** The step folders under a checkpoints root, newest first (unverified). */
export function listCheckpoints(root: string): { step: number; dir: string }[] {
  if (!pathExists(root)) return [];
  return readdirSync(root)
    .map((n) => ({ n, m: STEP_DIR.exec(n) }))
    .filter((x) => x.m)
    .map((x) => ({ step: Number(x.m![1]), dir: join(root, x.n) }))
    .sort((a, b) => b.step - a.step);
}

/** Reads state.json of a checkpoint folder. */
export function readCheckpointState(dir: string): Record<string, unknown> {
  return JSON.parse(readRegularFile(join(dir, 'state.json'), 'utf8')) as Record<string, unknown>;
}

/**
 * The SHA-256 of a checkpoint's model.safetensors: after verifyCheckpoint (`verified`), the one its state.json
 * records, which the verification has just checked (not hashed a second time); else the file hashed.
 */
export function checkpointWeightsSha256(dir: string, verified: boolean): string {
  const recorded = verified ? (readCheckpointState(dir).files as Record<string, unknown>)['model.safetensors'] : undefined;
  return typeof recorded === 'string' ? recorded : sha256File(join(dir, 'model.safetensors'));
}

/** The files a run writes into every checkpoint, all needed to resume it. */
export const CHECKPOINT_FILES = ['model.safetensors', 'optimizer.safetensors'];

/** The key of state.json that holds the SHA-256 of the rest of it (absent in older checkpoints). */
const STATE_DIGEST = 'stateSha256';

/** SHA-256 of a trainer state as JSON without its own digest (JSON.parse then JSON.stringify reproduces what was hashed). */
export function stateDigest(state: Record<string, unknown>): string {
  const { [STATE_DIGEST]: _, ...rest } = state;
  return createHash('sha256').update(JSON.stringify(rest)).digest('hex');
}

/** stateDigest, or null for a state nested too deeply for JSON.stringify (which no writer of state.json made). */
function digestOrNull(state: Record<string, unknown>): string | null {
  try {
    return stateDigest(state);
  } catch {
    return null;
  }
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Why the fields of state.json that a resume reads are unusable, or null. */
function stateProblem(s: Record<string, unknown>, training: boolean): string | null {
  const bad = (key: string, what: string) => `state.json: ${key} is ${s[key] === undefined ? 'missing' : jsonBrief(s[key])}, not ${what}`;
  for (const key of ['step', 'epoch', 'batch']) {
    if ((training || s[key] !== undefined) && !isCount(s[key])) return bad(key, 'a non-negative integer');
  }
  if (s.worldSize !== undefined && !(isCount(s.worldSize) && s.worldSize > 0)) return bad('worldSize', 'a positive integer');
  for (const key of ['best', 'bestLoss', 'bestTop1']) {
    if (s[key] !== undefined && s[key] !== null && !Number.isFinite(s[key])) return bad(key, 'a finite number or null');
  }
  // what a resume carries into its first metrics line: each process's sum of the losses not yet logged (one per
  // process that wrote it), and their count; another shape made the resume throw a TypeError, or its first line
  // NaN (no sums: the run then stopped as diverged), or a mean over a fractional count
  const w = s.lossWindow as { sums?: unknown; count?: unknown } | undefined;
  if (w !== undefined) {
    const sums = isJsonObject(w) && Array.isArray(w.sums) && w.sums.every((v) => Number.isFinite(v)) ? w.sums : null;
    if (!sums || !isCount(w.count) || (w.count > 0 && sums.length !== ((s.worldSize as number | undefined) ?? 1)))
      return bad('lossWindow', 'the unlogged losses (sums, one number per process, and their count)');
  }
  return null;
}

/**
 * Why a checkpoint folder cannot be used, or null when its state.json and every file it lists check out.
 * It checks the fields of its state.json, that `files` lists the checkpoint's
 * files (CHECKPOINT_FILES for 'training', which resumes a run; model.safetensors and any of them
 * present for 'weights', which only reads the model), the digest of state.json itself where it has
 * one, and each file it lists against its SHA-256: a listed file that is gone is reported for either
 * kind (a folder whose optimizer.safetensors was deleted no longer matches its state.json). Returns why
 * it is not usable, or null.
 */
export function verifyCheckpoint(dir: string, kind: 'training' | 'weights' = 'training'): string | null {
  const statePath = join(dir, 'state.json');
  let state: unknown;
  try {
    state = JSON.parse(readRegularFile(statePath, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'state.json is missing';
    return `state.json is unreadable (${(e as Error).message})`;
  }
  if (!isJsonObject(state)) return 'state.json is not a JSON object';
  const problem = stateProblem(state, kind === 'training');
  if (problem) return problem;
  const named = STEP_DIR.exec(basename(dir));
  if (named && Number(named[1]) !== state.step) return `state.json: step is ${String(state.step)}, not ${Number(named[1])} as the folder name says`;
  const files = state.files as Record<string, unknown> | undefined;
  if (typeof files !== 'object' || files === null) return 'state.json lists no files';
  const required = CHECKPOINT_FILES.filter((f) => kind === 'training' || f === CHECKPOINT_FILES[0] || existsSync(join(dir, f)));
  const unlisted = required.find((f) => !(f in files));
  if (unlisted) return `state.json: files does not list ${unlisted}`;
  const outside = Object.keys(files).find((f) => !/^\w[\w.-]*$/.test(f));
  if (outside !== undefined) return `state.json: files names ${jsonBrief(outside)}, not a file of the checkpoint folder`;
  if (state[STATE_DIGEST] !== undefined && state[STATE_DIGEST] !== digestOrNull(state)) {
    return `state.json does not match its recorded ${STATE_DIGEST} (it was changed after the checkpoint was written)`;
  }
  for (const [f, hash] of Object.entries(files)) {
    const p = join(dir, f);
    try {
      const what = notRegular(statSync(p));
      if (what) return `${f} is ${what}, not a regular file`;
      if (sha256File(p) !== hash) return `${f} does not match its recorded SHA-256`;
    } catch (e) {
      // gone before, or while, it was read: a run writing to the folder deletes its old checkpoints
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return `${f} is missing`;
      throw e;
    }
  }
  return null;
}

/** Loads a checkpoint folder after verifying it; one that fails verification is a CheckpointError ('ERR_CHECKPOINT') saying why. */
export function readCheckpoint(dir: string, o: { verified?: boolean } = {}): LoadedCheckpoint {
  // (verified: the caller has just run verifyCheckpoint on it; hashing 2 GB again took 1.4 s of a resume)
  const problem = o.verified ? null : verifyCheckpoint(dir);
  if (problem) throw new CheckpointError(`checkpoint ${dir} is not usable: ${problem}`);
  const state = readCheckpointState(dir);
  // NaN/Inf weights, optimiser moments or EMA copy: a run that diverged (NonFiniteTensorError)
  const model = loadTensors(join(dir, 'model.safetensors'), { finite: true });
  let extra: Map<string, Tensor>;
  try {
    extra = loadTensors(join(dir, 'optimizer.safetensors'), { finite: true }).tensors;
  } catch (e) {
    disposeAll(model.tensors);
    throw e;
  }
  return { dir, step: state.step as number, model: model.tensors, modelMetadata: model.metadata, extra, state };
}
