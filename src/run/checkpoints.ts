// A run's checkpoints: a folder per step (src/io/checkpoint.ts), written into a temporary folder and
// renamed into place so that a checkpoint is either complete or absent; the last K of this run are
// kept, plus 'best'. Rules that keep work from being lost:
// - a checkpoint is deleted only when K newer ones of the same run are known good (written by this
//   process, or verified against their SHA-256 when the run resumed);
// - a corrupted checkpoint, or one holding NaN/Inf values, is moved to checkpoints/corrupt/, never used
//   and never counted;
// - a run that starts afresh in a folder holding another run's checkpoints moves them (and that run's
//   metrics) to previous/<run>/ first, so that one folder holds one run;
// - temporary folders of processes that died while saving (or deleting) a checkpoint are removed when a
//   run starts; a checkpoint is deleted by moving it out of its name first (a reader sees it whole or gone).
import { constants, cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { NonFiniteTensorError, saveTensors } from '../io';
import { namesOfDeadProcesses } from '../util/process-alive';
import { fsyncPath, writeError } from '../util/safe-write';
import {
  CheckpointContents,
  LoadedCheckpoint,
  listCheckpoints,
  readCheckpoint,
  readCheckpointState,
  stateDigest,
  stepDirName,
  verifyCheckpoint,
} from '../io/checkpoint';
import { makeFolder } from '../util/make-folder';
import { readJsonObject } from '../util/json-file';
import { stderrLine } from '../util/console-line';
import { printable, quotedPath } from '../util/printable';

export interface CheckpointFiles extends CheckpointContents {
  /** Stored as safetensors metadata of model.safetensors (e.g. the model config). */
  modelMetadata?: Record<string, string>;
}

/** A checkpoint being written (.tmp-) or deleted (.removed-) by process <pid>. */
const TEMP_DIR = /^\.(?:tmp-(?:step-\d+|best)|removed-step-\d+)-(\d+)$/;
/** The 'best' a process moved aside while replacing it. */
const OLD_BEST = /^\.old-best-(\d+)$/;

/** How a failed checkpoint write says to make room, for a command with --keep-last. */
export const CHECKPOINT_SPACE_HINT = 'use --keep-last 1 / another --out-dir';

/** Runs a file write, naming the file in the error (ENOSPC alone does not say which file) and, after 'free space, or ', `hint`. */
function writing<T>(path: string, fn: () => T, hint = CHECKPOINT_SPACE_HINT): T {
  try {
    return fn();
  } catch (e) {
    throw writeError(path, e, `free space, or ${hint}`);
  }
}

export class CheckpointManager {
  readonly root: string;
  /** This run's id, recorded in every checkpoint it writes. */
  runId: string | null = null;
  /** Checkpoints known to be good, with the run that wrote them. */
  private readonly known = new Map<string, string | null>();

  constructor(
    readonly outDir: string,
    readonly keepLast = 3,
    readonly warn: (msg: string) => void = stderrLine,
    /** How a failed write says to make room besides freeing space (default: CHECKPOINT_SPACE_HINT; a command without --keep-last: another --out-dir). */
    readonly spaceHint = CHECKPOINT_SPACE_HINT,
  ) {
    this.root = join(outDir, 'checkpoints');
  }

  /** Step folders present on disk, newest first. */
  list(): { step: number; dir: string }[] {
    return listCheckpoints(this.root);
  }

  /** Removes temporary folders left by processes that died while saving; returns their names. */
  removeDeadTemps(): string[] {
    if (!existsSync(this.root)) return [];
    const removed: string[] = [];
    const best = join(this.root, 'best');
    for (const name of this.leftByEarlierProcesses(OLD_BEST)) {
      // a process died while swapping 'best': its old one is the best the newest checkpoint records
      if (!existsSync(best)) {
        renameSync(join(this.root, name), best);
        this.warn(`restored ${quotedPath(best)} from ${quotedPath(name)}, left by a process that stopped while replacing it`);
      } else {
        rmSync(join(this.root, name), { recursive: true, force: true });
        removed.push(name);
      }
    }
    for (const name of this.leftByEarlierProcesses(TEMP_DIR)) {
      rmSync(join(this.root, name), { recursive: true, force: true });
      removed.push(name);
    }
    if (removed.length) this.warn(`removed ${removed.length} unfinished checkpoint folder(s) of earlier processes: ${removed.map(quotedPath).join(', ')}`);
    return removed;
  }

  /**
   * Names `pattern` matches whose process is gone, or is this one: this process makes and clears its own
   * within one synchronous call, so one seen now was left by an earlier process that had its id (a
   * restarted container's processes start with the same small ids).
   */
  private leftByEarlierProcesses(pattern: RegExp): string[] {
    const own = readdirSync(this.root).filter((name) => Number(pattern.exec(name)?.[1]) === process.pid);
    return [...namesOfDeadProcesses(this.root, pattern), ...own];
  }

  /** Moves a corrupted (or diverged: `what`) checkpoint out of the way (to checkpoints/corrupt/), keeping it for inspection. */
  quarantine(dir: string, problem: string, what = 'is corrupted'): string {
    const target = join(this.root, 'corrupt', `${dir.split(/[\\/]/).pop()}-${Date.now()}`);
    makeFolder(join(this.root, 'corrupt'));
    renameSync(dir, target);
    this.warn(`warning: checkpoint ${quotedPath(dir)} ${what} (${printable(problem)}); moved it to ${quotedPath(target)}`);
    return target;
  }

  /**
   * Before a fresh run: moves the checkpoints, best and metrics of an earlier run in this folder to
   * previous/<run>-<time>/ (nothing is deleted). Returns where they went, or null when there were none.
   */
  archivePreviousRun(files: string[] = ['metrics.jsonl', 'config.json']): string | null {
    const steps = this.list();
    const earlier = [join(this.root, 'best'), join(this.root, 'corrupt'), join(this.outDir, 'metrics.jsonl')];
    if (!steps.length && !earlier.some((p) => existsSync(p))) return null;
    let id: string | null = null;
    for (const { dir } of steps) {
      try {
        id = plainRunId(readCheckpointState(dir).runId) ?? 'unknown';
        break;
      } catch {
        /* unreadable state.json: try the next one */
      }
    }
    // a run stopped before its first checkpoint left its id in config.json
    id ??= runIdOfConfig(join(this.outDir, 'config.json')) ?? 'unknown';
    const target = join(this.outDir, 'previous', `${id}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    makeFolder(target);
    if (existsSync(this.root)) renameSync(this.root, join(target, 'checkpoints'));
    for (const f of files) if (existsSync(join(this.outDir, f))) renameSync(join(this.outDir, f), join(target, f));
    this.warn(`starting a new run: the earlier run's checkpoints and metrics in ${quotedPath(this.outDir)} were moved to ${quotedPath(target)}`);
    return target;
  }

  /** Writes checkpoint `step` atomically, then prunes this run's old ones (keeping the last K and 'best'). */
  save(step: number, files: CheckpointFiles, opts: { best?: boolean } = {}): string {
    makeFolder(this.root);
    const name = stepDirName(step);
    const final = join(this.root, name);
    const tmp = join(this.root, `.tmp-${name}-${process.pid}`);
    try {
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp);
      const model = join(tmp, 'model.safetensors');
      const optimizer = join(tmp, 'optimizer.safetensors');
      const modelSha256 = writing(model, () => saveTensors(model, files.model, files.modelMetadata ?? {}), this.spaceHint);
      const optimizerSha256 = writing(optimizer, () => saveTensors(optimizer, files.extra), this.spaceHint);
      const state: Record<string, unknown> = {
        ...files.state,
        step,
        runId: this.runId,
        files: { 'model.safetensors': modelSha256, 'optimizer.safetensors': optimizerSha256 },
      };
      state.stateSha256 = stateDigest(state);
      const statePath = join(tmp, 'state.json');
      writing(statePath, () => writeFileSync(statePath, JSON.stringify(state, null, 1)), this.spaceHint);
      fsyncPath(statePath);
      fsyncPath(tmp); // (its name in the folder too, before the folder is renamed into place)
      // 'best' first: once the step is in place its state.json records the new best score, and a
      // resumed run would never copy it again
      if (opts.best) this.markBest(tmp);
      this.remove(final);
      renameSync(tmp, final);
      fsyncPath(this.root);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    this.known.set(final, this.runId);
    this.prune();
    return final;
  }

  /** Replaces 'best' by a copy of `dir`; the old one is moved aside, not deleted, until the new one is in place. */
  private markBest(dir: string): void {
    const best = join(this.root, 'best');
    const tmp = join(this.root, `.tmp-best-${process.pid}`);
    const old = join(this.root, `.old-best-${process.pid}`);
    try {
      rmSync(tmp, { recursive: true, force: true });
      // a copy-on-write clone where the file system has them (btrfs, XFS: no second copy of the bytes until
      // one side changes, yet an independent file), a plain copy elsewhere
      writing(tmp, () => cpSync(dir, tmp, { recursive: true, mode: constants.COPYFILE_FICLONE }), this.spaceHint);
      // the copy on the disk before the old one is deleted: after a power loss a fresh copy's files may be empty
      for (const f of readdirSync(tmp)) fsyncPath(join(tmp, f));
      fsyncPath(tmp);
      rmSync(old, { recursive: true, force: true });
      if (existsSync(best)) renameSync(best, old);
      renameSync(tmp, best);
      fsyncPath(this.root); // the new 'best' in place on the disk before the old one is deleted
      rmSync(old, { recursive: true, force: true });
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      if (!existsSync(best) && existsSync(old)) renameSync(old, best);
      throw e;
    }
  }

  /** Deletes this run's good checkpoints beyond the newest K; anything unknown or of another run stays. */
  private prune(): void {
    const ours = this.list().filter(({ dir }) => this.known.has(dir) && this.known.get(dir) === this.runId);
    for (const { dir } of ours.slice(this.keepLast)) {
      this.remove(dir);
      this.known.delete(dir);
    }
  }

  /**
   * Deletes a step folder, moved out of its name first: a reader (an evaluation of this live run) checking
   * it sees it whole or gone, never half deleted, which it would take for a damaged checkpoint.
   */
  private remove(dir: string): void {
    const aside = join(this.root, `.removed-${basename(dir)}-${process.pid}`);
    rmSync(aside, { recursive: true, force: true });
    try {
      renameSync(dir, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    rmSync(aside, { recursive: true, force: true });
  }

  /** Step folders newest first, then 'best' (a copy of a good checkpoint: the last resort when all step folders are corrupted). */
  private candidates(): { step: number; dir: string }[] {
    const best = join(this.root, 'best');
    return existsSync(best) ? [...this.list(), { step: -1, dir: best }] : this.list();
  }

  verify(dir: string): string | null {
    return verifyCheckpoint(dir);
  }

  load(dir: string, o: { verified?: boolean } = {}): LoadedCheckpoint {
    const loaded = readCheckpoint(dir, o);
    this.known.set(dir, (loaded.state.runId as string | undefined) ?? null);
    return loaded;
  }

  /**
   * The newest checkpoint that verifies, its run becoming this run; corrupted newer ones are moved
   * to checkpoints/corrupt/. Every older good checkpoint of the same run is verified too, so that
   * pruning may count on it.
   */
  loadLatest(): LoadedCheckpoint | null {
    for (const { dir } of this.candidates()) {
      const problem = this.verify(dir);
      if (problem) {
        this.quarantine(dir, problem);
        continue;
      }
      let loaded: LoadedCheckpoint;
      try {
        loaded = this.load(dir, { verified: true });
      } catch (e) {
        // written by a semaim that saved after a divergence: the run goes on from the last good one
        if (!(e instanceof NonFiniteTensorError)) throw e;
        this.quarantine(dir, e.message, 'holds NaN/Inf values, from a run that diverged');
        continue;
      }
      this.runId = (loaded.state.runId as string | undefined) ?? null;
      for (const older of this.list()) {
        if (older.dir === dir || this.known.has(older.dir) || verifyCheckpoint(older.dir)) continue;
        const runId = (readCheckpointState(older.dir).runId as string | undefined) ?? null;
        this.known.set(older.dir, runId);
      }
      return loaded;
    }
    return null;
  }
}

/** A run id as semaim makes them (it becomes part of a folder name: no '/', no '..'), else null. */
export function plainRunId(id: unknown): string | null {
  return typeof id === 'string' && /^[\w-]{1,64}$/.test(id) ? id : null;
}

/** The runId a config.json records, else null. */
function runIdOfConfig(path: string): string | null {
  try {
    return plainRunId(readJsonObject(path).runId);
  } catch {
    return null;
  }
}
