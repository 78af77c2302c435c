// Files a command writes where the user points it: one that exists is replaced only when asked
// (--overwrite), and never one the command reads from (an encoder and its config), nor a file of a
// checkpoint or of a run folder, which other commands read and verify.
import { existsSync, lstatSync, realpathSync, statSync } from 'node:fs';
import { quotedPath } from '../util/printable';
import { basename, dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { OptionError } from '../util/options';
import { finishInterruptedCommits, writeError } from '../util/safe-write';
import { describeHolder, lockFile } from '../util/file-lock';
import { makeFolder, occupied } from '../util/make-folder';
import { canonicalPath } from '../util/canonical-path';

/** The files of a run folder that the run itself writes (and resume, report and the evaluations read). */
const RUN_FILES = ['config.json', 'metrics.jsonl', 'run.lock']; // run.lock: LOCK_FILE of src/run/run-lock.ts (a layer above io)
const isRunDir = (dir: string) => ['metrics.jsonl', 'checkpoints', 'run.lock'].some((f) => existsSync(join(dir, f)));
/**
 * The results the commands write into their own --out-dir, which other commands read (predict reads a
 * probe, report a run's evaluations): a file another command names (--out) may not replace one.
 */
const RESULT_FILES = [
  'knn.json',
  'linprobe.json',
  'probe.safetensors',
  'segprobe.json',
  'seg-head.safetensors',
  'finetune.json',
  'demo.json',
  'ablation.json',
  'ablation-eval.json',
  'ablation-segprobe.json',
  'object-start.json',
  'index.json',
];

/**
 * Why no command may write `path`, or null: it lies in a checkpoint folder (one holding state.json) or in
 * a run's checkpoints/, or is a run's own file, or an existing result of another command.
 */
export function protectedOutput(path: string): string | null {
  const file = canonicalPath(path);
  const folder = protectedFolder(dirname(file));
  if (folder) return folder;
  if (RUN_FILES.includes(basename(file)) && isRunDir(dirname(file))) return `it is the ${basename(file)} of the run ${dirname(file)}`;
  if (RESULT_FILES.includes(basename(file)) && occupied(file))
    return `it is a result another command wrote (${basename(file)} in ${dirname(file)}), which other commands read`;
  return null;
}

/**
 * Why no command may write into the folder `dir`, or null: it is (or lies in) a checkpoint folder (one holding
 * state.json) or a run's checkpoints/, which the run writing there replaces (best/) and deletes (its pruned
 * step folders), with whatever else was put there.
 */
export function protectedFolder(dir: string): string | null {
  for (let d = dirname(canonicalPath(join(dir, 'x'))); ; d = dirname(d)) {
    if (existsSync(join(d, 'state.json'))) return `it lies in the checkpoint folder ${d}`;
    if (basename(d) === 'checkpoints' && isRunDir(dirname(d))) return `it lies in the checkpoints folder of the run ${dirname(d)}`;
    if (dirname(d) === d) return null;
  }
}

/**
 * Refuses an output file name that does not end in `ext`, or is only `ext` ('.json' wrote a hidden file and
 * its companion beside it); `beside` says what goes beside it, for the message.
 */
export function checkOutputName(out: string, ext: string, beside: string): void {
  if (!out.endsWith(ext)) throw new OptionError('out', `must end in ${ext} (${beside}), got '${out}'`);
  if (basename(out) === ext)
    throw new OptionError('out', `${quotedPath(out)} has no file name before ${ext}: give one, e.g. ${quotedPath(join(dirname(out), `out${ext}`))}`);
}

/**
 * Refuses, naming `option`, an output that is one of `inputs`, a checkpoint's or run's file, or that exists
 * without `overwrite`; `overwriteIs` is how the caller asks for it (default the command's '--overwrite').
 */
export function checkOutputs(outputs: string[], o: { overwrite: boolean; inputs?: string[]; option?: string; overwriteIs?: string }): void {
  const option = o.option ?? 'out';
  const overwriteIs = o.overwriteIs ?? '--overwrite';
  // a set of outputs an earlier writer was killed while renaming into place is completed first (never
  // rolled back): what exists is then what that writer wrote, whole
  for (const dir of new Set(outputs.map((p) => dirname(resolve(p))))) finishInterruptedCommits(dir);
  // an input by its name and by the file it is (a link's target, which a rename onto that name replaces)
  const inputs = new Map((o.inputs ?? []).flatMap((p) => [[realPlace(p), p] as const, [canonicalPath(p), p] as const]));
  for (const out of outputs) {
    const input = inputs.get(canonicalPath(out));
    if (input !== undefined) throw new OptionError(option, `${quotedPath(out)} is what this command reads (${quotedPath(input)}): choose another output`);
    const why = protectedOutput(out);
    if (why) throw new OptionError(option, `${quotedPath(out)} cannot be written, not even with ${overwriteIs}: ${why}`);
    // no rename replaces a folder: refused now, not at the end of the work (a link to one is replaced, as a file is)
    if (lstatSync(out, { throwIfNoEntry: false })?.isDirectory())
      throw new OptionError(option, `${quotedPath(out)} is a folder, and a file goes there (not even ${overwriteIs} replaces a folder): choose another output`);
    if (!o.overwrite && occupied(out))
      throw new OptionError(option, `${quotedPath(out)} exists: choose another output, or pass ${overwriteIs} to replace it`, undefined, 'ERR_OUTPUT_EXISTS');
  }
}

/** Where `path` is, its own link resolved too; for a path that is not there, its nearest existing folder's links resolved. */
function realPlace(path: string): string {
  const rest: string[] = [];
  for (let p = resolve(path); ; p = dirname(p)) {
    try {
      return join(realpathSync(p), ...rest.reverse());
    } catch {
      if (dirname(p) === p) return resolve(path);
      rest.push(basename(p));
    }
  }
}

/**
 * Refuses, naming `option`, an output folder that exists as a file, lies inside one of the `inputs`
 * folders (what it writes would be read next time), or whose `files` are protected.
 */
export function checkOutputFolder(dir: string, files: string[], o: { inputs: string[]; option: string }): void {
  if (existsSync(dir) && !statSync(dir).isDirectory())
    throw new OptionError(o.option, `${quotedPath(dir)} exists and is not a folder: choose another output folder`);
  const target = realPlace(dir); // (a link to the inputs' folder is that folder)
  for (const input of o.inputs) {
    if (!existsSync(input) || !statSync(input).isDirectory()) continue;
    const rel = relative(realpathSync(input), target);
    if (!rel.startsWith('..') && !isAbsolute(rel))
      throw new OptionError(
        o.option,
        `${quotedPath(dir)} lies in ${quotedPath(input)}, which this command reads: its files would be inputs next time; choose another folder`,
      );
  }
  checkOutputs(files, { overwrite: true, option: o.option });
}

/** Outputs a job of this process is writing now (canonical paths). */
const writing = new Set<string>();

/** The lock file beside a set of outputs, named after the first: `<first>.lock`. */
export function outputLockPath(first: string): string {
  return `${canonicalPath(first)}.lock`;
}

/**
 * Marks `outputs` as being written by this job until the returned function is called, and refuses
 * (naming `option`) ones that another job of this process, or another process (`<first>.lock` beside
 * them names it; one left by a process that is gone is taken over), is writing: two writers of one set
 * interleave their rows in its partial file and their renames, leaving one's rows beside the other's list.
 * The outputs' folder is created. Without `overwrite`, for a writer that checked its outputs (checkOutputs) long
 * before it writes: outputs another process wrote meanwhile are refused once the lock is taken (refuseWrittenMeanwhile).
 */
export function claimOutputs(outputs: string[], option = 'out', overwrite = true): () => void {
  const paths = outputs.map((p) => canonicalPath(p));
  const busy = paths.findIndex((p) => writing.has(p));
  if (busy >= 0) throw new OptionError(option, `${outputs[busy]} is being written by another job of this process: wait for it, or choose another output`);
  const lock = outputLockPath(outputs[0]);
  let unlock: ReturnType<typeof lockFile>;
  makeFolder(dirname(lock));
  try {
    unlock = lockFile(lock);
  } catch (e) {
    throw writeError(lock, e);
  }
  if (typeof unlock !== 'function') {
    const h = unlock;
    const who = describeHolder(h);
    throw new OptionError(
      option,
      `${outputs[0]} is being written by another semaim process (${who}): wait for it, or choose another output; if that process is gone, delete ${lock}`,
    );
  }
  // a writer of this set killed since checkOutputs completed its folders left a journal that names this
  // set's `.partial`: completed now, before this job writes its own file there (else the journal would
  // rename that half-written file into place later, beside the killed writer's other files)
  try {
    for (const dir of new Set(paths.map((p) => dirname(p)))) finishInterruptedCommits(dir);
    refuseWrittenMeanwhile(outputs, overwrite, option);
  } catch (e) {
    unlock();
    throw e;
  }
  for (const p of paths) writing.add(p);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const p of paths) writing.delete(p);
    unlock();
  };
}

/**
 * Refuses (naming `option`, code 'ERR_OUTPUT_EXISTS') an output that exists now although it did not when checked:
 * for a writer that holds the outputs' lock (claimOutputs) long after checkOutputs, and was not asked to
 * `overwrite`. Another process wrote it meanwhile (an export of other weights to the same name), and it is kept.
 */
function refuseWrittenMeanwhile(outputs: string[], overwrite: boolean, option: string): void {
  if (overwrite) return;
  const taken = outputs.find((p) => occupied(p));
  if (taken !== undefined)
    throw new OptionError(
      option,
      `${quotedPath(taken)} was written by another process while this one worked: it is kept; choose another output, or pass --overwrite ({ overwrite: true }) to replace it`,
      undefined,
      'ERR_OUTPUT_EXISTS',
    );
}

/**
 * The library's exports, embed and predict (the CLI checks more, before any work, with checkOutputs):
 * never over the encoder they read (its weights or the config beside them), into a checkpoint folder
 * or over a run's own files; an existing output of another kind only with `overwrite` (the command's
 * --overwrite; default false, as the command: OptionError with code 'ERR_OUTPUT_EXISTS'). The errors name
 * `overwrite` as the library caller gives it.
 */
export function guardOutputs(outputs: string[], encoderWeights: string, overwrite = false): void {
  checkOutputs(outputs, { overwrite, inputs: encoderFiles(encoderWeights), overwriteIs: '{ overwrite: true }' });
}

/** The files an encoder source consists of: its weights, and for an exported one the config beside them. */
export function encoderFiles(weights: string): string[] {
  return [weights, weights.replace(/\.(safetensors|pth|pt|bin)$/, '.json')];
}
