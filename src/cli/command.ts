// What every sub-command is. A command declares its options once (one table); the parser, --help,
// validation and the typed options object its job receives all come from that table.
import { checkThreadsPerProcess, tellOtherRanks } from './data-parallel';
import { formatHelp, asWritten, OptionError, OptionTable, Options, parseArgv, readConfigFile, resolveOptions } from '../util/options';
import { folderObstacle } from '../util/safe-write';
import { quotedPath } from '../util/printable';
import { protectedFolder } from '../io/outputs';
import { checkGpuShare } from '../run/device';
import { LAUNCH_OPTIONS, readDistEnv, type LaunchFlags } from '../dist';

export interface Command {
  summary: string;
  /** The option table (for --help, and for tests that check documented command lines). */
  options: OptionTable;
  /** Parses and validates argv without doing any work or looking at files; null for --help (after printing it). */
  parse(argv: string[]): { options: Record<string, unknown>; positionals: string[] } | null;
  run(argv: string[]): Promise<number>;
}

export interface CommandSpec<T extends OptionTable> {
  summary: string;
  usage: string;
  description: string;
  options: T;
  /** What its bare arguments are (usage words, e.g. 'RUN_DIR'); a command without them refuses any. */
  positionals?: string;
  /** Checks of the options beyond each one's own range (throw an OptionError naming the key). */
  validate?(o: Options<T>, positionals: string[]): void;
  /** Checks of the files the options name (data path, checkpoint), before any work. */
  preflight?(o: Options<T>, positionals: string[]): void;
  /** The job; returns the exit code. */
  run(o: Options<T>, positionals: string[]): Promise<number>;
}

/** Parses argv against a table (config file < flags), validated; prints help and returns null for --help. */
export function parseCommand<T extends OptionTable>(
  argv: string[],
  usage: string,
  description: string,
  table: T,
  validate?: (o: Options<T>, positionals: string[]) => void,
): { o: Options<T>; positionals: string[] } | null {
  const { options, positionals } = parseArgv(argv, table);
  if (options.help) {
    process.stdout.write(formatHelp(usage, description, table));
    return null;
  }
  const file = options.config !== undefined ? readConfigFile(String(options.config)) : {};
  try {
    const o = resolveOptions(table, file, options);
    validate?.(o, positionals);
    return { o, positionals };
  } catch (e) {
    throw asWritten(e, file, options);
  }
}

/** A command line the command cannot read (exit code 2, as an option error). */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Every command with the launcher's flags: the launcher refused a --node-rank beyond --nnodes only once it started. */
function checkNodeRank(o: Record<string, unknown>): void {
  if (typeof o.nodeRank === 'number' && typeof o.nnodes === 'number' && o.nodeRank >= o.nnodes)
    throw new OptionError('nodeRank', `must be below --nnodes ${o.nnodes} (0..${o.nnodes - 1}), got ${o.nodeRank}`);
}

/**
 * Every command with the launcher's flags and --device (after the device itself is checked): with CUDA,
 * each process on this machine (--nproc-per-node, or torchrun's LOCAL_WORLD_SIZE in a worker) needs a GPU of its own.
 */
function checkGpusPerProcess(o: Record<string, unknown>): void {
  if (typeof o.nprocPerNode === 'number' && typeof o.device === 'string') checkGpuShare(o.device, readDistEnv()?.localWorldSize ?? o.nprocPerNode);
}

/**
 * Every command with the launcher's flags: --nproc-per-node's processes (or, in a worker, torchrun's LOCAL_WORLD_SIZE)
 * take --threads each, together at most this machine's cores. Checked with the options (it was checked only as the
 * launcher started its workers, after the preflight, where a launcher of one of several machines told the others
 * nothing and they waited for it).
 */
function checkThreadsOfWorkers(o: Record<string, unknown>): void {
  if (typeof o.nprocPerNode !== 'number' || !(o.threads === undefined || typeof o.threads === 'number')) return;
  // (torchrun passes no --nproc-per-node; a worker started by hand without LOCAL_WORLD_SIZE may be alone on its machine)
  const local = process.env.LOCAL_WORLD_SIZE === undefined ? undefined : readDistEnv()?.localWorldSize;
  if (local === undefined) checkThreadsPerProcess(o.threads, o.nprocPerNode);
  else checkThreadsPerProcess(o.threads, local, "this machine's");
}

/** An output folder option (`key`) whose path cannot be a folder (a file, or a symbolic link to nothing, on the way) is an option error, before any work. */
export function checkFolderOption(dir: string, key: string): void {
  const { why } = folderObstacle(dir);
  if (why) throw new OptionError(key, `${quotedPath(dir)} cannot be the output folder: ${why}`);
}

/**
 * Every command with --out-dir: checkFolderOption, and not in a checkpoint folder or a run's checkpoints/ (as the
 * outputs of export, embed, predict, visualize and report): the run's rotation would delete what is written there.
 */
function checkOutDir(o: Record<string, unknown>): void {
  if (typeof o.outDir !== 'string') return;
  checkFolderOption(o.outDir, 'outDir');
  const why = protectedFolder(o.outDir);
  if (why) throw new OptionError('outDir', `${quotedPath(o.outDir)} cannot be the output folder: ${why}, which the run replaces and deletes`);
}

/**
 * The launch flags of a command line whose options could not be read or checked (a --config file missing on
 * this machine): from its flags alone, so that the launcher of one of several machines can tell the others
 * (they waited for its workers until the timeout); null when the flags do not give a valid launch either.
 */
function launchFlagsOf(argv: string[], table: OptionTable): LaunchFlags | null {
  try {
    const { options } = parseArgv(argv, table);
    const given = Object.fromEntries(Object.keys(LAUNCH_OPTIONS).map((k) => [k, options[k]]));
    const flags = resolveOptions(LAUNCH_OPTIONS, given);
    return flags.nodeRank < flags.nnodes ? flags : null;
  } catch {
    return null;
  }
}

export function defineCommand<T extends OptionTable>(spec: CommandSpec<T>): Command {
  const parse = (argv: string[]) => {
    return parseCommand(argv, spec.usage, spec.description, spec.options, (o, positionals) => {
      if (!spec.positionals && positionals.length) {
        // a pasted '[--dtype float16]' or a value after a flag ('--no-verify false') would otherwise be ignored
        throw new UsageError(
          `unexpected argument '${positionals[0]}': this command takes only options, written --name value (a flag such as --overwrite takes no value); see --help`,
        );
      }
      checkNodeRank(o);
      spec.validate?.(o, positionals);
      checkGpusPerProcess(o);
      checkThreadsOfWorkers(o);
    });
  };
  return {
    summary: spec.summary,
    options: spec.options,
    parse: (argv) => {
      const p = parse(argv);
      return p && { options: p.o, positionals: p.positionals };
    },
    async run(argv) {
      let p: ReturnType<typeof parse> = null;
      try {
        p = parse(argv);
        if (!p) return 0;
        checkOutDir(p.o);
        spec.preflight?.(p.o, p.positionals);
      } catch (e) {
        if ('nprocPerNode' in spec.options) await tellOtherRanks(e, p?.o ?? launchFlagsOf(argv, spec.options));
        throw e;
      }
      return spec.run(p.o, p.positionals);
    },
  };
}
