// How a training command runs data-parallel. Given --nproc-per-node N (or --nnodes M), this process
// is the launcher: it starts the workers with the same command line and waits for them. A worker
// (started by it or by torchrun) joins the process group, runs the job, and leaves the group.
// Otherwise the job runs in this process alone.
import * as dist from '../dist';
import { checkRanksAgree } from '../dist/agree';
import { LATE_FAILURE_WAIT_MS, ownFailure, withFailedRanksReason } from '../dist/late-failure';
import * as torch from '../torch';
import type { Device } from '../torch';
import { packageVersion } from '../export/assets';
import { MAX_THREADS, OptionError, OptionTable, kebab } from '../util/options';
import { errorText } from '../util/error-text';

/** The command a worker runs, for the check that every rank runs the same one with the same options. */
export interface CommandIdentity {
  command: string;
  table: OptionTable;
}

export async function runDataParallel(
  o: dist.LaunchFlags & { device: string; threads?: number },
  cmd: CommandIdentity,
  job: (group: dist.ProcessGroup | null) => Promise<number>,
): Promise<number> {
  if (!dist.isWorkerProcess()) {
    if ((o.nprocPerNode ?? 1) > 1 || (o.nnodes ?? 1) > 1) {
      const r = await dist.launchWorkers(process.argv.slice(2), dist.launchOptionsFrom(o));
      return r.exitCode;
    }
    return job(null);
  }
  recordWorld(o, dist.readDistEnv());
  const unwatch = dist.stopWhenLauncherDies();
  const group = await dist.initProcessGroup({ device: o.device as Device });
  // How this rank leaves the group: after a success, through leave() at once; after a failure that a rank
  // posted (its own, or one it read), through leave() with rank 0 keeping the store up for the others to
  // read; after one no rank posted (the others were told already, a peer killed with SIGKILL), not at all:
  // the group is destroyed at once, as before.
  let leaving: { failure: ReturnType<typeof ownFailure>; waitMs: number } | null = { failure: null, waitMs: 0 };
  try {
    await checkRanksAgree(
      group,
      `the command, its options and the versions`,
      runIdentity(o, cmd),
      'Every rank must run the same command with the same options (command line and --config file) and the same semaim and libtorch; ' +
        'only the launch flags, --threads, --num-workers, --device and paths (data, checkpoints, output) may differ between machines.',
    );
    return await job(group);
  } catch (e) {
    const failure = ownFailure(e, errorText);
    const named = await withFailedRanksReason(group, e);
    leaving = failure !== null || named !== e ? { failure, waitMs: Math.min(LATE_FAILURE_WAIT_MS, group.timeoutMs) } : null;
    throw named;
  } finally {
    if (leaving) await group.leave(leaving.failure, leaving.waitMs);
    dist.destroyProcessGroup();
    unwatch();
  }
}

/**
 * A worker of a run of several processes that fails before it joins (its options, config file or a path on
 * its machine) tells the others why, so they stop at once naming it instead of waiting for it until the
 * timeout, 30 minutes by default. So does the launcher of one of several machines (`--nnodes`), for the
 * workers it will now not start, when its options (a config file missing there) or its preflight fail. Not being
 * able to tell is only noted.
 */
export async function tellOtherRanks(err: unknown, options: dist.LaunchFlags | null): Promise<void> {
  const place = placeOfFailure(options);
  if (!place) return;
  const why = errorText(err);
  const who = place.ranks.length > 1 ? `ranks ${place.ranks[0]}-${place.ranks[place.ranks.length - 1]}` : `rank ${place.ranks[0]}`;
  process.stderr.write(
    `semaim: ${who} of ${place.worldSize} cannot start: ${why}\n` +
      `semaim: telling the other ranks at ${place.masterAddr}:${place.masterPort} before stopping (at most ${Math.round(dist.defaultTimeoutMs() / 1000)} s)\n`,
  );
  try {
    await Promise.all(place.ranks.map((rank) => dist.reportStartFailure(why, { ...place.init, rank })));
  } catch (e) {
    process.stderr.write(`semaim: could not tell the other ranks: ${(e as Error).message}\n`);
  }
}

/** The ranks a failure before the start stands for: this worker's, or those this machine's launcher would start. */
function placeOfFailure(options: dist.LaunchFlags | null) {
  let env: dist.DistEnv | null;
  try {
    env = dist.readDistEnv();
  } catch {
    return null; // the environment itself is broken: there is no rendezvous to tell
  }
  if (env) {
    if (env.worldSize < 2) return null;
    return { ranks: [env.rank], worldSize: env.worldSize, masterAddr: env.masterAddr, masterPort: env.masterPort, init: {} };
  }
  if (!options || (options.nnodes ?? 1) < 2) return null; // one machine: its launcher starts no worker
  const l = dist.launchOptionsFrom(options);
  const worldSize = l.nprocPerNode * l.nnodes!;
  const ranks = Array.from({ length: l.nprocPerNode }, (_, i) => l.nodeRank! * l.nprocPerNode + i);
  const masterPort = l.masterPort ?? dist.MULTI_NODE_PORT;
  // none of torchrun's variables (this is the launcher, not a worker), but the timeout it was given
  const init = { worldSize, masterAddr: l.masterAddr, masterPort, env: { SEMAIM_DIST_TIMEOUT: process.env.SEMAIM_DIST_TIMEOUT } };
  return { ranks, worldSize, masterAddr: l.masterAddr, masterPort, init };
}

/** Options that may differ between the ranks: each machine's own places and resources, not what is computed. */
const PER_MACHINE = new Set([
  ...Object.keys(dist.LAUNCH_OPTIONS),
  'threads',
  'numWorkers',
  'device',
  'config',
  'outDir',
  'out',
  'vizOut',
  'checkpoint',
  'teacher',
  'dataPath',
  'segDataPath',
  'images',
]);

/** What every rank must agree on: the command, the options that decide what is computed, the versions. */
function runIdentity(o: object, cmd: CommandIdentity): Record<string, unknown> {
  const id: Record<string, unknown> = { command: cmd.command, semaim: packageVersion(), libtorch: torch.version().torch };
  for (const [key, spec] of Object.entries(cmd.table)) {
    if (PER_MACHINE.has(key) || spec.path) continue;
    id[`--${kebab(key)}`] = (o as Record<string, unknown>)[key] ?? null;
  }
  return id;
}

/**
 * The launcher strips its flags from the workers' command line (and torchrun passes none), so a worker
 * takes them from its environment: the options it records (config.json, result JSONs) then name the
 * world the job ran on, not the defaults.
 */
function recordWorld(o: dist.LaunchFlags, env: dist.DistEnv | null): void {
  if (!env) return;
  o.nprocPerNode = env.localWorldSize;
  o.nnodes = Math.max(1, Math.round(env.worldSize / env.localWorldSize));
  o.nodeRank = Math.floor(env.rank / env.localWorldSize);
}

/**
 * Each of this machine's processes (--nproc-per-node's workers, or ablate's --jobs) takes --threads threads:
 * together no more than its cores (the default shares them).
 */
export function checkThreadsPerProcess(threads: number | undefined, processes: number, processFlag = '--nproc-per-node'): void {
  const cores = MAX_THREADS;
  const share = Math.max(1, Math.floor(cores / processes));
  if (threads !== undefined && threads > share) {
    throw new OptionError(
      'threads',
      `${threads} threads in each of ${processFlag} ${processes} processes is ${threads * processes} on ${cores} cores: give at most ${share}, or leave --threads out (each process then takes its share)`,
    );
  }
}
