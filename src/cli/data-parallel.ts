// How a training command runs data-parallel. Given --nproc-per-node N (or --nnodes M), this process
// is the launcher: it starts the workers with the same command line and waits for them. A worker
// (started by it or by torchrun) joins the process group, runs the job, and leaves the group.
// Otherwise the job runs in this process alone.
import * as dist from '../dist';
import { checkRanksAgree } from '../dist/agree';
import * as torch from '../torch';
import type { Device } from '../torch';
import { packageVersion } from '../export/assets';
import { MAX_THREADS, OptionError, OptionTable, kebab } from '../util/options';

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
      checkThreadsPerProcess(o.threads, o.nprocPerNode ?? 1);
      const r = await dist.launchWorkers(process.argv.slice(2), dist.launchOptionsFrom(o));
      return r.exitCode;
    }
    return job(null);
  }
  recordWorld(o, dist.readDistEnv());
  const group = await dist.initProcessGroup({ device: o.device as Device });
  try {
    await checkRanksAgree(
      group,
      `the command, its options and the versions`,
      runIdentity(o, cmd),
      'Every rank must run the same command with the same options (command line and --config file) and the same semaim and libtorch; ' +
        'only the launch flags, --threads, --num-workers, --device and paths (data, checkpoints, output) may differ between machines.',
    );
    return await job(group);
  } finally {
    dist.destroyProcessGroup();
  }
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

/** Each of this machine's processes takes --threads threads: together no more than its cores (the default shares them). */
function checkThreadsPerProcess(threads: number | undefined, processes: number): void {
  const cores = MAX_THREADS;
  const share = Math.max(1, Math.floor(cores / processes));
  if (threads !== undefined && threads > share) {
    throw new OptionError(
      'threads',
      `${threads} threads in each of --nproc-per-node ${processes} processes is ${threads * processes} on ${cores} cores: give at most ${share}, or leave --threads out (each process then takes its share)`,
    );
  }
}
