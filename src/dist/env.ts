// Where this process stands in a distributed run, read from the environment variables that torchrun
// (and semaim's own launcher, src/dist/launch.ts) give every worker.

/** A worker's place in the run, as torchrun describes it. */
export interface DistEnv {
  rank: number;
  worldSize: number;
  /** Rank among the workers of this machine (selects the GPU). */
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  /**
   * torchrun's static rendezvous (`--master-addr/--master-port` without `--standalone`): its agent
   * already hosts the TCPStore at MASTER_ADDR:MASTER_PORT, so no worker starts one and keys live under
   * /worker/attempt_<restart count>, as torch.distributed does it.
   */
  agentStore: { restartCount: number } | null;
  /** GLOO_SOCKET_IFNAME: the network interface Gloo uses, or several comma-separated (else the one of the master address). */
  glooInterface: string | null;
}

/** The environment variables a worker needs; their absence means "not a worker". */
const REQUIRED = ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'] as const;

/** Whether this process was started as a worker of a distributed run (torchrun or `--nproc-per-node`). */
export function isWorkerProcess(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.RANK !== undefined && env.WORLD_SIZE !== undefined;
}

function intVar(env: NodeJS.ProcessEnv, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  const v = Number(raw);
  // decimal digits only, as torchrun writes them ('0x10' or '1e0' would pass Number())
  if (raw === undefined || !/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new Error(`distributed environment: ${name}=${raw ?? '(unset)'} is not an integer in [${min}, ${max}]`);
  }
  return v;
}

/**
 * Reads RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and torchrun's
 * TORCHELASTIC_USE_AGENT_STORE / TORCHELASTIC_RESTART_COUNT, GLOO_SOCKET_IFNAME). Returns null when
 * this is not a worker (no RANK / WORLD_SIZE); throws, naming the variable, when one is missing or
 * malformed.
 */
export function readDistEnv(env: NodeJS.ProcessEnv = process.env): DistEnv | null {
  if (!isWorkerProcess(env)) return null;
  const missing = REQUIRED.filter((k) => env[k] === undefined || env[k] === '');
  if (missing.length) {
    throw new Error(`distributed environment: ${missing.join(', ')} not set (RANK and WORLD_SIZE are; start workers with ` +
      'torchrun or `--nproc-per-node N`, which set all of them)');
  }
  const worldSize = intVar(env, 'WORLD_SIZE', 1);
  const rank = intVar(env, 'RANK', 0, worldSize - 1);
  const localWorldSize = env.LOCAL_WORLD_SIZE !== undefined ? intVar(env, 'LOCAL_WORLD_SIZE', 1, worldSize) : worldSize;
  const localRank = env.LOCAL_RANK !== undefined ? intVar(env, 'LOCAL_RANK', 0, localWorldSize - 1) : rank % localWorldSize;
  const agentStore = env.TORCHELASTIC_USE_AGENT_STORE === 'True'
    ? { restartCount: env.TORCHELASTIC_RESTART_COUNT !== undefined ? intVar(env, 'TORCHELASTIC_RESTART_COUNT', 0) : 0 }
    : null;
  return {
    rank, worldSize, localRank, localWorldSize,
    masterAddr: String(env.MASTER_ADDR),
    masterPort: intVar(env, 'MASTER_PORT', 1, 65535),
    agentStore,
    glooInterface: env.GLOO_SOCKET_IFNAME ? env.GLOO_SOCKET_IFNAME : null,
  };
}

/** Whether an address names this machine's loopback interface. */
export function isLoopback(addr: string): boolean {
  return addr === 'localhost' || addr === '::1' || /^127\./.test(addr);
}
